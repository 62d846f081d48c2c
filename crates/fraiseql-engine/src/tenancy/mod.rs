//! Tenancy: the registry of tenants (in a shared database), provisioning, and routing a request
//! to its tenant's connections. Every transaction switches to the tenant's role (and schema) and
//! sets `app.tenant_id`, so the example's row-level security policies are a second wall behind
//! the routing.

pub mod directory;
pub mod keys;
pub mod registry;
pub mod strategy;
pub mod tiers;
pub mod usage;

pub use directory::{TenantError, Tenants};
pub use registry::{TenantRecord, TenantStatus};
pub use tiers::{Tier, Tiers};
