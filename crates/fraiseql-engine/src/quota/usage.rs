//! The usage counters' way into the registry: every [`FLUSH_EVERY`] (and when the server stops)
//! what this instance counted is added to each tenant's row of the month
//! (`tenancy::usage`), in one statement. A failed flush keeps the counts for the next one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Quotas;
use crate::connections::{Database, PoolError};
use crate::tenancy::usage;

/// How often usage is added to the registry.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Why a flush did not store its counts (kept for the next one).
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// No registry connection.
    #[error("tenant registry unavailable: {0}")]
    Pool(#[from] PoolError),
    /// The statement failed.
    #[error("tenant usage not stored: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Adds what `quotas` counted since the last flush to the registry; returns the tenants
/// written. `ensured` remembers that the table exists.
pub async fn flush(
    quotas: &Quotas,
    registry: &Database,
    ensured: &AtomicBool,
) -> Result<usize, FlushError> {
    let counts = quotas.take_usage();
    if counts.is_empty() {
        return Ok(0);
    }
    let stored = async {
        let lease = registry.lease().await?;
        if !ensured.load(Ordering::Relaxed) {
            usage::ensure_table(lease.client()).await?;
            ensured.store(true, Ordering::Relaxed);
        }
        usage::add(lease.client(), &counts).await?;
        Ok::<_, FlushError>(())
    }
    .await;
    match stored {
        Ok(()) => Ok(counts.len()),
        Err(e) => {
            quotas.restore_usage(&counts);
            Err(e)
        }
    }
}
