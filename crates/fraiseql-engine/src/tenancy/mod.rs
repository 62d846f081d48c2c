//! Tenancy: the registry of tenants (in a shared database), provisioning, and routing a request
//! to its tenant's pool. Every strategy also sets `app.tenant_id` in each transaction, so the
//! example's row-level security policies are a second wall behind the routing.

pub mod directory;
pub mod keys;
pub mod pool;
pub mod provision;
pub mod registry;

pub use directory::{TenantError, Tenants};
pub use pool::Lease;
pub use registry::{TenantRecord, TenantStatus};
