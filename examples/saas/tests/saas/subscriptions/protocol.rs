//! The protocol's refusals (each close code of `graphql-transport-ws`, HTTP statuses over SSE),
//! the `[subscriptions]` limits, a token that expires, a tenant suspended under its
//! subscribers, and the shutdown's close.

use std::time::Duration;

use fraiseql::engine::tenancy::TenantStatus;
use fraiseql_testing::NatsServer;
use serde_json::{json, Value};

use super::client::{Served, Sse, Ws, WAIT};
use super::{
    org, project, sse_watching, sync, token, two_tenants_watching, watching, world, CREATED,
};

/// Each refusal closes with the protocol's code before any event: no credentials, a token for
/// another tenant, an invalid token (4403); subscribe before `connection_ack` (4401); no
/// `connection_init` in time (4408); a second one (4429); an id in use (4409); a message that
/// is not one (4400); another subprotocol (4406). Over SSE the same credentials are 401/403.
#[tokio::test]
async fn refusals_close_with_the_protocols_codes() {
    let nats = NatsServer::start().expect("nats");
    let t = world("database_per_tenant", &nats, "", "").await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let init = |payload: serde_json::Value| json!({"type": "connection_init", "payload": payload});
    let refused = [
        (json!({}), "Forbidden: missing bearer token"),
        (
            json!({ "Authorization": format!("Bearer {ta}"), "X-Tenant-ID": "globex" }),
            "Forbidden: the X-Tenant-ID header does not match the token's tenant",
        ),
        (
            json!({ "Authorization": "Bearer not.a.token" }),
            "Forbidden: invalid token",
        ),
    ];
    for (payload, reason) in refused {
        let mut ws = Ws::open(s.port).await;
        ws.send(init(payload.clone())).await;
        let (closed, seen) = ws.closed().await;
        assert_eq!(closed.code, 4403, "{payload}: {seen:?}");
        assert!(closed.reason.starts_with(reason), "{payload}: {closed:?}");
        assert!(seen.is_empty(), "nothing before the close: {seen:?}");
    }
    let mut ws = Ws::open(s.port).await;
    ws.subscribe("p", CREATED, json!({}), json!({})).await;
    assert_eq!(ws.closed().await.0.code, 4401);
    let mut ws = Ws::open(s.port).await;
    let (closed, _) = ws.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4408, "Connection initialisation timeout")
    );
    let mut ws = Ws::connect_as(s.port, &ta).await;
    ws.send(init(json!({}))).await;
    assert_eq!(ws.closed().await.0.code, 4429);
    let mut ws = Ws::connect_as(s.port, &ta).await;
    ws.subscribe("same", CREATED, json!({}), json!({})).await;
    ws.subscribe("same", CREATED, json!({}), json!({})).await;
    let (closed, _) = ws.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4409, "Subscriber for same already exists")
    );
    let mut ws = Ws::connect_as(s.port, &ta).await;
    ws.send(json!({"type": "subscribe", "id": "x"})).await;
    assert_eq!(ws.closed().await.0.code, 4400);
    // Without the subprotocol: upgraded, then closed with 4406. Offering only another one
    // (the legacy `graphql-ws`), the server selects none and the client refuses the handshake.
    let mut ws = Ws::open_with(s.port, "", &[]).await;
    let (closed, _) = ws.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4406, "Subprotocol not acceptable")
    );
    assert!(Ws::try_open(s.port, "graphql-ws", &[]).await.is_err());
    // Credentials may come with the upgrade request, or as FraiseQL's `authToken`.
    let bearer = format!("Bearer {ta}");
    let mut ws = Ws::open_with(
        s.port,
        "graphql-transport-ws",
        &[("Authorization", &bearer)],
    )
    .await;
    ws.send(init(json!({}))).await;
    assert_eq!(ws.recv().await["type"], "connection_ack");
    Ws::connect(s.port, json!({ "authToken": ta })).await;
    // SSE: refused as HTTP refuses, before any event.
    let body = json!({ "query": CREATED });
    let sse = Sse::open(s.port, &[], &body).await;
    assert_eq!(sse.status, 401);
    assert_eq!(
        sse.body().await["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    let sse = Sse::open(
        s.port,
        &[("Authorization", &bearer), ("X-Tenant-ID", "globex")],
        &body,
    )
    .await;
    assert_eq!(sse.status, 403);
    let sse = Sse::open(
        s.port,
        &[("Authorization", &bearer)],
        &json!({ "query": "subscription { projectCreated { nope } }" }),
    )
    .await;
    assert_eq!(sse.status, 400);
    assert!(
        s.metric(
            "fraiseql_subscription_refused",
            Some("reason=\"unauthorized\"")
        ) >= 4.0
    );
    assert!(s.metric("fraiseql_subscription_refused", Some("reason=\"protocol\"")) >= 5.0);
}

/// Subscribes `a`, `b` and `c` to [`CREATED`] on `ws`; the error refusing `c` as
/// `TOO_MANY_SUBSCRIPTIONS`.
async fn third_refused(ws: &mut Ws) -> Value {
    for id in ["a", "b", "c"] {
        ws.subscribe(id, CREATED, json!({}), json!({})).await;
    }
    let e = ws.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["id"].as_str()),
        (Some("error"), Some("c")),
        "{e}"
    );
    assert_eq!(
        e["payload"][0]["extensions"]["code"],
        "TOO_MANY_SUBSCRIPTIONS"
    );
    e
}

/// `[subscriptions] max_subscriptions_per_connection` and `max_subscriptions_per_tenant` refuse
/// the subscription with `TOO_MANY_SUBSCRIPTIONS`; the connection stays.
#[tokio::test]
async fn limits_refuse_with_a_reason() {
    let nats = NatsServer::start().expect("nats");
    let keys = "max_subscriptions_per_connection = 2\nmax_subscriptions_per_tenant = 3";
    let t = world("database_per_tenant", &nats, keys, "").await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let mut ws = Ws::connect_as(s.port, &ta).await;
    let e = third_refused(&mut ws).await;
    assert!(e["payload"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("max_subscriptions_per_connection")));
    let mut other = Ws::connect_as(s.port, &ta).await;
    other.subscribe("d", CREATED, json!({}), json!({})).await;
    other.subscribe("e", CREATED, json!({}), json!({})).await;
    let e = other.recv().await;
    assert_eq!(e["id"], "e", "{e}");
    assert!(e["payload"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("max_subscriptions_per_tenant")));
    // The first connection's subscriptions still deliver.
    sync(&mut ws).await;
    let o = org(&s, &ta, "Acme").await;
    project(&s, &ta, &o, "still here").await;
    assert_eq!(
        ws.next_of("a").await["data"]["projectCreated"]["name"],
        "still here"
    );
}

/// A tenant's plan caps the subscriptions it holds at once (`[tiers.<name>] max_subscriptions`,
/// here through `[tiers.default]`): the one over the cap is refused naming the plan, another
/// tenant holds its own, and a completed subscription frees its place.
#[tokio::test]
async fn a_tenants_plan_caps_its_subscriptions() {
    let nats = NatsServer::start().expect("nats");
    let t = world(
        "schema_per_tenant",
        &nats,
        "",
        "[tiers.default]\nmax_subscriptions = 2\n",
    )
    .await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let mut ws = Ws::connect_as(s.port, &ta).await;
    let e = third_refused(&mut ws).await;
    assert!(
        e["payload"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[tiers] max_subscriptions")),
        "{e}"
    );
    assert_eq!(
        s.metric(
            "fraiseql_subscription_refused_total",
            Some("tier_max_subscriptions")
        ),
        1.0
    );
    // Another tenant of the same plan holds its own two.
    let tg = token(&t, "globex", &["admin"]);
    let mut other = Ws::connect_as(s.port, &tg).await;
    other.subscribe("x", CREATED, json!({}), json!({})).await;
    other.subscribe("y", CREATED, json!({}), json!({})).await;
    sync(&mut other).await;
    // Ending one frees its place: the next is admitted, and delivers.
    ws.send(json!({"id": "a", "type": "complete"})).await;
    ws.subscribe("d", CREATED, json!({}), json!({})).await;
    sync(&mut ws).await;
    let o = org(&s, &ta, "Acme").await;
    project(&s, &ta, &o, "after a complete").await;
    assert_eq!(
        ws.next_of("d").await["data"]["projectCreated"]["name"],
        "after a complete"
    );
}

/// A token that expires ends its subscriptions with an error, then the socket with 4403 (an
/// SSE stream with an error result and `complete`).
#[tokio::test]
async fn an_expired_token_ends_its_subscriptions() {
    let nats = NatsServer::start().expect("nats");
    let t = world("database_per_tenant", &nats, "", "").await;
    let mut config = t.config.clone();
    let auth = config.auth.as_mut().expect("[auth]");
    auth.leeway_secs = 0;
    auth.token_ttl_secs = 2;
    let short = fraiseql::engine::identity::jwt::issue(
        auth,
        config.server.profile,
        "acme",
        &["admin".to_owned()],
        None,
    )
    .expect("token");
    let s = Served::start(config).await;
    let mut ws = watching(s.port, &short).await;
    let mut sse = sse_watching(s.port, &short).await;
    assert_eq!(sse.status, 200);
    let (closed, seen) = ws.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4403, "token expired")
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "error");
    assert_eq!(
        seen[0]["payload"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    let (_, r) = sse.next_result().await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{r}"
    );
    assert_eq!(
        sse.next_event(false).await.expect("complete").event,
        "complete"
    );
    assert!(sse.next_event(false).await.is_none(), "the stream ends");
    assert_eq!(
        s.metric(
            "fraiseql_subscription_refused",
            Some("reason=\"token_expired\"")
        ),
        2.0
    );
}

/// A suspended tenant's subscriptions end (WebSocket: an error per subscription, close 1013;
/// SSE: an error result and `complete`); the other tenant's go on.
#[tokio::test]
async fn a_suspended_tenants_subscriptions_end() {
    let nats = NatsServer::start().expect("nats");
    let t = world("schema_per_tenant", &nats, "", "").await;
    let s = Served::start(t.config.clone()).await;
    let (ta, tb, mut wa, mut wb) = two_tenants_watching(&t, &s).await;
    let mut sse = sse_watching(s.port, &ta).await;
    fraiseql::ops::provision::set_status(&t.config, "acme", TenantStatus::Suspended)
        .await
        .expect("suspend");
    let (closed, seen) = wa.closed().await;
    assert_eq!(closed.code, 1013, "{closed:?}");
    assert_eq!(
        seen[0]["payload"][0]["extensions"]["code"],
        "TENANT_SUSPENDED"
    );
    let (_, r) = sse.next_result().await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "TENANT_SUSPENDED");
    let ob = super::org(&s, &tb, "Globex").await;
    project(&s, &tb, &ob, "unaffected").await;
    assert_eq!(
        wb.next_of("p").await["data"]["projectCreated"]["name"],
        "unaffected"
    );
}

/// SIGTERM (the shutdown signal): every socket gets what was queued, then close 1001; SSE
/// streams end.
#[tokio::test]
async fn shutdown_closes_with_1001() {
    let nats = NatsServer::start().expect("nats");
    let t = world("database_per_tenant", &nats, "", "").await;
    let mut s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let mut ws = watching(s.port, &ta).await;
    let mut sse = sse_watching(s.port, &ta).await;
    let o = org(&s, &ta, "Acme").await;
    project(&s, &ta, &o, "last one").await;
    assert_eq!(
        ws.next_of("p").await["data"]["projectCreated"]["name"],
        "last one"
    );
    let (_, r) = sse.next_result().await;
    assert_eq!(r["data"]["projectCreated"]["name"], "last one");
    let engine = s.engine.clone();
    tokio::time::timeout(WAIT, s.stop())
        .await
        .expect("the server stops");
    let (closed, _) = ws.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "server shutting down")
    );
    assert!(
        sse.next_event(false).await.is_none(),
        "the SSE stream ended"
    );
    let subs = engine.subscriptions().expect("subscriptions");
    assert!(
        subs.closed(Duration::from_secs(5)).await,
        "every connection closed"
    );
}
