//! Provisionings started by `POST /admin/tenants`, run in the background: the registry row says
//! `provisioning` meanwhile; a failure is kept here (its message shown by `GET`) until a repeated
//! create runs it again, which resumes where it stopped (provisioning is idempotent).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fraiseql_config::Config;

/// What became of this process's last provisioning of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Job {
    /// Under way.
    Running,
    /// Stopped with this error (the registry row stays `provisioning`).
    Failed(String),
}

/// The provisionings of this admin API, by tenant key.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    by_key: Mutex<HashMap<String, Job>>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job of `key`, if this process ran one that has not succeeded.
    pub(crate) fn get(&self, key: &str) -> Option<Job> {
        self.lock().get(key).cloned()
    }

    /// Starts provisioning `key` on `tier` unless it is under way here already.
    pub(crate) fn start(self: &Arc<Self>, config: Arc<Config>, key: &str, tier: &str) {
        {
            let mut jobs = self.lock();
            if jobs.get(key) == Some(&Job::Running) {
                return;
            }
            jobs.insert(key.to_owned(), Job::Running);
        }
        let jobs = self.clone();
        let (key, tier) = (key.to_owned(), tier.to_owned());
        tokio::spawn(async move {
            let result = crate::ops::create(&config, &key, &tier).await;
            let mut all = jobs.lock();
            match result {
                Ok(()) => {
                    tracing::info!(tenant = %key, "tenant provisioned");
                    all.remove(&key);
                }
                Err(e) => {
                    tracing::error!(tenant = %key, error = %e.message, "tenant provisioning failed");
                    all.insert(key, Job::Failed(e.message));
                }
            }
        });
    }
}
