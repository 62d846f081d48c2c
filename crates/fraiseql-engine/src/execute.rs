//! Running a plan's statements: one pooled connection per database, statements prepared once per
//! connection and pipelined, each result's JSON text copied straight into the response body.

use deadpool_postgres::{Object, Pool, PoolError};
use fraiseql_plan::SqlPlan;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::db::TextParam;
use crate::error::{ErrorCode, GraphqlError};

/// What one statement produced: JSON text, or `None` for no row (`null`).
pub type FieldResult = Result<Option<String>, GraphqlError>;

/// Maps a database failure to what the client may see: an error code per kind of failure and a
/// message that names no table, constraint or SQL; the details go to the log only.
/// Exceptions raised by the schema author's own SQL (`RAISE EXCEPTION`, SQLSTATE class `P0`) keep
/// their message: `P0002` (`no_data_found`) is `NOT_FOUND`, the others `BAD_USER_INPUT`.
pub fn db_error(e: &tokio_postgres::Error, field: &str) -> GraphqlError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let known = |c: ErrorCode, m: String| {
            tracing::debug!(field, error = %e, "statement refused");
            GraphqlError::new(c, m)
        };
        match code {
            "23505" | "23P01" => {
                return known(
                    ErrorCode::UniqueViolation,
                    format!("`{field}`: a record with the same unique value already exists"),
                )
            }
            "23503" if db.message().starts_with("update or delete") => {
                return known(
                    ErrorCode::ForeignKeyViolation,
                    format!("`{field}`: the record is still referenced by other records"),
                )
            }
            "23503" => {
                return known(
                    ErrorCode::ForeignKeyViolation,
                    format!("`{field}`: refers to a record that does not exist"),
                )
            }
            "23502" => {
                return known(
                    ErrorCode::BadUserInput,
                    format!("`{field}`: a required value is missing"),
                )
            }
            "23514" => {
                return known(
                    ErrorCode::BadUserInput,
                    format!("`{field}`: a value is not allowed (it fails a check)"),
                )
            }
            "42501" => {
                return known(
                    ErrorCode::Forbidden,
                    format!("`{field}`: not permitted for this tenant or role"),
                )
            }
            "40001" | "40P01" => {
                return known(
                    ErrorCode::TransactionConflict,
                    format!("`{field}`: conflicted with a concurrent change; retry the request"),
                )
            }
            "25P02" => {
                return known(
                    ErrorCode::InternalServerError,
                    format!("`{field}`: not run, an earlier statement of the operation failed"),
                )
            }
            c if c.starts_with("08") || matches!(c, "53300" | "57P01" | "57P02" | "57P03") => {
                tracing::error!(field, error = %e, "database unavailable");
                return GraphqlError::new(
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable; try again shortly",
                );
            }
            "25006" => {
                return known(
                    ErrorCode::OperationNotSupported,
                    format!("`{field}`: writes are only allowed in mutations"),
                )
            }
            c if c.starts_with("P0") => {
                let kind = if c == "P0002" {
                    ErrorCode::NotFound
                } else {
                    ErrorCode::BadUserInput
                };
                return known(kind, db.message().to_owned());
            }
            _ => {}
        }
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
    if e.is_closed() {
        tracing::error!(field, error = %e, "database connection lost");
        return GraphqlError::new(
            ErrorCode::DatabaseUnavailable,
            "the database connection was lost; try again shortly",
        );
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

async fn query(client: &Client, stmt: &Statement, plan: &SqlPlan, field: &str) -> FieldResult {
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

/// Text bind parameters that may be `NULL`.
pub(crate) fn text_params<'a>(values: &[Option<&'a str>]) -> Vec<Option<TextParam<'a>>> {
    values.iter().map(|v| v.map(TextParam)).collect()
}

const SET_TENANT: &str = "SELECT set_config('app.tenant_id', $1, true)";
const COMMIT: &str = "COMMIT";

fn begin_sql(statements: usize) -> &'static str {
    if statements > 1 {
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    } else {
        "BEGIN READ ONLY"
    }
}

/// Every statement a run needs, in order: the plans', then (in a transaction) BEGIN, COMMIT and,
/// with a tenant, set_config. Prepared once per connection; BEGIN and COMMIT too, so PostgreSQL
/// binds them instead of parsing them each time.
pub fn statements_needed<'a>(tenant: bool, plans: &[(&str, &'a SqlPlan)]) -> Vec<&'a str> {
    let mut sqls: Vec<&str> = plans.iter().map(|(_, p)| p.sql.as_str()).collect();
    if tenant || plans.len() > 1 {
        sqls.push(begin_sql(plans.len()));
        sqls.push(COMMIT);
    }
    if tenant {
        sqls.push(SET_TENANT);
    }
    sqls
}

fn all_failed(plans: &[(&str, &SqlPlan)], e: &tokio_postgres::Error) -> Vec<FieldResult> {
    plans.iter().map(|(f, _)| Err(db_error(e, f))).collect()
}

/// Runs `plans` (all on one database) on a pooled deadpool connection (shared databases).
pub async fn run(client: &Object, plans: &[(&str, &SqlPlan)]) -> Vec<FieldResult> {
    let sqls = statements_needed(false, plans);
    let prepared =
        futures_util::future::join_all(sqls.iter().map(|s| client.prepare_cached(s))).await;
    let mut stmts = Vec::with_capacity(prepared.len());
    for p in prepared {
        match p {
            Ok(s) => stmts.push(s),
            Err(e) => return all_failed(plans, &e),
        }
    }
    run_prepared(client, None, plans, &stmts).await
}

/// Runs `plans` with `stmts` from [`statements_needed`], already prepared on `client`.
///
/// With a tenant, the statements run in one transaction that first sets `app.tenant_id` (local to
/// the transaction, so a connection never carries it into another request). Several statements
/// share one snapshot. BEGIN, set_config, the statements and COMMIT are all sent before any
/// answer is awaited: one round trip. Returns the results and whether the connection ended
/// outside any transaction (safe to reuse).
pub async fn run_prepared(
    client: &Client,
    tenant_id: Option<&str>,
    plans: &[(&str, &SqlPlan)],
    stmts: &[Statement],
) -> Vec<FieldResult> {
    let n = plans.len();
    if tenant_id.is_none() && n == 1 {
        return vec![query(client, &stmts[0], plans[0].1, plans[0].0).await];
    }
    let (begin, commit) = (&stmts[n], &stmts[n + 1]);
    let set = async {
        match (stmts.get(n + 2), tenant_id) {
            (Some(s), Some(id)) => client.execute(s, &[&TextParam(id)]).await.map(drop),
            _ => Ok(()),
        }
    };
    let work = futures_util::future::join_all(
        plans
            .iter()
            .zip(stmts)
            .map(|((f, p), s)| query(client, s, p, f)),
    );
    // Polled in this order, so sent in this order, in one flush.
    let (begun, set, results, committed) = futures_util::future::join4(
        client.execute(begin, &[]),
        set,
        work,
        client.execute(commit, &[]),
    )
    .await;
    if let Err(e) = begun.map(drop).and(set).and(committed.map(drop)) {
        // Without the tenant context no row is visible (RLS), so an error here must not pass
        // for an empty answer.
        return all_failed(plans, &e);
    }
    results
}
