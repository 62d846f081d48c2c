//! Subscribers: a consumer group is a durable JetStream pull consumer shared by every server
//! instance. Each message runs the group's SQL in its database; the message is acknowledged only
//! after that statement committed, redelivered with backoff on failure, and moved to the dead
//! letters after `max_deliver` deliveries (or kept being retried if even that fails).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::AckKind;
use fraiseql_config::SubscriberConfig;
use futures_util::StreamExt;
use serde_json::Value;
use tracing::Instrument;

use super::handler::{run_handler, Handler};
use super::{dead_letter, ensure_stream, Inner};

/// Messages handled at once per consumer group and instance.
const CONCURRENCY: usize = 16;

fn backoff(s: &SubscriberConfig, delivered: i64) -> Duration {
    let exp = u32::try_from(delivered.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let ms = s
        .backoff_ms
        .saturating_mul(1u64 << exp)
        .min(s.max_backoff_ms);
    Duration::from_millis(ms)
}

async fn handle(
    inner: &Inner,
    s: &SubscriberConfig,
    handler: &Handler,
    msg: async_nats::jetstream::Message,
) {
    let (delivered, sequence) = msg
        .info()
        .map(|i| (i.delivered, i64::try_from(i.stream_sequence).ok()))
        .unwrap_or((1, None));
    let subject = msg.subject.to_string();
    let group = s.consumer_group.as_str();
    // The trace the publisher carried on (`traceparent` header) continues here.
    let span = crate::otel_span!(
        "nats.consume",
        otel.name = %format!("{subject} process"),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination.name = %subject,
        messaging.consumer.group.name = group,
        messaging.message.delivery_count = delivered,
    );
    let traceparent = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(crate::telemetry::TRACEPARENT))
        .map(|v| v.as_str());
    crate::telemetry::set_parent(&span, traceparent, None);
    handle_message(inner, s, handler, msg, subject, delivered, sequence)
        .instrument(span)
        .await
}

async fn handle_message(
    inner: &Inner,
    s: &SubscriberConfig,
    handler: &Handler,
    msg: async_nats::jetstream::Message,
    subject: String,
    delivered: i64,
    sequence: Option<i64>,
) {
    let raw = String::from_utf8_lossy(&msg.payload).into_owned();
    let body: Result<Value, String> =
        serde_json::from_str(&raw).map_err(|e| format!("the message is not JSON: {e}"));
    let result = match &body {
        Ok(b @ Value::Object(_)) => {
            let span = crate::otel_child_span!(
                "subscriber.handle",
                messaging.consumer.group.name = s.consumer_group.as_str(),
            );
            run_handler(inner.routes.pools(), handler, &subject, &raw, b, delivered)
                .instrument(span)
                .await
        }
        Ok(_) => Err("the message is not a JSON object".to_owned()),
        Err(e) => Err(e.clone()),
    };
    let group = s.consumer_group.as_str();
    match result {
        Ok(()) => {
            if let Err(e) = msg.double_ack().await {
                // Not confirmed: JetStream redelivers after ack_wait; the handler must tolerate a
                // second run (the example inserts once per event id).
                tracing::warn!(consumer = group, error = %e, "acknowledgement not confirmed");
            }
            let tenant = body
                .as_ref()
                .ok()
                .and_then(|b| b.get("tenant_id"))
                .and_then(Value::as_str)
                .unwrap_or("");
            inner.metrics.event_processed(tenant, &subject);
        }
        Err(reason) => {
            inner.metrics.handler_failed(group);
            if delivered >= s.max_deliver {
                let event_id = body
                    .as_ref()
                    .ok()
                    .and_then(|b| b.get("event_id"))
                    .and_then(Value::as_str);
                let letter = dead_letter::Letter {
                    consumer: group,
                    subject: &subject,
                    payload: &raw,
                    error: &reason,
                    attempts: delivered,
                    stream: &inner.config.stream.name,
                    sequence,
                    event_id,
                };
                match dead_letter::insert(inner.routes.pools(), &inner.dead_letter_db, &letter)
                    .await
                {
                    Ok(_) => {
                        tracing::error!(consumer = group, %subject, attempts = delivered, error = %reason, "message moved to the dead letters");
                        inner.metrics.dead_lettered(group);
                        if let Err(e) = msg.ack_with(AckKind::Term).await {
                            tracing::warn!(consumer = group, error = %e, "term not sent");
                        }
                    }
                    Err(e) => {
                        // Not even the dead letters take it: keep it in JetStream.
                        tracing::error!(consumer = group, error = %e, "dead letter not written; will retry");
                        let _ = msg
                            .ack_with(AckKind::Nak(Some(Duration::from_millis(s.max_backoff_ms))))
                            .await;
                    }
                }
            } else {
                tracing::warn!(consumer = group, %subject, attempt = delivered, error = %reason, "handler failed; redelivering");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(backoff(s, delivered))))
                    .await;
            }
        }
    }
}

async fn consume(
    inner: &Arc<Inner>,
    s: &SubscriberConfig,
    handler: &Handler,
) -> Result<(), String> {
    let stream = ensure_stream(inner).await?;
    let consumer: pull::Stream = stream
        .get_or_create_consumer(
            &s.consumer_group,
            pull::Config {
                durable_name: Some(s.consumer_group.clone()),
                filter_subject: s.subject.clone(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(s.ack_wait_secs),
                // Unlimited for JetStream: fraiseql counts deliveries itself, so a message
                // leaves only for the dead letters.
                max_deliver: -1,
                max_ack_pending: 1000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let lag = {
        let inner = inner.clone();
        let group = s.consumer_group.clone();
        let mut c: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(&group)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            loop {
                if let Ok(info) = c.info().await {
                    inner.metrics.consumer_lag(&group, info.num_pending);
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let _lag = AbortOnDrop(lag);
    // Errors such as a missed heartbeat are skipped (in-flight handlers keep running); a run of
    // them ends the stream, and the caller attaches again.
    let mut failures = 0u32;
    consumer
        .take_while(move |m| {
            match m {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "consumer stream error");
                }
            }
            std::future::ready(failures < 10)
        })
        .filter_map(|m| std::future::ready(m.ok()))
        .for_each_concurrent(CONCURRENCY, |msg| async move {
            handle(inner, s, handler, msg).await;
        })
        .await;
    Err("the consumer's message stream ended".to_owned())
}

/// Aborts a background task when its owner goes away (cancelled included).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One consumer group's loop: (re)attaches to the stream and consumes until stopped.
pub(crate) async fn run(inner: Arc<Inner>, s: SubscriberConfig, handler: Handler) {
    loop {
        if let Err(e) = consume(&inner, &s, &handler).await {
            tracing::warn!(consumer = %s.consumer_group, error = %e, "consumer stopped; reattaching");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
