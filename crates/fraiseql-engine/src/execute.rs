//! Running a plan's statements: one pooled connection per database, statements prepared once per
//! connection and pipelined, each result's JSON text copied straight into the response body.

use deadpool_postgres::{Object, Pool, PoolError};
use fraiseql_plan::SqlPlan;
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use crate::db::TextParam;
use crate::error::{ErrorCode, GraphqlError};

/// What one statement produced: JSON text, or `None` for no row (`null`).
pub type FieldResult = Result<Option<String>, GraphqlError>;

/// Maps a database failure to what the client may see: the value problem for `22xxx` (bad input),
/// a generic message otherwise; the details go to the log only.
pub fn db_error(e: &tokio_postgres::Error, field: &str) -> GraphqlError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if code.starts_with("22") {
            // PostgreSQL quotes the offending value after `: "`; the client sent it, so drop it.
            let reason = db.message().split(": \"").next().unwrap_or("invalid value");
            return GraphqlError::new(
                ErrorCode::BadUserInput,
                format!("invalid argument value for `{field}`: {reason}"),
            );
        }
        if code == "57014" {
            return GraphqlError::new(
                ErrorCode::InternalServerError,
                "the query took too long and was cancelled",
            );
        }
    }
    tracing::error!(field, error = %e, "statement failed");
    GraphqlError::new(
        ErrorCode::InternalServerError,
        "internal error while reading the database (see server log)",
    )
}

/// Maps a pool failure (timeout, connection refused) to `DATABASE_UNAVAILABLE`.
pub fn pool_error(e: &PoolError, database: &str) -> GraphqlError {
    tracing::error!(database, error = %e, "no database connection");
    GraphqlError::new(
        ErrorCode::DatabaseUnavailable,
        format!("database `{database}` is unavailable; try again shortly"),
    )
}

/// Gets a connection from `pool`.
pub async fn connection(pool: &Pool, database: &str) -> Result<Object, GraphqlError> {
    pool.get().await.map_err(|e| pool_error(&e, database))
}

async fn query(client: &Object, stmt: &Statement, plan: &SqlPlan, field: &str) -> FieldResult {
    let params: Vec<TextParam<'_>> = plan.params.iter().map(|p| TextParam(p)).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = client
        .query(stmt, &refs)
        .await
        .map_err(|e| db_error(&e, field))?;
    match rows.first() {
        None => Ok(None),
        Some(row) => row
            .try_get::<_, Option<String>>(0)
            .map_err(|e| db_error(&e, field)),
    }
}

/// Runs `plans` (all on one database) on `client`.
///
/// With a tenant, the statements run in one transaction that first sets `app.tenant_id` (local to
/// the transaction, so a pooled connection never carries it into another request). Several
/// statements share one snapshot. Statements are prepared first (once per connection); then
/// BEGIN, set_config, the statements and COMMIT are all sent before any answer is awaited.
pub async fn run(
    client: &Object,
    tenant_id: Option<&str>,
    plans: &[(&str, &SqlPlan)],
) -> Vec<FieldResult> {
    let mut stmts = Vec::with_capacity(plans.len());
    for (field, plan) in plans {
        match client.prepare_cached(&plan.sql).await {
            Ok(s) => stmts.push(s),
            Err(e) => return plans.iter().map(|_| Err(db_error(&e, field))).collect(),
        }
    }
    if tenant_id.is_none() && plans.len() == 1 {
        return vec![query(client, &stmts[0], plans[0].1, plans[0].0).await];
    }
    // BEGIN and COMMIT are prepared too: PostgreSQL then binds them instead of parsing them.
    let begin_sql = if plans.len() > 1 {
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    } else {
        "BEGIN READ ONLY"
    };
    let control = async {
        let begin = client.prepare_cached(begin_sql).await?;
        let commit = client.prepare_cached("COMMIT").await?;
        let set = match tenant_id {
            Some(_) => Some(
                client
                    .prepare_cached("SELECT set_config('app.tenant_id', $1, true)")
                    .await?,
            ),
            None => None,
        };
        Ok::<_, tokio_postgres::Error>((begin, commit, set))
    };
    let (begin, commit, set_tenant) = match control.await {
        Ok(c) => c,
        Err(e) => return plans.iter().map(|(f, _)| Err(db_error(&e, f))).collect(),
    };
    let set = async {
        match (&set_tenant, tenant_id) {
            (Some(s), Some(id)) => client.execute(s, &[&TextParam(id)]).await.map(drop),
            _ => Ok(()),
        }
    };
    let work = futures_util::future::join_all(
        plans
            .iter()
            .zip(&stmts)
            .map(|((f, p), s)| query(client, s, p, f)),
    );
    // Polled in this order, so sent in this order, in one flush.
    let (begun, set, results, committed) = futures_util::future::join4(
        client.execute(&begin, &[]),
        set,
        work,
        client.execute(&commit, &[]),
    )
    .await;
    let (begun, committed) = (begun.map(drop), committed.map(drop));
    if let Err(e) = begun.and(set).and(committed) {
        // Without the tenant context no row is visible (RLS), so an error here must not pass
        // for an empty answer.
        return plans.iter().map(|(f, _)| Err(db_error(&e, f))).collect();
    }
    results
}
