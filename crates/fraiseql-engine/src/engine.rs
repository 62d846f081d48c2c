//! [`Engine`]: the configured schema, connections and caches, and [`Engine::execute`], which
//! runs one request through the pipeline's steps in order (see ARCHITECTURE.md): document
//! (parse, limits, validate; cached) -> planning (variables, plan; cached) -> execution -> response.
//! Identity comes first, in [`Engine::identify`].

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use apollo_compiler::collections::HashMap;
use apollo_compiler::schema::Implementers;
use apollo_compiler::Name;
use fraiseql_config::{Config, TENANT_DATABASE};
use fraiseql_plan::{OutputPlan, RootKind};
use fraiseql_schema::SchemaBundle;

use crate::catalog_check::{self, CatalogProblem};
use crate::connections::{DbError, Pools};
use crate::document::DocumentCache;
use crate::error::{ErrorCode, GraphqlError};
use crate::events::{Events, EventsError, Observers, Target};
use crate::execution::session::{self, SessionContext};
use crate::execution::{read, transaction, write, CommitGate, Env};
use crate::identity::rbac::RbacRules;
use crate::identity::{self, AuthError, IdentifyError, RequestContext, TenantHeader, Verifier};
use crate::metrics::{Metrics, PoolSnapshot, TenantMetrics};
use crate::planning::{PlanCache, PlanKey, Planner};
use crate::request::GraphqlRequest;
use crate::resolvers::Resolvers;
use crate::response::{Outcome, OutcomeKind, ResponseBody};
use crate::tenancy::{TenantRecord, Tenants};

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

/// The HTTP method a request came with (GraphQL over HTTP allows only queries over GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET /graphql`
    Get,
    /// `POST /graphql`
    Post,
}

/// A running GraphQL engine.
pub struct Engine {
    config: Config,
    schema: SchemaBundle,
    implementers: HashMap<Name, Implementers>,
    pools: Arc<Pools>,
    tenants: Option<Tenants>,
    verifier: Option<Verifier>,
    rbac: RbacRules,
    documents: DocumentCache,
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
    marker_nonce: u64,
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
            Some(Tenants::new(&config, registry, timeout))
        } else {
            None
        };
        let verifier = match &config.auth {
            Some(a) => Some(Verifier::new(a).map_err(EngineError::Auth)?),
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
        let observers = if config.observers.enabled {
            Observers::build(&config.observers.rules, &schema.catalog)
                .map_err(EngineError::Observers)?
        } else {
            Observers::default()
        };
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
        Ok(Self {
            cache,
            cache_bus: tokio::sync::OnceCell::new(),
            rbac: RbacRules::new(&config.rbac),
            documents: DocumentCache::new(config.limits.document_cache_bytes),
            plans: PlanCache::new(config.limits.plan_cache_bytes),
            config,
            schema,
            implementers,
            pools,
            tenants,
            verifier,
            statements: Arc::new(AtomicU64::new(0)),
            resolvers,
            observers,
            metrics,
            events: std::sync::OnceLock::new(),
            marker_nonce: rand::random(),
        })
    }

    /// Starts the event runtime (`[observers] enabled`): NATS (connected in the background if it
    /// is down), the stream, the relay's sweeper and the `[[subscribers]]`. Idempotent.
    pub async fn start_events(&self) -> Result<(), EngineError> {
        if !self.config.observers.enabled || self.events.get().is_some() {
            return Ok(());
        }
        let events = Events::start(
            &self.config,
            self.tenants.clone(),
            self.pools.clone(),
            self.metrics.clone(),
            &self.resolvers,
        )
        .await?;
        let _ = self.events.set(events);
        Ok(())
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
        if let Some(t) = &self.tenants {
            self.metrics.pool("tenants", snap(t.pool()));
            self.metrics
                .registry_reads(t.registry_lookups(), t.records_refreshed());
        }
        for (name, db) in self.pools.iter() {
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

    /// The tenant router, when multi-tenancy is on.
    pub fn tenants(&self) -> Option<&Tenants> {
        self.tenants.as_ref()
    }

    /// The configured databases.
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Whether `req` asks for nothing but `_service` (and `__typename`) of a subgraph. Gateways
    /// and composition tools fetch the SDL without credentials (`@apollo/gateway`'s
    /// `IntrospectAndCompose`, `rover subgraph introspect`), so such a request is answered
    /// without a token or tenant: the answer is the same constant for every caller and holds no
    /// data. Anything else is parsed only after the caller is identified.
    pub fn is_service_query(&self, req: &GraphqlRequest) -> bool {
        if self.schema.catalog.federation.is_none() || !req.query.contains("_service") {
            return false;
        }
        let prepared = self
            .documents
            .get(&self.schema.api, &self.config.limits, &req.query);
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
            .pools
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
        let Some(tenants) = &self.tenants else {
            return Ok(());
        };
        let name = format!("tenant `{}`", rec.key);
        let bad = |reason: String| EngineError::Unreachable {
            name: name.clone(),
            reason,
        };
        let lease = tenants.connection(rec).await.map_err(|e| bad(e.message))?;
        // As the tenant sees it: its role, its schema.
        let ctx = RequestContext {
            tenant: Some(rec.clone()),
            ..RequestContext::default()
        };
        session::begin(&lease, &SessionContext::new(&ctx, TENANT_DATABASE), false)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let problems = catalog_check::check(lease.client(), &self.schema.catalog, TENANT_DATABASE)
            .await
            .map_err(|e| bad(e.to_string()));
        let _ = session::end(&lease, false).await;
        let problems = problems?;
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
            .pools
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

    /// Whether every database (and NATS, with observers) answers now (for `/ready`); the error
    /// names what does not.
    pub async fn ready(&self) -> Result<(), String> {
        if let Some(e) = self.events.get() {
            if !e.connected() {
                return Err("NATS is not connected".to_owned());
            }
        }
        for (name, db) in self.pools.iter() {
            let client = db
                .lease()
                .await
                .map_err(|_| format!("database `{name}` unavailable"))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|_| format!("database `{name}` does not answer"))?;
        }
        Ok(())
    }

    fn env(&self) -> Env<'_> {
        Env {
            pools: &self.pools,
            tenants: self.tenants.as_ref(),
            resolvers: &self.resolvers,
            statements: &self.statements,
            observers: &self.observers,
            subjects: &self.config.observers.stream.subjects,
            record_events: self.config.observers.enabled,
        }
    }

    /// Runs a write plan to its end and hands its events to the relay: in a task of its own, so a
    /// caller that goes away (a disconnected client) cannot stop it between COMMIT and the
    /// hand-off. `gate` still decides whether it may commit.
    fn spawn_writes(
        self: &Arc<Self>,
        plan: Arc<fraiseql_plan::Plan>,
        ctx: RequestContext,
        gate: Arc<CommitGate>,
    ) -> tokio::task::JoinHandle<transaction::Done> {
        let engine = self.clone();
        tokio::spawn(async move {
            let env = engine.env();
            let done = if write::fits(&env, &plan) {
                write::run(&env, &plan, &ctx, &gate).await
            } else {
                transaction::run(&env, &plan, &ctx, true, &gate).await
            };
            engine.hand_off_events(&ctx, &done);
            if !done.aborted {
                engine.invalidate_cache(&ctx, &plan).await;
            }
            done
        })
    }

    /// After a committed mutation: the cached answers it outdates, here and on every instance,
    /// before its response is sent.
    async fn invalidate_cache(&self, ctx: &RequestContext, plan: &fraiseql_plan::Plan) {
        let Some(cache) = &self.cache else { return };
        let mut entities: Option<Vec<String>> = Some(Vec::new());
        for f in &plan.fields {
            let change = match &f.kind {
                RootKind::Mutation(m) => Some(m.change.as_ref()),
                RootKind::Resolver(r) => Some(r.change.as_ref()),
                _ => None,
            };
            match (change, &mut entities) {
                (Some(Some(c)), Some(list)) if !list.contains(&c.entity) => {
                    list.push(c.entity.clone());
                }
                (Some(None), _) => entities = None,
                _ => {}
            }
        }
        let tenant = ctx.tenant.as_ref().map_or("", |t| t.key.as_str());
        cache.invalidate(tenant, entities.as_deref());
        if let Some(Some(bus)) = self.cache_bus.get() {
            bus.publish(tenant, entities.as_deref()).await;
        }
    }

    fn hand_off_events(&self, ctx: &RequestContext, done: &transaction::Done) {
        if done.aborted || done.events.is_empty() {
            return;
        }
        self.metrics.outbox_written(
            ctx.tenant.as_ref().map_or("", |t| t.key.as_str()),
            done.events.len() as u64,
        );
        if let Some(events) = self.events.get() {
            let target = match &ctx.tenant {
                Some(t) => Target::Tenant(t.clone()),
                None => Target::Database(TENANT_DATABASE.to_owned()),
            };
            events.after_commit(target, done.events.clone());
        }
    }

    /// Runs one GraphQL request to completion. `gate` decides whether its writes may still
    /// commit (see [`CommitGate`]): a caller that times the request out wins the gate first, and
    /// then nothing commits.
    pub async fn execute(
        self: &Arc<Self>,
        req: &GraphqlRequest,
        method: Method,
        ctx: &RequestContext,
        gate: &Arc<CommitGate>,
    ) -> Outcome {
        // Document: parsed, limit-checked and validated once per distinct text.
        let prepared = self
            .documents
            .get(&self.schema.api, &self.config.limits, &req.query);
        let doc = match &prepared.document {
            Ok(doc) => doc,
            Err(errors) => return Outcome::request_error(errors.clone()),
        };
        let op = match doc.operations.get(req.operation_name.as_deref()) {
            Ok(op) => op,
            Err(e) => {
                return Outcome::request_error(vec![GraphqlError::new(
                    ErrorCode::OperationNotFound,
                    e.message().to_string(),
                )])
            }
        };
        let write = op.is_mutation();
        let allowed = op.is_query() || (write && method == Method::Post);
        if !allowed {
            let (kind, message) = if method == Method::Get {
                (
                    OutcomeKind::MethodNotAllowed,
                    format!("{} operations must be sent with POST", op.operation_type),
                )
            } else {
                (
                    OutcomeKind::RequestError,
                    format!("{} operations are not supported", op.operation_type),
                )
            };
            return Outcome::request_error_of_kind(
                kind,
                vec![GraphqlError::new(ErrorCode::OperationNotSupported, message)],
            );
        }
        // Planning: same text, operation, variables and roles, the same plan. Mutation plans
        // are not kept: their variables (new names, new values) rarely repeat, so they would
        // only push query plans out, and planning is small next to a write.
        let key = (!write).then(|| {
            PlanKey::new(
                &prepared,
                req.operation_name.as_deref(),
                req.variables
                    .as_ref()
                    .filter(|v| !v.is_empty())
                    .map(|v| serde_json::to_string(v).unwrap_or_default())
                    .unwrap_or_default()
                    .into(),
                ctx.identity.roles.clone(),
            )
        });
        let (plan, introspection) = match key.as_ref().and_then(|k| self.plans.get(k)) {
            Some(plan) => (plan, None),
            None => {
                let planner = Planner {
                    schema: &self.schema,
                    implementers: &self.implementers,
                    limits: &self.config.limits,
                    rbac: &self.rbac,
                    marker_nonce: self.marker_nonce,
                };
                match planner.plan(req, doc, op, &ctx.identity.roles) {
                    Err(outcome) => return outcome,
                    Ok((plan, introspection)) => {
                        // Introspection answers are computed per request, so only plans
                        // without them are kept.
                        if let (None, Some(key)) = (&introspection, key) {
                            self.plans.insert(key, prepared.clone(), plan.clone());
                        }
                        (plan, introspection)
                    }
                }
            }
        };

        // The result cache: a lookup for each `@cache` field, under the generation of what it
        // reads taken now (before any statement runs).
        let lookups = match (&self.cache, write) {
            (Some(cache), false) => cache_lookups(cache, &plan, ctx),
            _ => Vec::new(),
        };
        let all_hit = !lookups.is_empty()
            && plan.fields.iter().enumerate().all(|(i, f)| {
                lookups.iter().any(|l| l.index == i && l.hit.is_some())
                    || matches!(
                        f.kind,
                        RootKind::Typename(_) | RootKind::Constant(_) | RootKind::Denied
                    )
            });

        // Execution.
        let traced = req
            .trace
            .then(|| (std::time::SystemTime::now(), std::time::Instant::now()));
        let env = self.env();
        let (results, extra_errors, aborted) = if all_hit {
            (
                plan.fields.iter().map(|_| None).collect(),
                Vec::new(),
                false,
            )
        } else if write {
            match self
                .spawn_writes(plan.clone(), ctx.clone(), gate.clone())
                .await
            {
                Ok(done) => (done.results, done.errors, done.aborted),
                Err(e) => {
                    tracing::error!(error = %e, "write task failed");
                    return Outcome::request_error(vec![GraphqlError::new(
                        ErrorCode::InternalServerError,
                        "internal error (see server log)",
                    )]);
                }
            }
        } else if plan.needs_transaction_work() {
            let done = transaction::run(&env, &plan, ctx, false, gate).await;
            (done.results, done.errors, done.aborted)
        } else {
            (read::run(&env, &plan.fields, ctx).await, Vec::new(), false)
        };

        let mut results = results;
        for l in &lookups {
            match (&l.hit, results.get_mut(l.index)) {
                (Some(hit), Some(slot)) => {
                    *slot = Some(Ok(Some(crate::execution::JsonText::Shared(
                        hit.json.clone(),
                    ))));
                }
                (None, Some(Some(Ok(Some(text))))) => {
                    if let (Some(cache), Some(plan_cache)) =
                        (&self.cache, &plan.fields[l.index].cache)
                    {
                        let json = bytes::Bytes::copy_from_slice(text.as_bytes());
                        cache.insert(l.key.clone(), json, plan_cache);
                    }
                }
                _ => {}
            }
        }
        let caching = cache_headers(&plan, &lookups);

        // Response: PostgreSQL's JSON text spliced in.
        let mut body = ResponseBody::with_capacity(
            results
                .iter()
                .map(|r| match r {
                    Some(Ok(Some(s))) => s.len(),
                    _ => 8,
                })
                .sum(),
        );
        for (field, result) in plan.fields.iter().zip(results) {
            let key = field.response_key.as_str();
            match (&field.kind, result) {
                (RootKind::Typename(t), _) => {
                    let json = serde_json::to_vec(t).unwrap_or_default();
                    body.field(key, &json);
                }
                (RootKind::Introspection, _) => {
                    let value = introspection.as_ref().and_then(|d| d.get(key));
                    let json = value
                        .and_then(|v| serde_json::to_vec(v).ok())
                        .unwrap_or_else(|| b"null".to_vec());
                    body.field(key, &json);
                }
                (RootKind::Denied, _) => {
                    body.field(key, b"null");
                    body.errors.push(forbidden(vec![key.to_owned()]));
                }
                (RootKind::Constant(json), _) => body.field(key, json.as_bytes()),
                (kind, Some(Ok(json))) => match json {
                    Some(text) => body.field(key, text.as_bytes()),
                    None => {
                        body.field(key, b"null");
                        if !nullable(kind) {
                            body.null_data();
                        }
                    }
                },
                (kind, Some(Err(e))) => {
                    body.field(key, b"null");
                    body.errors.push(e.with_path([key.to_owned()]));
                    if !nullable(kind) {
                        body.null_data();
                    }
                }
                (_, None) => body.field(key, b"null"),
            }
        }
        for path in plan.denied.iter().cloned() {
            body.errors.push(forbidden(path));
        }
        body.errors.extend(extra_errors);
        if aborted {
            // The operation's writes were rolled back: no field's value stands.
            body.null_data();
        }
        if let Some((wall, started)) = traced {
            let took = started.elapsed();
            let mut nodes = trace_nodes(op, &plan, took);
            crate::trace::attach_errors(&mut nodes, &body.errors);
            let ftv1 = crate::trace::ftv1(wall, took, &nodes);
            body.extensions
                .push(("ftv1", serde_json::Value::String(ftv1).to_string()));
        }
        let error_codes: Vec<ErrorCode> = body.errors.iter().map(|e| e.extensions.code).collect();
        Outcome {
            kind: OutcomeKind::Data,
            cache: caching.filter(|_| error_codes.is_empty()),
            body: body.finish(),
            error_codes,
            operation: Some(if write { "mutation" } else { "query" }),
        }
    }
}

/// A `@cache` field's lookup.
struct Lookup {
    index: usize,
    key: crate::cache::CacheKey,
    hit: Option<crate::cache::Cached>,
}

fn cache_lookups(
    cache: &crate::cache::ResultCache,
    plan: &fraiseql_plan::Plan,
    ctx: &RequestContext,
) -> Vec<Lookup> {
    let mut out = Vec::new();
    for (index, f) in plan.fields.iter().enumerate() {
        let (Some(policy), RootKind::Sql(p)) = (&f.cache, &f.kind) else {
            continue;
        };
        let tenant: Arc<str> = Arc::from(ctx.tenant.as_ref().map_or("", |t| t.key.as_str()));
        let key = crate::cache::CacheKey {
            generation: cache.generation(&tenant, &policy.reads),
            tenant,
            roles: ctx.identity.roles_text.as_deref().map(Arc::from),
            user: policy
                .per_user
                .then(|| ctx.identity.subject.as_deref().map(Arc::from))
                .flatten(),
            sql: Arc::from(p.sql.as_str()),
            params: p.params.iter().cloned().collect(),
        };
        let hit = cache.get(&key);
        out.push(Lookup { index, key, hit });
    }
    out
}

/// `Cache-Control: private, max-age` and `Age` when every root field is a `@cache` field: the
/// shortest freshness left and the oldest answer.
fn cache_headers(
    plan: &fraiseql_plan::Plan,
    lookups: &[Lookup],
) -> Option<crate::response::CacheHeaders> {
    let mut max_age = u64::MAX;
    let mut age = 0;
    for (i, f) in plan.fields.iter().enumerate() {
        if matches!(f.kind, RootKind::Typename(_)) {
            continue;
        }
        let l = lookups.iter().find(|l| l.index == i)?;
        match &l.hit {
            Some(hit) => {
                max_age = max_age.min(hit.max_age_secs());
                age = age.max(hit.age_secs());
            }
            None => max_age = max_age.min(u64::from(f.cache.as_ref()?.ttl_secs)),
        }
    }
    (max_age != u64::MAX).then_some(crate::response::CacheHeaders { max_age, age })
}

/// The trace's nodes: one per root field answered by the engine (not `__typename` or
/// introspection, as Apollo's), timed as the whole execution.
fn trace_nodes(
    op: &apollo_compiler::executable::Operation,
    plan: &fraiseql_plan::Plan,
    took: std::time::Duration,
) -> Vec<crate::trace::FieldNode> {
    let parent = op.object_type().to_string();
    plan.fields
        .iter()
        .filter(|f| !matches!(f.kind, RootKind::Typename(_) | RootKind::Introspection))
        .map(|f| {
            let def = op.selection_set.selections.iter().find_map(|s| match s {
                apollo_compiler::executable::Selection::Field(x)
                    if x.response_key().as_str() == f.response_key =>
                {
                    Some(x)
                }
                _ => None,
            });
            crate::trace::FieldNode {
                response_name: f.response_key.clone(),
                original_field_name: def
                    .filter(|d| d.alias.is_some())
                    .map(|d| d.name.to_string()),
                type_name: def.map(|d| d.definition.ty.to_string()).unwrap_or_default(),
                parent_type: parent.clone(),
                start: std::time::Duration::ZERO,
                end: took,
                errors: Vec::new(),
            }
        })
        .collect()
}

/// Whether a root field may be `null` (else `null` propagates to `data`).
fn nullable(kind: &RootKind) -> bool {
    match kind {
        RootKind::Sql(p) => p.nullable,
        RootKind::Mutation(m) => output_nullable(&m.output),
        RootKind::Resolver(r) => output_nullable(&r.output),
        RootKind::Entities(_) => false,
        RootKind::Typename(_)
        | RootKind::Introspection
        | RootKind::Denied
        | RootKind::Constant(_) => true,
    }
}

fn output_nullable(o: &OutputPlan) -> bool {
    match o {
        OutputPlan::Readback { plan, .. } => plan.nullable,
        OutputPlan::Value { nullable, .. } => *nullable,
    }
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

fn forbidden(path: Vec<String>) -> GraphqlError {
    GraphqlError::new(
        ErrorCode::Forbidden,
        "you are not allowed to read this field",
    )
    .with_path(path)
}
