//! Subscriptions: a second way out of the pipeline. Mutations write change events to the outbox
//! in their transaction (one per changed row of an entity some `Subscription` field declares
//! with `@event`: `events/outbox.rs` `add_changes`); the relay publishes them to a stream of
//! their own, on `<prefix>.<tenant>.<Entity>.<OPERATION>`.
//!
//! Each instance reads that stream once ([`feed`]); the [`dispatch`]er matches each batch of
//! events to the local subscriptions ([`hub`]) by topic and reads the changed rows for each
//! group of subscribers that share tenant, roles, user and statement ONE time, through the
//! entity's view in their tenant context ([`read`]). Every event carries its position
//! ([`position`]); a subscriber that comes back with one is caught up from the stream
//! ([`catchup`]) before it goes live, without gap or repeat. Transports (WebSocket, SSE) live in
//! `fraiseql-server` and drive a [`ConnectionGuard`].

mod catchup;
mod connection;
mod dispatch;
mod feed;
mod hub;
mod planned;
mod position;
mod read;

pub use connection::{Connection, Item, Kill};
pub use position::Position;

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream;
use fraiseql_config::{Config, SubscriptionsConfig};
use tokio::task::JoinHandle;

use connection::{Phase, Queued, Subscriber};
use hub::Hub;
use planned::Planned;

use crate::document::Prepared;
use crate::error::{ErrorCode, GraphqlError};
use crate::identity::RequestContext;
use crate::metrics::{Metrics, Refusal};
use crate::planning::PlanKey;
use crate::Engine;

pub(crate) use feed::stream_config;

/// A plan with its events' fixed parts worked out (see `hub.rs`).
pub(crate) fn planned(plan: fraiseql_plan::SubscriptionPlan) -> Planned {
    Planned::new(plan)
}

/// Why a subscribe request did not start a subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// The operation is a query or a mutation: run it with `Engine::execute`.
    NotSubscription,
    /// The request is invalid, not allowed or over a limit (WebSocket `error`, SSE 400).
    Errors(Vec<GraphqlError>),
    /// The connection already has a subscription with this id (WebSocket close 4409).
    DuplicateId,
}

/// The running subscriptions of one server instance.
pub struct Subscriptions {
    hub: Arc<Hub>,
    js: jetstream::Context,
    engine: Weak<Engine>,
    /// Plans by (document, operation, variables, roles), shared by the subscribers who send
    /// the same subscription (bounded by bytes).
    plans: moka::sync::Cache<PlanKey, (Prepared, Arc<Planned>), foldhash::fast::RandomState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How long a subscribe waits for the feed to reach the stream (right after start-up).
const READY_WAIT: Duration = Duration::from_secs(5);

impl Subscriptions {
    /// Starts the feed and the housekeeping.
    pub(crate) fn start(
        config: &Config,
        metrics: Arc<Metrics>,
        tenants: Option<crate::tenancy::Tenants>,
        js: jetstream::Context,
        engine: Weak<Engine>,
    ) -> Self {
        let leeway = config.auth.as_ref().map_or(0, |a| a.leeway_secs);
        let hub = Arc::new(Hub::new(config.subscriptions.clone(), leeway, metrics));
        let tasks = vec![
            tokio::spawn(feed::run(
                hub.clone(),
                engine.clone(),
                js.clone(),
                stream_config(config),
            )),
            tokio::spawn(hub::housekeeping(Arc::downgrade(&hub), tenants)),
        ];
        Self {
            hub,
            js,
            engine,
            plans: moka::sync::Cache::builder()
                .weigher(|_: &PlanKey, v: &(Prepared, Arc<Planned>)| {
                    u32::try_from(v.0.text.len() + v.1.plan.read.sql.len() + 512)
                        .unwrap_or(u32::MAX)
                })
                .max_capacity(4 * 1024 * 1024)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            tasks,
        }
    }

    /// `[subscriptions]`.
    pub fn config(&self) -> &SubscriptionsConfig {
        &self.hub.config
    }

    /// Whether the feed has reached the change stream.
    pub fn ready(&self) -> bool {
        self.hub.stream.borrow().is_some()
    }

    /// Opens a connection (`[subscriptions] max_connections`), or says why not.
    pub fn open(&self) -> Result<ConnectionGuard, GraphqlError> {
        Ok(ConnectionGuard(Arc::new(GuardInner {
            conn: self.hub.open()?,
            hub: self.hub.clone(),
        })))
    }

    /// Ends every connection for a shutdown: each writes what it has queued, then closes.
    pub fn shut_down(&self) {
        self.hub.shut_down();
    }

    /// Waits (at most `within`) for every connection to close; whether they all did.
    pub async fn closed(&self, within: Duration) -> bool {
        self.hub.closed(within).await
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.hub.open_connections()
    }

    /// Counts a refusal a transport decided (protocol errors, credentials).
    pub fn refused(&self, why: Refusal) {
        self.hub.metrics.subscription_refused(why);
    }

    /// A cached plan.
    pub(crate) fn plan(&self, key: &PlanKey) -> Option<Arc<Planned>> {
        self.plans.get(key).map(|(_, p)| p)
    }

    /// Keeps a plan.
    pub(crate) fn keep(&self, key: PlanKey, prepared: Prepared, planned: Arc<Planned>) {
        self.plans.insert(key, (prepared, planned));
    }

    /// Registers subscription `id` of `guard`'s connection: live from now, or (with `after`)
    /// caught up from that position first. Returns the position of "now" for a live one.
    pub(crate) async fn register(
        &self,
        guard: &ConnectionGuard,
        id: &str,
        planned: Arc<Planned>,
        ctx: RequestContext,
        after: Option<&str>,
    ) -> Result<Option<String>, Refused> {
        let hub = &self.hub;
        let conn = &guard.0.conn;
        let state = wait_ready(hub).await.ok_or_else(|| {
            Refused::Errors(vec![GraphqlError::new(
                ErrorCode::DatabaseUnavailable,
                "the change stream is not reachable yet; retry shortly",
            )])
        })?;
        let after = match after {
            None => None,
            Some(text) => match Position::decode(text) {
                Some(p) if p.stream == state.identity => Some(p.sequence),
                Some(_) => {
                    hub.metrics.subscription_refused(Refusal::PositionExpired);
                    return Err(Refused::Errors(vec![catchup::expired()]));
                }
                None => {
                    return Err(Refused::Errors(vec![GraphqlError::new(
                        ErrorCode::BadUserInput,
                        "the resume position is not one this server handed out (pass back `extensions.position` of the last event received)",
                    )]))
                }
            },
        };
        let change = &planned.plan.change;
        let tenant = ctx.tenant.as_ref().map(|t| t.key.as_str());
        let topic: Arc<str> = Arc::from(hub::topic(tenant, &change.entity, &change.operation));
        let processed = hub.processed.load(std::sync::atomic::Ordering::Acquire);
        let phase = match after {
            Some(_) => Phase::CatchingUp(Vec::new()),
            None => Phase::Live,
        };
        let sub = Arc::new(Subscriber::new(
            hub.uid(),
            Arc::from(id),
            conn,
            planned,
            ctx,
            topic,
            phase,
            after.unwrap_or(processed),
        ));
        {
            let mut subs = conn
                .subs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if subs.contains_key(id) {
                return Err(Refused::DuplicateId);
            }
            let max = hub.config.max_subscriptions_per_connection;
            if subs.len() >= max {
                hub.metrics.subscription_refused(Refusal::MaxPerConnection);
                return Err(Refused::Errors(vec![GraphqlError::new(
                    ErrorCode::TooManySubscriptions,
                    format!("this connection holds its maximum of {max} subscriptions ([subscriptions] max_subscriptions_per_connection)"),
                )]));
            }
            let tier_max = self.engine.upgrade().and_then(|engine| {
                let rec = sub.ctx.tenant.as_ref()?;
                engine.quotas().tiers().of(rec).max_subscriptions
            });
            hub.index(&sub, tier_max)
                .map_err(|e| Refused::Errors(vec![e]))?;
            subs.insert(sub.id.clone(), sub.clone());
        }
        match after {
            Some(a) => {
                let task = catchup::run(
                    hub.clone(),
                    self.engine.clone(),
                    self.js.clone(),
                    sub,
                    a,
                    state.identity,
                );
                tokio::spawn(task);
                Ok(None)
            }
            None => Ok(Some(
                Position {
                    sequence: processed,
                    stream: state.identity,
                }
                .encode(),
            )),
        }
    }
}

/// The stream's state once the feed reached it (waiting up to [`READY_WAIT`]).
async fn wait_ready(hub: &Hub) -> Option<hub::StreamState> {
    let mut rx = hub.stream.subscribe();
    let ready = tokio::time::timeout(READY_WAIT, rx.wait_for(Option::is_some)).await;
    match ready {
        Ok(Ok(state)) => *state,
        _ => None,
    }
}

/// Ends subscription `sub` from the server's side: it leaves the index and its connection,
/// and the client is told (`errors`, or completed when there are none).
pub(crate) fn end(hub: &Hub, sub: &Arc<Subscriber>, errors: Vec<GraphqlError>) {
    hub.unindex(sub);
    let Some(conn) = sub.conn.upgrade() else {
        return;
    };
    let removed = {
        let mut subs = conn
            .subs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match subs.get(&sub.id) {
            Some(s) if s.uid == sub.uid => subs.remove(&sub.id).is_some(),
            _ => false,
        }
    };
    if removed {
        conn.push(Queued {
            sub: None,
            item: Item::End {
                id: sub.id.clone(),
                errors,
            },
        });
    }
}

/// A transport's hold on one connection: released (its subscriptions ended, its slot freed)
/// when the last clone is dropped (a subscribe still under way holds one).
#[derive(Clone)]
pub struct ConnectionGuard(Arc<GuardInner>);

struct GuardInner {
    conn: Arc<Connection>,
    hub: Arc<Hub>,
}

impl Drop for GuardInner {
    fn drop(&mut self) {
        self.hub.close(&self.conn);
    }
}

impl ConnectionGuard {
    /// The connection.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.0.conn
    }

    /// Gives the connection its caller (after `connection_init`, or the SSE request's
    /// headers): its token's expiry and its tenant's status are watched from now.
    pub fn identify(&self, ctx: RequestContext) {
        self.0.hub.identify(&self.0.conn, ctx);
    }

    /// The caller, once identified.
    pub fn context(&self) -> Option<&RequestContext> {
        self.0.conn.context()
    }

    /// The client stopped subscription `id` (nothing is sent back); whether it was active.
    pub fn unsubscribe(&self, id: &str) -> bool {
        let removed = self
            .0
            .conn
            .subs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        match removed {
            Some(sub) => {
                self.0.hub.unindex(&sub);
                true
            }
            None => false,
        }
    }

    /// The next thing to write.
    pub async fn next(&self) -> Item {
        self.0.conn.next().await
    }

    /// `[subscriptions]`.
    pub fn config(&self) -> &SubscriptionsConfig {
        &self.0.hub.config
    }

    /// Records that an event was written `now` (seconds since the epoch) after its change
    /// was committed at `committed`.
    pub fn sent(&self, committed: Option<f64>) {
        if let Some(c) = committed {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.0.hub.metrics.subscription_latency(now - c);
        }
    }
}
