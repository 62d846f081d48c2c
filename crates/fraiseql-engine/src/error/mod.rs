//! GraphQL errors as clients see them: `message`, `locations`, `path`, `extensions.code`.

mod database;

use serde::Serialize;

pub use database::db_error;
pub(crate) use database::{connection_lost, sqlstate_error, statement_failed};

/// `extensions.code` values. Stable: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The query text is not GraphQL.
    GraphqlParseFailed,
    /// The query does not fit the schema.
    GraphqlValidationFailed,
    /// A variable or argument value is not acceptable.
    BadUserInput,
    /// The query exceeds a configured limit (depth, aliases, root fields, tokens).
    QueryTooComplex,
    /// The request body is not a GraphQL request.
    BadRequest,
    /// The named operation does not exist, or none was named among several.
    OperationNotFound,
    /// The operation type is not served (mutations/subscriptions) or not over this method.
    OperationNotSupported,
    /// No valid token (HTTP 401).
    Unauthenticated,
    /// Not allowed: a field denied by `[rbac]`, or a token for another tenant.
    Forbidden,
    /// The tenant key names no active tenant.
    UnknownTenant,
    /// The tenant is suspended.
    TenantSuspended,
    /// What the operation names does not exist (or is not the caller's to see).
    NotFound,
    /// A write would duplicate a unique value.
    UniqueViolation,
    /// A write refers to a missing record, or removes one still referred to.
    ForeignKeyViolation,
    /// The transaction collided with another (serialization failure, deadlock); retrying helps.
    TransactionConflict,
    /// A database could not be reached in time.
    DatabaseUnavailable,
    /// A subscription's resume position is older than the change stream keeps (or from
    /// another stream): refetch, then subscribe again without it.
    PositionExpired,
    /// A subscription limit (`[subscriptions] max_subscriptions_per_connection`,
    /// `max_subscriptions_per_tenant`, `max_connections`) is reached.
    TooManySubscriptions,
    /// The tenant is over its plan's rate or concurrency (HTTP 429 with `Retry-After`).
    RateLimited,
    /// Anything else; details are in the server log, never in the response.
    InternalServerError,
    /// Strict trusted documents: the document is not in the manifest.
    ForbiddenQuery,
    /// No trusted document has the id the request names.
    DocumentNotFound,
    /// Automatic persisted queries: the hash is unknown; send it again with the query text.
    PersistedQueryNotFound,
    /// Automatic persisted queries are off; send the query text.
    PersistedQueryNotSupported,
}

impl ErrorCode {
    /// The code as it appears in `extensions.code` and the `error_type` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::QueryTooComplex => "QUERY_TOO_COMPLEX",
            Self::BadRequest => "BAD_REQUEST",
            Self::OperationNotFound => "OPERATION_NOT_FOUND",
            Self::OperationNotSupported => "OPERATION_NOT_SUPPORTED",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::UnknownTenant => "UNKNOWN_TENANT",
            Self::TenantSuspended => "TENANT_SUSPENDED",
            Self::NotFound => "NOT_FOUND",
            Self::UniqueViolation => "UNIQUE_VIOLATION",
            Self::ForeignKeyViolation => "FOREIGN_KEY_VIOLATION",
            Self::TransactionConflict => "TRANSACTION_CONFLICT",
            Self::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Self::PositionExpired => "POSITION_EXPIRED",
            Self::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
            Self::RateLimited => "RATE_LIMITED",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
            Self::ForbiddenQuery => "FORBIDDEN_QUERY",
            Self::DocumentNotFound => "DOCUMENT_NOT_FOUND",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
        }
    }
}

/// A line and column (1-based) in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

/// One entry of `errors`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphqlError {
    /// What went wrong, for a person.
    pub message: String,
    /// Where in the query.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    /// Response path of the failed field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<serde_json::Value>,
    /// `{ "code": ... }`
    pub extensions: Extensions,
}

/// `extensions` of an error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extensions {
    /// Machine-readable code.
    pub code: ErrorCode,
}

impl GraphqlError {
    /// An error with a code and no location.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            locations: Vec::new(),
            path: Vec::new(),
            extensions: Extensions { code },
        }
    }

    /// Adds a response path.
    pub fn with_path(mut self, path: impl IntoIterator<Item = String>) -> Self {
        self.path = path.into_iter().map(serde_json::Value::String).collect();
        self
    }

    /// Converts apollo-compiler's error (parse/validation/coercion), keeping its locations.
    pub fn from_apollo(e: apollo_compiler::response::GraphQLError, code: ErrorCode) -> Self {
        Self {
            message: e.message,
            locations: e
                .locations
                .iter()
                .map(|l| Location {
                    line: l.line,
                    column: l.column,
                })
                .collect(),
            path: Vec::new(),
            extensions: Extensions { code },
        }
    }
}
