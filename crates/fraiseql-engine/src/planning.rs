//! Planning (the pipeline's fifth and sixth steps): variables coerced, the operation planned
//! against the catalog with the caller's `[rbac]`, introspection answered. Plans are cached by
//! query, operation, variables and roles, never by tenant (the tenant is set per transaction,
//! never written into SQL); the cache is bounded by bytes.

use std::sync::Arc;

use apollo_compiler::collections::HashMap;
use apollo_compiler::executable::Operation;
use apollo_compiler::introspection;
use apollo_compiler::request::coerce_variable_values;
use apollo_compiler::response::JsonMap;
use apollo_compiler::schema::Implementers;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Name};
use fraiseql_config::LimitsConfig;
use fraiseql_plan::{Plan, PlanError, PlanLimits, RootKind};
use fraiseql_schema::SchemaBundle;

use crate::document::Prepared;
use crate::error::{ErrorCode, GraphqlError};
use crate::identity::rbac::{Rbac, RbacRules};
use crate::identity::RequestContext;
use crate::request::GraphqlRequest;
use crate::response::Outcome;

/// What a plan depends on besides the schema. The document is identified by its address: the
/// cached value holds the document, so the address cannot be reused while the entry lives (and
/// the key costs no hashing of the query text, already hashed by the document cache).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PlanKey {
    pub document: usize,
    pub operation: Option<Box<str>>,
    pub variables: Box<str>,
    pub roles: Arc<[String]>,
}

impl PlanKey {
    /// The key of a plan of `document`.
    pub(crate) fn new(
        document: &Prepared,
        operation: Option<&str>,
        variables: Box<str>,
        roles: Arc<[String]>,
    ) -> Self {
        Self {
            document: Arc::as_ptr(document) as usize,
            operation: operation.map(Box::from),
            variables,
            roles,
        }
    }
}

/// A cached plan and the document it belongs to (kept alive with it).
type Cached = (Prepared, Arc<Plan>);

/// Plans by [`PlanKey`], bounded by bytes.
pub(crate) struct PlanCache {
    cache: moka::sync::Cache<PlanKey, Cached, foldhash::fast::RandomState>,
    max_entry: u64,
}

fn weight(k: &PlanKey, v: &Cached) -> u32 {
    // The document's text is counted here too: the entry keeps it alive.
    let key = v.0.text.len() + k.variables.len() + 64;
    u32::try_from(key + plan_bytes(&v.1)).unwrap_or(u32::MAX)
}

fn plan_bytes(p: &Plan) -> usize {
    let sql = |s: &fraiseql_plan::SqlPlan| {
        s.sql.len() + s.params.iter().map(String::len).sum::<usize>() + 64
    };
    p.fields
        .iter()
        .map(|f| {
            64 + f.response_key.len()
                + match &f.kind {
                    RootKind::Sql(s) => sql(s),
                    RootKind::Mutation(m) => {
                        m.sql.len()
                            + match &m.output {
                                fraiseql_plan::OutputPlan::Readback { plan, .. } => sql(plan),
                                fraiseql_plan::OutputPlan::Value { .. } => 64,
                            }
                    }
                    _ => 128,
                }
        })
        .sum()
}

impl PlanCache {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .weigher(|k: &PlanKey, v: &Cached| weight(k, v))
                .max_capacity(max_bytes)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            max_entry: max_bytes / crate::document::ADMISSION_FRACTION,
        }
    }

    pub(crate) fn get(&self, key: &PlanKey) -> Option<Arc<Plan>> {
        self.cache.get(key).map(|(_, p)| p)
    }

    /// Keeps `plan` of `document` unless it is too heavy to be worth its share (see
    /// `document::ADMISSION_FRACTION`).
    pub(crate) fn insert(&self, key: PlanKey, document: Prepared, plan: Arc<Plan>) {
        let value = (document, plan);
        if u64::from(weight(&key, &value)) <= self.max_entry {
            self.cache.insert(key, value);
        }
    }

    pub(crate) fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

/// What planning needs from the engine.
pub(crate) struct Planner<'e> {
    pub schema: &'e SchemaBundle,
    /// The schema's catalog with the views' columns found at start-up (or without them).
    pub catalog: &'e fraiseql_schema::Catalog,
    pub implementers: &'e HashMap<Name, Implementers>,
    pub limits: &'e LimitsConfig,
    pub rbac: &'e RbacRules,
    pub marker_nonce: u64,
}

impl Planner<'_> {
    /// The pipeline's planning stage: the plan of `op` for `ctx`'s roles, from `plans` or made
    /// now (and kept, unless it answers introspection, computed per request). Mutation plans are
    /// not kept: their variables (new names, new values) rarely repeat, so they would only push
    /// query plans out, and planning is small next to a write.
    pub(crate) fn plan_cached(
        &self,
        plans: &PlanCache,
        prepared: &Prepared,
        req: &GraphqlRequest,
        (doc, op): (&Valid<ExecutableDocument>, &Operation),
        ctx: &RequestContext,
    ) -> Result<(Arc<Plan>, Option<JsonMap>), Outcome> {
        let key = (!op.is_mutation()).then(|| {
            let variables = req.variables_key();
            PlanKey::new(
                prepared,
                req.operation_name.as_deref(),
                variables.into(),
                ctx.identity.roles.clone(),
            )
        });
        if let Some(plan) = key.as_ref().and_then(|k| plans.get(k)) {
            return Ok((plan, None));
        }
        let (plan, introspection) = self.plan(req, doc, op, &ctx.identity.roles)?;
        if let (None, Some(key)) = (&introspection, key) {
            plans.insert(key, prepared.clone(), plan.clone());
        }
        Ok((plan, introspection))
    }

    /// Coerces variables, plans, and answers introspection; `Err` is the finished error
    /// response.
    pub(crate) fn plan(
        &self,
        req: &GraphqlRequest,
        doc: &Valid<ExecutableDocument>,
        op: &Operation,
        roles: &[String],
    ) -> Result<(Arc<Plan>, Option<JsonMap>), Outcome> {
        let raw_vars = req.raw_variables();
        let api = &self.schema.api;
        let vars = match coerce_variable_values(api, op, &raw_vars) {
            Ok(v) => v,
            Err(e) => {
                return Err(Outcome::request_error(vec![GraphqlError::from_apollo(
                    e.to_graphql_error(&doc.sources),
                    ErrorCode::BadUserInput,
                )]))
            }
        };
        // `where` entries share the selection budget with the operation's fields.
        let fields = crate::limits::cost_of(doc, op).fields;
        let limits = self.limits(fields);
        let access = Rbac {
            rules: self.rbac,
            roles,
        };
        let plan = fraiseql_plan::plan(api, self.catalog, doc, op, &vars, limits, &access)
            .map_err(|e| Outcome::request_error(vec![plan_error(e)]))?;

        let introspection = if plan
            .fields
            .iter()
            .any(|f| f.kind == RootKind::Introspection)
        {
            if !self.limits.introspection {
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
            match introspection::partial_execute(api, self.implementers, doc, op, &vars) {
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
}

impl Planner<'_> {
    /// The planner's limits for an operation of `fields` fields: `where` entries get what the
    /// selection budget (`[limits] max_fields`) leaves.
    fn limits(&self, fields: usize) -> PlanLimits {
        PlanLimits {
            max_limit: self.limits.max_limit,
            max_string_length: self.limits.max_string_length,
            max_list_length: self.limits.max_list_length,
            max_rows: self.limits.max_rows,
            max_depth: self.limits.max_depth,
            max_filter_nodes: self.limits.max_fields.saturating_sub(fields),
            marker_nonce: self.marker_nonce,
        }
    }

    /// Plans a subscription operation for `roles`: variables coerced, `[rbac]` applied as for
    /// queries. `Err` holds the request errors.
    pub(crate) fn plan_subscription(
        &self,
        req: &GraphqlRequest,
        doc: &Valid<ExecutableDocument>,
        op: &Operation,
        roles: &[String],
    ) -> Result<fraiseql_plan::SubscriptionPlan, Vec<GraphqlError>> {
        let raw_vars = req.raw_variables();
        let api = &self.schema.api;
        let vars = coerce_variable_values(api, op, &raw_vars).map_err(|e| {
            vec![GraphqlError::from_apollo(
                e.to_graphql_error(&doc.sources),
                ErrorCode::BadUserInput,
            )]
        })?;
        let access = Rbac {
            rules: self.rbac,
            roles,
        };
        let fields = crate::limits::cost_of(doc, op).fields;
        fraiseql_plan::plan_subscription(
            api,
            self.catalog,
            doc,
            op,
            &vars,
            self.limits(fields),
            &access,
        )
        .map_err(|e| vec![plan_error(e)])
    }
}

/// The client's error for a plan the planner refused.
fn plan_error(e: PlanError) -> GraphqlError {
    match e {
        PlanError::BadArgument { message, path } => {
            GraphqlError::new(ErrorCode::BadUserInput, message).with_path(path)
        }
        PlanError::Forbidden { message, path } => {
            GraphqlError::new(ErrorCode::Forbidden, message).with_path(path)
        }
        PlanError::TooComplex(m) => GraphqlError::new(ErrorCode::QueryTooComplex, m),
        PlanError::Unsupported(m) => GraphqlError::new(ErrorCode::OperationNotSupported, m),
    }
}

#[cfg(test)]
mod fuzz;
