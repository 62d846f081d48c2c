//! `/graphql`: GraphQL over HTTP (media types, status codes) around `Engine::execute`; a
//! WebSocket upgrade or `Accept: text/event-stream` goes to `subscriptions/`.

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use fraiseql_engine::engine::Method;
use fraiseql_engine::response::OutcomeKind;
use fraiseql_engine::{ErrorCode, GraphqlRequest, Outcome, RequestParseError};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use tracing::Instrument;

use crate::answer::{
    error_response, execute_within_deadline, record, tenant_header, with_media, Media,
    GRAPHQL_RESPONSE, JSON, TIMED_OUT,
};
use crate::{graphiql, AppState};

fn negotiate(headers: &HeaderMap) -> Result<Media, Box<Response>> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Media::Json);
    };
    let mut any = false;
    for part in accept.split(',') {
        let mime = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            GRAPHQL_RESPONSE => return Ok(Media::GraphqlResponse),
            JSON => return Ok(Media::Json),
            "*/*" | "application/*" => any = true,
            _ => {}
        }
    }
    if any {
        Ok(Media::Json)
    } else {
        Err(Box::new(error_response(
            StatusCode::NOT_ACCEPTABLE,
            Media::Json,
            ErrorCode::BadRequest,
            "this endpoint answers application/graphql-response+json or application/json",
        )))
    }
}

/// 503 with `Retry-After: 1`: every slot for requests in flight is taken.
fn shed(state: &AppState, media: Media) -> Response {
    state.engine.metrics().shed();
    let mut r = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        media,
        ErrorCode::InternalServerError,
        "the server is at its limit of requests in flight; retry shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Adds the plan's rate-limit header fields (`fraiseql_engine::quota`) to `r`.
fn rate_headers(r: &mut Response, headers: &[fraiseql_engine::quota::Header]) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            r.headers_mut()
                .insert(header::HeaderName::from_static(lower(name)), v);
        }
    }
}

/// The lower-case form of the quota module's header names (HTTP/2 and `http` want them so).
fn lower(name: &'static str) -> &'static str {
    match name {
        "RateLimit-Policy" => "ratelimit-policy",
        "RateLimit" => "ratelimit",
        "X-RateLimit-Limit" => "x-ratelimit-limit",
        "X-RateLimit-Remaining" => "x-ratelimit-remaining",
        "Retry-After" => "retry-after",
        _ => "x-fraiseql-unknown",
    }
}

/// 429: the tenant's plan refused the request (rate or concurrency), with `Retry-After` and the
/// rate-limit fields. Always 429, whatever the media type: nothing was executed.
fn refused(refusal: &fraiseql_engine::quota::Refusal, media: Media) -> Response {
    let mut r = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        media,
        ErrorCode::RateLimited,
        &refusal.message,
    );
    rate_headers(&mut r, &refusal.headers);
    r
}

fn respond(outcome: Outcome, media: Media) -> Response {
    if let (OutcomeKind::RateLimited, Some(refusal)) = (outcome.kind, &outcome.refusal) {
        return refused(refusal, media);
    }
    let status = match (outcome.kind, media) {
        (OutcomeKind::RateLimited, _) => StatusCode::TOO_MANY_REQUESTS,
        (OutcomeKind::MethodNotAllowed, _) => StatusCode::METHOD_NOT_ALLOWED,
        (OutcomeKind::Data, _) => StatusCode::OK,
        (OutcomeKind::RequestError, Media::GraphqlResponse) => StatusCode::BAD_REQUEST,
        (OutcomeKind::RequestError, Media::Json) => StatusCode::OK,
        (OutcomeKind::BadRequest, _) => StatusCode::BAD_REQUEST,
        (OutcomeKind::PersistedQueryRetry, _) => StatusCode::OK,
    };
    let mut r = with_media(status, media, outcome.body);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if let Some(c) = outcome.cache {
        // `private`: the answer is the caller's tenant's (and roles'), never a shared cache's.
        let control = format!("private, max-age={}", c.max_age);
        if let Ok(v) = HeaderValue::from_str(&control) {
            r.headers_mut().insert(header::CACHE_CONTROL, v);
        }
        r.headers_mut()
            .insert(header::AGE, HeaderValue::from(c.age));
    }
    r
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetParams {
    query: Option<String>,
    document_id: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// Whether the request asks to become a WebSocket.
fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    params: Result<Query<GetParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if is_websocket(&headers) {
        return match ws {
            Ok(ws) => crate::subscriptions::ws::upgrade(state, headers, ws).await,
            Err(rejection) => rejection.into_response(),
        };
    }
    let Ok(Query(params)) = params else {
        return error_response(
            StatusCode::BAD_REQUEST,
            Media::Json,
            ErrorCode::BadRequest,
            "malformed query string",
        );
    };
    if params.query.is_none() && params.document_id.is_none() && wants_html(&headers) {
        return graphiql::page();
    }
    let req = GraphqlRequest::from_params(
        params.query,
        params.document_id,
        params.operation_name,
        params.variables,
        params.extensions,
    );
    if crate::subscriptions::wants_event_stream(&headers) {
        return crate::subscriptions::sse::get(state, headers, req).await;
    }
    let media = match negotiate(&headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let mut r = execute(&state, &headers, req, Method::Get, media).await;
    // A GET names its document and variables in the URL (short and stable with `documentId`),
    // so a cache may key on it; the answer also depends on the caller's token and tenant, and
    // on the media type: a cache must key on those too.
    let vary = format!(
        "Accept, Authorization, {}",
        state.engine.config().multi_tenancy.auth_header
    );
    if let Ok(v) = HeaderValue::from_str(&vary) {
        r.headers_mut().append(header::VARY, v);
    }
    r
}

/// What the request's log line says besides its status and duration.
#[derive(Default)]
struct RequestLog {
    tenant: Option<String>,
    kind: Option<&'static str>,
    errors: Vec<ErrorCode>,
}

/// Runs one GraphQL request and logs it: one line per request with its id (`X-Request-Id`, set
/// by the router), tenant, operation name and type, HTTP status, duration and error codes. Never
/// the token, the query's values or SQL parameters.
async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    req: Result<GraphqlRequest, RequestParseError>,
    method: Method,
    media: Media,
) -> Response {
    let started = std::time::Instant::now();
    // Client input, so bounded before it is logged.
    let operation: Option<String> = req
        .as_ref()
        .ok()
        .and_then(|r| r.operation_name.as_deref())
        .map(|n| n.chars().take(64).collect());
    let span = request_span(headers, method, operation.as_deref());
    let mut log = RequestLog::default();
    let response = run(state, headers, req, method, media, &mut log)
        .instrument(span.clone())
        .await;
    let request_id = headers
        .get(crate::request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let errors: Vec<&str> = log.errors.iter().map(|c| c.as_str()).collect();
    let status = response.status().as_u16();
    if !span.is_none() {
        span.record("http.response.status_code", i64::from(status));
        span.record("fraiseql.tenant", log.tenant.as_deref().unwrap_or(""));
        span.record("graphql.operation.type", log.kind.unwrap_or(""));
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
    let _entered = span.enter();
    tracing::info!(
        request_id,
        tenant = log.tenant.as_deref().unwrap_or(""),
        operation = operation.as_deref().unwrap_or(""),
        kind = log.kind.unwrap_or(""),
        status,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        errors = errors.join(",").as_str(),
        "graphql request"
    );
    response
}

/// The request's span (OpenTelemetry on), a child of the caller's `traceparent` if it sent one.
fn request_span(headers: &HeaderMap, method: Method, operation: Option<&str>) -> tracing::Span {
    let span = fraiseql_engine::otel_span!(
        "graphql.request",
        otel.name = match method {
            Method::Get => "GET /graphql",
            Method::Post => "POST /graphql",
        },
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = match method {
            Method::Get => "GET",
            Method::Post => "POST",
        },
        http.route = "/graphql",
        http.response.status_code = tracing::field::Empty,
        graphql.operation.name = operation.unwrap_or(""),
        graphql.operation.type = tracing::field::Empty,
        fraiseql.tenant = tracing::field::Empty,
    );
    if !span.is_none() {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        fraiseql_engine::telemetry::set_parent(
            &span,
            header(fraiseql_engine::telemetry::TRACEPARENT),
            header("tracestate"),
        );
    }
    span
}

/// Resolves the caller (token, tenant), then runs a parsed request, or answers 400 for one that
/// did not parse. Identity comes first: an unauthenticated caller learns nothing about the query.
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    req: Result<GraphqlRequest, RequestParseError>,
    method: Method,
    media: Media,
    log: &mut RequestLog,
) -> Response {
    // The body is read by now: from here the request holds a slot, or is shed at once (nothing
    // queues).
    let Ok(_slot) = state.in_flight.try_acquire() else {
        return shed(state, media);
    };
    let engine = &state.engine;
    let tenant = tenant_header(headers, &engine.config().multi_tenancy.auth_header);
    let authorization = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            let mut r = error_response(
                StatusCode::UNAUTHORIZED,
                media,
                ErrorCode::Unauthenticated,
                "the Authorization header must be `Bearer <jwt>` in ASCII",
            );
            crate::answer::refusal_headers(&mut r, None);
            return r;
        }
    };
    // The big futures are boxed: this handler's own future is moved several times by the
    // middleware, and a small one is cheap to move.
    let service = req.as_ref().is_ok_and(|r| engine.is_service_query(r));
    let identity_span = fraiseql_engine::otel_child_span!("graphql.identity");
    let identified = match service {
        true => engine.identify_service(authorization),
        false => {
            Box::pin(engine.identify(tenant, authorization))
                .instrument(identity_span)
                .await
        }
    };
    let ctx = match identified {
        Ok(ctx) => ctx,
        Err(e) => {
            log.errors.push(e.error.extensions.code);
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let body = Outcome::request_error(vec![e.error]).body;
            let mut r = with_media(status, media, body);
            crate::answer::refusal_headers(&mut r, e.retry_after);
            return r;
        }
    };
    log.tenant = ctx.tenant.as_ref().map(|t| t.key.clone());
    // The tenant's plan, before any connection is taken: over it, 429 at once (nothing queues).
    let admission = match engine.admit(&ctx) {
        Ok(a) => a,
        Err(refusal) => {
            log.errors.push(ErrorCode::RateLimited);
            let codes = [ErrorCode::RateLimited];
            record(engine, &ctx, None, std::time::Duration::ZERO, &codes);
            return refused(&refusal, media);
        }
    };
    let mut response = Box::pin(execute_admitted(
        engine, &ctx, req, method, media, headers, log,
    ))
    .await;
    // A mutation refused by its own rate carries that refusal's fields.
    if response.status() != StatusCode::TOO_MANY_REQUESTS {
        rate_headers(&mut response, &admission.headers);
    }
    response
}

/// Runs a request its tenant's plan admitted: parse errors, then `Engine::execute` under the
/// request's deadline.
async fn execute_admitted(
    engine: &std::sync::Arc<fraiseql_engine::Engine>,
    ctx: &fraiseql_engine::RequestContext,
    req: Result<GraphqlRequest, RequestParseError>,
    method: Method,
    media: Media,
    headers: &HeaderMap,
    log: &mut RequestLog,
) -> Response {
    let mut req = match req {
        Ok(req) => req,
        Err(e) => {
            log.errors.push(ErrorCode::BadRequest);
            return error_response(
                StatusCode::BAD_REQUEST,
                media,
                ErrorCode::BadRequest,
                &e.to_string(),
            );
        }
    };
    req.trace = headers
        .get(fraiseql_engine::trace::TRACE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"ftv1");
    let started = std::time::Instant::now();
    let Some(outcome) = execute_within_deadline(engine, &req, method, ctx).await else {
        // Nothing has committed and nothing will.
        log.errors.push(ErrorCode::InternalServerError);
        return error_response(
            StatusCode::REQUEST_TIMEOUT,
            media,
            ErrorCode::InternalServerError,
            TIMED_OUT,
        );
    };
    record(engine, ctx, Some(&outcome), started.elapsed(), &[]);
    log.kind = outcome.operation;
    log.errors.clone_from(&outcome.error_codes);
    respond(outcome, media)
}

pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if crate::subscriptions::wants_event_stream(&headers) {
        return crate::subscriptions::sse::post(state, headers, body).await;
    }
    let media = match negotiate(&headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let ct = crate::answer::content_type(&headers);
    if ct != JSON && ct != GRAPHQL_RESPONSE {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            ErrorCode::BadRequest,
            "send the request as Content-Type: application/json",
        );
    }
    let limits = &state.engine.config().limits;
    let limit = limits.max_body_bytes;
    let deadline = std::time::Duration::from_millis(limits.body_timeout_ms);
    let bytes = match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                media,
                ErrorCode::BadRequest,
                &format!("the request body is larger than {limit} bytes, the limit"),
            )
        }
        Err(_) => {
            // The rest of the body is never read: the connection is closed after this answer.
            let mut r = error_response(
                StatusCode::REQUEST_TIMEOUT,
                media,
                ErrorCode::BadRequest,
                &format!(
                    "the request body did not arrive within {} ms ([limits] body_timeout_ms)",
                    limits.body_timeout_ms
                ),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    execute(
        &state,
        &headers,
        GraphqlRequest::from_json(&bytes),
        Method::Post,
        media,
    )
    .await
}
