//! Reading changed rows for subscribers: the subscription's statement with the batch's keys,
//! run like a query (`execution::query`: the tenant context and roles set in a read-only
//! transaction, field resolvers and `@federated` reads resolved), so row-level security and
//! `[rbac]` hold exactly as they do for a query.

use std::time::Duration;

use fraiseql_plan::{Plan, RootKind, RootPlan, SubscriptionPlan};
use serde_json::value::RawValue;

use crate::error::{ErrorCode, GraphqlError};
use crate::execution::{self, CommitGate};
use crate::identity::RequestContext;
use crate::Engine;

/// One element per key, in order: the row's JSON text, or `None` where the subscriber sees no
/// row.
pub(crate) type Rows = Vec<Option<Box<RawValue>>>;

/// Attempts before a batch read gives up (the subscriptions it serves then end with an error
/// and may resume from their last position).
const ATTEMPTS: u32 = 3;

/// Reads `keys` for `plan` in `ctx`, retrying a failure twice (100, then 200 ms later).
pub(crate) async fn rows(
    engine: &Engine,
    ctx: &RequestContext,
    plan: &SubscriptionPlan,
    keys: &[&str],
) -> Result<Rows, GraphqlError> {
    let mut wait = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match once(engine, ctx, plan, keys).await {
            Ok(rows) => return Ok(rows),
            Err(e) if attempt >= ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e.message, attempt, "subscription read failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
        }
    }
}

async fn once(
    engine: &Engine,
    ctx: &RequestContext,
    plan: &SubscriptionPlan,
    keys: &[&str],
) -> Result<Rows, GraphqlError> {
    let mut read = plan.read.clone();
    read.params[0] = serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned());
    let query = Plan {
        fields: vec![RootPlan {
            response_key: plan.response_key.clone(),
            kind: RootKind::Sql(read),
            cache: None,
        }],
        denied: Vec::new(),
        rows: keys.len() as u64,
    };
    let done = execution::query(&engine.env(), &query, ctx, &CommitGate::new()).await;
    for e in &done.errors {
        tracing::warn!(error = %e.message, "a nested field of a subscription failed");
    }
    let text = match done.results.into_iter().next().flatten() {
        Some(Ok(Some(text))) => text,
        Some(Ok(None)) | None => return Ok(vec![None; keys.len()]),
        Some(Err(e)) => return Err(e),
    };
    let items: Vec<Box<RawValue>> = serde_json::from_slice(text.as_bytes()).map_err(|e| {
        tracing::error!(error = %e, "a subscription statement did not answer a JSON array");
        GraphqlError::new(
            ErrorCode::InternalServerError,
            "internal error (see server log)",
        )
    })?;
    let mut rows: Rows = items
        .into_iter()
        .map(|r| (r.get() != "null").then_some(r))
        .collect();
    rows.resize(keys.len(), None);
    Ok(rows)
}
