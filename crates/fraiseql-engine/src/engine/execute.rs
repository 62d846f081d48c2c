//! [`Engine::execute`]: one request through the pipeline's stages, one call per stage (see
//! ARCHITECTURE.md): document -> planning -> cache look-up -> execution -> response -> trace.

use std::sync::Arc;

use tracing::Instrument;

use fraiseql_config::TENANT_DATABASE;
use fraiseql_plan::{Plan, RootKind};

use super::Engine;
use crate::cache::{invalidate, Lookups};
use crate::document;
use crate::error::{ErrorCode, GraphqlError};
use crate::events::Target;
use crate::execution::{self, CommitGate, Done};
use crate::identity::{self, RequestContext};
use crate::request::{GraphqlRequest, Method};
use crate::response::{self, Outcome, OutcomeKind};
use crate::trace;

impl Engine {
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
        let document_span = crate::otel_child_span!("graphql.document").entered();
        let prepared = match self.prepare(req) {
            Ok(p) => p,
            Err(refusal) => return refusal.into(),
        };
        let (doc, op) = match document::operation(&prepared, req.operation_name.as_deref(), method)
        {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let write = op.is_mutation();
        drop(document_span);
        let plan_span = crate::otel_child_span!(
            "graphql.plan",
            graphql.operation.type = if write { "mutation" } else { "query" }
        )
        .entered();
        if let (true, Some(rec)) = (write, &ctx.tenant) {
            if let Err(refusal) = self.quotas.admit_mutation(rec, &self.tenant_metrics(ctx)) {
                return Outcome::rate_limited(refusal);
            }
        }
        let (plan, introspection) =
            match self
                .planner()
                .plan_cached(&self.plans, &prepared, req, (doc, op), ctx)
            {
                Ok(planned) => planned,
                Err(outcome) => return outcome,
            };
        if let Some(refused) = self.over_plan_rows(ctx, &plan) {
            return refused;
        }
        if plan
            .fields
            .iter()
            .any(|f| matches!(f.kind, RootKind::Constant(_)))
            && !identity::may_read_service(&self.config, ctx)
        {
            return Outcome::request_error(vec![GraphqlError::new(
                ErrorCode::Forbidden,
                identity::SERVICE_REFUSED,
            )]);
        }
        drop(plan_span);
        let lookups = Lookups::take(self.cache.as_deref().filter(|_| !write), &plan, ctx);
        let started = req.trace.then(trace::Started::now);
        // Kept for a trace sampled out too: a mutation writes its context (and so the decision)
        // into its outbox rows from here.
        let execute_span = crate::otel_span!("graphql.execute");
        let done = async {
            if lookups.all_hit(&plan) {
                Ok(Done::new(&plan))
            } else if write {
                self.spawn_writes(plan.clone(), ctx.clone(), gate.clone())
                    .await
            } else {
                Ok(execution::query(&self.env(), &plan, ctx, gate).await)
            }
        }
        .instrument(execute_span)
        .await;
        let done = match done {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "write task failed");
                return Outcome::request_error(vec![GraphqlError::new(
                    ErrorCode::InternalServerError,
                    "internal error (see server log)",
                )]);
            }
        };
        // An answer with errors (a nested field that failed is a null beside its error) is
        // never kept: a later hit would return the null without the error.
        let storable = !done.has_errors() && plan.denied.is_empty();
        let mut results = done.results;
        lookups.fill(&mut results, &plan, storable);
        if let Some(rec) = &ctx.tenant {
            self.count_rows(ctx, rec, &results);
        }
        let mut body = response::assemble(&plan, results, introspection.as_ref());
        body.errors.extend(done.errors);
        if done.aborted {
            // The operation's writes were rolled back: no field's value stands.
            body.null_data();
        }
        if let Some(started) = started {
            trace::attach(&mut body, started, op, &plan);
        }
        let error_codes: Vec<ErrorCode> = body.errors.iter().map(|e| e.extensions.code).collect();
        Outcome {
            kind: OutcomeKind::Data,
            cache: lookups.headers(&plan).filter(|_| error_codes.is_empty()),
            body: body.finish(),
            error_codes,
            operation: Some(if write { "mutation" } else { "query" }),
            refusal: None,
        }
    }

    /// The tenant plan's `max_rows`, checked on the plan (cached plans are shared by tenants of
    /// every tier; `[limits] max_rows` was checked while planning).
    fn over_plan_rows(&self, ctx: &RequestContext, plan: &Plan) -> Option<Outcome> {
        let rec = ctx.tenant.as_ref()?;
        let max = self.quotas.tiers().of(rec).max_rows?;
        (plan.rows > max).then(|| {
            Outcome::request_error(vec![GraphqlError::new(
                ErrorCode::QueryTooComplex,
                format!(
                    "the operation may return more than {max} rows (the product of nested list limits), above tenant {}'s plan (max_rows); ask for fewer rows with smaller `limit` arguments",
                    rec.key
                ),
            )])
        })
    }

    /// The rows of an answer, for the tenant's usage and metrics.
    fn count_rows(
        &self,
        ctx: &RequestContext,
        rec: &crate::tenancy::TenantRecord,
        results: &[Option<execution::FieldResult>],
    ) {
        let rows: u64 = results
            .iter()
            .map(|r| match r {
                Some(Ok(Some(text))) => crate::quota::count_rows(text.as_bytes()),
                _ => 0,
            })
            .sum();
        self.quotas.rows(rec, rows);
        self.metrics.rows(&self.tenant_metrics(ctx), rows);
    }

    /// Runs a write plan to its end, then what follows its commit: in a task of its own, so a
    /// caller that goes away (a disconnected client) cannot stop it between COMMIT and the
    /// hand-off. `gate` still decides whether it may commit.
    fn spawn_writes(
        self: &Arc<Self>,
        plan: Arc<Plan>,
        ctx: RequestContext,
        gate: Arc<CommitGate>,
    ) -> tokio::task::JoinHandle<Done> {
        let engine = self.clone();
        // The task carries the request's span: its statements and outbox rows belong to it.
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                let mut done = execution::mutation(&engine.env(), &plan, &ctx, &gate).await;
                if !done.aborted {
                    engine.after_commit(&ctx, &plan, &mut done).await;
                }
                done
            }
            .instrument(span),
        )
    }

    /// After a commit: its outbox events to the relay, and the cached answers it outdates moved
    /// on here and on every instance, before the response is sent.
    async fn after_commit(&self, ctx: &RequestContext, plan: &Plan, done: &mut Done) {
        let tenant = ctx.tenant.as_ref().map_or("", |t| t.key.as_str());
        if !done.events.is_empty() {
            self.metrics
                .outbox_written(tenant, done.events.len() as u64);
            if let Some(events) = self.events.get() {
                let target = match &ctx.tenant {
                    Some(t) => Target::Tenant(t.clone()),
                    None => Target::Database(TENANT_DATABASE.to_owned()),
                };
                events.after_commit(target, std::mem::take(&mut done.events));
            }
        }
        if let Some(cache) = &self.cache {
            let bus = self.cache_bus.get().and_then(Option::as_deref);
            invalidate::after_commit(cache, bus, tenant, plan).await;
        }
    }
}
