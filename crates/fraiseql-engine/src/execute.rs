//! Running a plan's statements: one pooled connection per database, statements prepared once per
//! connection and pipelined, each result's JSON text copied straight into the response body.

use deadpool_postgres::{Object, Pool, PoolError};
use fraiseql_plan::SqlPlan;
use tokio_postgres::types::ToSql;

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

async fn one(client: &Object, plan: &SqlPlan, field: &str) -> FieldResult {
    let stmt = client
        .prepare_cached(&plan.sql)
        .await
        .map_err(|e| db_error(&e, field))?;
    let params: Vec<TextParam<'_>> = plan.params.iter().map(|p| TextParam(p)).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = client
        .query(&stmt, &refs)
        .await
        .map_err(|e| db_error(&e, field))?;
    match rows.first() {
        None => Ok(None),
        Some(row) => row
            .try_get::<_, Option<String>>(0)
            .map_err(|e| db_error(&e, field)),
    }
}

/// Runs `plans` (all on one database) on `client`. Several statements share one read-only
/// REPEATABLE READ transaction so they see one snapshot; all are sent without waiting in between.
pub async fn run(client: &Object, plans: &[(&str, &SqlPlan)]) -> Vec<FieldResult> {
    if let [(field, plan)] = plans {
        return vec![one(client, plan, field).await];
    }
    let begin = client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    let work = futures_util::future::join_all(plans.iter().map(|(f, p)| one(client, p, f)));
    let (begun, results) = futures_util::future::join(begin, work).await;
    // COMMIT of a read-only transaction cannot lose anything; a failure leaves nothing to undo.
    let _ = client.batch_execute("COMMIT").await;
    match begun {
        Ok(()) => results,
        Err(e) => plans.iter().map(|(f, _)| Err(db_error(&e, f))).collect(),
    }
}
