//! The admin token: every `/admin/tenants` request carries `Authorization: Bearer <[admin]
//! token>`. Compared as SHA-256 digests, so the time taken says nothing about where a guess
//! differs.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};

use crate::error::ApiError;
use crate::Admin;

fn digest(s: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, s)
}

/// Refuses a request without the admin token (401).
pub(crate) async fn require_token(
    State(admin): State<Admin>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = admin.config.admin.token.as_deref() else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the admin API has no [admin] token configured",
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match given {
        Some(g) if digest(g).as_ref() == digest(token.as_bytes()).as_ref() => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the bearer token is not the admin token",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "send Authorization: Bearer <the [admin] token>",
        )
        .into_response(),
    }
}
