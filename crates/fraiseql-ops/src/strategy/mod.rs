//! What the operations do differently per tenancy strategy: provision a tenant's home, back its
//! data up and load it, find and wipe it on a target, undo a failed restore, stop its writes
//! for a move, mark and drop the copy a move leaves behind.
//!
//! [`StrategyOps`] adds this to the engine's `Strategy` (names, what tenants share), one file per
//! strategy; [`of`] and [`named`] register them. A new strategy is a file here, one in the
//! engine's `tenancy/strategy/`, and a line in each registration.

mod database_per_tenant;
mod row_level;
mod schema_per_tenant;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use fraiseql_config::{Config, TenancyStrategy};
use fraiseql_engine::tenancy::strategy::{self as serving, Home, Strategy};
use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use rand::distr::{Alphanumeric, SampleString};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::archive::read::Archive;
use crate::archive::write::Contents;
use crate::archive::Manifest;
use crate::error::{db, provision_db, ProvisionError, TransferError};
use crate::fence;
use crate::home::{dml_grants, ensure_roles, Created, Made};
use crate::scratch::Scratch;
use crate::server::{connect, registry_seen, Location};

use database_per_tenant::DatabasePerTenant;
use row_level::RowLevel;
use schema_per_tenant::SchemaPerTenant;

/// A boxed future, so [`StrategyOps`] stays usable as `&dyn`.
pub(crate) type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The passwords provisioning plans for a tenant's roles.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// The tenant's role's.
    pub password: String,
    /// The login role's (the same role's, or a shared authenticator's).
    pub login_password: String,
}

/// An old copy of a tenant, as `drop-copy` removes it.
#[derive(Debug, Clone)]
pub(crate) struct KeptCopy<'a> {
    /// The tenant.
    pub key: &'a str,
    /// Its id (`tenant_id` of its rows).
    pub id: Uuid,
    /// The admin URL of its server.
    pub server: &'a str,
    /// Its database (renamed for `database_per_tenant`).
    pub database: &'a str,
    /// Its schema (renamed for `schema_per_tenant`).
    pub schema: &'a str,
    /// The tenant's role on that server.
    pub role: &'a str,
    /// The tenant still lives on that server with that role: the role stays.
    pub role_in_use: bool,
}

/// What provisioning, backup, restore and move do under one strategy.
pub(crate) trait StrategyOps: Send + Sync {
    /// The strategy as serving knows it: the names of a tenant's home, what tenants share.
    fn serving(&self) -> &'static dyn Strategy;

    // --- Provisioning ------------------------------------------------------------------------

    /// Refuses a host database its tenants cannot live in.
    fn check_host<'a>(
        &'a self,
        _server: &'a str,
        _host_database: &'a str,
    ) -> Fut<'a, Result<(), ProvisionError>> {
        Box::pin(async { Ok(()) })
    }

    /// The passwords of `home`'s roles on cluster `cluster` (`host:port`): fresh ones, or the
    /// stored password of a login role the tenants there share (stored now if there is none).
    fn credentials<'a>(
        &'a self,
        registry: &'a Client,
        cluster: &'a str,
        home: &'a Home,
    ) -> Fut<'a, Result<Credentials, ProvisionError>>;

    /// Whether the tenants of a server share their login role (its password is in
    /// `fraiseql_login_role`, per `host:port`).
    fn shared_login(&self) -> bool;

    /// The tenant's place on its server beside its roles: its database (created if missing;
    /// returns whether it was) or the grants on the host database, and with `create_schema` its
    /// own schema. Each step is "if missing".
    fn prepare_place<'a>(
        &'a self,
        admin: &'a Client,
        rec: &'a TenantRecord,
        create_schema: bool,
    ) -> Fut<'a, Result<bool, ProvisionError>>;

    /// Everything of provisioning but the tables: the role(s) with their passwords and
    /// [`prepare_place`](Self::prepare_place). Returns what was created rather than found.
    fn prepare_home<'a>(
        &'a self,
        rec: &'a TenantRecord,
        create_schema: bool,
    ) -> Fut<'a, Result<Created, ProvisionError>> {
        Box::pin(async move {
            let admin = connect(&rec.server, None, None).await?;
            let mut created = ensure_roles(&admin, rec).await?;
            created.database = self.prepare_place(&admin, rec, create_schema).await?;
            Ok(created)
        })
    }

    // --- Backup and restore ------------------------------------------------------------------

    /// Whether its archives are `pg_dump` archives (so `pg_dump` / `pg_restore` must run).
    fn uses_pg_tools(&self) -> bool;

    /// Writes the tenant's data sections into `scratch` from the snapshot `c` holds (a
    /// repeatable read transaction on the tenant's database).
    fn backup<'a>(
        &'a self,
        c: &'a Client,
        rec: &'a TenantRecord,
        scratch: &'a Scratch,
    ) -> Fut<'a, Result<Contents, TransferError>>;

    /// What of tenant `key` is at `rec`'s home already (a description), if anything.
    fn occupied<'a>(
        &'a self,
        rec: &'a TenantRecord,
        key: &'a str,
    ) -> Fut<'a, Result<Option<String>, TransferError>>;

    /// Removes the tenant's database, schema or rows at `rec` (what `--force` replaces).
    fn wipe<'a>(&'a self, rec: &'a TenantRecord) -> Fut<'a, Result<(), TransferError>>;

    /// Provisions `rec`'s home, loads `archive` into it, checks the row counts, applies pending
    /// migrations and grants. `made` records what to undo if it fails.
    fn load<'a>(
        &'a self,
        config: &'a Config,
        rec: &'a TenantRecord,
        archive: &'a Archive,
        made: &'a mut Made,
        notes: &'a mut Vec<String>,
    ) -> Fut<'a, Result<(), TransferError>>;

    /// Removes the database or schema a failed restore at `rec` made or filled (its roles are
    /// the caller's); returns what could not be removed.
    fn undo<'a>(
        &'a self,
        admin: &'a Client,
        rec: &'a TenantRecord,
        made: &'a Made,
    ) -> Fut<'a, Vec<String>>;

    // --- Move --------------------------------------------------------------------------------

    /// Whether a tenant living at `from` would live at `to` again.
    fn same_place(&self, from: &Location, to: &Location) -> bool {
        from == to
    }

    /// How long running servers may still start work on a tenant after its suspension: their
    /// registry cache's lifetime, plus what the strategy adds.
    fn suspension_wait(&self, _config: &Config) -> Duration {
        registry_seen()
    }

    /// Whether a schema named as the tenant's at the source is on the target already (what a
    /// restore under that name would collide with), as a description.
    fn occupied_by_source_name<'a>(
        &'a self,
        _source: &'a TenantRecord,
        _target: &'a TenantRecord,
    ) -> Fut<'a, Result<Option<String>, TransferError>> {
        Box::pin(async { Ok(None) })
    }

    /// Fences the tenant's writes at the source (`c`, on its database): from now on they fail;
    /// then waits up to `timeout_ms` for the transactions that may have written before. By
    /// default the tenant's own role loses its DML grants (`fence::fence_writes`); a strategy
    /// whose tenants share a role fences otherwise.
    fn fence<'a>(
        &'a self,
        c: &'a Client,
        rec: &'a TenantRecord,
        timeout_ms: u64,
    ) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(fence::fence_writes(c, rec, timeout_ms))
    }

    /// Lets the tenant's writes through again (a move that did not happen). Its role's DML is
    /// granted again (what `fraiseql migrate` grants).
    fn unfence<'a>(
        &'a self,
        c: &'a Client,
        rec: &'a TenantRecord,
    ) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async move {
            c.batch_execute(&dml_grants(&rec.schema, &rec.role))
                .await
                .map_err(db("granting writes again"))
        })
    }

    /// After the copy: checks that the source still holds what was copied.
    fn verify_source<'a>(
        &'a self,
        _rec: &'a TenantRecord,
        _copied: &'a Manifest,
    ) -> Fut<'a, Result<(), TransferError>> {
        Box::pin(async { Ok(()) })
    }

    /// After the switch: renames or marks the old copy at `rec` (on `cluster`) so nothing serves
    /// or publishes from it, and records the new name. Returns where the copy is.
    fn mark_old_copy<'a>(
        &'a self,
        registry: &'a Client,
        rec: &'a TenantRecord,
        cluster: &'a str,
        unix_secs: u64,
    ) -> Fut<'a, Result<String, TransferError>>;

    /// Removes an old copy (its database, schema or rows, and its role unless in use).
    fn drop_copy<'a>(&'a self, copy: &'a KeptCopy<'a>) -> Fut<'a, Result<(), TransferError>>;
}

/// The operations of a config's strategy.
pub(crate) fn of(kind: TenancyStrategy) -> &'static dyn StrategyOps {
    match kind {
        TenancyStrategy::DatabasePerTenant => &DatabasePerTenant,
        TenancyStrategy::SchemaPerTenant => &SchemaPerTenant,
        TenancyStrategy::RowLevel => &RowLevel,
    }
}

/// The operations of a strategy named as the registry stores it, if it is one.
pub(crate) fn named(name: &str) -> Option<&'static dyn StrategyOps> {
    serving::named(name).map(|s| of(s.kind()))
}

/// A fresh password for a role.
fn fresh_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// The tenant's role may connect to its host database (and create temporary tables there), and
/// so may its login role.
async fn grant_host_database(admin: &Client, rec: &TenantRecord) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&format!(
            "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}; GRANT CONNECT ON DATABASE {db} TO {login}",
            db = quote_ident(&rec.database),
            role = quote_ident(&rec.role),
            login = quote_ident(&rec.login_role),
        ))
        .await
        .map_err(provision_db("database grants"))
}

/// Runs `sql` on `c`; what failed (`what: reason`), if it did.
pub(crate) async fn try_sql(c: &Client, sql: String, what: String) -> Option<String> {
    c.batch_execute(&sql).await.err().map(|e| {
        format!(
            "{what}: {}",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        )
    })
}

/// Drops `role`, keeping it (with a warning in the log) if something still depends on it.
async fn drop_role_quietly(c: &Client, role: &str) {
    if let Err(e) = c
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
        .await
    {
        tracing::warn!(role = %role, error = %e, "the old copy's role was kept");
    }
}
