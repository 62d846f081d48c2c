//! `/health` (the process answers), `/ready` (every database and NATS answer), `/metrics`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;

use crate::AppState;

pub(crate) async fn health() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// `GET /metrics`: the OpenMetrics text format (Prometheus reads it).
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    state.engine.observe_pools();
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics().render(),
    )
        .into_response()
}

pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    match state.engine.ready().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "reason": reason })),
        )
            .into_response(),
    }
}
