//! HTTP: the axum router. `POST /graphql` and `GET /graphql` per GraphQL over HTTP, GraphiQL for
//! browsers (served from the binary), `/health` and `/ready`, and `/metrics` (here, or on its own
//! listener with `[metrics] listen`).
//!
//! `/graphql` sheds load beyond `[limits] max_in_flight` requests (503 with `Retry-After`), so a
//! flood queues nowhere and `/health` keeps answering; each request has a deadline
//! (`[limits] request_timeout_ms`, 408) that never lets a write commit behind the client's back.

mod graphiql;
mod graphql;
mod probes;
pub mod request_id;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use fraiseql_engine::Engine;
use http::{header, HeaderValue, StatusCode};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
}

async fn shed(engine: Arc<Engine>, err: tower::BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        engine.metrics().shed();
        let mut r = graphql::error_response_json(
            StatusCode::SERVICE_UNAVAILABLE,
            fraiseql_engine::ErrorCode::InternalServerError,
            "the server is at its limit of requests in flight; retry shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    tracing::error!(error = %err, "request failed in a middleware");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The complete router for `engine`.
pub fn router(engine: Arc<Engine>) -> Router {
    let c = engine.config();
    let in_flight = c.limits.max_in_flight;
    let metrics_here = c.metrics.enabled && c.metrics.listen.is_none();
    let shed_engine = engine.clone();
    let state = AppState { engine };
    let graphql = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |err| {
                    shed(shed_engine.clone(), err)
                }))
                .load_shed()
                .concurrency_limit(in_flight),
        );
    let mut router = Router::new()
        .merge(graphql)
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

/// The router of a separate `/metrics` listener (`[metrics] listen`).
pub fn metrics_router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/metrics", get(probes::metrics))
        .with_state(AppState { engine })
}
