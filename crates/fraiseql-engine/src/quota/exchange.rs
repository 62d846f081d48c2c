//! Rates across instances, over core NATS (what the instances already share for events and
//! cache invalidations). Every [`REPORT_EVERY`] an instance publishes what it admitted since its
//! last report, per tenant, on `[multi_tenancy] quota_subject`; every instance subtracts what
//! the others report from its own buckets (`Bucket::debit`). The request path only touches the
//! local bucket.
//!
//! Accuracy: every admission anywhere is paid for by every bucket, so over any stretch of time
//! a tenant's admissions on all instances together stay within its rate, plus what was admitted
//! before the reports arrived: at most the burst once per instance (each bucket starts full) and
//! about `instances x rate x REPORT_EVERY` at any moment (reports in flight). Cut off from NATS,
//! each instance admits its tenants' full rate by itself.
//!
//! A report is text: this instance's id on the first line, then `key requests mutations` per
//! line. Reports from others are parsed line by line; a malformed line is skipped, and tenants
//! this instance never served are ignored (nothing is allocated for them).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::Quotas;
use crate::tenancy::keys;

/// How often an instance reports what it admitted.
pub const REPORT_EVERY: Duration = Duration::from_millis(100);

/// Why the exchange could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// NATS could not be set up.
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    /// Subscribing failed.
    #[error("quota subscription failed: {0}")]
    Subscribe(String),
}

/// This instance's end of the exchange; its tasks end with the process.
#[derive(Debug)]
pub struct Exchange {
    id: u64,
}

impl Exchange {
    /// Connects (`[nats]`), subscribes to `subject` and starts reporting `quotas`' admissions.
    pub async fn start(
        nats: &fraiseql_config::NatsConfig,
        subject: &str,
        quotas: Arc<Quotas>,
    ) -> Result<Self, ExchangeError> {
        let client = crate::nats::connect(nats, Duration::from_secs(5)).await?;
        let id: u64 = rand::random();
        let mut reports = client
            .subscribe(subject.to_owned())
            .await
            .map_err(|e| ExchangeError::Subscribe(e.to_string()))?;
        quotas.reporting.store(true, Ordering::Relaxed);
        {
            let quotas = quotas.clone();
            tokio::spawn(async move {
                while let Some(msg) = reports.next().await {
                    apply(&quotas, id, &msg.payload);
                }
            });
        }
        let subject = subject.to_owned();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REPORT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let spent = quotas.take_unsent();
                if spent.is_empty() {
                    continue;
                }
                let report = encode(id, &spent);
                // Lost while NATS is away: the others then under-count for a moment, as
                // when each instance runs alone.
                let _ = client.publish(subject.clone(), report.into()).await;
            }
        });
        Ok(Self { id })
    }

    /// This instance's id in reports.
    pub fn id(&self) -> u64 {
        self.id
    }
}

fn encode(id: u64, spent: &[(Arc<str>, u64, u64)]) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(24 + spent.len() * 32);
    let _ = writeln!(s, "{id:x}");
    for (key, r, m) in spent {
        let _ = writeln!(s, "{key} {r} {m}");
    }
    s.into_bytes()
}

/// What a report says, unless it is this instance's own or not a report.
fn decode(own: u64, payload: &[u8]) -> Option<Vec<(&str, u64, u64)>> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut lines = text.lines();
    let from = u64::from_str_radix(lines.next()?.trim(), 16).ok()?;
    if from == own {
        return None;
    }
    Some(
        lines
            .filter_map(|l| {
                let mut f = l.split(' ');
                let key = f.next().filter(|k| keys::is_valid(k))?;
                let r = f.next()?.parse().ok()?;
                let m = f.next()?.parse().ok()?;
                f.next().is_none().then_some((key, r, m))
            })
            .collect(),
    )
}

fn apply(quotas: &Quotas, own: u64, payload: &[u8]) {
    for (key, r, m) in decode(own, payload).unwrap_or_default() {
        quotas.debit(key, r, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_bad_lines_are_skipped() {
        let report = encode(
            0xabc,
            &[(Arc::from("acme_corp"), 12, 3), (Arc::from("b"), 1, 0)],
        );
        assert_eq!(
            String::from_utf8_lossy(&report),
            "abc\nacme_corp 12 3\nb 1 0\n"
        );
        assert_eq!(decode(0xabc, &report), None, "our own report");
        assert_eq!(
            decode(1, &report),
            Some(vec![("acme_corp", 12, 3), ("b", 1, 0)])
        );
        let hostile = b"ff\nACME 1 1\nok 1\nfine 2 2 2\nx -1 0\ngood 5 0\n\xff";
        assert_eq!(decode(1, hostile), None, "not UTF-8");
        assert_eq!(
            decode(1, &hostile[..hostile.len() - 1]),
            Some(vec![("good", 5, 0)])
        );
        assert_eq!(decode(1, b"not a report"), None);
    }
}
