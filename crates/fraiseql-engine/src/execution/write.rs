//! Mutations in one round trip: when every root field is a SQL mutation whose result is read
//! back through a view (or returned as is) and whose observers are SQL rules, the whole
//! transaction is sent at once: BEGIN, the context, each mutation with its outbox inserts and its
//! read-back (they find the returned keys in the transaction's `fraiseql.keys`), the COMMIT probe
//! and COMMIT. A statement that fails aborts the transaction, so everything after it fails too and
//! COMMIT becomes ROLLBACK: the first error is the answer. The commit gate is claimed before
//! sending, so a request whose COMMIT went out is reported with its outcome, never as a timeout.

use fraiseql_plan::{BoundParam, MutationPlan, OutputPlan, Plan, RootKind};
use fraiseql_schema::ContextValue;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

use super::pipeline::{self, Frame};
use super::{CommitGate, Done, Env};
use crate::connections::text_params;
use crate::error::db_error;
use crate::error::{ErrorCode, GraphqlError};
use crate::events::OutboxEvent;
use crate::identity::RequestContext;
use crate::routing::session::{begin_sql, SessionContext, SET_CONTEXT};

/// Whether `plan` can be sent in one round trip: SQL mutations only, all on one database, with
/// outputs that need no Rust code, and observers that are SQL rules only.
pub(crate) fn fits(env: &Env<'_>, plan: &Plan) -> bool {
    let mut database: Option<&str> = None;
    for f in &plan.fields {
        match &f.kind {
            RootKind::Mutation(m) => {
                if database.is_some_and(|d| d != m.database) {
                    return false;
                }
                database = Some(&m.database);
                match &m.output {
                    OutputPlan::Readback { plan, .. } if !plan.calls.is_empty() => return false,
                    OutputPlan::Readback { .. } => {}
                    OutputPlan::Value { projection, .. } if projection.is_some() => return false,
                    OutputPlan::Value { .. } => {}
                }
                if let Some(c) = &m.change {
                    let events = env.record_events
                        && !env.observers.statements(&c.entity, &c.operation).is_empty();
                    let rust = !env
                        .resolvers
                        .observers_of(&c.entity, &c.operation)
                        .is_empty();
                    if rust || (events && m.database != fraiseql_config::TENANT_DATABASE) {
                        return false;
                    }
                }
            }
            RootKind::Typename(_) => {}
            _ => return false,
        }
    }
    database.is_some()
}

/// One statement of the pipeline and what its answer is for.
enum Step<'p> {
    /// BEGIN or the context failed (only then is it in the list).
    Begin,
    Mutation(usize, &'p MutationPlan),
    Outbox(usize),
    Readback(usize),
    Probe,
    Commit,
}

/// The statements after BEGIN and the context, in order, with their parameters.
struct Steps<'p> {
    steps: Vec<Step<'p>>,
    sqls: Vec<&'p str>,
    params: Vec<Vec<Option<String>>>,
}

impl<'p> Steps<'p> {
    /// Each mutation of `plan`, its outbox inserts and its read-back, then the probe and COMMIT.
    fn of(env: &'p Env<'_>, plan: &'p Plan, session: &SessionContext<'_>) -> Self {
        let tenant_key = session
            .value(fraiseql_schema::ContextValue::TenantKey)
            .map(str::to_owned);
        // The request's trace continues from its outbox rows (a bind parameter, like the rest).
        let traceparent = crate::telemetry::current_traceparent();
        let mut s = Self {
            steps: Vec::new(),
            sqls: Vec::new(),
            params: Vec::new(),
        };
        for (i, f) in plan.fields.iter().enumerate() {
            let RootKind::Mutation(m) = &f.kind else {
                continue;
            };
            let bound = m.params.iter().map(|p| match p {
                BoundParam::Value(v) => v.clone(),
                BoundParam::Context(c) => session.value(*c).map(str::to_owned),
            });
            s.push(Step::Mutation(i, m), &m.sql, bound.collect());
            if let (Some(c), true) = (&m.change, env.record_events) {
                for st in env.observers.statements(&c.entity, &c.operation) {
                    let params = vec![
                        tenant_key.clone(),
                        Some(st.subject.clone()),
                        traceparent.clone(),
                    ];
                    s.push(Step::Outbox(i), &st.sql, params);
                }
            }
            if let OutputPlan::Readback { plan: rb, .. } = &m.output {
                let params = rb.params.iter().map(|s| Some(s.clone())).collect();
                s.push(Step::Readback(i), &rb.sql, params);
            }
        }
        env.count(s.steps.len());
        s.steps.push(Step::Probe);
        s.steps.push(Step::Commit);
        s
    }

    fn push(&mut self, step: Step<'p>, sql: &'p str, params: Vec<Option<String>>) {
        self.steps.push(step);
        self.sqls.push(sql);
        self.params.push(params);
    }
}

/// Marks the operation failed with `e` on its first mutation.
fn fail_all(done: &mut Done, plan: &Plan, e: GraphqlError) {
    done.aborted = true;
    if let Some(i) = plan
        .fields
        .iter()
        .position(|f| matches!(f.kind, RootKind::Mutation(_)))
    {
        done.results[i] = Some(Err(e));
    }
}

/// Runs `plan` (which [`fits`]) in one round trip.
pub(crate) async fn run(
    env: &Env<'_>,
    plan: &Plan,
    ctx: &RequestContext,
    gate: &CommitGate,
) -> Done {
    let mut done = Done::new(plan);
    let database = plan
        .fields
        .iter()
        .find_map(|f| match &f.kind {
            RootKind::Mutation(m) => Some(m.database.as_str()),
            _ => None,
        })
        .unwrap_or(fraiseql_config::TENANT_DATABASE);
    let (lease, session) = match env.routes.route(ctx, database).await {
        Ok(l) => l,
        Err(e) => {
            fail_all(&mut done, plan, e);
            return done;
        }
    };
    let mut steps = Steps::of(env, plan, &session);
    let fixed = match lease
        .prepare_all(&[begin_sql(true, 2), SET_CONTEXT, "SELECT 1", "COMMIT"])
        .await
    {
        Ok(f) => f,
        Err(e) => {
            fail_all(&mut done, plan, db_error(&e, "transaction"));
            return done;
        }
    };
    // Decided before COMMIT leaves: from here the outcome is reported, whatever the deadline.
    if !gate.try_commit() {
        let e = GraphqlError::new(
            ErrorCode::InternalServerError,
            "the request timed out before it committed; nothing was changed",
        );
        fail_all(&mut done, plan, e);
        return done;
    }
    let db_name = crate::telemetry::db_name(ctx, database);
    let answers = match send(&lease, db_name, &session, &fixed, &steps).await {
        Ok(a) => a,
        Err(e) => {
            fail_all(&mut done, plan, db_error(&e, "transaction"));
            return done;
        }
    };
    let (mut answers, context) = answers;
    if let Err(e) = context {
        answers.insert(0, Err(e));
        steps.steps.insert(0, Step::Begin);
    }
    read_answers(plan, &steps.steps, answers, &lease, &mut done);
    done
}

type Answer = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>;

/// Sends BEGIN, the context and every step in one flush (`fixed`: BEGIN, context, probe,
/// COMMIT); the steps' answers (probe and COMMIT last) and whether BEGIN and the context went
/// through.
async fn send(
    lease: &crate::connections::Lease,
    db_name: &str,
    session: &SessionContext<'_>,
    fixed: &[tokio_postgres::Statement],
    steps: &Steps<'_>,
) -> Result<(Vec<Answer>, Result<(), tokio_postgres::Error>), tokio_postgres::Error> {
    let client = lease.client();
    let ctx_params = session.params();
    let ctx_refs: Vec<&(dyn ToSql + Sync)> = ctx_params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect();
    let bound: Vec<Vec<Option<crate::connections::TextParam<'_>>>> = steps
        .params
        .iter()
        .map(|p| {
            let v: Vec<Option<&str>> = p.iter().map(Option::as_deref).collect();
            text_params(&v)
        })
        .collect();
    let refs: Vec<Vec<&(dyn ToSql + Sync)>> = bound
        .iter()
        .map(|b| b.iter().map(|p| p as &(dyn ToSql + Sync)).collect())
        .collect();
    let frame = Frame {
        begin: &fixed[0],
        set: &fixed[1],
        end: &fixed[3],
    };
    let (probe, commit) = (&fixed[2], &fixed[3]);
    let tenant = session.value(ContextValue::TenantKey);
    let sqls = &steps.sqls;
    let (context, answers) =
        pipeline::run(lease, frame, &ctx_refs, &steps.sqls, |stmts| async move {
            let statements = stmts.iter().zip(&refs).zip(sqls).map(|((s, r), sql)| {
                let span = crate::telemetry::sql(db_name, tenant, sql);
                client.query(s, r.as_slice()).instrument(span)
            });
            let none = tracing::Span::none;
            futures_util::future::join_all(statements.chain([
                client.query(probe, &[]).instrument(none()),
                client.query(commit, &[]).instrument(none()),
            ]))
            .await
        })
        .await?;
    Ok((answers, context))
}

/// Reads each step's answer into `done`: the first error is the answer (COMMIT was then a
/// ROLLBACK and every result is dropped), else each mutation's output and its outbox events.
fn read_answers(
    plan: &Plan,
    steps: &[Step<'_>],
    answers: Vec<Answer>,
    lease: &crate::connections::Lease,
    done: &mut Done,
) {
    let mut first_error: Option<(usize, GraphqlError)> = None;
    let mut committed = false;
    for (step, answer) in steps.iter().zip(answers) {
        let field = |i: usize| plan.fields[i].response_key.as_str();
        match (step, answer) {
            (Step::Commit, Ok(_)) => committed = true,
            (Step::Commit, Err(e)) => {
                first_error.get_or_insert((usize::MAX, db_error(&e, "transaction")));
            }
            (_, Err(e)) => {
                if first_error.is_none() {
                    let (i, name) = match step {
                        Step::Mutation(i, _) | Step::Outbox(i) | Step::Readback(i) => {
                            (*i, field(*i).to_owned())
                        }
                        _ => (usize::MAX, "transaction".to_owned()),
                    };
                    first_error = Some((i, db_error(&e, &name)));
                }
            }
            (Step::Mutation(i, m), Ok(rows)) => {
                if let OutputPlan::Value { list, nullable, .. } = &m.output {
                    let text: Option<String> = rows.first().and_then(|r| r.try_get(0).ok());
                    done.results[*i] = Some(
                        value_output(text, *list, *nullable, field(*i))
                            .map(|t| t.map(super::JsonText::Text)),
                    );
                }
            }
            (Step::Outbox(_), Ok(rows)) => {
                for row in rows {
                    if let (Ok(event_id), Ok(subject), Ok(payload), Ok(traceparent)) = (
                        row.try_get(0),
                        row.try_get(1),
                        row.try_get(2),
                        row.try_get(3),
                    ) {
                        done.events.push(OutboxEvent {
                            event_id,
                            subject,
                            payload,
                            traceparent,
                        });
                    }
                }
            }
            (Step::Readback(i), Ok(rows)) => {
                let RootKind::Mutation(m) = &plan.fields[*i].kind else {
                    continue;
                };
                let text: Option<String> = rows.first().and_then(|r| r.try_get(0).ok());
                let text = text.map(super::JsonText::Text);
                let nullable = match &m.output {
                    OutputPlan::Readback { plan, .. } => plan.nullable,
                    OutputPlan::Value { nullable, .. } => *nullable,
                };
                done.results[*i] = Some(match text {
                    None if !nullable => Err(GraphqlError::new(
                        ErrorCode::NotFound,
                        format!("`{}` found nothing to return", field(*i)),
                    )),
                    t => Ok(t),
                });
            }
            (Step::Begin | Step::Probe, Ok(_)) => {}
        }
    }
    match first_error {
        None if committed => {
            lease.set_clean();
        }
        None => {
            done.aborted = true;
            done.errors.push(GraphqlError::new(
                ErrorCode::InternalServerError,
                "the operation did not commit (see server log)",
            ));
        }
        Some((i, e)) => {
            // COMMIT answered (as a ROLLBACK): the connection is fine, nothing was written.
            if committed {
                lease.set_clean();
            }
            done.aborted = true;
            done.events.clear();
            for r in done.results.iter_mut() {
                *r = None;
            }
            match plan.fields.get(i) {
                Some(_) => done.results[i] = Some(Err(e)),
                None => done.errors.push(e),
            }
        }
    }
}

/// The answer of a mutation returning a scalar: the first of the values its statement returned.
fn value_output(
    text: Option<String>,
    list: bool,
    nullable: bool,
    field: &str,
) -> Result<Option<String>, GraphqlError> {
    let keys: Value = serde_json::from_str(text.as_deref().unwrap_or("[]")).map_err(|e| {
        tracing::error!(error = %e, "mutation result is not JSON");
        GraphqlError::new(ErrorCode::InternalServerError, "internal error")
    })?;
    let value = match (list, keys) {
        (false, Value::Array(mut items)) => {
            if items.is_empty() {
                Value::Null
            } else {
                items.swap_remove(0)
            }
        }
        (_, v) => v,
    };
    if value.is_null() {
        if nullable {
            return Ok(None);
        }
        return Err(GraphqlError::new(
            ErrorCode::NotFound,
            format!("`{field}` found nothing to return"),
        ));
    }
    Ok(Some(value.to_string()))
}
