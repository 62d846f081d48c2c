//! `row_level`: the tenant's rows in the host database's shared tables, one role for every
//! tenant. Backed up and restored as `COPY` of its rows; a move fences the tenant's rows (a
//! `fraiseql_fence` row its tables' trigger checks), waits for the shared role's transactions
//! and checks every table's content at the source against the copy; a moved tenant's old rows
//! stay (fenced, its old unsent events marked handed over) until `drop-copy`.

use std::time::Duration;

use fraiseql_config::{Config, TENANT_DATABASE};
use fraiseql_engine::tenancy::registry;
use fraiseql_engine::tenancy::strategy::{self as serving, Home, Strategy};
use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio_postgres::Client;

use super::{fresh_password, grant_host_database, Credentials, Fut, KeptCopy, StrategyOps};
use crate::archive::read::Archive;
use crate::archive::write::Contents;
use crate::archive::Manifest;
use crate::error::{db, provision_db, ProvisionError, TransferError};
use crate::fence;
use crate::home::{migrate_tenant, Made};
use crate::rows;
use crate::scratch::Scratch;
use crate::server::{connect, connect_to, registry_seen};

/// Shared tables, isolated by row-level security.
pub(crate) struct RowLevel;

impl StrategyOps for RowLevel {
    fn serving(&self) -> &'static dyn Strategy {
        &serving::RowLevel
    }

    /// The shared role gets DML on every table of the host's `public`: if the registry lived
    /// there, every tenant could read the role passwords in it.
    fn check_host<'a>(
        &'a self,
        server: &'a str,
        host_database: &'a str,
    ) -> Fut<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            let host = connect(server, None, None).await?;
            let holds_registry: bool = host
                .query_one(
                    "SELECT to_regclass('public.fraiseql_tenant') IS NOT NULL OR to_regclass('public.fraiseql_login_role') IS NOT NULL",
                    &[],
                )
                .await
                .map_err(provision_db("host database"))?
                .get(0);
            if holds_registry {
                return Err(ProvisionError::Config(format!(
                    "row_level tenants cannot live in database `{host_database}`: it holds the tenant registry, and the shared tenant role would get DML on it; point [databases.tenant] url at another database"
                )));
            }
            Ok(())
        })
    }

    /// The tenants share one role, and so its password.
    fn credentials<'a>(
        &'a self,
        registry: &'a Client,
        cluster: &'a str,
        home: &'a Home,
    ) -> Fut<'a, Result<Credentials, ProvisionError>> {
        Box::pin(async move {
            let p =
                registry::shared_login_password(registry, cluster, &home.role, &fresh_password())
                    .await
                    .map_err(provision_db("registry"))?;
            Ok(Credentials {
                password: p.clone(),
                login_password: p,
            })
        })
    }

    fn shared_login(&self) -> bool {
        true
    }

    fn prepare_place<'a>(
        &'a self,
        admin: &'a Client,
        rec: &'a TenantRecord,
        _create_schema: bool,
    ) -> Fut<'a, Result<bool, ProvisionError>> {
        Box::pin(async move {
            grant_host_database(admin, rec).await?;
            Ok(false)
        })
    }

    fn uses_pg_tools(&self) -> bool {
        false
    }

    fn backup<'a>(
        &'a self,
        c: &'a Client,
        rec: &'a TenantRecord,
        scratch: &'a Scratch,
    ) -> Fut<'a, Result<Contents, TransferError>> {
        Box::pin(rows::backup(c, rec, scratch))
    }

    fn occupied<'a>(
        &'a self,
        rec: &'a TenantRecord,
        key: &'a str,
    ) -> Fut<'a, Result<Option<String>, TransferError>> {
        Box::pin(async move {
            let host = connect_to(&rec.server, Some(&rec.database)).await?;
            rows::occupied(&host, rec, key).await
        })
    }

    fn wipe<'a>(&'a self, rec: &'a TenantRecord) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let host = connect_to(&rec.server, Some(&rec.database)).await?;
            rows::delete(&host, &rec.schema, rec.id, &rec.key).await
        })
    }

    /// The tables come from the migrations, the rows from the archive.
    fn load<'a>(
        &'a self,
        config: &'a Config,
        rec: &'a TenantRecord,
        archive: &'a Archive,
        made: &'a mut Made,
        notes: &'a mut Vec<String>,
    ) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            made.created = self.prepare_home(rec, true).await?;
            migrate_tenant(config, rec).await?;
            let host = connect_to(&rec.server, Some(&rec.database)).await?;
            made.loaded = true;
            rows::load(&host, rec, archive, notes).await
        })
    }

    /// A failed load (one transaction) left no rows; a load that succeeded before the move or
    /// restore failed later did: the tenant's rows there are deleted.
    fn undo<'a>(
        &'a self,
        _admin: &'a Client,
        rec: &'a TenantRecord,
        made: &'a Made,
    ) -> Fut<'a, Vec<String>> {
        Box::pin(async move {
            if !made.loaded {
                return Vec::new();
            }
            let deleted = async {
                let host = connect_to(&rec.server, Some(&rec.database)).await?;
                rows::delete(&host, &rec.schema, rec.id, &rec.key).await
            }
            .await;
            match deleted {
                Ok(()) => Vec::new(),
                Err(e) => vec![format!(
                    "rows of tenant id {} in {}: {e}",
                    rec.id, rec.database
                )],
            }
        })
    }

    /// Plus the longest wait for a pooled connection: a request that got its record before the
    /// suspension may still be waiting for one, and its writes cannot be fenced.
    fn suspension_wait(&self, config: &Config) -> Duration {
        let pool = config
            .databases
            .get(TENANT_DATABASE)
            .map_or(5, |d| d.pool_timeout_secs);
        registry_seen() + Duration::from_secs(pool)
    }

    /// One role for every tenant: the fence is a row of `fraiseql_fence` that the tenant
    /// tables' fence trigger refuses writes of (`fence.rs`).
    fn fence<'a>(
        &'a self,
        c: &'a Client,
        rec: &'a TenantRecord,
        timeout_ms: u64,
    ) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(fence::fence_tenant_rows(c, rec, timeout_ms))
    }

    fn unfence<'a>(
        &'a self,
        c: &'a Client,
        rec: &'a TenantRecord,
    ) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(fence::unfence_tenant_rows(c, rec))
    }

    /// Every table's rows at the source, by count and checksum, against the archive's.
    fn verify_source<'a>(
        &'a self,
        rec: &'a TenantRecord,
        copied: &'a Manifest,
    ) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let c = connect_to(&rec.server, Some(&rec.database)).await?;
            rows::recheck(&c, rec, copied).await
        })
    }

    /// The old rows stay; their unsent events are marked handed over, so the relay does not
    /// publish them from here too.
    fn mark_old_copy<'a>(
        &'a self,
        _registry: &'a Client,
        rec: &'a TenantRecord,
        cluster: &'a str,
        _unix_secs: u64,
    ) -> Fut<'a, Result<String, TransferError>> {
        Box::pin(async move {
            let host = connect_to(&rec.server, Some(&rec.database)).await?;
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
        })
    }

    /// The shared role stays: other tenants use it.
    fn drop_copy<'a>(&'a self, copy: &'a KeptCopy<'a>) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let host = connect_to(copy.server, Some(copy.database)).await?;
            rows::delete(&host, copy.schema, copy.id, copy.key).await
        })
    }
}
