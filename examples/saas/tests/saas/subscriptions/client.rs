//! What the subscription tests talk to and with: the server in this process on a port of its
//! own (`fraiseql::serve`, as `fraiseql run` serves), a `graphql-transport-ws` client
//! (tokio-tungstenite) and an SSE reader on a plain socket (what the test sees is what went
//! over the wire). Every wait has a deadline that fails with a message.

use std::sync::Arc;
use std::time::Duration;

use fraiseql::engine::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something it expects.
pub const WAIT: Duration = Duration::from_secs(15);

/// A server of the test's own, in this process.
pub struct Served {
    pub engine: Arc<Engine>,
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// Builds the engine of `config` (the schema checked against the databases, events and
    /// subscriptions started) and serves it on a free port; returns once the feed reads the
    /// change stream.
    pub async fn start(config: fraiseql::config::Config) -> Self {
        let engine = Arc::new(Engine::from_config(config).expect("engine"));
        engine.check_databases().await.expect("databases");
        engine.start_events().await.expect("events");
        engine.start_cache_bus().await.expect("cache bus");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(fraiseql::serve(engine.clone(), listener, async move {
            let _ = rx.await;
        }));
        let deadline = tokio::time::Instant::now() + WAIT;
        while !engine.subscriptions().is_some_and(|s| s.ready()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the subscription feed did not reach the change stream within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            engine,
            port,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Shuts the server down as SIGTERM does, and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, t).await;
        }
    }

    /// POSTs a GraphQL request as `token`; the JSON answer.
    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> Value {
        let auth = format!("Bearer {token}");
        let body = json!({ "query": query, "variables": variables }).to_string();
        let answer = fraiseql_testing::http(
            self.port,
            "POST",
            "/graphql",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            &body,
        )
        .await
        .expect("an answer");
        answer.json()
    }

    /// A metric's sum, optionally over the series whose labels contain `label`.
    pub fn metric(&self, name: &str, label: Option<&str>) -> f64 {
        self.engine.metrics().sum(name, label)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A `graphql-transport-ws` client.
pub struct Ws {
    pub socket: Socket,
}

/// How a WebSocket ended: its close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Ws {
    /// Opens `/graphql` offering `protocol` (none if empty), with `headers` on the upgrade
    /// request.
    pub async fn open_with(port: u16, protocol: &str, headers: &[(&str, &str)]) -> Self {
        Self::try_open(port, protocol, headers)
            .await
            .expect("websocket handshake")
    }

    /// Like [`Ws::open_with`], the handshake's error if it fails.
    pub async fn try_open(
        port: u16,
        protocol: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("ws://127.0.0.1:{port}/graphql")
            .into_client_request()
            .expect("request");
        if !protocol.is_empty() {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
        }
        for (k, v) in headers {
            req.headers_mut()
                .insert(http_name(k), v.parse().expect("header value"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Self { socket })
    }

    /// Opens `/graphql` with the subprotocol.
    pub async fn open(port: u16) -> Self {
        Self::open_with(port, "graphql-transport-ws", &[]).await
    }

    /// Opens and initialises with `payload`, expecting `connection_ack`.
    pub async fn connect(port: u16, payload: Value) -> Self {
        let mut ws = Self::open(port).await;
        ws.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        let ack = ws.recv().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws
    }

    /// Opens and initialises with a bearer token.
    pub async fn connect_as(port: u16, token: &str) -> Self {
        Self::connect(port, json!({ "Authorization": format!("Bearer {token}") })).await
    }

    pub async fn send(&mut self, v: Value) {
        self.socket
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    /// Sends `subscribe` for `query` with `variables` and `extensions`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value, extensions: Value) {
        self.send(json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": query, "variables": variables, "extensions": extensions }
        }))
        .await;
    }

    /// The next protocol message (pings and pongs skipped); panics on a close or a timeout.
    pub async fn recv(&mut self) -> Value {
        match self.recv_or_close(WAIT).await {
            Ok(v) => v,
            Err(c) => panic!("the socket closed ({c:?}) while a message was expected"),
        }
    }

    /// The next message, or how the socket closed; panics after `within`.
    pub async fn recv_or_close(&mut self, within: Duration) -> Result<Value, Closed> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no message within {within:?}"));
            match next {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("JSON message"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or(
                        Closed {
                            code: 1005,
                            reason: String::new(),
                        },
                        |f| Closed {
                            code: u16::from(f.code),
                            reason: f.reason.to_string(),
                        },
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Err(Closed {
                        code: 1006,
                        reason: String::new(),
                    })
                }
            }
        }
    }

    /// Reads until the socket closes; its close code and reason (messages before it are
    /// returned too).
    pub async fn closed(&mut self) -> (Closed, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            match self.recv_or_close(WAIT).await {
                Ok(v) => seen.push(v),
                Err(c) => return (c, seen),
            }
        }
    }

    /// The next `next` of subscription `id`: its payload.
    pub async fn next_of(&mut self, id: &str) -> Value {
        loop {
            let m = self.recv().await;
            if m["id"] == id {
                assert_eq!(m["type"], "next", "{m}");
                return m["payload"].clone();
            }
        }
    }

    /// Closes from the client's side.
    pub async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

fn http_name(name: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    name.parse().expect("header name")
}

/// An SSE stream read off the socket (distinct-connections mode).
pub struct Sse {
    reader: BufReader<TcpStream>,
    /// Status of the response.
    pub status: u16,
    chunk_left: usize,
    pending: String,
}

/// One event of an SSE stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl Sse {
    /// POSTs `body` with `Accept: text/event-stream` and `headers`; reads the status line and
    /// headers (a non-200 answer's body stays to be read with [`Sse::body`]).
    pub async fn open(port: u16, headers: &[(&str, &str)], body: &Value) -> Self {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut req = format!(
            "POST /graphql HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).await.expect("write");
        let mut reader = BufReader::new(s);
        let mut status_line = String::new();
        tokio::time::timeout(WAIT, reader.read_line(&mut status_line))
            .await
            .expect("a status line in time")
            .expect("read");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("header");
            if line.trim().is_empty() {
                break;
            }
        }
        Self {
            reader,
            status,
            chunk_left: 0,
            pending: String::new(),
        }
    }

    /// The rest of a (non-streamed) answer's body.
    pub async fn body(mut self) -> Value {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, self.reader.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        // A chunked body: take the JSON between the first `{` and the last `}`.
        let json = match (text.find('{'), text.rfind('}')) {
            (Some(a), Some(b)) => &text[a..=b],
            _ => "null",
        };
        serde_json::from_str(json).unwrap_or(Value::Null)
    }

    /// More de-chunked text; `false` at the end of the stream.
    async fn fill(&mut self) -> bool {
        if self.chunk_left == 0 {
            let mut size = String::new();
            loop {
                size.clear();
                if self.reader.read_line(&mut size).await.unwrap_or(0) == 0 {
                    return false;
                }
                if !size.trim().is_empty() {
                    break;
                }
            }
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                return false;
            }
            self.chunk_left = n;
        }
        let mut buf = vec![0u8; self.chunk_left];
        let got = self.reader.read(&mut buf).await.unwrap_or(0);
        if got == 0 {
            return false;
        }
        self.chunk_left -= got;
        self.pending.push_str(&String::from_utf8_lossy(&buf[..got]));
        true
    }

    /// The next event with an `event:` or `data:` (comments and id-only events are skipped
    /// unless `ids` asks for them); `None` when the stream ended.
    pub async fn next_event(&mut self, ids: bool) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut e = SseEvent::default();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        e.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        e.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !e.data.is_empty() {
                            e.data.push('\n');
                        }
                        e.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if !e.event.is_empty() || !e.data.is_empty() || (ids && e.id.is_some()) {
                    return Some(e);
                }
            }
            let more = tokio::time::timeout_at(deadline, self.fill())
                .await
                .unwrap_or_else(|_| panic!("no SSE event within {WAIT:?}"));
            if !more {
                return None;
            }
        }
    }

    /// The next `next` event: its position and its execution result.
    pub async fn next_result(&mut self) -> (String, Value) {
        let e = self
            .next_event(false)
            .await
            .expect("an event before the end");
        assert_eq!(e.event, "next", "{e:?}");
        (
            e.id.unwrap_or_default(),
            serde_json::from_str(&e.data).expect("JSON data"),
        )
    }
}
