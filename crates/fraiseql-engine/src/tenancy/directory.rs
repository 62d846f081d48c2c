//! Routing at run time: tenant key -> registry row (cached a few seconds, so new, suspended and
//! resumed tenants are seen without a restart) -> a lazily built pool for its database, closed
//! when idle, all pools together under one connection budget.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use fraiseql_config::{Config, TENANT_DATABASE};

use super::keys;
use super::pool::{Lease, PoolError, TenantPools};
use super::registry::{self, TenantRecord, TenantStatus};
use crate::db::pg_config;
use crate::error::{ErrorCode, GraphqlError};

/// How long a registry answer (including "no such tenant") is trusted.
const RECORD_TTL: Duration = Duration::from_secs(3);

/// Why a request cannot be routed to a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// The header is not a tenant key (400).
    #[error("invalid tenant: {0}")]
    Invalid(String),
    /// No active tenant has this key (403; unknown and not-yet-provisioned look the same).
    #[error("unknown tenant")]
    Unknown,
    /// The tenant is suspended (503).
    #[error("tenant is suspended")]
    Suspended,
    /// The registry cannot be read (503).
    #[error("the tenant registry is unavailable")]
    RegistryUnavailable,
}

/// The tenants a server routes to. Cloning shares the caches and pools.
#[derive(Clone)]
pub struct Tenants {
    registry: Pool,
    records: moka::sync::Cache<String, Option<Arc<TenantRecord>>>,
    /// Connection settings per tenant target, built once from the registry row.
    targets: moka::sync::Cache<String, Arc<tokio_postgres::Config>>,
    pools: Arc<TenantPools>,
    idle: Duration,
    wait: Duration,
    statement_timeout: Duration,
}

impl Tenants {
    /// Routing for `config`, reading the registry through `registry` (the registry database's pool).
    pub fn new(config: &Config, registry: Pool, statement_timeout: Duration) -> Self {
        let mt = &config.multi_tenancy;
        let tenant_db = config.databases.get(TENANT_DATABASE);
        let wait = Duration::from_secs(tenant_db.map_or(5, |d| d.pool_timeout_secs));
        Self {
            registry,
            records: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(RECORD_TTL)
                .build(),
            targets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(mt.idle_pool_secs))
                .build(),
            pools: TenantPools::new(
                mt.connection_budget,
                tenant_db.map_or(10, |d| d.pool_max),
                wait,
            ),
            idle: Duration::from_secs(mt.idle_pool_secs),
            wait,
            statement_timeout,
        }
    }

    /// The active tenant `key`, from the cache or the registry.
    pub async fn resolve(&self, key: &str) -> Result<Arc<TenantRecord>, TenantError> {
        if !keys::is_valid(key) {
            return Err(TenantError::Invalid(keys::why_invalid(key)));
        }
        let rec = match self.records.get(key) {
            Some(r) => r,
            None => {
                let client = self.registry.get().await.map_err(|e| {
                    tracing::error!(error = %e, "tenant registry unavailable");
                    TenantError::RegistryUnavailable
                })?;
                let r = registry::get(&**client, key).await.map_err(|e| {
                    tracing::error!(error = %e, "tenant registry query failed");
                    TenantError::RegistryUnavailable
                })?;
                let r = r.map(Arc::new);
                self.records.insert(key.to_owned(), r.clone());
                r
            }
        };
        match rec {
            Some(r) if r.status == TenantStatus::Active => Ok(r),
            Some(r) if r.status == TenantStatus::Suspended => Err(TenantError::Suspended),
            _ => Err(TenantError::Unknown),
        }
    }

    /// One key per connection target (tenants of one `row_level` host share it).
    pub fn target_key(rec: &TenantRecord) -> String {
        format!(
            "{}\u{0}{}\u{0}{}\u{0}{}",
            rec.server, rec.database, rec.schema, rec.role
        )
    }

    fn target(&self, rec: &TenantRecord) -> Result<Arc<tokio_postgres::Config>, GraphqlError> {
        let key = Self::target_key(rec);
        if let Some(t) = self.targets.get(&key) {
            return Ok(t);
        }
        let mut cfg = pg_config("tenant", &rec.server).map_err(|e| {
            tracing::error!(tenant = %rec.key, reason = %e, "bad tenant server url");
            GraphqlError::new(
                ErrorCode::DatabaseUnavailable,
                "the tenant's database is unavailable",
            )
        })?;
        cfg.dbname(&rec.database);
        cfg.user(&rec.role);
        cfg.password(rec.password.as_bytes());
        cfg.application_name("fraiseql");
        cfg.connect_timeout(self.wait);
        // search_path is fixed at connection start-up, where no later statement can change it.
        let mut options = format!(
            "-c statement_timeout={}",
            self.statement_timeout.as_millis()
        );
        if rec.schema != "public" {
            options.push_str(&format!(" -c search_path={}", rec.schema));
        }
        cfg.options(&options);
        let cfg = Arc::new(cfg);
        self.targets.insert(key, cfg.clone());
        Ok(cfg)
    }

    /// A connection to `rec`'s database, within the global budget.
    pub async fn connection(&self, rec: &TenantRecord) -> Result<Lease, GraphqlError> {
        let target = self.target(rec)?;
        self.pools
            .get(&Self::target_key(rec), &target)
            .await
            .map_err(|e| {
                tracing::error!(tenant = %rec.key, error = %e, "no tenant connection");
                match e {
                    PoolError::Timeout => GraphqlError::new(
                        ErrorCode::DatabaseUnavailable,
                        "all database connections are busy; try again shortly",
                    ),
                    PoolError::Connect(_) => GraphqlError::new(
                        ErrorCode::DatabaseUnavailable,
                        "the tenant's database is unavailable; try again shortly",
                    ),
                }
            })
    }

    /// Every active tenant, read from the registry now.
    pub async fn active(&self) -> Result<Vec<Arc<TenantRecord>>, TenantError> {
        let client = self.registry.get().await.map_err(|e| {
            tracing::error!(error = %e, "tenant registry unavailable");
            TenantError::RegistryUnavailable
        })?;
        let all = registry::list(&**client).await.map_err(|e| {
            tracing::error!(error = %e, "tenant registry query failed");
            TenantError::RegistryUnavailable
        })?;
        Ok(all
            .into_iter()
            .filter(|r| r.status == TenantStatus::Active)
            .map(Arc::new)
            .collect())
    }

    /// Connections open to tenant databases now.
    pub fn open_connections(&self) -> usize {
        self.pools.open_connections()
    }

    /// Closes connections idle for longer than `idle_pool_secs` (called periodically).
    pub fn sweep(&self) {
        self.pools.close_idle(self.idle);
        self.targets.run_pending_tasks();
    }

    /// The first active tenant, for start-up schema checks.
    pub async fn any_active(&self) -> Result<Option<Arc<TenantRecord>>, TenantError> {
        let client = self
            .registry
            .get()
            .await
            .map_err(|_| TenantError::RegistryUnavailable)?;
        registry::ensure_table(&**client)
            .await
            .map_err(|_| TenantError::RegistryUnavailable)?;
        let all = registry::list(&**client)
            .await
            .map_err(|_| TenantError::RegistryUnavailable)?;
        Ok(all
            .into_iter()
            .find(|r| r.status == TenantStatus::Active)
            .map(Arc::new))
    }

    /// Number of tenants by status, for the banner.
    pub async fn count_active(&self) -> Result<usize, TenantError> {
        let client = self
            .registry
            .get()
            .await
            .map_err(|_| TenantError::RegistryUnavailable)?;
        registry::ensure_table(&**client)
            .await
            .map_err(|_| TenantError::RegistryUnavailable)?;
        let all = registry::list(&**client)
            .await
            .map_err(|_| TenantError::RegistryUnavailable)?;
        Ok(all
            .iter()
            .filter(|r| r.status == TenantStatus::Active)
            .count())
    }
}
