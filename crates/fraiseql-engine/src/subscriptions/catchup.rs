//! Resuming from a position: the events of the subscriber's topic after it that the stream
//! still holds are read by a consumer of the subscriber's own (filtered on its topic, starting
//! right after the position), through the same read as live events, and queued in order; live
//! events that arrive meanwhile are held and queued after them, each sequence once. A position
//! older than the stream's retention ends the subscription with `POSITION_EXPIRED`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

use super::connection::{Offered, Phase, Subscriber};
use super::hub::Hub;
use super::{feed, read};
use crate::error::{ErrorCode, GraphqlError};
use crate::Engine;

/// Events read (and read through the database) per round.
const ROUND: usize = 100;

/// The error of a position the stream no longer holds.
pub(super) fn expired() -> GraphqlError {
    GraphqlError::new(
        ErrorCode::PositionExpired,
        "the position is no longer retained (older than [subscriptions] retention_secs, or from another stream); refetch and subscribe again",
    )
}

fn unavailable(what: impl std::fmt::Display) -> GraphqlError {
    tracing::warn!(error = %what, "a subscription could not catch up");
    GraphqlError::new(
        ErrorCode::DatabaseUnavailable,
        "the missed events could not be read now; subscribe again with the same position to resume",
    )
}

/// Catches `sub` up from sequence `after` of the stream with `identity`, then makes it live.
pub(crate) async fn run(
    hub: Arc<Hub>,
    engine: Weak<Engine>,
    js: jetstream::Context,
    sub: Arc<Subscriber>,
    after: u64,
    identity: u64,
) {
    let result = catch_up(&hub, &engine, &js, &sub, after, identity).await;
    match result {
        Ok(()) => go_live(&hub, &sub),
        Err(Some(e)) => super::end(&hub, &sub, vec![e]),
        // The connection is gone or was killed: nothing to tell.
        Err(None) => {}
    }
}

/// Queues the events held during the catch-up (those not sent yet), then lets the dispatcher
/// queue directly.
fn go_live(hub: &Hub, sub: &Arc<Subscriber>) {
    let mut phase = sub
        .phase
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Phase::CatchingUp(held) = std::mem::replace(&mut *phase, Phase::Live) {
        for h in held {
            sub.queue(
                h.sequence,
                h.body,
                &h.position,
                h.committed,
                hub.config.buffer,
            );
        }
    }
}

async fn catch_up(
    hub: &Hub,
    engine: &Weak<Engine>,
    js: &jetstream::Context,
    sub: &Arc<Subscriber>,
    after: u64,
    identity: u64,
) -> Result<(), Option<GraphqlError>> {
    let stream = js
        .get_stream(&hub.config.stream)
        .await
        .map_err(|e| Some(unavailable(e)))?;
    let info = stream.cached_info();
    if feed::identity(info) != identity || after.saturating_add(1) < info.state.first_sequence {
        return Err(Some(expired()));
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            filter_subject: format!("{}.{}", hub.config.subject_prefix, sub.topic),
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| Some(unavailable(e)))?;
    let name = consumer.cached_info().name.clone();
    let remaining = consumer.cached_info().num_pending;
    // Messages older than the retention may have gone between the two looks.
    let info = stream.get_info().await.map_err(|e| Some(unavailable(e)))?;
    let result = if after.saturating_add(1) < info.state.first_sequence {
        Err(Some(expired()))
    } else {
        replay(hub, engine, sub, &consumer, remaining, identity).await
    };
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!(error = %e, "catch-up consumer not deleted (it expires by itself)");
    }
    result
}

/// Reads `remaining` messages of `consumer` and queues the visible ones, waiting for room in
/// the subscriber's buffer (a catch-up goes at the client's pace).
async fn replay(
    hub: &Hub,
    engine: &Weak<Engine>,
    sub: &Arc<Subscriber>,
    consumer: &consumer::Consumer<consumer::pull::Config>,
    mut remaining: u64,
    identity: u64,
) -> Result<(), Option<GraphqlError>> {
    let prefix = &hub.config.subject_prefix;
    let buffer = hub.config.buffer;
    while remaining > 0 {
        let want = usize::try_from(remaining).unwrap_or(ROUND).min(ROUND);
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| Some(unavailable(e)))?;
        let mut events = Vec::with_capacity(want);
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| Some(unavailable(e)))?;
            let info = m.info().map_err(|e| Some(unavailable(e)))?;
            if let Some(e) = feed::event(
                prefix,
                identity,
                &m.subject,
                &m.payload,
                info.stream_sequence,
            ) {
                events.push(e);
            }
        }
        if events.is_empty() {
            return Err(Some(unavailable("no message within 5 s")));
        }
        remaining = remaining.saturating_sub(events.len() as u64);
        let engine = engine.upgrade().ok_or(None)?;
        let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
        let rows = read::rows(&engine, &sub.ctx, &sub.planned.plan, &keys)
            .await
            .map_err(|e| Some(unavailable(e.message)))?;
        drop(engine);
        for (e, row) in events.iter().zip(rows) {
            let Some(row) = row else { continue };
            room(sub, buffer).await?;
            let body = sub.body(row.get(), &e.position);
            match sub.queue(e.sequence, body, &e.position, e.committed, buffer) {
                Offered::Gone | Offered::Dropped => return Err(None),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Waits until the subscriber's buffer has room (`Err(None)`: the connection went away).
async fn room(sub: &Subscriber, buffer: usize) -> Result<(), Option<GraphqlError>> {
    loop {
        let conn = sub.conn.upgrade().ok_or(None)?;
        if conn.killed().is_some() {
            return Err(None);
        }
        if sub.pending() < buffer {
            return Ok(());
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), conn.drained.notified()).await;
    }
}
