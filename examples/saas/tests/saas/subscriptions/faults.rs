//! What subscriptions must survive: a position past the stream's retention, a client that
//! stops reading, two server instances, and NATS restarted under the subscribers.

use std::collections::BTreeSet;
use std::time::Duration;

use fraiseql::engine::subscriptions::Position;
use fraiseql_testing::NatsServer;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::client::{Served, Sse, Ws, WAIT};
use super::{
    name_of, org, position_of, project, sse_watching, sync, token, watching, world, CREATED,
};

/// A position the stream no longer holds ends the subscription with `POSITION_EXPIRED` (refetch
/// and subscribe again); so does a position of another stream; a string that is no position
/// is `BAD_USER_INPUT`.
#[tokio::test]
async fn a_position_past_retention_is_refused() {
    let nats = NatsServer::start().expect("nats");
    let t = world("database_per_tenant", &nats, "retention_secs = 1", "").await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let o = org(&s, &ta, "Acme").await;
    let mut ws = watching(s.port, &ta).await;
    project(&s, &ta, &o, "old").await;
    let old = position_of(&ws.next_of("p").await);
    project(&s, &ta, &o, "missed").await;
    ws.next_of("p").await;
    ws.close().await;
    // Wait until the stream dropped the event after `old`.
    let seq = Position::decode(&old).expect("position").sequence;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut stream = js.get_stream("CHANGES").await.expect("stream");
        let first = stream.info().await.expect("info").state.first_sequence;
        if first > seq + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream kept sequence {} past its 1 s retention",
            seq + 1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ws = Ws::connect_as(s.port, &ta).await;
    ws.subscribe("p", CREATED, json!({}), json!({ "after": old }))
        .await;
    let e = ws.recv().await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["payload"][0]["extensions"]["code"], "POSITION_EXPIRED");
    assert!(e["payload"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("refetch and subscribe again")));
    let foreign = Position {
        sequence: seq,
        stream: 1,
    }
    .encode();
    ws.subscribe("q", CREATED, json!({}), json!({ "after": foreign }))
        .await;
    assert_eq!(
        ws.recv().await["payload"][0]["extensions"]["code"],
        "POSITION_EXPIRED"
    );
    ws.subscribe("r", CREATED, json!({}), json!({ "after": "yesterday" }))
        .await;
    assert_eq!(
        ws.recv().await["payload"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    let bearer = format!("Bearer {ta}");
    let mut sse = Sse::open(
        s.port,
        &[("Authorization", &bearer), ("Last-Event-ID", &old)],
        &json!({ "query": CREATED }),
    )
    .await;
    let (_, r) = sse.next_result().await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "POSITION_EXPIRED");
}

/// A client that stops reading is disconnected once its buffer is full (close reason "too
/// slow"); a fast client on the same server gets every event, in order, meanwhile.
#[tokio::test]
async fn a_slow_client_is_dropped_and_costs_the_fast_one_nothing() {
    let nats = NatsServer::start().expect("nats");
    let t = world("database_per_tenant", &nats, "buffer = 4", "").await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let o = org(&s, &ta, "Acme").await;
    // The slow client: a small receive window, and it reads nothing after subscribing.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket
        .connect(([127, 0, 0, 1], s.port).into())
        .await
        .expect("connect");
    let mut req = format!("ws://127.0.0.1:{}/graphql", s.port)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (socket, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .expect("handshake");
    let mut slow = Ws { socket };
    slow.send(
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {ta}")}}),
    )
    .await;
    assert_eq!(slow.recv().await["type"], "connection_ack");
    slow.subscribe("p", CREATED, json!({}), json!({})).await;
    sync(&mut slow).await;
    let mut fast = watching(s.port, &ta).await;
    // Events of 60 KiB: the kernel's buffers for the slow client (its window is small, the
    // server's send buffer grows to 4 MiB here) fill, then its buffer of 4 events behind them.
    let filler = "x".repeat(60 * 1024);
    let too_slow =
        |s: &Served| s.metric("fraiseql_subscription_refused", Some("reason=\"too_slow\""));
    let mut n = 0;
    while too_slow(&s) < 1.0 {
        assert!(
            n < 150,
            "the slow client was not dropped after {n} events of 60 KiB"
        );
        project(&s, &ta, &o, &format!("{n:03}{filler}")).await;
        let e = fast.next_of("p").await;
        assert!(
            name_of(&e).starts_with(&format!("{n:03}")),
            "fast got event {n} in order"
        );
        n += 1;
    }
    // The fast client keeps getting events after the slow one is gone.
    project(&s, &ta, &o, "after").await;
    assert_eq!(name_of(&fast.next_of("p").await), "after");
    assert!(s.metric("fraiseql_subscription_events", Some("outcome=\"dropped\"")) >= 1.0);
    // Reading now: what fitted in the socket, then the end (a close frame, if it got through).
    let mut ended = false;
    while let Ok(Some(m)) = tokio::time::timeout(WAIT, slow.socket.next()).await {
        match m {
            Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1008);
                assert!(f.reason.starts_with("subscriber too slow"), "{f:?}");
                ended = true;
                break;
            }
            Ok(_) => continue,
            Err(_) => {
                ended = true;
                break;
            }
        }
    }
    assert!(
        ended || slow.socket.next().await.is_none(),
        "the slow client was disconnected"
    );
    assert_eq!(
        s.metric("fraiseql_subscriptions_active", Some("tenant_id=\"acme\"")),
        1.0,
        "only the fast client's subscription is left"
    );
}

/// Subscribers on two server instances each get every matching event once, whichever
/// instance took the mutation.
#[tokio::test]
async fn two_instances_each_deliver_every_event_once() {
    let nats = NatsServer::start().expect("nats");
    let t = world("row_level", &nats, "", "").await;
    let a = Served::start(t.config.clone()).await;
    let b = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let mut on_a = watching(a.port, &ta).await;
    let mut on_b = sse_watching(b.port, &ta).await;
    let o = org(&a, &ta, "Acme").await;
    let n = 10;
    for i in 0..n {
        let via = if i % 2 == 0 { &a } else { &b };
        project(via, &ta, &o, &format!("P{i}")).await;
    }
    let want: BTreeSet<String> = (0..n).map(|i| format!("P{i}")).collect();
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..n {
        got_a.push(name_of(&on_a.next_of("p").await).to_owned());
        got_b.push(name_of(&on_b.next_result().await.1).to_owned());
    }
    assert_eq!(got_a.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(got_a, got_b, "both in the stream's order");
    // Nothing twice: the next event each sees is the next project.
    project(&b, &ta, &o, "sentinel").await;
    assert_eq!(name_of(&on_a.next_of("p").await), "sentinel");
    assert_eq!(name_of(&on_b.next_result().await.1), "sentinel");
}

/// NATS restarted under the subscribers: mutations committed while it was away are published
/// by the relay's sweeper once it is back, the feed resumes after the last event it
/// dispatched, and every subscriber gets each event once.
#[tokio::test]
async fn nats_restarted_under_subscribers_loses_nothing() {
    let mut nats = NatsServer::start().expect("nats");
    let t = world("database_per_tenant", &nats, "", "").await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let o = org(&s, &ta, "Acme").await;
    let mut ws = watching(s.port, &ta).await;
    let mut sse = sse_watching(s.port, &ta).await;
    project(&s, &ta, &o, "before").await;
    assert_eq!(name_of(&ws.next_of("p").await), "before");
    assert_eq!(name_of(&sse.next_result().await.1), "before");
    nats.stop();
    for n in 1..=3 {
        project(&s, &ta, &o, &format!("during {n}")).await;
    }
    nats.resume().expect("nats again");
    project(&s, &ta, &o, "after").await;
    let want: BTreeSet<String> = ["during 1", "during 2", "during 3", "after"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut got_ws = Vec::new();
    let mut got_sse = Vec::new();
    for _ in 0..want.len() {
        got_ws.push(name_of(&ws.next_of("p").await).to_owned());
        got_sse.push(name_of(&sse.next_result().await.1).to_owned());
    }
    assert_eq!(
        got_ws.iter().cloned().collect::<BTreeSet<_>>(),
        want,
        "{got_ws:?}"
    );
    assert_eq!(got_ws, got_sse);
    project(&s, &ta, &o, "sentinel").await;
    assert_eq!(name_of(&ws.next_of("p").await), "sentinel", "nothing twice");
    assert_eq!(name_of(&sse.next_result().await.1), "sentinel");
}
