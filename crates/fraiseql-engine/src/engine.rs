//! [`Engine`]: the configured schema, pools and caches, and `execute` for one request.

use std::time::Duration;

use apollo_compiler::collections::HashMap;
use apollo_compiler::executable::Operation;
use apollo_compiler::introspection;
use apollo_compiler::request::coerce_variable_values;
use apollo_compiler::response::JsonMap;
use apollo_compiler::schema::Implementers;
use apollo_compiler::validation::Valid;
use apollo_compiler::ExecutableDocument;
use apollo_compiler::Name;
use fraiseql_config::Config;
use fraiseql_plan::{OutputPlan, Plan, PlanError, PlanLimits, RootKind, SqlPlan};
use fraiseql_schema::SchemaBundle;

use std::collections::BTreeMap;
use std::sync::Arc;

use fraiseql_config::TENANT_DATABASE;
use fraiseql_plan::Access;

use crate::auth::{AuthError, Identity, Verifier};
use crate::catalog_check::{self, CatalogProblem};
use crate::db::{DbError, Pools};
use crate::document::DocumentCache;
use crate::error::{ErrorCode, GraphqlError};
use crate::events::{Events, EventsError, Observers, Target};
use crate::execute::{self, FieldResult};
use crate::metrics::Metrics;
use crate::request::GraphqlRequest;
use crate::resolvers::Resolvers;
use crate::response::{Outcome, OutcomeKind, ResponseBody};
use crate::tenancy::{TenantError, TenantRecord, Tenants};
use crate::work;

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

/// Who is asking, resolved from the request's headers before anything else.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The tenant (multi-tenancy on), routed to its own database/schema/rows.
    pub tenant: Option<Arc<TenantRecord>>,
    /// The verified token's identity (default: anonymous, no roles).
    pub identity: Identity,
}

/// Why a request was refused before execution, with the HTTP status to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentifyError {
    /// 400, 401, 403 or 503.
    pub status: u16,
    /// The error to show.
    pub error: GraphqlError,
}

impl IdentifyError {
    fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error: GraphqlError::new(code, message),
        }
    }
}

/// `[rbac]` applied to one caller's roles.
struct Rbac<'a> {
    rules: &'a BTreeMap<String, Vec<String>>,
    roles: &'a [String],
}

impl Access for Rbac<'_> {
    fn allows(&self, type_name: &str, field: &str) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        match self.rules.get(&format!("{type_name}.{field}")) {
            None => true,
            Some(allowed) => self.roles.iter().any(|r| allowed.contains(r)),
        }
    }
}

/// A running GraphQL engine.
pub struct Engine {
    config: Config,
    schema: SchemaBundle,
    implementers: HashMap<Name, Implementers>,
    pools: Arc<Pools>,
    tenants: Option<Tenants>,
    verifier: Option<Verifier>,
    documents: DocumentCache,
    plans: moka::sync::Cache<PlanKey, Arc<Plan>>,
    statements: Arc<std::sync::atomic::AtomicU64>,
    resolvers: Resolvers,
    observers: Observers,
    metrics: Arc<Metrics>,
    events: std::sync::OnceLock<Events>,
    marker_nonce: u64,
}

/// What a plan depends on besides the schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlanKey {
    query: String,
    operation: Option<String>,
    variables: Option<String>,
    roles: Vec<String>,
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

    /// Builds the engine from a config and an already built schema.
    pub fn new(config: Config, schema: SchemaBundle) -> Result<Self, EngineError> {
        Self::new_with_resolvers(config, schema, Resolvers::new())
    }

    /// Builds the engine from a config, a schema built with
    /// `fraiseql_schema::build_with_resolvers(.., &resolvers.coordinates())`, and the resolvers.
    pub fn new_with_resolvers(
        config: Config,
        schema: SchemaBundle,
        resolvers: Resolvers,
    ) -> Result<Self, EngineError> {
        let expected = resolver_coordinates(&schema);
        let registered = resolvers.coordinates();
        if expected != registered {
            let missing: Vec<&String> = expected.symmetric_difference(&registered).collect();
            return Err(EngineError::Resolvers(format!(
                "the schema and the registered resolvers disagree on {missing:?}; build the schema with the resolvers' coordinates"
            )));
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
        Ok(Self {
            config,
            schema,
            implementers,
            pools,
            tenants,
            verifier,
            documents: DocumentCache::new(1000),
            plans: moka::sync::Cache::new(1000),
            statements: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            resolvers,
            observers,
            metrics: Arc::new(Metrics::default()),
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

    /// The event runtime, once started.
    pub fn events(&self) -> Option<&Events> {
        self.events.get()
    }

    /// The process's metrics (`GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How many SQL statements requests have sent so far (start-up checks not included).
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Resolves the caller: verifies the bearer token (if any, or if required) and the tenant
    /// (header and token claim must agree; either alone names it).
    pub async fn identify(
        &self,
        tenant_header: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<RequestContext, IdentifyError> {
        let unauthenticated = |m: String| IdentifyError::new(401, ErrorCode::Unauthenticated, m);
        let identity = match (&self.verifier, authorization) {
            (None, _) => Identity::default(),
            (Some(v), None) if v.required() => {
                return Err(unauthenticated(AuthError::Missing.to_string()))
            }
            (Some(_), None) => Identity::default(),
            (Some(v), Some(h)) => {
                let token = h
                    .strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
                    .ok_or_else(|| {
                        unauthenticated("the Authorization header must be `Bearer <jwt>`".into())
                    })?;
                v.verify(token.trim())
                    .map_err(|e| unauthenticated(e.to_string()))?
            }
        };
        let Some(tenants) = &self.tenants else {
            return Ok(RequestContext {
                tenant: None,
                identity,
            });
        };
        let header = self.config.multi_tenancy.auth_header.as_str();
        let key = match (tenant_header, identity.tenant.as_deref()) {
            (Some(h), Some(c)) if h != c => {
                return Err(IdentifyError::new(
                    403,
                    ErrorCode::Forbidden,
                    format!("the {header} header does not match the token's tenant"),
                ))
            }
            (Some(h), _) => h.to_owned(),
            (None, Some(c)) => c.to_owned(),
            (None, None) => {
                return Err(IdentifyError::new(
                    400,
                    ErrorCode::BadRequest,
                    format!("missing {header} header (or a token with a tenant claim)"),
                ))
            }
        };
        let tenant = tenants.resolve(&key).await.map_err(|e| match e {
            TenantError::Invalid(m) => {
                IdentifyError::new(400, ErrorCode::BadRequest, format!("invalid {header}: {m}"))
            }
            TenantError::Unknown => IdentifyError::new(
                403,
                ErrorCode::UnknownTenant,
                format!("unknown tenant in {header}"),
            ),
            TenantError::Suspended => {
                IdentifyError::new(503, ErrorCode::TenantSuspended, "this tenant is suspended")
            }
            TenantError::RegistryUnavailable => IdentifyError::new(
                503,
                ErrorCode::DatabaseUnavailable,
                "the tenant registry is unavailable; try again shortly",
            ),
        })?;
        Ok(RequestContext {
            tenant: Some(tenant),
            identity,
        })
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
                let mut conn =
                    tenants
                        .connection(&rec)
                        .await
                        .map_err(|e| EngineError::Unreachable {
                            name: format!("tenant `{}`", rec.key),
                            reason: e.message,
                        })?;
                let problems = catalog_check::check(
                    conn.conn().client(),
                    &self.schema.catalog,
                    TENANT_DATABASE,
                )
                .await
                .map_err(|e| EngineError::Unreachable {
                    name: format!("tenant `{}`", rec.key),
                    reason: e.to_string(),
                })?;
                if !problems.is_empty() {
                    return Err(EngineError::Catalog {
                        database: format!("tenant `{}`", rec.key),
                        problems,
                    });
                }
            }
        }
        for (name, pool) in self.pools.iter() {
            let client = pool.get().await.map_err(|e| EngineError::Unreachable {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            let problems = catalog_check::check(&**client, &self.schema.catalog, name)
                .await
                .map_err(|e| EngineError::Unreachable {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            if !problems.is_empty() {
                return Err(EngineError::Catalog {
                    database: name.clone(),
                    problems,
                });
            }
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
        for (name, pool) in self.pools.iter() {
            let client = pool
                .get()
                .await
                .map_err(|_| format!("database `{name}` unavailable"))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|_| format!("database `{name}` does not answer"))?;
        }
        Ok(())
    }

    /// Runs one GraphQL request to completion.
    pub async fn execute(
        &self,
        req: &GraphqlRequest,
        method: Method,
        ctx: &RequestContext,
    ) -> Outcome {
        let prepared = self
            .documents
            .get(&self.schema.api, &self.config.limits, &req.query);
        let doc = match &*prepared {
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
        // Same text, operation, variables and roles: the same plan (the tenant is not part of
        // it: tenant context is set per transaction, never written into SQL).
        let key = PlanKey {
            query: req.query.clone(),
            operation: req.operation_name.clone(),
            variables: req
                .variables
                .as_ref()
                .map(|v| serde_json::to_string(v).unwrap_or_default()),
            roles: ctx.identity.roles.clone(),
        };
        let (plan, introspection) = match self.plans.get(&key) {
            Some(plan) => (plan, None),
            None => match self.plan_request(req, doc, op, ctx) {
                Err(outcome) => return outcome,
                Ok((plan, introspection)) => {
                    // Introspection answers are computed per request, so only plans without
                    // them are kept.
                    if introspection.is_none() {
                        self.plans.insert(key, plan.clone());
                    }
                    (plan, introspection)
                }
            },
        };

        let (results, extra_errors, aborted) = if plan.needs_transaction_work() {
            let env = work::Env {
                pools: &self.pools,
                tenants: self.tenants.as_ref(),
                resolvers: &self.resolvers,
                statements: &self.statements,
                observers: &self.observers,
                subjects: &self.config.observers.stream.subjects,
                record_events: self.config.observers.enabled,
            };
            let done = work::run(&env, &plan, ctx, write).await;
            if !done.aborted && !done.events.is_empty() {
                self.metrics.add(
                    "fraiseql_outbox_events_total",
                    &[(
                        "tenant_id",
                        ctx.tenant.as_ref().map_or("", |t| t.key.as_str()),
                    )],
                    done.events.len() as f64,
                );
                if let Some(events) = self.events.get() {
                    let target = match &ctx.tenant {
                        Some(t) => Target::Tenant(t.clone()),
                        None => Target::Database(TENANT_DATABASE.to_owned()),
                    };
                    events.after_commit(target, done.events);
                }
            }
            (done.results, done.errors, done.aborted)
        } else {
            (self.run_sql(&plan.fields, ctx).await, Vec::new(), false)
        };
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
        let error_codes = body.errors.iter().map(|e| e.extensions.code).collect();
        Outcome {
            kind: OutcomeKind::Data,
            body: body.finish(),
            error_codes,
            operation: Some(if write { "mutation" } else { "query" }),
        }
    }

    /// Coerces variables, plans, and answers introspection; `Err` is the finished error response.
    fn plan_request(
        &self,
        req: &GraphqlRequest,
        doc: &Valid<ExecutableDocument>,
        op: &Operation,
        ctx: &RequestContext,
    ) -> Result<(Arc<Plan>, Option<JsonMap>), Outcome> {
        let raw_vars: JsonMap = match &req.variables {
            None => JsonMap::new(),
            Some(v) => v
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.clone().into()))
                .collect(),
        };
        let vars = match coerce_variable_values(&self.schema.api, op, &raw_vars) {
            Ok(v) => v,
            Err(e) => {
                return Err(Outcome::request_error(vec![GraphqlError::from_apollo(
                    e.to_graphql_error(&doc.sources),
                    ErrorCode::BadUserInput,
                )]))
            }
        };
        let limits = PlanLimits {
            max_limit: self.config.limits.max_limit,
            max_string_length: self.config.limits.max_string_length,
            max_list_length: self.config.limits.max_list_length,
            marker_nonce: self.marker_nonce,
        };
        let access = Rbac {
            rules: &self.config.rbac,
            roles: &ctx.identity.roles,
        };
        let plan = match fraiseql_plan::plan(
            &self.schema.api,
            &self.schema.catalog,
            doc,
            op,
            &vars,
            limits,
            &access,
        ) {
            Ok(p) => p,
            Err(PlanError::BadArgument { message, path }) => {
                return Err(Outcome::request_error(vec![GraphqlError::new(
                    ErrorCode::BadUserInput,
                    message,
                )
                .with_path(path)]))
            }
            Err(PlanError::Unsupported(m)) => {
                return Err(Outcome::request_error(vec![GraphqlError::new(
                    ErrorCode::OperationNotSupported,
                    m,
                )]))
            }
        };

        let introspection = if plan
            .fields
            .iter()
            .any(|f| f.kind == RootKind::Introspection)
        {
            if !self.config.limits.introspection {
                return Err(Outcome::request_error(vec![GraphqlError::new(
                    ErrorCode::GraphqlValidationFailed,
                    "introspection is disabled on this server",
                )]));
            }
            if let Err(e) = introspection::check_max_depth(doc, op) {
                return Err(Outcome::request_error(vec![GraphqlError::from_apollo(
                    e.to_graphql_error(&doc.sources),
                    ErrorCode::QueryTooComplex,
                )]));
            }
            match introspection::partial_execute(
                &self.schema.api,
                &self.implementers,
                doc,
                op,
                &vars,
            ) {
                Ok(r) => r.data,
                Err(e) => {
                    return Err(Outcome::request_error(vec![GraphqlError::from_apollo(
                        e.to_graphql_error(&doc.sources),
                        ErrorCode::GraphqlValidationFailed,
                    )]))
                }
            }
        } else {
            None
        };

        Ok((Arc::new(plan), introspection))
    }

    /// Runs every SQL root field, grouped by database; result `i` belongs to `fields[i]`.
    async fn run_sql(
        &self,
        fields: &[fraiseql_plan::RootPlan],
        ctx: &RequestContext,
    ) -> Vec<Option<FieldResult>> {
        let mut out: Vec<Option<FieldResult>> = fields.iter().map(|_| None).collect();
        // (database, [(field index, response key, statement)])
        type Batch<'p> = (&'p str, Vec<(usize, &'p str, &'p SqlPlan)>);
        let mut by_db: Vec<Batch<'_>> = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if let RootKind::Sql(p) = &f.kind {
                match by_db.iter_mut().find(|(db, _)| *db == p.database) {
                    Some((_, v)) => v.push((i, f.response_key.as_str(), p)),
                    None => {
                        by_db.push((p.database.as_str(), vec![(i, f.response_key.as_str(), p)]))
                    }
                }
            }
        }
        for (db, items) in by_db {
            let plans: Vec<(&str, &SqlPlan)> = items.iter().map(|(_, k, p)| (*k, *p)).collect();
            self.statements
                .fetch_add(plans.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let tenant = ctx.tenant.as_ref().filter(|_| db == TENANT_DATABASE);
            let results: Vec<FieldResult> = match (tenant, &self.tenants, self.pools.get(db)) {
                (Some(rec), Some(tenants), _) => match tenants.connection(rec).await {
                    Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
                    Ok(mut lease) => {
                        let sqls = execute::statements_needed(true, &plans);
                        match lease.conn().prepare_all(&sqls).await {
                            Err(e) => plans
                                .iter()
                                .map(|(f, _)| Err(execute::db_error(&e, f)))
                                .collect(),
                            Ok(stmts) => {
                                let id = rec.id.to_string();
                                let r = execute::run_prepared(
                                    lease.conn().client(),
                                    Some(&id),
                                    &plans,
                                    &stmts,
                                )
                                .await;
                                // Reached only when the whole pipeline (through COMMIT) ran.
                                lease.finish();
                                r
                            }
                        }
                    }
                },
                (_, _, pool) => match pool {
                    None => items
                        .iter()
                        .map(|_| {
                            Err(GraphqlError::new(
                                ErrorCode::InternalServerError,
                                format!("database `{db}` is not configured"),
                            ))
                        })
                        .collect(),
                    Some(pool) => match execute::connection(pool, db).await {
                        Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
                        Ok(client) => execute::run(&client, &plans).await,
                    },
                },
            };
            for ((i, _, _), r) in items.iter().zip(results) {
                out[*i] = Some(r);
            }
        }
        out
    }
}

/// Whether a root field may be `null` (else `null` propagates to `data`).
fn nullable(kind: &RootKind) -> bool {
    match kind {
        RootKind::Sql(p) => p.nullable,
        RootKind::Mutation(m) => output_nullable(&m.output),
        RootKind::Resolver(r) => output_nullable(&r.output),
        RootKind::Typename(_) | RootKind::Introspection | RootKind::Denied => true,
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
