//! `database_per_tenant`: a database and a role of its own per tenant; servers log in as that
//! role, so a connection belongs to one tenant.

use fraiseql_config::TenancyStrategy;

use super::{Home, Strategy};

/// One database per tenant.
#[derive(Debug, Clone, Copy)]
pub struct DatabasePerTenant;

impl Strategy for DatabasePerTenant {
    fn kind(&self) -> TenancyStrategy {
        TenancyStrategy::DatabasePerTenant
    }

    fn home(&self, name_prefix: &str, key: &str, _host_database: &str) -> Home {
        let name = format!("{name_prefix}{key}");
        Home {
            database: name.clone(),
            schema: "public".to_owned(),
            role: name.clone(),
            login_role: name,
        }
    }

    fn connection_affinity(&self) -> bool {
        false
    }

    fn shares_tables(&self) -> bool {
        false
    }
}
