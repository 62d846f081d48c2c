//! `fraiseql tenant restore`: checks the archive's seal, provisions the tenant on the target (new
//! roles and passwords), loads the archive, checks every table's count, migrates and grants; a
//! failure (or SIGINT / SIGTERM) removes what it made. Also the loading and undoing a move does
//! on its target.

use std::path::Path;

use fraiseql_config::Config;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};
use fraiseql_schema::{quote_ident, quote_literal};
use tokio_postgres::Client;
use uuid::Uuid;

use super::copies::record_copy;
use super::journal::refuse_unfinished;
use super::Progress;
use crate::archive::read::Archive;
use crate::archive::ArchiveKey;
use crate::error::{archive_error, db, TransferError};
use crate::home::{existing_roles, Made};
use crate::interrupt::Interrupt;
use crate::provision::plan_record;
use crate::server::{
    check_admin, connect_to, registry_client, registry_seen, server_place_of, server_url, try_lock,
    unlock, Location,
};
use crate::strategy::{self, try_sql, StrategyOps};
use crate::tools::tool_version;

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

/// How a restore runs.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace the tenant's data where it is restored.
    pub force: bool,
    /// Accept an archive that is unsigned, or whose seal does not verify with
    /// `[transfer] archive_key` (made with another key, or altered). Its content is confined to
    /// the tenant all the same.
    pub insecure_unsigned: bool,
    /// Stops the restore and removes what it made when fired.
    pub interrupt: Interrupt,
}

/// Restores tenant `key` from `archive` onto `server` (default: the config's tenant server).
/// The archive must be sealed with `[transfer] archive_key` unless
/// [`RestoreOptions::insecure_unsigned`]. Refused when the tenant is registered or its data is
/// on the target, unless [`RestoreOptions::force`]: then its data there is replaced (a copy
/// elsewhere is kept and listed for `drop-copy`).
pub async fn restore(
    config: &Config,
    key: &str,
    archive: &Path,
    server: Option<&str>,
    options: &RestoreOptions,
    progress: Progress<'_>,
) -> Result<RestoreReport, TransferError> {
    if !keys::is_valid(key) {
        return Err(TransferError::InvalidKey(keys::why_invalid(key)));
    }
    let signer = ArchiveKey::from_config(config);
    let archive = Archive::open(archive, signer.as_ref(), options.insecure_unsigned).await?;
    let m = archive.manifest.clone();
    if m.tenant.key != key {
        return Err(TransferError::WrongTenant {
            archived: m.tenant.key.clone(),
            asked: key.to_owned(),
        });
    }
    let strategy = strategy::of(config.multi_tenancy.strategy);
    if m.strategy != strategy.serving().name() {
        return Err(TransferError::WrongStrategy {
            archived: m.strategy.clone(),
            configured: strategy.serving().name().to_owned(),
        });
    }
    archive.verify().await?;
    if strategy.uses_pg_tools() {
        tool_version("pg_restore").await?;
    }
    let id =
        Uuid::parse_str(&m.tenant.id).map_err(|_| archive_error(&archive.path, "bad tenant id"))?;
    let server = match server {
        Some(s) => s.to_owned(),
        None => server_url(config)?,
    };
    let registry = registry_client(config).await?;
    try_lock(&registry, key).await?;
    let result = restore_locked(config, &registry, &archive, id, &server, options, progress).await;
    unlock(&registry, key).await;
    result
}

/// Where a restore goes, and what the registry held of the tenant before.
struct Target {
    /// The tenant's registry row at the target, as it will be written.
    rec: TenantRecord,
    /// Its location.
    here: Location,
    /// The registered tenant of that key, if any.
    existing: Option<TenantRecord>,
    /// Whether `existing` lives at `here`.
    same_place: bool,
}

async fn restore_locked(
    config: &Config,
    registry: &Client,
    archive: &Archive,
    id: Uuid,
    server: &str,
    options: &RestoreOptions,
    progress: Progress<'_>,
) -> Result<RestoreReport, TransferError> {
    let m = &archive.manifest;
    let key = m.tenant.key.as_str();
    let strategy = strategy::of(config.multi_tenancy.strategy);
    refuse_unfinished(registry, key).await?;
    let target = plan_target(config, registry, archive, id, server).await?;
    let found = strategy.occupied(&target.rec, key).await?;
    if !options.force {
        refuse(key, &target, found.as_deref())?;
    }
    let mut notes = Vec::new();
    if let Some(why) = &archive.unverified {
        notes.push(format!(
            "the archive's origin was not checked (--insecure-unsigned): {why}"
        ));
    }
    set_aside(registry, &target, &mut notes, progress).await?;
    let mut made = Made {
        found: found.is_some(),
        // Known before anything is made, so an interrupted restore removes exactly that.
        created: existing_roles(&target.rec)
            .await?
            .created_if_missing(found.is_none()),
        ..Made::default()
    };
    if found.is_some() {
        strategy.wipe(&target.rec).await?;
        progress(&format!(
            "removed the tenant's previous data at {}",
            target.here
        ));
        // A copy recorded at this very place is gone now.
        let here = &target.here;
        registry
            .execute(
                "DELETE FROM fraiseql_tenant_copy WHERE key = $1 AND server_key = $2 AND database = $3 AND schema_name = $4",
                &[&key, &here.cluster, &here.database, &here.schema],
            )
            .await
            .ok();
    }
    registry::put(registry, &target.rec)
        .await
        .map_err(db("registry"))?;
    let loaded = options
        .interrupt
        .guard(load(
            config,
            &target.rec,
            archive,
            &mut made,
            &mut notes,
            progress,
        ))
        .await;
    if let Err(e) = loaded {
        let left = undo_target(config, &target.rec, &made).await;
        if target.existing.is_none() {
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
        rows: m.rows(),
        tables: m.tables.len(),
        outbox_unsent: m.outbox_unsent,
        notes,
    })
}

/// The archive's tenant as it would be registered on `server`. Refused when its id belongs to
/// another key, or the target's admin cannot read every row.
async fn plan_target(
    config: &Config,
    registry: &Client,
    archive: &Archive,
    id: Uuid,
    server: &str,
) -> Result<Target, TransferError> {
    let m = &archive.manifest;
    let key = m.tenant.key.as_str();
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
    check_admin(&connect_to(server, None).await?, "target server").await?;
    let mut rec = plan_record(config, registry, key, &m.tenant.tier, server, id).await?;
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
    Ok(Target {
        rec,
        here,
        existing,
        same_place,
    })
}

/// Without `--force`: a registered tenant, or its data `found` on the target, is not replaced.
fn refuse(key: &str, target: &Target, found: Option<&str>) -> Result<(), TransferError> {
    if let Some(e) = &target.existing {
        return Err(TransferError::Exists {
            key: key.to_owned(),
            place: format!("registered, served from {}", Location::of(e)?),
        });
    }
    if let Some(what) = found {
        return Err(TransferError::Exists {
            key: key.to_owned(),
            place: format!("{what} on {}", target.here.cluster),
        });
    }
    Ok(())
}

/// The registered tenant stops being served (suspended until every server has seen it), and
/// its copy elsewhere is kept for `drop-copy`.
async fn set_aside(
    registry: &Client,
    target: &Target,
    notes: &mut Vec<String>,
    progress: Progress<'_>,
) -> Result<(), TransferError> {
    let Some(e) = &target.existing else {
        return Ok(());
    };
    let key = &e.key;
    if e.status == TenantStatus::Active {
        // Running servers stop serving what is about to be replaced.
        registry::set_status(registry, key, TenantStatus::Suspended)
            .await
            .map_err(db("registry"))?;
        progress(&format!(
            "tenant `{key}` suspended; waiting {:.1} s until every server has seen it",
            registry_seen().as_secs_f64()
        ));
        tokio::time::sleep(registry_seen()).await;
    }
    if !target.same_place {
        record_copy(registry, e, &target.here.to_string()).await?;
        notes.push(format!(
            "the previous copy of `{key}` at {} is kept; remove it with `fraiseql tenant drop-copy {key}`",
            Location::of(e)?
        ));
    }
    Ok(())
}

/// Provisions `rec`'s home on its server, loads the archive into it, checks the row counts,
/// applies pending migrations and grants. `made` records what to undo if it fails.
pub(super) async fn load(
    config: &Config,
    rec: &TenantRecord,
    archive: &Archive,
    made: &mut Made,
    notes: &mut Vec<String>,
    progress: Progress<'_>,
) -> Result<(), TransferError> {
    let m = &archive.manifest;
    strategy::of(config.multi_tenancy.strategy)
        .load(config, rec, archive, made, notes)
        .await?;
    progress(&format!(
        "restored {} rows in {} tables and {} unsent events on {}; row counts verified",
        m.rows(),
        m.tables.len(),
        m.outbox_unsent,
        Location::of(rec)?
    ));
    Ok(())
}

/// Removes what a failed restore made on the target; returns what could not be removed.
pub(super) async fn undo_target(config: &Config, rec: &TenantRecord, made: &Made) -> Vec<String> {
    let strategy: &dyn StrategyOps = strategy::of(config.multi_tenancy.strategy);
    let Ok(admin) = connect_to(&rec.server, None).await else {
        return vec![format!(
            "the target {} could not be reached to clean up",
            server_place_of(rec)
        )];
    };
    let mut left = strategy.undo(&admin, rec, made).await;
    if let Some(role) = &made.restore_role {
        left.extend(crate::dump::drop_restore_role(rec, role).await);
    }
    // A role this restore created is nobody else's (row_level's shared role included: it did not
    // exist on the target before); its grants in the host database go with it.
    if made.created.role {
        if let Ok(host) = connect_to(&rec.server, Some(&rec.database)).await {
            let _ = host
                .batch_execute(&format!("DROP OWNED BY {}", quote_ident(&rec.role)))
                .await;
        }
        left.extend(
            try_sql(
                &admin,
                drop_role(rec, &rec.role),
                format!("role {}", rec.role),
            )
            .await,
        );
    }
    if made.created.login_role {
        left.extend(
            try_sql(
                &admin,
                drop_role(rec, &rec.login_role),
                format!("role {}", rec.login_role),
            )
            .await,
        );
    }
    left
}

/// Drops `role` if it exists, after revoking what it was granted on `rec`'s database (if that
/// still exists).
fn drop_role(rec: &TenantRecord, role: &str) -> String {
    format!(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN IF EXISTS (SELECT 1 FROM pg_database WHERE datname = {dblit}) THEN EXECUTE 'REVOKE ALL ON DATABASE ' || {db} || ' FROM ' || {id}; END IF; EXECUTE 'DROP ROLE ' || {id}; END IF; END $$",
        lit = quote_literal(role),
        dblit = quote_literal(&rec.database),
        db = quote_literal(&quote_ident(&rec.database)),
        id = quote_literal(&quote_ident(role)),
    )
}
