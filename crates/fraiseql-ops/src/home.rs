//! A tenant's home on its server, the parts every strategy shares: its role(s) with their
//! passwords, the grants its role gets on its tables, its migrations. What differs (a database or
//! a schema of its own, or neither) is the strategy's (`strategy/`).

use std::path::Path;

use fraiseql_config::{Config, TENANT_DATABASE};
use fraiseql_engine::migrate;
use fraiseql_engine::tenancy::strategy;
use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::{quote_ident, quote_literal};
use tokio_postgres::Client;

use crate::error::{provision_db as db, ProvisionError};
use crate::server::connect;

/// What provisioning created rather than found, so a failed restore removes exactly that.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Created {
    /// The tenant's role.
    pub role: bool,
    /// The shared login role (`schema_per_tenant`'s authenticator).
    pub login_role: bool,
    /// The tenant's database (`database_per_tenant`).
    pub database: bool,
}

/// What the target held before a restore, and what the restore made there.
#[derive(Debug, Default, Clone)]
pub(crate) struct Made {
    /// What provisioning created.
    pub created: Created,
    /// The tenant's database / schema / rows were found on the target (and wiped).
    pub found: bool,
    /// Something was loaded.
    pub loaded: bool,
    /// `schema_per_tenant`: the archive's schema name, when it differs from the target's.
    pub foreign_schema: Option<String>,
    /// The role a dump is restored as, while it exists (`dump/confine.rs`).
    pub restore_role: Option<String>,
}

/// Which of a tenant's roles exist on its server, before anything is made there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RolesThere {
    /// The tenant's role.
    pub role: bool,
    /// Its login role (true when it is the tenant's role itself).
    pub login_role: bool,
}

impl RolesThere {
    /// What a restore there will have created: the roles missing now, and the database if
    /// `database_missing`.
    pub fn created_if_missing(self, database_missing: bool) -> Created {
        Created {
            role: !self.role,
            login_role: !self.login_role,
            database: database_missing,
        }
    }
}

/// Which of `rec`'s roles exist on its server now.
pub(crate) async fn existing_roles(rec: &TenantRecord) -> Result<RolesThere, ProvisionError> {
    let admin = connect(&rec.server, None, None).await?;
    let row = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), $1 = $2 OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2)",
            &[&rec.role, &rec.login_role],
        )
        .await
        .map_err(db("role"))?;
    Ok(RolesThere {
        role: row.get(0),
        login_role: row.get(1),
    })
}

/// Creates the tenant's role, or sets its password if it exists, and the login role it is
/// reached through when that is another one (an authenticator, granted the tenant's role).
/// Returns what it created (`database` stays false).
pub(crate) async fn ensure_roles(
    admin: &Client,
    rec: &TenantRecord,
) -> Result<Created, ProvisionError> {
    let mut created = Created::default();
    let role_exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&rec.role])
        .await
        .map_err(db("role"))?
        .is_some();
    created.role = !role_exists;
    let verb = if role_exists { "ALTER" } else { "CREATE" };
    admin
        .batch_execute(&format!(
            "{verb} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}",
            quote_ident(&rec.role),
            quote_literal(&rec.password)
        ))
        .await
        .map_err(db("role"))?;
    if rec.login_role != rec.role {
        created.login_role = ensure_authenticator(admin, rec).await?;
    }
    Ok(created)
}

/// The authenticator: logs in, owns nothing, inherits nothing (NOINHERIT), so on its own it
/// reads no table; each transaction switches to the tenant's role. Returns whether it was
/// created now.
async fn ensure_authenticator(admin: &Client, rec: &TenantRecord) -> Result<bool, ProvisionError> {
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            &[&rec.login_role],
        )
        .await
        .map_err(db("role"))?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    let made = admin
        .batch_execute(&format!(
            "{verb} ROLE {} LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}",
            quote_ident(&rec.login_role),
            quote_literal(&rec.login_password)
        ))
        .await;
    // Another provisioning may have created it meanwhile.
    let created = match made {
        Ok(()) => !exists,
        Err(e) if e.as_db_error().map(|d| d.code().code()) == Some("42710") => false,
        Err(e) => return Err(db("role")(e)),
    };
    admin
        .batch_execute(&format!(
            "GRANT {} TO {}",
            quote_ident(&rec.role),
            quote_ident(&rec.login_role)
        ))
        .await
        .map_err(db("role"))?;
    Ok(created)
}

/// What the tenant's role may do in `schema`: use it, DML on its tables and views, its
/// sequences; never the migrations table. Neither DDL nor ownership.
pub(crate) fn dml_grants(schema: &str, role: &str) -> String {
    let s = quote_ident(schema);
    let r = quote_ident(role);
    format!(
        "GRANT USAGE ON SCHEMA {s} TO {r};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r};
         REVOKE ALL ON {s}.fraiseql_migrations FROM {r};"
    )
}

fn migrations_dir(config: &Config) -> Result<&Path, ProvisionError> {
    config
        .databases
        .get(TENANT_DATABASE)
        .and_then(|d| d.migrations.as_deref())
        .ok_or_else(|| {
            ProvisionError::Config(
                "[databases.tenant] migrations is needed to provision tenants".into(),
            )
        })
}

/// Applies pending migrations to a tenant (as the admin, who owns the tables) and grants its role
/// what the API needs (DML, not DDL, not ownership). Returns the migrations applied.
pub async fn migrate_tenant(
    config: &Config,
    rec: &TenantRecord,
) -> Result<Vec<String>, ProvisionError> {
    let dir = migrations_dir(config)?;
    let search_path = (rec.schema != "public").then_some(rec.schema.as_str());
    let mut client = connect(&rec.server, Some(&rec.database), search_path).await?;
    let applied = migrate::apply(&mut client, dir).await?;
    client
        .batch_execute(fraiseql_engine::events::outbox::DDL)
        .await
        .map_err(db("outbox"))?;
    client
        .batch_execute(&dml_grants(&rec.schema, &rec.role))
        .await
        .map_err(db("grants"))?;
    if strategy::named(&rec.strategy).is_some_and(|s| s.shares_tables()) {
        // Shared tables: each tenant's events to itself, and the fence a move needs.
        client
            .batch_execute(fraiseql_engine::events::outbox::SHARED_POLICY)
            .await
            .map_err(db("outbox policy"))?;
        crate::fence::install(&client, &rec.schema, &rec.role).await?;
    }
    Ok(applied)
}
