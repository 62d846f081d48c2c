//! `schema_per_tenant`: a schema and a role of its own per tenant in the server's host database.
//! Servers log in as one authenticator (`<prefix>authenticator`, a member of every tenant role)
//! and switch to the tenant's role and schema in each transaction, so tenants share connections.

use fraiseql_config::TenancyStrategy;

use super::{Home, Strategy};

/// One schema per tenant.
#[derive(Debug, Clone, Copy)]
pub struct SchemaPerTenant;

impl Strategy for SchemaPerTenant {
    fn kind(&self) -> TenancyStrategy {
        TenancyStrategy::SchemaPerTenant
    }

    fn home(&self, name_prefix: &str, key: &str, host_database: &str) -> Home {
        let name = format!("{name_prefix}{key}");
        Home {
            database: host_database.to_owned(),
            schema: name.clone(),
            role: name,
            login_role: format!("{name_prefix}authenticator"),
        }
    }

    fn connection_affinity(&self) -> bool {
        true
    }

    fn shares_tables(&self) -> bool {
        false
    }
}
