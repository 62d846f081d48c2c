//! One tenant's data out of a server and into another: `fraiseql tenant backup`, `restore`,
//! `move` and `drop-copy`, a file per command.
//!
//! An archive (`archive/`) is one file: a header, a manifest and checksummed data sections:
//! a `pg_dump` of the tenant's database or schema (`dump.rs`), or for tenants that share tables
//! its rows as `COPY` text and its unsent outbox rows (`rows/`). What differs per strategy is
//! the strategy's (`strategy/`).
//!
//! Restoring provisions the tenant on the target through the provisioning code (new roles and
//! passwords), loads the data, checks every table's row count against the manifest, applies
//! pending migrations and grants. A `move` suspends the tenant, waits until every server sees
//! it, fences and drains its writes, backs it up, restores it on the target, verifies the
//! counts, then switches the registry row and resumes it in one statement. Until that statement
//! any failure removes what was made on the target and serves the tenant from where it was; the
//! old copy is kept (renamed, listed in `fraiseql_tenant_copy`) until `drop-copy`.

mod backup;
mod copies;
mod journal;
mod r#move;
mod restore;

pub use crate::archive::{
    decode_header, encode_header, rows_section, ArchiveKey, ArchivedSource, ArchivedTable,
    ArchivedTenant, Header, Manifest, Seal, Section, Trust, FORMAT_VERSION, MAGIC, OUTBOX_COLUMNS,
};
pub use crate::catalog::dependency_order;
pub use crate::error::TransferError;
pub use crate::interrupt::Interrupt;
pub use crate::names::{copy_name, default_archive_name, utc_stamp};
pub use crate::tools::{exact_pattern, libpq_env};
pub use backup::{backup, BackupOptions, BackupReport};
pub use copies::{copies, drop_copy, OldCopy};
pub use r#move::{move_tenant, suspension_wait, MoveOptions, MoveReport};
pub use restore::{restore, RestoreOptions, RestoreReport};

/// Reports the steps of a long operation as they happen (the CLI prints them).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);
