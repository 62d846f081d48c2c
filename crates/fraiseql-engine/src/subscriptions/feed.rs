//! The feed: each server instance reads the change stream ONCE (one ephemeral consumer on
//! `<prefix>.>`, not one per subscriber, and not a shared durable whose messages would be split
//! between instances), from the end of the stream at start-up, and hands the events to the
//! dispatcher in batches. When NATS goes away or the consumer is lost (a NATS restart), a new
//! consumer starts right after the last sequence dispatched, so nothing is skipped or repeated.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;

use super::dispatch::{self, Event};
use super::hub::{Hub, StreamState};
use super::position::Position;
use crate::Engine;

/// Most events in one batch (one read per group covers them all).
const MAX_BATCH: usize = 256;

/// The parts of a change event's payload the dispatcher needs.
#[derive(Deserialize)]
struct Payload {
    key: serde_json::Value,
    timestamp: Option<String>,
}

/// The change stream's configuration: subjects `<prefix>.>`, kept `retention_secs`,
/// de-duplicated by `Nats-Msg-Id` like the events stream (the relay's exactly-once).
pub(crate) fn stream_config(config: &fraiseql_config::Config) -> jetstream::stream::Config {
    let s = &config.subscriptions;
    let window = config
        .observers
        .stream
        .duplicate_window_secs
        .min(s.retention_secs);
    jetstream::stream::Config {
        name: s.stream.clone(),
        subjects: vec![format!("{}.>", s.subject_prefix)],
        max_age: Duration::from_secs(s.retention_secs),
        duplicate_window: Duration::from_secs(window),
        num_replicas: s.replicas,
        retention: jetstream::stream::RetentionPolicy::Limits,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    }
}

/// Seconds since the epoch of an RFC 3339 timestamp (PostgreSQL's JSON form of timestamptz).
fn epoch(text: &str) -> Option<f64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// Turns a stream message into an event (`None`: not a change event of ours).
pub(crate) fn event(
    prefix: &str,
    identity: u64,
    subject: &str,
    payload: &[u8],
    sequence: u64,
) -> Option<Event> {
    let topic = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let p: Payload = serde_json::from_slice(payload).ok()?;
    let key = match p.key {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(Event {
        sequence,
        topic: Arc::from(topic),
        key,
        committed: p.timestamp.as_deref().and_then(epoch),
        position: Arc::from(
            Position {
                sequence,
                stream: identity,
            }
            .encode(),
        ),
    })
}

/// The stream's identity: its creation time.
pub(crate) fn identity(info: &jetstream::stream::Info) -> u64 {
    u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0)
}

/// Where the feed stands between sessions.
struct Cursor {
    /// The last sequence dispatched.
    last: u64,
    /// The stream's identity, once read.
    identity: Option<u64>,
}

/// The feed loop: a session until it fails, then another after a pause.
pub(crate) async fn run(
    hub: Arc<Hub>,
    engine: Weak<Engine>,
    js: jetstream::Context,
    config: jetstream::stream::Config,
) {
    let mut cursor = Cursor {
        last: 0,
        identity: None,
    };
    let mut pause = Duration::from_millis(100);
    loop {
        match session(&hub, &engine, &js, &config, &mut cursor).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, last = cursor.last, "subscription feed interrupted; resuming after the last event dispatched");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// One consumer's life: created after the last sequence dispatched, read until it fails.
/// `Ok` only when the engine is gone.
async fn session(
    hub: &Hub,
    engine: &Weak<Engine>,
    js: &jetstream::Context,
    config: &jetstream::stream::Config,
    cursor: &mut Cursor,
) -> Result<(), String> {
    let mut stream = js
        .get_or_create_stream(config.clone())
        .await
        .map_err(|e| format!("change stream: {e}"))?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    let id = identity(info);
    if cursor.identity != Some(id) {
        if cursor.identity.is_some() {
            tracing::warn!(
                "the change stream was created anew: positions handed out before are void"
            );
        }
        cursor.identity = Some(id);
        cursor.last = info.state.last_sequence;
        hub.processed
            .store(cursor.last, std::sync::atomic::Ordering::Release);
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: cursor.last + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            filter_subject: format!("{}.>", hub.config.subject_prefix),
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating the feed's consumer: {e}"))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(MAX_BATCH)
        .heartbeat(Duration::from_secs(2))
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    hub.stream.send_replace(Some(StreamState { identity: id }));
    let prefix = hub.config.subject_prefix.clone();
    let mut expected = 1u64;
    loop {
        let first = match messages.next().await {
            Some(m) => m.map_err(|e| e.to_string())?,
            None => return Err("the consumer's message stream ended".to_owned()),
        };
        let mut batch = vec![first];
        let mut failure = None;
        while batch.len() < MAX_BATCH {
            match messages.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(m),
                Some(Some(Err(e))) => {
                    failure = Some(e.to_string());
                    break;
                }
                Some(None) => {
                    failure = Some("the consumer's message stream ended".to_owned());
                    break;
                }
                None => break,
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        let mut last = cursor.last;
        for m in &batch {
            let info = m.info().map_err(|e| e.to_string())?;
            if info.consumer_sequence != expected {
                // A message was skipped (the server lost the consumer's state): start over
                // from what was dispatched.
                failure = Some(format!(
                    "consumer sequence {} after {}",
                    info.consumer_sequence,
                    expected - 1
                ));
                break;
            }
            expected += 1;
            let sequence = info.stream_sequence;
            if sequence <= last {
                continue;
            }
            last = sequence;
            match event(&prefix, id, &m.subject, &m.payload, sequence) {
                Some(e) => events.push(e),
                None => tracing::warn!(subject = %m.subject, "not a change event; skipped"),
            }
        }
        let Some(engine) = engine.upgrade() else {
            return Ok(());
        };
        dispatch::batch(hub, &engine, &events).await;
        drop(engine);
        cursor.last = last;
        hub.processed
            .store(last, std::sync::atomic::Ordering::Release);
        if let Some(f) = failure {
            return Err(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_messages_become_events() {
        let e = event(
            "fraiseql.changes",
            7,
            "fraiseql.changes.acme.Project.CREATE",
            br#"{"key":"0b7e","entity":"Project","operation":"CREATE","tenant_id":"acme","event_id":"x","timestamp":"2024-01-15T10:00:00.5+00:00"}"#,
            12,
        )
        .expect("event");
        assert_eq!(&*e.topic, "acme.Project.CREATE");
        assert_eq!(e.key, "0b7e");
        assert_eq!(e.sequence, 12);
        assert_eq!(e.committed, Some(1_705_312_800.5));
        assert_eq!(
            Position::decode(&e.position),
            Some(Position {
                sequence: 12,
                stream: 7
            })
        );
        assert!(event("fraiseql.changes", 7, "other.acme.P.CREATE", b"{}", 1).is_none());
        assert!(event(
            "fraiseql.changes",
            7,
            "fraiseql.changes.a.P.CREATE",
            b"nope",
            1
        )
        .is_none());
    }
}
