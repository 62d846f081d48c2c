//! Database errors as clients may see them: a code per kind of failure and a message that names
//! no table, constraint or SQL; the details go to the log only.

use super::{ErrorCode, GraphqlError};

/// Maps a database failure to what the client may see: an error code per kind of failure and a
/// message that names no table, constraint or SQL; the details go to the log only.
/// Exceptions raised by the schema author's own SQL (`RAISE EXCEPTION`, SQLSTATE class `P0`) keep
/// their message: `P0002` (`no_data_found`) is `NOT_FOUND`, the others `BAD_USER_INPUT`.
pub fn db_error(e: &tokio_postgres::Error, field: &str) -> GraphqlError {
    if let Some(db) = e.as_db_error() {
        if let Some(known) = sqlstate_error(db.code().code(), db.message(), field) {
            tracing::debug!(field, error = %e, "statement refused");
            return known;
        }
    }
    if e.is_closed() {
        tracing::error!(field, error = %e, "database connection lost");
        return connection_lost();
    }
    tracing::error!(field, error = %e, "statement failed");
    statement_failed()
}

/// The connection went away under a statement (the cause is logged by the caller).
pub(crate) fn connection_lost() -> GraphqlError {
    GraphqlError::new(
        ErrorCode::DatabaseUnavailable,
        "the database connection was lost; try again shortly",
    )
}

/// A statement failed for a reason the client cannot act on (logged by the caller).
pub(crate) fn statement_failed() -> GraphqlError {
    GraphqlError::new(
        ErrorCode::InternalServerError,
        "internal error while reading the database (see server log)",
    )
}

/// What the client sees for PostgreSQL's error `code` (SQLSTATE) with `message`, for the
/// statements of `field`: `None` for codes with nothing to say beyond an internal error.
pub(crate) fn sqlstate_error(code: &str, message: &str, field: &str) -> Option<GraphqlError> {
    let e = |c: ErrorCode, m: String| Some(GraphqlError::new(c, m));
    match code {
        "23505" | "23P01" => e(
            ErrorCode::UniqueViolation,
            format!("`{field}`: a record with the same unique value already exists"),
        ),
        "23503" if message.starts_with("update or delete") => e(
            ErrorCode::ForeignKeyViolation,
            format!("`{field}`: the record is still referenced by other records"),
        ),
        "23503" => e(
            ErrorCode::ForeignKeyViolation,
            format!("`{field}`: refers to a record that does not exist"),
        ),
        "23502" => e(
            ErrorCode::BadUserInput,
            format!("`{field}`: a required value is missing"),
        ),
        "23514" => e(
            ErrorCode::BadUserInput,
            format!("`{field}`: a value is not allowed (it fails a check)"),
        ),
        "42501" => e(
            ErrorCode::Forbidden,
            format!("`{field}`: not permitted for this tenant or role"),
        ),
        "40001" | "40P01" => e(
            ErrorCode::TransactionConflict,
            format!("`{field}`: conflicted with a concurrent change; retry the request"),
        ),
        "25P02" => e(
            ErrorCode::InternalServerError,
            format!("`{field}`: not run, an earlier statement of the operation failed"),
        ),
        c if c.starts_with("08") || matches!(c, "53300" | "57P01" | "57P02" | "57P03") => {
            tracing::error!(field, code = c, message, "database unavailable");
            e(
                ErrorCode::DatabaseUnavailable,
                "the database is unavailable; try again shortly".to_owned(),
            )
        }
        "25006" => e(
            ErrorCode::OperationNotSupported,
            format!("`{field}`: writes are only allowed in mutations"),
        ),
        c if c.starts_with("P0") => {
            let kind = if c == "P0002" {
                ErrorCode::NotFound
            } else {
                ErrorCode::BadUserInput
            };
            e(kind, message.to_owned())
        }
        c if c.starts_with("22") => {
            // PostgreSQL quotes the offending value after `: "`; the client sent it, so drop it.
            let reason = message.split(": \"").next().unwrap_or("invalid value");
            e(
                ErrorCode::BadUserInput,
                format!("invalid argument value for `{field}`: {reason}"),
            )
        }
        "57014" => e(
            ErrorCode::InternalServerError,
            "the query took too long and was cancelled".to_owned(),
        ),
        _ => None,
    }
}
