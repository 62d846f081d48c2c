//! The rate-limit header fields of an answer: the IETF `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers-10: a List of Items, each a policy name as a String
//! with `q` and `w` parameters, resp. `r` and `t`), and the `X-RateLimit-Limit` /
//! `X-RateLimit-Remaining` pair many clients already read. Names and values only: the HTTP
//! layer turns them into headers.

use super::Limit;
use crate::tenancy::tiers::{Rate, Tier};

/// A header field name and its value.
pub type Header = (&'static str, String);

/// What one policy looks like at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Level {
    /// The policy's quota per second.
    pub quota: u64,
    /// Whole tokens left.
    pub remaining: u64,
    /// Seconds until the next token.
    pub reset: u64,
}

impl Level {
    /// `rate`'s bucket holding `tokens`.
    pub(crate) fn of(rate: Rate, tokens: f64) -> Self {
        let whole = tokens.max(0.0).floor();
        let reset = if tokens >= rate.burst {
            0.0
        } else {
            ((whole + 1.0 - tokens) / rate.per_second).ceil()
        };
        Self {
            quota: rate.per_second as u64,
            remaining: whole as u64,
            reset: reset as u64,
        }
    }
}

/// The policies of `tier`: `"default"` (requests a second, with its burst), `"mutations"` and
/// `"concurrent"` where the plan has them.
pub(crate) fn policy(tier: &Tier) -> Option<String> {
    let mut items = Vec::new();
    if let Some(r) = tier.requests {
        items.push(format!(
            "\"default\";q={};w=1;fraiseql-burst={}",
            r.per_second as u64, r.burst as u64
        ));
    }
    if let Some(m) = tier.mutations {
        items.push(format!("\"mutations\";q={};w=1", m.per_second as u64));
    }
    if let Some(c) = tier.max_concurrent {
        items.push(format!("\"concurrent\";q={c};qu=\"concurrent-requests\""));
    }
    (!items.is_empty()).then(|| items.join(", "))
}

/// The headers of an admitted request: the policies, and the requests policy's level.
pub(crate) fn admitted(tier: &Tier, level: Option<Level>) -> Vec<Header> {
    let mut out = Vec::with_capacity(4);
    if let Some(p) = policy(tier) {
        out.push(("RateLimit-Policy", p));
    }
    if let Some(l) = level {
        out.push((
            "RateLimit",
            format!("\"default\";r={};t={}", l.remaining, l.reset),
        ));
        out.push(("X-RateLimit-Limit", l.quota.to_string()));
        out.push(("X-RateLimit-Remaining", l.remaining.to_string()));
    }
    out
}

/// The headers of a refusal by `limit`: the policies, the violated one's level, and
/// `Retry-After` (whole seconds, at least 1, never before the level's reset).
pub(crate) fn refused(tier: &Tier, limit: Limit, quota: u64, retry_after: u64) -> Vec<Header> {
    let name = match limit {
        Limit::Requests => "default",
        Limit::Mutations => "mutations",
        Limit::Concurrent => "concurrent",
    };
    let mut out = Vec::with_capacity(5);
    if let Some(p) = policy(tier) {
        out.push(("RateLimit-Policy", p));
    }
    let service = match limit {
        // Freed when a request ends, not at a known time.
        Limit::Concurrent => format!("\"{name}\";r=0"),
        _ => format!("\"{name}\";r=0;t={retry_after}"),
    };
    out.push(("RateLimit", service));
    out.push(("X-RateLimit-Limit", quota.to_string()));
    out.push(("X-RateLimit-Remaining", "0".to_owned()));
    out.push(("Retry-After", retry_after.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> Tier {
        Tier {
            requests: Some(Rate {
                per_second: 50.0,
                burst: 100.0,
            }),
            mutations: Some(Rate {
                per_second: 10.0,
                burst: 10.0,
            }),
            max_concurrent: Some(8),
            ..Tier::unlimited()
        }
    }

    #[test]
    fn admitted_requests_see_the_policies_and_what_is_left() {
        let rate = tier().requests.expect("rate");
        let h = admitted(&tier(), Some(Level::of(rate, 41.5)));
        insta::assert_debug_snapshot!(h, @r#"
        [
            (
                "RateLimit-Policy",
                "\"default\";q=50;w=1;fraiseql-burst=100, \"mutations\";q=10;w=1, \"concurrent\";q=8;qu=\"concurrent-requests\"",
            ),
            (
                "RateLimit",
                "\"default\";r=41;t=1",
            ),
            (
                "X-RateLimit-Limit",
                "50",
            ),
            (
                "X-RateLimit-Remaining",
                "41",
            ),
        ]
        "#);
        assert_eq!(Level::of(rate, 100.0).reset, 0, "a full bucket resets now");
        assert_eq!(Level::of(rate, -3.2).remaining, 0);
        assert!(admitted(&Tier::unlimited(), None).is_empty());
    }

    #[test]
    fn a_refusal_names_the_violated_policy_and_when_to_come_back() {
        let h = refused(&tier(), Limit::Mutations, 10, 2);
        insta::assert_debug_snapshot!(h[1..], @r#"
        [
            (
                "RateLimit",
                "\"mutations\";r=0;t=2",
            ),
            (
                "X-RateLimit-Limit",
                "10",
            ),
            (
                "X-RateLimit-Remaining",
                "0",
            ),
            (
                "Retry-After",
                "2",
            ),
        ]
        "#);
        let c = refused(&tier(), Limit::Concurrent, 8, 1);
        assert_eq!(c[1], ("RateLimit", "\"concurrent\";r=0".to_owned()));
    }
}
