//! The dispatcher: a batch of change events (in stream order) to the local subscribers they
//! concern. Events are grouped by topic; each group of subscribers of a topic (same tenant,
//! roles, user and statement) gets ONE read for all of the batch's keys of that topic, run in
//! its tenant context; then each member is offered, in order, every event whose row it sees.
//! Groups are read concurrently; the next batch waits for this one, so each subscriber gets
//! its events in stream order.

use std::sync::Arc;

use futures_util::future::join_all;

use super::connection::Offered;
use super::hub::{GroupSnapshot, Hub};
use super::read;
use crate::error::{ErrorCode, GraphqlError};
use crate::metrics::EventOutcome;
use crate::Engine;

/// One change event read from the stream.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Its stream sequence.
    pub sequence: u64,
    /// `<tenant>.<Entity>.<OPERATION>`
    pub topic: Arc<str>,
    /// The changed row's key, as text.
    pub key: String,
    /// When the change was written (seconds since the epoch).
    pub committed: Option<f64>,
    /// Its encoded position.
    pub position: Arc<str>,
}

/// Offers `events` to the subscribers of their topics.
pub(crate) async fn batch(hub: &Hub, engine: &Engine, events: &[Event]) {
    // Topics in order of first appearance, with their events in stream order.
    let mut topics: Vec<(&str, Vec<&Event>)> = Vec::new();
    for e in events {
        if !hub.listens(&e.topic) {
            continue;
        }
        match topics.iter_mut().find(|(t, _)| *t == &*e.topic) {
            Some((_, v)) => v.push(e),
            None => topics.push((&e.topic, vec![e])),
        }
    }
    let work: Vec<(GroupSnapshot, &Vec<&Event>)> = topics
        .iter()
        .flat_map(|(topic, evs)| hub.groups(topic).into_iter().map(move |g| (g, evs)))
        .collect();
    join_all(work.iter().map(|(g, evs)| group(hub, engine, g, evs))).await;
}

/// One group's read and offers.
async fn group(hub: &Hub, engine: &Engine, g: &GroupSnapshot, events: &[&Event]) {
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    let tenant = g.ctx.tenant.as_ref().map_or("", |t| t.key.as_str());
    let rows = match read::rows(engine, &g.ctx, &g.planned.plan, &keys).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(tenant, error = %e.message, "subscription read failed: its subscriptions end (they may resume from their last position)");
            let error = GraphqlError::new(
                ErrorCode::DatabaseUnavailable,
                format!("the subscription could not read its events ({}); subscribe again with your last position to resume", e.message),
            );
            for m in &g.members {
                super::end(hub, m, vec![error.clone()]);
            }
            return;
        }
    };
    let buffer = hub.config.buffer;
    let (mut delivered, mut dropped, mut invisible) = (0u64, 0u64, 0u64);
    for (event, row) in events.iter().zip(&rows) {
        let Some(row) = row else {
            invisible += g.members.len() as u64;
            continue;
        };
        for m in &g.members {
            match m.offer(
                event.sequence,
                row.get(),
                &event.position,
                event.committed,
                buffer,
            ) {
                Offered::Queued | Offered::Held => delivered += 1,
                Offered::Dropped => dropped += 1,
                Offered::Skipped | Offered::Gone => {}
            }
        }
    }
    hub.metrics
        .subscription_events(tenant, EventOutcome::Delivered, delivered);
    hub.metrics
        .subscription_events(tenant, EventOutcome::Dropped, dropped);
    hub.metrics
        .subscription_events(tenant, EventOutcome::Invisible, invisible);
}
