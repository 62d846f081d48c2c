//! What every transport of `/graphql` answers with: the media types and error bodies of GraphQL
//! over HTTP, the tenant header as identity reads it, and a request run under its deadline
//! (with the per-tenant request metrics).

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use fraiseql_engine::engine::Method;
use fraiseql_engine::{CommitGate, ErrorCode, GraphqlError, GraphqlRequest, Outcome, TenantHeader};
use http::{header, HeaderMap, HeaderValue, StatusCode};

/// GraphQL over HTTP's media type.
pub(crate) const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The legacy media type.
pub(crate) const JSON: &str = "application/json";

/// Which response media type the client accepts; `graphql-response+json` gets the strict status
/// codes of GraphQL over HTTP, legacy `application/json` gets 200 for anything that was executed
/// or well-formed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    GraphqlResponse,
    Json,
}

/// The headers of a refused identity or admission: `WWW-Authenticate` on a 401, and
/// `Retry-After` when the refusal says when to come back.
pub(crate) fn refusal_headers(r: &mut Response, retry_after: Option<u64>) {
    if r.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// The request's media type: its `Content-Type` without parameters, lowercased (empty when
/// absent or not text).
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A request error with `code` and `message`, as `media`.
pub(crate) fn error_response(
    status: StatusCode,
    media: Media,
    code: ErrorCode,
    message: &str,
) -> Response {
    let body = Outcome::request_error(vec![GraphqlError::new(code, message)]).body;
    with_media(status, media, body)
}

/// `body` with `status` and the `media` content type.
pub(crate) fn with_media(status: StatusCode, media: Media, body: Bytes) -> Response {
    let ct = match media {
        Media::GraphqlResponse => GRAPHQL_RESPONSE,
        Media::Json => JSON,
    };
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if ct == JSON {
            "application/json"
        } else {
            "application/graphql-response+json"
        }),
    );
    r
}

/// Per-tenant request, error and latency metrics (the seed's names). `None`: not executed (timed
/// out, or refused by the tenant's plan), with `codes`.
pub(crate) fn record(
    engine: &fraiseql_engine::Engine,
    ctx: &fraiseql_engine::RequestContext,
    outcome: Option<&Outcome>,
    took: std::time::Duration,
    codes: &[ErrorCode],
) {
    use fraiseql_engine::metrics::Operation;
    let m = engine.metrics();
    if !m.enabled() {
        return;
    }
    let (codes, operation) = match outcome {
        Some(o) => (o.error_codes.as_slice(), o.operation),
        None => (codes, None),
    };
    let operation = match operation {
        Some("mutation") => Operation::Mutation,
        Some(_) => Operation::Query,
        None => Operation::Invalid,
    };
    m.request(
        &engine.tenant_metrics(ctx),
        operation,
        took.as_secs_f64(),
        codes,
    );
}

/// The tenant header: absent, one visible-ASCII value, or malformed (never ignored).
pub(crate) fn tenant_header<'h>(headers: &'h HeaderMap, name: &str) -> TenantHeader<'h> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => TenantHeader::Absent,
        (Some(v), None) => match v.to_str() {
            Ok(s) => TenantHeader::Value(s),
            Err(_) => TenantHeader::Malformed,
        },
        (Some(_), Some(_)) => TenantHeader::Malformed,
    }
}

/// What a client whose request ran out of time is told.
pub(crate) const TIMED_OUT: &str =
    "the request took longer than the server's time limit; nothing was changed";

/// Runs `req` under `[limits] request_timeout_ms`; `None` when the deadline won (then nothing
/// committed; the request is recorded as failed). Used by every transport.
pub(crate) async fn execute_within_deadline(
    engine: &std::sync::Arc<fraiseql_engine::Engine>,
    req: &GraphqlRequest,
    method: Method,
    ctx: &fraiseql_engine::RequestContext,
) -> Option<Outcome> {
    let started = std::time::Instant::now();
    let _in_flight = engine.metrics().in_flight_guard();
    let timeout = std::time::Duration::from_millis(engine.config().limits.request_timeout_ms);
    let gate = CommitGate::new();
    // The deadline is ours, not a middleware's, so that a write either commits (and the answer
    // says so) or the client gets 408 and nothing was changed (see CommitGate). Writes run in a
    // task of their own inside the engine: a client that disconnects cannot stop a mutation
    // between its COMMIT and handing its events to the relay.
    let mut run = Box::pin(engine.execute(req, method, ctx, &gate));
    match tokio::time::timeout(timeout, &mut run).await {
        Ok(outcome) => Some(outcome),
        Err(_) if gate.try_time_out() => {
            record(
                engine,
                ctx,
                None,
                started.elapsed(),
                &[ErrorCode::InternalServerError],
            );
            None
        }
        // A COMMIT is under way: its outcome is the answer.
        Err(_) => Some(run.await),
    }
}
