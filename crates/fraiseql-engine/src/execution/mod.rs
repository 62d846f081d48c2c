//! Execution (the pipeline's seventh step): a plan's statements on the right connections.
//! Plain reads are pipelined ([`read`]); mutations, Rust resolvers and field markers run in the
//! request's transactions ([`transaction`], [`markers`]). Every transaction first sets the
//! tenant and caller context on the connection `routing` picked ([`crate::routing`]). Database errors become client errors that say what
//! happened and never how ([`crate::error::db_error`]).

pub(crate) mod markers;
mod one_sync;
mod pipeline;
pub(crate) mod read;
pub(crate) mod transaction;
pub(crate) mod write;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use fraiseql_plan::Plan;

use crate::error::GraphqlError;
use crate::events::{Observers, OutboxEvent};
use crate::identity::RequestContext;
use crate::resolvers::Resolvers;
use crate::routing::Routes;

/// What one statement produced: JSON text, or `None` for no row (`null`).
pub type FieldResult = Result<Option<JsonText>, GraphqlError>;

/// A field's JSON text: PostgreSQL's row, kept as received until it is copied into the response
/// body (no copy, no re-validation in between), or text built here (resolvers, mutations).
#[derive(Debug)]
pub enum JsonText {
    /// Built by the engine.
    Text(String),
    /// The first column of a row: text PostgreSQL produced (UTF-8, the connection's encoding).
    Row(tokio_postgres::Row),
    /// Bytes held elsewhere: a cached answer, or a column as PostgreSQL sent it (a read answered
    /// on the connection's own socket, `one_sync.rs`).
    Shared(bytes::Bytes),
}

impl JsonText {
    /// The JSON text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            JsonText::Text(s) => s.as_bytes(),
            JsonText::Shared(b) => b,
            JsonText::Row(r) => r
                .try_get::<_, Option<crate::connections::RawText<'_>>>(0)
                .ok()
                .flatten()
                .map_or(b"null", |t| t.0),
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether it is empty (never, for valid JSON).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The root fields' results, field errors found on the way, and whether `data` must be `null`.
pub(crate) struct Done {
    /// Result `i` belongs to root field `i` (`None`: not run).
    pub results: Vec<Option<FieldResult>>,
    /// Errors that belong to no root field's value (or to nested fields).
    pub errors: Vec<GraphqlError>,
    /// The operation's writes were rolled back: no field's value stands.
    pub aborted: bool,
    /// Outbox events written (on the tenant database), to publish once committed.
    pub events: Vec<OutboxEvent>,
}

impl Done {
    /// Nothing run yet for `plan`.
    pub(crate) fn new(plan: &Plan) -> Self {
        Self {
            results: plan.fields.iter().map(|_| None).collect(),
            errors: Vec::new(),
            aborted: false,
            events: Vec::new(),
        }
    }

    /// Whether the response will carry errors (an answer with errors is never cached).
    pub(crate) fn has_errors(&self) -> bool {
        self.aborted
            || !self.errors.is_empty()
            || self.results.iter().any(|r| matches!(r, Some(Err(_))))
    }
}

/// The pipeline's execution stage for a query: plain reads pipelined per database, anything
/// that needs Rust code or several steps in the request's transactions.
pub(crate) async fn query(
    env: &Env<'_>,
    plan: &Plan,
    ctx: &RequestContext,
    gate: &CommitGate,
) -> Done {
    if plan.needs_transaction_work() {
        return transaction::run(env, plan, ctx, false, gate).await;
    }
    let mut done = Done::new(plan);
    done.results = read::run(env, &plan.fields, ctx).await;
    done
}

/// The execution stage for a mutation: in one round trip when it fits, else transactions.
pub(crate) async fn mutation(
    env: &Env<'_>,
    plan: &Plan,
    ctx: &RequestContext,
    gate: &CommitGate,
) -> Done {
    if write::fits(env, plan) {
        write::run(env, plan, ctx, gate).await
    } else {
        transaction::run(env, plan, ctx, true, gate).await
    }
}

/// What the engine lends the executor.
pub(crate) struct Env<'e> {
    pub routes: &'e Routes,
    pub resolvers: &'e Resolvers,
    pub statements: &'e Arc<AtomicU64>,
    pub observers: &'e Observers,
    /// `[observers.stream] subjects`: events of Rust observers must fall under them.
    pub subjects: &'e [String],
    /// `[observers] enabled`: without it no event is recorded.
    pub record_events: bool,
}

impl Env<'_> {
    /// Counts statements sent for requests.
    pub(crate) fn count(&self, n: usize) {
        self.statements.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Decides, once, whether a request's writes commit or its deadline passed first. The HTTP
/// layer times the request out only if it wins [`CommitGate::try_time_out`]; the executor sends
/// COMMIT only if it wins [`CommitGate::try_commit`]. So a client that got 408 changed nothing,
/// and a COMMIT under way is awaited and its outcome reported.
#[derive(Debug, Default)]
pub struct CommitGate(AtomicU8);

const RUNNING: u8 = 0;
const COMMITTING: u8 = 1;
const TIMED_OUT: u8 = 2;

impl CommitGate {
    /// A gate for a new request.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The executor is about to COMMIT: false if the request already timed out.
    pub fn try_commit(&self) -> bool {
        self.0
            .compare_exchange(RUNNING, COMMITTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self.0.load(Ordering::Acquire) == COMMITTING
    }

    /// The deadline passed: false if a COMMIT is already under way (wait for it instead).
    pub fn try_time_out(&self) -> bool {
        self.0
            .compare_exchange(RUNNING, TIMED_OUT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self.0.load(Ordering::Acquire) == TIMED_OUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_side_win() {
        let g = CommitGate::new();
        assert!(g.try_commit());
        assert!(g.try_commit(), "several transactions of one request commit");
        assert!(!g.try_time_out());
        let g = CommitGate::new();
        assert!(g.try_time_out());
        assert!(!g.try_commit());
    }
}
