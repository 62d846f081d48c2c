//! The archive format (pure): one file, a header line, a JSON manifest line ([`Manifest`]:
//! format version, strategy, the tenant's registry row without any password, the source server
//! as `host:port`, row counts per table, the unsent outbox rows' count) and the data sections it
//! lists, each with its length and SHA-256:
//!
//! - a `dump` section (tenants with tables of their own: `database_per_tenant`,
//!   `schema_per_tenant`): `pg_dump --format=custom --no-owner --no-privileges` of the tenant's
//!   database or schema;
//! - tenants sharing tables (`row_level`): a `rows:<schema>.<table>` section per table, the
//!   `COPY` text of the tenant's rows, and an `outbox` section with its unsent events.
//!
//! `read.rs` opens an archive and checks its sections; `write.rs` writes the sections and puts
//! the file together.

pub(crate) mod read;
pub(crate) mod write;

use std::collections::BTreeSet;

use fraiseql_engine::tenancy::{keys, strategy};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

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
pub(crate) const DUMP_SECTION: &str = "dump";
/// Section holding the unsent outbox rows (`row_level`).
pub(crate) const OUTBOX_SECTION: &str = "outbox";
/// Session settings both ends of a COPY use, so text renders and parses the same way.
pub(crate) const COPY_SETTINGS: &str = "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; SET bytea_output = hex; SET TimeZone = 'UTC';";

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
        let Some(strategy) = strategy::named(&self.strategy) else {
            return Err(format!("unknown strategy `{}`", self.strategy));
        };
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
        if strategy.shares_tables() {
            self.validate_rows(&names)
        } else if !names.contains(DUMP_SECTION) {
            Err("no dump section".to_owned())
        } else {
            Ok(())
        }
    }

    /// The sections of a tenant that shares tables: one per table (with its columns), and the
    /// outbox.
    fn validate_rows(&self, names: &BTreeSet<&str>) -> Result<(), String> {
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

    /// Rows in all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
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
pub(crate) fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
