//! HTTP: the axum router. `POST /graphql` and `GET /graphql` per GraphQL over HTTP, GraphiQL for
//! browsers (served from the binary), `/health` and `/ready`.

mod graphiql;
mod graphql;
mod probes;

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
}

/// The complete router for `engine`.
pub fn router(engine: Arc<Engine>) -> Router {
    let timeout = Duration::from_millis(engine.config().limits.request_timeout_ms);
    let state = AppState { engine };
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/metrics", get(probes::metrics))
        .with_state(state)
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
}
