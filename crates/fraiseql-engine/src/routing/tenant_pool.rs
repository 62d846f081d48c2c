//! Connections to tenants: one pool under a global budget for every tenant, each tenant with a
//! share of it (`[databases.tenant] pool_max`), so one tenant's slow queries cannot take every
//! connection. Tenants whose login target is the same (one host database for
//! `schema_per_tenant` and `row_level`) share connections; each transaction switches to the
//! tenant's role and schema (`session.rs`).

use std::sync::Arc;
use std::time::Duration;

use fraiseql_config::{Config, TENANT_DATABASE};

use crate::connections::{parse_url, Lease, Pool, PoolError, PoolSize, Target};
use crate::error::{ErrorCode, GraphqlError};
use crate::tenancy::TenantRecord;

/// The tenants' pool and their login targets. Cloning shares them.
#[derive(Clone)]
pub struct TenantPool {
    /// Connection settings per login target, built once from the registry row.
    targets: moka::sync::Cache<Box<str>, Arc<Target>>,
    pool: Arc<Pool>,
    idle: Duration,
    wait: Duration,
    statement_timeout: Duration,
}

impl TenantPool {
    /// The pool for `config`'s `[multi_tenancy]` budget; statements time out after
    /// `statement_timeout`.
    pub fn new(config: &Config, statement_timeout: Duration) -> Self {
        let mt = &config.multi_tenancy;
        let tenant_db = config.databases.get(TENANT_DATABASE);
        let wait = Duration::from_secs(tenant_db.map_or(5, |d| d.pool_timeout_secs));
        Self {
            targets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(mt.idle_pool_secs))
                .build(),
            pool: Pool::new(PoolSize {
                budget: mt.connection_budget,
                per_share: tenant_db.map_or(10, |d| d.pool_max),
                wait,
                statements: config.limits.prepared_statements,
            }),
            idle: Duration::from_secs(mt.idle_pool_secs),
            wait,
            statement_timeout,
        }
    }

    /// The login target of `rec`: tenants of one `row_level` or `schema_per_tenant` host share it.
    pub fn target_key(rec: &TenantRecord) -> String {
        format!("{}\u{0}{}\u{0}{}", rec.server, rec.database, rec.login_role)
    }

    fn target(&self, rec: &TenantRecord) -> Result<Arc<Target>, GraphqlError> {
        if let Some(t) = rec.derived.target.get() {
            return Ok(t.clone());
        }
        let key = Self::target_key(rec);
        if let Some(t) = self.targets.get(key.as_str()) {
            let _ = rec.derived.target.set(t.clone());
            return Ok(t);
        }
        let base = parse_url("tenant", &rec.server).map_err(|e| {
            tracing::error!(tenant = %rec.key, reason = %e, "bad tenant server url");
            GraphqlError::new(
                ErrorCode::DatabaseUnavailable,
                "the tenant's database is unavailable",
            )
        })?;
        let timeout = self.statement_timeout.as_millis();
        let target = base.derive(&format!("{}\u{0}{}", rec.database, rec.login_role), |cfg| {
            cfg.dbname(&rec.database);
            cfg.user(&rec.login_role);
            cfg.password(rec.login_password.as_bytes());
            cfg.application_name("fraiseql");
            cfg.connect_timeout(self.wait);
            cfg.options(format!("-c statement_timeout={timeout}"));
        });
        let target = Arc::new(target);
        self.targets.insert(Box::from(key.as_str()), target.clone());
        let _ = rec.derived.target.set(target.clone());
        Ok(target)
    }

    /// A connection for `rec` (its login target), within the global budget and the tenant's share.
    /// The caller switches to the tenant's role and schema in its transaction.
    pub async fn connection(&self, rec: &TenantRecord) -> Result<Lease, GraphqlError> {
        let target = self.target(rec)?;
        let (affinity, scope) = rec
            .derived
            .sharing
            .as_ref()
            .map_or((None, None), |(a, s)| (Some(*a), Some(s.clone())));
        // The plan's weight once a request of the tenant resolved it (the event relay's and
        // start-up checks' connections wait with weight 1).
        let weight = crate::tenancy::tiers::resolved(rec).map_or(1, |t| t.weight);
        let lease = self
            .pool
            .get(&target, &rec.key, weight, affinity)
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
            })?;
        Ok(lease.with_scope(scope))
    }

    /// The pool (for metrics and tests).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Connections open to tenant databases now.
    pub fn open_connections(&self) -> usize {
        self.pool.open_connections()
    }

    /// Closes connections idle for longer than `idle_pool_secs` (called periodically).
    pub fn sweep(&self) {
        self.pool.close_idle(self.idle);
        self.targets.run_pending_tasks();
    }
}
