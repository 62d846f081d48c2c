//! Stopping an operation part-way: the binary fires an [`Interrupt`] on SIGINT or SIGTERM; the
//! running step is abandoned at its next await (a child `pg_dump` / `pg_restore` is killed, a
//! connection in a transaction is closed, which rolls it back), and the operation undoes what it
//! did through its usual failure path before the command exits.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::TransferError;

/// Fired once to stop an operation; clones share it.
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<watch::Sender<bool>>);

impl Default for Interrupt {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Interrupt {
    /// A new, unfired interrupt.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the operations watching it.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Whether it was fired.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until it is fired.
    pub async fn fired(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`: this only ends when fired.
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Runs `step` unless the interrupt fires first: then `step` is dropped and the answer is
    /// [`TransferError::Interrupted`].
    pub(crate) async fn guard<T>(
        &self,
        step: impl Future<Output = Result<T, TransferError>>,
    ) -> Result<T, TransferError> {
        if self.is_fired() {
            return Err(TransferError::Interrupted);
        }
        tokio::select! {
            biased;
            () = self.fired() => Err(TransferError::Interrupted),
            r = step => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_fired_interrupt_abandons_the_step() {
        let i = Interrupt::new();
        assert_eq!(i.guard(async { Ok(1) }).await.expect("ran"), 1);
        let other = i.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            other.fire();
        });
        let r = i
            .guard(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await;
        assert!(matches!(r, Err(TransferError::Interrupted)), "{r:?}");
        assert!(i.is_fired());
        let r = i.guard(async { Ok(()) }).await;
        assert!(
            matches!(r, Err(TransferError::Interrupted)),
            "once fired, no step runs"
        );
    }
}
