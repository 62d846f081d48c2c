//! The relay: publishes committed outbox rows to JetStream and marks them sent. Right after a
//! commit the request's own events are published (no polling); a sweeper retries, with backoff,
//! only the targets known to have unsent rows, plus every target at start-up and every
//! `full_sweep_secs` (events another instance committed before it died).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tracing::Instrument;

use super::{ensure_stream, Inner, OutboxEvent, Target};
use crate::connections::Lease;
use crate::identity::RequestContext;
use crate::routing::{session, Place, SessionContext};

/// Publishes one event and waits for JetStream's acknowledgement: whether the stream took it as
/// new (`false`: a copy of an event already in the stream, dropped by its `Nats-Msg-Id`). The
/// message carries a `traceparent` header: the publish span's, a child of the request that wrote
/// the row (OpenTelemetry on), else the row's own, passed on.
pub(crate) async fn publish(inner: &Inner, ev: &OutboxEvent) -> Result<bool, String> {
    let span = crate::otel_span!(
        "outbox.publish",
        otel.name = %format!("{} publish", ev.subject),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.destination.name = %ev.subject,
        messaging.message.id = %ev.event_id,
    );
    crate::telemetry::set_parent(&span, ev.traceparent.as_deref(), None);
    let traceparent = crate::telemetry::traceparent(&span).or_else(|| ev.traceparent.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", ev.event_id.as_str());
    if let Some(tp) = &traceparent {
        headers.insert(crate::telemetry::TRACEPARENT, tp.as_str());
    }
    async {
        let ack = inner
            .js
            .publish_with_headers(ev.subject.clone(), headers, ev.payload.clone().into())
            .await
            .map_err(|e| e.to_string())?;
        let wait = Duration::from_millis(inner.config.publish_timeout_ms);
        match tokio::time::timeout(wait, ack).await {
            Err(_) => Err("no acknowledgement from JetStream in time".to_owned()),
            Ok(r) => r.map(|ack| !ack.duplicate).map_err(|e| e.to_string()),
        }
    }
    .instrument(span)
    .await
}

/// A connection to `target`'s outbox, in a transaction that sees it (the tenant's role and
/// schema set, as for requests).
async fn begin(inner: &Inner, target: &Target) -> Result<Lease, String> {
    let ctx = RequestContext {
        tenant: match target {
            Target::Tenant(rec) => Some(rec.clone()),
            Target::Database(_) => None,
        },
        ..RequestContext::default()
    };
    let place = match target {
        Target::Tenant(rec) => Place::Tenant(rec),
        Target::Database(d) => Place::Pooled(d),
    };
    let lease = inner.routes.lease(place).await.map_err(|e| e.message)?;
    let session_ctx = SessionContext::new(&ctx, matches!(place, Place::Tenant(_)));
    session::begin(&lease, &session_ctx, true)
        .await
        .map_err(|e| e.to_string())?;
    Ok(lease)
}

fn mark_dirty(inner: &Inner, target: &Target, backlog: u64) {
    let mut d = inner
        .dirty
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let entry = d.entry(target.key()).or_insert_with(|| super::Dirty {
        target: target.clone(),
        backlog: 0,
        generation: 0,
    });
    entry.backlog += backlog;
    entry.generation += 1;
    update_backlog(inner, &d);
}

fn update_backlog(inner: &Inner, d: &std::collections::HashMap<String, super::Dirty>) {
    let total: u64 = d.values().map(|e| e.backlog).sum();
    inner.metrics.outbox_backlog(total);
}

const MARK_SENT: &str =
    "UPDATE fraiseql_outbox SET sent_at = now() WHERE event_id = ANY($1::text[]::uuid[])";

/// What publishing a batch gave: the event ids acknowledged, how many of them the stream took
/// as new, those not acknowledged, and the last error.
struct Published {
    sent: Vec<String>,
    new: u64,
    failed: Vec<String>,
    last_error: String,
}

/// Publishes `events` concurrently and counts the failures in the metrics.
async fn publish_all(inner: &Inner, target: &Target, events: &[OutboxEvent]) -> Published {
    let results = join_all(events.iter().map(|e| publish(inner, e))).await;
    let mut out = Published {
        sent: Vec::new(),
        new: 0,
        failed: Vec::new(),
        last_error: String::new(),
    };
    for (e, r) in events.iter().zip(results) {
        match r {
            Ok(new) => {
                out.sent.push(e.event_id.clone());
                out.new += u64::from(new);
            }
            Err(err) => {
                tracing::warn!(event = %e.event_id, error = %err, "publish failed; the sweeper will retry");
                out.failed.push(e.event_id.clone());
                out.last_error = err;
            }
        }
    }
    if !out.failed.is_empty() {
        inner
            .metrics
            .outbox_failed(&target.label(), out.failed.len() as u64);
    }
    out
}

/// Publishes the events one request just committed, then marks them sent.
pub(crate) async fn publish_committed(inner: &Inner, target: Target, events: Vec<OutboxEvent>) {
    let Published {
        sent, new, failed, ..
    } = publish_all(inner, &target, &events).await;
    let label = target.label();
    if !failed.is_empty() {
        mark_dirty(inner, &target, failed.len() as u64);
    }
    if sent.is_empty() {
        return;
    }
    let marked = async {
        let lease = begin(inner, &target).await?;
        lease
            .client()
            .execute(MARK_SENT, &[&sent])
            .await
            .map_err(|e| e.to_string())?;
        session::end(&lease, true)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    }
    .await;
    // Counted once per event: a copy the sweeper published too (it found the row before it was
    // marked) is acknowledged as a duplicate and not counted again.
    inner.metrics.outbox_published(&label, new);
    if let Err(e) = marked {
        // Published but not marked: the sweeper publishes them again; JetStream drops the copies.
        tracing::warn!(target = %label, error = %e, "events published but not marked sent");
        mark_dirty(inner, &target, sent.len() as u64);
    }
}

/// One sweep of `target`: publishes due unsent rows (locked, so instances do not collide) and
/// returns how many remain unsent.
/// Publishes the unsent rows of `target` that are due (all of them with `now`: NATS just came
/// back, the backoff earned while it was away no longer says anything), marks them, and
/// prunes rows sent over a day ago with `prune`. The rows still unsent.
async fn sweep(inner: &Inner, target: &Target, prune: bool, now: bool) -> Result<u64, String> {
    let lease = begin(inner, target).await?;
    let c = lease.client();
    let err = |e: tokio_postgres::Error| e.to_string();
    let rows = c
        .query(
            "SELECT event_id::text, subject, payload::text, traceparent FROM fraiseql_outbox \
             WHERE sent_at IS NULL AND (next_attempt_at <= now() OR $1) \
             ORDER BY created_at LIMIT 1000 FOR UPDATE SKIP LOCKED",
            &[&now],
        )
        .await
        .map_err(err)?;
    let events: Vec<OutboxEvent> = rows
        .iter()
        .map(|r| OutboxEvent {
            event_id: r.get(0),
            subject: r.get(1),
            payload: r.get(2),
            traceparent: r.get(3),
        })
        .collect();
    let Published {
        sent,
        new,
        failed,
        last_error,
    } = publish_all(inner, target, &events).await;
    if !sent.is_empty() {
        c.execute(MARK_SENT, &[&sent]).await.map_err(err)?;
    }
    if !failed.is_empty() {
        c.execute(
            "UPDATE fraiseql_outbox SET attempts = attempts + 1, last_error = $2, \
             next_attempt_at = now() + least(interval '100 milliseconds' * power(2, least(attempts, 20)), interval '60 seconds') \
             WHERE event_id = ANY($1::text[]::uuid[])",
            &[&failed, &last_error],
        )
        .await
        .map_err(err)?;
    }
    if prune {
        c.execute(
            "DELETE FROM fraiseql_outbox WHERE sent_at < now() - interval '1 day'",
            &[],
        )
        .await
        .map_err(err)?;
    }
    let remaining: i64 = c
        .query_one(
            "SELECT count(*) FROM fraiseql_outbox WHERE sent_at IS NULL",
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    session::end(&lease, true).await.map_err(err)?;
    drop(lease);
    let label = target.label();
    if new > 0 {
        inner.metrics.outbox_published(&label, new);
    }
    Ok(remaining.max(0) as u64)
}

async fn all_targets(inner: &Inner) -> Vec<Target> {
    match &inner.tenants {
        Some(t) => match t.active().await {
            Ok(recs) => recs.into_iter().map(Target::Tenant).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list tenants for the outbox sweep");
                Vec::new()
            }
        },
        None => vec![Target::Database(
            fraiseql_config::TENANT_DATABASE.to_owned(),
        )],
    }
}

/// The target to sweep for the dirty entry `key`: a tenant that was moved (`fraiseql tenant
/// move` changed its registry row) took its unsent events along, so its new home is marked
/// dirty, and its old home is swept no more (`None`): the move marked its old rows sent (other
/// tenants of a shared outbox are targets of their own).
async fn follow_move(inner: &Inner, key: &str, target: Target) -> Option<Target> {
    let (Target::Tenant(rec), Some(tenants)) = (&target, &inner.tenants) else {
        return Some(target);
    };
    let Ok(now) = tenants.resolve(&rec.key).await else {
        // Suspended, unknown or the registry away: as before, from the record at hand.
        return Some(target);
    };
    let moved = Target::Tenant(now);
    if moved.key() == key {
        return Some(target);
    }
    tracing::info!(tenant = %rec.key, "tenant moved: its unsent events are swept at its new home");
    mark_dirty(inner, &moved, 0);
    let mut d = inner
        .dirty
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    d.remove(key);
    update_backlog(inner, &d);
    None
}

/// The sweeper loop. While the NATS connection is down it waits rather than sweeping (each
/// attempt would only lengthen the rows' backoff); when the connection comes back, every target
/// is swept at once, backoff ignored, so events written meanwhile flow within a sweep interval.
pub(crate) async fn run(inner: Arc<Inner>) {
    let interval = Duration::from_millis(inner.config.sweep_interval_ms);
    let full_every = Duration::from_secs(inner.config.full_sweep_secs);
    let mut stream_ready = false;
    let mut last_full: Option<Instant> = None;
    let mut was_down = false;
    loop {
        if inner.client.connection_state() != async_nats::connection::State::Connected {
            was_down = true;
            tokio::time::sleep(interval).await;
            continue;
        }
        let back = std::mem::take(&mut was_down);
        if !stream_ready {
            match ensure_stream(&inner).await {
                Ok(_) => stream_ready = true,
                Err(e) => {
                    tracing::warn!(error = %e, "JetStream stream not available yet");
                    was_down = back;
                }
            }
        }
        let full = back || last_full.is_none_or(|t| t.elapsed() >= full_every);
        if stream_ready && full {
            for t in all_targets(&inner).await {
                mark_dirty(&inner, &t, 0);
            }
            last_full = Some(Instant::now());
        }
        if stream_ready {
            let due: Vec<(String, Target, u64)> = inner
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(k, e)| (k.clone(), e.target.clone(), e.generation))
                .collect();
            for (key, target, generation) in due {
                let Some(target) = follow_move(&inner, &key, target).await else {
                    continue;
                };
                let result = sweep(&inner, &target, full, back).await;
                let mut d = inner
                    .dirty
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match result {
                    // Clean, unless new failures were marked while it was being swept.
                    Ok(0) if d.get(&key).is_some_and(|e| e.generation == generation) => {
                        d.remove(&key);
                    }
                    Ok(n) => {
                        if let Some(e) = d.get_mut(&key) {
                            e.backlog = n;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target = %target.label(), error = %e, "outbox sweep failed")
                    }
                }
                update_backlog(&inner, &d);
            }
        }
        tokio::time::sleep(interval).await;
    }
}
