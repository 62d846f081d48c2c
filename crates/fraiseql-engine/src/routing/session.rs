//! What every transaction sets first: the tenant's role and schema (its connection may be shared
//! with other tenants of the same database), the request context (`app.tenant_id`,
//! `app.tenant_key`, `app.user_id`, `app.roles`) and the tenant plan's `statement_timeout`, all
//! local to the transaction, so nothing of it outlives COMMIT and a pooled connection is back to
//! its login state afterwards.

use fraiseql_schema::ContextValue;
use tokio_postgres::types::ToSql;

use crate::connections::{Lease, TextParam};
use crate::identity::RequestContext;

/// One prepared statement: `set_config(.., true)` is `SET LOCAL` with bind parameters; a `NULL`
/// value leaves the setting at the session's default (the login role, its search_path).
pub(crate) const SET_CONTEXT: &str = "SELECT set_config('role', $1, true), set_config('search_path', $2, true), set_config('app.tenant_id', $3, true), set_config('app.tenant_key', $4, true), set_config('app.user_id', $5, true), set_config('app.roles', $6, true), set_config('statement_timeout', $7, true)";

/// The values of [`SET_CONTEXT`] for one database of one request, borrowed from the tenant's
/// record and the caller's identity (where they were worked out once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionContext<'a> {
    values: [Option<&'a str>; 7],
}

impl<'a> SessionContext<'a> {
    /// The context on `database` for `ctx` (see [`super::Routes::place`]).
    pub fn on(ctx: &'a RequestContext, database: &str) -> Self {
        let place = super::Routes::place(ctx.tenant.as_deref(), database);
        Self::new(ctx, matches!(place, super::Place::Tenant(_)))
    }

    /// The context for `ctx`: on the tenant's own database (`tenant_db`) the tenant's role and
    /// schema; on every database the tenant and the caller.
    pub fn new(ctx: &'a RequestContext, tenant_db: bool) -> Self {
        let t = ctx.tenant.as_deref();
        Self {
            values: [
                t.filter(|_| tenant_db).map(|t| t.role.as_str()),
                t.filter(|_| tenant_db)
                    .map(|t| t.derived.search_path.as_str()),
                t.map(|t| t.derived.id_text.as_str()),
                t.map(|t| t.key.as_str()),
                ctx.identity.subject.as_deref(),
                ctx.identity.roles_text.as_deref(),
                // The plan's, once a request of the tenant resolved it (`NULL`: the login's,
                // `[limits] request_timeout_ms`).
                t.and_then(crate::tenancy::tiers::resolved)
                    .and_then(|tier| tier.statement_timeout.as_deref()),
            ],
        }
    }

    /// A request context value (for `$ctx.*` in mutation statements).
    pub fn value(&self, c: ContextValue) -> Option<&'a str> {
        let i = match c {
            ContextValue::TenantId => 2,
            ContextValue::TenantKey => 3,
            ContextValue::UserId => 4,
            ContextValue::Roles => 5,
        };
        self.values[i]
    }

    /// Whether there is nothing to set (no tenant, anonymous caller): a lone read needs no
    /// transaction then.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }

    /// The values of [`SET_CONTEXT`]'s parameters, in order (`None` is NULL).
    pub(crate) fn values(&self) -> [Option<&'a str>; 7] {
        self.values
    }

    /// The bind parameters of [`SET_CONTEXT`].
    pub(crate) fn params(&self) -> [Option<TextParam<'a>>; 7] {
        self.values.map(|v| v.map(TextParam))
    }
}

/// `BEGIN` for a read of `statements` statements (several share one snapshot) or a write.
pub(crate) fn begin_sql(write: bool, statements: usize) -> &'static str {
    match (write, statements > 1) {
        (true, _) => "BEGIN",
        (false, true) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        (false, false) => "BEGIN READ ONLY",
    }
}

/// Begins a transaction on `lease` with `ctx` set (prepared statements, sent together: one
/// round trip once they are prepared). The lease is marked dirty until the caller ends it.
pub(crate) async fn begin(
    lease: &Lease,
    ctx: &SessionContext<'_>,
    write: bool,
) -> Result<(), tokio_postgres::Error> {
    let fixed = lease
        .prepare_all(&[begin_sql(write, 2), SET_CONTEXT])
        .await?;
    let params = ctx.params();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    lease.set_dirty();
    // Polled in order, so BEGIN reaches the server before the settings that are local to it.
    let (b, s) = futures_util::future::join(
        lease.client().execute(&fixed[0], &[]),
        lease.client().execute(&fixed[1], &refs),
    )
    .await;
    b.and(s).map(drop)
}

/// Ends a transaction begun by [`begin`]: COMMIT (or ROLLBACK). The connection is reusable
/// once the server answered.
pub(crate) async fn end(lease: &Lease, commit: bool) -> Result<(), tokio_postgres::Error> {
    let sql = if commit { "COMMIT" } else { "ROLLBACK" };
    let stmt = lease.prepare(sql).await?;
    lease.client().execute(&stmt, &[]).await?;
    lease.set_clean();
    Ok(())
}
