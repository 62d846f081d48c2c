//! Tenant connections under one budget. Each tenant needs connections of its own (its role, its
//! database or `search_path`), so with many tenants and a fixed budget, connections must move
//! between tenants: a request whose tenant has no idle connection, when the budget is spent,
//! closes the least recently used idle connection of any tenant and opens its own.
//!
//! Invariants: open connections <= budget (a permit lives inside each connection); a tenant has
//! at most `per_tenant` connections in use; a connection interrupted mid-transaction is closed,
//! never reused.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls, Statement};

/// One open connection with its prepared statements.
pub struct Conn {
    client: Client,
    // Behind a lock so a connection shared by a request's resolvers can still prepare.
    statements: std::sync::Mutex<HashMap<String, Statement>>,
    _open: OwnedSemaphorePermit,
    last_used: Instant,
}

impl Conn {
    /// The driver's client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Statements for `sqls`, preparing the missing ones together (one round trip).
    pub async fn prepare_all(
        &self,
        sqls: &[&str],
    ) -> Result<Vec<Statement>, tokio_postgres::Error> {
        let missing: Vec<&str> = {
            let cache = self.cache();
            sqls.iter()
                .copied()
                .filter(|s| !cache.contains_key(*s))
                .collect()
        };
        if !missing.is_empty() {
            let prepared =
                futures_util::future::join_all(missing.iter().map(|s| self.client.prepare(s)))
                    .await;
            let mut cache = self.cache();
            for (sql, stmt) in missing.iter().zip(prepared) {
                cache.insert((*sql).to_owned(), stmt?);
            }
        }
        let cache = self.cache();
        Ok(sqls.iter().filter_map(|s| cache.get(*s).cloned()).collect())
    }

    /// One statement, prepared once per connection.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.prepare(sql).await?;
        self.cache().insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        // A panic while holding it cannot leave the map inconsistent: keep using it.
        self.statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Idle {
    key: String,
    conn: Conn,
}

#[derive(Default)]
struct IdleSet {
    /// Idle connections by recency (oldest first), keyed by a sequence number.
    lru: BTreeMap<u64, Idle>,
    /// Sequence numbers of each key's idle connections (newest last).
    by_key: HashMap<String, VecDeque<u64>>,
}

impl IdleSet {
    fn take(&mut self, key: &str) -> Option<Conn> {
        let seqs = self.by_key.get_mut(key)?;
        let seq = seqs.pop_back()?;
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
}

/// How to connect for a key (built by the caller from the registry row).
pub type Connect = tokio_postgres::Config;

/// Connections of every tenant.
pub struct TenantPools {
    open: Arc<Semaphore>,
    budget: usize,
    per_tenant: usize,
    wait: Duration,
    idle: Mutex<IdleSet>,
    in_use: Mutex<HashMap<String, Arc<Semaphore>>>,
    seq: AtomicU64,
    returned: Notify,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The budget or the tenant's share stayed exhausted for the whole wait.
    #[error("timed out waiting for a connection")]
    Timeout,
    /// Connecting failed.
    #[error("cannot connect: {0}")]
    Connect(#[from] tokio_postgres::Error),
}

/// A connection lent to one request; returned to the idle set on drop unless marked dirty.
pub struct Lease {
    conn: Option<Conn>,
    key: String,
    pools: Arc<TenantPools>,
    clean: bool,
    _share: OwnedSemaphorePermit,
}

impl Lease {
    /// The connection.
    pub fn conn(&mut self) -> &mut Conn {
        // Present until drop.
        self.conn
            .as_mut()
            .expect("lease holds its connection until dropped")
    }

    /// The connection, shared.
    pub fn shared(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("lease holds its connection until dropped")
    }

    /// The driver's client.
    pub fn client(&self) -> &Client {
        self.shared().client()
    }

    /// Marks the connection reusable (its last transaction completed). A lease dropped without
    /// this (cancelled request, failed pipeline) closes its connection.
    pub fn finish(&mut self) {
        self.clean = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.clean && !conn.client.is_closed() {
                conn.last_used = Instant::now();
                self.pools.give_back(std::mem::take(&mut self.key), conn);
            }
        }
    }
}

impl TenantPools {
    /// At most `budget` connections open in all, `per_tenant` in use per tenant; waits up to `wait`.
    pub fn new(budget: usize, per_tenant: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            open: Arc::new(Semaphore::new(budget)),
            budget,
            per_tenant: per_tenant.max(1),
            wait,
            idle: Mutex::new(IdleSet::default()),
            in_use: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            returned: Notify::new(),
        })
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, IdleSet> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give_back(&self, key: String, conn: Conn) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut idle = self.lock_idle();
        idle.by_key.entry(key.clone()).or_default().push_back(seq);
        idle.lru.insert(seq, Idle { key, conn });
        drop(idle);
        self.returned.notify_waiters();
    }

    fn share(&self, key: &str) -> Arc<Semaphore> {
        let mut m = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone()
    }

    /// A connection for `key`: an idle one of its own, else a new one (closing another tenant's
    /// idle connection if the budget is spent).
    pub async fn get(self: &Arc<Self>, key: &str, connect: &Connect) -> Result<Lease, PoolError> {
        let deadline = Instant::now() + self.wait;
        let share = tokio::time::timeout(self.wait, self.share(key).acquire_owned())
            .await
            .map_err(|_| PoolError::Timeout)?
            .map_err(|_| PoolError::Timeout)?;
        let lease = |conn| Lease {
            conn: Some(conn),
            key: key.to_owned(),
            pools: self.clone(),
            clean: false,
            _share: share,
        };
        loop {
            let taken = self.lock_idle().take(key);
            match taken {
                Some(c) if !c.client.is_closed() => return Ok(lease(c)),
                Some(_) => continue, // closed by the server: its permit is released with it
                None => break,
            }
        }
        let permit = loop {
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
                    // Our own tenant's connection may be the one that came back.
                    if let Some(c) = self.lock_idle().take(key) {
                        if !c.client.is_closed() {
                            return Ok(lease(c));
                        }
                    }
                }
                () = tokio::time::sleep(left) => return Err(PoolError::Timeout),
            }
        };
        let (client, connection) = connect.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(lease(Conn {
            client,
            statements: std::sync::Mutex::new(HashMap::new()),
            _open: permit,
            last_used: Instant::now(),
        }))
    }

    /// Closes idle connections unused for `older_than`.
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
        // Forget per-tenant counters nobody holds.
        let mut m = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.available_permits() < self.per_tenant);
    }

    /// Connections open now (in use + idle).
    pub fn open_connections(&self) -> usize {
        self.budget - self.open.available_permits()
    }

    /// Idle connections now.
    pub fn idle_connections(&self) -> usize {
        self.lock_idle().lru.len()
    }
}
