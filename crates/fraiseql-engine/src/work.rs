//! Plans that need more than one pipelined read: mutations and Rust resolvers.
//!
//! Everything runs in the request's transaction (one per database touched, opened on first use):
//! `BEGIN` (read-only for queries), the context settings (`app.tenant_id`, `app.tenant_key`,
//! `app.user_id`, `app.roles`), then the root fields in order. A mutation's statement returns
//! keys; the entities are read back through their view with the client's selection. Field
//! resolvers' markers are replaced by one batched call per place in the selection. A failed
//! mutation rolls every write of the operation back and `data` becomes `null`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fraiseql_config::TENANT_DATABASE;
use fraiseql_plan::{
    param_text, BoundParam, FieldCall, OutputPlan, Plan, Projected, Projection, RootKind, SqlPlan,
};
use fraiseql_schema::ContextValue;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::db::Pools;
use crate::engine::RequestContext;
use crate::error::{ErrorCode, GraphqlError};
use crate::events::{Observers, OutboxEvent};
use crate::execute::{db_error, pool_error, FieldResult};
use crate::resolvers::{Args, Context, FieldBatch, Held, HeldKind, Resolvers, Transaction};
use crate::tenancy::Tenants;

const SET_CONTEXT: &str = "SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_key', $2, true), set_config('app.user_id', $3, true), set_config('app.roles', $4, true)";

/// What the engine lends the executor.
pub(crate) struct Env<'e> {
    pub pools: &'e Arc<Pools>,
    pub tenants: Option<&'e Tenants>,
    pub resolvers: &'e Resolvers,
    pub statements: &'e Arc<AtomicU64>,
    pub observers: &'e Observers,
    /// `[observers.stream] subjects`: events of Rust observers must fall under them.
    pub subjects: &'e [String],
    /// `[observers] enabled`: without it no event is recorded.
    pub record_events: bool,
}

/// The root fields' results, field errors found on the way, and whether `data` must be `null`.
pub(crate) struct Done {
    pub results: Vec<Option<FieldResult>>,
    pub errors: Vec<GraphqlError>,
    pub aborted: bool,
    /// Outbox events written (on the tenant database), to publish once committed.
    pub events: Vec<OutboxEvent>,
}

struct Txs<'e, 'r> {
    env: &'e Env<'e>,
    ctx: &'r RequestContext,
    write: bool,
    open: Vec<(String, Transaction)>,
}

impl Txs<'_, '_> {
    fn context_value(&self, c: ContextValue) -> Option<String> {
        match c {
            ContextValue::TenantId => self.ctx.tenant.as_ref().map(|t| t.id.to_string()),
            ContextValue::TenantKey => self.ctx.tenant.as_ref().map(|t| t.key.clone()),
            ContextValue::UserId => self.ctx.identity.subject.clone(),
            ContextValue::Roles => param_text(&Value::Array(
                self.ctx
                    .identity
                    .roles
                    .iter()
                    .map(|r| Value::String(r.clone()))
                    .collect(),
            )),
        }
    }

    /// The transaction on `database`, begun (with the context set) on first use.
    async fn get(&mut self, database: &str) -> Result<Transaction, GraphqlError> {
        if let Some((_, t)) = self.open.iter().find(|(d, _)| d == database) {
            return Ok(t.clone());
        }
        let held = match (
            database == TENANT_DATABASE,
            &self.ctx.tenant,
            self.env.tenants,
        ) {
            (true, Some(rec), Some(tenants)) => {
                Held::new(HeldKind::Lease(tenants.connection(rec).await?))
            }
            _ => {
                let pool = self.env.pools.get(database).ok_or_else(|| {
                    GraphqlError::new(
                        ErrorCode::InternalServerError,
                        format!("database `{database}` is not configured"),
                    )
                })?;
                Held::new(HeldKind::Pooled(
                    pool.get().await.map_err(|e| pool_error(&e, database))?,
                ))
            }
        };
        let begin = if self.write {
            "BEGIN"
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        };
        let values: Vec<Option<String>> = ContextValue::ALL
            .into_iter()
            .map(|c| self.context_value(c))
            .collect();
        let texts: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
        let params = crate::execute::text_params(&texts);
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        held.set_dirty();
        let begun = async {
            // Prepared first, then sent together: BEGIN must reach the server before the
            // settings, which are local to the transaction.
            let (b, s) =
                futures_util::future::join(held.prepare(begin), held.prepare(SET_CONTEXT)).await;
            let (b, s) = (b?, s?);
            let client = held.client();
            let (b, s) =
                futures_util::future::join(client.execute(&b, &[]), client.execute(&s, &refs))
                    .await;
            b.and(s)
        }
        .await;
        if let Err(e) = begun {
            return Err(db_error(&e, "transaction"));
        }
        let tx = Transaction {
            held: Arc::new(held),
            statements: self.env.statements.clone(),
        };
        self.open.push((database.to_owned(), tx.clone()));
        Ok(tx)
    }

    /// Rolls back and forgets every open transaction (the next use begins a new one).
    async fn reset(&mut self) {
        for (_, tx) in self.open.drain(..) {
            if tx.held.execute_prepared("ROLLBACK", &[]).await.is_ok() {
                tx.held.set_clean();
            }
        }
    }

    /// COMMIT (or ROLLBACK) every transaction; connections whose transaction ended go back to
    /// their pools. COMMIT goes with a probe: PostgreSQL answers COMMIT of a transaction in which
    /// a statement failed with a silent ROLLBACK, and the probe is what tells. After the first
    /// failure the remaining transactions are rolled back, not committed.
    async fn end(self, commit: bool) -> Result<(), GraphqlError> {
        let mut failure: Option<GraphqlError> = None;
        for (db, tx) in self.open {
            let held = &tx.held;
            let result = if commit && failure.is_none() {
                let (probe, committed) = futures_util::future::join(
                    held.execute_prepared("SELECT 1", &[]),
                    held.execute_prepared("COMMIT", &[]),
                )
                .await;
                match (probe, committed) {
                    (Ok(_), Ok(_)) => Ok(()),
                    (Err(e), Ok(_)) => {
                        // The COMMIT was a ROLLBACK: the connection is fine, the writes are gone.
                        held.set_clean();
                        tracing::warn!(database = %db, error = %e, "a statement failed earlier: the transaction was rolled back");
                        Err(GraphqlError::new(
                            ErrorCode::InternalServerError,
                            "the operation was rolled back because a statement in it failed (see server log)",
                        ))
                    }
                    (_, Err(e)) => Err(db_error(&e, "transaction")),
                }
            } else {
                held.execute_prepared("ROLLBACK", &[])
                    .await
                    .map(drop)
                    .map_err(|e| db_error(&e, "transaction"))
            };
            match result {
                Ok(()) => held.set_clean(),
                Err(e) => {
                    tracing::error!(database = %db, error = %e.message, "transaction did not commit");
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

impl Held {
    async fn execute_prepared(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = self.prepare(sql).await?;
        self.client().execute(&stmt, params).await
    }

    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        match self.kind() {
            HeldKind::Lease(l) => l.shared().prepare(sql).await,
            HeldKind::Pooled(o) => o.prepare_cached(sql).await,
        }
    }

    /// Runs a statement whose one column is text; no row is `None`.
    async fn text(
        &self,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<Option<String>, tokio_postgres::Error> {
        let stmt = self.prepare(sql).await?;
        let params = crate::execute::text_params(params);
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
pub(crate) async fn run(env: &Env<'_>, plan: &Plan, ctx: &RequestContext, write: bool) -> Done {
    let mut txs = Txs {
        env,
        ctx,
        write,
        open: Vec::new(),
    };
    let mut done = Done {
        results: plan.fields.iter().map(|_| None).collect(),
        errors: Vec::new(),
        aborted: false,
        events: Vec::new(),
    };
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
                    let text = tx
                        .held
                        .text(&m.sql, &texts)
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
                        record(&mut txs, change, &keys, &mut done.events, key)
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
                    (Ok(v), Some(change)) => record(&mut txs, change, &v, &mut done.events, key)
                        .await
                        .map(|()| v),
                    (r, _) => r,
                };
                Some(match result {
                    Err(e) => Err(e),
                    Ok(v) => output(&mut txs, &r.output, v, false, key, &mut done.errors).await,
                })
            }
            RootKind::Typename(_) | RootKind::Introspection | RootKind::Denied => None,
        };
        let failed = matches!(result, Some(Err(_)));
        done.results[i] = result;
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

/// Writes the outbox events of the observers of `change` for the changed `keys`, in the
/// mutation's transaction on the tenant database.
async fn record(
    txs: &mut Txs<'_, '_>,
    change: &fraiseql_schema::Change,
    keys: &Value,
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
    let array = param_text(&Value::Array(keys.clone()));
    let tenant = txs.context_value(ContextValue::TenantKey);
    // The outbox is in the tenant database: the event commits with the change or not at all.
    let tx = txs.get(TENANT_DATABASE).await?;
    let err = |e: tokio_postgres::Error| db_error(&e, field);
    for st in statements {
        txs.env.statements.fetch_add(1, Ordering::Relaxed);
        let stmt = tx.held.prepare(&st.sql).await.map_err(err)?;
        let params = crate::execute::text_params(&[
            tenant.as_deref(),
            Some(st.subject.as_str()),
            array.as_deref(),
        ]);
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        for row in tx.held.client().query(&stmt, &refs).await.map_err(err)? {
            out.push(OutboxEvent {
                event_id: row.try_get(0).map_err(err)?,
                subject: row.try_get(1).map_err(err)?,
                payload: row.try_get(2).map_err(err)?,
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
        .held
        .client()
        .query(
            "INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload) \
             SELECT e.eid, $1, e.subject, e.payload::jsonb || jsonb_build_object('event_id', e.eid, 'event_type', e.subject, 'tenant_id', $1::text, 'timestamp', to_jsonb(statement_timestamp())) \
             FROM (SELECT gen_random_uuid() AS eid, u.s AS subject, u.p AS payload FROM unnest($2::text[], $3::text[]) AS u(s, p)) e \
             RETURNING event_id::text, subject, payload::text",
            &[&tenant, &subjects, &payloads],
        )
        .await
        .map_err(err)?;
    for row in rows {
        out.push(OutboxEvent {
            event_id: row.try_get(0).map_err(err)?,
            subject: row.try_get(1).map_err(err)?,
            payload: row.try_get(2).map_err(err)?,
        });
    }
    Ok(())
}

async fn context(txs: &mut Txs<'_, '_>) -> Result<Context, GraphqlError> {
    let tx = txs.get(TENANT_DATABASE).await?;
    Ok(Context {
        tenant: txs.ctx.tenant.clone(),
        user_id: txs.ctx.identity.subject.clone(),
        roles: txs.ctx.identity.roles.clone(),
        tx,
        pools: txs.env.pools.clone(),
    })
}

/// A root SQL field, on its database's transaction, with its field resolvers applied.
async fn sql_field(
    txs: &mut Txs<'_, '_>,
    p: &SqlPlan,
    key: &str,
    errors: &mut Vec<GraphqlError>,
) -> FieldResult {
    let params: Vec<Option<&str>> = p.params.iter().map(|s| Some(s.as_str())).collect();
    run_sql(txs, p, &params, key, errors).await
}

async fn run_sql(
    txs: &mut Txs<'_, '_>,
    p: &SqlPlan,
    params: &[Option<&str>],
    key: &str,
    errors: &mut Vec<GraphqlError>,
) -> FieldResult {
    let tx = txs.get(&p.database).await?;
    txs.env.statements.fetch_add(1, Ordering::Relaxed);
    let text = tx
        .held
        .text(&p.sql, params)
        .await
        .map_err(|e| db_error(&e, key))?;
    match text {
        Some(t) if !p.calls.is_empty() => {
            let context = context(txs).await?;
            Ok(Some(
                resolve_markers(txs.env.resolvers, &context, &t, &p.calls, &p.marker, errors)
                    .await?,
            ))
        }
        other => Ok(other),
    }
}

/// Turns what a mutation or resolver returned into the field's JSON text.
async fn output(
    txs: &mut Txs<'_, '_>,
    out: &OutputPlan,
    value: Value,
    from_sql: bool,
    key: &str,
    errors: &mut Vec<GraphqlError>,
) -> FieldResult {
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
                let array = param_text(&Value::Array(keys));
                let params: Vec<Option<&str>> = p
                    .params
                    .iter()
                    .enumerate()
                    .map(|(i, own)| {
                        if i == 0 {
                            array.as_deref()
                        } else {
                            Some(own.as_str())
                        }
                    })
                    .collect();
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

/// Keeps the selected keys of an object value (recursively), in selection order.
fn project(value: &Value, p: &Projection) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|i| project(i, p)).collect()),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(p.fields.len());
            for f in &p.fields {
                let v = match &f.source {
                    Projected::Typename(t) => Value::String(t.clone()),
                    Projected::Denied => Value::Null,
                    Projected::Field { name, projection } => {
                        let v = map.get(name).cloned().unwrap_or(Value::Null);
                        match projection {
                            Some(sub) => project(&v, sub),
                            None => v,
                        }
                    }
                };
                out.insert(f.key.clone(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn is_marker(v: &Value, key: &str) -> Option<usize> {
    let obj = v.as_object()?;
    if obj.len() != 2 {
        return None;
    }
    obj.get(key)?.as_u64().map(|n| n as usize)
}

fn collect_markers(v: &mut Value, key: &str, rows: &mut [Vec<Value>]) {
    if let Some(i) = is_marker(v, key) {
        if let Some(slot) = rows.get_mut(i) {
            let row = v.get_mut("row").map(Value::take).unwrap_or(Value::Null);
            slot.push(row);
        }
        return;
    }
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| collect_markers(i, key, rows)),
        Value::Object(map) => map.values_mut().for_each(|i| collect_markers(i, key, rows)),
        _ => {}
    }
}

fn replace_markers(v: &mut Value, key: &str, values: &mut [std::vec::IntoIter<Value>]) {
    if let Some(i) = is_marker(v, key) {
        *v = values
            .get_mut(i)
            .and_then(Iterator::next)
            .unwrap_or(Value::Null);
        return;
    }
    match v {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| replace_markers(i, key, values)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|i| replace_markers(i, key, values)),
        _ => {}
    }
}

/// Calls each field resolver once with every parent row of its place in the selection, then
/// puts the values where the markers were.
async fn resolve_markers(
    resolvers: &Resolvers,
    ctx: &Context,
    text: &str,
    calls: &[FieldCall],
    key: &str,
    errors: &mut Vec<GraphqlError>,
) -> Result<String, GraphqlError> {
    let mut json: Value = serde_json::from_str(text).map_err(|e| {
        tracing::error!(error = %e, "statement result is not JSON");
        GraphqlError::new(ErrorCode::InternalServerError, "internal error")
    })?;
    let mut rows: Vec<Vec<Value>> = calls.iter().map(|_| Vec::new()).collect();
    collect_markers(&mut json, key, &mut rows);
    let batches = calls.iter().zip(rows).map(|(call, parents)| async move {
        let coordinate = format!("{}.{}", call.type_name, call.field);
        let n = parents.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let f = resolvers.field_fn(&coordinate).ok_or_else(|| {
            GraphqlError::new(
                ErrorCode::InternalServerError,
                format!("no resolver is registered for `{coordinate}`"),
            )
        })?;
        let values = f(
            ctx.clone(),
            FieldBatch {
                parents,
                args: call.args.clone(),
            },
        )
        .await
        .map_err(|e| e.into_graphql())?;
        if values.len() != n {
            tracing::error!(%coordinate, expected = n, got = values.len(), "resolver returned a wrong number of values");
            return Err(GraphqlError::new(
                ErrorCode::InternalServerError,
                format!("the resolver of `{coordinate}` returned {} values for {n} parents", values.len()),
            ));
        }
        Ok(match &call.projection {
            Some(p) => values.iter().map(|v| project(v, p)).collect(),
            None => values,
        })
    });
    let results = futures_util::future::join_all(batches).await;
    let mut values = Vec::with_capacity(calls.len());
    for (call, r) in calls.iter().zip(results) {
        match r {
            Ok(v) => values.push(v.into_iter()),
            Err(e) => {
                errors.push(e.with_path(call.path.iter().cloned()));
                values.push(Vec::new().into_iter());
            }
        }
    }
    replace_markers(&mut json, key, &mut values);
    Ok(json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_keeps_selected_keys_in_order() {
        let p = Projection {
            fields: vec![
                fraiseql_plan::ProjectedField {
                    key: "b".into(),
                    source: Projected::Field {
                        name: "b".into(),
                        projection: None,
                    },
                },
                fraiseql_plan::ProjectedField {
                    key: "kind".into(),
                    source: Projected::Typename("T".into()),
                },
                fraiseql_plan::ProjectedField {
                    key: "alias".into(),
                    source: Projected::Field {
                        name: "a".into(),
                        projection: None,
                    },
                },
            ],
        };
        let v = serde_json::json!([{"a": 1, "b": 2, "secret": 3}, null]);
        assert_eq!(
            project(&v, &p).to_string(),
            r#"[{"b":2,"kind":"T","alias":1},null]"#
        );
    }

    #[test]
    fn markers_are_collected_and_replaced_in_order() {
        let mut v = serde_json::json!([
            {"x": {"__fraiseql": 0, "row": {"id": "a"}}},
            {"x": {"__fraiseql": 0, "row": {"id": "b"}}, "y": {"__fraiseql": 1, "row": {"id": "c"}}}
        ]);
        let mut rows = vec![Vec::new(), Vec::new()];
        collect_markers(&mut v, "__fraiseql", &mut rows);
        assert_eq!(rows[0].len(), 2);
        assert_eq!(rows[1], vec![serde_json::json!({"id": "c"})]);
        let mut values = vec![
            vec![Value::from(1), Value::from(2)].into_iter(),
            vec![Value::from(3)].into_iter(),
        ];
        replace_markers(&mut v, "__fraiseql", &mut values);
        assert_eq!(v.to_string(), r#"[{"x":1},{"x":2,"y":3}]"#);
    }
}
