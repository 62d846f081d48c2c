//! The servers the operations talk to: the registry database, the tenant servers (by admin
//! URL), and where on them a tenant lives ([`Location`]). Every connection carries its URL's TLS
//! mode; no message carries a credential.

use std::time::Duration;

use fraiseql_config::{Config, TENANT_DATABASE};
use fraiseql_engine::connections::{self, parse_url};
use fraiseql_engine::tenancy::directory::RECORD_TTL;
use fraiseql_engine::tenancy::registry::{self, TenantRecord};
use tokio_postgres::Client;

use crate::error::{db, provision_db, ProvisionError, TransferError};

/// The registry database's URL.
pub fn registry_url(config: &Config) -> Result<&str, ProvisionError> {
    let name = &config.multi_tenancy.registry;
    config
        .databases
        .get(name)
        .and_then(|d| d.url.as_deref())
        .ok_or_else(|| ProvisionError::Config(format!("the registry database `{name}` has no url")))
}

/// The URL tenants are provisioned through: `[databases.tenant] url`, else the registry's.
pub fn server_url(config: &Config) -> Result<String, ProvisionError> {
    match config
        .databases
        .get(TENANT_DATABASE)
        .and_then(|d| d.url.clone())
    {
        Some(u) => Ok(u),
        None => registry_url(config).map(str::to_owned),
    }
}

/// Connects to `url` (optionally another database, optionally a fixed search_path), with the
/// URL's TLS mode.
pub async fn connect(
    url: &str,
    database: Option<&str>,
    search_path: Option<&str>,
) -> Result<Client, ProvisionError> {
    connections::connect(url, database, search_path)
        .await
        .map_err(|e| match e {
            connections::ConnectError::Url(u) => ProvisionError::Config(u.to_string()),
            connections::ConnectError::Db(d) => provision_db("connect")(d),
        })
}

/// [`connect`] for a transfer (no search_path).
pub(crate) async fn connect_to(url: &str, database: Option<&str>) -> Result<Client, TransferError> {
    Ok(connect(url, database, None).await?)
}

/// `host:port` of a server URL: login roles are per PostgreSQL cluster.
pub(crate) fn cluster_key(url: &str) -> Result<String, ProvisionError> {
    let t = parse_url("tenant server", url).map_err(|e| ProvisionError::Config(e.to_string()))?;
    let host = match t.config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = t.config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}"))
}

/// `host:port` of a server URL, or `(unparsable URL)`: for messages (no credentials).
pub fn server_place(url: &str) -> String {
    cluster_key(url).unwrap_or_else(|_| "(unparsable URL)".to_owned())
}

/// A client on the registry database, with the registry table ensured.
pub async fn registry_client(config: &Config) -> Result<Client, ProvisionError> {
    let c = connect(registry_url(config)?, None, None).await?;
    registry::ensure_table(&c)
        .await
        .map_err(provision_db("registry"))?;
    Ok(c)
}

/// The admin of `url` must read every row (row-level security bypassed) and see every session.
pub(crate) async fn check_admin(c: &Client, what: &str) -> Result<(), TransferError> {
    let ok: bool = c
        .query_one(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(db("admin role"))?
        .get(0);
    if ok {
        Ok(())
    } else {
        Err(TransferError::Refused(format!(
            "the role in the {what} URL can neither bypass row-level security nor is a superuser, so it would back up or restore only part of the rows: use the superuser provisioning uses (or give the role BYPASSRLS)"
        )))
    }
}

/// Takes the tenant's advisory lock in the registry (the one `tenant create` waits for), or
/// says another operation holds it.
pub(crate) async fn try_lock(registry: &Client, key: &str) -> Result<(), TransferError> {
    let got: bool = registry
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('fraiseql_tenant:' || $1))",
            &[&key],
        )
        .await
        .map_err(db("registry lock"))?
        .get(0);
    if got {
        Ok(())
    } else {
        Err(TransferError::Busy(key.to_owned()))
    }
}

/// Releases [`try_lock`]'s lock.
pub(crate) async fn unlock(registry: &Client, key: &str) {
    let _ = registry
        .execute(
            "SELECT pg_advisory_unlock(hashtext('fraiseql_tenant:' || $1))",
            &[&key],
        )
        .await;
}

/// Wait after a registry change beyond the directory's cache lifetime (a look-up in flight when
/// the registry row changed is cached from its answer on).
const TTL_MARGIN: Duration = Duration::from_millis(500);

/// How long after a change of a registry row every running server has seen it.
pub(crate) fn registry_seen() -> Duration {
    RECORD_TTL + TTL_MARGIN
}

/// A tenant's home: PostgreSQL server (`host:port`), database and schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// `host:port`.
    pub cluster: String,
    /// The database.
    pub database: String,
    /// The schema.
    pub schema: String,
}

impl Location {
    /// Where `rec` lives.
    pub fn of(rec: &TenantRecord) -> Result<Self, TransferError> {
        Ok(Self {
            cluster: cluster_key(&rec.server)?,
            database: rec.database.clone(),
            schema: rec.schema.clone(),
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.cluster, self.database)?;
        if self.schema != "public" {
            write!(f, " schema {}", self.schema)?;
        }
        Ok(())
    }
}

/// `host:port` of `rec`'s server, for messages.
pub(crate) fn server_place_of(rec: &TenantRecord) -> String {
    cluster_key(&rec.server).unwrap_or_else(|_| "(unparsable server URL)".into())
}
