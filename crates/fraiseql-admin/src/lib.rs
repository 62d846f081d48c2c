//! The admin API: the tenant lifecycle over HTTP, for a SaaS that signs its customers up from
//! its own code. Served on a listener of its own (`[admin] listen`), behind a bearer token of its
//! own (`[admin] token`, never the tenants' JWT key), never beside `/graphql`. Every operation is
//! the CLI's (`fraiseql-ops`), through the adapters of `ops.rs`.
//!
//! `tenants.rs` has the handlers (create: provisioning in the background, `jobs.rs`; list and
//! get with status, tier and this month's usage; suspend, resume, tier, backup), `auth.rs` the
//! token check, `error.rs` the JSON errors (`{"error": {"code", "message"}}`), `body.rs` the
//! request bodies (size and time limits as `/graphql`'s), `openapi.json` the document served at
//! `/admin/openapi.json`.

mod auth;
mod body;
mod error;
mod jobs;
mod ops;
mod tenants;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use fraiseql_config::Config;
use http::{header, HeaderValue, StatusCode};

pub use error::ApiError;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Admin {
    config: Arc<Config>,
    jobs: Arc<jobs::Jobs>,
    /// The registry's tables were ensured (once per admin API).
    ensured: Arc<tokio::sync::OnceCell<()>>,
}

/// The admin router for `config` (`[admin] token` must be set: a router without one refuses
/// every request).
pub fn router(config: Arc<Config>) -> Router {
    let state = Admin {
        config,
        jobs: Arc::default(),
        ensured: Arc::default(),
    };
    let tenants = Router::new()
        .route("/admin/tenants", get(tenants::list).post(tenants::create))
        .route("/admin/tenants/{key}", get(tenants::get))
        .route("/admin/tenants/{key}/suspend", post(tenants::suspend))
        .route("/admin/tenants/{key}/resume", post(tenants::resume))
        .route("/admin/tenants/{key}/tier", put(tenants::set_tier))
        .route("/admin/tenants/{key}/backup", post(tenants::backup))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/admin/openapi.json", get(openapi))
        .merge(tenants)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(log))
}

/// Serves the admin API on `listener` until `shutdown` completes, with the public listener's
/// header deadline.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<Config>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timeouts = fraiseql_server::Timeouts::of(&config.limits);
    fraiseql_server::serve(listener, router(config), timeouts, shutdown).await
}

async fn openapi() -> Response {
    let mut r = OPENAPI.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such admin route (see /admin/openapi.json)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not take that method (see /admin/openapi.json)",
    )
}

/// One log line per admin request: method, path, status, duration (never a header or a body).
async fn log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let r = next.run(req).await;
    tracing::info!(
        method = %method,
        path = %path,
        status = r.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "admin request"
    );
    r
}
