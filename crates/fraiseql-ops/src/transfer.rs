//! One tenant's data out of a server and into another: `fraiseql tenant backup`, `restore`,
//! `move` and `drop-copy`.
//!
//! An archive is one file: a header line, a JSON manifest line ([`Manifest`]: format version,
//! strategy, the tenant's registry row without any password, the source server as `host:port`,
//! row counts per table, the unsent outbox rows' count) and the data sections it lists, each with
//! its length and SHA-256:
//!
//! - `database_per_tenant`: the tenant's database, `pg_dump --format=custom --no-owner
//!   --no-privileges`; restored with `pg_restore --single-transaction` into a new database, then
//!   granted to the tenant's role as provisioning does;
//! - `schema_per_tenant`: the same for its schema (`--schema`);
//! - `row_level`: its rows only, `COPY` text of every table with a `tenant_id` column in
//!   foreign-key order, and its unsent outbox rows; restored in one transaction, renumbering
//!   sequence-generated keys that are taken on the target (and the foreign keys that point at
//!   them).
//!
//! Restoring provisions the tenant on the target through the provisioning code (new roles and
//! passwords), loads the data, checks every table's row count against the manifest, applies
//! pending migrations and grants. A `move` suspends the tenant, waits until every server sees
//! it, fences and drains its writes, backs it up, restores it on the target, verifies the
//! counts, then switches the registry row and resumes it in one statement. Until that statement
//! any failure removes what was made on the target and serves the tenant from where it was; the
//! old copy is kept (renamed, listed in `fraiseql_tenant_copy`) until `drop-copy`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fraiseql_config::{Config, TenancyStrategy, TENANT_DATABASE};
use fraiseql_schema::{quote_ident, quote_literal};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_postgres::Client;
use uuid::Uuid;

use fraiseql_engine::tenancy::directory::RECORD_TTL;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};

use crate::provision::{self, Created, ProvisionError};

/// The first line of every archive.
pub const MAGIC: &str = "FRAISEQL-TENANT-ARCHIVE";
/// The archive format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The outbox columns an archive's `outbox` section holds, in order.
pub const OUTBOX_COLUMNS: &[&str] = &[
    "event_id",
    "tenant_key",
    "subject",
    "payload",
    "created_at",
    "attempts",
    "next_attempt_at",
    "sent_at",
    "last_error",
];
/// Longest manifest line read (the data is in the sections, not in the manifest).
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;
/// Section holding a `pg_dump` archive.
const DUMP_SECTION: &str = "dump";
/// Section holding the unsent outbox rows (`row_level`).
const OUTBOX_SECTION: &str = "outbox";
/// Wait after the suspension beyond the directory's cache lifetime (a look-up in flight when
/// the registry row changed is cached from its answer on).
const TTL_MARGIN: Duration = Duration::from_millis(500);
/// Session settings both ends of a COPY use, so text renders and parses the same way.
const COPY_SETTINGS: &str = "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; SET bytea_output = hex; SET TimeZone = 'UTC';";

/// Reports the steps of a long operation as they happen (the CLI prints them).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

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
    #[error("moving tenant `{key}` failed while {step}: {source}. Tenant `{key}` is served from {from} again{cleanup}")]
    MoveFailed {
        /// The tenant.
        key: String,
        /// The step that failed.
        step: String,
        /// Its location.
        from: String,
        /// What failed.
        #[source]
        source: Box<TransferError>,
        /// What could not be cleaned up, if anything.
        cleanup: String,
    },
    /// `drop-copy` has nothing to drop.
    #[error("no old copy of tenant `{0}` is recorded (`fraiseql tenant move` keeps one)")]
    NoCopy(String),
}

fn db(step: &str) -> impl Fn(tokio_postgres::Error) -> TransferError + '_ {
    move |e| TransferError::Db {
        step: step.to_owned(),
        reason: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TransferError + '_ {
    move |source| TransferError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn archive_error(path: &Path, reason: impl Into<String>) -> TransferError {
    TransferError::Archive {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The archive: manifest and container (pure)
// ---------------------------------------------------------------------------------------------

/// What an archive holds, written as its second line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `fraiseql-tenant-archive`.
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub version: u32,
    /// When the backup's snapshot was taken (the source server's clock, UTC).
    pub created_at: String,
    /// `database_per_tenant`, `schema_per_tenant` or `row_level`.
    pub strategy: String,
    /// The tenant's registry row, without passwords or server credentials.
    pub tenant: ArchivedTenant,
    /// Where it was backed up from.
    pub source: ArchivedSource,
    /// Every table in the archive with its row count (the restore checks them), in the order
    /// they are restored.
    pub tables: Vec<ArchivedTable>,
    /// Outbox rows not yet published (`sent_at IS NULL`) when the backup was taken.
    pub outbox_unsent: u64,
    /// The data sections after the manifest, in file order.
    pub sections: Vec<Section>,
    /// `pg_dump --version`, for dumps.
    #[serde(default)]
    pub tool: Option<String>,
}

/// The registry row of an archived tenant. Passwords are never archived: a restore provisions
/// new ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedTenant {
    /// `acme_corp`
    pub key: String,
    /// Its id (`tenant_id` of its rows), kept by a restore.
    pub id: String,
    /// Subscription tier.
    pub tier: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Database name at the source.
    pub database: String,
    /// Schema at the source.
    pub schema: String,
    /// The tenant's role at the source.
    pub role: String,
    /// The role the servers logged in as.
    pub login_role: String,
}

/// Where an archive was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedSource {
    /// `host:port` of the PostgreSQL server.
    pub server: String,
    /// The database.
    pub database: String,
    /// The server's version (`server_version`).
    pub version: String,
}

/// One table of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedTable {
    /// Its schema at the source.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Rows of the tenant in it.
    pub rows: u64,
    /// `row_level`: the columns of its section, in order (empty for dumps).
    #[serde(default)]
    pub columns: Vec<String>,
    /// `row_level`: the type of its `tenant_id` column.
    #[serde(default)]
    pub tenant_type: Option<String>,
}

/// One data section of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// `dump`, `outbox`, or `rows:<schema>.<table>`.
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// The section name of `row_level` rows of one table.
pub fn rows_section(schema: &str, table: &str) -> String {
    format!("rows:{schema}.{table}")
}

impl Manifest {
    /// Checks what a restore relies on: format, version, strategy, key, id, sections.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != "fraiseql-tenant-archive" {
            return Err(format!("not a tenant archive (format `{}`)", self.format));
        }
        if self.version == 0 || self.version > FORMAT_VERSION {
            return Err(format!(
                "archive format version {} is not one this fraiseql reads (1..={FORMAT_VERSION}); use a newer fraiseql",
                self.version
            ));
        }
        if parse_strategy(&self.strategy).is_none() {
            return Err(format!("unknown strategy `{}`", self.strategy));
        }
        if !keys::is_valid(&self.tenant.key) {
            return Err(format!(
                "the archived tenant key is invalid: {}",
                keys::why_invalid(&self.tenant.key)
            ));
        }
        if Uuid::parse_str(&self.tenant.id).is_err() {
            return Err("the archived tenant id is not a uuid".to_owned());
        }
        let names: BTreeSet<&str> = self.sections.iter().map(|s| s.name.as_str()).collect();
        if names.len() != self.sections.len() {
            return Err("a section is listed twice".to_owned());
        }
        if self.strategy == "row_level" {
            for t in &self.tables {
                if !names.contains(rows_section(&t.schema, &t.name).as_str()) {
                    return Err(format!("no section for table {}.{}", t.schema, t.name));
                }
                if t.columns.is_empty() || t.tenant_type.is_none() {
                    return Err(format!(
                        "table {}.{} lists no columns or tenant_id type",
                        t.schema, t.name
                    ));
                }
            }
            if !names.contains(OUTBOX_SECTION) {
                return Err("no outbox section".to_owned());
            }
        } else if !names.contains(DUMP_SECTION) {
            return Err("no dump section".to_owned());
        }
        Ok(())
    }

    /// Byte offset (from the start of the data) and length of section `name`.
    pub fn section(&self, name: &str) -> Option<(u64, u64)> {
        let mut at = 0u64;
        for s in &self.sections {
            if s.name == name {
                return Some((at, s.bytes));
            }
            at = at.saturating_add(s.bytes);
        }
        None
    }
}

/// The header and manifest lines of an archive.
pub fn encode_header(m: &Manifest) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = format!("{MAGIC} {FORMAT_VERSION}\n").into_bytes();
    // Compact JSON escapes every control character: the manifest is one line.
    out.extend_from_slice(serde_json::to_string(m)?.as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// Reads the header and manifest lines from `r`; returns the manifest and the data's offset
/// from the start of the file.
pub async fn decode_header<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<(Manifest, u64), String> {
    use tokio::io::AsyncBufReadExt;
    let mut first = Vec::new();
    (&mut *r)
        .take(64)
        .read_until(b'\n', &mut first)
        .await
        .map_err(|e| e.to_string())?;
    let line = std::str::from_utf8(&first).unwrap_or("");
    let Some(version) = line
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix(MAGIC))
        .and_then(|l| l.strip_prefix(' '))
    else {
        return Err("not a fraiseql tenant archive (no header line)".to_owned());
    };
    let version: u32 = version
        .parse()
        .map_err(|_| "not a fraiseql tenant archive (bad header line)".to_owned())?;
    if version == 0 || version > FORMAT_VERSION {
        return Err(format!(
            "archive format version {version} is not one this fraiseql reads (1..={FORMAT_VERSION}); use a newer fraiseql"
        ));
    }
    let mut second = Vec::new();
    (&mut *r)
        .take(MAX_MANIFEST)
        .read_until(b'\n', &mut second)
        .await
        .map_err(|e| e.to_string())?;
    if second.last() != Some(&b'\n') {
        return Err("the manifest line is truncated (or longer than 16 MiB)".to_owned());
    }
    let manifest: Manifest =
        serde_json::from_slice(&second).map_err(|e| format!("unreadable manifest: {e}"))?;
    manifest.validate()?;
    Ok((manifest, (first.len() + second.len()) as u64))
}

/// SHA-256 as lowercase hex.
fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/// Orders `tables` so that every table comes after the tables it references (`edges` are
/// `(referenced, referencing)`; self-references are ignored). Ties go by name, so the order is
/// stable. A cycle is an error naming its tables.
pub fn dependency_order(
    tables: &[String],
    edges: &[(String, String)],
) -> Result<Vec<String>, String> {
    let known: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
    let mut incoming: BTreeMap<&str, BTreeSet<&str>> =
        known.iter().map(|t| (*t, BTreeSet::new())).collect();
    for (parent, child) in edges {
        if parent == child || !known.contains(parent.as_str()) || !known.contains(child.as_str()) {
            continue;
        }
        if let Some(set) = incoming.get_mut(child.as_str()) {
            set.insert(parent.as_str());
        }
    }
    let mut out = Vec::with_capacity(known.len());
    while !incoming.is_empty() {
        let ready: Vec<&str> = incoming
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(t, _)| *t)
            .collect();
        if ready.is_empty() {
            // Tables that only depend on the cycle are not part of it: peel off those that
            // nothing left depends on.
            let mut rest: BTreeMap<&str, BTreeSet<&str>> = incoming.clone();
            loop {
                let sinks: Vec<&str> = rest
                    .keys()
                    .copied()
                    .filter(|t| !rest.values().any(|deps| deps.contains(t)))
                    .collect();
                if sinks.is_empty() {
                    break;
                }
                for t in sinks {
                    rest.remove(t);
                }
            }
            let cycle: Vec<&str> = rest.keys().copied().collect();
            return Err(format!(
                "the foreign keys between {} form a cycle: no order restores them",
                cycle.join(", ")
            ));
        }
        for t in ready {
            incoming.remove(t);
            for deps in incoming.values_mut() {
                deps.remove(t);
            }
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

/// The name an old copy is renamed to: `<name>_moved_<unix seconds>`, within PostgreSQL's 63
/// bytes (the name is shortened if needed).
pub fn copy_name(name: &str, unix_secs: u64) -> String {
    let suffix = format!("_moved_{unix_secs}");
    let room = 63usize.saturating_sub(suffix.len());
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &name[..cut])
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (UTC).
pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The default archive name of `key`: `<key>-<UTC stamp>.fraiseql-tenant`.
pub fn default_archive_name(key: &str) -> String {
    format!("{key}-{}.fraiseql-tenant", utc_stamp(unix_now()))
}

/// A libpq connection-string value, quoted.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A pg_dump name pattern matching exactly `name` (inside double quotes nothing is special).
pub fn exact_pattern(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The libpq environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`, …) that
/// reaches database `database` on the server of `url`, so no password is on a command line.
pub fn libpq_env(url: &str, database: &str) -> Result<Vec<(String, String)>, String> {
    use std::str::FromStr;
    // The URL's TLS settings go to libpq as written; the rest is parsed as the servers parse it.
    let (rest, mode, root) = fraiseql_engine::connections::target::split_tls(url)?;
    let c = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| format!("invalid connection URL ({e})"))?;
    let mode = mode.unwrap_or_else(|| "prefer".to_owned());
    if ![
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ]
    .contains(&mode.as_str())
    {
        return Err(format!(
            "sslmode {mode:?} is not one of disable, prefer, require, verify-ca, verify-full"
        ));
    }
    let mut env = vec![("PGDATABASE".to_owned(), database.to_owned())];
    match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => env.push(("PGHOST".into(), h.clone())),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => {
            env.push(("PGHOST".into(), p.display().to_string()));
        }
        None => {
            if let Some(a) = c.get_hostaddrs().first() {
                env.push(("PGHOSTADDR".into(), a.to_string()));
            }
        }
    }
    if let Some(p) = c.get_ports().first() {
        env.push(("PGPORT".into(), p.to_string()));
    }
    if let Some(u) = c.get_user() {
        env.push(("PGUSER".into(), u.to_owned()));
    }
    if let Some(p) = c.get_password() {
        env.push(("PGPASSWORD".into(), String::from_utf8_lossy(p).into_owned()));
    }
    env.push(("PGSSLMODE".into(), mode));
    if let Some(r) = root {
        env.push(("PGSSLROOTCERT".into(), r));
    }
    env.push(("PGAPPNAME".into(), "fraiseql-transfer".into()));
    env.push(("PGCONNECT_TIMEOUT".into(), "10".into()));
    Ok(env)
}

/// Rows in `COPY … TO STDOUT` text output: one line each (newlines in values are escaped).
fn copy_rows(chunk: &[u8]) -> u64 {
    chunk.iter().filter(|b| **b == b'\n').count() as u64
}

/// A strategy by its config name.
fn parse_strategy(s: &str) -> Option<TenancyStrategy> {
    [
        TenancyStrategy::DatabasePerTenant,
        TenancyStrategy::SchemaPerTenant,
        TenancyStrategy::RowLevel,
    ]
    .into_iter()
    .find(|t| t.as_str() == s)
}

fn strategy_of(config: &Config) -> TenancyStrategy {
    config.multi_tenancy.strategy
}

// ---------------------------------------------------------------------------------------------
// Where a tenant is
// ---------------------------------------------------------------------------------------------

/// A tenant's home: PostgreSQL server (`host:port`), database and schema.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    cluster: String,
    database: String,
    schema: String,
}

impl Location {
    fn of(rec: &TenantRecord) -> Result<Self, TransferError> {
        Ok(Self {
            cluster: provision::cluster_key(&rec.server)?,
            database: rec.database.clone(),
            schema: rec.schema.clone(),
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.cluster, self.database)?;
        if self.schema != "public" {
            write!(f, " schema {}", self.schema)?;
        }
        Ok(())
    }
}

async fn connect(url: &str, database: Option<&str>) -> Result<Client, TransferError> {
    Ok(provision::connect(url, database, None).await?)
}

/// The admin of `url` must read every row (row-level security bypassed) and see every session.
async fn check_admin(c: &Client, what: &str) -> Result<(), TransferError> {
    let ok: bool = c
        .query_one(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(db("admin role"))?
        .get(0);
    if ok {
        Ok(())
    } else {
        Err(TransferError::Refused(format!(
            "the role in the {what} URL can neither bypass row-level security nor is a superuser, so it would back up or restore only part of the rows: use the superuser provisioning uses (or give the role BYPASSRLS)"
        )))
    }
}

async fn try_lock(registry: &Client, key: &str) -> Result<(), TransferError> {
    let got: bool = registry
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('fraiseql_tenant:' || $1))",
            &[&key],
        )
        .await
        .map_err(db("registry lock"))?
        .get(0);
    if got {
        Ok(())
    } else {
        Err(TransferError::Busy(key.to_owned()))
    }
}

async fn unlock(registry: &Client, key: &str) {
    let _ = registry
        .execute(
            "SELECT pg_advisory_unlock(hashtext('fraiseql_tenant:' || $1))",
            &[&key],
        )
        .await;
}

// ---------------------------------------------------------------------------------------------
// Catalog: the tenant tables of a row_level host, tables of a dump
// ---------------------------------------------------------------------------------------------

/// A table with a `tenant_id` column (row_level).
#[derive(Debug, Clone)]
struct TenantTable {
    schema: String,
    name: String,
    /// Every column but generated ones, in order.
    columns: Vec<String>,
    /// `format_type` of `tenant_id`.
    tenant_type: String,
    /// Columns filled from a sequence (serial, identity) and that sequence.
    sequences: Vec<(String, String)>,
}

impl TenantTable {
    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// A foreign key between two tenant tables.
#[derive(Debug, Clone)]
struct ForeignKey {
    child: String,
    child_columns: Vec<String>,
    parent: String,
    parent_columns: Vec<String>,
}

async fn tenant_tables(
    c: &Client,
    schema: &str,
) -> Result<(Vec<TenantTable>, Vec<ForeignKey>), TransferError> {
    let rows = c
        .query(
            "SELECT c.relname::text,
                    array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated = ''),
                    max(format_type(a.atttypid, a.atttypmod)) FILTER (WHERE a.attname = 'tenant_id'),
                    array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) IS NOT NULL),
                    array_agg(pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) ORDER BY a.attnum) FILTER (WHERE pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) IS NOT NULL)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND c.relname NOT LIKE 'fraiseql\\_%'
             GROUP BY n.nspname, c.relname
             HAVING bool_or(a.attname = 'tenant_id')
             ORDER BY c.relname",
            &[&schema],
        )
        .await
        .map_err(db("reading the tenant tables"))?;
    let tables = rows
        .iter()
        .map(|r| {
            let seq_cols: Vec<String> = r.get::<_, Option<Vec<String>>>(3).unwrap_or_default();
            let seqs: Vec<String> = r.get::<_, Option<Vec<String>>>(4).unwrap_or_default();
            TenantTable {
                schema: schema.to_owned(),
                name: r.get(0),
                columns: r.get::<_, Option<Vec<String>>>(1).unwrap_or_default(),
                tenant_type: r
                    .get::<_, Option<String>>(2)
                    .unwrap_or_else(|| "uuid".into()),
                sequences: seq_cols.into_iter().zip(seqs).collect(),
            }
        })
        .collect();
    let rows = c
        .query(
            "SELECT cc.relname::text, pc.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)
             FROM pg_constraint con
             JOIN pg_class cc ON cc.oid = con.conrelid
             JOIN pg_class pc ON pc.oid = con.confrelid
             JOIN pg_namespace cn ON cn.oid = cc.relnamespace
             JOIN pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE con.contype = 'f' AND cn.nspname = $1 AND pn.nspname = $1
             ORDER BY con.conname",
            &[&schema],
        )
        .await
        .map_err(db("reading the foreign keys"))?;
    let fks = rows
        .iter()
        .map(|r| ForeignKey {
            child: r.get(0),
            parent: r.get(1),
            child_columns: r.get(2),
            parent_columns: r.get(3),
        })
        .collect();
    Ok((tables, fks))
}

fn ordered(
    tables: Vec<TenantTable>,
    fks: &[ForeignKey],
) -> Result<Vec<TenantTable>, TransferError> {
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let edges: Vec<(String, String)> = fks
        .iter()
        .map(|f| (f.parent.clone(), f.child.clone()))
        .collect();
    let order = dependency_order(&names, &edges).map_err(TransferError::Refused)?;
    let mut by_name: BTreeMap<String, TenantTable> =
        tables.into_iter().map(|t| (t.name.clone(), t)).collect();
    Ok(order
        .into_iter()
        .filter_map(|n| by_name.remove(&n))
        .collect())
}

/// The ordinary tables of a database (every non-system schema) or of one schema, with their
/// row counts.
async fn table_counts(
    c: &Client,
    schema: Option<&str>,
) -> Result<Vec<ArchivedTable>, TransferError> {
    let rows = c
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r'
               AND CASE WHEN $1::text IS NULL
                        THEN n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                        ELSE n.nspname = $1 END
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY 1, 2",
            &[&schema],
        )
        .await
        .map_err(db("listing the tables"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (s, t): (String, String) = (r.get(0), r.get(1));
        let n: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{}",
                    quote_ident(&s),
                    quote_ident(&t)
                ),
                &[],
            )
            .await
            .map_err(db("counting rows"))?
            .get(0);
        out.push(ArchivedTable {
            schema: s,
            name: t,
            rows: n.max(0) as u64,
            columns: Vec::new(),
            tenant_type: None,
        });
    }
    Ok(out)
}

async fn unsent_outbox(c: &Client, schema: &str, key: Option<&str>) -> Result<u64, TransferError> {
    let exists: bool = c
        .query_one(
            "SELECT to_regclass(format('%I.fraiseql_outbox', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await
        .map_err(db("outbox"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let n: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.fraiseql_outbox WHERE sent_at IS NULL AND ($1::text IS NULL OR tenant_key = $1)",
                quote_ident(schema)
            ),
            &[&key],
        )
        .await
        .map_err(db("outbox"))?
        .get(0);
    Ok(n.max(0) as u64)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// Files made along the way, removed when dropped.
#[derive(Default)]
struct Scratch(Vec<PathBuf>);

impl Scratch {
    fn file(&mut self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!(
            ".fraiseql-{}-{}.partial",
            name,
            Uuid::new_v4().simple()
        ));
        self.0.push(p.clone());
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn create_private(path: &Path) -> Result<tokio::fs::File, TransferError> {
    let mut o = tokio::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path).await.map_err(io(path))
}

/// A data section on disk, before it joins an archive.
struct SectionFile {
    path: PathBuf,
    section: Section,
}

async fn hash_file(path: &Path) -> Result<(u64, String), TransferError> {
    let mut f = tokio::fs::File::open(path).await.map_err(io(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).await.map_err(io(path))?;
        if got == 0 {
            break;
        }
        ctx.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, hex(ctx.finish().as_ref())))
}

/// Writes the archive: header, manifest, sections; to a partial file renamed at the end.
async fn assemble(
    out: &Path,
    manifest: &Manifest,
    sections: &[SectionFile],
    scratch: &mut Scratch,
) -> Result<u64, TransferError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let partial = scratch.file(dir, "archive");
    let mut f = create_private(&partial).await?;
    let header = encode_header(manifest).map_err(|e| archive_error(out, e.to_string()))?;
    f.write_all(&header).await.map_err(io(&partial))?;
    let mut total = header.len() as u64;
    for s in sections {
        let mut src = tokio::fs::File::open(&s.path).await.map_err(io(&s.path))?;
        total += tokio::io::copy(&mut src, &mut f)
            .await
            .map_err(io(&partial))?;
    }
    f.flush().await.map_err(io(&partial))?;
    f.sync_all().await.map_err(io(&partial))?;
    drop(f);
    if tokio::fs::try_exists(out).await.unwrap_or(false) {
        return Err(TransferError::Refused(format!(
            "{} exists: choose another --out, or remove it first",
            out.display()
        )));
    }
    tokio::fs::rename(&partial, out).await.map_err(io(out))?;
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// pg_dump / pg_restore
// ---------------------------------------------------------------------------------------------

fn tool_path(tool: &str) -> PathBuf {
    match std::env::var_os("FRAISEQL_PG_BINDIR") {
        Some(dir) => PathBuf::from(dir).join(tool),
        None => PathBuf::from(tool),
    }
}

async fn run_tool(
    tool: &str,
    args: &[String],
    env: &[(String, String)],
) -> Result<String, TransferError> {
    let out = tokio::process::Command::new(tool_path(tool))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("PGSERVICE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| TransferError::ToolMissing {
            tool: tool.to_owned(),
            reason: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(TransferError::Tool {
            tool: tool.to_owned(),
            status: out.status.to_string(),
            stderr: tool_failure(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The part of a PostgreSQL tool's stderr an operator needs: its `error:` lines (pg_restore
/// follows each with the whole statement, which can be pages long), else the last lines.
fn tool_failure(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("error:") || l.contains("ERROR:") || l.contains("FATAL:"))
        .take(3)
        .collect();
    let lines = if errors.is_empty() {
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        tail.into_iter().rev().collect()
    } else {
        errors
    };
    lines
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" / ")
}

async fn tool_version(tool: &str) -> Result<String, TransferError> {
    run_tool(tool, &["--version".to_owned()], &[]).await
}

fn env_for(url: &str, database: &str) -> Result<Vec<(String, String)>, TransferError> {
    libpq_env(url, database).map_err(|e| TransferError::Provision(ProvisionError::Config(e)))
}

// ---------------------------------------------------------------------------------------------
// Backup
// ---------------------------------------------------------------------------------------------

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The archive.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its manifest.
    pub manifest: Manifest,
}

impl BackupReport {
    /// Rows in all tables.
    pub fn rows(&self) -> u64 {
        self.manifest.tables.iter().map(|t| t.rows).sum()
    }
}

/// Backs tenant `key` up into the archive `out` (refused if it exists), without stopping it:
/// the data, counts and outbox come from one snapshot.
pub async fn backup(
    config: &Config,
    key: &str,
    out: &Path,
    progress: Progress<'_>,
) -> Result<BackupReport, TransferError> {
    if !keys::is_valid(key) {
        return Err(TransferError::InvalidKey(keys::why_invalid(key)));
    }
    if tokio::fs::try_exists(out).await.unwrap_or(false) {
        return Err(TransferError::Refused(format!(
            "{} exists: choose another --out, or remove it first",
            out.display()
        )));
    }
    let registry = provision::registry_client(config).await?;
    let rec = registry::get(&registry, key)
        .await
        .map_err(db("registry"))?
        .ok_or_else(|| TransferError::Unknown(key.to_owned()))?;
    if rec.status == TenantStatus::Provisioning {
        return Err(TransferError::NotReady(key.to_owned()));
    }
    backup_record(&rec, out, progress).await
}

async fn backup_record(
    rec: &TenantRecord,
    out: &Path,
    progress: Progress<'_>,
) -> Result<BackupReport, TransferError> {
    let strategy = parse_strategy(&rec.strategy).ok_or_else(|| {
        TransferError::Refused(format!(
            "tenant `{}` has an unknown strategy `{}` in the registry",
            rec.key, rec.strategy
        ))
    })?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut scratch = Scratch::default();
    let c = connect(&rec.server, Some(&rec.database)).await?;
    check_admin(&c, "tenant server").await?;
    c.batch_execute(COPY_SETTINGS)
        .await
        .map_err(db("session"))?;
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(db("snapshot"))?;
    let head = c
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), current_setting('server_version')",
            &[],
        )
        .await
        .map_err(db("snapshot"))?;
    let (created_at, version): (String, String) = (head.get(0), head.get(1));
    let (tables, outbox_unsent, sections, tool) = if strategy == TenancyStrategy::RowLevel {
        let (t, o, s) = backup_rows(&c, rec, dir, &mut scratch).await?;
        (t, o, s, None)
    } else {
        let (t, o, s, v) = backup_dump(&c, rec, strategy, dir, &mut scratch).await?;
        (t, o, s, Some(v))
    };
    c.batch_execute("COMMIT").await.map_err(db("snapshot"))?;
    let manifest = Manifest {
        format: "fraiseql-tenant-archive".to_owned(),
        version: FORMAT_VERSION,
        created_at,
        strategy: rec.strategy.clone(),
        tenant: ArchivedTenant {
            key: rec.key.clone(),
            id: rec.id.to_string(),
            tier: rec.tier.clone(),
            status: rec.status.as_str().to_owned(),
            database: rec.database.clone(),
            schema: rec.schema.clone(),
            role: rec.role.clone(),
            login_role: rec.login_role.clone(),
        },
        source: ArchivedSource {
            server: provision::cluster_key(&rec.server)?,
            database: rec.database.clone(),
            version,
        },
        tables,
        outbox_unsent,
        sections: sections.iter().map(|s| s.section.clone()).collect(),
        tool,
    };
    let bytes = assemble(out, &manifest, &sections, &mut scratch).await?;
    progress(&format!(
        "backed up tenant `{}`: {} rows in {} tables, {} unsent events, {} bytes -> {}",
        rec.key,
        manifest.tables.iter().map(|t| t.rows).sum::<u64>(),
        manifest.tables.len(),
        manifest.outbox_unsent,
        bytes,
        out.display()
    ));
    Ok(BackupReport {
        path: out.to_owned(),
        bytes,
        manifest,
    })
}

/// `pg_dump` of the tenant's database or schema, from the snapshot `c` holds.
async fn backup_dump(
    c: &Client,
    rec: &TenantRecord,
    strategy: TenancyStrategy,
    dir: &Path,
    scratch: &mut Scratch,
) -> Result<(Vec<ArchivedTable>, u64, Vec<SectionFile>, String), TransferError> {
    let version = tool_version("pg_dump").await?;
    let snapshot: String = c
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(db("snapshot"))?
        .get(0);
    let scope = (strategy == TenancyStrategy::SchemaPerTenant).then_some(rec.schema.as_str());
    let tables = table_counts(c, scope).await?;
    let outbox = unsent_outbox(c, &rec.schema, None).await?;
    let path = scratch.file(dir, "dump");
    let mut args = vec![
        "--format=custom".to_owned(),
        "--no-owner".to_owned(),
        "--no-privileges".to_owned(),
        format!("--snapshot={snapshot}"),
        format!("--file={}", path.display()),
    ];
    if let Some(s) = scope {
        args.push("--strict-names".to_owned());
        args.push(format!("--schema={}", exact_pattern(s)));
    }
    args.push(format!("--dbname=dbname={}", conninfo_value(&rec.database)));
    run_tool("pg_dump", &args, &env_for(&rec.server, &rec.database)?).await?;
    let (bytes, sha256) = hash_file(&path).await?;
    Ok((
        tables,
        outbox,
        vec![SectionFile {
            path,
            section: Section {
                name: DUMP_SECTION.to_owned(),
                bytes,
                sha256,
            },
        }],
        version,
    ))
}

/// COPY of one query's rows into a section file; returns (rows, file).
async fn copy_to_file(
    c: &Client,
    sql: &str,
    name: String,
    dir: &Path,
    scratch: &mut Scratch,
) -> Result<(u64, SectionFile), TransferError> {
    let path = scratch.file(dir, "rows");
    let mut f = create_private(&path).await?;
    let stream = c.copy_out(sql).await.map_err(db("copying rows"))?;
    futures_util::pin_mut!(stream);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let (mut bytes, mut rows) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(db("copying rows"))?;
        ctx.update(&chunk);
        rows += copy_rows(&chunk);
        bytes += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(io(&path))?;
    }
    f.flush().await.map_err(io(&path))?;
    Ok((
        rows,
        SectionFile {
            path,
            section: Section {
                name,
                bytes,
                sha256: hex(ctx.finish().as_ref()),
            },
        },
    ))
}

/// The tenant's rows of every table with `tenant_id`, parents first, and its unsent outbox
/// rows, from the snapshot `c` holds.
async fn backup_rows(
    c: &Client,
    rec: &TenantRecord,
    dir: &Path,
    scratch: &mut Scratch,
) -> Result<(Vec<ArchivedTable>, u64, Vec<SectionFile>), TransferError> {
    c.execute(
        "SELECT set_config('fraiseql.transfer_tenant', $1, true), set_config('fraiseql.transfer_key', $2, true)",
        &[&rec.id.to_string(), &rec.key],
    )
    .await
    .map_err(db("snapshot"))?;
    let (tables, fks) = tenant_tables(c, &rec.schema).await?;
    let tables = ordered(tables, &fks)?;
    let mut archived = Vec::new();
    let mut sections = Vec::new();
    for t in &tables {
        let cols = t
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "COPY (SELECT {cols} FROM {} WHERE tenant_id = current_setting('fraiseql.transfer_tenant')::{}) TO STDOUT",
            t.qualified(),
            t.tenant_type
        );
        let (rows, file) =
            copy_to_file(c, &sql, rows_section(&t.schema, &t.name), dir, scratch).await?;
        archived.push(ArchivedTable {
            schema: t.schema.clone(),
            name: t.name.clone(),
            rows,
            columns: t.columns.clone(),
            tenant_type: Some(t.tenant_type.clone()),
        });
        sections.push(file);
    }
    let has_outbox = unsent_outbox(c, &rec.schema, Some(&rec.key)).await?;
    let outbox_sql = format!(
        "COPY (SELECT {} FROM {}.fraiseql_outbox WHERE tenant_key = current_setting('fraiseql.transfer_key') AND sent_at IS NULL ORDER BY created_at) TO STDOUT",
        OUTBOX_COLUMNS.join(", "),
        quote_ident(&rec.schema)
    );
    let outbox_exists: bool = c
        .query_one(
            "SELECT to_regclass(format('%I.fraiseql_outbox', $1::text)) IS NOT NULL",
            &[&rec.schema],
        )
        .await
        .map_err(db("outbox"))?
        .get(0);
    let (unsent, file) = if outbox_exists {
        copy_to_file(c, &outbox_sql, OUTBOX_SECTION.to_owned(), dir, scratch).await?
    } else {
        let path = scratch.file(dir, "outbox");
        drop(create_private(&path).await?);
        let (bytes, sha256) = hash_file(&path).await?;
        (
            0,
            SectionFile {
                path,
                section: Section {
                    name: OUTBOX_SECTION.to_owned(),
                    bytes,
                    sha256,
                },
            },
        )
    };
    debug_assert_eq!(unsent, has_outbox);
    sections.push(file);
    Ok((archived, unsent, sections))
}

// ---------------------------------------------------------------------------------------------
// Reading an archive
// ---------------------------------------------------------------------------------------------

/// An archive opened for restoring: its manifest, and where its data starts.
struct Archive {
    path: PathBuf,
    manifest: Manifest,
    data_at: u64,
}

impl Archive {
    async fn open(path: &Path) -> Result<Self, TransferError> {
        let f = tokio::fs::File::open(path).await.map_err(io(path))?;
        let mut r = tokio::io::BufReader::new(f);
        let (manifest, data_at) = decode_header(&mut r)
            .await
            .map_err(|e| archive_error(path, e))?;
        let len = tokio::fs::metadata(path).await.map_err(io(path))?.len();
        let want = data_at + manifest.sections.iter().map(|s| s.bytes).sum::<u64>();
        if len != want {
            return Err(archive_error(
                path,
                format!("the file is {len} bytes, the manifest describes {want}: it is truncated or has something appended"),
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            manifest,
            data_at,
        })
    }

    /// Reads section `name` in chunks, checking its SHA-256 at the end; `each` gets the chunks.
    async fn read_section<F, Fut>(&self, name: &str, mut each: F) -> Result<(), TransferError>
    where
        F: FnMut(bytes::Bytes) -> Fut,
        Fut: std::future::Future<Output = Result<(), TransferError>>,
    {
        let (at, len) = self
            .manifest
            .section(name)
            .ok_or_else(|| archive_error(&self.path, format!("no section `{name}`")))?;
        let want = self
            .manifest
            .sections
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.sha256.clone())
            .unwrap_or_default();
        let mut f = tokio::fs::File::open(&self.path)
            .await
            .map_err(io(&self.path))?;
        f.seek(std::io::SeekFrom::Start(self.data_at + at))
            .await
            .map_err(io(&self.path))?;
        let mut left = len;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        while left > 0 {
            let want_now = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let got = f.read(&mut buf[..want_now]).await.map_err(io(&self.path))?;
            if got == 0 {
                return Err(archive_error(
                    &self.path,
                    format!("section `{name}` is truncated"),
                ));
            }
            ctx.update(&buf[..got]);
            left -= got as u64;
            each(bytes::Bytes::copy_from_slice(&buf[..got])).await?;
        }
        if hex(ctx.finish().as_ref()) != want {
            return Err(archive_error(
                &self.path,
                format!("section `{name}` is damaged (its SHA-256 differs from the manifest's)"),
            ));
        }
        Ok(())
    }

    /// Checks every section's checksum before anything is changed.
    async fn verify(&self) -> Result<(), TransferError> {
        for s in &self.manifest.sections {
            self.read_section(&s.name, |_| async { Ok(()) }).await?;
        }
        Ok(())
    }

    /// Writes section `name` to a private file of its own (what pg_restore reads).
    async fn extract(&self, name: &str, to: &Path) -> Result<(), TransferError> {
        let f = create_private(to).await?;
        let f = std::sync::Arc::new(tokio::sync::Mutex::new(f));
        self.read_section(name, |chunk| {
            let f = f.clone();
            async move {
                f.lock().await.write_all(&chunk).await.map_err(io(to))?;
                Ok(())
            }
        })
        .await?;
        f.lock().await.flush().await.map_err(io(to))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Restore
// ---------------------------------------------------------------------------------------------

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The restored tenant's registry row (as `fraiseql tenant list` shows it).
    pub record: TenantRecord,
    /// Rows restored.
    pub rows: u64,
    /// Tables restored.
    pub tables: usize,
    /// Unsent events restored.
    pub outbox_unsent: u64,
    /// What else the operator should know (renumbered keys, a previous copy left in place).
    pub notes: Vec<String>,
}

/// What the target held before a restore, and what the restore made there.
#[derive(Debug, Default, Clone)]
struct Made {
    created: Created,
    /// The tenant's database / schema / rows were found on the target (and wiped).
    found: bool,
    /// Something was loaded.
    loaded: bool,
    /// `schema_per_tenant`: the archive's schema name, when it differs from the target's.
    foreign_schema: Option<String>,
}

/// What of the tenant is already on the target, if anything.
async fn occupied(
    rec: &TenantRecord,
    strategy: TenancyStrategy,
    archive: &Manifest,
) -> Result<Option<String>, TransferError> {
    let admin = connect(&rec.server, None).await?;
    match strategy {
        TenancyStrategy::DatabasePerTenant => {
            let exists = admin
                .query_opt(
                    "SELECT 1 FROM pg_database WHERE datname = $1",
                    &[&rec.database],
                )
                .await
                .map_err(db("target"))?
                .is_some();
            Ok(exists.then(|| format!("a database named {}", rec.database)))
        }
        TenancyStrategy::SchemaPerTenant => {
            let host = connect(&rec.server, Some(&rec.database)).await?;
            let exists = host
                .query_opt(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                    &[&rec.schema],
                )
                .await
                .map_err(db("target"))?
                .is_some();
            Ok(exists
                .then(|| format!("a schema named {} in database {}", rec.schema, rec.database)))
        }
        TenancyStrategy::RowLevel => {
            let host = connect(&rec.server, Some(&rec.database)).await?;
            let (tables, _) = tenant_tables(&host, &rec.schema).await?;
            let id = rec.id.to_string();
            let mut found = Vec::new();
            for t in &tables {
                let any: bool = host
                    .query_one(
                        &format!(
                            "SELECT EXISTS (SELECT 1 FROM {} WHERE tenant_id = ($1::text)::{})",
                            t.qualified(),
                            t.tenant_type
                        ),
                        &[&id],
                    )
                    .await
                    .map_err(db("target"))?
                    .get(0);
                if any {
                    found.push(t.name.clone());
                }
            }
            if unsent_outbox(&host, &rec.schema, Some(&archive.tenant.key)).await? > 0 {
                found.push("fraiseql_outbox".to_owned());
            }
            Ok((!found.is_empty()).then(|| {
                format!(
                    "rows of tenant id {} in database {} ({})",
                    rec.id,
                    rec.database,
                    found.join(", ")
                )
            }))
        }
    }
}

/// Removes the tenant's database, schema or rows at `rec` (what `--force` replaces).
async fn wipe(rec: &TenantRecord, strategy: TenancyStrategy) -> Result<(), TransferError> {
    match strategy {
        TenancyStrategy::DatabasePerTenant => {
            let admin = connect(&rec.server, None).await?;
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&rec.database)
                ))
                .await
                .map_err(db("removing the tenant's database on the target"))
        }
        TenancyStrategy::SchemaPerTenant => {
            let host = connect(&rec.server, Some(&rec.database)).await?;
            host.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                quote_ident(&rec.schema)
            ))
            .await
            .map_err(db("removing the tenant's schema on the target"))
        }
        TenancyStrategy::RowLevel => {
            let host = connect(&rec.server, Some(&rec.database)).await?;
            delete_rows(&host, &rec.schema, rec.id, &rec.key).await
        }
    }
}

/// Deletes tenant `id`'s rows from every tenant table of `schema` (children first) and its
/// outbox rows, in one transaction.
async fn delete_rows(c: &Client, schema: &str, id: Uuid, key: &str) -> Result<(), TransferError> {
    let (tables, fks) = tenant_tables(c, schema).await?;
    let tables = ordered(tables, &fks)?;
    c.batch_execute("BEGIN")
        .await
        .map_err(db("deleting rows"))?;
    let id = id.to_string();
    let result = async {
        for t in tables.iter().rev() {
            c.execute(
                &format!(
                    "DELETE FROM {} WHERE tenant_id = ($1::text)::{}",
                    t.qualified(),
                    t.tenant_type
                ),
                &[&id],
            )
            .await
            .map_err(db("deleting rows"))?;
        }
        let outbox: bool = c
            .query_one(
                "SELECT to_regclass(format('%I.fraiseql_outbox', $1::text)) IS NOT NULL",
                &[&schema],
            )
            .await
            .map_err(db("outbox"))?
            .get(0);
        if outbox {
            c.execute(
                &format!(
                    "DELETE FROM {}.fraiseql_outbox WHERE tenant_key = $1",
                    quote_ident(schema)
                ),
                &[&key],
            )
            .await
            .map_err(db("deleting outbox rows"))?;
        }
        Ok::<(), TransferError>(())
    }
    .await;
    match result {
        Ok(()) => c.batch_execute("COMMIT").await.map_err(db("deleting rows")),
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Provisions `rec`'s home on its server, loads the archive into it, checks the row counts,
/// applies pending migrations and grants. `made` records what to undo if it fails.
async fn load(
    config: &Config,
    rec: &TenantRecord,
    archive: &Archive,
    made: &mut Made,
    notes: &mut Vec<String>,
    progress: Progress<'_>,
) -> Result<(), TransferError> {
    let strategy = strategy_of(config);
    let m = &archive.manifest;
    match strategy {
        TenancyStrategy::RowLevel => {
            made.created = provision::prepare_home(config, rec, true).await?;
            provision::migrate_tenant(config, rec).await?;
            let host = connect(&rec.server, Some(&rec.database)).await?;
            made.loaded = true;
            load_rows(&host, rec, archive, notes).await?;
        }
        TenancyStrategy::DatabasePerTenant | TenancyStrategy::SchemaPerTenant => {
            let source_schema = m.tenant.schema.clone();
            if strategy == TenancyStrategy::SchemaPerTenant && source_schema != rec.schema {
                // pg_restore recreates the archive's schema name; it is renamed afterwards.
                let host = connect(&rec.server, Some(&rec.database)).await?;
                let taken = host
                    .query_opt(
                        "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                        &[&source_schema],
                    )
                    .await
                    .map_err(db("target"))?
                    .is_some();
                if taken {
                    return Err(TransferError::TargetOccupied {
                        what: format!(
                            "a schema named {source_schema} (the archive's) in database {}",
                            rec.database
                        ),
                        hint: "restore into another database (--server-url …/<database>)"
                            .to_owned(),
                    });
                }
                made.foreign_schema = Some(source_schema.clone());
            }
            made.created = provision::prepare_home(config, rec, false).await?;
            let scratch_dir = std::env::temp_dir();
            let mut scratch = Scratch::default();
            let dump = scratch.file(&scratch_dir, "restore");
            archive.extract(DUMP_SECTION, &dump).await?;
            made.loaded = true;
            let args = vec![
                "--no-owner".to_owned(),
                "--no-privileges".to_owned(),
                "--exit-on-error".to_owned(),
                "--single-transaction".to_owned(),
                format!("--dbname=dbname={}", conninfo_value(&rec.database)),
                dump.display().to_string(),
            ];
            run_tool("pg_restore", &args, &env_for(&rec.server, &rec.database)?).await?;
            drop(scratch);
            let c = connect(&rec.server, Some(&rec.database)).await?;
            if let Some(from) = made.foreign_schema.clone() {
                c.batch_execute(&format!(
                    "ALTER SCHEMA {} RENAME TO {}",
                    quote_ident(&from),
                    quote_ident(&rec.schema)
                ))
                .await
                .map_err(db("renaming the restored schema"))?;
                made.foreign_schema = None;
                notes.push(format!(
                    "schema {from} of the archive was restored as {}",
                    rec.schema
                ));
            }
            verify_dump(&c, rec, strategy, m).await?;
            provision::migrate_tenant(config, rec).await?;
            // Unsent events are due now at their new home (not after a backoff from before).
            c.batch_execute(&format!(
                "UPDATE {}.fraiseql_outbox SET next_attempt_at = now() WHERE sent_at IS NULL",
                quote_ident(&rec.schema)
            ))
            .await
            .map_err(db("outbox"))?;
        }
    }
    progress(&format!(
        "restored {} rows in {} tables and {} unsent events on {}; row counts verified",
        m.tables.iter().map(|t| t.rows).sum::<u64>(),
        m.tables.len(),
        m.outbox_unsent,
        Location::of(rec)?
    ));
    Ok(())
}

/// Row counts of the restored database or schema against the manifest.
async fn verify_dump(
    c: &Client,
    rec: &TenantRecord,
    strategy: TenancyStrategy,
    m: &Manifest,
) -> Result<(), TransferError> {
    let scope = (strategy == TenancyStrategy::SchemaPerTenant).then_some(rec.schema.as_str());
    let here: BTreeMap<(String, String), u64> = table_counts(c, scope)
        .await?
        .into_iter()
        .map(|t| ((t.schema, t.name), t.rows))
        .collect();
    let mut wrong = Vec::new();
    for t in &m.tables {
        let schema = if strategy == TenancyStrategy::SchemaPerTenant {
            rec.schema.clone()
        } else {
            t.schema.clone()
        };
        match here.get(&(schema.clone(), t.name.clone())) {
            Some(n) if *n == t.rows => {}
            Some(n) => wrong.push(format!(
                "{schema}.{}: {n} rows, the archive has {}",
                t.name, t.rows
            )),
            None => wrong.push(format!("{schema}.{} is missing", t.name)),
        }
    }
    let unsent = unsent_outbox(c, &rec.schema, None).await?;
    if unsent != m.outbox_unsent {
        wrong.push(format!(
            "fraiseql_outbox: {unsent} unsent events, the archive has {}",
            m.outbox_unsent
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(TransferError::Verify(wrong.join("; ")))
    }
}

/// Loads `row_level` rows in one transaction: staged per table, sequence keys taken on the
/// target renumbered (with the foreign keys pointing at them), inserted parents first,
/// sequences moved past the restored keys, counts checked before COMMIT.
async fn load_rows(
    c: &Client,
    rec: &TenantRecord,
    archive: &Archive,
    notes: &mut Vec<String>,
) -> Result<(), TransferError> {
    let m = &archive.manifest;
    let (targets, fks) = tenant_tables(c, &rec.schema).await?;
    let by_name: BTreeMap<&str, &TenantTable> =
        targets.iter().map(|t| (t.name.as_str(), t)).collect();
    // Every archived table and column must exist here.
    for t in &m.tables {
        let Some(here) = by_name.get(t.name.as_str()) else {
            return Err(TransferError::Refused(format!(
                "table {} of the archive does not exist in {}.{} on the target (or has no tenant_id): the target's migrations differ from the source's; run `fraiseql migrate` with the same migrations",
                t.name, rec.database, rec.schema
            )));
        };
        if let Some(col) = t.columns.iter().find(|c| !here.columns.contains(c)) {
            return Err(TransferError::Refused(format!(
                "table {} on the target has no column {col}: the target's migrations are older than the source's; run `fraiseql migrate` on the target first",
                t.name
            )));
        }
    }
    let names: Vec<String> = m.tables.iter().map(|t| t.name.clone()).collect();
    let edges: Vec<(String, String)> = fks
        .iter()
        .map(|f| (f.parent.clone(), f.child.clone()))
        .collect();
    let order = dependency_order(&names, &edges).map_err(TransferError::Refused)?;
    let staging: BTreeMap<&str, String> = m
        .tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), format!("fraiseql_restore_{i}")))
        .collect();
    c.batch_execute(COPY_SETTINGS)
        .await
        .map_err(db("session"))?;
    c.batch_execute("BEGIN").await.map_err(db("restore"))?;
    let result = async {
        for t in &m.tables {
            let here = by_name[t.name.as_str()];
            let stage = &staging[t.name.as_str()];
            c.batch_execute(&format!(
                "CREATE TEMP TABLE {stage} (LIKE {}) ON COMMIT DROP",
                here.qualified()
            ))
            .await
            .map_err(db("staging"))?;
            let cols = t
                .columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ");
            let sink = c
                .copy_in::<_, bytes::Bytes>(&format!("COPY {stage} ({cols}) FROM STDIN"))
                .await
                .map_err(db("copying rows"))?;
            let sink = std::sync::Arc::new(tokio::sync::Mutex::new(Box::pin(sink)));
            let s2 = sink.clone();
            archive
                .read_section(&rows_section(&t.schema, &t.name), move |chunk| {
                    let s = s2.clone();
                    async move {
                        s.lock().await.send(chunk).await.map_err(db("copying rows"))
                    }
                })
                .await?;
            let rows = sink
                .lock()
                .await
                .as_mut()
                .finish()
                .await
                .map_err(db("copying rows"))?;
            if rows != t.rows {
                return Err(TransferError::Verify(format!(
                    "{}: {rows} rows in the archive's section, the manifest says {}",
                    t.name, t.rows
                )));
            }
        }
        // Renumber sequence keys taken on the target.
        for t in &m.tables {
            let here = by_name[t.name.as_str()];
            let stage = &staging[t.name.as_str()];
            for (i, (col, seq)) in here.sequences.iter().enumerate() {
                if !t.columns.contains(col) {
                    continue;
                }
                let qc = quote_ident(col);
                let taken: bool = c
                    .query_one(
                        &format!(
                            "SELECT EXISTS (SELECT 1 FROM {} x JOIN {stage} s ON x.{qc} = s.{qc})",
                            here.qualified()
                        ),
                        &[],
                    )
                    .await
                    .map_err(db("checking keys"))?
                    .get(0);
                if !taken {
                    continue;
                }
                let map = format!("{stage}_map_{i}");
                c.batch_execute(&format!(
                    "CREATE TEMP TABLE {map} ON COMMIT DROP AS SELECT {qc} AS old, {qc} AS new FROM {stage} WITH NO DATA"
                ))
                .await
                .map_err(db("renumbering"))?;
                let n = c
                    .execute(
                        &format!(
                            "INSERT INTO {map} (old, new) SELECT k, nextval($1::text::regclass) FROM (SELECT DISTINCT {qc} AS k FROM {stage} WHERE {qc} IS NOT NULL ORDER BY 1) s"
                        ),
                        &[seq],
                    )
                    .await
                    .map_err(db("renumbering"))?;
                c.batch_execute(&format!(
                    "UPDATE {stage} SET {qc} = m.new FROM {map} m WHERE {stage}.{qc} = m.old"
                ))
                .await
                .map_err(db("renumbering"))?;
                for fk in fks.iter().filter(|f| f.parent == t.name && f.parent_columns.contains(col)) {
                    if fk.parent_columns.len() != 1 {
                        return Err(TransferError::Refused(format!(
                            "{}.{col} is taken on the target and must be renumbered, but the foreign key from {} covers several columns; restore into a server without this tenant's key range in use",
                            t.name, fk.child
                        )));
                    }
                    let Some(child_stage) = staging.get(fk.child.as_str()) else {
                        continue;
                    };
                    let cc = quote_ident(&fk.child_columns[0]);
                    c.batch_execute(&format!(
                        "UPDATE {child_stage} SET {cc} = m.new FROM {map} m WHERE {child_stage}.{cc} = m.old"
                    ))
                    .await
                    .map_err(db("renumbering"))?;
                }
                notes.push(format!(
                    "{}.{col}: {n} keys renumbered (they were taken on the target); foreign keys follow",
                    t.name
                ));
            }
        }
        for name in &order {
            let (here, stage) = (by_name[name.as_str()], &staging[name.as_str()]);
            let Some(t) = m.tables.iter().find(|t| &t.name == name) else {
                continue;
            };
            let cols = t
                .columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ");
            c.batch_execute(&format!(
                "INSERT INTO {} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {stage}",
                here.qualified()
            ))
            .await
            .map_err(db(&format!("restoring rows into {name}")))?;
            for (col, seq) in &here.sequences {
                c.execute(
                    &format!(
                        "SELECT setval($1::text::regclass, greatest(m, pg_sequence_last_value($1::text::regclass))) FROM (SELECT max({}) AS m FROM {}) x WHERE m IS NOT NULL",
                        quote_ident(col),
                        here.qualified()
                    ),
                    &[seq],
                )
                .await
                .map_err(db("moving sequences"))?;
            }
        }
        // The unsent events: due now at their new home.
        c.batch_execute(&format!(
            "CREATE TEMP TABLE fraiseql_restore_outbox ON COMMIT DROP AS SELECT {} FROM {}.fraiseql_outbox WITH NO DATA",
            OUTBOX_COLUMNS.join(", "),
            quote_ident(&rec.schema)
        ))
        .await
        .map_err(db("staging"))?;
        let sink = c
            .copy_in::<_, bytes::Bytes>(&format!(
                "COPY fraiseql_restore_outbox ({}) FROM STDIN",
                OUTBOX_COLUMNS.join(", ")
            ))
            .await
            .map_err(db("copying events"))?;
        let sink = std::sync::Arc::new(tokio::sync::Mutex::new(Box::pin(sink)));
        let s2 = sink.clone();
        archive
            .read_section(OUTBOX_SECTION, move |chunk| {
                let s = s2.clone();
                async move { s.lock().await.send(chunk).await.map_err(db("copying events")) }
            })
            .await?;
        sink.lock()
            .await
            .as_mut()
            .finish()
            .await
            .map_err(db("copying events"))?;
        let cols = OUTBOX_COLUMNS.join(", ");
        let picked = OUTBOX_COLUMNS
            .iter()
            .map(|c| if *c == "next_attempt_at" { "now()" } else { c })
            .collect::<Vec<_>>()
            .join(", ");
        c.batch_execute(&format!(
            "INSERT INTO {}.fraiseql_outbox ({cols}) SELECT {picked} FROM fraiseql_restore_outbox",
            quote_ident(&rec.schema)
        ))
        .await
        .map_err(db("restoring events"))?;
        // Counts, before COMMIT.
        let id = rec.id.to_string();
        let mut wrong = Vec::new();
        for t in &m.tables {
            let here = by_name[t.name.as_str()];
            let n: i64 = c
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE tenant_id = ($1::text)::{}",
                        here.qualified(),
                        here.tenant_type
                    ),
                    &[&id],
                )
                .await
                .map_err(db("counting rows"))?
                .get(0);
            if n.max(0) as u64 != t.rows {
                wrong.push(format!("{}: {n} rows, the archive has {}", t.name, t.rows));
            }
        }
        let unsent = unsent_outbox(c, &rec.schema, Some(&rec.key)).await?;
        if unsent != m.outbox_unsent {
            wrong.push(format!(
                "fraiseql_outbox: {unsent} unsent events, the archive has {}",
                m.outbox_unsent
            ));
        }
        if !wrong.is_empty() {
            return Err(TransferError::Verify(wrong.join("; ")));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => c.batch_execute("COMMIT").await.map_err(db("restore")),
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Removes what a failed restore made on the target; returns what could not be removed.
async fn undo_target(config: &Config, rec: &TenantRecord, made: &Made) -> Vec<String> {
    let mut left = Vec::new();
    let strategy = strategy_of(config);
    let Ok(admin) = connect(&rec.server, None).await else {
        return vec![format!(
            "the target {} could not be reached to clean up",
            server_place(rec)
        )];
    };
    let run = |sql: String, what: String| {
        let admin = &admin;
        async move {
            admin.batch_execute(&sql).await.err().map(|e| {
                format!(
                    "{what}: {}",
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                )
            })
        }
    };
    match strategy {
        TenancyStrategy::DatabasePerTenant => {
            if made.created.database || (made.found && made.loaded) {
                if let Some(e) = run(
                    format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&rec.database)
                    ),
                    format!("database {}", rec.database),
                )
                .await
                {
                    left.push(e);
                }
            }
        }
        TenancyStrategy::SchemaPerTenant => {
            if made.loaded {
                if let Ok(host) = connect(&rec.server, Some(&rec.database)).await {
                    let mut schemas = vec![rec.schema.clone()];
                    schemas.extend(made.foreign_schema.clone());
                    for s in schemas {
                        if let Err(e) = host
                            .batch_execute(&format!(
                                "DROP SCHEMA IF EXISTS {} CASCADE",
                                quote_ident(&s)
                            ))
                            .await
                        {
                            left.push(format!("schema {s}: {e}"));
                        }
                    }
                }
            }
        }
        TenancyStrategy::RowLevel => {}
    }
    let drop_role = |role: &str| {
        format!(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN IF EXISTS (SELECT 1 FROM pg_database WHERE datname = {dblit}) THEN EXECUTE 'REVOKE ALL ON DATABASE ' || {db} || ' FROM ' || {id}; END IF; EXECUTE 'DROP ROLE ' || {id}; END IF; END $$",
            lit = quote_literal(role),
            dblit = quote_literal(&rec.database),
            db = quote_literal(&quote_ident(&rec.database)),
            id = quote_literal(&quote_ident(role)),
        )
    };
    // A role this restore created is nobody else's (row_level's shared role included: it did not
    // exist on the target before); its grants in the host database go with it.
    if made.created.role {
        if let Ok(host) = connect(&rec.server, Some(&rec.database)).await {
            let _ = host
                .batch_execute(&format!("DROP OWNED BY {}", quote_ident(&rec.role)))
                .await;
        }
        if let Some(e) = run(drop_role(&rec.role), format!("role {}", rec.role)).await {
            left.push(e);
        }
    }
    if made.created.login_role {
        if let Some(e) = run(
            drop_role(&rec.login_role),
            format!("role {}", rec.login_role),
        )
        .await
        {
            left.push(e);
        }
    }
    left
}

/// `host:port` of `rec`'s server, for messages.
fn server_place(rec: &TenantRecord) -> String {
    provision::cluster_key(&rec.server).unwrap_or_else(|_| "(unparsable server URL)".into())
}

/// Restores tenant `key` from `archive` onto `server` (default: the config's tenant server).
/// Refused when the tenant is registered or its data is on the target, unless `force`: then
/// its data there is replaced (a copy elsewhere is kept and listed for `drop-copy`).
pub async fn restore(
    config: &Config,
    key: &str,
    archive: &Path,
    server: Option<&str>,
    force: bool,
    progress: Progress<'_>,
) -> Result<RestoreReport, TransferError> {
    if !keys::is_valid(key) {
        return Err(TransferError::InvalidKey(keys::why_invalid(key)));
    }
    let archive = Archive::open(archive).await?;
    let m = archive.manifest.clone();
    if m.tenant.key != key {
        return Err(TransferError::WrongTenant {
            archived: m.tenant.key.clone(),
            asked: key.to_owned(),
        });
    }
    let strategy = strategy_of(config);
    if m.strategy != strategy.as_str() {
        return Err(TransferError::WrongStrategy {
            archived: m.strategy.clone(),
            configured: strategy.as_str().to_owned(),
        });
    }
    archive.verify().await?;
    if strategy != TenancyStrategy::RowLevel {
        tool_version("pg_restore").await?;
    }
    let id =
        Uuid::parse_str(&m.tenant.id).map_err(|_| archive_error(&archive.path, "bad tenant id"))?;
    let server = match server {
        Some(s) => s.to_owned(),
        None => provision::server_url(config)?,
    };
    let registry = provision::registry_client(config).await?;
    try_lock(&registry, key).await?;
    let result = restore_locked(config, &registry, &archive, id, &server, force, progress).await;
    unlock(&registry, key).await;
    result
}

async fn restore_locked(
    config: &Config,
    registry: &Client,
    archive: &Archive,
    id: Uuid,
    server: &str,
    force: bool,
    progress: Progress<'_>,
) -> Result<RestoreReport, TransferError> {
    let m = &archive.manifest;
    let key = m.tenant.key.as_str();
    let strategy = strategy_of(config);
    if let Some(other) = registry
        .query_opt(
            "SELECT key FROM fraiseql_tenant WHERE id = $1 AND key <> $2",
            &[&id, &key],
        )
        .await
        .map_err(db("registry"))?
    {
        return Err(TransferError::IdTaken {
            id: id.to_string(),
            other: other.get(0),
        });
    }
    let existing = registry::get(registry, key).await.map_err(db("registry"))?;
    check_admin(&connect(server, None).await?, "target server").await?;
    let mut rec = provision::plan_record(config, registry, key, &m.tenant.tier, server, id).await?;
    let here = Location::of(&rec)?;
    let same_place = match &existing {
        Some(e) => Location::of(e)? == here,
        None => false,
    };
    if let Some(e) = existing
        .as_ref()
        .filter(|e| same_place && e.role == rec.role)
    {
        // Same home, same role: its password stays, so running servers keep connecting.
        rec.password = e.password.clone();
        if rec.login_role == e.login_role {
            rec.login_password = e.login_password.clone();
        }
    }
    let found = occupied(&rec, strategy, m).await?;
    if !force {
        if let Some(e) = &existing {
            return Err(TransferError::Exists {
                key: key.to_owned(),
                place: format!("registered, served from {}", Location::of(e)?),
            });
        }
        if let Some(what) = &found {
            return Err(TransferError::Exists {
                key: key.to_owned(),
                place: format!("{what} on {}", here.cluster),
            });
        }
    }
    let mut notes = Vec::new();
    if let Some(e) = &existing {
        if e.status == TenantStatus::Active {
            // Running servers stop serving what is about to be replaced.
            registry::set_status(registry, key, TenantStatus::Suspended)
                .await
                .map_err(db("registry"))?;
            progress(&format!(
                "tenant `{key}` suspended; waiting {:.1} s until every server has seen it",
                (RECORD_TTL + TTL_MARGIN).as_secs_f64()
            ));
            tokio::time::sleep(RECORD_TTL + TTL_MARGIN).await;
        }
        if !same_place {
            record_copy(registry, e, &here.to_string()).await?;
            notes.push(format!(
                "the previous copy of `{key}` at {} is kept; remove it with `fraiseql tenant drop-copy {key}`",
                Location::of(e)?
            ));
        }
    }
    let mut made = Made {
        found: found.is_some(),
        ..Made::default()
    };
    if found.is_some() {
        wipe(&rec, strategy).await?;
        progress(&format!("removed the tenant's previous data at {here}"));
        // A copy recorded at this very place is gone now.
        registry
            .execute(
                "DELETE FROM fraiseql_tenant_copy WHERE key = $1 AND server_key = $2 AND database = $3 AND schema_name = $4",
                &[&key, &here.cluster, &here.database, &here.schema],
            )
            .await
            .ok();
    }
    registry::put(registry, &rec)
        .await
        .map_err(db("registry"))?;
    let loaded = load(config, &rec, archive, &mut made, &mut notes, progress).await;
    if let Err(e) = loaded {
        let left = undo_target(config, &rec, &made).await;
        if existing.is_none() {
            let _ = registry
                .execute(
                    "DELETE FROM fraiseql_tenant WHERE key = $1 AND status = 'provisioning'",
                    &[&key],
                )
                .await;
        }
        if !left.is_empty() {
            tracing::warn!(tenant = %key, left = %left.join("; "), "restore: not everything could be removed");
        }
        return Err(e);
    }
    let status = if m.tenant.status == "suspended" {
        TenantStatus::Suspended
    } else {
        TenantStatus::Active
    };
    registry::set_status(registry, key, status)
        .await
        .map_err(db("registry"))?;
    let record = registry::get(registry, key)
        .await
        .map_err(db("registry"))?
        .ok_or_else(|| TransferError::Unknown(key.to_owned()))?;
    Ok(RestoreReport {
        record,
        rows: m.tables.iter().map(|t| t.rows).sum(),
        tables: m.tables.len(),
        outbox_unsent: m.outbox_unsent,
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// Old copies
// ---------------------------------------------------------------------------------------------

const COPY_DDL: &str = "CREATE TABLE IF NOT EXISTS fraiseql_tenant_copy (
    key TEXT NOT NULL,
    id UUID NOT NULL,
    strategy TEXT NOT NULL,
    server TEXT NOT NULL,
    server_key TEXT NOT NULL,
    database TEXT NOT NULL,
    schema_name TEXT NOT NULL,
    role_name TEXT NOT NULL,
    moved_to TEXT NOT NULL,
    moved_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (key, server_key, database, schema_name)
);
REVOKE ALL ON fraiseql_tenant_copy FROM PUBLIC;";

async fn record_copy(
    registry: &Client,
    old: &TenantRecord,
    moved_to: &str,
) -> Result<(), TransferError> {
    registry
        .batch_execute(COPY_DDL)
        .await
        .map_err(db("registry"))?;
    let server_key = provision::cluster_key(&old.server)?;
    registry
        .execute(
            "INSERT INTO fraiseql_tenant_copy (key, id, strategy, server, server_key, database, schema_name, role_name, moved_to)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (key, server_key, database, schema_name) DO UPDATE SET moved_to = EXCLUDED.moved_to, moved_at = now()",
            &[&old.key, &old.id, &old.strategy, &old.server, &server_key, &old.database, &old.schema, &old.role, &moved_to],
        )
        .await
        .map_err(db("registry"))?;
    Ok(())
}

/// An old copy of a tenant, kept by a move until `drop-copy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldCopy {
    /// The tenant.
    pub key: String,
    /// `host:port` it is on.
    pub server: String,
    /// Its database (renamed `…_moved_<time>` for `database_per_tenant`).
    pub database: String,
    /// Its schema (renamed for `schema_per_tenant`).
    pub schema: String,
    /// Where the tenant went.
    pub moved_to: String,
    /// When.
    pub moved_at: String,
}

/// The old copies recorded for `key` (every tenant's when `None`).
pub async fn copies(config: &Config, key: Option<&str>) -> Result<Vec<OldCopy>, TransferError> {
    let registry = provision::registry_client(config).await?;
    registry
        .batch_execute(COPY_DDL)
        .await
        .map_err(db("registry"))?;
    let rows = registry
        .query(
            "SELECT key, server_key, database, schema_name, moved_to, to_char(moved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM fraiseql_tenant_copy WHERE $1::text IS NULL OR key = $1 ORDER BY key, moved_at",
            &[&key],
        )
        .await
        .map_err(db("registry"))?;
    Ok(rows
        .iter()
        .map(|r| OldCopy {
            key: r.get(0),
            server: r.get(1),
            database: r.get(2),
            schema: r.get(3),
            moved_to: r.get(4),
            moved_at: r.get(5),
        })
        .collect())
}

/// Removes every old copy of `key` a move kept (its database, schema or rows, and its role
/// when the tenant no longer lives on that server); returns what was removed.
pub async fn drop_copy(
    config: &Config,
    key: &str,
    progress: Progress<'_>,
) -> Result<Vec<OldCopy>, TransferError> {
    if !keys::is_valid(key) {
        return Err(TransferError::InvalidKey(keys::why_invalid(key)));
    }
    let registry = provision::registry_client(config).await?;
    registry
        .batch_execute(COPY_DDL)
        .await
        .map_err(db("registry"))?;
    try_lock(&registry, key).await?;
    let result = drop_copy_locked(&registry, key, progress).await;
    unlock(&registry, key).await;
    result
}

async fn drop_copy_locked(
    registry: &Client,
    key: &str,
    progress: Progress<'_>,
) -> Result<Vec<OldCopy>, TransferError> {
    let current = registry::get(registry, key).await.map_err(db("registry"))?;
    let here = current.as_ref().map(Location::of).transpose()?;
    let rows = registry
        .query(
            "SELECT id, strategy, server, server_key, database, schema_name, role_name, moved_to, to_char(moved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM fraiseql_tenant_copy WHERE key = $1 ORDER BY moved_at",
            &[&key],
        )
        .await
        .map_err(db("registry"))?;
    if rows.is_empty() {
        return Err(TransferError::NoCopy(key.to_owned()));
    }
    let mut dropped = Vec::new();
    for r in rows {
        let id: Uuid = r.get(0);
        let strategy: String = r.get(1);
        let server: String = r.get(2);
        let copy = OldCopy {
            key: key.to_owned(),
            server: r.get(3),
            database: r.get(4),
            schema: r.get(5),
            moved_to: r.get(7),
            moved_at: r.get(8),
        };
        let role: String = r.get(6);
        let place = Location {
            cluster: copy.server.clone(),
            database: copy.database.clone(),
            schema: copy.schema.clone(),
        };
        if here.as_ref() == Some(&place) {
            return Err(TransferError::Refused(format!(
                "the copy recorded at {place} is where tenant `{key}` is served from now; it is not dropped (remove the record from fraiseql_tenant_copy by hand if it is stale)"
            )));
        }
        // The role is the tenant's own on that server unless it still lives there.
        let role_in_use = current.as_ref().is_some_and(|c| {
            here.as_ref().is_some_and(|h| h.cluster == place.cluster) && c.role == role
        });
        match parse_strategy(&strategy) {
            Some(TenancyStrategy::DatabasePerTenant) => {
                let admin = connect(&server, None).await?;
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&copy.database)
                    ))
                    .await
                    .map_err(db("dropping the old database"))?;
                if !role_in_use {
                    drop_role_quietly(&admin, &role).await;
                }
            }
            Some(TenancyStrategy::SchemaPerTenant) => {
                let host = connect(&server, Some(&copy.database)).await?;
                host.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quote_ident(&copy.schema)
                ))
                .await
                .map_err(db("dropping the old schema"))?;
                if !role_in_use {
                    let _ = host
                        .batch_execute(&format!("DROP OWNED BY {}", quote_ident(&role)))
                        .await;
                    drop_role_quietly(&host, &role).await;
                }
            }
            Some(TenancyStrategy::RowLevel) => {
                let host = connect(&server, Some(&copy.database)).await?;
                delete_rows(&host, &copy.schema, id, key).await?;
            }
            None => {
                return Err(TransferError::Refused(format!(
                    "the copy at {place} has an unknown strategy `{strategy}`"
                )))
            }
        }
        registry
            .execute(
                "DELETE FROM fraiseql_tenant_copy WHERE key = $1 AND server_key = $2 AND database = $3 AND schema_name = $4",
                &[&key, &copy.server, &copy.database, &copy.schema],
            )
            .await
            .map_err(db("registry"))?;
        progress(&format!("dropped the old copy of `{key}` at {place}"));
        dropped.push(copy);
    }
    Ok(dropped)
}

async fn drop_role_quietly(c: &Client, role: &str) {
    if let Err(e) = c
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
        .await
    {
        tracing::warn!(role = %role, error = %e, "the old copy's role was kept");
    }
}

// ---------------------------------------------------------------------------------------------
// Move
// ---------------------------------------------------------------------------------------------

/// What a move did, with the time each step took.
#[derive(Debug, Clone)]
pub struct MoveReport {
    /// The tenant's registry row now.
    pub record: TenantRecord,
    /// Where it was.
    pub from: String,
    /// Where it is.
    pub to: String,
    /// From the suspension to the switch (running servers answered 503 at most this long, plus
    /// their cache's lifetime of a suspended entry).
    pub suspended_for: Duration,
    /// Each step and how long it took.
    pub steps: Vec<(String, Duration)>,
    /// Rows moved.
    pub rows: u64,
    /// Unsent events moved.
    pub outbox_unsent: u64,
    /// The old copy, as kept.
    pub old_copy: String,
    /// What else the operator should know.
    pub notes: Vec<String>,
}

/// How long running servers may still start work on a tenant after its suspension: their
/// registry cache, plus (row_level, whose writes cannot be fenced per tenant) the longest wait
/// for a pooled connection.
pub fn suspension_wait(config: &Config) -> Duration {
    let base = RECORD_TTL + TTL_MARGIN;
    if strategy_of(config) == TenancyStrategy::RowLevel {
        let pool = config
            .databases
            .get(TENANT_DATABASE)
            .map_or(5, |d| d.pool_timeout_secs);
        base + Duration::from_secs(pool)
    } else {
        base
    }
}

/// Moves tenant `key` to the PostgreSQL server (and, for `schema_per_tenant` / `row_level`,
/// the host database) of `server` while the servers run: suspend, wait for running servers
/// and in-flight work, back up, restore on the target, verify row counts, switch the registry
/// row and resume in one statement. A failure before the switch leaves the tenant served from
/// where it was, the target cleaned up. The old copy is kept until [`drop_copy`].
pub async fn move_tenant(
    config: &Config,
    key: &str,
    server: &str,
    progress: Progress<'_>,
) -> Result<MoveReport, TransferError> {
    if !keys::is_valid(key) {
        return Err(TransferError::InvalidKey(keys::why_invalid(key)));
    }
    let registry = provision::registry_client(config).await?;
    registry
        .batch_execute(COPY_DDL)
        .await
        .map_err(db("registry"))?;
    try_lock(&registry, key).await?;
    let result = move_locked(config, &registry, key, server, progress).await;
    unlock(&registry, key).await;
    result
}

async fn move_locked(
    config: &Config,
    registry: &Client,
    key: &str,
    server: &str,
    progress: Progress<'_>,
) -> Result<MoveReport, TransferError> {
    let strategy = strategy_of(config);
    let rec = registry::get(registry, key)
        .await
        .map_err(db("registry"))?
        .ok_or_else(|| TransferError::Unknown(key.to_owned()))?;
    if rec.status == TenantStatus::Provisioning {
        return Err(TransferError::NotReady(key.to_owned()));
    }
    if rec.strategy != strategy.as_str() {
        return Err(TransferError::WrongStrategy {
            archived: rec.strategy.clone(),
            configured: strategy.as_str().to_owned(),
        });
    }
    let from = Location::of(&rec)?;
    // Preflight, before anything changes: tools, both servers, the target's place.
    if strategy != TenancyStrategy::RowLevel {
        tool_version("pg_dump").await?;
        tool_version("pg_restore").await?;
    }
    let source = connect(&rec.server, Some(&rec.database)).await?;
    check_admin(&source, "tenant's current server").await?;
    check_admin(&connect(server, None).await?, "target server").await?;
    let target = provision::plan_record(config, registry, key, &rec.tier, server, rec.id).await?;
    let to = Location::of(&target)?;
    if to == from || (strategy == TenancyStrategy::DatabasePerTenant && to.cluster == from.cluster)
    {
        return Err(TransferError::SameLocation {
            key: key.to_owned(),
            place: from.to_string(),
        });
    }
    let placeholder = Manifest {
        format: String::new(),
        version: FORMAT_VERSION,
        created_at: String::new(),
        strategy: rec.strategy.clone(),
        tenant: ArchivedTenant {
            key: key.to_owned(),
            id: rec.id.to_string(),
            tier: rec.tier.clone(),
            status: String::new(),
            database: rec.database.clone(),
            schema: rec.schema.clone(),
            role: rec.role.clone(),
            login_role: rec.login_role.clone(),
        },
        source: ArchivedSource {
            server: from.cluster.clone(),
            database: rec.database.clone(),
            version: String::new(),
        },
        tables: Vec::new(),
        outbox_unsent: 0,
        sections: Vec::new(),
        tool: None,
    };
    if let Some(what) = occupied(&target, strategy, &placeholder).await? {
        let recorded = registry
            .query_opt(
                "SELECT 1 FROM fraiseql_tenant_copy WHERE key = $1 AND server_key = $2",
                &[&key, &to.cluster],
            )
            .await
            .map_err(db("registry"))?
            .is_some();
        return Err(TransferError::TargetOccupied {
            what,
            hint: if recorded {
                format!("it is the copy an earlier move kept: remove it with `fraiseql tenant drop-copy {key}`, then move again")
            } else {
                "remove it, or move the tenant somewhere else".to_owned()
            },
        });
    }
    drop(source);

    let was = rec.status;
    let mut steps: Vec<(String, Duration)> = Vec::new();
    let started = Instant::now();
    let mut step_at = Instant::now();
    let mut step = |name: &str, steps: &mut Vec<(String, Duration)>| {
        let now = Instant::now();
        steps.push((name.to_owned(), now - step_at));
        progress(&format!("{name} ({:.2} s)", (now - step_at).as_secs_f64()));
        step_at = now;
    };

    // 1. Suspend; every running server sees it within its registry cache's lifetime.
    if was == TenantStatus::Active {
        registry::set_status(registry, key, TenantStatus::Suspended)
            .await
            .map_err(db("registry"))?;
    }
    let wait = suspension_wait(config);
    progress(&format!(
        "tenant `{key}` suspended (new requests get 503 with Retry-After); waiting {:.1} s until every server has seen it",
        wait.as_secs_f64()
    ));
    let suspended_at = Instant::now();
    let mut fenced = false;
    let mut made = Made::default();
    let mut notes = Vec::new();
    let scratch_dir = std::env::temp_dir();
    let mut scratch = Scratch::default();
    let archive_path = scratch_dir.join(format!(
        ".fraiseql-move-{key}-{}.fraiseql-tenant",
        Uuid::new_v4().simple()
    ));
    scratch.0.push(archive_path.clone());

    let outcome: Result<(Manifest, u64), (String, TransferError)> = async {
        tokio::time::sleep(wait).await;
        step("suspended; running servers have seen it", &mut steps);
        // 2. Fence and drain: no write of the tenant's may land at the source from here on.
        fenced = strategy != TenancyStrategy::RowLevel;
        drain(config, &rec, strategy)
            .await
            .map_err(|e| ("waiting for its in-flight work".to_owned(), e))?;
        step("in-flight work finished; writes fenced", &mut steps);
        // 3. Back up.
        let backup = backup_record(&rec, &archive_path, progress)
            .await
            .map_err(|e| ("backing it up".to_owned(), e))?;
        step("backed up", &mut steps);
        // 4. Restore on the target and verify.
        let archive = Archive::open(&archive_path)
            .await
            .map_err(|e| ("reading the backup".to_owned(), e))?;
        load(config, &target, &archive, &mut made, &mut notes, progress)
            .await
            .map_err(|e| ("restoring it on the target".to_owned(), e))?;
        step("restored on the target; row counts verified", &mut steps);
        // 5. row_level: the source must still hold what was copied.
        if strategy == TenancyStrategy::RowLevel {
            let c = connect(&rec.server, Some(&rec.database))
                .await
                .map_err(|e| ("re-counting the source".to_owned(), e))?;
            recount(&c, &rec, &backup.manifest)
                .await
                .map_err(|e| ("re-counting the source".to_owned(), e))?;
        }
        Ok((backup.manifest, backup.bytes))
    }
    .await;

    let (manifest, _bytes) = match outcome {
        Ok(v) => v,
        Err((failed_at, e)) => {
            let cleanup = rollback_move(config, registry, &rec, &target, &made, fenced, was).await;
            return Err(TransferError::MoveFailed {
                key: key.to_owned(),
                step: failed_at,
                from: from.to_string(),
                source: Box::new(e),
                cleanup: if cleanup.is_empty() {
                    "; the target was cleaned up".to_owned()
                } else {
                    format!("; left on the target: {}", cleanup.join("; "))
                },
            });
        }
    };

    // 6. Switch and resume, in one statement; only if nobody changed the row meanwhile.
    let switched = switch(registry, &rec, &target, was, &to.to_string()).await;
    match switched {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let cleanup = rollback_move(config, registry, &rec, &target, &made, fenced, was).await;
            let e = match switched {
                Err(e) => e,
                _ => TransferError::Refused(
                    "the registry row changed during the move (someone resumed, moved or re-created the tenant)".to_owned(),
                ),
            };
            return Err(TransferError::MoveFailed {
                key: key.to_owned(),
                step: "switching the registry".to_owned(),
                from: from.to_string(),
                source: Box::new(e),
                cleanup: if cleanup.is_empty() {
                    "; the target was cleaned up".to_owned()
                } else {
                    format!("; left on the target: {}", cleanup.join("; "))
                },
            });
        }
    }
    let suspended_for = suspended_at.elapsed();
    step(
        &format!(
            "switched to {to} and {}",
            if was == TenantStatus::Active {
                "resumed"
            } else {
                "left suspended, as it was"
            }
        ),
        &mut steps,
    );

    // 7. Mark the old copy (best effort: the tenant is served from the target already).
    let old_copy = match mark_old_copy(registry, &rec, strategy).await {
        Ok(place) => place,
        Err(e) => {
            notes.push(format!(
                "the old copy could not be renamed/marked ({e}); it is kept as {from}"
            ));
            from.to_string()
        }
    };
    step("old copy kept", &mut steps);
    notes.push(format!(
        "the old copy is kept at {old_copy}; remove it with `fraiseql tenant drop-copy {key}`"
    ));
    drop(scratch);
    let record = registry::get(registry, key)
        .await
        .map_err(db("registry"))?
        .ok_or_else(|| TransferError::Unknown(key.to_owned()))?;
    progress(&format!(
        "moved tenant `{key}` from {from} to {to} in {:.2} s (suspended for {:.2} s)",
        started.elapsed().as_secs_f64(),
        suspended_for.as_secs_f64()
    ));
    Ok(MoveReport {
        record,
        from: from.to_string(),
        to: to.to_string(),
        suspended_for,
        steps,
        rows: manifest.tables.iter().map(|t| t.rows).sum(),
        outbox_unsent: manifest.outbox_unsent,
        old_copy,
        notes,
    })
}

/// Stops the tenant's writes at the source and waits for those in flight.
///
/// `database_per_tenant` / `schema_per_tenant`: the tenant's role loses INSERT, UPDATE, DELETE
/// and TRUNCATE on its tables (a late request fails instead of writing where nobody will read),
/// then a SHARE lock on every table waits for the transactions that wrote before. `row_level`
/// (one role for every tenant): every transaction of the shared login role that began before
/// now must end.
async fn drain(
    config: &Config,
    rec: &TenantRecord,
    strategy: TenancyStrategy,
) -> Result<(), TransferError> {
    let c = connect(&rec.server, Some(&rec.database)).await?;
    let timeout_ms = config.limits.request_timeout_ms.saturating_add(5_000);
    match strategy {
        TenancyStrategy::RowLevel => {
            let deadline = Instant::now() + Duration::from_millis(timeout_ms);
            let since: String = c
                .query_one("SELECT clock_timestamp()::text", &[])
                .await
                .map_err(db("drain"))?
                .get(0);
            loop {
                let running: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1 AND xact_start < $2::text::timestamptz AND pid <> pg_backend_pid()",
                        &[&rec.login_role, &since],
                    )
                    .await
                    .map_err(db("drain"))?
                    .get(0);
                if running == 0 {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(TransferError::Refused(format!(
                        "{running} transaction(s) of the tenants' shared role were still running after {} s; try again when they are done",
                        timeout_ms / 1000
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        _ => {
            let s = quote_ident(&rec.schema);
            let r = quote_ident(&rec.role);
            c.batch_execute(&format!(
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {s} FROM {r}"
            ))
            .await
            .map_err(db("fencing writes"))?;
            let tables: Vec<String> = c
                .query(
                    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
                    &[&rec.schema],
                )
                .await
                .map_err(db("fencing writes"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if tables.is_empty() {
                return Ok(());
            }
            c.batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = {timeout_ms}; LOCK TABLE {} IN SHARE MODE; COMMIT",
                tables.join(", ")
            ))
            .await
            .map_err(db("waiting for in-flight writes"))
        }
    }
}

/// The tenant's row counts at the source still equal the archive's (row_level: a write that
/// slipped past the drain would be lost).
async fn recount(c: &Client, rec: &TenantRecord, m: &Manifest) -> Result<(), TransferError> {
    let id = rec.id.to_string();
    let mut wrong = Vec::new();
    for t in &m.tables {
        let n: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{} WHERE tenant_id = ($1::text)::{}",
                    quote_ident(&t.schema),
                    quote_ident(&t.name),
                    t.tenant_type.as_deref().unwrap_or("uuid")
                ),
                &[&id],
            )
            .await
            .map_err(db("re-counting"))?
            .get(0);
        if n.max(0) as u64 != t.rows {
            wrong.push(format!("{}: {n} rows now, {} copied", t.name, t.rows));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(TransferError::Verify(format!(
            "the tenant's data changed at the source during the move ({})",
            wrong.join("; ")
        )))
    }
}

/// Points the registry row at the target and restores its status, only if it is still the
/// suspended row at the source; records the old copy in the same transaction.
async fn switch(
    registry: &Client,
    rec: &TenantRecord,
    target: &TenantRecord,
    status: TenantStatus,
    moved_to: &str,
) -> Result<bool, TransferError> {
    registry
        .batch_execute("BEGIN")
        .await
        .map_err(db("registry"))?;
    let result = async {
        let n = registry
            .execute(
                "UPDATE fraiseql_tenant SET server = $2, database = $3, schema_name = $4, role_name = $5, role_password = $6, login_role = $7, login_password = $8, status = $9, updated_at = now()
                 WHERE key = $1 AND status = 'suspended' AND server = $10 AND database = $11 AND schema_name = $12",
                &[&rec.key, &target.server, &target.database, &target.schema, &target.role, &target.password, &target.login_role, &target.login_password, &status.as_str(), &rec.server, &rec.database, &rec.schema],
            )
            .await
            .map_err(db("registry"))?;
        if n != 1 {
            return Ok(false);
        }
        record_copy(registry, rec, moved_to).await?;
        Ok(true)
    }
    .await;
    match result {
        Ok(true) => registry
            .batch_execute("COMMIT")
            .await
            .map(|()| true)
            .map_err(db("registry")),
        other => {
            let _ = registry.batch_execute("ROLLBACK").await;
            other
        }
    }
}

/// Undoes a move that did not switch: the target's copy removed, the source's writes granted
/// again, the tenant's status as it was. Returns what could not be undone.
async fn rollback_move(
    config: &Config,
    registry: &Client,
    rec: &TenantRecord,
    target: &TenantRecord,
    made: &Made,
    fenced: bool,
    was: TenantStatus,
) -> Vec<String> {
    let mut left = Vec::new();
    if made.loaded || made.created != Created::default() {
        left.extend(undo_target(config, target, made).await);
    }
    if fenced {
        let regrant = async {
            let c = connect(&rec.server, Some(&rec.database)).await?;
            c.batch_execute(&provision::dml_grants(&rec.schema, &rec.role))
                .await
                .map_err(db("granting writes again"))
        }
        .await;
        if let Err(e) = regrant {
            left.push(format!(
                "writes at the source could not be granted again ({e}): run `fraiseql migrate --tenant {}`",
                rec.key
            ));
        }
    }
    if was == TenantStatus::Active {
        if let Err(e) = registry::set_status(registry, &rec.key, TenantStatus::Active).await {
            left.push(format!(
                "the tenant could not be resumed ({e}): run `fraiseql tenant resume {}`",
                rec.key
            ));
        }
    }
    left
}

/// Renames the old database or schema `…_moved_<time>` (closing what is still connected to
/// it), or marks the old unsent events of a `row_level` tenant as handed over, so nothing
/// serves or publishes from the old copy. Returns where the copy is.
async fn mark_old_copy(
    registry: &Client,
    rec: &TenantRecord,
    strategy: TenancyStrategy,
) -> Result<String, TransferError> {
    let ts = unix_now();
    let cluster = provision::cluster_key(&rec.server)?;
    match strategy {
        TenancyStrategy::DatabasePerTenant => {
            let new = copy_name(&rec.database, ts);
            let admin = connect(&rec.server, None).await?;
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} ALLOW_CONNECTIONS false",
                    quote_ident(&rec.database)
                ))
                .await
                .map_err(db("closing the old database"))?;
            let mut tries = 0;
            loop {
                admin
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&rec.database],
                    )
                    .await
                    .map_err(db("closing the old database"))?;
                match admin
                    .batch_execute(&format!(
                        "ALTER DATABASE {} RENAME TO {}",
                        quote_ident(&rec.database),
                        quote_ident(&new)
                    ))
                    .await
                {
                    Ok(()) => break,
                    Err(e) if tries < 20 => {
                        tracing::debug!(error = %e, "old database still in use; retrying the rename");
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(db("renaming the old database")(e)),
                }
            }
            registry
                .execute(
                    "UPDATE fraiseql_tenant_copy SET database = $4 WHERE key = $1 AND server_key = $2 AND database = $3",
                    &[&rec.key, &cluster, &rec.database, &new],
                )
                .await
                .map_err(db("registry"))?;
            Ok(format!("{cluster}/{new}"))
        }
        TenancyStrategy::SchemaPerTenant => {
            let new = copy_name(&rec.schema, ts);
            let host = connect(&rec.server, Some(&rec.database)).await?;
            host.batch_execute(&format!(
                "ALTER SCHEMA {} RENAME TO {}",
                quote_ident(&rec.schema),
                quote_ident(&new)
            ))
            .await
            .map_err(db("renaming the old schema"))?;
            registry
                .execute(
                    "UPDATE fraiseql_tenant_copy SET schema_name = $5 WHERE key = $1 AND server_key = $2 AND database = $3 AND schema_name = $4",
                    &[&rec.key, &cluster, &rec.database, &rec.schema, &new],
                )
                .await
                .map_err(db("registry"))?;
            Ok(format!("{cluster}/{} schema {new}", rec.database))
        }
        TenancyStrategy::RowLevel => {
            let host = connect(&rec.server, Some(&rec.database)).await?;
            host.execute(
                &format!(
                    "UPDATE {}.fraiseql_outbox SET sent_at = now(), last_error = 'moved to another server; published from there' WHERE tenant_key = $1 AND sent_at IS NULL",
                    quote_ident(&rec.schema)
                ),
                &[&rec.key],
            )
            .await
            .map_err(db("marking the old events"))?;
            Ok(format!(
                "{cluster}/{} (its rows, tenant id {})",
                rec.database, rec.id
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn edge(p: &str, c: &str) -> (String, String) {
        (p.to_owned(), c.to_owned())
    }

    #[test]
    fn a_tool_failure_names_its_error_lines_not_the_statement_after_them() {
        let stderr = "pg_restore: while PROCESSING TOC:\npg_restore: error: could not execute query: ERROR:  this server refuses tb_task\nCONTEXT:  PL/pgSQL function refuse_tasks()\nCommand was: CREATE TABLE public.tb_task (\n    pk_task integer NOT NULL\n);\n";
        assert_eq!(
            tool_failure(stderr),
            "pg_restore: error: could not execute query: ERROR:  this server refuses tb_task"
        );
        assert_eq!(tool_failure("a\nb\n"), "a / b");
    }

    #[test]
    fn parents_come_first_and_ties_go_by_name() {
        let t = names(&[
            "tb_task",
            "tb_project",
            "tb_member",
            "tb_organization",
            "tb_tenant_config",
        ]);
        let e = vec![
            edge("tb_organization", "tb_member"),
            edge("tb_organization", "tb_project"),
            edge("tb_project", "tb_task"),
            edge("tb_task", "tb_task"),
            edge("elsewhere", "tb_task"),
        ];
        assert_eq!(
            dependency_order(&t, &e).expect("order"),
            names(&[
                "tb_organization",
                "tb_tenant_config",
                "tb_member",
                "tb_project",
                "tb_task"
            ])
        );
        assert_eq!(
            dependency_order(&[], &[]).expect("empty"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let t = names(&["a", "b", "c"]);
        let e = vec![edge("a", "b"), edge("b", "a"), edge("a", "c")];
        let err = dependency_order(&t, &e).expect_err("cycle");
        assert!(err.contains("between a, b form a cycle"), "{err}");
    }

    #[test]
    fn copy_names_fit_in_an_identifier() {
        assert_eq!(
            copy_name("tenant_acme", 1_700_000_000),
            "tenant_acme_moved_1700000000"
        );
        let long = "t".repeat(63);
        let n = copy_name(&long, 1_700_000_000);
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_moved_1700000000"));
        assert!(copy_name(&"é".repeat(40), 1).len() <= 63);
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert!(default_archive_name("acme").starts_with("acme-20"));
    }

    #[test]
    fn libpq_environment_carries_no_password_on_the_command_line() {
        let env = libpq_env(
            "postgres://admin:s3cr%3At@db.example:6543/postgres?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "tenant_acme",
        )
        .expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PGHOST"), Some("db.example"));
        assert_eq!(get("PGPORT"), Some("6543"));
        assert_eq!(get("PGUSER"), Some("admin"));
        assert_eq!(get("PGPASSWORD"), Some("s3cr:t"));
        assert_eq!(get("PGDATABASE"), Some("tenant_acme"));
        assert_eq!(get("PGSSLMODE"), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT"), Some("/nonexistent/ca.pem"));
        let plain =
            libpq_env("postgres://postgres@127.0.0.1:5432/x?sslmode=disable", "y").expect("env");
        assert!(plain.iter().all(|(k, _)| k != "PGPASSWORD"));
        assert!(libpq_env("not a url at all ::", "y").is_err());
    }

    #[test]
    fn patterns_and_conninfo_are_literal() {
        assert_eq!(exact_pattern("t_acme"), "\"t_acme\"");
        assert_eq!(exact_pattern("we\"ird*"), "\"we\"\"ird*\"");
        assert_eq!(conninfo_value("a'b\\c"), "'a\\'b\\\\c'");
    }

    #[test]
    fn copy_text_rows_are_lines() {
        assert_eq!(copy_rows(b"1\ta\\nb\n2\tc\n"), 2);
        assert_eq!(copy_rows(b""), 0);
    }

    fn manifest(strategy: &str) -> Manifest {
        let tables = if strategy == "row_level" {
            vec![ArchivedTable {
                schema: "public".into(),
                name: "tb_organization".into(),
                rows: 2,
                columns: names(&["pk_org", "tenant_id", "name"]),
                tenant_type: Some("uuid".into()),
            }]
        } else {
            vec![ArchivedTable {
                schema: "public".into(),
                name: "tb_organization".into(),
                rows: 2,
                columns: vec![],
                tenant_type: None,
            }]
        };
        let sections = if strategy == "row_level" {
            vec![
                Section {
                    name: rows_section("public", "tb_organization"),
                    bytes: 10,
                    sha256: "aa".into(),
                },
                Section {
                    name: OUTBOX_SECTION.into(),
                    bytes: 0,
                    sha256: "bb".into(),
                },
            ]
        } else {
            vec![Section {
                name: DUMP_SECTION.into(),
                bytes: 5,
                sha256: "cc".into(),
            }]
        };
        Manifest {
            format: "fraiseql-tenant-archive".into(),
            version: FORMAT_VERSION,
            created_at: "2026-01-01T00:00:00Z".into(),
            strategy: strategy.into(),
            tenant: ArchivedTenant {
                key: "acme".into(),
                id: "5f0c3a52-8b1e-4c4e-9d1a-0b8e6f2a9c11".into(),
                tier: "pro".into(),
                status: "active".into(),
                database: "tenant_acme".into(),
                schema: "public".into(),
                role: "tenant_acme".into(),
                login_role: "tenant_acme".into(),
            },
            source: ArchivedSource {
                server: "127.0.0.1:5432".into(),
                database: "tenant_acme".into(),
                version: "15.2".into(),
            },
            tables,
            outbox_unsent: 0,
            sections,
            tool: None,
        }
    }

    #[tokio::test]
    async fn the_header_round_trips_and_locates_sections() {
        for strategy in ["row_level", "database_per_tenant"] {
            let m = manifest(strategy);
            let mut bytes = encode_header(&m).expect("encode");
            let header_len = bytes.len() as u64;
            bytes.extend_from_slice(b"payload bytes");
            let mut r = tokio::io::BufReader::new(std::io::Cursor::new(bytes));
            let (back, at) = decode_header(&mut r).await.expect("decode");
            assert_eq!(back, m);
            assert_eq!(at, header_len);
        }
        let m = manifest("row_level");
        assert_eq!(m.section(OUTBOX_SECTION), Some((10, 0)));
        assert_eq!(
            m.section(&rows_section("public", "tb_organization")),
            Some((0, 10))
        );
        assert_eq!(m.section("nope"), None);
        let text = String::from_utf8(encode_header(&m).expect("encode")).expect("utf8");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("password"), "no password field");
    }

    #[tokio::test]
    async fn bad_archives_are_named() {
        async fn read(b: Vec<u8>) -> String {
            let mut r = tokio::io::BufReader::new(std::io::Cursor::new(b));
            decode_header(&mut r).await.expect_err("refused")
        }
        assert!(read(b"PGDMP\x01\x0e".to_vec())
            .await
            .contains("not a fraiseql tenant archive"));
        assert!(read(format!("{MAGIC} 9\n{{}}\n").into_bytes())
            .await
            .contains("version 9"));
        let mut truncated = format!("{MAGIC} 1\n").into_bytes();
        truncated.extend_from_slice(br#"{"format":"fraiseql-tenant-archive""#);
        assert!(read(truncated).await.contains("truncated"));

        let mut m = manifest("row_level");
        m.sections.pop();
        assert_eq!(m.validate(), Err("no outbox section".into()));
        let mut m = manifest("row_level");
        m.tenant.key = "Bad Key".into();
        assert!(m.validate().expect_err("key").contains("tenant key"));
        let mut m = manifest("schema_per_tenant");
        m.sections[0].name = "other".into();
        assert_eq!(m.validate(), Err("no dump section".into()));
        let mut m = manifest("database_per_tenant");
        m.version = FORMAT_VERSION + 1;
        assert!(m
            .validate()
            .expect_err("version")
            .contains("newer fraiseql"));
        let mut m = manifest("database_per_tenant");
        m.tenant.id = "x".into();
        assert!(m.validate().is_err());
    }
}
