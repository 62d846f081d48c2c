//! `/graphql`: GraphQL over HTTP (media types, status codes) around `Engine::execute`.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use fraiseql_engine::engine::Method;
use fraiseql_engine::response::OutcomeKind;
use fraiseql_engine::{
    CommitGate, ErrorCode, GraphqlError, GraphqlRequest, Outcome, RequestParseError, TenantHeader,
};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

use crate::{graphiql, AppState};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// Which response media type the client accepts; `graphql-response+json` gets the strict status
/// codes of GraphQL over HTTP, legacy `application/json` gets 200 for anything that was executed
/// or well-formed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Media {
    GraphqlResponse,
    Json,
}

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

fn error_response(status: StatusCode, media: Media, code: ErrorCode, message: &str) -> Response {
    let body = Outcome::request_error(vec![GraphqlError::new(code, message)]).body;
    with_media(status, media, body)
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

fn with_media(status: StatusCode, media: Media, body: Bytes) -> Response {
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

pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<GetParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return error_response(
            StatusCode::BAD_REQUEST,
            Media::Json,
            ErrorCode::BadRequest,
            "malformed query string",
        );
    };
    if params.query.is_none() && wants_html(&headers) {
        return graphiql::page();
    }
    let media = match negotiate(&headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let req = GraphqlRequest::from_params(
        params.query,
        params.operation_name,
        params.variables,
        params.extensions,
    );
    execute(&state, &headers, req, Method::Get, media).await
}

/// Per-tenant request, error and latency metrics (the seed's names). `None`: not executed (timed
/// out, or refused by the plan), with `codes`.
fn record(
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
fn tenant_header<'h>(headers: &'h HeaderMap, name: &str) -> TenantHeader<'h> {
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
    let mut log = RequestLog::default();
    let response = run(state, headers, req, method, media, &mut log).await;
    let request_id = headers
        .get(crate::request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let errors: Vec<&str> = log.errors.iter().map(|c| c.as_str()).collect();
    tracing::info!(
        request_id,
        tenant = log.tenant.as_deref().unwrap_or(""),
        operation = operation.as_deref().unwrap_or(""),
        kind = log.kind.unwrap_or(""),
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        errors = errors.join(",").as_str(),
        "graphql request"
    );
    response
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
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    // The big futures are boxed: this handler's own future is moved several times by the
    // middleware, and a small one is cheap to move.
    let service = req.as_ref().is_ok_and(|r| engine.is_service_query(r));
    let identified = match service {
        true => engine.identify_service(authorization),
        false => Box::pin(engine.identify(tenant, authorization)).await,
    };
    let ctx = match identified {
        Ok(ctx) => ctx,
        Err(e) => {
            log.errors.push(e.error.extensions.code);
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let body = Outcome::request_error(vec![e.error]).body;
            let mut r = with_media(status, media, body);
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            if let Some(secs) = e.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return r;
        }
    };
    log.tenant = ctx.tenant.as_ref().map(|t| t.key.clone());
    // The tenant's plan, before any connection is taken: over it, 429 at once (nothing queues).
    let admission = match engine.admit(&ctx) {
        Ok(a) => a,
        Err(refusal) => {
            log.errors.push(ErrorCode::RateLimited);
            record(
                engine,
                &ctx,
                None,
                std::time::Duration::ZERO,
                &[ErrorCode::RateLimited],
            );
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
    let _in_flight = engine.metrics().in_flight_guard();
    let timeout = std::time::Duration::from_millis(engine.config().limits.request_timeout_ms);
    let gate = CommitGate::new();
    // The deadline is ours, not a middleware's, so that a write either commits (and the answer
    // says so) or the client gets 408 and nothing was changed (see CommitGate). Writes run in a
    // task of their own inside the engine: a client that disconnects cannot stop a mutation
    // between its COMMIT and handing its events to the relay.
    let mut run = Box::pin(engine.execute(&req, method, ctx, &gate));
    let outcome = match tokio::time::timeout(timeout, &mut run).await {
        Ok(outcome) => outcome,
        Err(_) if gate.try_time_out() => {
            // Nothing has committed and nothing will.
            let codes = [ErrorCode::InternalServerError];
            record(engine, ctx, None, started.elapsed(), &codes);
            log.errors.push(ErrorCode::InternalServerError);
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                media,
                ErrorCode::InternalServerError,
                "the request took longer than the server's time limit; nothing was changed",
            );
        }
        // A COMMIT is under way: its outcome is the answer.
        Err(_) => run.await,
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
    let media = match negotiate(&headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
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
