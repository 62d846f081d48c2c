//! The result cache of `@cache` root fields: answers kept per tenant, roles (and user),
//! statement and arguments, bounded by bytes (moka's weigher), each for its field's TTL.
//!
//! Invalidation by generations: every (tenant, entity) has a counter that each committed
//! mutation of that entity moves on, before the mutation's response is sent (and on the other
//! server instances through NATS, [`bus`], whose acknowledgements it waits for). An answer is
//! kept under the sum of the counters of what it reads, taken BEFORE its statement runs: after a
//! mutation, lookups compute another key, so no answer read before the commit can be found
//! again, even one stored after it. Nothing is scanned or removed; outdated answers age out
//! (TTL) or are evicted (bytes).

pub mod bus;
pub mod invalidate;
mod lookup;

pub use lookup::Lookups;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fraiseql_plan::{CachePlan, ANY_ENTITY};
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::metrics::Metrics;

/// What a cached answer is kept under: two keys are equal only if every part is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The tenant's key (`""`: no tenancy).
    pub tenant: Arc<str>,
    /// The caller's roles, as the `app.roles` text.
    pub roles: Option<Arc<str>>,
    /// The caller, for `perUser` fields.
    pub user: Option<Arc<str>>,
    /// The statement (it holds the selection).
    pub sql: Arc<str>,
    /// Its parameters (the arguments).
    pub params: Arc<[String]>,
    /// The generations of what it reads, when it was looked up.
    pub generation: u64,
}

impl CacheKey {
    fn bytes(&self) -> usize {
        self.tenant.len()
            + self.roles.as_deref().map_or(0, str::len)
            + self.user.as_deref().map_or(0, str::len)
            + self.sql.len()
            + self.params.iter().map(|p| p.len() + 24).sum::<usize>()
            + 96
    }
}

/// A cached answer.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The field's JSON.
    pub json: Bytes,
    /// When it was read.
    pub at: Instant,
    /// How long it is kept.
    pub ttl: Duration,
}

impl Cached {
    /// Seconds since it was read (`Age`).
    pub fn age_secs(&self) -> u64 {
        self.at.elapsed().as_secs()
    }

    /// Seconds it stays fresh (`Cache-Control: max-age`).
    pub fn max_age_secs(&self) -> u64 {
        self.ttl.saturating_sub(self.at.elapsed()).as_secs()
    }
}

struct Ttl;

impl moka::Expiry<CacheKey, Cached> for Ttl {
    fn expire_after_create(&self, _: &CacheKey, v: &Cached, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// One entry may take at most this share of the cache (a huge answer is not worth evicting
/// everything else for).
const ADMISSION_FRACTION: u64 = 16;

/// The result cache.
pub struct ResultCache {
    entries: Cache<CacheKey, Cached, foldhash::fast::RandomState>,
    /// `(tenant, entity)` -> its generation. `*` is moved by every mutation of the tenant (what
    /// answers of unknown reads depend on); `!` by mutations that do not say what they change
    /// (what every answer of the tenant depends on).
    counters: Cache<(Arc<str>, Arc<str>), Arc<AtomicU64>, foldhash::fast::RandomState>,
    /// Moved by every invalidation: a counter created (or re-created after eviction) starts
    /// here, never below a value it had before.
    clock: AtomicU64,
    /// In every key: moved when invalidations from other instances may have been missed.
    epoch: AtomicU64,
    max_entry: u64,
    /// Answers are neither served nor kept while invalidations from other instances may be
    /// missed (NATS configured but not connected).
    serving: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
}

/// Moved by mutations that do not say which entities they change.
const UNDECLARED: &str = "!";

impl ResultCache {
    /// A cache of at most `max_bytes`.
    pub fn new(max_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.clone();
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &CacheKey, v: &Cached| {
                u32::try_from(k.bytes() + v.json.len() + 64).unwrap_or(u32::MAX)
            })
            .expire_after(Ttl)
            .eviction_listener(move |_, _, cause| {
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    evictions.cache_evicted(1);
                }
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            entries,
            // Tenants come from the registry and entities from the schema, so this is bounded
            // by them; it is a bounded cache anyway (see `clock`).
            counters: Cache::builder()
                .max_capacity(1_000_000)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            clock: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            max_entry: max_bytes / ADMISSION_FRACTION,
            serving: std::sync::atomic::AtomicBool::new(true),
            metrics,
        }
    }

    fn counter(&self, tenant: &Arc<str>, entity: &str) -> Arc<AtomicU64> {
        let key = (tenant.clone(), Arc::<str>::from(entity));
        self.counters.get_with(key, || {
            Arc::new(AtomicU64::new(self.clock.load(Ordering::Acquire)))
        })
    }

    /// The generation an answer of `tenant` reading `reads` is kept under now.
    pub fn generation(&self, tenant: &Arc<str>, reads: &[String]) -> u64 {
        let mut g = self
            .epoch
            .load(Ordering::Acquire)
            .wrapping_mul(1 << 32)
            .wrapping_add(self.counter(tenant, UNDECLARED).load(Ordering::Acquire));
        for r in reads {
            g = g.wrapping_add(self.counter(tenant, r).load(Ordering::Acquire));
        }
        g
    }

    /// The cached answer for `key`, if fresh.
    pub fn get(&self, key: &CacheKey) -> Option<Cached> {
        if !self.serving.load(Ordering::Acquire) {
            return None;
        }
        let hit = self.entries.get(key);
        self.metrics.cache_lookup(&key.tenant, hit.is_some());
        hit
    }

    /// Keeps `json` for `key` (whose generation was taken before the statement ran).
    pub fn insert(&self, key: CacheKey, json: Bytes, plan: &CachePlan) {
        if !self.serving.load(Ordering::Acquire) {
            return;
        }
        let weight = (key.bytes() + json.len()) as u64;
        if weight > self.max_entry {
            return;
        }
        let value = Cached {
            json,
            at: Instant::now(),
            ttl: Duration::from_secs(u64::from(plan.ttl_secs)),
        };
        self.entries.insert(key, value);
    }

    /// A mutation of `tenant` changed `entities` (`None`: it does not say): every answer that
    /// read them (or read something unknown) is outdated from now on.
    pub fn invalidate(&self, tenant: &str, entities: Option<&[String]>) {
        let tenant: Arc<str> = Arc::from(tenant);
        let bump = |entity: &str| {
            self.clock.fetch_add(1, Ordering::AcqRel);
            self.counter(&tenant, entity).fetch_add(1, Ordering::AcqRel);
        };
        match entities {
            None => bump(UNDECLARED),
            Some(list) => {
                bump(ANY_ENTITY);
                for e in list {
                    bump(e);
                }
            }
        }
    }

    /// Stops (or resumes) serving answers. Resuming after a stop forgets every answer kept
    /// before (invalidations may have been missed meanwhile).
    pub fn set_serving(&self, on: bool) {
        let was = self.serving.swap(on, Ordering::AcqRel);
        if was != on {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            if !on {
                self.entries.invalidate_all();
            }
        }
    }

    /// Whether answers are served now.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Bytes held now.
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    /// Entries held now.
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(reads: &[&str]) -> CachePlan {
        CachePlan {
            ttl_secs: 60,
            per_user: false,
            reads: reads.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn key(c: &ResultCache, tenant: &str, p: &CachePlan) -> CacheKey {
        let tenant: Arc<str> = Arc::from(tenant);
        CacheKey {
            generation: c.generation(&tenant, &p.reads),
            tenant,
            roles: None,
            user: None,
            sql: Arc::from("SELECT 1"),
            params: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn a_mutation_outdates_what_read_its_entity_for_its_tenant_only() {
        let c = ResultCache::new(1 << 20, Arc::new(Metrics::default()));
        let projects = plan(&["Project"]);
        let config = plan(&["*"]);
        for (t, p) in [("a", &projects), ("b", &projects), ("a", &config)] {
            c.insert(key(&c, t, p), Bytes::from_static(b"[]"), p);
        }
        c.invalidate("a", Some(&["Organization".to_owned()]));
        assert!(c.get(&key(&c, "a", &projects)).is_some(), "another entity");
        assert!(c.get(&key(&c, "a", &config)).is_none(), "unknown reads");
        c.invalidate("a", Some(&["Project".to_owned()]));
        assert!(c.get(&key(&c, "a", &projects)).is_none());
        assert!(c.get(&key(&c, "b", &projects)).is_some(), "another tenant");
        c.insert(
            key(&c, "a", &projects),
            Bytes::from_static(b"[1]"),
            &projects,
        );
        c.invalidate("a", None);
        assert!(
            c.get(&key(&c, "a", &projects)).is_none(),
            "undeclared change"
        );
        assert!(c.get(&key(&c, "b", &projects)).is_some());
    }

    #[test]
    fn an_answer_read_before_a_commit_and_stored_after_it_is_never_found() {
        let c = ResultCache::new(1 << 20, Arc::new(Metrics::default()));
        let p = plan(&["Project"]);
        let before = key(&c, "a", &p);
        c.invalidate("a", Some(&["Project".to_owned()]));
        c.insert(before, Bytes::from_static(b"stale"), &p);
        assert!(c.get(&key(&c, "a", &p)).is_none());
    }

    #[test]
    fn not_serving_forgets_everything() {
        let c = ResultCache::new(1 << 20, Arc::new(Metrics::default()));
        let p = plan(&["Project"]);
        c.insert(key(&c, "a", &p), Bytes::from_static(b"[]"), &p);
        c.set_serving(false);
        assert!(c.get(&key(&c, "a", &p)).is_none());
        c.set_serving(true);
        assert!(c.get(&key(&c, "a", &p)).is_none());
    }
}
