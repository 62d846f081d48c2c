//! Connections: one pool per configured database, and the text-format bind parameter.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use fraiseql_config::{Config, DatabaseConfig};
use tokio_postgres::types::{Format, IsNull, ToSql, Type};
use tokio_postgres::NoTls;

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
    /// The pool could not be built.
    #[error("database `{name}`: {reason}")]
    Pool {
        /// `[databases.<name>]`
        name: String,
        /// Why.
        reason: String,
    },
}

/// One pool per `[databases.<name>]`.
#[derive(Clone)]
pub struct Pools {
    pools: BTreeMap<String, Pool>,
}

impl Pools {
    /// Builds (lazily connecting) pools for every database in `config`.
    /// `statement_timeout` bounds each statement on the server side too; `skip` names a database
    /// served some other way (the tenant database under multi-tenancy).
    pub fn new(
        config: &Config,
        statement_timeout: Duration,
        skip: Option<&str>,
    ) -> Result<Self, DbError> {
        let mut pools = BTreeMap::new();
        for (name, db) in &config.databases {
            if Some(name.as_str()) == skip {
                continue;
            }
            pools.insert(name.clone(), build_pool(name, db, statement_timeout)?);
        }
        Ok(Self { pools })
    }

    /// The pool of database `name`.
    pub fn get(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    /// Every pool by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Pool)> {
        self.pools.iter()
    }
}

/// Parses a connection URL into a driver config, never echoing the URL in errors.
pub fn pg_config(name: &str, url: &str) -> Result<tokio_postgres::Config, DbError> {
    tokio_postgres::Config::from_str(url).map_err(|e| DbError::BadUrl {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

fn build_pool(
    name: &str,
    db: &DatabaseConfig,
    statement_timeout: Duration,
) -> Result<Pool, DbError> {
    let url = db
        .url
        .as_deref()
        .ok_or_else(|| DbError::NoUrl(name.to_owned()))?;
    let mut pg = pg_config(name, url)?;
    pg.application_name("fraiseql");
    pg.options(format!(
        "-c statement_timeout={}",
        statement_timeout.as_millis()
    ));
    pg.connect_timeout(Duration::from_secs(db.pool_timeout_secs));
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(db.pool_max)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(db.pool_timeout_secs)))
        .create_timeout(Some(Duration::from_secs(db.pool_timeout_secs)))
        .build()
        .map_err(|e| DbError::Pool {
            name: name.to_owned(),
            reason: e.to_string(),
        })
}

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
