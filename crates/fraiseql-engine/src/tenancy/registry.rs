//! The tenant registry: table `fraiseql_tenant` in the registry database. It survives restarts;
//! servers re-read it (see `directory`), so new tenants need no restart.

use tokio_postgres::GenericClient;
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
#[derive(Clone, PartialEq, Eq)]
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
    /// Login role the server uses for it (never the tables' owner).
    pub role: String,
    /// That role's password. Never logged or returned (see the manual `Debug`).
    pub password: String,
    /// Lifecycle state.
    pub status: TenantStatus,
    /// Subscription tier.
    pub tier: String,
}

impl std::fmt::Debug for TenantRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRecord")
            .field("key", &self.key)
            .field("id", &self.id)
            .field("strategy", &self.strategy)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .field("role", &self.role)
            .field("status", &self.status)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str =
    "key, id, strategy, server, database, schema_name, role_name, role_password, status, tier";

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
    }
}

/// Creates the registry table if it is missing.
pub async fn ensure_table<C: GenericClient>(c: &C) -> Result<(), tokio_postgres::Error> {
    c.batch_execute(
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
        REVOKE ALL ON fraiseql_tenant FROM PUBLIC;",
    )
    .await
}

/// The tenant `key`, if registered.
pub async fn get<C: GenericClient>(
    c: &C,
    key: &str,
) -> Result<Option<TenantRecord>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM fraiseql_tenant WHERE key = $1");
    Ok(c.query_opt(&sql, &[&key]).await?.as_ref().map(from_row))
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
        "INSERT INTO fraiseql_tenant (key, id, strategy, server, database, schema_name, role_name, role_password, status, tier)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'provisioning', $9) ON CONFLICT (key) DO NOTHING",
        &[&rec.key, &rec.id, &rec.strategy, &rec.server, &rec.database, &rec.schema, &rec.role, &rec.password, &rec.tier],
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
