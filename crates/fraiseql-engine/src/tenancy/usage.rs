//! What each tenant used, per calendar month (UTC), in table `fraiseql_tenant_usage` of the
//! registry database: every server instance adds what its own counters saw since its last
//! flush, so the row is the sum over instances. Read by `fraiseql tenant list` and the admin API.

use tokio_postgres::GenericClient;

use crate::connections::STARTUP_DDL_LOCK;

/// Creates the usage table if it is missing.
pub async fn ensure_table<C: GenericClient>(c: &C) -> Result<(), tokio_postgres::Error> {
    c.batch_execute(&format!(
        "{STARTUP_DDL_LOCK}\n{}",
        "CREATE TABLE IF NOT EXISTS fraiseql_tenant_usage (
            tenant_key TEXT NOT NULL,
            period DATE NOT NULL,
            requests BIGINT NOT NULL DEFAULT 0,
            rows BIGINT NOT NULL DEFAULT 0,
            rate_limited BIGINT NOT NULL DEFAULT 0,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_key, period)
        );
        REVOKE ALL ON fraiseql_tenant_usage FROM PUBLIC;"
    ))
    .await
}

/// One tenant's counts (an instance's since its last flush, or a month's total).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tenant key.
    pub key: String,
    /// Requests admitted (answered, whatever the answer).
    pub requests: i64,
    /// Rows in their answers: the JSON objects of `data` (one per row of every list or object
    /// field; an object inside a JSON value counts too).
    pub rows: i64,
    /// Requests refused by the plan (429).
    pub rate_limited: i64,
}

/// Adds `deltas` to this month's rows, in one statement.
pub async fn add<C: GenericClient>(c: &C, deltas: &[Usage]) -> Result<(), tokio_postgres::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = deltas.iter().map(|d| d.key.as_str()).collect();
    let col = |f: fn(&Usage) -> i64| deltas.iter().map(f).collect::<Vec<i64>>();
    let (requests, rows, limited) = (
        col(|d| d.requests),
        col(|d| d.rows),
        col(|d| d.rate_limited),
    );
    c.execute(
        "INSERT INTO fraiseql_tenant_usage AS u (tenant_key, period, requests, rows, rate_limited)
         SELECT k, (date_trunc('month', now() AT TIME ZONE 'UTC'))::date, r, w, l
         FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS d(k, r, w, l)
         ON CONFLICT (tenant_key, period) DO UPDATE SET
           requests = u.requests + EXCLUDED.requests,
           rows = u.rows + EXCLUDED.rows,
           rate_limited = u.rate_limited + EXCLUDED.rate_limited,
           updated_at = now()",
        &[&keys, &requests, &rows, &limited],
    )
    .await
    .map(drop)
}

/// This month's usage (UTC), by tenant key, and the month as `YYYY-MM`. Tenants with no row
/// have used nothing yet.
pub async fn this_month<C: GenericClient>(
    c: &C,
) -> Result<(String, Vec<Usage>), tokio_postgres::Error> {
    let period: String = c
        .query_one("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')", &[])
        .await?
        .get(0);
    let rows = c
        .query(
            "SELECT tenant_key, requests, rows, rate_limited FROM fraiseql_tenant_usage
             WHERE period = (date_trunc('month', now() AT TIME ZONE 'UTC'))::date
             ORDER BY tenant_key",
            &[],
        )
        .await?;
    Ok((
        period,
        rows.iter()
            .map(|r| Usage {
                key: r.get(0),
                requests: r.get(1),
                rows: r.get(2),
                rate_limited: r.get(3),
            })
            .collect(),
    ))
}
