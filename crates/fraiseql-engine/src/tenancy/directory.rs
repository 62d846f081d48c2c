//! Routing at run time: tenant key -> registry row (cached a few seconds, so new, suspended and
//! resumed tenants are seen without a restart) -> a lazily built pool for its database, closed
//! when idle, all pools together under one connection budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Hook, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use fraiseql_config::{Config, TENANT_DATABASE};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::NoTls;

use super::keys;
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

/// A connection for one request, holding a share of the global budget while in use.
pub struct TenantConnection {
    /// The pooled connection.
    pub client: Object,
    _permit: OwnedSemaphorePermit,
}

/// The tenants a server routes to.
pub struct Tenants {
    registry: Pool,
    records: moka::sync::Cache<String, Option<Arc<TenantRecord>>>,
    pools: moka::sync::Cache<String, Pool>,
    budget: Arc<Semaphore>,
    budget_max: usize,
    /// Open connections across pools: +1 per connection created, - when closed by us or with an
    /// evicted pool; re-counted exactly by `sweep` (a broken connection dropped by the pool
    /// is only noticed there).
    open: Arc<AtomicUsize>,
    pool_max: usize,
    wait: Duration,
    statement_timeout: Duration,
}

impl Tenants {
    /// Routing for `config`, reading the registry through `registry` (the registry database's pool).
    pub fn new(config: &Config, registry: Pool, statement_timeout: Duration) -> Self {
        let mt = &config.multi_tenancy;
        let tenant_db = config.databases.get(TENANT_DATABASE);
        let open = Arc::new(AtomicUsize::new(0));
        let closed = open.clone();
        Self {
            registry,
            records: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(RECORD_TTL)
                .build(),
            pools: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(mt.idle_pool_secs))
                .eviction_listener(move |_key, pool: Pool, _cause| {
                    let size = pool.status().size;
                    pool.close();
                    sub(&closed, size);
                })
                .build(),
            open,
            budget: Arc::new(Semaphore::new(mt.connection_budget)),
            budget_max: mt.connection_budget,
            pool_max: tenant_db.map_or(10, |d| d.pool_max),
            wait: Duration::from_secs(tenant_db.map_or(5, |d| d.pool_timeout_secs)),
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

    fn pool_key(rec: &TenantRecord) -> String {
        format!(
            "{}\u{0}{}\u{0}{}\u{0}{}",
            rec.server, rec.database, rec.schema, rec.role
        )
    }

    fn pool(&self, rec: &TenantRecord) -> Result<Pool, GraphqlError> {
        let key = Self::pool_key(rec);
        // One pool per key even when requests race to create it.
        self.pools
            .try_get_with(key, || self.build_pool(rec))
            .map_err(|e| (*e).clone())
    }

    fn build_pool(&self, rec: &TenantRecord) -> Result<Pool, GraphqlError> {
        let unavailable = |reason: String| {
            tracing::error!(tenant = %rec.key, reason, "cannot build tenant pool");
            GraphqlError::new(
                ErrorCode::DatabaseUnavailable,
                "the tenant's database is unavailable",
            )
        };
        let mut cfg = pg_config("tenant", &rec.server).map_err(|e| unavailable(e.to_string()))?;
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
        let manager = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let opened = self.open.clone();
        let pool = Pool::builder(manager)
            .post_create(Hook::sync_fn(move |_, _| {
                opened.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }))
            .max_size(self.pool_max)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.wait))
            .create_timeout(Some(self.wait))
            .build()
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(pool)
    }

    /// A connection to `rec`'s database, within the global budget.
    pub async fn connection(&self, rec: &TenantRecord) -> Result<TenantConnection, GraphqlError> {
        let busy = || {
            GraphqlError::new(
                ErrorCode::DatabaseUnavailable,
                "all database connections are busy; try again shortly",
            )
        };
        let permit = tokio::time::timeout(self.wait, self.budget.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let pool = self.pool(rec)?;
        self.trim_idle(&Self::pool_key(rec));
        let client = pool.get().await.map_err(|e| {
            tracing::error!(tenant = %rec.key, error = %e, "no tenant connection");
            GraphqlError::new(
                ErrorCode::DatabaseUnavailable,
                "the tenant's database is unavailable; try again shortly",
            )
        })?;
        Ok(TenantConnection {
            client,
            _permit: permit,
        })
    }

    /// Open connections across all tenant pools (exact: counts every pool).
    pub fn open_connections(&self) -> usize {
        self.pools.iter().map(|(_, p)| p.status().size).sum()
    }

    /// Open connections as tracked on the hot path (see `open`).
    pub fn open_connections_tracked(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Keeps open connections (busy + idle, all pools) under the budget by closing idle
    /// connections of pools other than `keep`.
    fn trim_idle(&self, keep: &str) {
        if self.open.load(Ordering::Relaxed) < self.budget_max {
            return;
        }
        let open = self.open_connections();
        if open < self.budget_max {
            self.open.store(open, Ordering::Relaxed);
            return;
        }
        let mut excess = open + 1 - self.budget_max;
        for (key, p) in self.pools.iter() {
            if excess == 0 {
                break;
            }
            if key.as_str() == keep {
                continue;
            }
            let close = p.status().available.min(excess);
            if close > 0 {
                let mut seen = 0;
                let removed = p
                    .retain(|_, _| {
                        seen += 1;
                        seen > close
                    })
                    .removed
                    .len();
                sub(&self.open, removed);
                excess = excess.saturating_sub(removed);
            }
        }
    }

    /// Closes idle connections of every pool and drops pools that expired (called periodically).
    pub fn sweep(&self) {
        self.pools.run_pending_tasks();
        for (_, p) in self.pools.iter() {
            p.retain(|_, m| m.last_used() < Duration::from_secs(30));
        }
        self.open.store(self.open_connections(), Ordering::Relaxed);
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

fn sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}
