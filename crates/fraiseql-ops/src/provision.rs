//! `fraiseql tenant create`: database (or schema) + a login role that does not own the tables +
//! migrations + grants + registry row. Idempotent: the registry row is reserved first with status
//! `provisioning` (never served), every step is "create if missing", and the row turns `active`
//! only at the end, so a provisioning that stopped half-way is resumed by running it again.
//! Also `tenant list`, `suspend` and `resume`, and `migrate` of a tenant.

use fraiseql_config::Config;
use fraiseql_engine::connections::parse_url;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::error::provision_db as db;
use crate::server::cluster_key;
use crate::strategy;

pub use crate::error::ProvisionError;
pub use crate::home::migrate_tenant;
pub use crate::server::{connect, registry_client, registry_url, server_place, server_url};

/// Provisions tenant `key` (idempotent) and returns its registry row. `server` places the tenant
/// on another PostgreSQL server than `[databases.tenant] url` (its admin URL; stored in the
/// registry, never printed).
pub async fn create_tenant(
    config: &Config,
    key: &str,
    tier: &str,
    server: Option<&str>,
) -> Result<TenantRecord, ProvisionError> {
    if !keys::is_valid(key) {
        return Err(ProvisionError::InvalidKey(keys::why_invalid(key)));
    }
    let server = match server {
        Some(s) => s.to_owned(),
        None => server_url(config)?,
    };
    let registry = registry_client(config).await?;
    let wanted = plan_record(config, &registry, key, tier, &server, Uuid::new_v4()).await?;
    registry
        .execute(
            "SELECT pg_advisory_lock(hashtext('fraiseql_tenant:' || $1))",
            &[&key],
        )
        .await
        .map_err(db("lock"))?;
    let rec = registry::reserve(&registry, &wanted)
        .await
        .map_err(db("registry"))?;
    let result = build(config, &rec).await;
    if result.is_ok() && rec.status == TenantStatus::Provisioning {
        registry::set_status(&registry, key, TenantStatus::Active)
            .await
            .map_err(db("registry"))?;
    }
    let _ = registry
        .execute(
            "SELECT pg_advisory_unlock(hashtext('fraiseql_tenant:' || $1))",
            &[&key],
        )
        .await;
    result?;
    registry::get(&registry, key)
        .await
        .map_err(db("registry"))?
        .ok_or_else(|| ProvisionError::Unknown(key.to_owned()))
}

/// The registry row tenant `key` gets on `server` under `config` (status `provisioning`): its
/// database, schema and role named by the strategy and `name_prefix`, a fresh password for its
/// own role, the stored password of a shared login role (stored now if there is none yet).
/// Nothing is created on `server`.
pub(crate) async fn plan_record(
    config: &Config,
    registry: &Client,
    key: &str,
    tier: &str,
    server: &str,
    id: Uuid,
) -> Result<TenantRecord, ProvisionError> {
    let mt = &config.multi_tenancy;
    let strategy = strategy::of(mt.strategy);
    let host_db = parse_url("tenant server", server)
        .map_err(|e| ProvisionError::Config(e.to_string()))?
        .config
        .get_dbname()
        .unwrap_or("postgres")
        .to_owned();
    let home = strategy.serving().home(&mt.name_prefix, key, &host_db);
    strategy.check_host(server, &host_db).await?;
    let cluster = cluster_key(server)?;
    let credentials = strategy.credentials(registry, &cluster, &home).await?;
    Ok(TenantRecord {
        key: key.to_owned(),
        id,
        strategy: strategy.serving().name().to_owned(),
        server: server.to_owned(),
        database: home.database,
        schema: home.schema,
        role: home.role,
        password: credentials.password,
        status: TenantStatus::Provisioning,
        tier: tier.to_owned(),
        login_role: home.login_role,
        login_password: credentials.login_password,
        derived: Default::default(),
    })
}

async fn build(config: &Config, rec: &TenantRecord) -> Result<(), ProvisionError> {
    strategy::of(config.multi_tenancy.strategy)
        .prepare_home(rec, true)
        .await?;
    migrate_tenant(config, rec).await.map(drop)
}

/// Suspends or resumes `key`.
pub async fn set_status(
    config: &Config,
    key: &str,
    status: TenantStatus,
) -> Result<(), ProvisionError> {
    if !keys::is_valid(key) {
        return Err(ProvisionError::InvalidKey(keys::why_invalid(key)));
    }
    let registry = registry_client(config).await?;
    if registry::set_status(&registry, key, status)
        .await
        .map_err(db("registry"))?
    {
        Ok(())
    } else {
        Err(ProvisionError::Unknown(key.to_owned()))
    }
}

/// Every registered tenant.
pub async fn list(config: &Config) -> Result<Vec<TenantRecord>, ProvisionError> {
    let registry = registry_client(config).await?;
    registry::list(&registry).await.map_err(db("registry"))
}
