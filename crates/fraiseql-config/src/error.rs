use std::path::PathBuf;

/// Everything that can be wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{file}:{line}: TOML syntax error: {message}")]
    Syntax {
        /// The file (or `<string>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A key is unknown, has the wrong type, or a required key is missing.
    #[error("{file}:{line}: `{key}`: {message}")]
    Invalid {
        /// The file (or `<string>`).
        file: String,
        /// 1-based line (of the key, or of its table when the key is missing).
        line: usize,
        /// Dotted key path, e.g. `databases.tenant.pool_max`.
        key: String,
        /// What is wrong, in words a user can act on.
        message: String,
    },
    /// A `${VAR}` without a default names a variable that is not set.
    #[error("{file}:{line}: `{key}`: environment variable `{var}` is not set (set it, or write `${{{var}:-default}}`)")]
    MissingVar {
        /// The file (or `<string>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// Dotted key path.
        key: String,
        /// The variable's name.
        var: String,
    },
}
