//! A tenant's plan: the `[tiers.<name>]` its registry `tier` picks (`[tiers.default]` for tiers
//! not listed), resolved once per registry record. A tier change in the registry is a changed
//! record, so it is resolved again within `directory::RECORD_TTL` on every instance.

use std::collections::HashMap;
use std::sync::Arc;

use fraiseql_config::{Config, TierConfig};

use super::TenantRecord;

/// A rate: a token bucket refilled at `per_second`, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens a second.
    pub per_second: f64,
    /// The bucket's size.
    pub burst: f64,
}

/// The limits of one tier, ready for the request path.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Requests, all instances together.
    pub requests: Option<Rate>,
    /// Mutations, all instances together (they count as requests too).
    pub mutations: Option<Rate>,
    /// Requests in flight at once, per instance.
    pub max_concurrent: Option<u32>,
    /// `statement_timeout` for the tenant's transactions, as `set_config` takes it (ms).
    pub statement_timeout: Option<String>,
    /// Most rows one operation may produce.
    pub max_rows: Option<u64>,
    /// Subscriptions held at once (for the subscription transports).
    pub max_subscriptions: Option<u32>,
    /// Turns when requests wait for a connection.
    pub weight: u32,
}

impl Tier {
    /// No limit beyond `[limits]`.
    pub fn unlimited() -> Self {
        Self {
            requests: None,
            mutations: None,
            max_concurrent: None,
            statement_timeout: None,
            max_rows: None,
            max_subscriptions: None,
            weight: 1,
        }
    }

    fn of(t: &TierConfig) -> Self {
        let rate = |per_second: u32, burst: Option<u32>| Rate {
            per_second: f64::from(per_second),
            burst: f64::from(burst.unwrap_or(per_second).max(1)),
        };
        Self {
            requests: t.requests_per_second.map(|r| rate(r, t.burst)),
            mutations: t.mutations_per_second.map(|r| rate(r, None)),
            max_concurrent: t.max_concurrent,
            statement_timeout: t.statement_timeout_ms.map(|ms| ms.to_string()),
            max_rows: t.max_rows,
            max_subscriptions: t.max_subscriptions,
            weight: t.weight.max(1),
        }
    }

    /// Whether any request of this tier is counted (a rate or a concurrency limit).
    pub fn limits_requests(&self) -> bool {
        self.requests.is_some() || self.mutations.is_some() || self.max_concurrent.is_some()
    }
}

/// Every configured tier, resolved.
#[derive(Debug, Clone)]
pub struct Tiers {
    named: HashMap<String, Arc<Tier>>,
    /// `[tiers.default]`, else no limits.
    fallback: Arc<Tier>,
}

impl Tiers {
    /// The tiers of `config`.
    pub fn new(config: &Config) -> Self {
        let named = config
            .tiers
            .iter()
            .map(|(name, t)| (name.clone(), Arc::new(Tier::of(t))))
            .collect::<HashMap<_, _>>();
        let fallback = named
            .get(fraiseql_config::DEFAULT_TIER)
            .cloned()
            .unwrap_or_else(|| Arc::new(Tier::unlimited()));
        Self { named, fallback }
    }

    /// The tier named `name` (or the fallback).
    pub fn named(&self, name: &str) -> &Arc<Tier> {
        self.named.get(name).unwrap_or(&self.fallback)
    }

    /// `rec`'s tier, resolved on the record's first request and kept with it.
    pub fn of<'r>(&self, rec: &'r TenantRecord) -> &'r Arc<Tier> {
        rec.derived
            .tier
            .get_or_init(|| self.named(&rec.tier).clone())
    }
}

/// The tier resolved for `rec` by its requests so far (`None` before its first).
pub fn resolved(rec: &TenantRecord) -> Option<&Arc<Tier>> {
    rec.derived.tier.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_not_listed_gets_the_default_table_or_no_limits() {
        let toml = |extra: &str| {
            fraiseql_config::parse_str(
                &format!(
                    "[databases.tenant]\ntype = \"postgresql\"\nurl = \"postgres://x/y\"\n{extra}"
                ),
                "t.toml",
                std::path::Path::new("/"),
                &|_| None,
            )
            .expect("config")
        };
        let tiers = Tiers::new(&toml(
            "[tiers.free]\nrequests_per_second = 5\nstatement_timeout_ms = 250\n[tiers.default]\nmax_concurrent = 3\nweight = 2\n",
        ));
        let free = tiers.named("free");
        assert_eq!(
            free.requests,
            Some(Rate {
                per_second: 5.0,
                burst: 5.0
            })
        );
        assert_eq!(free.statement_timeout.as_deref(), Some("250"));
        assert_eq!(free.weight, 1);
        let other = tiers.named("enterprise");
        assert_eq!(other.max_concurrent, Some(3));
        assert_eq!(other.weight, 2);
        assert!(other.requests.is_none());
        let none = Tiers::new(&toml("[tiers.free]\nrequests_per_second = 5\n"));
        assert_eq!(**none.named("enterprise"), Tier::unlimited());
        assert!(!none.named("enterprise").limits_requests());
    }
}
