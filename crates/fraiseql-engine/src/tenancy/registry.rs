//! The tenant registry: table `fraiseql_tenant` in the registry database. It survives restarts;
//! servers re-read it (see `directory`), so new tenants need no restart.

use tokio_postgres::GenericClient;

use crate::connections::STARTUP_DDL_LOCK;
use uuid::Uuid;

/// A tenant's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    /// Being provisioned (or a provisioning that stopped half-way): not served.
    Provisioning,
    /// Served.
    Active,
    /// Known but refused with 503.
    Suspended,
}

impl TenantStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            _ => Self::Provisioning,
        }
    }
}

/// One row of the registry.
#[derive(Clone)]
pub struct TenantRecord {
    /// `acme_corp`
    pub key: String,
    /// The value of `app.tenant_id` and of the tenant's `tenant_id` columns.
    pub id: Uuid,
    /// The strategy it was provisioned with.
    pub strategy: String,
    /// Connection URL of its PostgreSQL server (the admin URL it was provisioned through).
    pub server: String,
    /// Database name (database_per_tenant) or the shared host database (other strategies).
    pub database: String,
    /// Schema (schema_per_tenant), else `public`.
    pub schema: String,
    /// The tenant's role: every transaction runs as it (`SET LOCAL ROLE`); never the tables'
    /// owner.
    pub role: String,
    /// That role's password. Never logged or returned (see the manual `Debug`).
    pub password: String,
    /// The role the server logs in as: the tenant's own role (`database_per_tenant`, and the
    /// shared role of `row_level`), or an authenticator that is a member of every tenant role of
    /// a host database (`schema_per_tenant`), so tenants of one database share connections.
    pub login_role: String,
    /// Its password.
    pub login_password: String,
    /// Lifecycle state.
    pub status: TenantStatus,
    /// Subscription tier.
    pub tier: String,
    /// Worked out once per registry read, not per request. A record built by hand (the
    /// operations crate plans one before provisioning) starts with `Derived::default()`; see
    /// [`TenantRecord::derive`].
    pub derived: Derived,
}

/// What requests need of a record, computed once: the context values of every transaction and
/// the connection target. Opaque outside the engine.
#[derive(Clone, Default)]
pub struct Derived {
    /// `id` as text (`app.tenant_id`).
    pub(crate) id_text: String,
    /// The schema as a `search_path` value.
    pub(crate) search_path: String,
    /// Where tenants share connections with an affinity (`schema_per_tenant`): the pool's
    /// affinity hash and the scope of the tenant's prepared statements (see `connections::pool`).
    pub(crate) sharing: Option<(u64, std::sync::Arc<str>)>,
    /// The login target, built on first use.
    pub(crate) target:
        std::sync::Arc<std::sync::OnceLock<std::sync::Arc<crate::connections::Target>>>,
    /// The tenant's metric series, resolved on its first request.
    pub(crate) metrics:
        std::sync::Arc<std::sync::OnceLock<std::sync::Arc<crate::metrics::TenantMetrics>>>,
    /// Its plan (`[tiers.<tier>]`), resolved on its first request (see `tiers.rs`).
    pub(crate) tier: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<super::tiers::Tier>>>,
}

impl TenantRecord {
    /// Fills the values derived from the others (after building or changing a record by hand).
    pub fn derive(mut self) -> Self {
        self.derived = Derived {
            id_text: self.id.to_string(),
            search_path: fraiseql_schema::quote_ident(&self.schema),
            sharing: super::strategy::named(&self.strategy)
                .is_some_and(|s| s.connection_affinity())
                .then(|| {
                    (
                        affinity(&self.key),
                        std::sync::Arc::from(self.schema.as_str()),
                    )
                }),
            target: Default::default(),
            metrics: Default::default(),
            tier: Default::default(),
        };
        self
    }
}

/// A hash of `key` that is the same in every process (FNV-1a), so instances group alike.
fn affinity(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Records are equal when their registry columns are (what is derived follows from them).
impl PartialEq for TenantRecord {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
            && self.id == o.id
            && self.strategy == o.strategy
            && self.server == o.server
            && self.database == o.database
            && self.schema == o.schema
            && self.role == o.role
            && self.password == o.password
            && self.login_role == o.login_role
            && self.login_password == o.login_password
            && self.status == o.status
            && self.tier == o.tier
    }
}

impl Eq for TenantRecord {}

impl std::fmt::Debug for TenantRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRecord")
            .field("key", &self.key)
            .field("id", &self.id)
            .field("strategy", &self.strategy)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .field("role", &self.role)
            .field("login_role", &self.login_role)
            .field("status", &self.status)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str =
    "key, id, strategy, server, database, schema_name, role_name, role_password, status, tier, \
     coalesce(login_role, role_name), coalesce(login_password, role_password)";

fn from_row(r: &tokio_postgres::Row) -> TenantRecord {
    TenantRecord {
        key: r.get(0),
        id: r.get(1),
        strategy: r.get(2),
        server: r.get(3),
        database: r.get(4),
        schema: r.get(5),
        role: r.get(6),
        password: r.get(7),
        status: TenantStatus::parse(r.get::<_, &str>(8)),
        tier: r.get(9),
        login_role: r.get(10),
        login_password: r.get(11),
        derived: Derived::default(),
    }
    .derive()
}

/// Creates the registry table if it is missing.
pub async fn ensure_table<C: GenericClient>(c: &C) -> Result<(), tokio_postgres::Error> {
    c.batch_execute(&format!(
        "{STARTUP_DDL_LOCK}\n{}",
        "CREATE TABLE IF NOT EXISTS fraiseql_tenant (
            key TEXT PRIMARY KEY CHECK (key ~ '^[a-z0-9_]{1,40}$'),
            id UUID NOT NULL UNIQUE,
            strategy TEXT NOT NULL,
            server TEXT NOT NULL,
            database TEXT NOT NULL,
            schema_name TEXT NOT NULL,
            role_name TEXT NOT NULL,
            role_password TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended')),
            tier TEXT NOT NULL DEFAULT 'free',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        ALTER TABLE fraiseql_tenant ADD COLUMN IF NOT EXISTS login_role TEXT;
        ALTER TABLE fraiseql_tenant ADD COLUMN IF NOT EXISTS login_password TEXT;
        REVOKE ALL ON fraiseql_tenant FROM PUBLIC;
        -- One password per shared login role (row_level's app role, schema_per_tenant's
        -- authenticator): the first provisioning to insert it wins, every other one reads it.
        CREATE TABLE IF NOT EXISTS fraiseql_login_role (
            server TEXT NOT NULL,
            role_name TEXT NOT NULL,
            role_password TEXT NOT NULL,
            PRIMARY KEY (server, role_name)
        );
        REVOKE ALL ON fraiseql_login_role FROM PUBLIC;"
    ))
    .await?;
    super::usage::ensure_table(c).await
}

/// The tenant `key`, if registered.
pub async fn get<C: GenericClient>(
    c: &C,
    key: &str,
) -> Result<Option<TenantRecord>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM fraiseql_tenant WHERE key = $1");
    Ok(c.query_opt(&sql, &[&key]).await?.as_ref().map(from_row))
}

/// What the registry holds now for a record read earlier ([`reread`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Reread {
    /// The row is as it was.
    Unchanged,
    /// The row changed: the new record.
    Changed(Box<TenantRecord>),
    /// The row is gone.
    Gone,
}

/// Re-reads `cached` in one statement. An unchanged row is compared in place and builds no new
/// record, so re-reading many records costs little memory.
pub async fn reread<C: GenericClient>(
    c: &C,
    cached: &[&TenantRecord],
) -> Result<Vec<Reread>, tokio_postgres::Error> {
    let keys: Vec<&str> = cached.iter().map(|r| r.key.as_str()).collect();
    let sql = format!("SELECT {COLUMNS} FROM fraiseql_tenant WHERE key = ANY($1)");
    let rows = c.query(&sql, &[&keys]).await?;
    let by_key: std::collections::HashMap<&str, &tokio_postgres::Row> =
        rows.iter().map(|r| (r.get::<_, &str>(0), r)).collect();
    Ok(cached
        .iter()
        .map(|rec| match by_key.get(rec.key.as_str()) {
            None => Reread::Gone,
            Some(row) if row_is(row, rec) => Reread::Unchanged,
            Some(row) => Reread::Changed(Box::new(from_row(row))),
        })
        .collect())
}

/// Whether `r` (a row of [`COLUMNS`]) holds `rec`'s registry columns (see `PartialEq`).
fn row_is(r: &tokio_postgres::Row, rec: &TenantRecord) -> bool {
    let s = |i: usize| r.get::<_, &str>(i);
    s(0) == rec.key
        && r.get::<_, Uuid>(1) == rec.id
        && s(2) == rec.strategy
        && s(3) == rec.server
        && s(4) == rec.database
        && s(5) == rec.schema
        && s(6) == rec.role
        && s(7) == rec.password
        && TenantStatus::parse(s(8)) == rec.status
        && s(9) == rec.tier
        && s(10) == rec.login_role
        && s(11) == rec.login_password
}

/// Every tenant, by key.
pub async fn list<C: GenericClient>(c: &C) -> Result<Vec<TenantRecord>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM fraiseql_tenant ORDER BY key");
    Ok(c.query(&sql, &[]).await?.iter().map(from_row).collect())
}

/// Inserts `rec` unless the key exists; returns the stored row either way (so a re-run resumes
/// with the same id, names and password).
pub async fn reserve<C: GenericClient>(
    c: &C,
    rec: &TenantRecord,
) -> Result<TenantRecord, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO fraiseql_tenant (key, id, strategy, server, database, schema_name, role_name, role_password, status, tier, login_role, login_password)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'provisioning', $9, $10, $11) ON CONFLICT (key) DO NOTHING",
        &[&rec.key, &rec.id, &rec.strategy, &rec.server, &rec.database, &rec.schema, &rec.role, &rec.password, &rec.tier, &rec.login_role, &rec.login_password],
    )
    .await?;
    let sql = format!("SELECT {COLUMNS} FROM fraiseql_tenant WHERE key = $1");
    Ok(from_row(&c.query_one(&sql, &[&rec.key]).await?))
}

/// Writes `rec` as the row of its key with status `provisioning` (a restore: inserted, or
/// replacing the row of the same key), and returns the stored row.
pub async fn put<C: GenericClient>(
    c: &C,
    rec: &TenantRecord,
) -> Result<TenantRecord, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO fraiseql_tenant (key, id, strategy, server, database, schema_name, role_name, role_password, status, tier, login_role, login_password)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'provisioning', $9, $10, $11)
         ON CONFLICT (key) DO UPDATE SET id = EXCLUDED.id, strategy = EXCLUDED.strategy, server = EXCLUDED.server, database = EXCLUDED.database,
           schema_name = EXCLUDED.schema_name, role_name = EXCLUDED.role_name, role_password = EXCLUDED.role_password, status = 'provisioning',
           tier = EXCLUDED.tier, login_role = EXCLUDED.login_role, login_password = EXCLUDED.login_password, updated_at = now()",
        &[&rec.key, &rec.id, &rec.strategy, &rec.server, &rec.database, &rec.schema, &rec.role, &rec.password, &rec.tier, &rec.login_role, &rec.login_password],
    )
    .await?;
    let sql = format!("SELECT {COLUMNS} FROM fraiseql_tenant WHERE key = $1");
    Ok(from_row(&c.query_one(&sql, &[&rec.key]).await?))
}

/// Sets the status of `key`; false if there is no such tenant.
pub async fn set_status<C: GenericClient>(
    c: &C,
    key: &str,
    status: TenantStatus,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE fraiseql_tenant SET status = $2, updated_at = now() WHERE key = $1",
            &[&key, &status.as_str()],
        )
        .await?;
    Ok(n == 1)
}

/// Sets the tier of `key` (any text: the config's `[tiers]` name the plans); false if there
/// is no such tenant. Running servers apply it within `directory::RECORD_TTL`.
pub async fn set_tier<C: GenericClient>(
    c: &C,
    key: &str,
    tier: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE fraiseql_tenant SET tier = $2, updated_at = now() WHERE key = $1",
            &[&key, &tier],
        )
        .await?;
    Ok(n == 1)
}

/// The password of shared login role `role` on `server` (the host's URL): the stored one, or
/// `candidate` stored now if there is none yet. Concurrent provisionings agree on one.
pub async fn shared_login_password<C: GenericClient>(
    c: &C,
    server_key: &str,
    role: &str,
    candidate: &str,
) -> Result<String, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO fraiseql_login_role (server, role_name, role_password) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&server_key, &role, &candidate],
    )
    .await?;
    Ok(c.query_one(
        "SELECT role_password FROM fraiseql_login_role WHERE server = $1 AND role_name = $2",
        &[&server_key, &role],
    )
    .await?
    .get(0))
}

/// Points tenant `key` at another server (a move), keeping everything else.
pub async fn set_server<C: GenericClient>(
    c: &C,
    key: &str,
    server: &str,
    login_password: Option<&str>,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE fraiseql_tenant SET server = $2, login_password = coalesce($3, login_password), updated_at = now() WHERE key = $1",
            &[&key, &server, &login_password],
        )
        .await?;
    Ok(n == 1)
}
