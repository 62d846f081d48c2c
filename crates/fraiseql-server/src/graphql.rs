//! `/graphql`: GraphQL over HTTP (media types, status codes) around `Engine::execute`.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use fraiseql_engine::engine::Method;
use fraiseql_engine::response::OutcomeKind;
use fraiseql_engine::{ErrorCode, GraphqlError, GraphqlRequest, Outcome, RequestParseError};
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

fn respond(outcome: Outcome, media: Media) -> Response {
    let status = match (outcome.kind, media) {
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

/// Per-tenant request, error and latency metrics (the seed's names).
fn record(
    engine: &fraiseql_engine::Engine,
    ctx: &fraiseql_engine::RequestContext,
    outcome: &Outcome,
    took: std::time::Duration,
) {
    let m = engine.metrics();
    let tenant = ctx.tenant.as_ref().map_or("", |t| t.key.as_str());
    m.add(
        "fraiseql_tenant_requests_total",
        &[("tenant_id", tenant), ("endpoint", "/graphql")],
        1.0,
    );
    for code in &outcome.error_codes {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        m.add(
            "fraiseql_tenant_errors_total",
            &[("tenant_id", tenant), ("error_type", &code)],
            1.0,
        );
    }
    m.observe(
        "fraiseql_tenant_latency_seconds",
        &[
            ("tenant_id", tenant),
            ("operation", outcome.operation.unwrap_or("invalid")),
        ],
        took.as_secs_f64(),
    );
}

/// Resolves the caller (token, tenant), then runs a parsed request, or answers 400 for one that
/// did not parse. Identity comes first: an unauthenticated caller learns nothing about the query.
async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    req: Result<GraphqlRequest, RequestParseError>,
    method: Method,
    media: Media,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let tenant = header(&state.engine.config().multi_tenancy.auth_header);
    let ctx = match state
        .engine
        .identify(tenant, header(header::AUTHORIZATION.as_str()))
        .await
    {
        Ok(ctx) => ctx,
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let body = Outcome::request_error(vec![e.error]).body;
            let mut r = with_media(status, media, body);
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return r;
        }
    };
    match req {
        Ok(req) => {
            let started = std::time::Instant::now();
            // In a task of its own: a client that disconnects (or the request timeout) must not
            // cancel a mutation between its COMMIT and handing its events to the relay.
            let engine = state.engine.clone();
            let task_ctx = ctx.clone();
            let outcome =
                match tokio::spawn(async move { engine.execute(&req, method, &task_ctx).await })
                    .await
                {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::error!(error = %e, "request task failed");
                        return error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            media,
                            ErrorCode::InternalServerError,
                            "internal error (see server log)",
                        );
                    }
                };
            record(&state.engine, &ctx, &outcome, started.elapsed());
            respond(outcome, media)
        }
        Err(e) => error_response(
            StatusCode::BAD_REQUEST,
            media,
            ErrorCode::BadRequest,
            &e.to_string(),
        ),
    }
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
    let limit = state.engine.config().limits.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                media,
                ErrorCode::BadRequest,
                &format!("the request body is larger than {limit} bytes, the limit"),
            )
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
