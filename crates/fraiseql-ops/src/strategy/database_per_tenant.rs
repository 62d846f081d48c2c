//! `database_per_tenant`: the tenant's own database and role. Backed up and restored as a
//! `pg_dump` of the database; a moved tenant's old database is renamed `…_moved_<time>`.

use std::time::Duration;

use fraiseql_config::Config;
use fraiseql_engine::tenancy::strategy::{self as serving, Home, Strategy};
use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio_postgres::Client;

use super::{drop_role_quietly, fresh_password, try_sql, Credentials, Fut, KeptCopy, StrategyOps};
use crate::archive::read::Archive;
use crate::archive::write::Contents;
use crate::dump;
use crate::error::{db, provision_db, ProvisionError, TransferError};
use crate::home::Made;
use crate::names::copy_name;
use crate::scratch::Scratch;
use crate::server::{connect_to, Location};

/// One database per tenant.
pub(crate) struct DatabasePerTenant;

impl StrategyOps for DatabasePerTenant {
    fn serving(&self) -> &'static dyn Strategy {
        &serving::DatabasePerTenant
    }

    fn credentials<'a>(
        &'a self,
        _registry: &'a Client,
        _cluster: &'a str,
        _home: &'a Home,
    ) -> Fut<'a, Result<Credentials, ProvisionError>> {
        let p = fresh_password();
        Box::pin(async move {
            Ok(Credentials {
                password: p.clone(),
                login_password: p,
            })
        })
    }

    fn shared_login(&self) -> bool {
        false
    }

    fn prepare_place<'a>(
        &'a self,
        admin: &'a Client,
        rec: &'a TenantRecord,
        _create_schema: bool,
    ) -> Fut<'a, Result<bool, ProvisionError>> {
        Box::pin(async move {
            let exists = admin
                .query_opt(
                    "SELECT 1 FROM pg_database WHERE datname = $1",
                    &[&rec.database],
                )
                .await
                .map_err(provision_db("database"))?
                .is_some();
            if !exists {
                admin
                    .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&rec.database)))
                    .await
                    .map_err(provision_db("create database"))?;
            }
            admin
                .batch_execute(&format!(
                    "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
                    db = quote_ident(&rec.database),
                    role = quote_ident(&rec.role)
                ))
                .await
                .map_err(provision_db("database grants"))?;
            Ok(!exists)
        })
    }

    fn uses_pg_tools(&self) -> bool {
        true
    }

    fn backup<'a>(
        &'a self,
        c: &'a Client,
        rec: &'a TenantRecord,
        scratch: &'a Scratch,
    ) -> Fut<'a, Result<Contents, TransferError>> {
        Box::pin(dump::backup(c, rec, None, scratch))
    }

    fn occupied<'a>(
        &'a self,
        rec: &'a TenantRecord,
        _key: &'a str,
    ) -> Fut<'a, Result<Option<String>, TransferError>> {
        Box::pin(async move {
            let admin = connect_to(&rec.server, None).await?;
            let exists = admin
                .query_opt(
                    "SELECT 1 FROM pg_database WHERE datname = $1",
                    &[&rec.database],
                )
                .await
                .map_err(db("target"))?
                .is_some();
            Ok(exists.then(|| format!("a database named {}", rec.database)))
        })
    }

    fn wipe<'a>(&'a self, rec: &'a TenantRecord) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let admin = connect_to(&rec.server, None).await?;
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&rec.database)
                ))
                .await
                .map_err(db("removing the tenant's database on the target"))
        })
    }

    fn load<'a>(
        &'a self,
        config: &'a Config,
        rec: &'a TenantRecord,
        archive: &'a Archive,
        made: &'a mut Made,
        notes: &'a mut Vec<String>,
    ) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            made.created = self.prepare_home(rec, false).await?;
            dump::restore(config, rec, archive, None, made, notes).await
        })
    }

    fn undo<'a>(
        &'a self,
        admin: &'a Client,
        rec: &'a TenantRecord,
        made: &'a Made,
    ) -> Fut<'a, Vec<String>> {
        Box::pin(async move {
            // A database found there was wiped before loading: what is there now is the restore's.
            if !(made.created.database || (made.found && made.loaded)) {
                return Vec::new();
            }
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&rec.database)
            );
            try_sql(admin, sql, format!("database {}", rec.database))
                .await
                .into_iter()
                .collect()
        })
    }

    /// The database keeps its name on the target: one server holds it once.
    fn same_place(&self, from: &Location, to: &Location) -> bool {
        from.cluster == to.cluster
    }

    /// Renames the old database `…_moved_<time>`, closing what is still connected to it.
    fn mark_old_copy<'a>(
        &'a self,
        registry: &'a Client,
        rec: &'a TenantRecord,
        cluster: &'a str,
        unix_secs: u64,
    ) -> Fut<'a, Result<String, TransferError>> {
        Box::pin(async move {
            let new = copy_name(&rec.database, unix_secs);
            let admin = connect_to(&rec.server, None).await?;
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} ALLOW_CONNECTIONS false",
                    quote_ident(&rec.database)
                ))
                .await
                .map_err(db("closing the old database"))?;
            rename_closed(&admin, &rec.database, &new).await?;
            registry
                .execute(
                    "UPDATE fraiseql_tenant_copy SET database = $4 WHERE key = $1 AND server_key = $2 AND database = $3",
                    &[&rec.key, &cluster, &rec.database, &new],
                )
                .await
                .map_err(db("registry"))?;
            Ok(format!("{cluster}/{new}"))
        })
    }

    fn drop_copy<'a>(&'a self, copy: &'a KeptCopy<'a>) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let admin = connect_to(copy.server, None).await?;
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(copy.database)
                ))
                .await
                .map_err(db("dropping the old database"))?;
            if !copy.role_in_use {
                drop_role_quietly(&admin, copy.role).await;
            }
            Ok(())
        })
    }
}

/// Renames database `old` (closed to new connections) to `new`, ending the sessions still in
/// it first; retried for about two seconds while one lingers.
async fn rename_closed(admin: &Client, old: &str, new: &str) -> Result<(), TransferError> {
    let mut tries = 0;
    loop {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&old],
            )
            .await
            .map_err(db("closing the old database"))?;
        match admin
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(old),
                quote_ident(new)
            ))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) if tries < 20 => {
                tracing::debug!(error = %e, "old database still in use; retrying the rename");
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(db("renaming the old database")(e)),
        }
    }
}
