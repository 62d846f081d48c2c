//! One error enum per domain: [`ProvisionError`] for provisioning and the registry commands,
//! [`TransferError`] for backup, restore, move and drop-copy. Each message says what to do.

use std::path::Path;

use fraiseql_engine::migrate::MigrateError;

/// Why provisioning (or a registry command) failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The key is not `[a-z0-9_]{1,40}`.
    #[error("invalid tenant key: {0}")]
    InvalidKey(String),
    /// Configuration needed for tenancy is missing.
    #[error("{0}")]
    Config(String),
    /// No such tenant (suspend/resume of an unknown key).
    #[error("no tenant `{0}` in the registry")]
    Unknown(String),
    /// A database step failed.
    #[error("{step}: {reason}")]
    Db {
        /// What was being done.
        step: String,
        /// PostgreSQL's message (no credentials).
        reason: String,
    },
    /// Migrating the tenant failed.
    #[error("migrations: {0}")]
    Migrate(#[from] MigrateError),
}

/// Why a backup, restore, move or drop-copy did not happen (or did not finish). Each message
/// says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Configuration, registry or provisioning.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The key is not `[a-z0-9_]{1,40}`.
    #[error("invalid tenant key: {0}")]
    InvalidKey(String),
    /// No such tenant.
    #[error("no tenant `{0}` in the registry (`fraiseql tenant list` shows the registered ones)")]
    Unknown(String),
    /// The tenant's provisioning has not finished.
    #[error("tenant `{0}` is still being provisioned: finish it with `fraiseql tenant create {0}` first")]
    NotReady(String),
    /// Another operation holds the tenant.
    #[error("another create, restore, move or drop-copy of tenant `{0}` is running; wait for it to finish and try again")]
    Busy(String),
    /// The tenant exists where it would be restored.
    #[error("tenant `{key}` already exists ({place}); restoring would replace its data: pass --force to do that")]
    Exists {
        /// The tenant.
        key: String,
        /// Where it is, or what was found.
        place: String,
    },
    /// The archived tenant id belongs to another key.
    #[error("the archive's tenant id {id} belongs to tenant `{other}` in this registry; restore it into another registry, or remove `{other}` first")]
    IdTaken {
        /// The id.
        id: String,
        /// The registered key.
        other: String,
    },
    /// The file is not a readable archive.
    #[error("{path}: {reason}")]
    Archive {
        /// The archive.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The archive holds another tenant.
    #[error("the archive holds tenant `{archived}`, not `{asked}`")]
    WrongTenant {
        /// In the archive.
        archived: String,
        /// On the command line.
        asked: String,
    },
    /// The archive was made under another strategy.
    #[error("the archive was taken under {archived}; this config uses {configured}: restore it with a config of that strategy")]
    WrongStrategy {
        /// In the archive.
        archived: String,
        /// In the config.
        configured: String,
    },
    /// `pg_dump` / `pg_restore` cannot be run.
    #[error("{tool} cannot be run ({reason}): install the PostgreSQL client tools (at least the servers' major version) or point FRAISEQL_PG_BINDIR at their folder")]
    ToolMissing {
        /// The program.
        tool: String,
        /// Why.
        reason: String,
    },
    /// `pg_dump` / `pg_restore` failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// The program.
        tool: String,
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        stderr: String,
    },
    /// A database step failed.
    #[error("{step}: {reason}")]
    Db {
        /// What was being done.
        step: String,
        /// PostgreSQL's message (no credentials).
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// What was restored does not match the archive.
    #[error("row counts differ from the archive's: {0}")]
    Verify(String),
    /// The move would not change anything.
    #[error("tenant `{key}` already lives at {place}: give the --server-url of another server (or database)")]
    SameLocation {
        /// The tenant.
        key: String,
        /// Its location.
        place: String,
    },
    /// The target holds something the restore would overwrite.
    #[error("the target already holds {what}; {hint}")]
    TargetOccupied {
        /// What was found.
        what: String,
        /// What to do.
        hint: String,
    },
    /// A precondition of the operation does not hold.
    #[error("{0}")]
    Refused(String),
    /// A move failed before its switch; the tenant is served from where it was.
    #[error("moving tenant `{key}` failed while {step}: {cause}. Tenant `{key}` is served from {from} again{cleanup}")]
    MoveFailed {
        /// The tenant.
        key: String,
        /// The step that failed.
        step: String,
        /// Its location.
        from: String,
        /// What failed (in the message already: not a `source`, which would print it twice).
        cause: Box<TransferError>,
        /// What could not be cleaned up, if anything.
        cleanup: String,
    },
    /// `drop-copy` has nothing to drop.
    #[error("no old copy of tenant `{0}` is recorded (`fraiseql tenant move` keeps one)")]
    NoCopy(String),
    /// A backup without a key to sign its archive.
    #[error("no [transfer] archive_key is configured, so the archive cannot be signed: set one (`openssl rand -base64 48` makes one; keep it in the environment: archive_key = \"${{FRAISEQL_ARCHIVE_KEY}}\"), or pass --insecure-unsigned to write an unsigned archive")]
    NoArchiveKey,
    /// An archive whose origin cannot be established.
    #[error("{path}: refused: {reason}. Restore it with the key it was made with ([transfer] archive_key), or pass --insecure-unsigned if you trust everyone who could write where it was kept")]
    Unauthenticated {
        /// The archive.
        path: String,
        /// Why.
        reason: String,
    },
    /// SIGINT or SIGTERM stopped the operation.
    #[error("interrupted (SIGINT or SIGTERM)")]
    Interrupted,
    /// A move of the tenant was interrupted (killed) and is recorded as unfinished.
    #[error("a move of tenant `{key}` to {to} was interrupted after {step} (started {started}): finish it with `fraiseql tenant move {key} --server-url <the same URL> --resume`")]
    MoveUnfinished {
        /// The tenant.
        key: String,
        /// Where it was going.
        to: String,
        /// Its last completed step.
        step: String,
        /// When it started.
        started: String,
    },
}

/// PostgreSQL's message of `e` (its own words, without the client's prefix), else the error.
fn reason(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

/// A failed database `step` of provisioning.
pub(crate) fn provision_db(step: &str) -> impl Fn(tokio_postgres::Error) -> ProvisionError + '_ {
    move |e| ProvisionError::Db {
        step: step.to_owned(),
        reason: reason(&e),
    }
}

/// A failed database `step` of a transfer.
pub(crate) fn db(step: &str) -> impl Fn(tokio_postgres::Error) -> TransferError + '_ {
    move |e| TransferError::Db {
        step: step.to_owned(),
        reason: reason(&e),
    }
}

/// A file that could not be read or written.
pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> TransferError + '_ {
    move |source| TransferError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// An archive that cannot be read as one.
pub(crate) fn archive_error(path: &Path, reason: impl Into<String>) -> TransferError {
    TransferError::Archive {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Why `fraiseql schema init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// Files it would write exist.
    #[error("{} already exist{}: pass --force to overwrite", list(.0), if .0.len() == 1 { "s" } else { "" })]
    Exists(Vec<std::path::PathBuf>),
    /// The schema name cannot be a `@view` name's schema.
    #[error(
        "schema {0:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*), which @view names need"
    )]
    SchemaName(String),
    /// The database did not answer.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// Reading the catalog failed.
    #[error("reading the tables of schema `{schema}`: {reason}")]
    Read {
        /// The schema.
        schema: String,
        /// PostgreSQL's message.
        reason: String,
    },
    /// No table can become a type.
    #[error("schema `{schema}` has no table to make an API of{}", notes.iter().map(|n| format!("\n  - {n}")).collect::<String>())]
    Nothing {
        /// The schema.
        schema: String,
        /// Why each table was left out.
        notes: Vec<String>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// `a`, `a and b`, `a, b and c`.
fn list(paths: &[std::path::PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Reading the catalog of `schema` failed.
pub(crate) fn scaffold_read(schema: &str) -> impl Fn(tokio_postgres::Error) -> ScaffoldError + '_ {
    move |e| ScaffoldError::Read {
        schema: schema.to_owned(),
        reason: reason(&e),
    }
}
