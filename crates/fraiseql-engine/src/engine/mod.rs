//! [`Engine`]: the configured schema, connections and caches. [`Engine::execute`]
//! (`execute.rs`) runs one request through the pipeline's stages in order (see ARCHITECTURE.md);
//! identity comes first, in [`Engine::identify`]. `checks.rs`: the start-up and readiness checks.

mod checks;
mod execute;
mod readiness;
mod subscribe;

pub use readiness::READY_EVERY;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use apollo_compiler::collections::HashMap;
use apollo_compiler::schema::Implementers;
use apollo_compiler::Name;
use fraiseql_config::{Config, TENANT_DATABASE};
use fraiseql_schema::SchemaBundle;

use crate::catalog_check::CatalogProblem;
use crate::connections::{DbError, Pools};
use crate::document::manifest::{Manifest, ManifestError};
use crate::document::persisted::PersistedDocuments;
use crate::document::DocumentCache;
use crate::events::{Events, EventsError, Observers};
use crate::execution::Env;
use crate::identity::rbac::RbacRules;
use crate::identity::{self, AuthError, IdentifyError, RequestContext, TenantHeader, Verifier};
use crate::metrics::{Metrics, PoolSnapshot, TenantMetrics};
use crate::planning::{PlanCache, Planner};
use crate::request::GraphqlRequest;
use crate::resolvers::Resolvers;
use crate::routing::{Routes, TenantPool};
use crate::tenancy::Tenants;

pub use crate::request::Method;

/// Why an engine cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The schema file cannot be read.
    #[error("cannot read schema file {path}: {source}")]
    SchemaFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The schema is invalid.
    #[error(transparent)]
    Schema(#[from] fraiseql_schema::SchemaError),
    /// A database is misconfigured.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The `[auth]` keys cannot be loaded.
    #[error(transparent)]
    Auth(AuthError),
    /// The configuration would let callers past the tenant wall.
    #[error("{0}")]
    Unsafe(String),
    /// An `[[observers.rules]]` entry does not fit the schema.
    #[error("{0}")]
    Observers(String),
    /// NATS, the stream or the event tables cannot be set up.
    #[error(transparent)]
    Events(#[from] EventsError),
    /// The resolvers do not match the schema they were built into.
    #[error("{0}")]
    Resolvers(String),
    /// An `[rbac]` coordinate names no field of the schema.
    #[error("[rbac] \"{0}\" is not a field of the schema (expected \"Type.field\")")]
    Rbac(String),
    /// A tenant's outbox predates this version's columns.
    #[error("{0}: fraiseql_outbox has no `traceparent` column; run `fraiseql migrate` (it adds the column to every tenant's outbox) before starting this version")]
    OutboxOutdated(String),
    /// The trusted documents' manifest cannot be loaded.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A database does not answer.
    #[error("database `{name}` is not reachable: {reason}")]
    Unreachable {
        /// `[databases.<name>]`
        name: String,
        /// Why (without the URL).
        reason: String,
    },
    /// The schema does not match the database.
    #[error("the schema does not match database `{database}`:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Catalog {
        /// Which database.
        database: String,
        /// Every mismatch.
        problems: Vec<CatalogProblem>,
    },
}

/// A running GraphQL engine.
pub struct Engine {
    config: Config,
    schema: SchemaBundle,
    implementers: HashMap<Name, Implementers>,
    routes: Routes,
    tenants: Option<Tenants>,
    verifier: Option<Verifier>,
    rbac: RbacRules,
    documents: DocumentCache,
    persisted: PersistedDocuments,
    plans: PlanCache,
    statements: Arc<AtomicU64>,
    resolvers: Resolvers,
    observers: Observers,
    metrics: Arc<Metrics>,
    /// The result cache of `@cache` fields (`[cache] enabled` and some field has `@cache`).
    cache: Option<Arc<crate::cache::ResultCache>>,
    /// Invalidations to and from the other instances (`[nats]` configured).
    cache_bus: tokio::sync::OnceCell<Option<Arc<crate::cache::bus::CacheBus>>>,
    events: std::sync::OnceLock<Events>,
    subscriptions: std::sync::OnceLock<crate::subscriptions::Subscriptions>,
    marker_nonce: u64,
    readiness: readiness::Readiness,
    /// The catalog with the views' columns, once `check_databases` read them: `where`
    /// filters then compare the columns that hold a field's value (see `catalog_check.rs`).
    found: std::sync::OnceLock<fraiseql_schema::Catalog>,
    /// The tenants' plans and usage counters (`[tiers]`).
    quotas: Arc<crate::quota::Quotas>,
    /// What each instance admitted, told to the others (`[nats]` and `[tiers]` configured).
    quota_exchange: tokio::sync::OnceCell<Option<crate::quota::exchange::Exchange>>,
    /// The registry's usage table is known to exist.
    usage_table: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// Reads the schema named by `config` and builds the engine (no connection is made yet).
    pub fn from_config(config: Config) -> Result<Self, EngineError> {
        Self::with_resolvers(config, Resolvers::new())
    }

    /// Like [`Engine::from_config`], serving Rust `resolvers` too (they take precedence over
    /// the schema's directives for their fields).
    pub fn with_resolvers(config: Config, resolvers: Resolvers) -> Result<Self, EngineError> {
        let path = config.schema.path.clone();
        let sdl = std::fs::read_to_string(&path).map_err(|source| EngineError::SchemaFile {
            path: path.display().to_string(),
            source,
        })?;
        let schema = fraiseql_schema::build_with_resolvers(
            &sdl,
            &path.display().to_string(),
            &resolvers.coordinates(),
        )?;
        Self::new_with_resolvers(config, schema, resolvers)
    }

    /// Builds the engine from a config, a schema built with
    /// `fraiseql_schema::build_with_resolvers(.., &resolvers.coordinates())`, and the resolvers.
    pub fn new_with_resolvers(
        config: Config,
        schema: SchemaBundle,
        resolvers: Resolvers,
    ) -> Result<Self, EngineError> {
        identity::check_config(&config).map_err(EngineError::Unsafe)?;
        let expected = resolver_coordinates(&schema);
        let registered = resolvers.coordinates();
        if expected != registered {
            let missing: Vec<&String> = expected.symmetric_difference(&registered).collect();
            return Err(EngineError::Resolvers(format!(
                "the schema and the registered resolvers disagree on {missing:?}; build the schema with the resolvers' coordinates"
            )));
        }
        for field in schema.catalog.cache.keys() {
            if registered.contains(&format!("Query.{field}")) {
                // Only fields read by SQL are looked up and kept.
                tracing::warn!(
                    field = %format!("Query.{field}"),
                    "@cache is ignored on a field answered by a Rust query resolver"
                );
            }
        }
        let timeout = Duration::from_millis(config.limits.request_timeout_ms);
        let multi = config.multi_tenancy.enabled;
        // With tenancy, `[databases.tenant] url` is where tenants are provisioned, not served from.
        let pools = Arc::new(Pools::new(
            &config,
            timeout,
            multi.then_some(TENANT_DATABASE),
        )?);
        let tenants = if multi {
            let registry = pools
                .get(&config.multi_tenancy.registry)
                .cloned()
                .ok_or_else(|| {
                    EngineError::Db(DbError::NoUrl(config.multi_tenancy.registry.clone()))
                })?;
            Some(Tenants::new(&config, registry))
        } else {
            None
        };
        let routes = Routes::new(pools, multi.then(|| TenantPool::new(&config, timeout)));
        let verifier = match &config.auth {
            Some(a) => Some(Verifier::new(a, config.server.profile).map_err(EngineError::Auth)?),
            None => None,
        };
        for coord in config.rbac.keys() {
            let known = coord.split_once('.').is_some_and(|(t, f)| {
                schema
                    .api
                    .get_object(t)
                    .is_some_and(|o| o.fields.contains_key(f))
            });
            if !known {
                return Err(EngineError::Rbac(coord.clone()));
            }
        }
        let mut observers = if config.observers.enabled {
            Observers::build(&config.observers.rules, &schema.catalog)
                .map_err(EngineError::Observers)?
        } else {
            Observers::default()
        };
        if subscriptions_served(&config, &schema) {
            observers
                .add_changes(
                    schema.catalog.subscriptions.values().map(|s| &s.change),
                    &schema.catalog,
                    &config.subscriptions.subject_prefix,
                )
                .map_err(EngineError::Observers)?;
        }
        let implementers = schema.api.implementers_map();
        let metrics = Arc::new(Metrics::new(
            config.metrics.enabled,
            config.metrics.max_tenant_labels,
        ));
        let cache = (config.cache.enabled && !schema.catalog.cache.is_empty()).then(|| {
            Arc::new(crate::cache::ResultCache::new(
                config.cache.max_bytes,
                metrics.clone(),
            ))
        });
        let td = &config.security.trusted_documents;
        let manifest = match (&td.manifest_path, td.enabled) {
            (Some(path), true) => Some(Manifest::load(path)?),
            _ => None,
        };
        if let Some(m) = &manifest {
            tracing::info!(documents = m.len(), mode = ?td.mode, "trusted documents loaded");
        }
        let quotas = Arc::new(crate::quota::Quotas::new(
            crate::tenancy::Tiers::new(&config),
            metrics.clone(),
        ));
        Ok(Self {
            quotas,
            quota_exchange: tokio::sync::OnceCell::new(),
            usage_table: std::sync::atomic::AtomicBool::new(false),
            cache,
            cache_bus: tokio::sync::OnceCell::new(),
            rbac: RbacRules::new(&config.rbac),
            documents: DocumentCache::new(config.limits.document_cache_bytes),
            persisted: PersistedDocuments::new(&config.security, manifest),
            plans: PlanCache::new(config.limits.plan_cache_bytes),
            config,
            schema,
            implementers,
            routes,
            tenants,
            verifier,
            statements: Arc::new(AtomicU64::new(0)),
            resolvers,
            observers,
            metrics,
            events: std::sync::OnceLock::new(),
            subscriptions: std::sync::OnceLock::new(),
            marker_nonce: rand::random(),
            readiness: readiness::Readiness::default(),
            found: std::sync::OnceLock::new(),
        })
    }

    /// Starts the event runtime (`[observers] enabled`): NATS (connected in the background if it
    /// is down), the stream, the relay's sweeper and the `[[subscribers]]`. Idempotent.
    pub async fn start_events(&self) -> Result<(), EngineError> {
        if !self.config.observers.enabled || self.events.get().is_some() {
            return Ok(());
        }
        let changes = subscriptions_served(&self.config, &self.schema)
            .then(|| crate::subscriptions::stream_config(&self.config));
        let events = Events::start(
            &self.config,
            self.tenants.clone(),
            self.routes.clone(),
            self.metrics.clone(),
            &self.resolvers,
            changes,
        )
        .await?;
        let _ = self.events.set(events);
        Ok(())
    }

    /// Starts serving subscriptions (after [`Engine::start_events`]): the feed of change events
    /// and the housekeeping. Without `Subscription` fields, with `[subscriptions] enabled =
    /// false` or without `[observers] enabled` (the relay publishes the change events), nothing
    /// starts and subscribing is refused with a reason. Idempotent.
    pub fn start_subscriptions(self: &Arc<Self>) {
        if !subscriptions_served(&self.config, &self.schema) || self.subscriptions.get().is_some() {
            return;
        }
        let Some(events) = self.events.get() else {
            return;
        };
        let subs = crate::subscriptions::Subscriptions::start(
            &self.config,
            self.metrics.clone(),
            self.tenants.clone(),
            events.jetstream(),
            Arc::downgrade(self),
        );
        let _ = self.subscriptions.set(subs);
    }

    /// The running subscriptions, once started.
    pub fn subscriptions(&self) -> Option<&crate::subscriptions::Subscriptions> {
        self.subscriptions.get()
    }

    /// Connects the result cache to the other instances (`[nats]`), once. Without NATS the
    /// cache is this instance's alone: run one instance, or turn `[cache]` off.
    pub async fn start_cache_bus(&self) -> Result<(), EngineError> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let nats = &self.config.nats;
        self.cache_bus
            .get_or_try_init(|| async {
                if nats.servers.is_empty() {
                    tracing::warn!("[cache] without [nats]: cached answers are not invalidated on other instances");
                    return Ok(None);
                }
                crate::cache::bus::CacheBus::start(nats, &self.config.cache.subject, cache.clone())
                    .await
                    .map(Some)
                    .map_err(|e| EngineError::Unreachable {
                        name: "NATS (cache invalidations)".to_owned(),
                        reason: e.to_string(),
                    })
            })
            .await?;
        Ok(())
    }

    /// Tells the other instances what this one admits of each tenant's plan, and hears what
    /// they admit (`[nats]`, some tier with a rate, multi-tenancy), once. Without NATS each
    /// instance enforces every plan's full rate by itself.
    pub async fn start_quota_exchange(&self) -> Result<(), EngineError> {
        let rated = self
            .config
            .tiers
            .values()
            .any(|t| t.requests_per_second.is_some() || t.mutations_per_second.is_some());
        if !rated || self.tenants.is_none() {
            return Ok(());
        }
        let nats = &self.config.nats;
        self.quota_exchange
            .get_or_try_init(|| async {
                if nats.servers.is_empty() {
                    tracing::warn!("[tiers] rates without [nats]: each instance admits a tenant's whole rate by itself");
                    return Ok(None);
                }
                crate::quota::exchange::Exchange::start(
                    nats,
                    &self.config.multi_tenancy.quota_subject,
                    self.quotas.clone(),
                )
                .await
                .map(Some)
                .map_err(|e| EngineError::Unreachable {
                    name: "NATS (quota exchange)".to_owned(),
                    reason: e.to_string(),
                })
            })
            .await?;
        Ok(())
    }

    /// The tenants' plans and counters.
    pub fn quotas(&self) -> &crate::quota::Quotas {
        &self.quotas
    }

    /// Admits a request of `ctx`'s tenant by its plan (right after identity, before any
    /// connection), or refuses it (429). Requests without a tenant are not limited here.
    pub fn admit(
        &self,
        ctx: &RequestContext,
    ) -> Result<crate::quota::Admission, crate::quota::Refusal> {
        match &ctx.tenant {
            Some(rec) => self.quotas.admit(rec, &self.tenant_metrics(ctx)),
            None => Ok(crate::quota::Admission::default()),
        }
    }

    /// Adds this instance's usage counters to the registry's monthly rows (multi-tenancy on);
    /// the tenants written. Counts that could not be stored are kept for the next call.
    pub async fn flush_usage(&self) -> Result<usize, crate::quota::usage::FlushError> {
        let Some(registry) = self.pools().get(&self.config.multi_tenancy.registry) else {
            return Ok(0);
        };
        if self.tenants.is_none() {
            return Ok(0);
        }
        crate::quota::usage::flush(&self.quotas, registry, &self.usage_table).await
    }

    /// The result cache, when some field has `@cache`.
    pub fn cache(&self) -> Option<&crate::cache::ResultCache> {
        self.cache.as_deref()
    }

    /// The other instances the cache bus hears of (0 without a bus).
    pub fn cache_peers(&self) -> usize {
        self.cache_bus
            .get()
            .and_then(Option::as_ref)
            .map_or(0, |b| b.peers())
    }

    /// The event runtime, once started.
    pub fn events(&self) -> Option<&Events> {
        self.events.get()
    }

    /// The process's metrics (`GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metric series of the request's tenant (kept on the tenant's record).
    pub fn tenant_metrics(&self, ctx: &RequestContext) -> Arc<TenantMetrics> {
        match &ctx.tenant {
            Some(t) => t
                .derived
                .metrics
                .get_or_init(|| self.metrics.tenant(&t.key))
                .clone(),
            None => self.metrics.no_tenant(),
        }
    }

    /// Reads the pools' sizes into the metrics (before `/metrics` renders).
    pub fn observe_pools(&self) {
        let snap = |p: &crate::connections::Pool| PoolSnapshot {
            open: p.open_connections(),
            idle: p.idle_connections(),
            waiting: p.waiting(),
            budget: p.budget(),
        };
        if let Some(t) = self.routes.tenants() {
            self.metrics.pool("tenants", snap(t.pool()));
        }
        if let Some(t) = &self.tenants {
            self.metrics
                .registry_reads(t.registry_lookups(), t.records_refreshed());
        }
        for (name, db) in self.routes.pools().iter() {
            self.metrics.pool(name, snap(&db.pool));
        }
        if let Some(c) = &self.cache {
            self.metrics.cache_size(c.weighted_size());
            self.metrics.cache_peers(self.cache_peers());
        }
    }

    /// How many SQL statements requests have sent so far (start-up checks not included).
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The trusted documents and automatic persisted queries.
    pub fn persisted(&self) -> &PersistedDocuments {
        &self.persisted
    }

    /// Bytes held by the document cache and the plan cache.
    pub fn cache_bytes(&self) -> (u64, u64) {
        (self.documents.weighted_size(), self.plans.weighted_size())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The validated schema.
    pub fn schema(&self) -> &SchemaBundle {
        &self.schema
    }

    /// The catalog requests are planned with: the schema's, with the views' columns once
    /// [`Engine::check_databases`] has read them.
    pub fn catalog(&self) -> &fraiseql_schema::Catalog {
        self.found.get().unwrap_or(&self.schema.catalog)
    }

    /// The tenant registry as this server sees it, when multi-tenancy is on.
    pub fn tenants(&self) -> Option<&Tenants> {
        self.tenants.as_ref()
    }

    /// Which connection serves a request on a database.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The configured databases.
    pub fn pools(&self) -> &Pools {
        self.routes.pools()
    }

    /// Whether `req` asks for nothing but `_service` (and `__typename`) of a subgraph. Gateways
    /// and composition tools fetch the SDL without credentials (`@apollo/gateway`'s
    /// `IntrospectAndCompose`, `rover subgraph introspect`), so such a request is answered
    /// without a token or tenant: the answer is the same constant for every caller and holds no
    /// data. Anything else is parsed only after the caller is identified.
    pub fn is_service_query(&self, req: &GraphqlRequest) -> bool {
        let Some(query) = req.query.as_deref() else {
            return false;
        };
        if self.schema.catalog.federation.is_none() || !query.contains("_service") {
            return false;
        }
        let prepared = self
            .documents
            .get(&self.schema.api, &self.config.limits, query);
        let Ok(doc) = &prepared.document else {
            return false;
        };
        let Ok(op) = doc.operations.get(req.operation_name.as_deref()) else {
            return false;
        };
        op.is_query()
            && op.selection_set.selections.iter().all(|s| {
                matches!(s, apollo_compiler::executable::Selection::Field(f)
                    if f.name == "_service" || f.name == "__typename")
            })
    }

    /// Resolves the caller of a `_service`-only request (see [`identity::identify_service`]).
    pub fn identify_service(
        &self,
        authorization: Option<&str>,
    ) -> Result<RequestContext, IdentifyError> {
        identity::identify_service(&self.config, authorization)
    }

    /// Resolves the caller (see [`identity::identify`]).
    pub async fn identify(
        &self,
        tenant_header: TenantHeader<'_>,
        authorization: Option<&str>,
    ) -> Result<RequestContext, IdentifyError> {
        identity::identify(
            &self.config,
            self.verifier.as_ref(),
            self.tenants.as_ref(),
            tenant_header,
            authorization,
        )
        .await
    }

    pub(crate) fn env(&self) -> Env<'_> {
        Env {
            routes: &self.routes,
            resolvers: &self.resolvers,
            statements: &self.statements,
            observers: &self.observers,
            subjects: &self.config.observers.stream.subjects,
            record_events: self.config.observers.enabled,
        }
    }

    /// The document stage's first half, for every transport: the text `req` runs (its own, or a
    /// trusted or persisted document it names), parsed, limit-checked and validated (cached).
    pub(crate) fn prepare(
        &self,
        req: &GraphqlRequest,
    ) -> Result<crate::document::Prepared, crate::document::persisted::Refusal> {
        let resolved = self.persisted.resolve(req, || self.is_service_query(req))?;
        if resolved.untrusted {
            self.metrics.untrusted_document();
            tracing::info!(
                operation = %req.operation_name.as_deref().unwrap_or("").chars().take(64).collect::<String>(),
                "a document outside the trusted documents' manifest ran (permissive mode)"
            );
        }
        let prepared = self
            .documents
            .get(&self.schema.api, &self.config.limits, &resolved.text);
        if let Some(hex) = &resolved.register {
            self.persisted.register(hex, &prepared);
        }
        Ok(prepared)
    }

    pub(crate) fn planner(&self) -> Planner<'_> {
        Planner {
            schema: &self.schema,
            catalog: self.catalog(),
            implementers: &self.implementers,
            limits: &self.config.limits,
            rbac: &self.rbac,
            marker_nonce: self.marker_nonce,
        }
    }
}

/// Whether subscriptions are served: the schema has `Subscription` fields, `[subscriptions]`
/// is on, and `[observers]` too (the relay publishes the change events).
fn subscriptions_served(config: &Config, schema: &SchemaBundle) -> bool {
    !schema.catalog.subscriptions.is_empty()
        && config.subscriptions.enabled
        && config.observers.enabled
}

/// The coordinates a schema expects Rust resolvers for.
fn resolver_coordinates(schema: &SchemaBundle) -> std::collections::BTreeSet<String> {
    let c = &schema.catalog;
    let mut out = std::collections::BTreeSet::new();
    for ty in c.types.values() {
        for (f, src) in &ty.fields {
            if *src == fraiseql_schema::FieldSource::Resolver {
                out.insert(format!("{}.{f}", ty.name));
            }
        }
    }
    for (f, r) in &c.queries {
        if matches!(r, fraiseql_schema::RootField::Resolver(_)) {
            out.insert(format!("Query.{f}"));
        }
    }
    for (f, m) in &c.mutations {
        if m.action == fraiseql_schema::MutationAction::Resolver {
            out.insert(format!("Mutation.{f}"));
        }
    }
    out
}
