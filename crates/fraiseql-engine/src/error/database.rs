//! Database errors as clients may see them: a code per kind of failure and a message that names
//! no table, constraint or SQL; the details go to the log only.

use super::{ErrorCode, GraphqlError};

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
