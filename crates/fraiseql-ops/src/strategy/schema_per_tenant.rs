//! `schema_per_tenant`: the tenant's own schema and role in the host database, reached through
//! a shared authenticator. Backed up and restored as a `pg_dump` of the schema (renamed on the
//! way when the target names it differently); a moved tenant's old schema is renamed
//! `…_moved_<time>`.

use fraiseql_config::Config;
use fraiseql_engine::tenancy::registry;
use fraiseql_engine::tenancy::strategy::{self as serving, Home, Strategy};
use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio_postgres::Client;

use super::{
    drop_role_quietly, fresh_password, grant_host_database, Credentials, Fut, KeptCopy, StrategyOps,
};
use crate::archive::read::Archive;
use crate::archive::write::Contents;
use crate::dump;
use crate::error::{db, provision_db, ProvisionError, TransferError};
use crate::home::Made;
use crate::names::copy_name;
use crate::scratch::Scratch;
use crate::server::{connect, connect_to};

/// One schema per tenant.
pub(crate) struct SchemaPerTenant;

impl StrategyOps for SchemaPerTenant {
    fn serving(&self) -> &'static dyn Strategy {
        &serving::SchemaPerTenant
    }

    /// A role of its own; the authenticator's password is shared.
    fn credentials<'a>(
        &'a self,
        registry: &'a Client,
        cluster: &'a str,
        home: &'a Home,
    ) -> Fut<'a, Result<Credentials, ProvisionError>> {
        Box::pin(async move {
            let login_password = registry::shared_login_password(
                registry,
                cluster,
                &home.login_role,
                &fresh_password(),
            )
            .await
            .map_err(provision_db("registry"))?;
            Ok(Credentials {
                password: fresh_password(),
                login_password,
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
        create_schema: bool,
    ) -> Fut<'a, Result<bool, ProvisionError>> {
        Box::pin(async move {
            grant_host_database(admin, rec).await?;
            if create_schema {
                let owner = connect(&rec.server, Some(&rec.database), None).await?;
                owner
                    .batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS {}",
                        quote_ident(&rec.schema)
                    ))
                    .await
                    .map_err(provision_db("schema"))?;
            }
            Ok(false)
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
        Box::pin(dump::backup(c, rec, Some(&rec.schema), scratch))
    }

    fn occupied<'a>(
        &'a self,
        rec: &'a TenantRecord,
        _key: &'a str,
    ) -> Fut<'a, Result<Option<String>, TransferError>> {
        Box::pin(async move {
            let host = connect_to(&rec.server, Some(&rec.database)).await?;
            Ok(schema_exists(&host, &rec.schema)
                .await?
                .then(|| format!("a schema named {} in database {}", rec.schema, rec.database)))
        })
    }

    fn occupied_by_source_name<'a>(
        &'a self,
        source: &'a TenantRecord,
        target: &'a TenantRecord,
    ) -> Fut<'a, Result<Option<String>, TransferError>> {
        Box::pin(async move {
            if source.schema == target.schema {
                return Ok(None);
            }
            let host = connect_to(&target.server, Some(&target.database)).await?;
            Ok(schema_exists(&host, &source.schema).await?.then(|| {
                format!(
                    "a schema named {} (the source's, which the restore goes through) in database {}",
                    source.schema, target.database
                )
            }))
        })
    }

    fn wipe<'a>(&'a self, rec: &'a TenantRecord) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let host = connect_to(&rec.server, Some(&rec.database)).await?;
            host.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                quote_ident(&rec.schema)
            ))
            .await
            .map_err(db("removing the tenant's schema on the target"))
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
            let source_schema = archive.manifest.tenant.schema.clone();
            if source_schema != rec.schema {
                // pg_restore recreates the archive's schema name; it is renamed afterwards.
                let host = connect_to(&rec.server, Some(&rec.database)).await?;
                if schema_exists(&host, &source_schema).await? {
                    return Err(TransferError::TargetOccupied {
                        what: format!(
                            "a schema named {source_schema} (the archive's) in database {}",
                            rec.database
                        ),
                        hint: "restore into another database (--server-url …/<database>)"
                            .to_owned(),
                    });
                }
                made.foreign_schema = Some(source_schema);
            }
            made.created = self.prepare_home(rec, false).await?;
            dump::restore(config, rec, archive, Some(&rec.schema), made, notes).await
        })
    }

    fn undo<'a>(
        &'a self,
        _admin: &'a Client,
        rec: &'a TenantRecord,
        made: &'a Made,
    ) -> Fut<'a, Vec<String>> {
        Box::pin(async move {
            let mut left = Vec::new();
            if !made.loaded {
                return left;
            }
            if let Ok(host) = connect_to(&rec.server, Some(&rec.database)).await {
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
            left
        })
    }

    /// Renames the old schema `…_moved_<time>`.
    fn mark_old_copy<'a>(
        &'a self,
        registry: &'a Client,
        rec: &'a TenantRecord,
        cluster: &'a str,
        unix_secs: u64,
    ) -> Fut<'a, Result<String, TransferError>> {
        Box::pin(async move {
            let new = copy_name(&rec.schema, unix_secs);
            let host = connect_to(&rec.server, Some(&rec.database)).await?;
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
        })
    }

    fn drop_copy<'a>(&'a self, copy: &'a KeptCopy<'a>) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let host = connect_to(copy.server, Some(copy.database)).await?;
            host.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                quote_ident(copy.schema)
            ))
            .await
            .map_err(db("dropping the old schema"))?;
            if !copy.role_in_use {
                let _ = host
                    .batch_execute(&format!("DROP OWNED BY {}", quote_ident(copy.role)))
                    .await;
                drop_role_quietly(&host, copy.role).await;
            }
            Ok(())
        })
    }
}

/// Whether `host` has a schema `name`.
async fn schema_exists(host: &Client, name: &str) -> Result<bool, TransferError> {
    Ok(host
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&name])
        .await
        .map_err(db("target"))?
        .is_some())
}
