//! Plans that need more than one pipelined read: mutations, Rust resolvers and field markers.
//!
//! Everything runs in the request's transaction (one per database touched, opened on first use):
//! `BEGIN` (read-only for queries), the context (`session.rs`), then the root fields in order. A
//! mutation's statement returns keys; the entities are read back through their view with the
//! client's selection. Field resolvers' markers are replaced by one batched call per place in
//! the selection (`markers.rs`). A failed mutation rolls every write of the operation back and
//! `data` becomes `null`; a write whose request timed out is rolled back, never committed
//! behind the client's back (`CommitGate`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fraiseql_config::TENANT_DATABASE;
use fraiseql_plan::{BoundParam, CallKind, OutputPlan, Plan, RootKind, SqlPlan};
use fraiseql_schema::ContextValue;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

use super::markers::{collect_markers, project, replace_markers, resolve_batch};
use super::{CommitGate, Done, Env, JsonText};
use crate::connections::{text_params, Lease};
use crate::error::db_error;
use crate::error::{ErrorCode, GraphqlError};
use crate::events::OutboxEvent;
use crate::identity::RequestContext;
use crate::resolvers::{Args, Context, Transaction};
use crate::routing::session::{self, SessionContext};

/// A field's JSON built here.
type TextResult = Result<Option<String>, GraphqlError>;

struct Txs<'e, 'r> {
    env: &'e Env<'e>,
    ctx: &'r RequestContext,
    write: bool,
    gate: &'r CommitGate,
    /// The request context values (the same on every database).
    values: SessionContext<'r>,
    open: Vec<(String, Transaction)>,
}

impl Txs<'_, '_> {
    fn context_value(&self, c: ContextValue) -> Option<String> {
        self.values.value(c).map(str::to_owned)
    }

    /// The transaction on `database`, begun (with the context set) on first use.
    async fn get(&mut self, database: &str) -> Result<Transaction, GraphqlError> {
        if let Some((_, t)) = self.open.iter().find(|(d, _)| d == database) {
            return Ok(t.clone());
        }
        let (lease, values) = self.env.routes.route(self.ctx, database).await?;
        session::begin(&lease, &values, self.write)
            .await
            .map_err(|e| db_error(&e, "transaction"))?;
        let tx = Transaction {
            lease: Arc::new(lease),
            statements: self.env.statements.clone(),
        };
        self.open.push((database.to_owned(), tx.clone()));
        Ok(tx)
    }

    /// Rolls back and forgets every open transaction (the next use begins a new one).
    async fn reset(&mut self) {
        for (_, tx) in self.open.drain(..) {
            let _ = session::end(&tx.lease, false).await;
        }
    }

    /// COMMIT (or ROLLBACK) every transaction; connections whose transaction ended go back to
    /// their pools. COMMIT goes with a probe: PostgreSQL answers COMMIT of a transaction in which
    /// a statement failed with a silent ROLLBACK, and the probe is what tells. After the first
    /// failure the remaining transactions are rolled back, not committed. A write commits only
    /// if its request has not timed out (the gate), so a client that got 408 changed nothing.
    async fn end(self, commit: bool) -> Result<(), GraphqlError> {
        let mut failure: Option<GraphqlError> = None;
        let writes = self.write && commit && !self.open.is_empty();
        if writes && !self.gate.try_commit() {
            failure = Some(GraphqlError::new(
                ErrorCode::InternalServerError,
                "the request timed out before it committed; nothing was changed",
            ));
        }
        for (db, tx) in self.open {
            let lease = &tx.lease;
            let result = if commit && failure.is_none() {
                let (probe, committed) = futures_util::future::join(
                    lease.execute_prepared("SELECT 1", &[]),
                    lease.execute_prepared("COMMIT", &[]),
                )
                .await;
                match (probe, committed) {
                    (Ok(_), Ok(_)) => Ok(()),
                    (Err(e), Ok(_)) => {
                        // The COMMIT was a ROLLBACK: the connection is fine, the writes are gone.
                        lease.set_clean();
                        tracing::warn!(database = %db, error = %e, "a statement failed earlier: the transaction was rolled back");
                        Err(GraphqlError::new(
                            ErrorCode::InternalServerError,
                            "the operation was rolled back because a statement in it failed (see server log)",
                        ))
                    }
                    (_, Err(e)) => Err(db_error(&e, "transaction")),
                }
            } else {
                lease
                    .execute_prepared("ROLLBACK", &[])
                    .await
                    .map(drop)
                    .map_err(|e| db_error(&e, "transaction"))
            };
            match result {
                Ok(()) => lease.set_clean(),
                Err(e) => {
                    tracing::error!(database = %db, error = %e.message, "transaction did not commit");
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

impl Lease {
    async fn execute_prepared(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = self.prepare(sql).await?;
        self.client().execute(&stmt, params).await
    }

    /// Runs a statement whose one column is text; no row is `None`.
    async fn text(
        &self,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<Option<String>, tokio_postgres::Error> {
        let stmt = self.prepare(sql).await?;
        let params = text_params(params);
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.client().query(&stmt, &refs).await?;
        match rows.first() {
            None => Ok(None),
            Some(r) => r.try_get(0),
        }
    }
}

/// Runs `plan`; `write` for mutation operations.
pub(crate) async fn run(
    env: &Env<'_>,
    plan: &Plan,
    ctx: &RequestContext,
    write: bool,
    gate: &CommitGate,
) -> Done {
    let mut txs = Txs {
        env,
        ctx,
        write,
        gate,
        values: SessionContext::on(ctx, TENANT_DATABASE),
        open: Vec::new(),
    };
    let mut done = Done::new(plan);
    for (i, field) in plan.fields.iter().enumerate() {
        let key = field.response_key.as_str();
        let errors_before = done.errors.len();
        let result = match &field.kind {
            RootKind::Sql(p) => Some(sql_field(&mut txs, p, key, &mut done.errors).await),
            RootKind::Mutation(m) => {
                let params: Vec<Option<String>> = m
                    .params
                    .iter()
                    .map(|p| match p {
                        BoundParam::Value(v) => v.clone(),
                        BoundParam::Context(c) => txs.context_value(*c),
                    })
                    .collect();
                let returned = async {
                    let tx = txs.get(&m.database).await?;
                    env.statements.fetch_add(1, Ordering::Relaxed);
                    let texts: Vec<Option<&str>> = params.iter().map(Option::as_deref).collect();
                    let span = crate::telemetry::sql(
                        crate::telemetry::db_name(ctx, &m.database),
                        txs.values.value(ContextValue::TenantKey),
                        &m.sql,
                    );
                    let text = tx
                        .lease
                        .text(&m.sql, &texts)
                        .instrument(span)
                        .await
                        .map_err(|e| db_error(&e, key))?;
                    serde_json::from_str::<Value>(text.as_deref().unwrap_or("[]")).map_err(|e| {
                        tracing::error!(error = %e, "mutation result is not JSON");
                        GraphqlError::new(ErrorCode::InternalServerError, "internal error")
                    })
                }
                .await;
                let returned = match (returned, &m.change) {
                    (Ok(keys), Some(change)) => {
                        record(&mut txs, change, &keys, true, &mut done.events, key)
                            .await
                            .map(|()| keys)
                    }
                    (r, _) => r,
                };
                Some(match returned {
                    Err(e) => Err(e),
                    Ok(Value::Array(values)) => {
                        output(
                            &mut txs,
                            &m.output,
                            Value::Array(values),
                            true,
                            key,
                            &mut done.errors,
                        )
                        .await
                    }
                    Ok(other) => {
                        output(&mut txs, &m.output, other, true, key, &mut done.errors).await
                    }
                })
            }
            RootKind::Resolver(r) => {
                let result = async {
                    let f = env.resolvers.root_fn(&r.coordinate).ok_or_else(|| {
                        GraphqlError::new(
                            ErrorCode::InternalServerError,
                            format!("no resolver is registered for `{}`", r.coordinate),
                        )
                    })?;
                    let context = context(&mut txs).await?;
                    f(context, Args(r.args.clone()))
                        .await
                        .map_err(|e| e.into_graphql())
                }
                .await;
                let result = match (result, &r.change) {
                    (Ok(v), Some(change)) => {
                        record(&mut txs, change, &v, false, &mut done.events, key)
                            .await
                            .map(|()| v)
                    }
                    (r, _) => r,
                };
                Some(match result {
                    Err(e) => Err(e),
                    Ok(v) => output(&mut txs, &r.output, v, false, key, &mut done.errors).await,
                })
            }
            RootKind::Entities(e) => Some(entities(&mut txs, e, key, &mut done.errors).await),
            RootKind::Typename(_)
            | RootKind::Introspection
            | RootKind::Denied
            | RootKind::Constant(_) => None,
        };
        let failed = matches!(result, Some(Err(_)));
        done.results[i] = result.map(|r| r.map(|t| t.map(JsonText::Text)));
        if write && failed {
            // Later mutations must not run on top of a failed one; everything is rolled back.
            done.aborted = true;
            break;
        }
        if !write && (failed || done.errors.len() > errors_before) {
            // A failed statement leaves a transaction unusable; a read has nothing to keep, so
            // later fields get fresh ones instead of "current transaction is aborted".
            txs.reset().await;
        }
    }
    if let Err(e) = txs.end(!done.aborted).await {
        if write && !done.aborted {
            done.aborted = true;
            done.errors.push(e);
        }
    }
    done
}

/// Keeps `keys` (returned by Rust code) in the transaction's `fraiseql.keys`, where the
/// read-back and outbox statements read them (a SQL mutation's statement sets it itself).
async fn remember_keys(tx: &Transaction, keys: &[Value], field: &str) -> Result<(), GraphqlError> {
    let json = Value::Array(keys.to_vec()).to_string();
    let sql = format!(
        "SELECT set_config('{}', $1, true)",
        fraiseql_schema::KEYS_SETTING
    );
    tx.lease
        .execute_prepared(&sql, &[&json])
        .await
        .map(drop)
        .map_err(|e| db_error(&e, field))
}

/// Writes the outbox events of the observers of `change` for the changed `keys`, in the
/// mutation's transaction on the tenant database. `from_sql`: the keys were returned by the
/// mutation's statement (and are in `fraiseql.keys` already).
async fn record(
    txs: &mut Txs<'_, '_>,
    change: &fraiseql_schema::Change,
    keys: &Value,
    from_sql: bool,
    out: &mut Vec<OutboxEvent>,
    field: &str,
) -> Result<(), GraphqlError> {
    let statements = txs
        .env
        .observers
        .statements(&change.entity, &change.operation);
    let rust = txs
        .env
        .resolvers
        .observers_of(&change.entity, &change.operation);
    if !txs.env.record_events || (statements.is_empty() && rust.is_empty()) {
        return Ok(());
    }
    let keys = key_list(keys.clone());
    if keys.is_empty() {
        return Ok(());
    }
    let tenant = txs.context_value(ContextValue::TenantKey);
    // The outbox is in the tenant database: the event commits with the change or not at all.
    let tx = txs.get(TENANT_DATABASE).await?;
    if !from_sql {
        remember_keys(&tx, &keys, field).await?;
    }
    let err = |e: tokio_postgres::Error| db_error(&e, field);
    // The request's trace continues from its outbox rows.
    let traceparent = crate::telemetry::current_traceparent();
    let db_name = crate::telemetry::db_name(txs.ctx, TENANT_DATABASE);
    for st in statements {
        txs.env.statements.fetch_add(1, Ordering::Relaxed);
        let stmt = tx.lease.prepare(&st.sql).await.map_err(err)?;
        let params = text_params(&[
            tenant.as_deref(),
            Some(st.subject.as_str()),
            traceparent.as_deref(),
        ]);
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let span = crate::telemetry::sql(db_name, tenant.as_deref(), &st.sql);
        let rows = tx
            .lease
            .client()
            .query(&stmt, &refs)
            .instrument(span)
            .await
            .map_err(err)?;
        for row in rows {
            out.push(OutboxEvent {
                event_id: row.try_get(0).map_err(err)?,
                subject: row.try_get(1).map_err(err)?,
                payload: row.try_get(2).map_err(err)?,
                traceparent: row.try_get(3).map_err(err)?,
            });
        }
    }
    if rust.is_empty() {
        return Ok(());
    }
    // Rust observers: their events go into the same outbox, in the same transaction.
    let ctx = context(txs).await?;
    let mut subjects = Vec::new();
    let mut payloads = Vec::new();
    for f in rust {
        let change = crate::resolvers::Change {
            entity: change.entity.clone(),
            operation: change.operation.clone(),
            keys: keys.clone(),
        };
        for e in f(ctx.clone(), change).await.map_err(|e| e.into_graphql())? {
            if !txs
                .env
                .subjects
                .iter()
                .any(|p| fraiseql_config::subject_matches(p, &e.subject))
            {
                tracing::error!(subject = %e.subject, "observer event outside the stream's subjects");
                return Err(GraphqlError::new(
                    ErrorCode::InternalServerError,
                    "an observer produced an event the stream does not capture (see server log)",
                ));
            }
            if !e.payload.is_object() {
                return Err(GraphqlError::new(
                    ErrorCode::InternalServerError,
                    "an observer produced an event whose payload is not a JSON object",
                ));
            }
            subjects.push(e.subject);
            payloads.push(e.payload.to_string());
        }
    }
    if subjects.is_empty() {
        return Ok(());
    }
    txs.env.statements.fetch_add(1, Ordering::Relaxed);
    let rows = ctx
        .tx
        .lease
        .client()
        .query(
            "INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload, traceparent) \
             SELECT e.eid, $1, e.subject, e.payload::jsonb || jsonb_build_object('event_id', e.eid, 'event_type', e.subject, 'tenant_id', $1::text, 'timestamp', to_jsonb(statement_timestamp())), $4::text \
             FROM (SELECT gen_random_uuid() AS eid, u.s AS subject, u.p AS payload FROM unnest($2::text[], $3::text[]) AS u(s, p)) e \
             RETURNING event_id::text, subject, payload::text, traceparent",
            &[&tenant, &subjects, &payloads, &traceparent],
        )
        .await
        .map_err(err)?;
    for row in rows {
        out.push(OutboxEvent {
            event_id: row.try_get(0).map_err(err)?,
            subject: row.try_get(1).map_err(err)?,
            payload: row.try_get(2).map_err(err)?,
            traceparent: row.try_get(3).map_err(err)?,
        });
    }
    Ok(())
}

async fn context(txs: &mut Txs<'_, '_>) -> Result<Context, GraphqlError> {
    let tx = txs.get(TENANT_DATABASE).await?;
    Ok(Context {
        tenant: txs.ctx.tenant.clone(),
        user_id: txs.ctx.identity.subject.clone(),
        roles: txs.ctx.identity.roles.to_vec(),
        tx,
        pools: txs.env.routes.pools().clone(),
    })
}

/// A root SQL field, on its database's transaction, with its field resolvers applied.
async fn sql_field(
    txs: &mut Txs<'_, '_>,
    p: &SqlPlan,
    key: &str,
    errors: &mut Vec<GraphqlError>,
) -> TextResult {
    let params: Vec<Option<&str>> = p.params.iter().map(|s| Some(s.as_str())).collect();
    run_sql(txs, p, &params, key, errors).await
}

async fn run_sql(
    txs: &mut Txs<'_, '_>,
    p: &SqlPlan,
    params: &[Option<&str>],
    key: &str,
    errors: &mut Vec<GraphqlError>,
) -> TextResult {
    let tx = txs.get(&p.database).await?;
    txs.env.statements.fetch_add(1, Ordering::Relaxed);
    let span = crate::telemetry::sql(
        crate::telemetry::db_name(txs.ctx, &p.database),
        txs.values.value(ContextValue::TenantKey),
        &p.sql,
    );
    let text = tx
        .lease
        .text(&p.sql, params)
        .instrument(span)
        .await
        .map_err(|e| db_error(&e, key))?;
    match text {
        Some(t) if !p.calls.is_empty() => {
            let mut json = parse(&t)?;
            resolve_calls(txs, &mut json, &p.calls, &p.marker, errors).await?;
            Ok(Some(json.to_string()))
        }
        other => Ok(other),
    }
}

fn parse(text: &str) -> Result<Value, GraphqlError> {
    serde_json::from_str(text).map_err(|e| {
        tracing::error!(error = %e, "statement result is not JSON");
        GraphqlError::new(ErrorCode::InternalServerError, "internal error")
    })
}

/// Computes the values of `calls` for the markers in `json` and puts them in place: each Rust
/// resolver called once with every parent of its place, each `@federated` place answered by one
/// statement on its database (whose own markers are resolved likewise, level by level).
fn resolve_calls<'t>(
    txs: &'t mut Txs<'_, '_>,
    json: &'t mut Value,
    calls: &'t [fraiseql_plan::FieldCall],
    marker: &'t str,
    errors: &'t mut Vec<GraphqlError>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), GraphqlError>> + Send + 't>> {
    Box::pin(async move {
        let mut rows: Vec<Vec<Value>> = calls.iter().map(|_| Vec::new()).collect();
        collect_markers(json, marker, &mut rows);
        let mut values: Vec<Result<Vec<Value>, GraphqlError>> = Vec::with_capacity(calls.len());
        let needs_context = calls
            .iter()
            .zip(&rows)
            .any(|(c, r)| c.kind == CallKind::Resolver && !r.is_empty());
        let context = match needs_context {
            true => Some(context(txs).await?),
            false => None,
        };
        for (call, parents) in calls.iter().zip(rows) {
            if parents.is_empty() {
                values.push(Ok(Vec::new()));
                continue;
            }
            let v = match (&call.kind, &context) {
                (CallKind::Resolver, Some(ctx)) => {
                    resolve_batch(txs.env.resolvers, ctx, call, parents).await
                }
                (CallKind::Resolver, None) => Ok(Vec::new()),
                (CallKind::Federated(plan), _) => {
                    federated(txs, plan, &call.path, parents, marker, errors).await
                }
            };
            values.push(v);
        }
        let mut iters = Vec::with_capacity(values.len());
        for (call, v) in calls.iter().zip(values) {
            match v {
                Ok(v) => iters.push(v.into_iter()),
                Err(e) => {
                    errors.push(e.with_path(call.path.iter().cloned()));
                    iters.push(Vec::new().into_iter());
                }
            }
        }
        replace_markers(json, marker, &mut iters);
        Ok(())
    })
}

/// One `@federated` place: every parent's lookup value in one statement on the other database
/// (in the request's transaction there, tenant context set), one value per parent.
async fn federated(
    txs: &mut Txs<'_, '_>,
    plan: &SqlPlan,
    path: &[String],
    lookups: Vec<Value>,
    marker: &str,
    errors: &mut Vec<GraphqlError>,
) -> Result<Vec<Value>, GraphqlError> {
    let n = lookups.len();
    let keys = Value::Array(lookups).to_string();
    let mut params: Vec<Option<&str>> = Vec::with_capacity(plan.params.len());
    params.push(Some(keys.as_str()));
    params.extend(plan.params.iter().skip(1).map(|s| Some(s.as_str())));
    let field = path.last().map_or("field", String::as_str);
    let tx = txs.get(&plan.database).await?;
    txs.env.statements.fetch_add(1, Ordering::Relaxed);
    let text = tx
        .lease
        .text(&plan.sql, &params)
        .await
        .map_err(|e| db_error(&e, field))?;
    let mut json = parse(text.as_deref().unwrap_or("[]"))?;
    if !plan.calls.is_empty() {
        resolve_calls(txs, &mut json, &plan.calls, marker, errors).await?;
    }
    match json {
        Value::Array(items) if items.len() == n => Ok(items),
        _ => {
            tracing::error!(database = %plan.database, expected = n, "federated statement answered a wrong number of values");
            Err(GraphqlError::new(
                ErrorCode::InternalServerError,
                "internal error (see server log)",
            ))
        }
    }
}

/// `_entities` over several databases: each database's statement, then every answer put back
/// at its representation's position.
async fn entities(
    txs: &mut Txs<'_, '_>,
    e: &fraiseql_plan::EntitiesPlan,
    key: &str,
    errors: &mut Vec<GraphqlError>,
) -> TextResult {
    let mut out: Vec<Value> = vec![Value::Null; e.len];
    for part in &e.parts {
        let params: Vec<Option<&str>> = part.plan.params.iter().map(|s| Some(s.as_str())).collect();
        let text = run_sql(txs, &part.plan, &params, key, errors).await?;
        let Value::Array(items) = parse(text.as_deref().unwrap_or("[]"))? else {
            return Err(GraphqlError::new(
                ErrorCode::InternalServerError,
                "internal error",
            ));
        };
        for (pos, v) in part.positions.iter().zip(items) {
            if let Some(slot) = out.get_mut(*pos) {
                *slot = v;
            }
        }
    }
    Ok(Some(Value::Array(out).to_string()))
}

/// Turns what a mutation or resolver returned into the field's JSON text.
async fn output(
    txs: &mut Txs<'_, '_>,
    out: &OutputPlan,
    value: Value,
    from_sql: bool,
    key: &str,
    errors: &mut Vec<GraphqlError>,
) -> TextResult {
    let result = match out {
        OutputPlan::Readback { plan: p, list } => {
            let list = *list;
            let keys = key_list(value);
            if keys.is_empty() {
                if list {
                    Some("[]".to_owned())
                } else {
                    None
                }
            } else {
                if !from_sql {
                    let tx = txs.get(&p.database).await?;
                    remember_keys(&tx, &keys, key).await?;
                }
                let params: Vec<Option<&str>> = p.params.iter().map(|s| Some(s.as_str())).collect();
                run_sql(txs, p, &params, key, errors).await?
            }
        }
        OutputPlan::Value {
            list, projection, ..
        } => {
            // A statement returns rows: a single value is the first one.
            let value = match (from_sql, *list, value) {
                (true, false, Value::Array(mut items)) => {
                    if items.is_empty() {
                        Value::Null
                    } else {
                        items.swap_remove(0)
                    }
                }
                (_, _, v) => v,
            };
            let value = match projection {
                Some(p) => project(&value, p),
                None => value,
            };
            (!value.is_null()).then(|| value.to_string())
        }
    };
    let nullable = match out {
        OutputPlan::Readback { plan, .. } => plan.nullable,
        OutputPlan::Value { nullable, .. } => *nullable,
    };
    if result.is_none() && !nullable {
        return Err(GraphqlError::new(
            ErrorCode::NotFound,
            format!("`{key}` found nothing to return"),
        ));
    }
    Ok(result)
}

/// The keys a mutation or resolver returned: a list, one key, or none (`null`s dropped).
fn key_list(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.into_iter().filter(|v| !v.is_null()).collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}
