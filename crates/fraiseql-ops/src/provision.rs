//! `fraiseql tenant create`: database (or schema) + a login role that does not own the tables +
//! migrations + grants + registry row. Idempotent: the registry row is reserved first with status
//! `provisioning` (never served), every step is "create if missing", and the row turns `active`
//! only at the end, so a provisioning that stopped half-way is resumed by running it again.

use std::path::Path;

use fraiseql_config::{Config, TenancyStrategy, TENANT_DATABASE};
use fraiseql_schema::{quote_ident, quote_literal};
use rand::distr::{Alphanumeric, SampleString};
use tokio_postgres::Client;
use uuid::Uuid;

use fraiseql_engine::connections::{self, parse_url};
use fraiseql_engine::migrate::{self, MigrateError};
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};

/// Why provisioning (or a registry command) failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The key is not `[a-z0-9_]{1,40}`.
    #[error("invalid tenant key: {0}")]
    InvalidKey(String),
    /// Configuration needed for tenancy is missing.
    #[error("{0}")]
    Config(String),
    /// No such tenant (suspend/resume of an unknown key).
    #[error("no tenant `{0}` in the registry")]
    Unknown(String),
    /// A database step failed.
    #[error("{step}: {reason}")]
    Db {
        /// What was being done.
        step: String,
        /// PostgreSQL's message (no credentials).
        reason: String,
    },
    /// Migrating the tenant failed.
    #[error("migrations: {0}")]
    Migrate(#[from] MigrateError),
}

pub(crate) fn db(step: &str) -> impl Fn(tokio_postgres::Error) -> ProvisionError + '_ {
    move |e| ProvisionError::Db {
        step: step.to_owned(),
        reason: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    }
}

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
            connections::ConnectError::Db(d) => db("connect")(d),
        })
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
    registry::ensure_table(&c).await.map_err(db("registry"))?;
    Ok(c)
}

fn migrations_dir(config: &Config) -> Result<&Path, ProvisionError> {
    config
        .databases
        .get(TENANT_DATABASE)
        .and_then(|d| d.migrations.as_deref())
        .ok_or_else(|| {
            ProvisionError::Config(
                "[databases.tenant] migrations is needed to provision tenants".into(),
            )
        })
}

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
    let host_db = parse_url("tenant server", server)
        .map_err(|e| ProvisionError::Config(e.to_string()))?
        .config
        .get_dbname()
        .unwrap_or("postgres")
        .to_owned();
    let name = format!("{}{key}", mt.name_prefix);
    let (database, schema, role) = match mt.strategy {
        TenancyStrategy::DatabasePerTenant => (name.clone(), "public".to_owned(), name.clone()),
        TenancyStrategy::SchemaPerTenant => (host_db.clone(), name.clone(), name.clone()),
        TenancyStrategy::RowLevel => (
            host_db.clone(),
            "public".to_owned(),
            format!("{}app", mt.name_prefix),
        ),
    };
    if mt.strategy == TenancyStrategy::RowLevel {
        // The shared role gets DML on every table of the host's `public`: if the registry
        // lived there, every tenant could read the role passwords in it.
        let host = connect(server, None, None).await?;
        let holds_registry: bool = host
            .query_one(
                "SELECT to_regclass('public.fraiseql_tenant') IS NOT NULL OR to_regclass('public.fraiseql_login_role') IS NOT NULL",
                &[],
            )
            .await
            .map_err(db("host database"))?
            .get(0);
        if holds_registry {
            return Err(ProvisionError::Config(format!(
                "row_level tenants cannot live in database `{host_db}`: it holds the tenant registry, and the shared tenant role would get DML on it; point [databases.tenant] url at another database"
            )));
        }
    }
    let cluster = cluster_key(server)?;
    let fresh = || Alphanumeric.sample_string(&mut rand::rng(), 32);
    // Row-level tenants share one role (and its password); schema_per_tenant tenants each have a
    // role and share one authenticator that logs in and switches to them per transaction.
    let (password, login_role, login_password) = match mt.strategy {
        TenancyStrategy::DatabasePerTenant => {
            let p = fresh();
            (p.clone(), role.clone(), p)
        }
        TenancyStrategy::RowLevel => {
            let p = registry::shared_login_password(registry, &cluster, &role, &fresh())
                .await
                .map_err(db("registry"))?;
            (p.clone(), role.clone(), p)
        }
        TenancyStrategy::SchemaPerTenant => {
            let login = format!("{}authenticator", mt.name_prefix);
            let lp = registry::shared_login_password(registry, &cluster, &login, &fresh())
                .await
                .map_err(db("registry"))?;
            (fresh(), login, lp)
        }
    };
    Ok(TenantRecord {
        key: key.to_owned(),
        id,
        strategy: mt.strategy.as_str().to_owned(),
        server: server.to_owned(),
        database,
        schema,
        role,
        password,
        status: TenantStatus::Provisioning,
        tier: tier.to_owned(),
        login_role,
        login_password,
        derived: Default::default(),
    })
}

async fn build(config: &Config, rec: &TenantRecord) -> Result<(), ProvisionError> {
    prepare_home(config, rec, true).await?;
    migrate_tenant(config, rec).await.map(drop)
}

/// What [`prepare_home`] created rather than found, so a failed restore removes exactly that.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Created {
    /// The tenant's role.
    pub role: bool,
    /// The shared login role (`schema_per_tenant`'s authenticator).
    pub login_role: bool,
    /// The tenant's database (`database_per_tenant`).
    pub database: bool,
}

/// Everything of provisioning but the tables: the role(s) with their passwords, the database
/// (`database_per_tenant`) or, if `create_schema`, the schema (`schema_per_tenant`), and the
/// database grants. Each step is "if missing".
pub(crate) async fn prepare_home(
    config: &Config,
    rec: &TenantRecord,
    create_schema: bool,
) -> Result<Created, ProvisionError> {
    let mut created = Created::default();
    let admin = connect(&rec.server, None, None).await?;
    let role_exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&rec.role])
        .await
        .map_err(db("role"))?
        .is_some();
    created.role = !role_exists;
    let verb = if role_exists { "ALTER" } else { "CREATE" };
    admin
        .batch_execute(&format!(
            "{verb} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}",
            quote_ident(&rec.role),
            quote_literal(&rec.password)
        ))
        .await
        .map_err(db("role"))?;
    if rec.login_role != rec.role {
        // The authenticator: logs in, owns nothing, inherits nothing (NOINHERIT), so on its
        // own it reads no table; each transaction switches to the tenant's role.
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&rec.login_role],
            )
            .await
            .map_err(db("role"))?
            .is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        let made = admin
            .batch_execute(&format!(
                "{verb} ROLE {} LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}",
                quote_ident(&rec.login_role),
                quote_literal(&rec.login_password)
            ))
            .await;
        // Another provisioning may have created it meanwhile.
        match made {
            Ok(()) => created.login_role = !exists,
            Err(e) if e.as_db_error().map(|d| d.code().code()) == Some("42710") => {}
            Err(e) => return Err(db("role")(e)),
        }
        admin
            .batch_execute(&format!(
                "GRANT {} TO {}",
                quote_ident(&rec.role),
                quote_ident(&rec.login_role)
            ))
            .await
            .map_err(db("role"))?;
    }

    let strategy = config.multi_tenancy.strategy;
    if strategy == TenancyStrategy::DatabasePerTenant {
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&rec.database],
            )
            .await
            .map_err(db("database"))?
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&rec.database)))
                .await
                .map_err(db("create database"))?;
            created.database = true;
        }
        admin
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
                db = quote_ident(&rec.database),
                role = quote_ident(&rec.role)
            ))
            .await
            .map_err(db("database grants"))?;
    } else {
        admin
            .batch_execute(&format!(
                "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}; GRANT CONNECT ON DATABASE {db} TO {login}",
                db = quote_ident(&rec.database),
                role = quote_ident(&rec.role),
                login = quote_ident(&rec.login_role),
            ))
            .await
            .map_err(db("database grants"))?;
    }
    if strategy == TenancyStrategy::SchemaPerTenant && create_schema {
        let owner = connect(&rec.server, Some(&rec.database), None).await?;
        owner
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(&rec.schema)
            ))
            .await
            .map_err(db("schema"))?;
    }
    Ok(created)
}

/// What the tenant's role may do in `schema`: use it, DML on its tables and views, its
/// sequences; never the migrations table. Neither DDL nor ownership.
pub(crate) fn dml_grants(schema: &str, role: &str) -> String {
    let s = quote_ident(schema);
    let r = quote_ident(role);
    format!(
        "GRANT USAGE ON SCHEMA {s} TO {r};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r};
         REVOKE ALL ON {s}.fraiseql_migrations FROM {r};"
    )
}

/// Applies pending migrations to a tenant (as the admin, who owns the tables) and grants its role
/// what the API needs (DML, not DDL, not ownership). Returns the migrations applied.
pub async fn migrate_tenant(
    config: &Config,
    rec: &TenantRecord,
) -> Result<Vec<String>, ProvisionError> {
    let dir = migrations_dir(config)?;
    let search_path = (rec.schema != "public").then_some(rec.schema.as_str());
    let mut client = connect(&rec.server, Some(&rec.database), search_path).await?;
    let applied = migrate::apply(&mut client, dir).await?;
    client
        .batch_execute(fraiseql_engine::events::outbox::DDL)
        .await
        .map_err(db("outbox"))?;
    client
        .batch_execute(&dml_grants(&rec.schema, &rec.role))
        .await
        .map_err(db("grants"))?;
    Ok(applied)
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
