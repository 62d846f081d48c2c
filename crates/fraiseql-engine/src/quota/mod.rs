//! Plans and quotas: the stage right after identity, before any connection is taken. A
//! tenant's tier (`tenancy::tiers`) sets its rates (`requests_per_second` + `burst`,
//! `mutations_per_second`: token buckets, `bucket.rs`) and how many of its requests may be in
//! flight on an instance (`max_concurrent`). Over a limit the request is refused at once (429,
//! never queued) with the headers of `headers.rs`.
//!
//! Every instance keeps its own buckets, so the hot path makes no network round trip; what each
//! admits is told to the others over NATS every [`exchange::REPORT_EVERY`] and subtracted from
//! their buckets (`exchange.rs`), so a tenant's rate holds across instances. The usage counters
//! (requests, rows, refusals) are added to the registry's monthly rows (`usage.rs`).

mod bucket;
pub mod exchange;
mod headers;
pub mod usage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub use headers::Header;

use crate::metrics::{Metrics, TenantMetrics};
use crate::tenancy::tiers::{Tier, Tiers};
use crate::tenancy::TenantRecord;
use bucket::Bucket;
use headers::Level;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which of a plan's limits refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `requests_per_second` / `burst`.
    Requests,
    /// `mutations_per_second`.
    Mutations,
    /// `max_concurrent`.
    Concurrent,
}

impl Limit {
    /// The `limit` label of `fraiseql_tenant_rate_limited_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Mutations => "mutations",
            Self::Concurrent => "concurrent",
        }
    }
}

const REQUESTS: usize = 0;
const MUTATIONS: usize = 1;

/// One tenant's buckets, requests in flight and counters on this instance. Kept by key for the
/// life of the process (a changed registry record finds the same one), one per tenant that had
/// a request here.
#[derive(Debug)]
pub struct TenantQuota {
    key: Arc<str>,
    buckets: Mutex<[Bucket; 2]>,
    in_flight: AtomicU32,
    /// Admissions (requests, mutations) not yet told to the other instances.
    unsent: [AtomicU64; 2],
    /// On the list of tenants with unsent admissions.
    listed: AtomicBool,
    usage: [AtomicU64; 3],
}

const USED_REQUESTS: usize = 0;
const USED_ROWS: usize = 1;
const USED_REFUSED: usize = 2;

impl TenantQuota {
    fn new(key: &str) -> Self {
        Self {
            key: Arc::from(key),
            buckets: Mutex::default(),
            in_flight: AtomicU32::new(0),
            unsent: Default::default(),
            listed: AtomicBool::new(false),
            usage: Default::default(),
        }
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, [Bucket; 2]> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request of a tenant admitted by its plan: holds its place among the tenant's requests in
/// flight until dropped, and the header fields its answer carries.
#[derive(Debug, Default)]
pub struct Admission {
    in_flight: Option<Arc<TenantQuota>>,
    /// `RateLimit-Policy`, `RateLimit`, `X-RateLimit-*` (empty when the plan limits nothing).
    pub headers: Vec<Header>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(q) = self.in_flight.take() {
            q.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A request refused by its tenant's plan: 429 with these headers and this message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The limit it ran into.
    pub limit: Limit,
    /// Whole seconds until a retry may pass (`Retry-After`).
    pub retry_after: u64,
    /// The GraphQL error's message.
    pub message: String,
    /// `Retry-After`, `RateLimit-Policy`, `RateLimit`, `X-RateLimit-*`.
    pub headers: Vec<Header>,
}

/// The plans of every tenant served here, and their counters.
pub struct Quotas {
    tiers: Tiers,
    tenants: RwLock<FastMap<Arc<str>, Arc<TenantQuota>>>,
    /// Tenants with admissions not yet told to the other instances (each listed once).
    unsent: Mutex<Vec<Arc<TenantQuota>>>,
    /// Whether the other instances are told ([`exchange`] runs).
    reporting: AtomicBool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas").finish_non_exhaustive()
    }
}

impl Quotas {
    /// The plans of `tiers`; refusals are counted in `metrics`.
    pub fn new(tiers: Tiers, metrics: Arc<Metrics>) -> Self {
        Self {
            tiers,
            tenants: RwLock::default(),
            unsent: Mutex::default(),
            reporting: AtomicBool::new(false),
            metrics,
        }
    }

    /// The tiers.
    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    /// `rec`'s counters (made on its first request here, kept by key: a changed record of the
    /// tenant finds the same).
    fn quota(&self, rec: &TenantRecord) -> Arc<TenantQuota> {
        self.by_key(&rec.key)
    }

    fn by_key(&self, key: &str) -> Arc<TenantQuota> {
        if let Some(q) = self.find(key) {
            return q;
        }
        let mut map = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        map.entry(Arc::from(key))
            .or_insert_with(|| Arc::new(TenantQuota::new(key)))
            .clone()
    }

    fn find(&self, key: &str) -> Option<Arc<TenantQuota>> {
        let map = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    /// Admits a request of `rec` (identified, not yet run), or refuses it by its plan.
    pub fn admit(&self, rec: &TenantRecord, metrics: &TenantMetrics) -> Result<Admission, Refusal> {
        let tier = self.tiers.of(rec);
        let q = &self.quota(rec);
        if !tier.limits_requests() {
            q.usage[USED_REQUESTS].fetch_add(1, Ordering::Relaxed);
            return Ok(Admission::default());
        }
        let mut admission = Admission::default();
        if let Some(max) = tier.max_concurrent {
            if q.in_flight.fetch_add(1, Ordering::Relaxed) >= max {
                q.in_flight.fetch_sub(1, Ordering::Relaxed);
                return Err(self.refuse(rec, tier, q, metrics, Limit::Concurrent, 1.0));
            }
            admission.in_flight = Some(q.clone());
        }
        let level = match tier.requests {
            None => None,
            Some(rate) => match q.buckets()[REQUESTS].take(rate, Instant::now()) {
                Ok(left) => Some(Level::of(rate, left)),
                // `admission` drops here: its place in flight is given back.
                Err(e) => {
                    return Err(self.refuse(rec, tier, q, metrics, Limit::Requests, e.wait_secs))
                }
            },
        };
        if tier.requests.is_some() {
            self.spent(q, REQUESTS);
        }
        q.usage[USED_REQUESTS].fetch_add(1, Ordering::Relaxed);
        admission.headers = headers::admitted(tier, level);
        Ok(admission)
    }

    /// Admits a mutation of `rec` (its operation type known), or refuses it by its plan's
    /// `mutations_per_second`.
    pub fn admit_mutation(
        &self,
        rec: &TenantRecord,
        metrics: &TenantMetrics,
    ) -> Result<(), Refusal> {
        let tier = self.tiers.of(rec);
        let Some(rate) = tier.mutations else {
            return Ok(());
        };
        let q = &self.quota(rec);
        let taken = q.buckets()[MUTATIONS].take(rate, Instant::now());
        match taken {
            Ok(_) => {
                self.spent(q, MUTATIONS);
                Ok(())
            }
            Err(e) => Err(self.refuse(rec, tier, q, metrics, Limit::Mutations, e.wait_secs)),
        }
    }

    /// Rows an answer of `rec` carried (usage).
    pub fn rows(&self, rec: &TenantRecord, rows: u64) {
        if rows > 0 {
            self.quota(rec).usage[USED_ROWS].fetch_add(rows, Ordering::Relaxed);
        }
    }

    fn refuse(
        &self,
        rec: &TenantRecord,
        tier: &Tier,
        q: &TenantQuota,
        metrics: &TenantMetrics,
        limit: Limit,
        wait_secs: f64,
    ) -> Refusal {
        q.usage[USED_REFUSED].fetch_add(1, Ordering::Relaxed);
        self.metrics.rate_limited(metrics, limit.as_str());
        let retry_after = (wait_secs.ceil() as u64).max(1);
        let key = &rec.key;
        let (quota, message) = match limit {
            Limit::Requests => {
                let r = tier.requests.map_or(0, |r| r.per_second as u64);
                (
                    r,
                    format!("tenant {key} is over its plan's rate ({r} requests/s); retry in {retry_after}s"),
                )
            }
            Limit::Mutations => {
                let m = tier.mutations.map_or(0, |r| r.per_second as u64);
                (
                    m,
                    format!("tenant {key} is over its plan's rate of mutations ({m}/s); retry in {retry_after}s"),
                )
            }
            Limit::Concurrent => {
                let c = u64::from(tier.max_concurrent.unwrap_or(0));
                (
                    c,
                    format!("tenant {key} has {c} requests in flight, the most its plan allows at once; retry in {retry_after}s"),
                )
            }
        };
        Refusal {
            limit,
            retry_after,
            message,
            headers: headers::refused(tier, limit, quota, retry_after),
        }
    }

    /// Notes an admission for the other instances (when they are told at all).
    fn spent(&self, q: &Arc<TenantQuota>, bucket: usize) {
        if !self.reporting.load(Ordering::Relaxed) {
            return;
        }
        q.unsent[bucket].fetch_add(1, Ordering::Relaxed);
        if !q.listed.swap(true, Ordering::AcqRel) {
            self.unsent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(q.clone());
        }
    }

    /// What this instance admitted since the last call, per tenant: (key, requests, mutations).
    pub(crate) fn take_unsent(&self) -> Vec<(Arc<str>, u64, u64)> {
        let listed = std::mem::take(&mut *self.unsent.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = Vec::with_capacity(listed.len());
        for q in listed {
            // Unlisted first: an admission from now on lists the tenant again.
            q.listed.store(false, Ordering::Release);
            let r = q.unsent[REQUESTS].swap(0, Ordering::Relaxed);
            let m = q.unsent[MUTATIONS].swap(0, Ordering::Relaxed);
            if r + m > 0 {
                out.push((q.key.clone(), r, m));
            }
        }
        out
    }

    /// Another instance admitted `requests` and `mutations` of `key`: this instance's buckets
    /// pay for them too. Tenants this instance never served are left alone (their buckets
    /// start full on their first request here).
    pub(crate) fn debit(&self, key: &str, requests: u64, mutations: u64) {
        let Some(q) = self.find(key) else { return };
        let now = Instant::now();
        let mut b = q.buckets();
        if requests > 0 {
            b[REQUESTS].debit(requests as f64, now);
        }
        if mutations > 0 {
            b[MUTATIONS].debit(mutations as f64, now);
        }
    }

    /// Every tenant's usage counters since the last call (and zeroes them).
    pub fn take_usage(&self) -> Vec<crate::tenancy::usage::Usage> {
        let all: Vec<Arc<TenantQuota>> = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let n = |q: &TenantQuota, i: usize| {
            i64::try_from(q.usage[i].swap(0, Ordering::Relaxed)).unwrap_or(i64::MAX)
        };
        all.iter()
            .map(|q| crate::tenancy::usage::Usage {
                key: q.key.to_string(),
                requests: n(q, USED_REQUESTS),
                rows: n(q, USED_ROWS),
                rate_limited: n(q, USED_REFUSED),
            })
            .filter(|u| u.requests + u.rows + u.rate_limited > 0)
            .collect()
    }

    /// Puts back counts [`Quotas::take_usage`] took and could not store.
    pub fn restore_usage(&self, usage: &[crate::tenancy::usage::Usage]) {
        for u in usage {
            let q = self.by_key(&u.key);
            for (i, v) in [
                (USED_REQUESTS, u.requests),
                (USED_ROWS, u.rows),
                (USED_REFUSED, u.rate_limited),
            ] {
                q.usage[i].fetch_add(u64::try_from(v).unwrap_or(0), Ordering::Relaxed);
            }
        }
    }
}

/// Rows in an answer's JSON text: its objects (one per row of every list or object field), the
/// braces outside strings. Linear in the text, nothing allocated; `memchr` jumps from one quote
/// or brace to the next (a byte-at-a-time loop was the server's hottest function on a page of
/// hex cursors).
pub fn count_rows(json: &[u8]) -> u64 {
    let mut rows = 0;
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'"', b'{', &json[at..]) {
        let i = at + found;
        if json[i] == b'{' {
            rows += 1;
            at = i + 1;
            continue;
        }
        // A string: on to its closing quote, an escaped character skipped with its backslash.
        let mut j = i + 1;
        loop {
            let Some(found) = json
                .get(j..)
                .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
            else {
                return rows;
            };
            let k = j + found;
            if json[k] == b'"' {
                at = k + 1;
                break;
            }
            j = k + 2;
        }
    }
    rows
}

#[cfg(test)]
mod tests;
