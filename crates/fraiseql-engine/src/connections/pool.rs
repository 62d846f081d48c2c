//! Connections under one budget, shared by keys. A pool holds connections to any number of
//! [`Target`]s (tenant databases, or one shared database) and lends them per share (a tenant,
//! or the database itself): at most `budget` connections are open in all, a share has at most
//! `per_share` in use, and when the budget is spent a request closes the least recently used
//! idle connection of any target and opens its own.
//!
//! Written by hand because no pool crate does this: deadpool and bb8 pool one target each with a
//! fixed size, while tenancy needs one budget across thousands of targets with per-tenant shares.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Statement};

use super::Target;

/// One open connection with its prepared statements.
pub struct Conn {
    client: Client,
    // Behind a lock so a connection shared by a request's resolvers can still prepare.
    statements: Mutex<LruCache<Box<str>, Statement>>,
    _open: OwnedSemaphorePermit,
    last_used: Instant,
    /// The affinity group it was opened for.
    group: u64,
}

impl Conn {
    /// The driver's client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LruCache<Box<str>, Statement>> {
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
                match cache.get(*sql) {
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
            let mut cache = self.cache();
            for (i, stmt) in missing.into_iter().zip(prepared) {
                let stmt = stmt?;
                cache.put(Box::from(sqls[i]), stmt.clone());
                out[i] = Some(stmt);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One statement, prepared once per connection.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.prepare(sql).await?;
        self.cache().put(Box::from(sql), stmt.clone());
        Ok(stmt)
    }

    /// Statements prepared on this connection now.
    pub fn prepared(&self) -> usize {
        self.cache().len()
    }

    /// The cached statements of `sqls` (`None` where not prepared yet), marked recently used.
    pub fn cached(&self, sqls: &[&str]) -> Vec<Option<Statement>> {
        let mut cache = self.cache();
        sqls.iter().map(|s| cache.get(*s).cloned()).collect()
    }

    /// Keeps `stmt`, prepared by the caller, for `sql`.
    pub fn remember(&self, sql: &str, stmt: &Statement) {
        self.cache().put(Box::from(sql), stmt.clone());
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

    /// Closes every idle connection of targets whose key starts with `prefix`.
    fn evict_matching(&mut self, prefix: &str) -> usize {
        let keys: Vec<Arc<str>> = self
            .by_key
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        let mut n = 0;
        for k in keys {
            for seq in self.by_key.remove(&k).unwrap_or_default() {
                self.lru.remove(&seq);
                n += 1;
            }
        }
        n
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

/// Connections of many targets under one budget.
pub struct Pool {
    open: Arc<Semaphore>,
    size: PoolSize,
    idle: Mutex<IdleSet>,
    shares: Mutex<FastMap<Box<str>, Arc<Semaphore>>>,
    seq: AtomicU64,
    returned: Notify,
    waiting: AtomicU64,
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
        Arc::new(Self {
            open: Arc::new(Semaphore::new(size.budget)),
            size: PoolSize {
                per_share: size.per_share.max(1),
                statements: size.statements.max(1),
                ..size
            },
            idle: Mutex::new(IdleSet::default()),
            shares: Mutex::new(FastMap::default()),
            seq: AtomicU64::new(0),
            returned: Notify::new(),
            waiting: AtomicU64::new(0),
        })
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, IdleSet> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give_back(&self, key: Arc<str>, conn: Conn) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut idle = self.lock_idle();
        idle.by_key.entry(key.clone()).or_default().push_back(seq);
        idle.lru.insert(seq, Idle { key, conn });
        drop(idle);
        self.returned.notify_waiters();
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
    pub async fn get(
        self: &Arc<Self>,
        target: &Target,
        share: &str,
        affinity: Option<u64>,
    ) -> Result<Lease, PoolError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let r = self.get_inner(target, share, affinity).await;
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
        share: &str,
        affinity: Option<u64>,
    ) -> Result<Lease, PoolError> {
        let deadline = Instant::now() + self.size.wait;
        let share = tokio::time::timeout(self.size.wait, self.share(share).acquire_owned())
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
                let taken = self.lock_idle().take_in_group(&target.key, g);
                match taken {
                    Some(c) if !c.client.is_closed() => return Ok(lease(c)),
                    Some(_) => continue,
                    None => break,
                }
            }
            // None of the group's is idle: a new connection while the budget allows.
            early = self.open.clone().try_acquire_owned().ok();
        }
        if early.is_none() {
            loop {
                let taken = match group {
                    // The next group's, so a group that runs out spills over onto one neighbour
                    // and each connection keeps meeting the same few tenants.
                    Some(g) => self.lock_idle().take_nearest(&target.key, g, self.groups()),
                    None => self.lock_idle().take(&target.key),
                };
                match taken {
                    Some(c) if !c.client.is_closed() => return Ok(lease(c)),
                    Some(_) => continue, // closed by the server: its permit is released with it
                    None => break,
                }
            }
        }
        let permit = match early {
            Some(p) => p,
            None => loop {
                // Registered before looking, so a connection returned meanwhile is not missed.
                let returned = self.returned.notified();
                tokio::pin!(returned);
                returned.as_mut().enable();
                if let Ok(p) = self.open.clone().try_acquire_owned() {
                    break p;
                }
                // Budget spent: close the least recently used idle connection, if there is one.
                let evicted = self.lock_idle().evict_oldest();
                if evicted.is_some() {
                    drop(evicted);
                    continue;
                }
                // Everything is in use: wait for a connection to close or to come back idle.
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::select! {
                    p = self.open.clone().acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => return Err(PoolError::Timeout),
                    },
                    () = &mut returned => {
                        // Our own target's connection may be the one that came back.
                        if let Some(c) = self.lock_idle().take(&target.key) {
                            if !c.client.is_closed() {
                                return Ok(lease(c));
                            }
                        }
                    }
                    () = tokio::time::sleep(left) => return Err(PoolError::Timeout),
                }
            },
        };
        let client = match tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline.max(Instant::now() + Duration::from_millis(1))),
            // Boxed: connecting is rare and its future is large; every lease's future would
            // carry its size otherwise.
            Box::pin(target.connect()),
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
            _open: permit,
            last_used: Instant::now(),
            group: group.unwrap_or(0),
        }))
    }

    /// Closes idle connections unused for `older_than`, and forgets shares nobody holds.
    pub fn close_idle(&self, older_than: Duration) {
        let mut idle = self.lock_idle();
        let stale: Vec<u64> = idle
            .lru
            .iter()
            .take_while(|(_, i)| i.conn.last_used.elapsed() >= older_than)
            .map(|(s, _)| *s)
            .collect();
        for _ in stale {
            drop(idle.evict_oldest());
        }
        drop(idle);
        let mut m = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.available_permits() < self.size.per_share);
    }

    /// Closes the idle connections of targets whose key starts with `prefix` (a tenant moved).
    pub fn close_target(&self, prefix: &str) -> usize {
        self.lock_idle().evict_matching(prefix)
    }

    /// Connections open now (in use + idle).
    pub fn open_connections(&self) -> usize {
        self.size.budget - self.open.available_permits()
    }

    /// Idle connections now.
    pub fn idle_connections(&self) -> usize {
        self.lock_idle().lru.len()
    }

    /// Requests waiting for a connection now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The budget.
    pub fn budget(&self) -> usize {
        self.size.budget
    }
}
