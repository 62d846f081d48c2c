//! The archive format (pure): one file, a header line, a JSON manifest line ([`Manifest`]:
//! format version, strategy, the tenant's registry row without any password, the source server
//! as `host:port`, row counts per table, the unsent outbox rows' count), a seal line (the
//! HMAC-SHA256 of the first two lines with `[transfer] archive_key`, `key.rs`, or `unsigned`)
//! and the data sections the manifest lists, each with its length and SHA-256:
//!
//! - a `dump` section (tenants with tables of their own: `database_per_tenant`,
//!   `schema_per_tenant`): `pg_dump --format=custom --no-owner --no-privileges` of the tenant's
//!   database or schema;
//! - tenants sharing tables (`row_level`): a `rows:<schema>.<table>` section per table, the
//!   `COPY` text of the tenant's rows, and an `outbox` section with its unsent events.
//!
//! Version 1 archives (no seal line) are read as unsigned. `read.rs` opens an archive, checks
//! its seal and its sections; `write.rs` writes the sections and puts the file together.

pub(crate) mod key;
pub(crate) mod read;
pub(crate) mod write;

pub use key::ArchiveKey;

use std::collections::BTreeSet;

use fraiseql_engine::tenancy::{keys, strategy};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use crate::error::TransferError;

/// The first line of every archive.
pub const MAGIC: &str = "FRAISEQL-TENANT-ARCHIVE";
/// The archive format this build writes (it reads 1 and 2; 1 has no seal line).
pub const FORMAT_VERSION: u32 = 2;
/// The seal line's first word when the archive is signed.
const SEAL_HMAC: &str = "hmac-sha256";
/// The seal line of an unsigned archive.
const SEAL_UNSIGNED: &str = "unsigned";
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
    /// `row_level`: `<rows>:<sum>` of the tenant's rows (see `rows::checksum_sql`), from the
    /// backup's snapshot; a move checks the source against it, a restore the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
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
    /// The verdict of a check of what a server holds against this manifest: `wrong` (each
    /// difference found in tables and rows) plus the outbox's `unsent` events if they differ.
    pub(crate) fn verdict(&self, mut wrong: Vec<String>, unsent: u64) -> Result<(), TransferError> {
        if unsent != self.outbox_unsent {
            wrong.push(format!(
                "fraiseql_outbox: {unsent} unsent events, the archive has {}",
                self.outbox_unsent
            ));
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(TransferError::Verify(wrong.join("; ")))
        }
    }

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

/// How an archive is sealed: its seal line, and the bytes the MAC covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seal {
    /// Signed with the key of id `key_id`: `mac` is the HMAC-SHA256 of `signed`.
    Signed {
        /// The signing key's id ([`ArchiveKey::id`]).
        key_id: String,
        /// The MAC, hex.
        mac: String,
        /// The header and manifest lines, as read.
        signed: Vec<u8>,
    },
    /// Written with `--insecure-unsigned`.
    Unsigned,
    /// A version 1 archive, from before archives were signed.
    Legacy,
}

/// What a seal says with the key at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Signed with this key, unaltered.
    Verified,
    /// Not signed, or not verifiable here; why, in words an operator can act on.
    Unverified(String),
}

impl Seal {
    /// Checks the seal with `key` (the config's), in constant time.
    pub fn check(&self, key: Option<&ArchiveKey>) -> Trust {
        match (self, key) {
            (Self::Signed { mac, signed, .. }, Some(k)) if k.verify(signed, mac) => Trust::Verified,
            (Self::Signed { key_id, .. }, Some(k)) if key_id != k.id() => Trust::Unverified(format!(
                "its signature does not verify: it was made with another key (key id {key_id}; this config's key is {}), or altered",
                k.id()
            )),
            (Self::Signed { .. }, Some(_)) => Trust::Unverified(
                "its signature does not verify with this config's key: it was altered after it was signed (or made with another key)".to_owned(),
            ),
            (Self::Signed { key_id, .. }, None) => Trust::Unverified(format!(
                "it is signed (key id {key_id}) but this config has no [transfer] archive_key to check it with"
            )),
            (Self::Unsigned, _) => Trust::Unverified(
                "it is not signed (it was written with --insecure-unsigned): whoever could write it could have changed it".to_owned(),
            ),
            (Self::Legacy, _) => Trust::Unverified(
                "it is a version 1 archive, from before archives were signed: whoever could write it could have changed it".to_owned(),
            ),
        }
    }
}

/// The header, manifest and seal lines of an archive, signed with `key` if given.
pub fn encode_header(m: &Manifest, key: Option<&ArchiveKey>) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = format!("{MAGIC} {FORMAT_VERSION}\n").into_bytes();
    // Compact JSON escapes every control character: the manifest is one line.
    out.extend_from_slice(serde_json::to_string(m)?.as_bytes());
    out.push(b'\n');
    let seal = match key {
        Some(k) => format!("{SEAL_HMAC} {} {}\n", k.id(), k.sign(&out)),
        None => format!("{SEAL_UNSIGNED}\n"),
    };
    out.extend_from_slice(seal.as_bytes());
    Ok(out)
}

/// What [`decode_header`] read.
#[derive(Debug, Clone)]
pub struct Header {
    /// The manifest.
    pub manifest: Manifest,
    /// The data's offset from the start of the file.
    pub data_at: u64,
    /// The seal (not checked yet: see [`Seal::check`]).
    pub seal: Seal,
}

/// Reads one line of at most `max` bytes from `r`, with its newline.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    max: u64,
) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncBufReadExt;
    let mut line = Vec::new();
    (&mut *r)
        .take(max)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    Ok(line)
}

/// Reads the header, manifest and seal lines from `r`.
pub async fn decode_header<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Header, String> {
    let first = read_line(r, 64).await?;
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
    let second = read_line(r, MAX_MANIFEST).await?;
    if second.last() != Some(&b'\n') {
        return Err("the manifest line is truncated (or longer than 16 MiB)".to_owned());
    }
    let manifest: Manifest =
        serde_json::from_slice(&second).map_err(|e| format!("unreadable manifest: {e}"))?;
    if manifest.version != version {
        return Err(format!(
            "the header says version {version}, the manifest {}",
            manifest.version
        ));
    }
    manifest.validate()?;
    let mut data_at = (first.len() + second.len()) as u64;
    let seal = if version == 1 {
        Seal::Legacy
    } else {
        let third = read_line(r, 256).await?;
        data_at += third.len() as u64;
        let mut signed = first;
        signed.extend_from_slice(&second);
        parse_seal(&third, signed)?
    };
    Ok(Header {
        manifest,
        data_at,
        seal,
    })
}

/// The seal line: `hmac-sha256 <key id> <mac>` or `unsigned`.
fn parse_seal(line: &[u8], signed: Vec<u8>) -> Result<Seal, String> {
    let bad = || "the seal line (third line) is missing or malformed".to_owned();
    let line = std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.strip_suffix('\n'))
        .ok_or_else(bad)?;
    let words: Vec<&str> = line.split(' ').collect();
    match words.as_slice() {
        [SEAL_UNSIGNED] => Ok(Seal::Unsigned),
        [SEAL_HMAC, key_id, mac]
            if !key_id.is_empty()
                && mac.len() == 64
                && mac.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Seal::Signed {
                key_id: (*key_id).to_owned(),
                mac: (*mac).to_owned(),
                signed,
            })
        }
        _ => Err(bad()),
    }
}

/// SHA-256 as lowercase hex.
pub(crate) fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
