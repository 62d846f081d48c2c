//! Stopping a tenant's writes at the source for a move, and waiting for those in flight.

use std::time::{Duration, Instant};

use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio_postgres::Client;

use crate::error::{db, TransferError};

/// Tables of the tenant's own (`database_per_tenant`, `schema_per_tenant`): the tenant's role
/// loses INSERT, UPDATE, DELETE and TRUNCATE on its tables (a late request fails instead of
/// writing where nobody will read), then a SHARE lock on every table waits for the transactions
/// that wrote before.
pub(crate) async fn fence_writes(
    c: &Client,
    rec: &TenantRecord,
    timeout_ms: u64,
) -> Result<(), TransferError> {
    let s = quote_ident(&rec.schema);
    let r = quote_ident(&rec.role);
    c.batch_execute(&format!(
        "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {s} FROM {r}"
    ))
    .await
    .map_err(db("fencing writes"))?;
    let tables: Vec<String> = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
            &[&rec.schema],
        )
        .await
        .map_err(db("fencing writes"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    c.batch_execute(&format!(
        "BEGIN; SET LOCAL lock_timeout = {timeout_ms}; LOCK TABLE {} IN SHARE MODE; COMMIT",
        tables.join(", ")
    ))
    .await
    .map_err(db("waiting for in-flight writes"))
}

/// One role for every tenant (`row_level`): nothing can be fenced per tenant, so every
/// transaction of the shared login role that began before now must end.
pub(crate) async fn wait_for_shared_role(
    c: &Client,
    rec: &TenantRecord,
    timeout_ms: u64,
) -> Result<(), TransferError> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let since: String = c
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .map_err(db("drain"))?
        .get(0);
    loop {
        let running: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1 AND xact_start < $2::text::timestamptz AND pid <> pg_backend_pid()",
                &[&rec.login_role, &since],
            )
            .await
            .map_err(db("drain"))?
            .get(0);
        if running == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TransferError::Refused(format!(
                "{running} transaction(s) of the tenants' shared role were still running after {} s; try again when they are done",
                timeout_ms / 1000
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
