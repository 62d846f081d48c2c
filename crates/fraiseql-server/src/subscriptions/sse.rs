//! GraphQL over Server-Sent Events, distinct-connections mode (the `graphql-sse` npm library's):
//! one operation per request, `POST /graphql` (or `GET` with the URL parameters) with `Accept:
//! text/event-stream`; credentials in the headers, refused as HTTP refuses them (401, 403, 503)
//! before any event; a request error is a 400 with `{"errors":[...]}`. The stream carries
//! `event: next` (`data:` an execution result, `id:` its position) and ends with `event:
//! complete`; comments keep it alive. A client that reconnects with `Last-Event-ID` (or
//! `extensions.after`) gets every event it missed first. A query or mutation is one `next`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fraiseql_engine::response::OutcomeKind;
use fraiseql_engine::subscriptions::{ConnectionGuard, Item, Kill, Refused};
use fraiseql_engine::{ErrorCode, GraphqlError, GraphqlRequest, Method, Outcome};
use futures_util::stream::{self, BoxStream, StreamExt};
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::Credentials;
use crate::answer::{error_response, Media};
use crate::AppState;

/// The header a reconnecting `EventSource` sends.
const LAST_EVENT_ID: &str = "last-event-id";

fn bad(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    error_response(status, Media::Json, code, message)
}

fn errors_response(status: StatusCode, errors: Vec<GraphqlError>) -> Response {
    let mut r = (status, Outcome::request_error(errors).body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `POST /graphql` with `Accept: text/event-stream`: the body is read as for any request.
pub(crate) async fn post(state: AppState, headers: HeaderMap, body: Body) -> Response {
    let ct = crate::answer::content_type(&headers);
    if ct != "application/json" {
        return bad(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "send the request as Content-Type: application/json",
        );
    }
    let limits = &state.engine.config().limits;
    let deadline = Duration::from_millis(limits.body_timeout_ms);
    let bytes =
        match tokio::time::timeout(deadline, axum::body::to_bytes(body, limits.max_body_bytes))
            .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return bad(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::BadRequest,
                    "the request body is larger than [limits] max_body_bytes",
                )
            }
            Err(_) => {
                return bad(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::BadRequest,
                    "the request body did not arrive in time ([limits] body_timeout_ms)",
                )
            }
        };
    stream(state, &headers, GraphqlRequest::from_json(&bytes)).await
}

/// `GET /graphql?query=...` with `Accept: text/event-stream`.
pub(crate) async fn get(
    state: AppState,
    headers: HeaderMap,
    req: Result<GraphqlRequest, fraiseql_engine::RequestParseError>,
) -> Response {
    stream(state, &headers, req).await
}

/// Identity, then the operation: a subscription's event stream, or one result.
async fn stream(
    state: AppState,
    headers: &HeaderMap,
    req: Result<GraphqlRequest, fraiseql_engine::RequestParseError>,
) -> Response {
    let engine = state.engine.clone();
    let creds = match Credentials::from_headers(headers, &engine.config().multi_tenancy.auth_header)
    {
        Ok(c) => c,
        Err(m) => return bad(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, &m),
    };
    let ctx = match Box::pin(engine.identify(creds.tenant_header(), creds.authorization.as_deref()))
        .await
    {
        Ok(ctx) => ctx,
        Err(e) => {
            if let Some(s) = engine.subscriptions() {
                s.refused(fraiseql_engine::metrics::Refusal::Unauthorized);
            }
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut r = errors_response(status, vec![e.error]);
            crate::answer::refusal_headers(&mut r, e.retry_after);
            return r;
        }
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            return bad(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                &e.to_string(),
            )
        }
    };
    let after = headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let Some(subs) = engine.subscriptions() else {
        if engine.is_subscription(&req) {
            return bad(
                StatusCode::BAD_REQUEST,
                ErrorCode::OperationNotSupported,
                &engine.subscriptions_unavailable(),
            );
        }
        return once(&engine, &req, &ctx).await;
    };
    let guard = match subs.open() {
        Ok(g) => g,
        Err(e) => {
            let mut r = errors_response(StatusCode::SERVICE_UNAVAILABLE, vec![e]);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
    };
    guard.identify(ctx.clone());
    match engine.subscribe(&guard, "", &req, after.as_deref()).await {
        Ok(start) => events(guard, start),
        Err(Refused::NotSubscription) => {
            drop(guard);
            once(&engine, &req, &ctx).await
        }
        Err(Refused::Errors(errors)) => errors_response(StatusCode::BAD_REQUEST, errors),
        Err(Refused::DuplicateId) => bad(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "one operation per request",
        ),
    }
}

/// A query or mutation: its result as one `next`, then `complete` (request errors are 400).
async fn once(
    engine: &Arc<fraiseql_engine::Engine>,
    req: &GraphqlRequest,
    ctx: &fraiseql_engine::RequestContext,
) -> Response {
    let Some(outcome) =
        crate::answer::execute_within_deadline(engine, req, Method::Post, ctx).await
    else {
        return bad(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::InternalServerError,
            crate::answer::TIMED_OUT,
        );
    };
    if outcome.kind != OutcomeKind::Data {
        let mut r = (StatusCode::BAD_REQUEST, outcome.body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    let body = String::from_utf8_lossy(&outcome.body).into_owned();
    let events = vec![
        Ok::<_, Infallible>(Event::default().event("next").data(body)),
        Ok(Event::default().event("complete").data("")),
    ];
    Sse::new(stream::iter(events)).into_response()
}

/// The subscription's stream: the position of "now" first (a client that reconnects before
/// any event still resumes from there), then its events until it ends.
fn events(guard: ConnectionGuard, start: Option<String>) -> Response {
    let keepalive = Duration::from_secs(guard.config().keepalive_secs);
    let first = stream::iter(start.map(|p| Ok(Event::default().id(p))));
    let rest: BoxStream<'static, Result<Event, Infallible>> =
        stream::unfold(Some(guard), |state| async move {
            let guard = state?;
            match guard.next().await {
                Item::Next {
                    body,
                    position,
                    committed,
                    ..
                } => {
                    guard.sent(committed);
                    let e = Event::default()
                        .event("next")
                        .id(&*position)
                        .data(String::from_utf8_lossy(&body));
                    Some((vec![Ok(e)], Some(guard)))
                }
                Item::End { errors, .. } => Some((finish(errors), None)),
                Item::Killed(kill) => {
                    tracing::info!(reason = %kill.reason(), "subscription stream ended by the server");
                    let error = match kill {
                        Kill::TokenExpired => Some(GraphqlError::new(
                            ErrorCode::Unauthenticated,
                            "token expired: subscribe again with a new token (Last-Event-ID resumes)",
                        )),
                        Kill::TenantGone => Some(GraphqlError::new(
                            ErrorCode::TenantSuspended,
                            "this tenant is suspended or being moved; subscribe again later (Last-Event-ID resumes)",
                        )),
                        // A client that does not read, or a shutdown: the stream just ends
                        // (an EventSource reconnects with Last-Event-ID).
                        Kill::TooSlow { .. } | Kill::Shutdown => None,
                    };
                    Some((error.map(|e| finish(vec![e])).unwrap_or_default(), None))
                }
            }
        })
        .flat_map(stream::iter)
        .boxed();
    Sse::new(first.chain(rest))
        .keep_alive(KeepAlive::new().interval(keepalive))
        .into_response()
}

/// The stream's last events: the errors (if any) as a result, then `complete`.
fn finish(errors: Vec<GraphqlError>) -> Vec<Result<Event, Infallible>> {
    let mut out = Vec::with_capacity(2);
    if !errors.is_empty() {
        let body = serde_json::json!({ "errors": errors }).to_string();
        out.push(Ok(Event::default().event("next").data(body)));
    }
    out.push(Ok(Event::default().event("complete").data("")));
    out
}
