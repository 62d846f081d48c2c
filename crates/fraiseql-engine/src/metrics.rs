//! Metrics on `prometheus-client` (the Prometheus project's Rust client): typed families,
//! rendered as OpenMetrics text for `GET /metrics`. The seed's five names and labels are kept:
//!
//! ```text
//! fraiseql_tenant_requests_total{tenant_id, endpoint}
//! fraiseql_tenant_latency_seconds{tenant_id, operation}      (histogram)
//! fraiseql_tenant_errors_total{tenant_id, error_type}
//! fraiseql_nats_events_processed{tenant_id, event_type}
//! fraiseql_nats_consumer_lag{consumer}
//! ```
//!
//! and the plans' (`[tiers]`): `fraiseql_tenant_rate_limited_total{tenant_id, limit}` (429s by
//! the limit that refused: `requests`, `mutations`, `concurrent`) and
//! `fraiseql_tenant_rows_total{tenant_id}` (rows in answers, the usage counter).
//!
//! `fraiseql_nats_events_processed` counts, but OpenMetrics gives every counter a `_total`
//! suffix, so it is exposed with type `unknown` to keep the seed's name.
//!
//! The hot path builds no label and takes no global lock: each tenant's series are resolved
//! once (and kept on the tenant's record) and are then atomic counters. Tenant labels are
//! capped: the first `[metrics] max_tenant_labels` tenants with traffic keep their own series,
//! the others report as `other`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::error::ErrorCode;

mod subscriptions;

pub use subscriptions::{EventOutcome, Refusal};

/// The label tenants past the cap report under.
pub const OTHER_TENANT: &str = "other";

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

type Label = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantEndpoint {
    tenant_id: Label,
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOperation {
    tenant_id: Label,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantError {
    tenant_id: Label,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLimit {
    tenant_id: Label,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantEvent {
    tenant_id: Label,
    event_type: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOnly {
    tenant_id: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Consumer {
    consumer: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadPath {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    tenant_id: Label,
}

/// A counter exposed with type `unknown`, so its name keeps no `_total` suffix (the seed's
/// `fraiseql_nats_events_processed`).
#[derive(Debug, Default, Clone)]
pub struct SeedCounter(Arc<AtomicU64>);

impl SeedCounter {
    fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for SeedCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for SeedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

/// A request in flight; see [`Metrics::in_flight_guard`].
#[derive(Debug)]
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a request was, for the latency histogram's `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A query.
    Query,
    /// A mutation.
    Mutation,
    /// Refused before its operation type was known (bad request, auth, limits).
    Invalid,
}

/// One tenant's series, resolved once.
#[derive(Debug)]
pub struct TenantMetrics {
    label: Label,
    requests: Counter,
    latency: [Histogram; 3],
    errors: Family<TenantError, Counter>,
    rows: Counter,
}

impl TenantMetrics {
    /// The tenant's label (`other` past the cap).
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// Sizes of a connection pool, read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolSnapshot {
    /// Connections open (in use + idle).
    pub open: usize,
    /// Idle connections.
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: u64,
    /// The most connections it may open.
    pub budget: usize,
}

/// Events: subscribers, dead letters, the outbox.
struct EventSeries {
    events_processed: Family<TenantEvent, SeedCounter>,
    consumer_lag: Family<Consumer, Gauge>,
    handler_failures: Family<Consumer, Counter>,
    dead_letters: Family<Consumer, Counter>,
    outbox_events: Family<TenantOnly, Counter>,
    outbox_published: Family<TenantOnly, Counter>,
    outbox_failures: Family<TenantOnly, Counter>,
    outbox_backlog: Gauge,
}

impl EventSeries {
    fn register(r: &mut Registry) -> Self {
        let events_processed = register(r, "fraiseql_nats_events_processed", "Messages a subscriber handled and acknowledged (a counter; type unknown to keep this name without _total)", Family::<TenantEvent, SeedCounter>::default());
        let consumer_lag = register(
            r,
            "fraiseql_nats_consumer_lag",
            "Messages of a consumer group not yet delivered",
            Family::<Consumer, Gauge>::default(),
        );
        let handler_failures = register(
            r,
            "fraiseql_nats_handler_failures",
            "Subscriber handler failures (redelivered later)",
            Family::<Consumer, Counter>::default(),
        );
        let dead_letters = register(
            r,
            "fraiseql_nats_dead_letters",
            "Messages moved to the dead letters",
            Family::<Consumer, Counter>::default(),
        );
        let outbox_events = register(
            r,
            "fraiseql_outbox_events",
            "Events written to an outbox with their mutation",
            Family::<TenantOnly, Counter>::default(),
        );
        let outbox_published = register(r, "fraiseql_outbox_published", "Outbox events JetStream took as new (a copy published again, e.g. by the sweeper, and dropped as a duplicate is not counted)", Family::<TenantOnly, Counter>::default());
        let outbox_failures = register(
            r,
            "fraiseql_outbox_publish_failures",
            "Failed publish attempts (retried by the sweeper)",
            Family::<TenantOnly, Counter>::default(),
        );
        let outbox_backlog = register(
            r,
            "fraiseql_outbox_backlog",
            "Events committed and not yet published, as last seen",
            Gauge::default(),
        );
        Self {
            events_processed,
            consumer_lag,
            handler_failures,
            dead_letters,
            outbox_events,
            outbox_published,
            outbox_failures,
            outbox_backlog,
        }
    }
}

/// The result cache.
struct CacheSeries {
    cache_hits: Family<CacheLabel, Counter>,
    cache_misses: Family<CacheLabel, Counter>,
    cache_evictions: Counter,
    cache_bytes: Gauge,
    cache_peers: Gauge,
}

impl CacheSeries {
    fn register(r: &mut Registry) -> Self {
        let cache_hits = register(
            r,
            "fraiseql_cache_hits",
            "Answers of @cache fields served from the result cache",
            Family::<CacheLabel, Counter>::default(),
        );
        let cache_misses = register(
            r,
            "fraiseql_cache_misses",
            "Answers of @cache fields read from the database",
            Family::<CacheLabel, Counter>::default(),
        );
        let cache_evictions = register(
            r,
            "fraiseql_cache_evictions",
            "Cached answers removed to stay within [cache] max_bytes, or at the end of their TTL",
            Counter::default(),
        );
        let cache_bytes = register(
            r,
            "fraiseql_cache_bytes",
            "Bytes the result cache holds",
            Gauge::default(),
        );
        let cache_peers = register(
            r,
            "fraiseql_cache_peers",
            "Other server instances this one hears on the cache invalidation bus",
            Gauge::default(),
        );
        Self {
            cache_hits,
            cache_misses,
            cache_evictions,
            cache_bytes,
            cache_peers,
        }
    }
}

/// Connection pools and the tenant registry.
struct PoolSeries {
    registry_reads: Family<ReadPath, Counter>,
    pool_open: Family<PoolLabel, Gauge>,
    pool_idle: Family<PoolLabel, Gauge>,
    pool_waiting: Family<PoolLabel, Gauge>,
    pool_budget: Family<PoolLabel, Gauge>,
}

impl PoolSeries {
    fn register(r: &mut Registry) -> Self {
        let registry_reads = register(
            r,
            "fraiseql_registry_reads",
            "Tenant records read from the registry: one per request that missed the cache \
             (path=lookup), or in batches before busy tenants' records expire (path=refresh)",
            Family::<ReadPath, Counter>::default(),
        );
        let pool_open = register(
            r,
            "fraiseql_pool_connections_open",
            "Database connections open, by pool (tenants, or a [databases.<name>])",
            Family::<PoolLabel, Gauge>::default(),
        );
        let pool_idle = register(
            r,
            "fraiseql_pool_connections_idle",
            "Idle database connections, by pool",
            Family::<PoolLabel, Gauge>::default(),
        );
        let pool_waiting = register(
            r,
            "fraiseql_pool_waiting",
            "Requests waiting for a database connection, by pool",
            Family::<PoolLabel, Gauge>::default(),
        );
        let pool_budget = register(
            r,
            "fraiseql_pool_connections_max",
            "The most connections a pool may open",
            Family::<PoolLabel, Gauge>::default(),
        );
        Self {
            registry_reads,
            pool_open,
            pool_idle,
            pool_waiting,
            pool_budget,
        }
    }
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    enabled: bool,
    cap: usize,
    tenants: RwLock<HashMap<Label, Arc<TenantMetrics>, foldhash::fast::RandomState>>,
    other: Arc<TenantMetrics>,
    requests: Family<TenantEndpoint, Counter>,
    latency: Family<TenantOperation, Histogram>,
    errors: Family<TenantError, Counter>,
    rate_limited: Family<TenantLimit, Counter>,
    rows: Family<TenantOnly, Counter>,
    in_flight: Gauge,
    events: EventSeries,
    cache: CacheSeries,
    pools: PoolSeries,
    subscriptions: subscriptions::SubscriptionSeries,
    shed: Counter,
    untrusted_documents: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(true, 100)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Registers `metric` under `name` and returns it (the registry keeps a clone that shares it).
fn register<M>(r: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    r.register(name, help, metric.clone());
    metric
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Metrics {
    /// Metrics (recorded unless `enabled` is false), with at most `max_tenant_labels` tenants
    /// keeping series of their own.
    pub fn new(enabled: bool, max_tenant_labels: usize) -> Self {
        let mut r = Registry::default();
        let requests = register(
            &mut r,
            "fraiseql_tenant_requests",
            "GraphQL requests by tenant",
            Family::<TenantEndpoint, Counter>::default(),
        );
        let latency = register(
            &mut r,
            "fraiseql_tenant_latency_seconds",
            "GraphQL request latency by tenant and operation type",
            Family::<TenantOperation, Histogram>::new_with_constructor(
                histogram as fn() -> Histogram,
            ),
        );
        let errors = register(
            &mut r,
            "fraiseql_tenant_errors",
            "GraphQL errors by tenant and code",
            Family::<TenantError, Counter>::default(),
        );
        let rate_limited = register(
            &mut r,
            "fraiseql_tenant_rate_limited",
            "Requests refused with 429 by the tenant's plan ([tiers]), by the limit that refused: requests, mutations, concurrent",
            Family::<TenantLimit, Counter>::default(),
        );
        let rows = register(
            &mut r,
            "fraiseql_tenant_rows",
            "Rows (JSON objects) in the tenant's answers",
            Family::<TenantOnly, Counter>::default(),
        );
        let events = EventSeries::register(&mut r);
        let in_flight = register(
            &mut r,
            "fraiseql_requests_in_flight",
            "GraphQL requests being answered now",
            Gauge::default(),
        );
        let shed = register(
            &mut r,
            "fraiseql_requests_shed",
            "Requests refused with 503 because [limits] max_in_flight was reached",
            Counter::default(),
        );
        let untrusted_documents = register(
            &mut r,
            "fraiseql_untrusted_documents",
            "Documents outside the trusted documents' manifest that ran (permissive mode); strict mode would refuse them",
            Counter::default(),
        );
        let cache = CacheSeries::register(&mut r);
        let pools = PoolSeries::register(&mut r);
        let subscriptions = subscriptions::SubscriptionSeries::register(&mut r);
        let mut m = Self {
            registry: r,
            enabled,
            cap: max_tenant_labels,
            tenants: RwLock::new(HashMap::default()),
            other: Arc::new(TenantMetrics {
                label: Arc::from(OTHER_TENANT),
                requests: Counter::default(),
                latency: [histogram(), histogram(), histogram()],
                errors: Family::default(),
                rows: Counter::default(),
            }),
            requests,
            latency,
            errors,
            rate_limited,
            rows,
            in_flight,
            events,
            cache,
            pools,
            subscriptions,
            shed,
            untrusted_documents,
        };
        m.other = Arc::new(m.series(Arc::from(OTHER_TENANT)));
        m
    }

    /// Whether metrics are recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn series(&self, label: Label) -> TenantMetrics {
        let endpoint = TenantEndpoint {
            tenant_id: label.clone(),
            endpoint: "/graphql",
        };
        let op = |operation| TenantOperation {
            tenant_id: label.clone(),
            operation,
        };
        TenantMetrics {
            requests: self.requests.get_or_create_owned(&endpoint),
            latency: [
                self.latency.get_or_create_owned(&op("query")),
                self.latency.get_or_create_owned(&op("mutation")),
                self.latency.get_or_create_owned(&op("invalid")),
            ],
            errors: self.errors.clone(),
            rows: self.rows.get_or_create_owned(&TenantOnly {
                tenant_id: label.clone(),
            }),
            label,
        }
    }

    /// `key`'s series: its own while fewer than `max_tenant_labels` tenants have some, else
    /// `other`'s. Resolved once per tenant; callers keep the handle.
    pub fn tenant(&self, key: &str) -> Arc<TenantMetrics> {
        let read = self
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = read.get(key) {
            return t.clone();
        }
        let full = read.len() >= self.cap;
        drop(read);
        if full {
            return self.other.clone();
        }
        let mut write = self
            .tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = write.get(key) {
            return t.clone();
        }
        if write.len() >= self.cap {
            return self.other.clone();
        }
        let label: Label = Arc::from(key);
        let t = Arc::new(self.series(label.clone()));
        write.insert(label, t.clone());
        t
    }

    /// The series of requests made without a tenant (single database, or refused early).
    pub fn no_tenant(&self) -> Arc<TenantMetrics> {
        self.tenant("")
    }

    /// Counts one `/graphql` request of `tenant`: its latency and its errors.
    pub fn request(
        &self,
        tenant: &TenantMetrics,
        operation: Operation,
        seconds: f64,
        errors: &[ErrorCode],
    ) {
        if !self.enabled {
            return;
        }
        tenant.requests.inc();
        tenant.latency[operation as usize].observe(seconds);
        for code in errors {
            tenant
                .errors
                .get_or_create(&TenantError {
                    tenant_id: tenant.label.clone(),
                    error_type: code.as_str(),
                })
                .inc();
        }
    }

    /// A request of `tenant` was refused by its plan's `limit` (`requests`, `mutations`,
    /// `concurrent`).
    pub fn rate_limited(&self, tenant: &TenantMetrics, limit: &'static str) {
        if !self.enabled {
            return;
        }
        self.rate_limited
            .get_or_create(&TenantLimit {
                tenant_id: tenant.label.clone(),
                limit,
            })
            .inc();
    }

    /// `rows` rows went out in an answer of `tenant`.
    pub fn rows(&self, tenant: &TenantMetrics, rows: u64) {
        if self.enabled && rows > 0 {
            tenant.rows.inc_by(rows);
        }
    }

    /// The label for tenant `key` (as capped).
    fn label(&self, key: &str) -> Label {
        self.tenant(key).label.clone()
    }

    /// A subscriber handled a message of `tenant` on `subject`.
    pub fn event_processed(&self, tenant: &str, subject: &str) {
        if !self.enabled {
            return;
        }
        self.events
            .events_processed
            .get_or_create(&TenantEvent {
                tenant_id: self.label(tenant),
                event_type: Arc::from(subject),
            })
            .inc();
    }

    /// Registers consumer group `group`'s series at 0 (dashboards see 0, not "absent").
    pub fn consumer_started(&self, group: &str) {
        let c = Consumer {
            consumer: Arc::from(group),
        };
        self.events.handler_failures.get_or_create_owned(&c);
        self.events.dead_letters.get_or_create_owned(&c);
        self.events.consumer_lag.get_or_create_owned(&c);
    }

    /// Consumer group `group` has `pending` messages not yet delivered.
    pub fn consumer_lag(&self, group: &str, pending: u64) {
        self.events
            .consumer_lag
            .get_or_create(&Consumer {
                consumer: Arc::from(group),
            })
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// A handler of `group` failed (the message is redelivered).
    pub fn handler_failed(&self, group: &str) {
        self.events
            .handler_failures
            .get_or_create(&Consumer {
                consumer: Arc::from(group),
            })
            .inc();
    }

    /// A message of `group` went to the dead letters.
    pub fn dead_lettered(&self, group: &str) {
        self.events
            .dead_letters
            .get_or_create(&Consumer {
                consumer: Arc::from(group),
            })
            .inc();
    }

    fn tenant_counter(&self, family: &Family<TenantOnly, Counter>, tenant: &str, n: u64) {
        family
            .get_or_create(&TenantOnly {
                tenant_id: self.label(tenant),
            })
            .inc_by(n);
    }

    /// A mutation of `tenant` wrote `n` events to its outbox.
    pub fn outbox_written(&self, tenant: &str, n: u64) {
        self.tenant_counter(&self.events.outbox_events, tenant, n);
    }

    /// `n` events of `tenant` were published and marked sent.
    pub fn outbox_published(&self, tenant: &str, n: u64) {
        self.tenant_counter(&self.events.outbox_published, tenant, n);
    }

    /// `n` publish attempts for `tenant` failed.
    pub fn outbox_failed(&self, tenant: &str, n: u64) {
        self.tenant_counter(&self.events.outbox_failures, tenant, n);
    }

    /// Events committed and not yet published, as last seen.
    pub fn outbox_backlog(&self, n: u64) {
        self.events
            .outbox_backlog
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts a request in flight until the guard drops (also when the client goes away).
    pub fn in_flight_guard(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// A document outside the manifest ran (permissive trusted documents).
    pub fn untrusted_document(&self) {
        self.untrusted_documents.inc();
    }

    /// A request was shed (`max_in_flight`).
    pub fn shed(&self) {
        self.shed.inc();
    }

    /// A result-cache look-up for `tenant`: hit or miss.
    pub fn cache_lookup(&self, tenant: &str, hit: bool) {
        if !self.enabled {
            return;
        }
        let l = CacheLabel {
            tenant_id: self.label(tenant),
        };
        if hit {
            self.cache.cache_hits.get_or_create(&l).inc();
        } else {
            self.cache.cache_misses.get_or_create(&l).inc();
        }
    }

    /// Cached answers evicted or invalidated.
    pub fn cache_evicted(&self, n: u64) {
        self.cache.cache_evictions.inc_by(n);
    }

    /// The result cache's size now.
    pub fn cache_size(&self, bytes: u64) {
        self.cache
            .cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Instances heard on the cache bus now.
    pub fn cache_peers(&self, n: usize) {
        self.cache
            .cache_peers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Registry reads so far, per path (`lookup`, `refresh`): counted by the tenant directory,
    /// copied here when metrics are rendered.
    pub fn registry_reads(&self, lookups: u64, refreshed: u64) {
        for (path, n) in [("lookup", lookups), ("refresh", refreshed)] {
            self.pools
                .registry_reads
                .get_or_create(&ReadPath { path })
                .inner()
                .fetch_max(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Pool `pool`'s sizes now.
    pub fn pool(&self, pool: &str, s: PoolSnapshot) {
        let l = PoolLabel {
            pool: Arc::from(pool),
        };
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.pools.pool_open.get_or_create(&l).set(n(s.open));
        self.pools.pool_idle.get_or_create(&l).set(n(s.idle));
        self.pools
            .pool_waiting
            .get_or_create(&l)
            .set(i64::try_from(s.waiting).unwrap_or(i64::MAX));
        self.pools.pool_budget.get_or_create(&l).set(n(s.budget));
    }

    /// The OpenMetrics text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics could not be rendered");
        }
        out
    }

    /// The sum of every series of metric `name` (as rendered, `_total` included for counters),
    /// optionally only those whose labels contain `label` (e.g. `tenant_id="acme"`). For tests
    /// and the CLI.
    pub fn total(&self, name: &str) -> f64 {
        self.sum(name, None)
    }

    /// Like [`Metrics::total`], over the series whose labels contain `label`.
    pub fn sum(&self, name: &str, label: Option<&str>) -> f64 {
        let text = self.render();
        let mut total = 0.0;
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(p) => p,
                None => continue,
            };
            let metric = series.split('{').next().unwrap_or("");
            if metric != name && metric != format!("{name}_total") {
                continue;
            }
            if label.is_some_and(|l| !series.contains(l)) {
                continue;
            }
            total += value.parse::<f64>().unwrap_or(0.0);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_names_and_labels_render_as_openmetrics() {
        let m = Metrics::new(true, 10);
        let t = m.tenant("acme_corp");
        m.request(&t, Operation::Query, 0.002, &[ErrorCode::BadUserInput]);
        m.request(&t, Operation::Mutation, 0.004, &[]);
        m.event_processed("acme_corp", "analytics.project_created");
        m.consumer_lag("analytics_sync", 7);
        let text = m.render();
        for want in [
            r#"fraiseql_tenant_requests_total{tenant_id="acme_corp",endpoint="/graphql"} 2"#,
            r#"fraiseql_tenant_latency_seconds_count{tenant_id="acme_corp",operation="query"} 1"#,
            r#"fraiseql_tenant_errors_total{tenant_id="acme_corp",error_type="BAD_USER_INPUT"} 1"#,
            r#"fraiseql_nats_events_processed{tenant_id="acme_corp",event_type="analytics.project_created"} 1"#,
            r#"fraiseql_nats_consumer_lag{consumer="analytics_sync"} 7"#,
            "# TYPE fraiseql_nats_events_processed unknown",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want} in:\n{text}");
        }
        assert_eq!(m.total("fraiseql_tenant_requests"), 2.0);
        assert_eq!(m.total("fraiseql_nats_events_processed"), 1.0);
    }

    #[test]
    fn tenant_labels_are_capped() {
        let m = Metrics::new(true, 3);
        for i in 0..500 {
            let t = m.tenant(&format!("tenant_{i}"));
            m.request(&t, Operation::Query, 0.001, &[]);
        }
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("fraiseql_tenant_requests_total{"))
            .count();
        assert_eq!(series, 4, "3 tenants and other:\n{text}");
        assert!(text.contains(
            r#"fraiseql_tenant_requests_total{tenant_id="other",endpoint="/graphql"} 497"#
        ));
        assert!(text.contains(r#"tenant_id="tenant_0""#));
        assert!(!text.contains(r#"tenant_id="tenant_3""#));
    }
}
