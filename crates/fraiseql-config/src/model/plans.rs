//! `[tiers.<name>]` and `[admin]`: what a tenant's plan allows, and the tenant lifecycle over
//! HTTP.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, Num};

/// The tier whose table applies to tiers not listed in `[tiers]`.
pub const DEFAULT_TIER: &str = "default";

impl Config {
    /// The plan of registry tier `tier`: its `[tiers.<tier>]`, else `[tiers.default]`; `None`:
    /// neither is configured, and the tenant is limited by `[limits]` alone.
    pub fn tier(&self, tier: &str) -> Option<&TierConfig> {
        self.tiers
            .get(tier)
            .or_else(|| self.tiers.get(DEFAULT_TIER))
    }
}

/// `[tiers.<name>]`: one plan. Every limit is optional; an absent one does not limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TierConfig {
    /// Requests a second, per tenant, all instances together (a token bucket refilled
    /// continuously).
    pub requests_per_second: Option<u32>,
    /// Requests that may come at once above the rate (the bucket's size; default: one second's
    /// worth, `requests_per_second`).
    pub burst: Option<u32>,
    /// Mutations a second (counted after the operation is known; they count as requests too).
    pub mutations_per_second: Option<u32>,
    /// Requests of one tenant in flight at once on one instance.
    pub max_concurrent: Option<u32>,
    /// Each statement's time limit (at most `[limits] request_timeout_ms`).
    pub statement_timeout_ms: Option<u64>,
    /// Most rows one operation may produce (at most `[limits] max_rows`, which applies to all).
    pub max_rows: Option<u64>,
    /// Subscriptions a tenant may hold at once (read by the subscription transports).
    pub max_subscriptions: Option<u32>,
    /// The tenant's weight when requests wait for a database connection: freed connections go
    /// round-robin across the waiting tenants, `weight` turns each (default 1).
    pub weight: u32,
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminConfig {
    /// `host:port` of the admin API; `None`: not served.
    pub listen: Option<String>,
    /// The bearer token every admin request carries (required with `listen`; at least 32
    /// bytes; never `[auth] secret`).
    pub token: Option<String>,
    /// Where `POST /admin/tenants/{key}/backup` writes archives (default `backups`, resolved
    /// against the config's folder).
    pub backup_dir: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTier {
    pub requests_per_second: Option<Num>,
    pub burst: Option<Num>,
    pub mutations_per_second: Option<Num>,
    pub max_concurrent: Option<Num>,
    pub statement_timeout_ms: Option<Num>,
    pub max_rows: Option<Num>,
    pub max_subscriptions: Option<Num>,
    pub weight: Option<Num>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub backup_dir: Option<String>,
}
