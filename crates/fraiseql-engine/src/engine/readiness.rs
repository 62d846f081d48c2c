//! `/ready`'s answer: whether every database (and NATS, with observers) answers. It is checked at
//! most once a second, however many callers ask (the endpoint is unauthenticated, and a check
//! borrows a connection from every pool, the registry's included): callers within a second of the
//! last check get its answer, and while a check runs the others wait for it rather than start
//! their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Engine;

/// How long a check's answer stands.
pub const READY_EVERY: Duration = Duration::from_secs(1);

/// The last check and the one running.
#[derive(Default)]
pub(super) struct Readiness {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
    running: tokio::sync::Mutex<()>,
    checks: AtomicU64,
}

impl Readiness {
    fn fresh(&self) -> Option<Result<(), String>> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < READY_EVERY)
            .map(|(_, r)| r.clone())
    }
}

impl Engine {
    /// Whether every database (and NATS, with observers) answers (for `/ready`): the last
    /// check's answer if it is less than [`READY_EVERY`] old, else a new check (one at a time).
    /// The error names what does not answer.
    pub async fn ready(&self) -> Result<(), String> {
        let r = &self.readiness;
        if let Some(answer) = r.fresh() {
            return answer;
        }
        let _turn = r.running.lock().await;
        // Whoever held the turn before may have just checked.
        if let Some(answer) = r.fresh() {
            return answer;
        }
        let started = Instant::now();
        let answer = self.check_ready().await;
        r.checks.fetch_add(1, Ordering::Relaxed);
        *r.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((started, answer.clone()));
        answer
    }

    /// How many readiness checks reached the databases so far.
    pub fn readiness_checks(&self) -> u64 {
        self.readiness.checks.load(Ordering::Relaxed)
    }

    async fn check_ready(&self) -> Result<(), String> {
        if let Some(e) = self.events.get() {
            if !e.connected() {
                return Err("NATS is not connected".to_owned());
            }
        }
        for (name, db) in self.pools().iter() {
            let client = db
                .lease()
                .await
                .map_err(|_| format!("database `{name}` unavailable"))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|_| format!("database `{name}` does not answer"))?;
        }
        Ok(())
    }
}
