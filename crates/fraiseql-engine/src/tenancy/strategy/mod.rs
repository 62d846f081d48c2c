//! Tenancy strategies: where a tenant lives and what it shares with the other tenants of its
//! server. Serving needs little of it (the names come from here at provisioning; the pool and the
//! relay ask what is shared); the operations (`fraiseql-ops`) add what provisioning, backups and
//! moves do differently per strategy.
//!
//! One file per strategy, registered in [`of`] and [`ALL`]. A new strategy is a new file, a line
//! in each of them, its name in the config (`fraiseql_config::TenancyStrategy`), and its
//! operations in `fraiseql-ops` (`strategy/`).

mod database_per_tenant;
mod row_level;
mod schema_per_tenant;

use fraiseql_config::TenancyStrategy;

pub use database_per_tenant::DatabasePerTenant;
pub use row_level::RowLevel;
pub use schema_per_tenant::SchemaPerTenant;

/// Where a tenant lives on its server, and the roles its requests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// Its database: its own, or the server's host database.
    pub database: String,
    /// Its schema: its own, or `public`.
    pub schema: String,
    /// The role every transaction of the tenant switches to (never the tables' owner).
    pub role: String,
    /// The role servers log in as: the tenant's role, or an authenticator member of it.
    pub login_role: String,
}

/// How tenants are isolated, as far as serving them goes.
pub trait Strategy: Send + Sync {
    /// The config value.
    fn kind(&self) -> TenancyStrategy;

    /// The name in the config and in the registry (`row_level`).
    fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Where tenant `key` lives on a server whose admin URL names `host_database`, and its
    /// roles, named from `[multi_tenancy] name_prefix`.
    fn home(&self, name_prefix: &str, key: &str, host_database: &str) -> Home;

    /// Whether tenants of one host database share connections while each has a schema of its
    /// own: the pool then groups them by an affinity of their key and keeps each tenant's
    /// prepared statements apart (see `connections::pool`).
    fn connection_affinity(&self) -> bool;

    /// Whether tenants share the tables and the outbox of their host database, their rows told
    /// apart by `tenant_id` and `tenant_key`.
    fn shares_tables(&self) -> bool;
}

/// The strategy of a config value.
pub fn of(kind: TenancyStrategy) -> &'static dyn Strategy {
    match kind {
        TenancyStrategy::DatabasePerTenant => &DatabasePerTenant,
        TenancyStrategy::SchemaPerTenant => &SchemaPerTenant,
        TenancyStrategy::RowLevel => &RowLevel,
    }
}

/// Every strategy.
pub const ALL: [&dyn Strategy; 3] = [&DatabasePerTenant, &SchemaPerTenant, &RowLevel];

/// The strategy of a name as the registry stores it, if it is one.
pub fn named(name: &str) -> Option<&'static dyn Strategy> {
    ALL.into_iter().find(|s| s.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_homes() {
        for name in ["database_per_tenant", "schema_per_tenant", "row_level"] {
            assert_eq!(named(name).map(|s| s.name()), Some(name));
        }
        for s in ALL {
            assert_eq!(of(s.kind()).name(), s.name());
        }
        assert!(named("rows").is_none());
        let home = |s: &dyn Strategy| s.home("t_", "acme", "hostdb");
        assert_eq!(
            home(of(TenancyStrategy::DatabasePerTenant)),
            Home {
                database: "t_acme".into(),
                schema: "public".into(),
                role: "t_acme".into(),
                login_role: "t_acme".into(),
            }
        );
        assert_eq!(
            home(of(TenancyStrategy::SchemaPerTenant)),
            Home {
                database: "hostdb".into(),
                schema: "t_acme".into(),
                role: "t_acme".into(),
                login_role: "t_authenticator".into(),
            }
        );
        assert_eq!(
            home(of(TenancyStrategy::RowLevel)),
            Home {
                database: "hostdb".into(),
                schema: "public".into(),
                role: "t_app".into(),
                login_role: "t_app".into(),
            }
        );
    }
}
