//! The registry as servers see it: tenant key -> registry row, cached a few seconds (so new,
//! suspended and resumed tenants are seen without a restart) and refreshed in the background for
//! busy tenants. Which connection serves a tenant is `routing`'s business, not this module's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql_config::{Config, TENANT_DATABASE};
use moka::Expiry;
use tokio::sync::Semaphore;

use super::keys;
use super::registry::{self, TenantRecord, TenantStatus};
use crate::connections::{Database, Lease};

/// How long a registry answer about an active tenant is trusted: a suspension (or a move's)
/// reaches every running server within this (`fraiseql tenant move` waits it out).
pub const RECORD_TTL: Duration = Duration::from_secs(3);
/// How long a registry answer about a suspended (or provisioning) tenant is trusted: short, so
/// a resumed or moved tenant is served again within a second.
pub const SUSPENDED_TTL: Duration = Duration::from_secs(1);
/// How long "no such tenant" is trusted: short, so a new tenant is served quickly, long enough
/// that a flood of unknown keys costs the registry one query per key per second at most.
const UNKNOWN_TTL: Duration = Duration::from_secs(1);
/// How often [`Tenants::refresh`] should run (`fraiseql serve` runs it on this tick).
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// An active record used since the last refresh is re-read once it is this old, so with one
/// refresh per [`REFRESH_EVERY`] it is re-read before it expires (`RECORD_TTL`) as long as the
/// refresh's query takes less than half a second.
const REFRESH_AFTER: Duration = Duration::from_millis(1500);
/// Records per refresh statement: an answer (about 400 bytes a row) stays small, and so does
/// the registry connection's read buffer. With 1,000 busy tenants, 1,000 rows a statement, each
/// built into a new record, held 2 MiB more resident memory than no refresh; 100 rows compared
/// in place ([`registry::reread`]) hold none (an ad hoc A/B of the server's VmRSS).
const REFRESH_BATCH: usize = 100;
/// Bytes of cached registry answers.
const RECORDS_BYTES: u64 = 16 * 1024 * 1024;

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

/// A cached registry answer.
struct Entry {
    /// The row (`None`: no such tenant).
    rec: Option<Arc<TenantRecord>>,
    /// When the statement that read it was sent: the answer is trusted for its TTL from then, so
    /// a change in the registry is seen within the TTL however long the read took.
    read_at: Instant,
    /// A request used it since the last refresh (only those are refreshed; the rest expire).
    used: AtomicBool,
}

impl Entry {
    fn new(rec: Option<Arc<TenantRecord>>, read_at: Instant, used: bool) -> Arc<Self> {
        Arc::new(Self {
            rec,
            read_at,
            used: AtomicBool::new(used),
        })
    }

    fn ttl(&self) -> Duration {
        match &self.rec {
            Some(r) if r.status == TenantStatus::Active => RECORD_TTL,
            Some(_) => SUSPENDED_TTL,
            None => UNKNOWN_TTL,
        }
    }
}

struct RecordExpiry;

impl Expiry<String, Arc<Entry>> for RecordExpiry {
    fn expire_after_create(&self, _: &String, e: &Arc<Entry>, now: Instant) -> Option<Duration> {
        Some(
            e.ttl()
                .saturating_sub(now.saturating_duration_since(e.read_at)),
        )
    }

    // A refresh replaces the entry: its clock starts at the new read (moka's default would keep
    // the old entry's expiry).
    fn expire_after_update(
        &self,
        key: &String,
        e: &Arc<Entry>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, e, now)
    }
}

/// The tenants a server routes to. Cloning shares the caches and pools.
#[derive(Clone)]
pub struct Tenants {
    registry: Arc<Database>,
    /// Registry answers: one look-up per key at a time (single flight), unknown keys cached too.
    /// Busy tenants' records are re-read in batches by [`Tenants::refresh`] before they expire.
    records: moka::future::Cache<String, Arc<Entry>>,
    /// Bumped by [`Tenants::forget`]: a refresh that read the registry before it does not store
    /// what it read.
    forgotten: Arc<AtomicU64>,
    /// Registry queries in flight at once: fewer than the registry pool holds, so a flood of
    /// unknown keys leaves it room for everything else.
    lookups: Arc<Semaphore>,
    /// How long a registry look-up waits for its turn.
    wait: Duration,
    lookups_done: Arc<AtomicU64>,
    refreshed: Arc<AtomicU64>,
}

impl Tenants {
    /// The registry of `config`, read through `registry` (the registry database).
    pub fn new(config: &Config, registry: Arc<Database>) -> Self {
        let mt = &config.multi_tenancy;
        let tenant_db = config.databases.get(TENANT_DATABASE);
        let wait = Duration::from_secs(tenant_db.map_or(5, |d| d.pool_timeout_secs));
        let registry_size = config.databases.get(&mt.registry).map_or(2, |d| d.pool_max);
        Self {
            registry,
            records: moka::future::Cache::builder()
                .weigher(|k: &String, v: &Arc<Entry>| {
                    u32::try_from(k.len() + if v.rec.is_some() { 1024 } else { 64 })
                        .unwrap_or(u32::MAX)
                })
                .max_capacity(RECORDS_BYTES)
                .expire_after(RecordExpiry)
                .build(),
            forgotten: Arc::default(),
            lookups: Arc::new(Semaphore::new(registry_size.saturating_sub(1).max(1))),
            wait,
            lookups_done: Arc::default(),
            refreshed: Arc::default(),
        }
    }

    /// Registry queries made so far for request routing.
    pub fn registry_lookups(&self) -> u64 {
        self.lookups_done.load(Ordering::Relaxed)
    }

    /// Records re-read by [`Tenants::refresh`] so far.
    pub fn records_refreshed(&self) -> u64 {
        self.refreshed.load(Ordering::Relaxed)
    }

    /// A registry connection and a turn among the registry queries in flight (`lookups`); the
    /// turn lasts as long as the returned permit.
    async fn registry_turn(
        &self,
    ) -> Result<(tokio::sync::SemaphorePermit<'_>, Lease), TenantError> {
        let turn = tokio::time::timeout(self.wait, self.lookups.acquire())
            .await
            .map_err(|_| TenantError::RegistryUnavailable)?
            .map_err(|_| TenantError::RegistryUnavailable)?;
        let client = self.registry.lease().await.map_err(|e| {
            tracing::error!(error = %e, "tenant registry unavailable");
            TenantError::RegistryUnavailable
        })?;
        Ok((turn, client))
    }

    async fn fetch(&self, key: &str) -> Result<Arc<Entry>, TenantError> {
        let (_turn, client) = self.registry_turn().await?;
        self.lookups_done.fetch_add(1, Ordering::Relaxed);
        let read_at = Instant::now();
        let r = registry::get(client.client(), key).await.map_err(|e| {
            tracing::error!(error = %e, "tenant registry query failed");
            TenantError::RegistryUnavailable
        })?;
        Ok(Entry::new(r.map(Arc::new), read_at, true))
    }

    /// The active tenant `key`, from the cache or the registry.
    pub async fn resolve(&self, key: &str) -> Result<Arc<TenantRecord>, TenantError> {
        if !keys::is_valid(key) {
            return Err(TenantError::Invalid(keys::why_invalid(key)));
        }
        let entry = match self.records.get(key).await {
            Some(e) => e,
            // Boxed: a miss is rare and its future large.
            None => Box::pin(self.records.try_get_with_by_ref(key, self.fetch(key)))
                .await
                .map_err(|e: Arc<TenantError>| (*e).clone())?,
        };
        // Read first: most requests find it set and leave the cache line alone.
        if !entry.used.load(Ordering::Relaxed) {
            entry.used.store(true, Ordering::Relaxed);
        }
        match &entry.rec {
            Some(r) if r.status == TenantStatus::Active => Ok(r.clone()),
            Some(r) if r.status == TenantStatus::Suspended => Err(TenantError::Suspended),
            _ => Err(TenantError::Unknown),
        }
    }

    /// Forgets what is cached about `key` (the next request reads the registry).
    pub async fn forget(&self, key: &str) {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        self.records.invalidate(key).await;
    }

    /// Re-reads, a batch per statement, the active records that requests used since the last
    /// refresh and that are due ([`REFRESH_AFTER`] old), and caches the answers afresh; returns
    /// how many it re-read. Run every [`REFRESH_EVERY`], it keeps a busy tenant's record from
    /// ever expiring under its requests: with 1,000 busy tenants that is five registry statements
    /// a second instead of a look-up per tenant every `RECORD_TTL` (~330 a second), while a
    /// suspension or a move is still seen within `RECORD_TTL` (a record is trusted for that long
    /// from its read, whichever path read it). Records no request used expire as before.
    pub async fn refresh(&self) -> Result<usize, TenantError> {
        let now = Instant::now();
        let due: Vec<(Arc<String>, Arc<Entry>)> = self
            .records
            .iter()
            .filter(|(_, e)| {
                matches!(&e.rec, Some(r) if r.status == TenantStatus::Active)
                    && now.saturating_duration_since(e.read_at) >= REFRESH_AFTER
                    && e.used.swap(false, Ordering::Relaxed)
            })
            .collect();
        let mut done = 0;
        for batch in due.chunks(REFRESH_BATCH) {
            done += self.refresh_batch(batch).await?;
        }
        Ok(done)
    }

    async fn refresh_batch(
        &self,
        batch: &[(Arc<String>, Arc<Entry>)],
    ) -> Result<usize, TenantError> {
        let (_turn, client) = self.registry_turn().await?;
        let generation = self.forgotten.load(Ordering::SeqCst);
        let cached: Vec<&TenantRecord> =
            batch.iter().filter_map(|(_, e)| e.rec.as_deref()).collect();
        let read_at = Instant::now();
        let now = registry::reread(client.client(), &cached)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "tenant registry refresh failed");
                TenantError::RegistryUnavailable
            })?;
        drop(client);
        if self.forgotten.load(Ordering::SeqCst) != generation {
            // A key was forgotten while we read: what we read may predate the change.
            return Ok(0);
        }
        // `batch` holds active records only, so `cached` and `now` line up with it.
        for ((key, old), now) in batch.iter().zip(now) {
            let rec = match now {
                // Unchanged: keep the record, and with it what was derived from it.
                registry::Reread::Unchanged => old.rec.clone(),
                registry::Reread::Changed(new) => Some(Arc::new(*new)),
                registry::Reread::Gone => None,
            };
            self.records
                .insert(key.as_ref().clone(), Entry::new(rec, read_at, false))
                .await;
        }
        self.refreshed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(batch.len())
    }

    /// Every active tenant, read from the registry now.
    pub async fn active(&self) -> Result<Vec<Arc<TenantRecord>>, TenantError> {
        Ok(self
            .all()
            .await?
            .into_iter()
            .filter(|r| r.status == TenantStatus::Active)
            .collect())
    }

    async fn all(&self) -> Result<Vec<Arc<TenantRecord>>, TenantError> {
        let client = self.registry.lease().await.map_err(|e| {
            tracing::error!(error = %e, "tenant registry unavailable");
            TenantError::RegistryUnavailable
        })?;
        registry::ensure_table(client.client()).await.map_err(|e| {
            tracing::error!(error = %e, "tenant registry tables could not be created");
            TenantError::RegistryUnavailable
        })?;
        let all = registry::list(client.client()).await.map_err(|e| {
            tracing::error!(error = %e, "tenant registry query failed");
            TenantError::RegistryUnavailable
        })?;
        Ok(all.into_iter().map(Arc::new).collect())
    }

    /// The first active tenant, for start-up schema checks.
    pub async fn any_active(&self) -> Result<Option<Arc<TenantRecord>>, TenantError> {
        Ok(self.active().await?.into_iter().next())
    }

    /// Number of active tenants, for the banner.
    pub async fn count_active(&self) -> Result<usize, TenantError> {
        Ok(self.active().await?.len())
    }
}
