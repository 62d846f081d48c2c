/// Why an operation cannot be planned. These are the client's mistakes (or features this server
/// does not offer), never internal failures; the messages say what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// An argument value the database cannot take (negative limit, too large a limit, ...).
    #[error("{message}")]
    BadArgument {
        /// What is wrong.
        message: String,
        /// Response path of the field.
        path: Vec<String>,
    },
    /// A construct the server does not support.
    #[error("{0}")]
    Unsupported(String),
    /// The operation would cost more than `[limits]` allow (rows it may produce).
    #[error("{0}")]
    TooComplex(String),
    /// The caller may not use an argument (it filters or orders on a field it may not read).
    #[error("{message}")]
    Forbidden {
        /// What is refused.
        message: String,
        /// Response path of the field.
        path: Vec<String>,
    },
}

impl PlanError {
    pub(crate) fn unsupported(message: String) -> Self {
        Self::Unsupported(message)
    }
}
