//! `/health` (the process answers), `/ready` (every database and NATS answer), `/metrics`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;

use crate::AppState;

pub(crate) async fn health() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// `GET /metrics`: the OpenMetrics text format (Prometheus reads it), behind `[metrics] token`
/// when one is set.
pub(crate) async fn metrics(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    if let Some(token) = &state.engine.config().metrics.token {
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g, token)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(http::header::WWW_AUTHENTICATE, "Bearer")],
                "/metrics needs Authorization: Bearer <[metrics] token>\n",
            )
                .into_response();
        }
    }
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

/// Compares digests, so the time taken says nothing about where two secrets differ.
fn same_secret(a: &str, b: &str) -> bool {
    let d = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d(a).as_ref() == d(b).as_ref()
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
