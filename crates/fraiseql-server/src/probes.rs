//! `/health` (the process answers) and `/ready` (every database answers).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;

use crate::AppState;

pub(crate) async fn health() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
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
