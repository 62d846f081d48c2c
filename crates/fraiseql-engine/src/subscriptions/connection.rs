//! One client connection (a WebSocket, or one SSE response) as the engine sees it: its
//! subscriptions and the queue of what is to be written to it. Each subscription may have at
//! most `[subscriptions] buffer` events queued; the dispatcher never waits for a client: a
//! subscriber whose buffer is full has its connection killed ("too slow") and costs the others
//! nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use tokio::sync::Notify;

use super::planned::Planned;
use crate::error::GraphqlError;
use crate::identity::RequestContext;
use crate::metrics::Refusal;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a connection tells the index it belongs to (the hub) when it is killed.
pub(crate) trait Registry: Send + Sync {
    /// Counts the refusal `why`, and takes `subs` out of the index: nothing more is read or
    /// queued for a connection that is going away, however long its socket takes to close.
    fn killed(&self, why: Refusal, subs: Vec<Arc<Subscriber>>);
}

/// Why the server ends a whole connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kill {
    /// A subscriber's buffer of `buffer` events was full: the client does not read.
    TooSlow {
        /// `[subscriptions] buffer`.
        buffer: usize,
    },
    /// The token expired.
    TokenExpired,
    /// The tenant was suspended, moved or removed.
    TenantGone,
    /// The server is shutting down (queued events are written first).
    Shutdown,
}

impl Kill {
    /// The reason, for a close frame or a log line.
    pub fn reason(&self) -> String {
        match self {
            Kill::TooSlow { buffer } => {
                format!("subscriber too slow: buffer of {buffer} events full")
            }
            Kill::TokenExpired => "token expired".to_owned(),
            Kill::TenantGone => "tenant suspended or moved; subscribe again later".to_owned(),
            Kill::Shutdown => "server shutting down".to_owned(),
        }
    }
}

/// What a transport writes next.
#[derive(Debug)]
pub enum Item {
    /// An event of subscription `id`: its execution result (`extensions.position` included).
    Next {
        /// The client's subscription id.
        id: Arc<str>,
        /// `{"data":{...},"extensions":{"position":"..."}}`
        body: Bytes,
        /// The event's position (SSE `id:`).
        position: Arc<str>,
        /// When its change was written, in seconds since the epoch (the latency histogram).
        committed: Option<f64>,
    },
    /// Subscription `id` ended: with `errors`, or completed when there are none.
    End {
        /// The client's subscription id.
        id: Arc<str>,
        /// Why (empty: it completed).
        errors: Vec<GraphqlError>,
    },
    /// The connection must end.
    Killed(Kill),
}

/// A queued item, with the subscriber whose buffer it counts against.
pub(crate) struct Queued {
    pub sub: Option<Arc<Subscriber>>,
    pub item: Item,
}

/// Where a subscriber stands: live, or catching up from a position (events the feed brings
/// meanwhile are held, then sent after the missed ones, each once).
pub(crate) enum Phase {
    Live,
    CatchingUp(Vec<Held>),
}

/// A live event held while its subscriber catches up.
pub(crate) struct Held {
    pub sequence: u64,
    pub body: Bytes,
    pub position: Arc<str>,
    pub committed: Option<f64>,
}

/// One subscription.
pub(crate) struct Subscriber {
    pub uid: u64,
    /// The client's id for it.
    pub id: Arc<str>,
    pub conn: Weak<Connection>,
    pub planned: Arc<Planned>,
    pub ctx: RequestContext,
    /// `<tenant>.<Entity>.<OPERATION>`: the subjects that feed it, past the prefix.
    pub topic: Arc<str>,
    /// Events queued and not yet taken by the writer.
    pending: AtomicUsize,
    /// The stream sequence of the last event queued: nothing at or before it is sent again.
    last_sent: AtomicU64,
    pub phase: Mutex<Phase>,
}

/// What [`Subscriber::offer`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    Queued,
    Held,
    /// Already sent (a catch-up delivered it).
    Skipped,
    /// The buffer was full: the connection is killed.
    Dropped,
    /// The connection is gone.
    Gone,
}

impl Subscriber {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        uid: u64,
        id: Arc<str>,
        conn: &Arc<Connection>,
        planned: Arc<Planned>,
        ctx: RequestContext,
        topic: Arc<str>,
        phase: Phase,
        after: u64,
    ) -> Self {
        Self {
            uid,
            id,
            conn: Arc::downgrade(conn),
            planned,
            ctx,
            topic,
            pending: AtomicUsize::new(0),
            last_sent: AtomicU64::new(after),
            phase: Mutex::new(phase),
        }
    }

    /// The body of one event: the row under the field's response key, the `[rbac]` errors of
    /// the selection, the position.
    pub fn body(&self, row: &str, position: &str) -> Bytes {
        self.planned.body(row, position)
    }

    /// Offers a live event (in stream order). While catching up it is held; else queued
    /// unless already sent.
    pub fn offer(
        self: &Arc<Self>,
        sequence: u64,
        row: &str,
        position: &Arc<str>,
        committed: Option<f64>,
        buffer: usize,
    ) -> Offered {
        let mut phase = lock(&self.phase);
        if let Phase::CatchingUp(held) = &mut *phase {
            if held.len() >= buffer {
                drop(phase);
                return self.overflow(buffer);
            }
            held.push(Held {
                sequence,
                body: self.body(row, position),
                position: position.clone(),
                committed,
            });
            return Offered::Held;
        }
        drop(phase);
        self.queue(
            sequence,
            self.body(row, position),
            position,
            committed,
            buffer,
        )
    }

    /// Queues an event for the writer unless it was sent already or the buffer is full.
    pub fn queue(
        self: &Arc<Self>,
        sequence: u64,
        body: Bytes,
        position: &Arc<str>,
        committed: Option<f64>,
        buffer: usize,
    ) -> Offered {
        if sequence <= self.last_sent.load(Ordering::Acquire) {
            return Offered::Skipped;
        }
        let Some(conn) = self.conn.upgrade() else {
            return Offered::Gone;
        };
        if self.pending.load(Ordering::Acquire) >= buffer {
            return self.overflow(buffer);
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.last_sent.store(sequence, Ordering::Release);
        conn.push(Queued {
            sub: Some(self.clone()),
            item: Item::Next {
                id: self.id.clone(),
                body,
                position: position.clone(),
                committed,
            },
        });
        Offered::Queued
    }

    fn overflow(&self, buffer: usize) -> Offered {
        if let Some(conn) = self.conn.upgrade() {
            conn.kill(Kill::TooSlow { buffer });
        }
        Offered::Dropped
    }

    /// Events queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// What a connection knows of its caller once identified.
pub(crate) struct Identified {
    pub ctx: RequestContext,
    /// When the token stops being accepted (its `exp` plus `[auth] leeway_secs`).
    pub expires_at: Option<u64>,
}

/// A client connection. The transport owns it through a [`super::ConnectionGuard`].
pub struct Connection {
    pub(crate) uid: u64,
    queue: Mutex<VecDeque<Queued>>,
    wake: Notify,
    /// Notified whenever the writer takes an event (a catch-up waits for room).
    pub(crate) drained: Notify,
    kill: Mutex<Option<Kill>>,
    dead: Notify,
    pub(crate) identified: OnceLock<Identified>,
    pub(crate) subs: Mutex<HashMap<Arc<str>, Arc<Subscriber>>>,
    registry: Weak<dyn Registry>,
}

impl Connection {
    pub(crate) fn new(uid: u64, registry: Weak<dyn Registry>) -> Self {
        Self {
            uid,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            drained: Notify::new(),
            kill: Mutex::new(None),
            dead: Notify::new(),
            identified: OnceLock::new(),
            subs: Mutex::new(HashMap::new()),
            registry,
        }
    }

    pub(crate) fn push(&self, q: Queued) {
        lock(&self.queue).push_back(q);
        self.wake.notify_one();
    }

    /// Ends the connection for `why` (the first reason stays, and is counted).
    pub fn kill(&self, why: Kill) {
        let mut k = lock(&self.kill);
        if k.is_some() {
            return;
        }
        let refusal = match why {
            Kill::TooSlow { .. } => Some(Refusal::TooSlow),
            Kill::TokenExpired => Some(Refusal::TokenExpired),
            Kill::TenantGone => Some(Refusal::TenantGone),
            Kill::Shutdown => None,
        };
        *k = Some(why);
        drop(k);
        if let (Some(r), Some(registry)) = (refusal, self.registry.upgrade()) {
            let subs: Vec<Arc<Subscriber>> = lock(&self.subs).drain().map(|(_, s)| s).collect();
            registry.killed(r, subs);
        }
        self.wake.notify_one();
        self.dead.notify_waiters();
    }

    /// Completes when the connection is killed for a reason other than a shutdown (a writer
    /// stuck on a client that does not read gives up then).
    pub async fn dead(&self) {
        loop {
            let notified = self.dead.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.killed().is_some_and(|k| k != Kill::Shutdown) {
                return;
            }
            notified.await;
        }
    }

    /// Why the connection was killed, if it was.
    pub fn killed(&self) -> Option<Kill> {
        lock(&self.kill).clone()
    }

    /// The next thing to write: queued events in order; a kill at once (a shutdown after the
    /// queue is written).
    pub async fn next(&self) -> Item {
        loop {
            let kill = self.killed();
            if let Some(k) = kill.as_ref().filter(|k| **k != Kill::Shutdown) {
                return Item::Killed(k.clone());
            }
            let popped = {
                let mut q = lock(&self.queue);
                let item = q.pop_front();
                if q.is_empty() && q.capacity() > 64 {
                    // A burst is over: give its memory back.
                    q.shrink_to(8);
                }
                item
            };
            if let Some(q) = popped {
                if let Some(sub) = &q.sub {
                    sub.pending.fetch_sub(1, Ordering::AcqRel);
                    self.drained.notify_waiters();
                }
                return q.item;
            }
            if let Some(k) = kill {
                return Item::Killed(k);
            }
            self.wake.notified().await;
        }
    }

    /// The caller, once identified.
    pub fn context(&self) -> Option<&RequestContext> {
        self.identified.get().map(|i| &i.ctx)
    }

    /// How many subscriptions it holds.
    pub fn subscriptions(&self) -> usize {
        lock(&self.subs).len()
    }

    /// Whether subscription `id` is active.
    pub fn has(&self, id: &str) -> bool {
        lock(&self.subs).contains_key(id)
    }
}
