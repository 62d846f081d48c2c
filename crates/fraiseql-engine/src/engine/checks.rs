//! Start-up and readiness checks: every database reachable and matching the schema.

use std::sync::Arc;

use fraiseql_config::TENANT_DATABASE;
use fraiseql_schema::ViewColumns;

use super::{Engine, EngineError};
use crate::catalog_check;
use crate::identity::RequestContext;
use crate::routing::session;
use crate::tenancy::TenantRecord;

impl Engine {
    /// Connects to every database and checks the schema against it: the start-up gate.
    /// With tenancy, the tenant schema is checked on the first active tenant (if any).
    ///
    /// The views' columns read on the way are kept (the first time): from then on, `where`
    /// filters on fields whose `data` key a same-named column holds compare that column.
    /// Without an active tenant at start-up, the tenant views' columns stay unknown and those
    /// filters compare the `data` keys.
    pub async fn check_databases(&self) -> Result<(), EngineError> {
        let mut found = Vec::new();
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
                found.extend(self.check_tenant_found(&rec).await?);
            }
        }
        for name in self
            .pools()
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
        {
            found.extend(self.check_database_found(&name).await?);
        }
        let mut catalog = self.schema.catalog.clone();
        for (ty, columns) in found {
            catalog.columns.insert(ty, columns);
        }
        // Set once: plans made with one set of columns stay right.
        let _ = self.found.set(catalog);
        Ok(())
    }

    /// Connects to tenant `rec` as the server does (its role, its schema) and checks the tenant
    /// schema there.
    pub async fn check_tenant(&self, rec: &Arc<TenantRecord>) -> Result<(), EngineError> {
        self.check_tenant_found(rec).await.map(drop)
    }

    async fn check_tenant_found(
        &self,
        rec: &Arc<TenantRecord>,
    ) -> Result<Vec<(String, ViewColumns)>, EngineError> {
        if self.routes.tenants().is_none() {
            return Ok(Vec::new());
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
        let checked =
            catalog_check::check_and_find(lease.client(), &self.schema.catalog, TENANT_DATABASE)
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
        let (problems, found) = checked?;
        if !outbox? {
            return Err(EngineError::OutboxOutdated(name));
        }
        if !problems.is_empty() {
            return Err(EngineError::Catalog {
                database: name,
                problems,
            });
        }
        Ok(found)
    }

    /// Connects to `[databases.<name>]` and checks the schema's types of that database.
    pub async fn check_database(&self, name: &str) -> Result<(), EngineError> {
        self.check_database_found(name).await.map(drop)
    }

    async fn check_database_found(
        &self,
        name: &str,
    ) -> Result<Vec<(String, ViewColumns)>, EngineError> {
        let unreachable = |reason: String| EngineError::Unreachable {
            name: name.to_owned(),
            reason,
        };
        let db = self
            .pools()
            .get(name)
            .ok_or_else(|| unreachable("not configured".to_owned()))?;
        let client = db.lease().await.map_err(|e| unreachable(e.to_string()))?;
        let (problems, found) =
            catalog_check::check_and_find(client.client(), &self.schema.catalog, name)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        if !problems.is_empty() {
            return Err(EngineError::Catalog {
                database: name.to_owned(),
                problems,
            });
        }
        Ok(found)
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
