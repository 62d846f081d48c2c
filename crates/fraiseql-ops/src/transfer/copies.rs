//! Old copies: where a move (or a restore elsewhere) left a tenant's previous data, recorded in
//! the registry's `fraiseql_tenant_copy` until `fraiseql tenant drop-copy` removes them.

use fraiseql_config::Config;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord};
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use super::journal::refuse_unfinished;
use super::Progress;
use crate::error::{db, TransferError};
use crate::server::{cluster_key, registry_client, try_lock, unlock, Location};
use crate::strategy::{self, KeptCopy};

/// The table of old copies, in the registry database.
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

/// The registry, its table of old copies made if missing.
pub(super) async fn registry_with_copies(config: &Config) -> Result<Client, TransferError> {
    let registry = registry_client(config).await?;
    registry
        .batch_execute(COPY_DDL)
        .await
        .map_err(db("registry"))?;
    Ok(registry)
}

/// Records `old` as an old copy of its tenant, which went to `moved_to`.
pub(super) async fn record_copy(
    registry: &Client,
    old: &TenantRecord,
    moved_to: &str,
) -> Result<(), TransferError> {
    registry
        .batch_execute(COPY_DDL)
        .await
        .map_err(db("registry"))?;
    let server_key = cluster_key(&old.server)?;
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
    let registry = registry_with_copies(config).await?;
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
    let registry = registry_with_copies(config).await?;
    try_lock(&registry, key).await?;
    let result = match refuse_unfinished(&registry, key).await {
        Ok(()) => drop_copy_locked(&registry, key, progress).await,
        Err(e) => Err(e),
    };
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
        let copy = drop_one(key, &r, current.as_ref(), here.as_ref()).await?;
        registry
            .execute(
                "DELETE FROM fraiseql_tenant_copy WHERE key = $1 AND server_key = $2 AND database = $3 AND schema_name = $4",
                &[&key, &copy.server, &copy.database, &copy.schema],
            )
            .await
            .map_err(db("registry"))?;
        let place = Location {
            cluster: copy.server.clone(),
            database: copy.database.clone(),
            schema: copy.schema.clone(),
        };
        progress(&format!("dropped the old copy of `{key}` at {place}"));
        dropped.push(copy);
    }
    Ok(dropped)
}

/// Drops the old copy of `key` that row `r` of `fraiseql_tenant_copy` records, unless the
/// tenant is served from there now (`current`, at `here`).
async fn drop_one(
    key: &str,
    r: &Row,
    current: Option<&TenantRecord>,
    here: Option<&Location>,
) -> Result<OldCopy, TransferError> {
    let id: Uuid = r.get(0);
    let strategy_name: String = r.get(1);
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
    if here == Some(&place) {
        return Err(TransferError::Refused(format!(
            "the copy recorded at {place} is where tenant `{key}` is served from now; it is not dropped (remove the record from fraiseql_tenant_copy by hand if it is stale)"
        )));
    }
    // The role is the tenant's own on that server unless it still lives there.
    let role_in_use =
        current.is_some_and(|c| here.is_some_and(|h| h.cluster == place.cluster) && c.role == role);
    let Some(strategy) = strategy::named(&strategy_name) else {
        return Err(TransferError::Refused(format!(
            "the copy at {place} has an unknown strategy `{strategy_name}`"
        )));
    };
    strategy
        .drop_copy(&KeptCopy {
            key,
            id,
            server: &server,
            database: &copy.database,
            schema: &copy.schema,
            role: &role,
            role_in_use,
        })
        .await?;
    Ok(copy)
}
