//! A token bucket, refilled continuously: `burst` tokens at most, `per_second` more each
//! second. Pure (the caller passes the time), so it is tested without clocks.
//!
//! Other instances' consumption is subtracted as it is heard of ([`Bucket::debit`]): every
//! instance's bucket for a tenant then sees every admission, and the admissions of all
//! instances together stay within one rate (see `exchange.rs`).

use std::time::Instant;

use crate::tenancy::tiers::Rate;

/// One bucket.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Option<Instant>,
    /// The rate it was last used with (a debit from another instance refills with it).
    rate: Option<Rate>,
}

/// Refused: the seconds until a token is there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Empty {
    pub wait_secs: f64,
}

impl Bucket {
    /// Brings the bucket to `now` at `rate` (a new bucket starts full).
    fn refill(&mut self, rate: Rate, now: Instant) {
        self.tokens = match self.at {
            None => rate.burst,
            Some(at) => {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                (self.tokens + elapsed * rate.per_second).min(rate.burst)
            }
        };
        self.at = Some(now);
        self.rate = Some(rate);
    }

    /// Takes one token: the tokens left, or how long until there is one.
    pub(crate) fn take(&mut self, rate: Rate, now: Instant) -> Result<f64, Empty> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(self.tokens)
        } else {
            Err(Empty {
                wait_secs: (1.0 - self.tokens) / rate.per_second,
            })
        }
    }

    /// Subtracts `n` tokens spent elsewhere (another instance). The bucket may go below zero
    /// (this instance then waits until the rate has paid for them), down to one second and one
    /// burst's worth, so a burst of late reports cannot lock a tenant out for long. A bucket
    /// this instance never used has no rate yet and is left alone.
    pub(crate) fn debit(&mut self, n: f64, now: Instant) {
        let Some(rate) = self.rate else { return };
        self.refill(rate, now);
        self.tokens = (self.tokens - n).max(-(rate.burst + rate.per_second));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const RATE: Rate = Rate {
        per_second: 10.0,
        burst: 5.0,
    };

    #[test]
    fn a_full_bucket_lends_its_burst_then_one_token_per_tick_of_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        for left in (0..5).rev() {
            assert_eq!(b.take(RATE, t0), Ok(f64::from(left)));
        }
        let empty = b.take(RATE, t0).expect_err("spent");
        assert!((empty.wait_secs - 0.1).abs() < 1e-9, "{empty:?}");
        // 50 ms later half a token has come back; 100 ms later one.
        assert!(b.take(RATE, t0 + Duration::from_millis(50)).is_err());
        assert!(b.take(RATE, t0 + Duration::from_millis(100)).is_ok());
        // An idle second refills to the burst, not beyond.
        assert_eq!(b.take(RATE, t0 + Duration::from_secs(2)), Ok(4.0));
    }

    #[test]
    fn what_other_instances_spent_is_paid_for_here_too() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        // Never used here: nothing to debit.
        b.debit(100.0, t0);
        assert_eq!(b.take(RATE, t0), Ok(4.0));
        b.debit(10.0, t0);
        // -6 tokens: 0.7 s at 10/s until one is there again.
        let empty = b.take(RATE, t0).expect_err("in debt");
        assert!((empty.wait_secs - 0.7).abs() < 1e-9, "{empty:?}");
        // A flood of reports cannot push it below -(burst + one second's rate).
        b.debit(1e9, t0);
        let empty = b.take(RATE, t0).expect_err("in debt");
        assert!((empty.wait_secs - 1.6).abs() < 1e-9, "{empty:?}");
    }
}
