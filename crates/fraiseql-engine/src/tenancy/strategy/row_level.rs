//! `row_level`: every tenant's rows in the same tables of the server's host database, told apart
//! by `tenant_id` (row-level security). The tenants share one role (`<prefix>app`), which is
//! also the role servers log in as.

use fraiseql_config::TenancyStrategy;

use super::{Home, Strategy};

/// Shared tables, isolated by row-level security.
#[derive(Debug, Clone, Copy)]
pub struct RowLevel;

impl Strategy for RowLevel {
    fn kind(&self) -> TenancyStrategy {
        TenancyStrategy::RowLevel
    }

    fn home(&self, name_prefix: &str, _key: &str, host_database: &str) -> Home {
        let role = format!("{name_prefix}app");
        Home {
            database: host_database.to_owned(),
            schema: "public".to_owned(),
            role: role.clone(),
            login_role: role,
        }
    }

    fn connection_affinity(&self) -> bool {
        false
    }

    fn shares_tables(&self) -> bool {
        true
    }
}
