//! Events: observers write to a transactional outbox (`outbox.rs`); after COMMIT the relay
//! publishes to JetStream with `Nats-Msg-Id` = event id and marks the rows sent; a sweeper
//! re-publishes what was left behind (`relay.rs`); subscribers are durable pull consumers that
//! acknowledge only after their handler's transaction commits (`subscribe.rs`).
//!
//! Nothing is lost: an event exists iff its mutation committed; it stays unsent until JetStream
//! acknowledged it; a subscriber's message is redelivered until its handler committed, or kept
//! in the dead letters. Duplicates (a publish retried after a lost acknowledgement, two instances
//! sweeping the same row) are dropped by JetStream's duplicate window and by handlers that
//! insert once per event id.

pub mod dead_letter;
mod handler;
pub mod outbox;
mod relay;
mod subscribe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use fraiseql_config::{Config, ObserversConfig, Retention};
use tokio::task::JoinHandle;

use crate::connections::{Pools, STARTUP_DDL_LOCK};
use crate::metrics::Metrics;
use crate::resolvers::Resolvers;
use crate::routing::Routes;
use crate::tenancy::{TenantRecord, Tenants};

pub use outbox::{ObserverStatement, Observers, OutboxEvent};

/// Why the event runtime cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// NATS cannot be set up.
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    /// A subscriber's SQL is not a valid template.
    #[error("[[subscribers]] {group}: sql {message}")]
    Template {
        /// The consumer group.
        group: String,
        /// What is wrong.
        message: String,
    },
    /// The outbox or dead letter table cannot be created.
    #[error("creating fraiseql's event tables in database `{database}`: {reason}")]
    Tables {
        /// The database.
        database: String,
        /// Why.
        reason: String,
    },
}

/// Where an outbox lives: a tenant's database or schema, or (single database) `[databases.tenant]`.
#[derive(Debug, Clone)]
pub enum Target {
    /// A tenant (its target's outbox).
    Tenant(Arc<TenantRecord>),
    /// A configured database.
    Database(String),
}

impl Target {
    /// Whose outbox rows, where: a tenant's at its home. Tenants that share one outbox table
    /// (`row_level`) each see only their own rows in it (row-level security by
    /// `app.tenant_key`), so each is a target of its own.
    fn key(&self) -> String {
        match self {
            Target::Tenant(t) => format!(
                "{}\u{0}{}\u{0}{}\u{0}{}",
                t.server, t.database, t.schema, t.key
            ),
            Target::Database(d) => format!("db:{d}"),
        }
    }

    fn label(&self) -> String {
        match self {
            Target::Tenant(t) => t.key.clone(),
            Target::Database(d) => d.clone(),
        }
    }
}

pub(crate) struct Inner {
    pub config: ObserversConfig,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub tenants: Option<Tenants>,
    pub routes: Routes,
    pub metrics: Arc<Metrics>,
    pub dead_letter_db: String,
    /// The change stream of subscriptions, created beside the events stream (its subjects are
    /// published by the same relay).
    pub changes: Option<jetstream::stream::Config>,
    /// Targets with events that may still be unpublished, by target key.
    pub dirty: Mutex<HashMap<String, Dirty>>,
}

/// A target that may have unpublished events.
pub(crate) struct Dirty {
    pub target: Target,
    /// Unsent rows, as last counted.
    pub backlog: u64,
    /// Bumped by every new mark, so a sweep does not clear a mark it did not see.
    pub generation: u64,
}

/// The running event machinery of one server instance.
pub struct Events {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Events {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Events {
    /// Connects to NATS (in the background if it is down: events wait in the outboxes), creates
    /// the stream and the dead letter table, and starts the sweeper and the subscribers.
    pub async fn start(
        config: &Config,
        tenants: Option<Tenants>,
        routes: Routes,
        metrics: Arc<Metrics>,
        resolvers: &Resolvers,
        changes: Option<jetstream::stream::Config>,
    ) -> Result<Self, EventsError> {
        let o = config.observers.clone();
        let client =
            crate::nats::connect(&config.nats, Duration::from_millis(o.publish_timeout_ms)).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_millis(o.publish_timeout_ms));
        let dead_letter_db = dead_letter::database(config);
        let pools = routes.pools();
        ensure_table(pools, &dead_letter_db, dead_letter::DDL).await?;
        if !config.multi_tenancy.enabled {
            // A single database gets its outbox here; tenants get theirs when provisioned.
            ensure_table(pools, fraiseql_config::TENANT_DATABASE, outbox::DDL).await?;
        }
        let mut compiled = Vec::new();
        for s in &config.subscribers {
            compiled.push((s.clone(), handler::compile(s, resolvers)?));
        }
        let inner = Arc::new(Inner {
            config: o,
            client,
            js,
            tenants,
            routes,
            metrics,
            dead_letter_db,
            changes,
            dirty: Mutex::new(HashMap::new()),
        });
        // Series that exist from the start read 0, not "absent", on dashboards.
        for (s, _) in &compiled {
            inner.metrics.consumer_started(&s.consumer_group);
        }
        inner.metrics.outbox_backlog(0);
        let mut tasks = vec![tokio::spawn(relay::run(inner.clone()))];
        for (s, h) in compiled {
            tasks.push(tokio::spawn(subscribe::run(inner.clone(), s, h)));
        }
        Ok(Self {
            inner,
            tasks: Mutex::new(tasks),
        })
    }

    /// The JetStream context (for the subscriptions' feed).
    pub(crate) fn jetstream(&self) -> jetstream::Context {
        self.inner.js.clone()
    }

    /// Whether the NATS connection is up now.
    pub fn connected(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Waits up to `timeout` for the NATS connection.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.connected() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Publishes events just committed to `target`'s outbox, in the background.
    pub fn after_commit(&self, target: Target, events: Vec<OutboxEvent>) {
        if events.is_empty() {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move { relay::publish_committed(&inner, target, events).await });
    }
}

/// Runs `ddl` (idempotent `CREATE … IF NOT EXISTS`) on `[databases.<database>]`.
async fn ensure_table(pools: &Pools, database: &str, ddl: &str) -> Result<(), EventsError> {
    let fail = |reason: String| EventsError::Tables {
        database: database.to_owned(),
        reason,
    };
    let db = pools
        .get(database)
        .ok_or_else(|| fail("not configured".to_owned()))?;
    let client = db.lease().await.map_err(|e| fail(e.to_string()))?;
    client
        .batch_execute(&format!("{STARTUP_DDL_LOCK}\n{ddl}"))
        .await
        .map_err(|e| fail(e.to_string()))
}

/// Creates the stream if missing (subjects, duplicate window, retention, replicas, max age),
/// and the subscriptions' change stream when they are served.
pub(crate) async fn ensure_stream(inner: &Inner) -> Result<jetstream::stream::Stream, String> {
    let s = &inner.config.stream;
    let config = jetstream::stream::Config {
        name: s.name.clone(),
        subjects: s.subjects.clone(),
        duplicate_window: Duration::from_secs(s.duplicate_window_secs),
        retention: match s.retention {
            Retention::Limits => jetstream::stream::RetentionPolicy::Limits,
            Retention::Interest => jetstream::stream::RetentionPolicy::Interest,
            Retention::WorkQueue => jetstream::stream::RetentionPolicy::WorkQueue,
        },
        num_replicas: s.replicas,
        max_age: Duration::from_secs(s.max_age_secs),
        ..Default::default()
    };
    if let Some(changes) = &inner.changes {
        inner
            .js
            .get_or_create_stream(changes.clone())
            .await
            .map_err(|e| format!("change stream {}: {e}", changes.name))?;
    }
    inner
        .js
        .get_or_create_stream(config)
        .await
        .map_err(|e| e.to_string())
}
