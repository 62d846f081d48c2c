/// Why a schema cannot be served. Reported at start-up, never at the first request.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The SDL is not valid GraphQL (syntax, unknown types, bad directive arguments).
    #[error("invalid GraphQL schema:\n{0}")]
    Graphql(String),
    /// A directive is missing or used in a way the engine cannot map to SQL.
    #[error("{coordinate}: {message}")]
    Mapping {
        /// Where: `Type.field`, `Query.field(arg:)`, `Enum.VALUE`.
        coordinate: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl SchemaError {
    pub(crate) fn mapping(coordinate: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Mapping {
            coordinate: coordinate.into(),
            message: message.into(),
        }
    }
}
