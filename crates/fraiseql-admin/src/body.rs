//! Request bodies: JSON, at most [`MAX_BODY`] bytes, arriving within `[limits] body_timeout_ms`
//! (as `/graphql`'s), refused with a JSON error otherwise.

use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest body an admin request may have: they are a key and a tier.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The body as `T`; an empty body is `{}`.
pub(crate) async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
) -> Result<T, ApiError> {
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body is larger than {MAX_BODY} bytes"),
            ))
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!(
                    "the body did not arrive within {} ms ([limits] body_timeout_ms)",
                    timeout.as_millis()
                ),
            ))
        }
    };
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the body as Content-Type: application/json",
            ));
        }
        &bytes
    };
    serde_json::from_slice(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("the body is not what this route takes: {e}"),
        )
    })
}
