//! GraphQL over WebSocket, the `graphql-transport-ws` subprotocol (the `graphql-ws` npm
//! library's): `connection_init` (credentials in its payload: `Authorization` or `authToken`, and
//! the tenant header; else the upgrade request's headers) then `connection_ack`; `subscribe` /
//! `next` / `error` / `complete`; `ping` / `pong`. Close codes: 4400 invalid message, 4401
//! subscribe before `connection_ack`, 4403 forbidden (credentials refused), 4406 another
//! subprotocol, 4408 no `connection_init` in time, 4409 a subscription id already in use, 4429 a
//! second `connection_init`; 1008 a subscriber that does not read (its buffer is full), 1013 its
//! tenant suspended or moved, 1001 the server shutting down. A token that expires ends every
//! subscription with an error, then the socket with 4403.
//!
//! Each `next` of a subscription carries `payload.extensions.position`; a `subscribe` whose
//! `payload.extensions.after` is such a position resumes after it (missed events first).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fraiseql_engine::metrics::Refusal;
use fraiseql_engine::response::OutcomeKind;
use fraiseql_engine::subscriptions::{ConnectionGuard, Item, Kill, Refused};
use fraiseql_engine::{ErrorCode, GraphqlError, GraphqlRequest, Method};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::Credentials;
use crate::answer::{error_response, Media};
use crate::AppState;

/// The subprotocol.
pub(crate) const PROTOCOL: &str = "graphql-transport-ws";

/// Bytes of the socket's read buffer: a client's messages are small (a larger one grows it for
/// its own frame), so a 10,000-connection server does not hold tungstenite's 128 KiB default
/// per socket.
const READ_BUFFER: usize = 512;

/// Keep-alive pings a client may leave unanswered before it is taken for gone.
const SILENT_PINGS: u32 = 3;

/// A client message (`type` tagged).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: GraphqlRequest,
    },
    Complete {
        id: String,
    },
}

/// `GET /graphql` with `Upgrade: websocket`.
pub(crate) async fn upgrade(state: AppState, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let engine = &state.engine;
    let Some(subs) = engine.subscriptions() else {
        return error_response(
            StatusCode::NOT_IMPLEMENTED,
            Media::Json,
            ErrorCode::OperationNotSupported,
            "this server does not serve GraphQL over WebSocket: it has no subscriptions running (see its start-up log)",
        );
    };
    let guard = match subs.open() {
        Ok(g) => g,
        Err(e) => {
            let mut r = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                Media::Json,
                e.extensions.code,
                &e.message,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
    };
    let offered = ws
        .requested_protocols()
        .any(|p| p.as_bytes().trim_ascii() == PROTOCOL.as_bytes());
    let credentials =
        Credentials::from_headers(&headers, &engine.config().multi_tenancy.auth_header)
            .unwrap_or_default();
    let max_message = engine.config().limits.max_body_bytes;
    ws.protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let mut s = Session {
                state,
                guard,
                socket,
                upgrade: credentials,
                ops: HashMap::new(),
            };
            if !offered {
                s.close(4406, "Subprotocol not acceptable").await;
                return;
            }
            s.run().await;
        })
        .into_response()
}

/// Where an operation of the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Being planned and registered (or run, for a query).
    Starting,
    /// Started, then completed by the client before it was registered.
    Cancelled,
    /// A live subscription.
    Subscribed,
}

/// What a started operation came to.
enum Started {
    Subscription(String, Result<Option<String>, Refused>, GraphqlRequest),
    Executed(String, Option<fraiseql_engine::Outcome>),
}

struct Session {
    state: AppState,
    guard: ConnectionGuard,
    socket: WebSocket,
    upgrade: Credentials,
    ops: HashMap<String, Op>,
}

/// The reason of a close frame: at most 123 bytes (cut on a character boundary).
fn reason(text: &str) -> Utf8Bytes {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Utf8Bytes::from(text[..end].to_owned())
}

fn json(v: &Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

impl Session {
    /// Writes `msg`, unless the connection is killed meanwhile (a client that does not read).
    async fn send(&mut self, msg: Message) -> bool {
        let conn = self.guard.connection().clone();
        tokio::select! {
            r = self.socket.send(msg) => r.is_ok(),
            () = conn.dead() => false,
        }
    }

    async fn close(&mut self, code: u16, why: &str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason(why),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.send(frame)).await;
    }

    async fn refuse(&mut self, code: u16, why: &str) {
        if let Some(s) = self.state.engine.subscriptions() {
            s.refused(match code {
                4403 => Refusal::Unauthorized,
                _ => Refusal::Protocol,
            });
        }
        self.close(code, why).await;
    }

    /// The connection: `connection_init` within the deadline, then messages until either side
    /// ends it.
    async fn run(&mut self) {
        let wait = Duration::from_millis(self.guard.config().connection_init_timeout_ms);
        let init = match tokio::time::timeout(wait, Box::pin(self.await_init())).await {
            Ok(Some(payload)) => payload,
            Ok(None) => return,
            Err(_) => {
                self.refuse(4408, "Connection initialisation timeout").await;
                return;
            }
        };
        if !Box::pin(self.identify(init)).await {
            return;
        }
        if !self
            .send(json(&serde_json::json!({"type": "connection_ack"})))
            .await
        {
            return;
        }
        Box::pin(self.serve()).await;
    }

    /// Reads until `connection_init` (its payload); `None` when the connection ended.
    async fn await_init(&mut self) -> Option<Option<Value>> {
        loop {
            let msg = self.socket.recv().await?.ok()?;
            match self.parse(msg).await? {
                ClientMessage::ConnectionInit { payload } => return Some(payload),
                ClientMessage::Ping { payload } => {
                    let pong = pong(payload);
                    if !self.send(pong).await {
                        return None;
                    }
                }
                ClientMessage::Pong { .. } => {}
                ClientMessage::Subscribe { .. } => {
                    self.refuse(4401, "Unauthorized").await;
                    return None;
                }
                ClientMessage::Complete { .. } => {}
            }
        }
    }

    /// A text frame as a client message; closes with 4400 (`None`) when it is not one.
    /// Control frames are answered by tungstenite; a close ends the session.
    async fn parse(&mut self, msg: Message) -> Option<ClientMessage> {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => {
                return Some(ClientMessage::Pong { payload: None })
            }
            Message::Binary(_) => {
                self.refuse(4400, "binary messages are not part of graphql-transport-ws")
                    .await;
                return None;
            }
        };
        match serde_json::from_str::<ClientMessage>(text.as_str()) {
            Ok(ClientMessage::Subscribe { id, .. }) | Ok(ClientMessage::Complete { id })
                if id.is_empty() || id.len() > 256 =>
            {
                self.refuse(4400, "a message id is 1 to 256 characters")
                    .await;
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                self.refuse(4400, &format!("invalid message: {e}")).await;
                None
            }
        }
    }

    /// Resolves the caller from `connection_init`'s payload (or the upgrade's headers); closes
    /// with 4403 when refused.
    async fn identify(&mut self, payload: Option<Value>) -> bool {
        let engine = self.state.engine.clone();
        let tenant_name = engine
            .config()
            .multi_tenancy
            .auth_header
            .to_ascii_lowercase();
        let given = credentials(payload.as_ref(), &tenant_name);
        let creds = if given.is_empty() {
            self.upgrade.clone()
        } else {
            given
        };
        let identified =
            Box::pin(engine.identify(creds.tenant_header(), creds.authorization.as_deref())).await;
        match identified {
            Ok(ctx) => {
                self.guard.identify(ctx);
                true
            }
            Err(e) => {
                let why = format!("Forbidden: {}", e.error.message);
                self.refuse(4403, &why).await;
                false
            }
        }
    }

    /// After `connection_ack`: client messages, queued events, started operations and
    /// keep-alives, until the connection ends.
    async fn serve(&mut self) {
        let engine = self.state.engine.clone();
        let conn = self.guard.connection().clone();
        let keepalive = Duration::from_secs(self.guard.config().keepalive_secs);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut heard = true;
        let mut silent = 0;
        let mut started: FuturesUnordered<futures_util::future::BoxFuture<'static, Started>> =
            FuturesUnordered::new();
        loop {
            // Started operations first: a subscribe is registered before any later message of
            // the client is handled (a `ping` answered after a `subscribe` means it is live).
            tokio::select! {
                biased;
                Some(done) = started.next(), if !started.is_empty() => {
                    // Boxed: each connection's task holds only the loop's state between events.
                    if !Box::pin(self.on_started(done, &engine, &mut started)).await {
                        return;
                    }
                }
                item = conn.next() => {
                    if !Box::pin(self.on_item(item)).await {
                        return;
                    }
                }
                msg = self.socket.recv() => {
                    let Some(Ok(msg)) = msg else { return };
                    heard = true;
                    let Some(msg) = self.parse(msg).await else { return };
                    if !Box::pin(self.on_message(msg, &engine, &mut started)).await {
                        return;
                    }
                }
                _ = tick.tick() => {
                    // A peer that answered none of the last pings is gone (a client answers a
                    // ping while it reads the socket, so some leeway).
                    silent = if heard { 0 } else { silent + 1 };
                    heard = false;
                    if silent >= SILENT_PINGS {
                        self.close(1001, "no answer to the keep-alive pings").await;
                        return;
                    }
                    if !self.send(Message::Ping(Bytes::new())).await {
                        return;
                    }
                }
            }
        }
    }

    async fn on_message(
        &mut self,
        msg: ClientMessage,
        engine: &Arc<fraiseql_engine::Engine>,
        started: &mut FuturesUnordered<futures_util::future::BoxFuture<'static, Started>>,
    ) -> bool {
        match msg {
            ClientMessage::ConnectionInit { .. } => {
                self.refuse(4429, "Too many initialisation requests").await;
                false
            }
            ClientMessage::Ping { payload } => self.send(pong(payload)).await,
            ClientMessage::Pong { .. } => true,
            ClientMessage::Complete { id } => {
                match self.ops.get(&id) {
                    Some(Op::Starting) => {
                        self.ops.insert(id, Op::Cancelled);
                    }
                    Some(Op::Subscribed) => {
                        self.guard.unsubscribe(&id);
                        self.ops.remove(&id);
                    }
                    _ => {}
                }
                true
            }
            ClientMessage::Subscribe { id, payload } => {
                if self.ops.contains_key(&id) {
                    self.refuse(4409, &format!("Subscriber for {id} already exists"))
                        .await;
                    return false;
                }
                self.ops.insert(id.clone(), Op::Starting);
                started.push(Box::pin(subscribe(
                    engine.clone(),
                    self.guard.clone(),
                    id,
                    payload,
                )));
                true
            }
        }
    }

    /// An operation finished starting: a subscription registered (or refused), or a query's or
    /// mutation's answer.
    async fn on_started(
        &mut self,
        done: Started,
        engine: &Arc<fraiseql_engine::Engine>,
        started: &mut FuturesUnordered<futures_util::future::BoxFuture<'static, Started>>,
    ) -> bool {
        match done {
            Started::Subscription(id, Ok(_), _) => {
                if self.ops.get(&id) == Some(&Op::Cancelled) {
                    self.guard.unsubscribe(&id);
                    self.ops.remove(&id);
                } else {
                    self.ops.insert(id, Op::Subscribed);
                }
                true
            }
            Started::Subscription(id, Err(Refused::NotSubscription), req) => {
                let Some(ctx) = self.guard.context().cloned() else {
                    return false;
                };
                let engine = engine.clone();
                started.push(Box::pin(async move {
                    let outcome =
                        crate::answer::execute_within_deadline(&engine, &req, Method::Post, &ctx)
                            .await;
                    Started::Executed(id, outcome)
                }));
                true
            }
            Started::Subscription(id, Err(Refused::DuplicateId), _) => {
                self.refuse(4409, &format!("Subscriber for {id} already exists"))
                    .await;
                false
            }
            Started::Subscription(id, Err(Refused::Errors(errors)), _) => {
                let cancelled = self.ops.remove(&id) == Some(Op::Cancelled);
                cancelled || self.send(error_message(&id, &errors)).await
            }
            Started::Executed(id, outcome) => {
                let cancelled = self.ops.remove(&id) == Some(Op::Cancelled);
                if cancelled {
                    return true;
                }
                let Some(outcome) = outcome else {
                    let e =
                        GraphqlError::new(ErrorCode::InternalServerError, crate::answer::TIMED_OUT);
                    return self.send(error_message(&id, &[e])).await;
                };
                if outcome.kind == OutcomeKind::Data {
                    let next = frame(&id, "next", Some(&outcome.body));
                    self.send(next).await && self.send(frame(&id, "complete", None)).await
                } else {
                    // A request error: `{"errors":[...]}`, sent as the `error` message's list.
                    let errors = serde_json::from_slice::<Value>(&outcome.body)
                        .ok()
                        .and_then(|v| v.get("errors").cloned())
                        .unwrap_or(Value::Array(Vec::new()));
                    self.send(json(
                        &serde_json::json!({"id": id, "type": "error", "payload": errors}),
                    ))
                    .await
                }
            }
        }
    }

    /// Writes what the engine queued, or ends the connection it killed.
    async fn on_item(&mut self, item: Item) -> bool {
        match item {
            Item::Next {
                id,
                body,
                committed,
                ..
            } => {
                if self.ops.get(&*id) != Some(&Op::Subscribed)
                    && self.ops.get(&*id) != Some(&Op::Starting)
                {
                    return true;
                }
                let ok = self.send(frame(&id, "next", Some(&body))).await;
                self.guard.sent(committed);
                ok
            }
            Item::End { id, errors } => {
                if self.ops.remove(&*id).is_none() {
                    return true;
                }
                if errors.is_empty() {
                    self.send(frame(&id, "complete", None)).await
                } else {
                    self.send(error_message(&id, &errors)).await
                }
            }
            Item::Killed(kill) => {
                self.killed(kill).await;
                false
            }
        }
    }

    /// Ends the connection the engine killed, with the close code its reason calls for; a
    /// token that expired or a tenant that went first ends each subscription with an error.
    async fn killed(&mut self, kill: Kill) {
        let (code, error) = match &kill {
            Kill::TooSlow { .. } => (1008, None),
            Kill::Shutdown => (1001, None),
            Kill::TokenExpired => (
                4403,
                Some(GraphqlError::new(
                    ErrorCode::Unauthenticated,
                    "token expired: subscribe again with a new token (pass the last position to miss nothing)",
                )),
            ),
            Kill::TenantGone => (
                1013,
                Some(GraphqlError::new(
                    ErrorCode::TenantSuspended,
                    "this tenant is suspended or being moved; subscribe again later (pass the last position to miss nothing)",
                )),
            ),
        };
        if let Some(e) = error {
            let ids: Vec<String> = self.ops.drain().map(|(id, _)| id).collect();
            for id in ids {
                let msg = error_message(&id, std::slice::from_ref(&e));
                let sent =
                    tokio::time::timeout(Duration::from_secs(1), self.socket.send(msg)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
        }
        tracing::info!(reason = %kill.reason(), "subscription connection closed by the server");
        self.close(code, &kill.reason()).await;
    }
}

/// Starts subscription `id` (or finds it is a query or mutation).
async fn subscribe(
    engine: Arc<fraiseql_engine::Engine>,
    guard: ConnectionGuard,
    id: String,
    req: GraphqlRequest,
) -> Started {
    let result = engine.subscribe(&guard, &id, &req, None).await;
    Started::Subscription(id, result, req)
}

/// `{"id":..,"type":..,"payload":<body>}` with the body's JSON copied as is.
fn frame(id: &str, kind: &str, payload: Option<&Bytes>) -> Message {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::with_capacity(payload.map_or(0, Bytes::len) + id.len() + 40);
    out.push_str("{\"id\":");
    out.push_str(&id);
    out.push_str(",\"type\":\"");
    out.push_str(kind);
    out.push('"');
    if let Some(p) = payload {
        out.push_str(",\"payload\":");
        out.push_str(&String::from_utf8_lossy(p));
    }
    out.push('}');
    Message::Text(Utf8Bytes::from(out))
}

fn error_message(id: &str, errors: &[GraphqlError]) -> Message {
    json(&serde_json::json!({"id": id, "type": "error", "payload": errors}))
}

fn pong(payload: Option<Value>) -> Message {
    let mut m = serde_json::json!({"type": "pong"});
    if let Some(p) = payload {
        m["payload"] = p;
    }
    json(&m)
}

/// The credentials in a `connection_init` payload: `Authorization` (or `authToken`, FraiseQL's
/// key, a bare token or `Bearer <jwt>`) and the tenant header, any case.
fn credentials(payload: Option<&Value>, tenant_name: &str) -> Credentials {
    let mut c = Credentials::default();
    let Some(Value::Object(map)) = payload else {
        return c;
    };
    for (k, v) in map {
        let key = k.to_ascii_lowercase();
        let Some(text) = v.as_str() else { continue };
        if key == "authorization" {
            c.authorization = Some(text.to_owned());
        } else if key == "authtoken" && c.authorization.is_none() {
            c.authorization = Some(if text.starts_with("Bearer ") {
                text.to_owned()
            } else {
                format!("Bearer {text}")
            });
        } else if key == tenant_name || key == "x-tenant-id" {
            let visible = !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
            c.tenant = Some(if visible {
                Ok(text.to_owned())
            } else {
                Err(())
            });
        }
    }
    c
}
