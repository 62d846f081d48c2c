//! Plain reads: every SQL root field of a request, grouped by database, each group on one
//! connection in one pipelined transaction: BEGIN, the context, the statements, COMMIT, all sent
//! before any answer is awaited (one round trip once the statements are prepared on the
//! connection). Each result's JSON text is copied straight into the response body.

use fraiseql_plan::{RootPlan, SqlPlan};
use fraiseql_schema::ContextValue;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};
use tracing::Instrument;

use super::one_sync::{self, Step};
use super::pipeline::{self, Frame};
use super::{Env, FieldResult};
use crate::connections::{Lease, TextParam};
use crate::error::db_error;
use crate::identity::RequestContext;
use crate::routing::session::{begin_sql, SessionContext, SET_CONTEXT};

async fn query(client: &Client, stmt: &Statement, params: &[String], field: &str) -> FieldResult {
    let params: Vec<TextParam<'_>> = params.iter().map(|p| TextParam(p)).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let mut rows = client
        .query(stmt, &refs)
        .await
        .map_err(|e| db_error(&e, field))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let row = rows.swap_remove(0);
    // A NULL column is `null` too; the row is kept to be copied into the body as it is.
    match row.try_get::<_, Option<crate::connections::RawText<'_>>>(0) {
        Ok(Some(_)) => Ok(Some(super::JsonText::Row(row))),
        Ok(None) => Ok(None),
        Err(e) => Err(db_error(&e, field)),
    }
}

fn all_failed(plans: &[(&str, &SqlPlan)], e: &tokio_postgres::Error) -> Vec<FieldResult> {
    plans.iter().map(|(f, _)| Err(db_error(e, f))).collect()
}

/// Runs every SQL root field of `fields`; result `i` belongs to `fields[i]`.
pub(crate) async fn run(
    env: &Env<'_>,
    fields: &[RootPlan],
    ctx: &RequestContext,
) -> Vec<Option<FieldResult>> {
    let mut out: Vec<Option<FieldResult>> = fields.iter().map(|_| None).collect();
    // (database, [(field index, response key, statement)])
    type Batch<'p> = (&'p str, Vec<(usize, &'p str, &'p SqlPlan)>);
    let mut by_db: Vec<Batch<'_>> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if let fraiseql_plan::RootKind::Sql(p) = &f.kind {
            let item = (i, f.response_key.as_str(), p);
            match by_db.iter_mut().find(|(db, _)| *db == p.database) {
                Some((_, v)) => v.push(item),
                None => by_db.push((p.database.as_str(), vec![item])),
            }
        }
    }
    // Databases are independent: their round trips overlap.
    let runs = by_db.iter().map(|(db, items)| async move {
        let plans: Vec<(&str, &SqlPlan)> = items.iter().map(|(_, k, p)| (*k, *p)).collect();
        env.count(plans.len());
        match env.routes.route(ctx, db).await {
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
            Ok((lease, session)) => {
                let db_name = crate::telemetry::db_name(ctx, db);
                run_on(&lease, db_name, &session, &plans).await
            }
        }
    });
    let results = futures_util::future::join_all(runs).await;
    for ((_, items), results) in by_db.iter().zip(results) {
        for ((i, _, _), r) in items.iter().zip(results) {
            out[*i] = Some(r);
        }
    }
    out
}

/// The transaction sent on the connection's own socket with one Sync (`one_sync.rs`); `None`
/// when the socket cannot be lent now.
async fn run_one_sync(
    lease: &Lease,
    session: &SessionContext<'_>,
    plans: &[(&str, &SqlPlan)],
    span: &impl Fn(&str) -> tracing::Span,
) -> Option<Vec<FieldResult>> {
    let mut steps = Vec::with_capacity(plans.len() + 3);
    steps.push(Step {
        sql: begin_sql(false, plans.len()),
        params: Vec::new(),
    });
    steps.push(Step {
        sql: SET_CONTEXT,
        params: session.values().to_vec(),
    });
    for (_, p) in plans {
        steps.push(Step {
            sql: &p.sql,
            params: p.params.iter().map(|v| Some(v.as_str())).collect(),
        });
    }
    steps.push(Step {
        sql: "COMMIT",
        params: Vec::new(),
    });
    let fields: Vec<&str> = plans.iter().map(|(f, _)| *f).collect();
    // The statements run together: each one's span covers the whole round trip.
    let _spans: Vec<tracing::Span> = plans.iter().map(|(_, p)| span(&p.sql)).collect();
    one_sync::run(lease, &steps, &fields).await
}

/// Runs `plans` (all on one database) on `lease`.
///
/// With a context to set (a tenant, an authenticated caller) or several statements, they run in
/// one read-only transaction that first sets the context (local to the transaction, so a
/// connection never carries it into another request); several statements share one snapshot.
/// Statements are prepared once per connection, inside the transaction on first use: name
/// resolution follows the tenant's search_path there.
pub(crate) async fn run_on(
    lease: &Lease,
    db_name: &str,
    session: &SessionContext<'_>,
    plans: &[(&str, &SqlPlan)],
) -> Vec<FieldResult> {
    let sqls: Vec<&str> = plans.iter().map(|(_, p)| p.sql.as_str()).collect();
    let client = lease.client();
    let tenant = session.value(ContextValue::TenantKey);
    let span = |sql: &str| crate::telemetry::sql(db_name, tenant, sql);
    if session.is_empty() && plans.len() == 1 {
        return match lease.prepare_all(&sqls).await {
            Err(e) => all_failed(plans, &e),
            Ok(stmts) => vec![
                query(client, &stmts[0], &plans[0].1.params, plans[0].0)
                    .instrument(span(sqls[0]))
                    .await,
            ],
        };
    }
    if let Some(results) = run_one_sync(lease, session, plans, &span).await {
        return results;
    }
    let fixed = match lease
        .prepare_all(&[begin_sql(false, plans.len()), SET_CONTEXT, "COMMIT"])
        .await
    {
        Ok(f) => f,
        Err(e) => return all_failed(plans, &e),
    };
    let ctx_params = session.params();
    let ctx_refs: Vec<&(dyn ToSql + Sync)> = ctx_params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect();
    let frame = Frame {
        begin: &fixed[0],
        set: &fixed[1],
        end: &fixed[2],
    };
    let commit = &fixed[2];
    let ran = pipeline::run(lease, frame, &ctx_refs, &sqls, |stmts| async move {
        let work = futures_util::future::join_all(
            plans
                .iter()
                .zip(&stmts)
                .map(|((f, p), s)| query(client, s, &p.params, f).instrument(span(&p.sql))),
        );
        futures_util::future::join(work, client.execute(commit, &[])).await
    })
    .await;
    let (begun, (results, committed)) = match ran {
        Ok(r) => r,
        Err(e) => return all_failed(plans, &e),
    };
    match begun.and(committed.map(drop)) {
        Ok(()) => {
            // Reached only when the whole pipeline (through COMMIT) was answered.
            lease.set_clean();
            results
        }
        // Without the tenant context no row is visible (RLS), so an error here must not pass
        // for an empty answer.
        Err(e) => all_failed(plans, &e),
    }
}
