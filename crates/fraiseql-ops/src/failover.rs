//! `fraiseql tenant set-server`: points tenants' registry rows at another PostgreSQL server that
//! already holds their data (a promoted replica after a failover), after checking that each of
//! them can be served there. Unlike `tenant move`, nothing is copied: the old server may be gone.

use fraiseql_config::Config;

use fraiseql_engine::connections::parse_url;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord};
use tokio_postgres::Client;

use crate::error::{provision_db as db, ProvisionError};
use crate::server::{cluster_key, connect, registry_client};
use crate::strategy;

/// What [`set_server`] switches.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    /// One tenant.
    Tenant(&'a str),
    /// Every tenant whose server is this cluster (`host:port` of the URL), whatever its status.
    From(&'a str),
}

/// One tenant switched.
#[derive(Debug, Clone)]
pub struct Switched {
    /// Its key.
    pub key: String,
    /// `host:port` it was served from.
    pub from: String,
}

/// Checks that `rec` can be served from `server`: the server is not a standby, the tenant's
/// login role logs in to its database there with its password, and its schema (or, for
/// `database_per_tenant`, its database) and tables are there.
async fn check(rec: &TenantRecord, server: &str) -> Result<(), ProvisionError> {
    let place = cluster_key(server)?;
    let admin = connect(server, None, None).await?;
    let standby: bool = admin
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(db("server"))?
        .get(0);
    if standby {
        return Err(ProvisionError::Config(format!(
            "{place} is a standby (in recovery): promote it first (pg_ctl promote, or SELECT pg_promote())"
        )));
    }
    let target = parse_url("tenant", server)
        .map_err(|e| ProvisionError::Config(e.to_string()))?
        .derive("failover check", |cfg| {
            cfg.dbname(&rec.database)
                .user(&rec.login_role)
                .password(rec.login_password.as_bytes());
        });
    let c = target.connect().await.map_err(|e| ProvisionError::Db {
        step: format!("tenant `{}` logging in to {place}", rec.key),
        reason: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    })?;
    let ok: bool = c
        .query_one(
            "SELECT pg_has_role($2, 'MEMBER') AND EXISTS (SELECT 1 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'fraiseql_outbox')",
            &[&rec.schema, &rec.role],
        )
        .await
        .map_err(db("tenant check"))?
        .get(0);
    if !ok {
        return Err(ProvisionError::Config(format!(
            "tenant `{}`: {place} has no schema `{}` with its tables in database `{}` for role `{}`",
            rec.key, rec.schema, rec.database, rec.role
        )));
    }
    Ok(())
}

/// Points the registry rows of `which` at `server` (an admin URL, like `--server-url` of
/// `tenant create`), after checking every one of them there (nothing is switched if one fails).
/// Shared login roles' passwords go along (`fraiseql_login_role` is per `host:port`), so tenants
/// provisioned there later keep the replicated roles' passwords, and so do the old copies a move
/// kept there (`fraiseql_tenant_copy`, for `drop-copy`). Running servers pick the change up within
/// the registry cache's lifetime (3 s).
pub async fn set_server(
    config: &Config,
    which: Which<'_>,
    server: &str,
) -> Result<Vec<Switched>, ProvisionError> {
    let to = cluster_key(server)?;
    let registry = registry_client(config).await?;
    let all = registry::list(&registry).await.map_err(db("registry"))?;
    let chosen = choose(all, which)?;
    let strategy = strategy::of(config.multi_tenancy.strategy);
    for rec in &chosen {
        if rec.strategy != strategy.serving().name() {
            return Err(ProvisionError::Config(format!(
                "tenant `{}` is {}, this config is {}",
                rec.key,
                rec.strategy,
                strategy.serving().name()
            )));
        }
        if cluster_key(&rec.server)? == to {
            return Err(ProvisionError::Config(format!(
                "tenant `{}` is already served from {to}",
                rec.key
            )));
        }
        check(rec, server).await?;
    }
    registry
        .batch_execute("BEGIN")
        .await
        .map_err(db("registry"))?;
    let result = async {
        let mut out = Vec::new();
        for rec in &chosen {
            let shared_login = strategy.shared_login() || rec.login_role != rec.role;
            out.push(switch(&registry, rec, server, &to, shared_login).await?);
        }
        Ok(out)
    }
    .await;
    match result {
        Ok(out) => {
            registry
                .batch_execute("COMMIT")
                .await
                .map_err(db("registry"))?;
            Ok(out)
        }
        Err(e) => {
            let _ = registry.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// The registered tenants `which` names, out of `all`.
fn choose(all: Vec<TenantRecord>, which: Which<'_>) -> Result<Vec<TenantRecord>, ProvisionError> {
    match which {
        Which::Tenant(key) => {
            if !keys::is_valid(key) {
                return Err(ProvisionError::InvalidKey(keys::why_invalid(key)));
            }
            let rec = all
                .into_iter()
                .find(|r| r.key == key)
                .ok_or_else(|| ProvisionError::Unknown(key.to_owned()))?;
            Ok(vec![rec])
        }
        Which::From(old) => {
            let from = cluster_key(old)?;
            let list: Vec<TenantRecord> = all
                .into_iter()
                .filter(|r| cluster_key(&r.server).is_ok_and(|k| k == from))
                .collect();
            if list.is_empty() {
                return Err(ProvisionError::Config(format!(
                    "no tenant in the registry is served from {from}"
                )));
            }
            Ok(list)
        }
    }
}

/// Points `rec`'s row at `server` (cluster `to`) inside the caller's transaction, with its
/// shared login roles' passwords (`shared_login`) and its old copies.
async fn switch(
    registry: &Client,
    rec: &TenantRecord,
    server: &str,
    to: &str,
    shared_login: bool,
) -> Result<Switched, ProvisionError> {
    let from = cluster_key(&rec.server)?;
    let n = registry
        .execute(
            "UPDATE fraiseql_tenant SET server = $2, updated_at = now() WHERE key = $1 AND server = $3",
            &[&rec.key, &server, &rec.server],
        )
        .await
        .map_err(db("registry"))?;
    if n != 1 {
        return Err(ProvisionError::Config(format!(
            "tenant `{}` changed in the registry meanwhile; run the command again",
            rec.key
        )));
    }
    if shared_login {
        registry
            .execute(
                "INSERT INTO fraiseql_login_role (server, role_name, role_password) \
                 SELECT $2, role_name, role_password FROM fraiseql_login_role WHERE server = $1 \
                 ON CONFLICT DO NOTHING",
                &[&from, &to],
            )
            .await
            .map_err(db("registry"))?;
    }
    // Old copies a move kept on the failed server are on the replica too.
    let has_copies: bool = registry
        .query_one(
            "SELECT to_regclass('fraiseql_tenant_copy') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db("registry"))?
        .get(0);
    if has_copies {
        registry
            .execute(
                "UPDATE fraiseql_tenant_copy SET server = $3, server_key = $4 WHERE key = $1 AND server_key = $2",
                &[&rec.key, &from, &server, &to],
            )
            .await
            .map_err(db("registry"))?;
    }
    Ok(Switched {
        key: rec.key.clone(),
        from,
    })
}
