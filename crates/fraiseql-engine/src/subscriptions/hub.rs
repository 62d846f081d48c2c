//! The subscriptions of one server instance, indexed for the dispatcher: by topic (`<tenant>.
//! <Entity>.<OPERATION>`, the subjects that feed them), then by group: subscribers with the same
//! tenant, roles, user and statement (selection and arguments) share one read per batch of
//! events. The hub also counts what `[subscriptions]` bounds, and ends connections whose token
//! expired or whose tenant is no longer served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fraiseql_config::SubscriptionsConfig;

use super::connection::{Connection, Identified, Kill, Registry, Subscriber};
use super::planned::Planned;
use crate::error::{ErrorCode, GraphqlError};
use crate::identity::RequestContext;
use crate::metrics::{Metrics, Refusal};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Subscribers who share a statement.
pub(crate) struct Group {
    pub members: HashMap<u64, Arc<Subscriber>>,
}

/// One group's work in a batch: its statement, the context it runs in, its members.
pub(crate) struct GroupSnapshot {
    pub planned: Arc<Planned>,
    pub ctx: RequestContext,
    pub members: Vec<Arc<Subscriber>>,
}

#[derive(Default)]
struct Index {
    /// topic -> group key -> group.
    topics: HashMap<Arc<str>, HashMap<Arc<str>, Group>>,
    /// Subscriptions per tenant token (`[subscriptions] max_subscriptions_per_tenant`).
    per_tenant: HashMap<Arc<str>, usize>,
}

/// The stream the feed reads, once it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// Its identity (creation time, nanoseconds).
    pub identity: u64,
}

/// The instance's subscriptions.
pub(crate) struct Hub {
    pub config: SubscriptionsConfig,
    /// `[auth] leeway_secs`: a token is accepted that long past its `exp`.
    pub leeway: u64,
    pub metrics: Arc<Metrics>,
    index: Mutex<Index>,
    /// Identified connections (token expiry, tenant checks, shutdown).
    connections: Mutex<HashMap<u64, Weak<Connection>>>,
    /// Every open connection (`max_connections`).
    open: AtomicUsize,
    next_uid: AtomicU64,
    /// Set by the feed when it reads the stream.
    pub stream: tokio::sync::watch::Sender<Option<StreamState>>,
    /// The last stream sequence the dispatcher finished.
    pub processed: AtomicU64,
    pub closing: AtomicBool,
}

/// The topic of a tenant's (or, without tenancy, the database's) changes of an entity.
pub(crate) fn topic(tenant: Option<&str>, entity: &str, operation: &str) -> String {
    format!("{}.{entity}.{operation}", tenant.unwrap_or("_"))
}

impl Hub {
    pub fn new(config: SubscriptionsConfig, leeway: u64, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            leeway,
            metrics,
            index: Mutex::new(Index::default()),
            connections: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            next_uid: AtomicU64::new(1),
            stream: tokio::sync::watch::channel(None).0,
            processed: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        }
    }

    pub fn uid(&self) -> u64 {
        self.next_uid.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes a connection slot, unless `max_connections` are open or the server is closing.
    pub fn open(self: &Arc<Self>) -> Result<Arc<Connection>, GraphqlError> {
        let max = self.config.max_connections;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max && !self.closing.load(Ordering::Acquire)).then_some(n + 1)
            });
        if taken.is_err() {
            self.metrics.subscription_refused(Refusal::MaxConnections);
            return Err(GraphqlError::new(
                ErrorCode::TooManySubscriptions,
                format!("this server holds its maximum of {max} subscription connections ([subscriptions] max_connections); retry later or on another instance"),
            ));
        }
        self.metrics.subscription_connections("", 1);
        let registry: Weak<dyn Registry> = Arc::downgrade(self) as Weak<Hub>;
        Ok(Arc::new(Connection::new(self.uid(), registry)))
    }

    /// Gives `conn` its caller; it is then watched for token expiry and its tenant's status.
    pub fn identify(&self, conn: &Arc<Connection>, ctx: RequestContext) {
        let tenant = ctx.tenant.as_ref().map_or("", |t| t.key.as_str());
        let expires_at = ctx
            .identity
            .expires_at
            .map(|e| e.saturating_add(self.leeway));
        let tenant_key = tenant.to_owned();
        if conn.identified.set(Identified { ctx, expires_at }).is_ok() {
            self.metrics.subscription_connections("", -1);
            self.metrics.subscription_connections(&tenant_key, 1);
            lock(&self.connections).insert(conn.uid, Arc::downgrade(conn));
        }
    }

    /// Releases `conn`: its subscriptions end, its slot is freed.
    pub fn close(&self, conn: &Connection) {
        let subs: Vec<Arc<Subscriber>> = lock(&conn.subs).drain().map(|(_, s)| s).collect();
        for s in subs {
            self.unindex(&s);
        }
        let tenant = conn
            .identified
            .get()
            .and_then(|i| i.ctx.tenant.as_ref())
            .map(|t| t.key.clone());
        match conn.identified.get() {
            Some(_) => {
                lock(&self.connections).remove(&conn.uid);
                self.metrics
                    .subscription_connections(tenant.as_deref().unwrap_or(""), -1);
            }
            None => self.metrics.subscription_connections("", -1),
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Adds `sub` (already counted against its connection's limit by the caller) to the index,
    /// unless its tenant holds `max_subscriptions_per_tenant` already, or `tier_max` (its
    /// tier's `max_subscriptions`), whichever is lower. Both count on this instance.
    pub fn index(&self, sub: &Arc<Subscriber>, tier_max: Option<u32>) -> Result<(), GraphqlError> {
        let tenant = tenant_token(&sub.topic);
        let mut index = lock(&self.index);
        let count = index.per_tenant.entry(Arc::from(tenant)).or_insert(0);
        let max = self.config.max_subscriptions_per_tenant;
        if *count >= max {
            drop(index);
            self.metrics.subscription_refused(Refusal::MaxPerTenant);
            return Err(GraphqlError::new(
                ErrorCode::TooManySubscriptions,
                format!("your tenant holds its maximum of {max} subscriptions on this server ([subscriptions] max_subscriptions_per_tenant)"),
            ));
        }
        if let Some(tier) = tier_max.filter(|t| *count >= *t as usize) {
            drop(index);
            self.metrics.subscription_refused(Refusal::MaxPerTier);
            return Err(GraphqlError::new(
                ErrorCode::TooManySubscriptions,
                format!("your plan allows {tier} subscriptions at once on this server, and your tenant holds them all ([tiers] max_subscriptions); end one, or ask for a larger plan"),
            ));
        }
        *count += 1;
        index
            .topics
            .entry(sub.topic.clone())
            .or_default()
            .entry(group_key(sub))
            .or_insert_with(|| Group {
                members: HashMap::new(),
            })
            .members
            .insert(sub.uid, sub.clone());
        drop(index);
        self.metrics.subscriptions_active(tenant_label(&sub.ctx), 1);
        Ok(())
    }

    /// Removes `sub` from the index (and its connection's table: the caller's business).
    pub fn unindex(&self, sub: &Subscriber) {
        let mut index = lock(&self.index);
        let Some(groups) = index.topics.get_mut(&sub.topic) else {
            return;
        };
        let key = group_key(sub);
        let mut removed = false;
        if let Some(g) = groups.get_mut(&key) {
            removed = g.members.remove(&sub.uid).is_some();
            if g.members.is_empty() {
                groups.remove(&key);
            }
        }
        if groups.is_empty() {
            index.topics.remove(&sub.topic);
        }
        if removed {
            let tenant = tenant_token(&sub.topic);
            if let Some(n) = index.per_tenant.get_mut(tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    index.per_tenant.remove(tenant);
                }
            }
            drop(index);
            self.metrics
                .subscriptions_active(tenant_label(&sub.ctx), -1);
        }
    }

    /// The groups subscribed to `topic` now.
    pub fn groups(&self, topic: &str) -> Vec<GroupSnapshot> {
        let index = lock(&self.index);
        let Some(groups) = index.topics.get(topic) else {
            return Vec::new();
        };
        groups
            .values()
            .filter_map(|g| {
                let first = g.members.values().next()?;
                Some(GroupSnapshot {
                    planned: first.planned.clone(),
                    ctx: first.ctx.clone(),
                    members: g.members.values().cloned().collect(),
                })
            })
            .collect()
    }

    /// Whether any subscription listens to `topic`.
    pub fn listens(&self, topic: &str) -> bool {
        lock(&self.index).topics.contains_key(topic)
    }

    /// Identified connections still open.
    fn live_connections(&self) -> Vec<Arc<Connection>> {
        lock(&self.connections)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Ends connections whose token expired; returns the tenants of the others (to check).
    fn expire(&self, now: u64) -> Vec<Arc<Connection>> {
        let mut alive = Vec::new();
        for conn in self.live_connections() {
            let expired = conn
                .identified
                .get()
                .and_then(|i| i.expires_at)
                .is_some_and(|e| e <= now);
            if expired {
                conn.kill(Kill::TokenExpired);
            } else {
                alive.push(conn);
            }
        }
        alive
    }

    /// Kills every connection for the shutdown; they write what is queued, then close.
    pub fn shut_down(&self) {
        self.closing.store(true, Ordering::Release);
        for conn in self.live_connections() {
            conn.kill(Kill::Shutdown);
        }
    }

    /// Waits (at most `within`) until every connection is closed.
    pub async fn closed(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.open.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Registry for Hub {
    fn killed(&self, why: Refusal, subs: Vec<Arc<Subscriber>>) {
        self.metrics.subscription_refused(why);
        for s in subs {
            self.unindex(&s);
        }
    }
}

/// The tenant part of a topic.
fn tenant_token(topic: &str) -> &str {
    topic.split('.').next().unwrap_or("_")
}

fn tenant_label(ctx: &RequestContext) -> &str {
    ctx.tenant.as_ref().map_or("", |t| t.key.as_str())
}

/// Subscribers share a group (one statement per batch) when they share the statement, the
/// roles and the user: the session sets `app.roles` and `app.user_id`, which policies may read.
fn group_key(sub: &Subscriber) -> Arc<str> {
    let id = &sub.ctx.identity;
    Arc::from(format!(
        "{}\u{0}{:?}\u{0}{:?}",
        sub.planned.statement, id.roles, id.subject
    ))
}

/// Every second: connections whose token expired are ended; so are those whose tenant is
/// no longer served as it was (suspended, removed, or moved to another database), checked
/// against the registry as requests are (its answers are cached a few seconds).
pub(crate) async fn housekeeping(hub: Weak<Hub>, tenants: Option<crate::tenancy::Tenants>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let alive = hub.expire(now);
        let Some(tenants) = &tenants else { continue };
        let mut verdicts: HashMap<String, bool> = HashMap::new();
        for conn in alive {
            let Some(rec) = conn.context().and_then(|c| c.tenant.clone()) else {
                continue;
            };
            let served = match verdicts.get(&rec.key) {
                Some(v) => *v,
                None => {
                    let v = match tenants.resolve(&rec.key).await {
                        Ok(now) => {
                            now.server == rec.server
                                && now.database == rec.database
                                && now.schema == rec.schema
                        }
                        Err(crate::tenancy::TenantError::RegistryUnavailable) => true,
                        Err(_) => false,
                    };
                    verdicts.insert(rec.key.clone(), v);
                    v
                }
            };
            if !served {
                conn.kill(Kill::TenantGone);
            }
        }
    }
}
