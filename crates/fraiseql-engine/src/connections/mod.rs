//! Connections: where each database is ([`target`], with TLS), pools under a budget ([`pool`]),
//! the configured databases ([`Pools`]), and the text-format bind parameter.

mod fair;
pub mod pool;
pub mod target;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fraiseql_config::{Config, DatabaseConfig};
use tokio_postgres::types::{Format, IsNull, ToSql, Type};

pub use pool::{Lease, Pool, PoolError, PoolSize};
pub use target::{Target, TlsMode};

/// Why a database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL does not parse. The URL itself is not echoed: it may hold a password.
    #[error("database `{name}`: invalid connection URL ({reason})")]
    BadUrl {
        /// `[databases.<name>]`
        name: String,
        /// Parser's reason.
        reason: String,
    },
    /// The database has no URL (the `tenant` database without a tenant registry).
    #[error("database `{0}` has no `url`; set [databases.{0}] url")]
    NoUrl(String),
}

/// One configured `[databases.<name>]`: where it is and its pool.
pub struct Database {
    /// `[databases.<name>]`
    pub name: String,
    /// How to connect.
    pub target: Target,
    /// Its connections (`pool_max` of them, one share).
    pub pool: Arc<Pool>,
}

impl Database {
    /// A pooled connection.
    pub async fn lease(&self) -> Result<Lease, PoolError> {
        self.pool.get(&self.target, &self.name, 1, None).await
    }
}

/// The configured databases, by name.
#[derive(Clone, Default)]
pub struct Pools {
    databases: BTreeMap<String, Arc<Database>>,
}

impl Pools {
    /// Pools (lazily connecting) for every database in `config`. `statement_timeout` bounds
    /// each statement on the server side too; `skip` names a database served some other way
    /// (the tenant database under multi-tenancy).
    pub fn new(
        config: &Config,
        statement_timeout: Duration,
        skip: Option<&str>,
    ) -> Result<Self, DbError> {
        let mut databases = BTreeMap::new();
        for (name, db) in &config.databases {
            if Some(name.as_str()) == skip {
                continue;
            }
            let d = database(
                name,
                db,
                statement_timeout,
                config.limits.prepared_statements,
            )?;
            databases.insert(name.clone(), Arc::new(d));
        }
        Ok(Self { databases })
    }

    /// Database `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Database>> {
        self.databases.get(name)
    }

    /// A connection to database `name`.
    pub async fn lease(&self, name: &str) -> Result<Lease, crate::error::GraphqlError> {
        let db = self.get(name).ok_or_else(|| {
            crate::error::GraphqlError::new(
                crate::error::ErrorCode::InternalServerError,
                format!("database `{name}` is not configured"),
            )
        })?;
        db.lease().await.map_err(|e| pool_error(&e, name))
    }

    /// Every database by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Database>)> {
        self.databases.iter()
    }
}

/// Parses a connection URL into a target, never echoing the URL in errors.
pub fn parse_url(name: &str, url: &str) -> Result<Target, DbError> {
    target::parse(name, url)
}

fn database(
    name: &str,
    db: &DatabaseConfig,
    statement_timeout: Duration,
    statements: usize,
) -> Result<Database, DbError> {
    let url = db
        .url
        .as_deref()
        .ok_or_else(|| DbError::NoUrl(name.to_owned()))?;
    let wait = Duration::from_secs(db.pool_timeout_secs);
    let target = parse_url(name, url)?.derive("", |c| {
        c.application_name("fraiseql");
        c.options(format!(
            "-c statement_timeout={}",
            statement_timeout.as_millis()
        ));
        c.connect_timeout(wait);
    });
    Ok(Database {
        name: name.to_owned(),
        target,
        pool: Pool::new(PoolSize {
            budget: db.pool_max,
            per_share: db.pool_max,
            wait,
            statements,
        }),
    })
}

/// The first statement of each batch of `CREATE … IF NOT EXISTS` and `REVOKE` that an instance
/// runs on start-up. A batch is one transaction, and this lock, held to its end, lets one instance
/// run it at a time. Without it, two instances starting together fail on `REVOKE` ("tuple
/// concurrently updated": it rewrites the table's catalog row even when nothing changes) or on a
/// table both create.
pub const STARTUP_DDL_LOCK: &str = "SELECT pg_advisory_xact_lock(7431003);";

/// A bind parameter sent in text format, so PostgreSQL parses it as whatever type the statement
/// needs there (uuid, integer, text...). An invalid value is PostgreSQL's `22P02`, a client error.
#[derive(Debug)]
pub struct TextParam<'a>(pub &'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A text column as PostgreSQL sent it, borrowed from the row: no copy and no UTF-8 check (the
/// connection's client encoding is UTF-8).
#[derive(Debug, Clone, Copy)]
pub struct RawText<'a>(pub &'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for RawText<'a> {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawText(raw))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TEXT | Type::VARCHAR | Type::JSON)
    }
}

/// Text bind parameters that may be `NULL`.
pub fn text_params<'a>(values: &[Option<&'a str>]) -> Vec<Option<TextParam<'a>>> {
    values.iter().map(|v| v.map(TextParam)).collect()
}

/// A one-off connection to `url` (provisioning, migrations, commands), optionally to another
/// database and with a fixed `search_path`.
pub async fn connect(
    url: &str,
    database: Option<&str>,
    search_path: Option<&str>,
) -> Result<tokio_postgres::Client, ConnectError> {
    let t = parse_url("connection", url).map_err(ConnectError::Url)?;
    let t = t.derive("", |c| {
        if let Some(d) = database {
            c.dbname(d);
        }
        if let Some(s) = search_path {
            c.options(format!("-c search_path={s}"));
        }
    });
    t.connect().await.map_err(ConnectError::Db)
}

/// Why a one-off connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse.
    #[error(transparent)]
    Url(DbError),
    /// The server refused or is unreachable.
    #[error("{}", pool::reason(.0))]
    Db(tokio_postgres::Error),
}

/// Maps a pool failure (timeout, connection refused) to `DATABASE_UNAVAILABLE`.
pub fn pool_error(e: &PoolError, database: &str) -> crate::error::GraphqlError {
    tracing::error!(database, error = %e, "no database connection");
    crate::error::GraphqlError::new(
        crate::error::ErrorCode::DatabaseUnavailable,
        format!("database `{database}` is unavailable; try again shortly"),
    )
}
