//! Subscription series: active subscriptions and connections per tenant (capped labels, as for
//! requests), events per tenant by outcome, refusals by reason, and the latency from a change's
//! write to its event's send.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{register, Label, Metrics, TenantOnly};

/// Delivery latency bucket bounds, in seconds: from sub-millisecond fan-out to a catch-up.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOutcome {
    tenant_id: Label,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// What became of an event offered to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Queued for the client.
    Delivered,
    /// Not queued: the subscriber's buffer was full (its connection is closed).
    Dropped,
    /// Nothing to send: the subscriber sees no such row (another tenant's, filtered out by its
    /// arguments or by row-level security, or gone).
    Invisible,
}

impl EventOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Dropped => "dropped",
            Self::Invisible => "invisible",
        }
    }
}

/// Why a subscription or connection was refused or ended by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `[subscriptions] max_connections`.
    MaxConnections,
    /// `[subscriptions] max_subscriptions_per_connection`.
    MaxPerConnection,
    /// `[subscriptions] max_subscriptions_per_tenant`.
    MaxPerTenant,
    /// `[tiers.<name>] max_subscriptions` of the tenant's tier.
    MaxPerTier,
    /// Missing, invalid or mismatched credentials.
    Unauthorized,
    /// A resume position past the stream's retention (or of another stream).
    PositionExpired,
    /// A subscriber did not read (buffer full).
    TooSlow,
    /// The token expired.
    TokenExpired,
    /// The tenant was suspended or moved.
    TenantGone,
    /// The operation was invalid (parse, validation, `[rbac]`, arguments).
    Invalid,
    /// A protocol violation (WebSocket close 4400, 4401, 4408, 4409, 4429).
    Protocol,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxPerConnection => "max_subscriptions_per_connection",
            Self::MaxPerTenant => "max_subscriptions_per_tenant",
            Self::MaxPerTier => "tier_max_subscriptions",
            Self::Unauthorized => "unauthorized",
            Self::PositionExpired => "position_expired",
            Self::TooSlow => "too_slow",
            Self::TokenExpired => "token_expired",
            Self::TenantGone => "tenant_gone",
            Self::Invalid => "invalid",
            Self::Protocol => "protocol",
        }
    }
}

pub(super) struct SubscriptionSeries {
    active: Family<TenantOnly, Gauge>,
    connections: Family<TenantOnly, Gauge>,
    events: Family<TenantOutcome, Counter>,
    refused: Family<Reason, Counter>,
    latency: Histogram,
}

impl SubscriptionSeries {
    pub(super) fn register(r: &mut Registry) -> Self {
        Self {
            active: register(
                r,
                "fraiseql_subscriptions_active",
                "GraphQL subscriptions open on this instance, by tenant",
                Family::<TenantOnly, Gauge>::default(),
            ),
            connections: register(
                r,
                "fraiseql_subscription_connections",
                "WebSocket and SSE connections open on this instance (identified ones by tenant)",
                Family::<TenantOnly, Gauge>::default(),
            ),
            events: register(
                r,
                "fraiseql_subscription_events",
                "Change events offered to subscribers: delivered (queued for the client), dropped (buffer full) or invisible (the subscriber sees no such row)",
                Family::<TenantOutcome, Counter>::default(),
            ),
            refused: register(
                r,
                "fraiseql_subscription_refused",
                "Subscriptions and connections refused or ended by the server, by reason",
                Family::<Reason, Counter>::default(),
            ),
            latency: register(
                r,
                "fraiseql_subscription_delivery_seconds",
                "From the write of a change (in its transaction) to the send of its event to a client",
                Histogram::new(LATENCY_BUCKETS),
            ),
        }
    }
}

impl Metrics {
    /// `n` (may be negative) subscriptions of `tenant` opened or closed.
    pub fn subscriptions_active(&self, tenant: &str, n: i64) {
        let l = TenantOnly {
            tenant_id: self.label(tenant),
        };
        self.subscriptions.active.get_or_create(&l).inc_by(n);
    }

    /// A connection of `tenant` (`""` before it is identified) opened (`1`) or closed (`-1`).
    pub fn subscription_connections(&self, tenant: &str, n: i64) {
        let l = TenantOnly {
            tenant_id: self.label(tenant),
        };
        self.subscriptions.connections.get_or_create(&l).inc_by(n);
    }

    /// `n` events of `tenant` had `outcome`.
    pub fn subscription_events(&self, tenant: &str, outcome: EventOutcome, n: u64) {
        if !self.enabled || n == 0 {
            return;
        }
        let l = TenantOutcome {
            tenant_id: self.label(tenant),
            outcome: outcome.as_str(),
        };
        self.subscriptions.events.get_or_create(&l).inc_by(n);
    }

    /// A subscription or connection was refused or ended for `why`.
    pub fn subscription_refused(&self, why: Refusal) {
        self.subscriptions
            .refused
            .get_or_create(&Reason {
                reason: why.as_str(),
            })
            .inc();
    }

    /// An event was sent `seconds` after its change was written.
    pub fn subscription_latency(&self, seconds: f64) {
        if self.enabled {
            self.subscriptions.latency.observe(seconds.max(0.0));
        }
    }
}
