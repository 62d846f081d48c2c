//! Routing: which connection serves a request on a database, and what its transaction sets
//! first. This is the one place that tells the tenant database (the tenant's own connection
//! target, its role and schema) from the shared ones (`[databases.<name>]` pools); execution,
//! the event relay and start-up checks ask [`Routes`] and never decide it themselves.

pub mod session;
mod tenant_pool;

use std::sync::Arc;

use fraiseql_config::TENANT_DATABASE;

pub use session::SessionContext;
pub use tenant_pool::TenantPool;

use crate::connections::{Lease, Pools};
use crate::error::GraphqlError;
use crate::identity::RequestContext;
use crate::tenancy::TenantRecord;

/// Where one database of a request lives.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    /// The request's tenant's database (or schema, or rows): its connection target, role and
    /// search_path.
    Tenant(&'a TenantRecord),
    /// A pooled database (`[databases.<name>]`), the tenant database too when tenancy is off.
    Pooled(&'a str),
}

/// The connections a server routes requests to. Cloning shares them.
#[derive(Clone)]
pub struct Routes {
    pools: Arc<Pools>,
    tenants: Option<TenantPool>,
}

impl Routes {
    /// Routes over `pools`, and over `tenants` when multi-tenancy is on.
    pub fn new(pools: Arc<Pools>, tenants: Option<TenantPool>) -> Self {
        Self { pools, tenants }
    }

    /// Where `database` is for `tenant` (the request's tenant, if any).
    pub fn place<'a>(tenant: Option<&'a TenantRecord>, database: &'a str) -> Place<'a> {
        match tenant {
            Some(rec) if database == TENANT_DATABASE => Place::Tenant(rec),
            _ => Place::Pooled(database),
        }
    }

    /// A connection to `database` for `ctx`, and the context its transactions set first.
    pub async fn route<'c>(
        &self,
        ctx: &'c RequestContext,
        database: &str,
    ) -> Result<(Lease, SessionContext<'c>), GraphqlError> {
        let place = Self::place(ctx.tenant.as_deref(), database);
        let lease = self.lease(place).await?;
        Ok((
            lease,
            SessionContext::new(ctx, matches!(place, Place::Tenant(_))),
        ))
    }

    /// A connection to `place`.
    pub async fn lease(&self, place: Place<'_>) -> Result<Lease, GraphqlError> {
        match (place, &self.tenants) {
            (Place::Tenant(rec), Some(tenants)) => tenants.connection(rec).await,
            (Place::Tenant(_), None) => self.pools.lease(TENANT_DATABASE).await,
            (Place::Pooled(name), _) => self.pools.lease(name).await,
        }
    }

    /// The pooled databases.
    pub fn pools(&self) -> &Arc<Pools> {
        &self.pools
    }

    /// The tenants' pool, when multi-tenancy is on.
    pub fn tenants(&self) -> Option<&TenantPool> {
        self.tenants.as_ref()
    }
}
