//! `fraiseql tenant backup`: the tenant's data, row counts and unsent events from one snapshot,
//! while it is served, in an archive signed with `[transfer] archive_key`.

use std::path::{Path, PathBuf};

use fraiseql_config::Config;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};

use super::Progress;
use crate::archive::write::{assemble, Contents};
use crate::archive::{
    ArchiveKey, ArchivedSource, ArchivedTenant, Manifest, COPY_SETTINGS, FORMAT_VERSION,
};
use crate::error::{db, TransferError};
use crate::interrupt::Interrupt;
use crate::scratch::Scratch;
use crate::server::{check_admin, cluster_key, connect_to, registry_client};
use crate::strategy;

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
        self.manifest.rows()
    }
}

/// How a backup runs.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Without `[transfer] archive_key`, write an unsigned archive (which restores only with
    /// `--insecure-unsigned`) instead of refusing.
    pub insecure_unsigned: bool,
    /// Stops the backup (its scratch removed) when fired.
    pub interrupt: Interrupt,
}

/// Backs tenant `key` up into the archive `out` (refused if it exists), without stopping it:
/// the data, counts and outbox come from one snapshot. The archive is signed with
/// `[transfer] archive_key`; without one the backup is refused unless
/// [`BackupOptions::insecure_unsigned`].
pub async fn backup(
    config: &Config,
    key: &str,
    out: &Path,
    options: &BackupOptions,
    progress: Progress<'_>,
) -> Result<BackupReport, TransferError> {
    if !keys::is_valid(key) {
        return Err(TransferError::InvalidKey(keys::why_invalid(key)));
    }
    let signer = ArchiveKey::from_config(config);
    if signer.is_none() && !options.insecure_unsigned {
        return Err(TransferError::NoArchiveKey);
    }
    if tokio::fs::try_exists(out).await.unwrap_or(false) {
        return Err(TransferError::Refused(format!(
            "{} exists: choose another --out, or remove it first",
            out.display()
        )));
    }
    let registry = registry_client(config).await?;
    let rec = registry::get(&registry, key)
        .await
        .map_err(db("registry"))?
        .ok_or_else(|| TransferError::Unknown(key.to_owned()))?;
    if rec.status == TenantStatus::Provisioning {
        return Err(TransferError::NotReady(key.to_owned()));
    }
    options
        .interrupt
        .guard(backup_record(&rec, out, signer.as_ref(), progress))
        .await
}

/// Backs `rec` up into `out` (a move's archive, or [`backup`]'s), signed with `key` if given.
pub(crate) async fn backup_record(
    rec: &TenantRecord,
    out: &Path,
    key: Option<&ArchiveKey>,
    progress: Progress<'_>,
) -> Result<BackupReport, TransferError> {
    let strategy = strategy::named(&rec.strategy).ok_or_else(|| {
        TransferError::Refused(format!(
            "tenant `{}` has an unknown strategy `{}` in the registry",
            rec.key, rec.strategy
        ))
    })?;
    // Beside `out`: the finished archive is renamed into place, on the same file system.
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scratch = Scratch::new_in(dir)?;
    let c = connect_to(&rec.server, Some(&rec.database)).await?;
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
    let contents = strategy.backup(&c, rec, &scratch).await?;
    c.batch_execute("COMMIT").await.map_err(db("snapshot"))?;
    let source = ArchivedSource {
        server: cluster_key(&rec.server)?,
        database: rec.database.clone(),
        version,
    };
    let (manifest, sections) = manifest(rec, created_at, source, contents);
    let bytes = assemble(out, &manifest, &sections, key, &scratch).await?;
    progress(&format!(
        "backed up tenant `{}`: {} rows in {} tables, {} unsent events, {} bytes -> {}{}",
        rec.key,
        manifest.rows(),
        manifest.tables.len(),
        manifest.outbox_unsent,
        bytes,
        out.display(),
        if key.is_some() {
            ""
        } else {
            " (unsigned: it restores only with --insecure-unsigned)"
        }
    ));
    Ok(BackupReport {
        path: out.to_owned(),
        bytes,
        manifest,
    })
}

/// The manifest of `rec`'s backup, and the section files it lists.
fn manifest(
    rec: &TenantRecord,
    created_at: String,
    source: ArchivedSource,
    contents: Contents,
) -> (Manifest, Vec<crate::archive::write::SectionFile>) {
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
        source,
        tables: contents.tables,
        outbox_unsent: contents.outbox_unsent,
        sections: contents
            .sections
            .iter()
            .map(|s| s.section.clone())
            .collect(),
        tool: contents.tool,
    };
    (manifest, contents.sections)
}
