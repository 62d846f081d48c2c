//! A transaction's statements in one flush: BEGIN, the context, then the statements. Statements
//! the connection already prepared go out with BEGIN in one flush (one round trip); on first use
//! the missing ones are prepared after the context is set (names resolve in the tenant's schema)
//! and the rest follows.

use std::future::Future;

use futures_util::future::{join3, join_all};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Statement};

use crate::connections::Lease;

/// The statements that open and close a transaction, prepared on the connection.
pub(crate) struct Frame<'s> {
    /// `BEGIN …`.
    pub begin: &'s Statement,
    /// The context (`routing::session::SET_CONTEXT`).
    pub set: &'s Statement,
    /// `COMMIT`, sent alone to end the transaction when a statement cannot be prepared.
    pub end: &'s Statement,
}

/// Sends BEGIN and the context with `ctx` on `lease`, then runs `work` on the statements of
/// `sqls` (in order): polled right after BEGIN and the context, so sent in that order. Returns
/// whether BEGIN and the context succeeded, and `work`'s output; `Err` when a statement could not
/// be prepared (the transaction is then ended, and the connection clean if that went through).
/// The lease is dirty until the caller sees its transaction end.
pub(crate) async fn run<T, F, Fut>(
    lease: &Lease,
    frame: Frame<'_>,
    ctx: &[&(dyn ToSql + Sync)],
    sqls: &[&str],
    work: F,
) -> Result<(Result<(), Error>, T), Error>
where
    F: FnOnce(Vec<Statement>) -> Fut,
    Fut: Future<Output = T>,
{
    let client = lease.client();
    let cached = lease.cached(sqls);
    lease.set_dirty();
    let begin = client.execute(frame.begin, &[]);
    let set = client.execute(frame.set, ctx);
    if cached.iter().all(Option::is_some) {
        let stmts: Vec<Statement> = cached.into_iter().flatten().collect();
        let (begun, set, out) = join3(begin, set, work(stmts)).await;
        return Ok((begun.and(set).map(drop), out));
    }
    let missing: Vec<usize> = (0..sqls.len()).filter(|i| cached[*i].is_none()).collect();
    let prepare = join_all(missing.iter().map(|i| client.prepare(sqls[*i])));
    let (begun, set, prepared) = join3(begin, set, prepare).await;
    let mut stmts = cached;
    let mut failed = None;
    for (i, p) in missing.into_iter().zip(prepared) {
        match p {
            Ok(s) => {
                lease.remember(sqls[i], &s);
                stmts[i] = Some(s);
            }
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        let ended = client.execute(frame.end, &[]).await;
        if begun.is_ok() && set.is_ok() && ended.is_ok() {
            lease.set_clean();
        }
        return Err(e);
    }
    let out = work(stmts.into_iter().flatten().collect()).await;
    Ok((begun.and(set).map(drop), out))
}
