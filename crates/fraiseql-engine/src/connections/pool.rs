//! Connections under one budget, shared by keys. A pool holds connections to any number of
//! [`Target`]s (tenant databases, or one shared database) and lends them per share (a tenant,
//! or the database itself): at most `budget` connections are open in all, a share has at most
//! `per_share` in use, and when the budget is spent a request closes the least recently used
//! idle connection of any target and opens its own.
//!
//! Written by hand because no pool crate does this: deadpool and bb8 pool one target each with a
//! fixed size, while tenancy needs one budget across thousands of targets with per-tenant shares.
//!
//! When the budget is spent and nothing is idle, a request waits its share's turn: connections
//! that come back (and budget freed by closed ones) are handed over round-robin across the
//! waiting shares, weighted (a tenant's plan: `fair.rs`), not first come first served, so one
//! tenant's flood of waiting requests cannot starve another's. A connection handed to a share
//! of another target is closed and its budget opens the waiter's own.
//!
//! Invariants: open connections <= budget (a permit lives inside each connection); a share has at
//! most `per_share` leases; a connection whose transaction was not seen to end is closed, never
//! lent again; each connection keeps at most `statements` prepared statements (least recently
//! used ones are closed on the server).
//!
//! Affinity (`schema_per_tenant`, where the tenants of one database share the authenticator's
//! connections): a backend that serves every tenant re-plans the same statement under each
//! tenant's role and search_path (plancache.c re-plans when either changed) and keeps its catalog
//! caches warm for none of them; 1,000 tenants round-robin ran at 0.24x of `row_level` that way
//! (bench/tenants.sh). So each connection is opened for one affinity group (a hash of the tenant
//! key), a request takes an idle connection of its group, else opens one while the budget allows,
//! else borrows the idle one of the nearest following group; and a tenant's statements are kept
//! under its own scope ([`Lease::with_scope`]). A connection then meets a few tenants, each with
//! plans of its own.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Statement};

use super::fair::FairQueue;
use super::wire::{Wire, WireLease};
use super::Target;

/// A connection's place in the budget. Freed (the connection closed), it goes to the request
/// whose turn it is, if one waits; else back to the budget.
struct Budget {
    permit: Option<OwnedSemaphorePermit>,
    pool: Weak<Pool>,
}

impl Budget {
    fn into_raw(mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if let (Some(permit), Some(pool)) = (self.permit.take(), self.pool.upgrade()) {
            pool.release(permit);
        }
    }
}

/// A statement prepared on a connection: by the driver, or by name on its socket (`wire.rs`).
enum Prepared {
    Driver(Statement),
    Named(Arc<str>),
}

impl Prepared {
    fn driver(&self) -> Option<&Statement> {
        match self {
            Prepared::Driver(s) => Some(s),
            Prepared::Named(_) => None,
        }
    }
}

/// One open connection with its prepared statements.
pub struct Conn {
    client: Client,
    // Behind a lock so a connection shared by a request's resolvers can still prepare. One
    // cache for both kinds, so `statements` bounds what the connection holds on the server.
    statements: Mutex<LruCache<Box<str>, Prepared>>,
    open: Budget,
    last_used: Instant,
    /// The affinity group it was opened for.
    group: u64,
    /// Its socket, lendable to a pipelined read (`None` if opened the driver's way).
    wire: Option<Wire>,
    /// Named statements pushed out of the cache, closed with the next pipelined read.
    closing: Mutex<Vec<Arc<str>>>,
    /// The next statement name's number.
    names: AtomicU64,
}

impl Conn {
    /// The driver's client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LruCache<Box<str>, Prepared>> {
        // A panic while holding it cannot leave the map inconsistent: keep using it.
        self.statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Statements for `sqls`, preparing the missing ones together (one round trip). A statement
    /// pushed out of the cache is closed on the server once nobody holds it.
    pub async fn prepare_all(
        &self,
        sqls: &[&str],
    ) -> Result<Vec<Statement>, tokio_postgres::Error> {
        let mut out: Vec<Option<Statement>> = Vec::with_capacity(sqls.len());
        let mut missing = Vec::new();
        {
            let mut cache = self.cache();
            for (i, sql) in sqls.iter().enumerate() {
                match cache.get(*sql).and_then(Prepared::driver) {
                    Some(s) => out.push(Some(s.clone())),
                    None => {
                        out.push(None);
                        missing.push(i);
                    }
                }
            }
        }
        if !missing.is_empty() {
            let prepared = futures_util::future::join_all(
                missing.iter().map(|i| self.client.prepare(sqls[*i])),
            )
            .await;
            for (i, stmt) in missing.into_iter().zip(prepared) {
                let stmt = stmt?;
                self.keep(sqls[i], Prepared::Driver(stmt.clone()));
                out[i] = Some(stmt);
            }
            self.close_named().await;
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One statement, prepared once per connection.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache().get(sql).and_then(Prepared::driver) {
            return Ok(s.clone());
        }
        let stmt = self.client.prepare(sql).await?;
        self.keep(sql, Prepared::Driver(stmt.clone()));
        self.close_named().await;
        Ok(stmt)
    }

    /// Closes the named statements a prepare of the driver's pushed out of the cache (one more
    /// round trip, only then), so the connection holds no more than the cache's bound on the
    /// server even when no pipelined read comes by to close them. Kept for later if it fails
    /// (inside an aborted transaction).
    async fn close_named(&self) {
        let names = std::mem::take(
            &mut *self
                .closing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if names.is_empty() {
            return;
        }
        // The names are ours (`fqw` and a number), never a client's text.
        let sql: String = names
            .iter()
            .map(|n| format!("DEALLOCATE \"{n}\";"))
            .collect();
        if self.client.batch_execute(&sql).await.is_err() {
            self.closing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(names);
        }
    }

    /// Caches `p` for `key`. What is pushed out goes: a driver's statement is closed once
    /// nobody holds it, a named one with the next pipelined read.
    fn keep(&self, key: &str, p: Prepared) {
        let pushed = self.cache().push(Box::from(key), p);
        if let Some((_, Prepared::Named(name))) = pushed {
            self.closing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(name);
        }
    }

    /// The socket lent for one pipelined read, with the names of the statements `keys` (cache
    /// keys, one per statement; `true` where it must be parsed first) and the names to close.
    /// `None` when the connection has no socket of its own, its driver is mid-request, or more
    /// statements are asked than the cache keeps. A name is kept before its statement is parsed:
    /// a read that fails leaves the connection to be closed, so no name outlives a failed parse.
    fn lend(&self, keys: &[&str]) -> Option<WireLease<'_>> {
        let wire = self.wire.as_ref()?;
        if keys.len() > self.cache().cap().get() {
            return None;
        }
        let lent = wire.lend()?;
        let mut names = Vec::with_capacity(keys.len());
        for k in keys {
            let known = match self.cache().get(*k) {
                Some(Prepared::Named(n)) => Some(n.clone()),
                _ => None,
            };
            match known {
                Some(n) => names.push((n, false)),
                None => {
                    let id = self.names.fetch_add(1, Ordering::Relaxed);
                    let name: Arc<str> = Arc::from(format!("fqw{id}"));
                    self.keep(k, Prepared::Named(name.clone()));
                    names.push((name, true));
                }
            }
        }
        let closing = std::mem::take(
            &mut *self
                .closing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Some(WireLease {
            lent,
            names,
            closing,
        })
    }

    /// Statements prepared on this connection now.
    pub fn prepared(&self) -> usize {
        self.cache().len()
    }

    /// The cached statements of `sqls` (`None` where not prepared yet), marked recently used.
    pub fn cached(&self, sqls: &[&str]) -> Vec<Option<Statement>> {
        let mut cache = self.cache();
        sqls.iter()
            .map(|s| cache.get(*s).and_then(Prepared::driver).cloned())
            .collect()
    }

    /// Keeps `stmt`, prepared by the caller, for `sql`.
    pub fn remember(&self, sql: &str, stmt: &Statement) {
        self.keep(sql, Prepared::Driver(stmt.clone()));
    }
}

struct Idle {
    key: Arc<str>,
    conn: Conn,
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct IdleSet {
    /// Idle connections by recency (oldest first), keyed by a sequence number.
    lru: BTreeMap<u64, Idle>,
    /// Sequence numbers of each target's idle connections (newest last).
    by_key: FastMap<Arc<str>, VecDeque<u64>>,
}

impl IdleSet {
    /// The newest idle connection of `key`.
    fn take(&mut self, key: &str) -> Option<Conn> {
        self.take_by(key, |seqs, _| seqs.len().checked_sub(1))
    }

    /// The newest idle connection of `key` opened for `group`.
    fn take_in_group(&mut self, key: &str, group: u64) -> Option<Conn> {
        self.take_by(key, |seqs, lru| {
            seqs.iter()
                .rposition(|s| lru.get(s).is_some_and(|i| i.conn.group == group))
        })
    }

    /// The idle connection of `key` whose group follows `group` most closely (of `groups`).
    fn take_nearest(&mut self, key: &str, group: u64, groups: u64) -> Option<Conn> {
        self.take_by(key, |seqs, lru| {
            let distance = |s: &u64| {
                lru.get(s)
                    .map_or(u64::MAX, |i| (i.conn.group + groups - group) % groups)
            };
            let (at, _) = seqs
                .iter()
                .enumerate()
                .rev()
                .min_by_key(|(_, s)| distance(s))?;
            Some(at)
        })
    }

    /// Removes and returns the idle connection of `key` at the position `pick` chooses among the
    /// target's sequence numbers (oldest first).
    fn take_by(
        &mut self,
        key: &str,
        pick: impl FnOnce(&VecDeque<u64>, &BTreeMap<u64, Idle>) -> Option<usize>,
    ) -> Option<Conn> {
        let seqs = self.by_key.get_mut(key)?;
        let seq = seqs.remove(pick(seqs, &self.lru)?)?;
        if seqs.is_empty() {
            self.by_key.remove(key);
        }
        self.lru.remove(&seq).map(|i| i.conn)
    }

    fn evict_oldest(&mut self) -> Option<Conn> {
        let (seq, idle) = self.lru.pop_first()?;
        if let Some(seqs) = self.by_key.get_mut(&idle.key) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.by_key.remove(&idle.key);
            }
        }
        Some(idle.conn)
    }

    /// Removes every idle connection of targets whose key starts with `prefix` (the caller
    /// closes them, outside the pool's lock).
    fn evict_matching(&mut self, prefix: &str) -> Vec<Conn> {
        let keys: Vec<Arc<str>> = self
            .by_key
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for k in keys {
            for seq in self.by_key.remove(&k).unwrap_or_default() {
                out.extend(self.lru.remove(&seq).map(|i| i.conn));
            }
        }
        out
    }
}

/// How a pool is sized.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Most connections open at once, all targets together.
    pub budget: usize,
    /// Most connections one share uses at once.
    pub per_share: usize,
    /// Longest wait for a connection.
    pub wait: Duration,
    /// Prepared statements kept per connection.
    pub statements: usize,
}

/// Connections per affinity group: enough that a group's concurrent requests rarely borrow
/// another group's, few enough that each connection meets few tenants.
const GROUP_CONNECTIONS: usize = 4;

/// A request waiting for its turn at the budget.
struct Waiter {
    target: Arc<str>,
    tx: oneshot::Sender<Grant>,
}

/// What a waiter is handed: a connection of its target, or budget to open one.
// Moved once per hand-over, never kept in bulk: boxing the connection would cost an allocation
// on every connection returned.
#[allow(clippy::large_enum_variant)]
enum Grant {
    Conn(Conn),
    Budget(Budget),
}

/// What comes free: a connection (of a target), or budget.
#[allow(clippy::large_enum_variant)]
enum Freed {
    Conn(Arc<str>, Conn),
    Budget(OwnedSemaphorePermit),
}

/// The idle connections and the waiters, under one lock, so nothing that comes back is missed
/// by a request about to wait. Nothing is closed (no `Conn` or `Budget` dropped) and nothing is
/// handed over while it is held: a freed budget takes it again.
#[derive(Default)]
struct State {
    idle: IdleSet,
    waiters: FairQueue<Waiter>,
}

/// Connections of many targets under one budget.
pub struct Pool {
    open: Arc<Semaphore>,
    size: PoolSize,
    state: Mutex<State>,
    shares: Mutex<FastMap<Box<str>, Arc<Semaphore>>>,
    seq: AtomicU64,
    waiting: AtomicU64,
    me: Weak<Pool>,
}

/// What a request found under the lock.
enum Found {
    /// An idle connection of its target.
    Idle(Conn),
    /// Another target's idle connection, evicted: its budget opens ours once it is closed.
    Evicted(Conn),
    /// Budget.
    Budget(OwnedSemaphorePermit),
    /// Nothing: wait for a turn.
    Wait(oneshot::Receiver<Grant>),
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The budget or the share stayed exhausted for the whole wait.
    #[error("timed out waiting for a connection")]
    Timeout,
    /// Connecting failed.
    #[error("cannot connect: {}", reason(.0))]
    Connect(#[from] tokio_postgres::Error),
}

/// PostgreSQL's own message when it sent one (`database "x" does not exist`), else the error
/// with its causes (`error performing TLS handshake: ... UnknownIssuer`).
pub(crate) fn reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_owned(),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}

/// A connection lent to one request (or job). Returned to the pool on drop unless a transaction
/// was begun on it and not seen to end ([`Lease::set_dirty`] / [`Lease::set_clean`]); then it is
/// closed, so no transaction state ever reaches another request.
pub struct Lease {
    conn: Option<Conn>,
    key: Arc<str>,
    pool: Arc<Pool>,
    clean: AtomicBool,
    scope: Option<Arc<str>>,
    _share: OwnedSemaphorePermit,
}

impl Lease {
    fn conn(&self) -> &Conn {
        // Present until drop.
        self.conn
            .as_ref()
            .expect("lease holds its connection until dropped")
    }

    /// The driver's client.
    pub fn client(&self) -> &Client {
        self.conn().client()
    }

    /// See [`Conn::prepare_all`].
    pub async fn prepare_all(
        &self,
        sqls: &[&str],
    ) -> Result<Vec<Statement>, tokio_postgres::Error> {
        self.conn().prepare_all(sqls).await
    }

    /// See [`Conn::prepare`].
    pub async fn prepare(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        self.conn().prepare(sql).await
    }

    /// Statements prepared on the connection now.
    pub fn prepared(&self) -> usize {
        self.conn().prepared()
    }

    /// Keeps the statements of [`Lease::cached`] and [`Lease::remember`] under `scope` (the
    /// tenant's search_path on a connection tenants share), apart from other tenants' plans of the
    /// same text.
    pub fn with_scope(mut self, scope: Option<Arc<str>>) -> Self {
        self.scope = scope;
        self
    }

    /// See [`Conn::cached`]; within the lease's scope.
    pub fn cached(&self, sqls: &[&str]) -> Vec<Option<Statement>> {
        match &self.scope {
            None => self.conn().cached(sqls),
            Some(scope) => {
                let keys: Vec<String> = sqls.iter().map(|q| scoped(scope, q)).collect();
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                self.conn().cached(&refs)
            }
        }
    }

    /// See [`Conn::remember`]; within the lease's scope.
    pub fn remember(&self, sql: &str, stmt: &Statement) {
        match &self.scope {
            None => self.conn().remember(sql, stmt),
            Some(scope) => self.conn().remember(&scoped(scope, sql), stmt),
        }
    }

    /// The connection's socket for one pipelined read of `sqls` (see `Conn::lend`; names
    /// kept within the lease's scope): `None` when it has none or its driver is mid-request.
    pub fn lend(&self, sqls: &[&str]) -> Option<WireLease<'_>> {
        // Apart from the driver's statements of the same text: a leading \u{1} (scopes and SQL
        // never hold one).
        let scope = format!("\u{1}{}", self.scope.as_deref().unwrap_or(""));
        let keys: Vec<String> = sqls.iter().map(|q| scoped(&scope, q)).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.conn().lend(&refs)
    }

    /// A transaction is about to begin: until [`Lease::set_clean`] the connection is not reusable.
    pub fn set_dirty(&self) {
        self.clean.store(false, Ordering::Relaxed);
    }

    /// The transaction ended (COMMIT or ROLLBACK answered): the connection is reusable.
    pub fn set_clean(&self) {
        self.clean.store(true, Ordering::Relaxed);
    }
}

/// The cache key of `sql` under `scope`: the scope and a 128-bit keyed hash of the text (two
/// SipHash-1-3 values with random keys, so nobody can choose texts that collide), which keeps a
/// key small while a connection holds the same texts for each of its tenants.
fn scoped(scope: &str, sql: &str) -> String {
    use std::fmt::Write as _;
    use std::hash::BuildHasher as _;
    static KEYS: std::sync::OnceLock<[std::collections::hash_map::RandomState; 2]> =
        std::sync::OnceLock::new();
    let [a, b] = KEYS.get_or_init(Default::default);
    let mut k = String::with_capacity(scope.len() + 34);
    k.push_str(scope);
    k.push('\u{0}');
    let _ = write!(k, "{:016x}{:016x}", a.hash_one(sql), b.hash_one(sql));
    k
}

impl std::ops::Deref for Lease {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.clean.load(Ordering::Relaxed) && !conn.client.is_closed() {
                conn.last_used = Instant::now();
                self.pool.give_back(self.key.clone(), conn);
            }
        }
    }
}

impl Pool {
    /// An empty pool of `size`.
    pub fn new(size: PoolSize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            open: Arc::new(Semaphore::new(size.budget)),
            size: PoolSize {
                per_share: size.per_share.max(1),
                statements: size.statements.max(1),
                ..size
            },
            state: Mutex::new(State::default()),
            shares: Mutex::new(FastMap::default()),
            seq: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            me: me.clone(),
        })
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn budgeted(&self, permit: OwnedSemaphorePermit) -> Budget {
        Budget {
            permit: Some(permit),
            pool: self.me.clone(),
        }
    }

    /// Hands `freed` to the waiter whose turn it is; with nobody waiting, a connection goes
    /// idle and budget back to the semaphore. The waiter is chosen under the lock (so a request
    /// about to wait cannot miss it) and handed its grant outside it: a grant its waiter no
    /// longer wants is dropped by whoever drops it last, and dropping budget takes the lock.
    fn hand_over(&self, mut freed: Freed) {
        loop {
            let mut state = self.lock_state();
            let Some(w) = state.waiters.pop(|w| !w.tx.is_closed()) else {
                match freed {
                    Freed::Conn(key, conn) => {
                        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                        state
                            .idle
                            .by_key
                            .entry(key.clone())
                            .or_default()
                            .push_back(seq);
                        state.idle.lru.insert(seq, Idle { key, conn });
                    }
                    Freed::Budget(permit) => {
                        drop(state);
                        drop(permit);
                    }
                }
                return;
            };
            drop(state);
            let grant = match freed {
                Freed::Conn(key, conn) if key == w.target => Grant::Conn(conn),
                // Another target's: closed, its budget opens the waiter's own.
                Freed::Conn(_, conn) => {
                    let Conn { open, .. } = conn;
                    Grant::Budget(open)
                }
                Freed::Budget(permit) => Grant::Budget(self.budgeted(permit)),
            };
            match w.tx.send(grant) {
                Ok(()) => return,
                // It gave up meanwhile: the next one's turn.
                Err(Grant::Conn(conn)) => freed = Freed::Conn(w.target, conn),
                Err(Grant::Budget(b)) => match b.into_raw() {
                    Some(permit) => freed = Freed::Budget(permit),
                    None => return,
                },
            }
        }
    }

    fn give_back(&self, key: Arc<str>, conn: Conn) {
        self.hand_over(Freed::Conn(key, conn));
    }

    /// A connection's budget came free (it was closed).
    fn release(&self, permit: OwnedSemaphorePermit) {
        self.hand_over(Freed::Budget(permit));
    }

    fn share(&self, key: &str) -> Arc<Semaphore> {
        let mut m = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = m.get(key) {
            return s.clone();
        }
        let s = Arc::new(Semaphore::new(self.size.per_share));
        m.insert(Box::from(key), s.clone());
        s
    }

    /// A connection to `target` for `share`: an idle one of the target, else a new one (closing
    /// another target's idle connection if the budget is spent).
    ///
    /// With an `affinity` (any stable hash of the share), an idle connection of the share's
    /// group comes first, then a new one while the budget allows, then the idle one of the
    /// nearest following group.
    ///
    /// When nothing is free the request waits for its share's turn; `weight` is the share's
    /// (its turns per turn of a share of weight 1 while both wait).
    pub async fn get(
        self: &Arc<Self>,
        target: &Target,
        share: &str,
        weight: u32,
        affinity: Option<u64>,
    ) -> Result<Lease, PoolError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let r = self.get_inner(target, share, weight, affinity).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// The affinity groups of a target: one per [`GROUP_CONNECTIONS`] of the budget.
    fn groups(&self) -> u64 {
        (self.size.budget / GROUP_CONNECTIONS).max(1) as u64
    }

    fn group_of(&self, affinity: u64) -> u64 {
        affinity % self.groups()
    }

    async fn get_inner(
        self: &Arc<Self>,
        target: &Target,
        share_key: &str,
        weight: u32,
        affinity: Option<u64>,
    ) -> Result<Lease, PoolError> {
        let deadline = Instant::now() + self.size.wait;
        let share = tokio::time::timeout(self.size.wait, self.share(share_key).acquire_owned())
            .await
            .map_err(|_| PoolError::Timeout)?
            .map_err(|_| PoolError::Timeout)?;
        let group = affinity.map(|a| self.group_of(a));
        let key = target.key.clone();
        let lease = |conn: Conn| Lease {
            conn: Some(conn),
            key: key.clone(),
            pool: self.clone(),
            clean: AtomicBool::new(true),
            scope: None,
            _share: share,
        };
        let mut early = None;
        if let Some(g) = group {
            loop {
                let taken = self.lock_state().idle.take_in_group(&target.key, g);
                match taken {
                    Some(c) if !c.client.is_closed() => return Ok(lease(c)),
                    Some(_) => continue,
                    None => break,
                }
            }
            // None of the group's is idle: a new connection while the budget allows.
            early = self
                .open
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|p| self.budgeted(p));
        }
        let budget = match early {
            Some(b) => b,
            None => loop {
                // Closed connections found on the way are dropped here, outside the lock.
                match self.find(&target.key, group, share_key, weight) {
                    Found::Idle(c) if !c.client.is_closed() => return Ok(lease(c)),
                    Found::Idle(_closed) => continue,
                    Found::Evicted(c) => {
                        let Conn { open, .. } = c;
                        break open;
                    }
                    Found::Budget(p) => break self.budgeted(p),
                    Found::Wait(rx) => {
                        let at = tokio::time::Instant::from_std(deadline);
                        match tokio::time::timeout_at(at, rx).await {
                            Ok(Ok(Grant::Conn(c))) if !c.client.is_closed() => return Ok(lease(c)),
                            Ok(Ok(Grant::Conn(_closed))) => continue,
                            Ok(Ok(Grant::Budget(b))) => break b,
                            // Timed out (whatever is handed to us now goes to the next one), or
                            // the pool is going away.
                            Ok(Err(_)) | Err(_) => return Err(PoolError::Timeout),
                        }
                    }
                }
            },
        };
        let (client, wire) = match tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline.max(Instant::now() + Duration::from_millis(1))),
            // Boxed: connecting is rare and its future is large; every lease's future would
            // carry its size otherwise.
            Box::pin(target.connect_lendable()),
        )
        .await
        {
            Ok(c) => c?,
            Err(_) => return Err(PoolError::Timeout),
        };
        let cap = NonZeroUsize::new(self.size.statements).unwrap_or(NonZeroUsize::MIN);
        Ok(lease(Conn {
            client,
            statements: Mutex::new(LruCache::new(cap)),
            open: budget,
            last_used: Instant::now(),
            group: group.unwrap_or(0),
            wire,
            closing: Mutex::new(Vec::new()),
            names: AtomicU64::new(0),
        }))
    }

    /// Under the lock: an idle connection of `target` (the nearest group's, with affinity),
    /// else budget, else another target's idle connection to close, else a place among the
    /// waiters of `share`.
    fn find(&self, target: &str, group: Option<u64>, share: &str, weight: u32) -> Found {
        let mut state = self.lock_state();
        let idle = match group {
            // The next group's, so a group that runs out spills over onto one neighbour and
            // each connection keeps meeting the same few tenants.
            Some(g) => state.idle.take_nearest(target, g, self.groups()),
            None => state.idle.take(target),
        };
        if let Some(c) = idle {
            return Found::Idle(c);
        }
        if let Ok(p) = self.open.clone().try_acquire_owned() {
            return Found::Budget(p);
        }
        // Budget spent: the least recently used idle connection goes.
        if let Some(c) = state.idle.evict_oldest() {
            return Found::Evicted(c);
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.push(
            share,
            weight,
            Waiter {
                target: Arc::from(target),
                tx,
            },
        );
        Found::Wait(rx)
    }

    /// Closes idle connections unused for `older_than`, and forgets shares nobody holds.
    pub fn close_idle(&self, older_than: Duration) {
        let mut state = self.lock_state();
        let stale = state
            .idle
            .lru
            .values()
            .take_while(|i| i.conn.last_used.elapsed() >= older_than)
            .count();
        let closing: Vec<Conn> = (0..stale)
            .filter_map(|_| state.idle.evict_oldest())
            .collect();
        drop(state);
        drop(closing);
        let mut m = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.available_permits() < self.size.per_share);
    }

    /// Closes the idle connections of targets whose key starts with `prefix` (a tenant moved).
    pub fn close_target(&self, prefix: &str) -> usize {
        let closing = self.lock_state().idle.evict_matching(prefix);
        closing.len()
    }

    /// Connections open now (in use + idle).
    pub fn open_connections(&self) -> usize {
        self.size.budget - self.open.available_permits()
    }

    /// Idle connections now.
    pub fn idle_connections(&self) -> usize {
        self.lock_state().idle.lru.len()
    }

    /// Requests waiting for a connection now (for their share's place, or for their turn).
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Requests waiting for their turn at the spent budget now.
    pub fn waiting_turns(&self) -> usize {
        self.lock_state().waiters.len()
    }

    /// The budget.
    pub fn budget(&self) -> usize {
        self.size.budget
    }
}
