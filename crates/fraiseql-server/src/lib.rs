//! HTTP: the axum router. `POST /graphql` and `GET /graphql` per GraphQL over HTTP, GraphiQL for
//! browsers (served from the binary), `/health` and `/ready`, and `/metrics` (here, or on its own
//! listener with `[metrics] listen`). Subscriptions on `/graphql` too (`subscriptions/`): a
//! WebSocket (`graphql-transport-ws`) or Server-Sent Events (`Accept: text/event-stream`).
//!
//! `/graphql` sheds load beyond `[limits] max_in_flight` requests (503 with `Retry-After`), so a
//! flood queues nowhere and `/health` keeps answering. A request counts against that limit only
//! once its body is read: headers and bodies have deadlines of their own (`serve.rs`,
//! `[limits] header_timeout_ms`, `body_timeout_ms`), so clients that send slowly hold no slot.
//! Each request has a deadline (`[limits] request_timeout_ms`, 408) that never lets a write
//! commit behind the client's back.

mod answer;
mod graphiql;
mod graphql;
mod probes;
pub mod request_id;
mod serve;
mod subscriptions;

pub use serve::{serve, Timeouts};

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use fraiseql_engine::Engine;
use http::StatusCode;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Slots for `/graphql` requests in flight (`[limits] max_in_flight`), taken once a request's
    /// body is read.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// The complete router for `engine`.
pub fn router(engine: Arc<Engine>) -> Router {
    let c = engine.config();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(c.limits.max_in_flight));
    let metrics_here = metrics_beside_graphql(c);
    let state = AppState { engine, in_flight };
    let mut router = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/health", get(probes::health))
        .route(
            "/ready",
            get(probes::ready).route_layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(10),
            )),
        );
    if metrics_here {
        router = router.route("/metrics", get(probes::metrics));
    }
    router
        .with_state(state)
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(request_id::layer))
}

/// Whether `/metrics` is served beside `/graphql`: not with its own `[metrics] listen`; and
/// under the production profile only behind `[metrics] token` (it lists tenant keys).
pub fn metrics_beside_graphql(c: &fraiseql_config::Config) -> bool {
    c.metrics.enabled
        && c.metrics.listen.is_none()
        && (c.metrics.token.is_some() || c.server.profile == fraiseql_config::Profile::Development)
}

/// The router of a separate `/metrics` listener (`[metrics] listen`).
pub fn metrics_router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/metrics", get(probes::metrics))
        .with_state(AppState {
            engine,
            in_flight: Arc::new(tokio::sync::Semaphore::new(0)),
        })
}
