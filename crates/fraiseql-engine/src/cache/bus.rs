//! Cache invalidations between server instances, over core NATS (no JetStream): after a
//! mutation commits, its instance publishes `{subject}.invalidate` and waits (briefly) for an
//! acknowledgement from every other live instance before answering, so a client that got the
//! mutation's answer finds no outdated answer on any instance. Instances know each other from
//! `{subject}.presence`, published every second. An instance that is not connected to NATS
//! stops serving cached answers (it could miss invalidations) until it is connected again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::ResultCache;

/// How often an instance says it is alive.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// An instance not heard of for this long is not waited for.
const PRESENCE_TTL: Duration = Duration::from_secs(3);
/// The longest a mutation waits for acknowledgements.
const ACK_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Serialize, Deserialize)]
struct Invalidation {
    origin: u64,
    tenant: String,
    /// `None`: the mutation did not say what it changed.
    entities: Option<Vec<String>>,
}

/// This instance's end of the invalidation bus.
pub struct CacheBus {
    client: async_nats::Client,
    subject: String,
    id: u64,
    peers: Mutex<HashMap<u64, Instant>>,
}

impl std::fmt::Debug for CacheBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBus")
            .field("subject", &self.subject)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// NATS could not be set up.
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    /// Subscribing failed.
    #[error("cache invalidation subscription failed: {0}")]
    Subscribe(String),
}

impl CacheBus {
    /// Connects (`[nats]`), subscribes and starts announcing this instance. `cache` stops
    /// serving while the connection is down.
    pub async fn start(
        config: &fraiseql_config::NatsConfig,
        subject: &str,
        cache: Arc<ResultCache>,
    ) -> Result<Arc<Self>, BusError> {
        let client = crate::nats::connect(config, Duration::from_secs(5)).await?;
        let bus = Arc::new(Self {
            client,
            subject: subject.to_owned(),
            id: rand::random(),
            peers: Mutex::new(HashMap::new()),
        });
        let sub = |s: String| {
            let client = bus.client.clone();
            async move {
                client
                    .subscribe(s)
                    .await
                    .map_err(|e| BusError::Subscribe(e.to_string()))
            }
        };
        let mut invalidations = sub(format!("{subject}.invalidate")).await?;
        let mut presence = sub(format!("{subject}.presence")).await?;
        {
            let bus = bus.clone();
            let cache = cache.clone();
            tokio::spawn(async move {
                while let Some(msg) = invalidations.next().await {
                    let Ok(inv) = serde_json::from_slice::<Invalidation>(&msg.payload) else {
                        tracing::warn!("malformed cache invalidation ignored");
                        continue;
                    };
                    if inv.origin != bus.id {
                        cache.invalidate(&inv.tenant, inv.entities.as_deref());
                    }
                    if let Some(reply) = msg.reply {
                        let _ = bus.client.publish(reply, bus.id.to_string().into()).await;
                    }
                }
            });
        }
        {
            let bus = bus.clone();
            tokio::spawn(async move {
                while let Some(msg) = presence.next().await {
                    let Some(id) = std::str::from_utf8(&msg.payload)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    if id != bus.id {
                        let mut peers = bus.peers.lock().unwrap_or_else(|e| e.into_inner());
                        peers.insert(id, Instant::now());
                        // Bounded by the instances alive: the forgotten ones go.
                        peers.retain(|_, seen| seen.elapsed() < PRESENCE_TTL * 4);
                    }
                }
            });
        }
        {
            let bus = bus.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PRESENCE_EVERY / 10);
                let mut n = 0u32;
                loop {
                    tick.tick().await;
                    let connected =
                        bus.client.connection_state() == async_nats::connection::State::Connected;
                    cache.set_serving(connected);
                    if connected && n.is_multiple_of(10) {
                        let subject = format!("{}.presence", bus.subject);
                        let _ = bus.client.publish(subject, bus.id.to_string().into()).await;
                    }
                    n = n.wrapping_add(1);
                }
            });
        }
        Ok(bus)
    }

    /// Other instances heard of lately.
    pub fn peers(&self) -> usize {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .values()
            .filter(|seen| seen.elapsed() < PRESENCE_TTL)
            .count()
    }

    fn payload(&self, tenant: &str, entities: Option<&[String]>) -> Option<bytes::Bytes> {
        serde_json::to_vec(&Invalidation {
            origin: self.id,
            tenant: tenant.to_owned(),
            entities: entities.map(<[String]>::to_vec),
        })
        .ok()
        .map(Into::into)
    }

    /// Tells the other instances that a mutation of `tenant` committed, and waits until each
    /// live one has applied it (at most [`ACK_TIMEOUT`]). With no other instance heard of, it
    /// does not wait (one starting now has nothing cached yet). Cut off from NATS, the message
    /// is queued by the client and reaches them on reconnection; until then they may serve
    /// answers this mutation outdated (logged).
    pub async fn publish(&self, tenant: &str, entities: Option<&[String]>) {
        let Some(payload) = self.payload(tenant, entities) else {
            return;
        };
        let subject = format!("{}.invalidate", self.subject);
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if self.peers() == 0 || !connected {
            if !connected {
                tracing::warn!(
                    tenant,
                    "NATS is not connected: other instances get this cache invalidation when it is"
                );
            }
            let _ = tokio::time::timeout(ACK_TIMEOUT, self.client.publish(subject, payload)).await;
            return;
        }
        if tokio::time::timeout(ACK_TIMEOUT * 2, self.publish_and_wait(subject, payload))
            .await
            .is_err()
        {
            tracing::warn!(tenant, "cache invalidation not acknowledged in time");
        }
    }

    async fn publish_and_wait(&self, subject: String, payload: bytes::Bytes) {
        let waiting_for = self.peers();
        let inbox = self.client.new_inbox();
        let mut acks = match self.client.subscribe(inbox.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cache invalidation not sent");
                return;
            }
        };
        if let Err(e) = self
            .client
            .publish_with_reply(subject, inbox, payload)
            .await
        {
            tracing::warn!(error = %e, "cache invalidation not sent");
            return;
        }
        let _ = self.client.flush().await;
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        let mut got = 0;
        // Our own subscription answers too.
        while got < waiting_for + 1 {
            match tokio::time::timeout_at(deadline, acks.next()).await {
                Ok(Some(_)) => got += 1,
                _ => {
                    tracing::warn!(
                        acknowledged = got.saturating_sub(1),
                        expected = waiting_for,
                        "not every server instance acknowledged a cache invalidation in time"
                    );
                    break;
                }
            }
        }
        let _ = acks.unsubscribe().await;
    }
}
