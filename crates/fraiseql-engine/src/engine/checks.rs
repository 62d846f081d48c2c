//! Start-up and readiness checks: every database reachable and matching the schema.

use std::sync::Arc;

use fraiseql_config::TENANT_DATABASE;

use super::{Engine, EngineError};
use crate::catalog_check;
use crate::identity::RequestContext;
use crate::routing::session;
use crate::tenancy::TenantRecord;

impl Engine {
    /// Connects to every database and checks the schema against it: the start-up gate.
    /// With tenancy, the tenant schema is checked on the first active tenant (if any).
    pub async fn check_databases(&self) -> Result<(), EngineError> {
        if let Some(tenants) = &self.tenants {
            let unreachable = |reason: String| EngineError::Unreachable {
                name: self.config.multi_tenancy.registry.clone(),
                reason,
            };
            if let Some(rec) = tenants
                .any_active()
                .await
                .map_err(|e| unreachable(e.to_string()))?
            {
                self.check_tenant(&rec).await?;
            }
        }
        for name in self
            .pools()
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
        {
            self.check_database(&name).await?;
        }
        Ok(())
    }

    /// Connects to tenant `rec` as the server does (its role, its schema) and checks the tenant
    /// schema there.
    pub async fn check_tenant(&self, rec: &Arc<TenantRecord>) -> Result<(), EngineError> {
        if self.routes.tenants().is_none() {
            return Ok(());
        }
        let name = format!("tenant `{}`", rec.key);
        let bad = |reason: String| EngineError::Unreachable {
            name: name.clone(),
            reason,
        };
        // As the tenant sees it: its role, its schema.
        let ctx = RequestContext {
            tenant: Some(rec.clone()),
            ..RequestContext::default()
        };
        let (lease, values) = self
            .routes
            .route(&ctx, TENANT_DATABASE)
            .await
            .map_err(|e| bad(e.message))?;
        session::begin(&lease, &values, false)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let problems = catalog_check::check(lease.client(), &self.schema.catalog, TENANT_DATABASE)
            .await
            .map_err(|e| bad(e.to_string()));
        let outbox = if self.config.observers.enabled && !self.observers.is_empty() {
            outbox_is_current(&lease)
                .await
                .map_err(|e| bad(e.to_string()))
        } else {
            Ok(true)
        };
        let _ = session::end(&lease, false).await;
        let problems = problems?;
        if !outbox? {
            return Err(EngineError::OutboxOutdated(name));
        }
        if !problems.is_empty() {
            return Err(EngineError::Catalog {
                database: name,
                problems,
            });
        }
        Ok(())
    }

    /// Connects to `[databases.<name>]` and checks the schema's types of that database.
    pub async fn check_database(&self, name: &str) -> Result<(), EngineError> {
        let unreachable = |reason: String| EngineError::Unreachable {
            name: name.to_owned(),
            reason,
        };
        let db = self
            .pools()
            .get(name)
            .ok_or_else(|| unreachable("not configured".to_owned()))?;
        let client = db.lease().await.map_err(|e| unreachable(e.to_string()))?;
        let problems = catalog_check::check(client.client(), &self.schema.catalog, name)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !problems.is_empty() {
            return Err(EngineError::Catalog {
                database: name.to_owned(),
                problems,
            });
        }
        Ok(())
    }
}

/// Whether the tenant's outbox (as its search path finds it) has the columns this version
/// writes (`traceparent`): an older one fails every mutation with observers until `fraiseql
/// migrate` adds them.
async fn outbox_is_current(
    lease: &crate::connections::Lease,
) -> Result<bool, tokio_postgres::Error> {
    let row = lease
        .client()
        .query_one(
            "SELECT to_regclass('fraiseql_outbox') IS NULL OR EXISTS (SELECT 1 FROM pg_attribute \
             WHERE attrelid = to_regclass('fraiseql_outbox') AND attname = 'traceparent' AND NOT attisdropped)",
            &[],
        )
        .await?;
    Ok(row.get(0))
}
