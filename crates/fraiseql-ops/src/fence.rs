//! Stopping a tenant's writes at the source for a move, and waiting for those in flight: its
//! role loses DML on its own tables (`database_per_tenant`, `schema_per_tenant`), or (under
//! `row_level`, one role for every tenant) a row of `fraiseql_fence` names it and a trigger on
//! every tenant table refuses its rows' writes.

use std::time::{Duration, Instant};

use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio_postgres::Client;

use crate::error::{db, provision_db, ProvisionError, TransferError};

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

/// The name of the trigger (on every tenant table of a `row_level` host) and of its function.
const FENCE_TRIGGER: &str = "fraiseql_fence";

/// `row_level`: the fence table and the function of the trigger that refuses the writes of a
/// fenced tenant's rows (`57P03`, which servers answer as "try again shortly"). The function
/// runs as its owner (the admin) with a fixed search_path: the shared role can neither read
/// nor change the table.
fn fence_ddl(schema: &str, role: &str) -> String {
    let s = quote_ident(schema);
    format!(
        "CREATE TABLE IF NOT EXISTS {s}.fraiseql_fence (
             tenant_id text PRIMARY KEY,
             fenced_at timestamptz NOT NULL DEFAULT now()
         );
         REVOKE ALL ON {s}.fraiseql_fence FROM PUBLIC, {r};
         CREATE OR REPLACE FUNCTION {s}.fraiseql_fence_check() RETURNS trigger
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fence$
         DECLARE
             t text;
             was text;
         BEGIN
             IF TG_OP = 'DELETE' THEN
                 t := OLD.tenant_id::text;
             ELSE
                 t := NEW.tenant_id::text;
             END IF;
             IF TG_OP = 'UPDATE' THEN
                 was := OLD.tenant_id::text;
             END IF;
             IF EXISTS (SELECT 1 FROM {s}.fraiseql_fence f WHERE f.tenant_id = t OR f.tenant_id = was) THEN
                 RAISE EXCEPTION 'the tenant is being moved to another server; its writes are paused, try again shortly'
                     USING ERRCODE = '57P03';
             END IF;
             IF TG_OP = 'DELETE' THEN
                 RETURN OLD;
             END IF;
             RETURN NEW;
         END $fence$;",
        r = quote_ident(role),
    )
}

/// Installs the fence on a `row_level` host (idempotent): the table, the function, and the
/// trigger on every table of `schema` with a `tenant_id` (fraiseql's own excepted).
pub(crate) async fn install(c: &Client, schema: &str, role: &str) -> Result<(), ProvisionError> {
    c.batch_execute(&fence_ddl(schema, role))
        .await
        .map_err(provision_db("fence"))?;
    let tables: Vec<String> = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND c.relname NOT LIKE 'fraiseql\\_%'
               AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
               AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = $2)
             ORDER BY 1",
            &[&schema, &FENCE_TRIGGER],
        )
        .await
        .map_err(provision_db("fence"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in tables {
        c.batch_execute(&format!(
            "CREATE TRIGGER {FENCE_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION {}.fraiseql_fence_check()",
            quote_ident(schema)
        ))
        .await
        .map_err(provision_db("fence"))?;
    }
    Ok(())
}

/// `row_level`: fences the tenant's rows (from now on a statement writing one fails), then
/// waits for every transaction of the shared role that began before: one of those may have
/// written (or, under REPEATABLE READ, not see the fence).
pub(crate) async fn fence_tenant_rows(
    c: &Client,
    rec: &TenantRecord,
    timeout_ms: u64,
) -> Result<(), TransferError> {
    install(c, &rec.schema, &rec.role).await?;
    c.execute(
        &format!(
            "INSERT INTO {}.fraiseql_fence (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
            quote_ident(&rec.schema)
        ),
        &[&rec.id.to_string()],
    )
    .await
    .map_err(db("fencing writes"))?;
    wait_for_shared_role(c, rec, timeout_ms).await
}

/// `row_level`: lets the tenant's writes through again.
pub(crate) async fn unfence_tenant_rows(
    c: &Client,
    rec: &TenantRecord,
) -> Result<(), TransferError> {
    unfence_sql(c, &rec.schema, &rec.id.to_string()).await
}

/// Removes tenant `id`'s fence in `schema`, if there is a fence table (safe inside a
/// transaction: a missing table is looked up, not run into).
pub(crate) async fn unfence_sql(c: &Client, schema: &str, id: &str) -> Result<(), TransferError> {
    let fenced: bool = c
        .query_one(
            "SELECT to_regclass(format('%I.fraiseql_fence', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await
        .map_err(db("letting writes through again"))?
        .get(0);
    if fenced {
        c.execute(
            &format!(
                "DELETE FROM {}.fraiseql_fence WHERE tenant_id = $1",
                quote_ident(schema)
            ),
            &[&id],
        )
        .await
        .map_err(db("letting writes through again"))?;
    }
    Ok(())
}

/// Waits until every transaction of the tenants' shared login role that began before now has
/// ended (`row_level`, after the fence).
async fn wait_for_shared_role(
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
