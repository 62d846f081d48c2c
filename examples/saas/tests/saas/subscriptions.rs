//! Subscriptions end to end: the example's `projectCreated` and `taskStatusChanged` over
//! WebSocket (`graphql-transport-ws`) and SSE, against real PostgreSQL and a NATS server of each
//! test's own: tenant isolation, `[rbac]` on the selection, argument filters and resume from a
//! position under every tenancy strategy; the protocol's refusals, token expiry and suspension
//! (`protocol.rs`); retention, a slow client, two instances and a NATS restart (`faults.rs`).

mod client;
mod faults;
mod protocol;

use fraiseql_testing::{NatsServer, TestTenancy};
use serde_json::{json, Value};

use crate::harness::secured_world_with;
use client::{Served, Sse, Ws};

/// `/metrics` token of these worlds.
const METRICS_TOKEN: &str = "a-metrics-token-of-the-tests";

/// The events and subscriptions of a world: NATS `nats`, `subscriptions` keys appended to
/// `[subscriptions]`, then `more` (whole tables, e.g. `[rbac]`).
fn config(nats: &NatsServer, subscriptions: &str, more: &str) -> String {
    format!(
        r#"
[metrics]
token = "{METRICS_TOKEN}"
[observers]
enabled = true
nats_url = "{url}"
sweep_interval_ms = 200
publish_timeout_ms = 1000
full_sweep_secs = 3600
[observers.stream]
name = "EVENTS"
subjects = ["analytics.>"]
[subscriptions]
stream = "CHANGES"
keepalive_secs = 5
connection_init_timeout_ms = 1000
{subscriptions}
{more}
"#,
        url = nats.url()
    )
}

/// A world where every request needs a token, with tenants `acme` and `globex`.
async fn world(strategy: &str, nats: &NatsServer, subscriptions: &str, more: &str) -> TestTenancy {
    let t = secured_world_with(strategy, &config(nats, subscriptions, more)).await;
    t.create_tenant("acme").await.expect("acme");
    t.create_tenant("globex").await.expect("globex");
    t
}

fn token(t: &TestTenancy, tenant: &str, roles: &[&str]) -> String {
    t.token(tenant, roles).expect("token")
}

const CREATED: &str = "subscription($org: ID) { projectCreated(orgId: $org) { id name } }";

/// Creates an organization as `token`; its id.
async fn org(s: &Served, token: &str, name: &str) -> String {
    let v = s
        .graphql(
            token,
            "mutation($n: String!) { createOrganization(name: $n) { id } }",
            json!({ "n": name }),
        )
        .await;
    v["data"]["createOrganization"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createOrganization: {v}"))
        .to_owned()
}

/// Creates a project as `token`; its id.
async fn project(s: &Served, token: &str, org: &str, name: &str) -> String {
    let v = s
        .graphql(
            token,
            "mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id } }",
            json!({ "o": org, "n": name }),
        )
        .await;
    v["data"]["createProject"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createProject: {v}"))
        .to_owned()
}

/// A subscription is live once a `ping` sent after it is answered (the server registers a
/// subscribe before it handles the client's next message); nothing else arrives meanwhile.
async fn sync(ws: &mut Ws) {
    let seen = sync_seeing(ws).await;
    assert!(seen.is_empty(), "expected pong, got {seen:?} first");
}

/// Like [`sync`]; the messages that came before the `pong`.
async fn sync_seeing(ws: &mut Ws) -> Vec<Value> {
    ws.send(json!({"type": "ping"})).await;
    let mut seen = Vec::new();
    loop {
        let m = ws.recv().await;
        if m["type"] == "pong" {
            return seen;
        }
        seen.push(m);
    }
}

/// A WebSocket connected with `token`, subscribed to [`CREATED`] as `p`, its subscription live.
async fn watching(port: u16, token: &str) -> Ws {
    let mut ws = Ws::connect_as(port, token).await;
    ws.subscribe("p", CREATED, json!({}), json!({})).await;
    sync(&mut ws).await;
    ws
}

/// An SSE stream of [`CREATED`] opened with `token` as its bearer.
async fn sse_watching(port: u16, token: &str) -> Sse {
    let bearer = format!("Bearer {token}");
    Sse::open(
        port,
        &[("Authorization", &bearer)],
        &json!({ "query": CREATED }),
    )
    .await
}

/// Admin tokens of `acme` and `globex`, and a WebSocket of each [`watching`] on `s`.
async fn two_tenants_watching(t: &TestTenancy, s: &Served) -> (String, String, Ws, Ws) {
    let (ta, tb) = (token(t, "acme", &["admin"]), token(t, "globex", &["admin"]));
    let wa = watching(s.port, &ta).await;
    let wb = watching(s.port, &tb).await;
    (ta, tb, wa, wb)
}

fn name_of(payload: &Value) -> &str {
    payload["data"]["projectCreated"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no project name in {payload}"))
}

fn position_of(payload: &Value) -> String {
    payload["extensions"]["position"]
        .as_str()
        .unwrap_or_else(|| panic!("no position in {payload}"))
        .to_owned()
}

/// Two tenants subscribed over WebSocket and SSE each get their own changes only; the
/// gauges count subscriptions and connections per tenant.
async fn isolation(strategy: &str) {
    let nats = NatsServer::start().expect("nats");
    let t = world(strategy, &nats, "", "").await;
    let s = Served::start(t.config.clone()).await;
    let (ta, tb, mut wa, mut wb) = two_tenants_watching(&t, &s).await;
    let mut sa = sse_watching(s.port, &ta).await;
    assert_eq!(sa.status, 200);
    assert_eq!(
        s.metric("fraiseql_subscriptions_active", Some("tenant_id=\"acme\"")),
        2.0
    );
    assert_eq!(
        s.metric(
            "fraiseql_subscription_connections",
            Some("tenant_id=\"globex\"")
        ),
        1.0
    );
    let oa = org(&s, &ta, "Acme").await;
    let ob = org(&s, &tb, "Globex").await;
    project(&s, &ta, &oa, "A1").await;
    project(&s, &tb, &ob, "B1").await;
    project(&s, &ta, &oa, "A2").await;
    project(&s, &tb, &ob, "B2").await;
    let a: Vec<String> = [wa.next_of("p").await, wa.next_of("p").await]
        .iter()
        .map(|p| name_of(p).to_owned())
        .collect();
    assert_eq!(a, ["A1", "A2"], "acme over WebSocket ({strategy})");
    let b: Vec<String> = [wb.next_of("p").await, wb.next_of("p").await]
        .iter()
        .map(|p| name_of(p).to_owned())
        .collect();
    assert_eq!(b, ["B1", "B2"], "globex over WebSocket ({strategy})");
    let (p1, r1) = sa.next_result().await;
    let (p2, r2) = sa.next_result().await;
    assert_eq!((name_of(&r1), name_of(&r2)), ("A1", "A2"), "acme over SSE");
    assert_eq!(p1, position_of(&r1), "the SSE id is the event's position");
    assert_ne!(p1, p2);
    assert!(
        s.metric(
            "fraiseql_subscription_events",
            Some("outcome=\"delivered\"")
        ) >= 6.0
    );
    wa.close().await;
    wb.close().await;
}
each_strategy!(isolation);

/// `[rbac]` decides what a subscriber may select, as for a query: a denied nested field reads
/// `null` with `FORBIDDEN` in every event, a denied subscription field is refused.
async fn rbac_on_the_selection(strategy: &str) {
    let nats = NatsServer::start().expect("nats");
    let more = "[rbac]\n\"Project.name\" = [\"admin\"]\n\"Subscription.taskStatusChanged\" = [\"admin\"]\n";
    let t = world(strategy, &nats, "", more).await;
    let s = Served::start(t.config.clone()).await;
    let (admin, viewer) = (
        token(&t, "acme", &["admin"]),
        token(&t, "acme", &["viewer"]),
    );
    let mut wa = Ws::connect_as(s.port, &admin).await;
    let mut wv = Ws::connect_as(s.port, &viewer).await;
    wa.subscribe("p", CREATED, json!({}), json!({})).await;
    wv.subscribe("p", CREATED, json!({}), json!({})).await;
    wv.subscribe(
        "t",
        "subscription { taskStatusChanged { id } }",
        json!({}),
        json!({}),
    )
    .await;
    let refused = wv.recv().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "t");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "FORBIDDEN");
    sync(&mut wa).await;
    sync(&mut wv).await;
    let o = org(&s, &admin, "Acme").await;
    let id = project(&s, &admin, &o, "Secret plan").await;
    let seen = wa.next_of("p").await;
    assert_eq!(seen["data"]["projectCreated"]["name"], "Secret plan");
    assert!(seen.get("errors").is_none(), "{seen}");
    let seen = wv.next_of("p").await;
    assert_eq!(
        seen["data"]["projectCreated"],
        json!({ "id": id, "name": null }),
        "{strategy}"
    );
    assert_eq!(seen["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert_eq!(seen["errors"][0]["path"], json!(["projectCreated", "name"]));
}
each_strategy!(rbac_on_the_selection);

/// Arguments filter on the changed row: `projectCreated(orgId:)` sees one organization's
/// projects, `taskStatusChanged(projectId:)` one project's tasks, `projectCreated(where:)` the
/// projects its filter matches.
async fn argument_filters(strategy: &str) {
    let nats = NatsServer::start().expect("nats");
    let t = world(strategy, &nats, "", "").await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let (o1, o2) = (org(&s, &ta, "One").await, org(&s, &ta, "Two").await);
    let mut ws = Ws::connect_as(s.port, &ta).await;
    ws.subscribe("one", CREATED, json!({ "org": o1 }), json!({}))
        .await;
    sync(&mut ws).await;
    project(&s, &ta, &o2, "elsewhere").await;
    let p1 = project(&s, &ta, &o1, "here").await;
    let p2 = project(&s, &ta, &o2, "elsewhere too").await;
    assert_eq!(name_of(&ws.next_of("one").await), "here", "{strategy}");
    // Tasks: arranged in the database (the API has no createTask), moved through the API.
    let rec = t.create_tenant("acme").await.expect("acme's record");
    let admin = t.admin_client(&rec).await.expect("admin");
    admin
        .batch_execute(&format!(
            "INSERT INTO tb_task (identifier, tenant_id, fk_project, title)
               SELECT 't-' || p.identifier, p.tenant_id, p.pk_project, 'Task of ' || p.name
               FROM tb_project p WHERE p.id IN ('{p1}', '{p2}')"
        ))
        .await
        .expect("tasks");
    let task_of = |p: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT t.id::text FROM tb_task t JOIN tb_project p ON p.pk_project = t.fk_project WHERE p.id::text = $1",
                    &[&p],
                )
                .await
                .expect("task")
                .get::<_, String>(0)
        }
    };
    let (t1, t2) = (task_of(p1.clone()).await, task_of(p2).await);
    ws.subscribe(
        "board",
        "subscription($p: ID) { taskStatusChanged(projectId: $p) { id status } }",
        json!({ "p": p1 }),
        json!({}),
    )
    .await;
    sync(&mut ws).await;
    let moved =
        "mutation($id: ID!, $s: TaskStatus!) { updateTaskStatus(id: $id, status: $s) { id } }";
    s.graphql(&ta, moved, json!({ "id": t2, "s": "DONE" }))
        .await;
    s.graphql(&ta, moved, json!({ "id": t1, "s": "IN_PROGRESS" }))
        .await;
    let card = ws.next_of("board").await;
    assert_eq!(
        card["data"]["taskStatusChanged"],
        json!({ "id": t1, "status": "in_progress" }),
        "{strategy}"
    );
    // `where`, as on list fields: only the changed rows it matches are delivered, in order.
    ws.subscribe(
        "q",
        "subscription($w: ProjectWhereInput) { projectCreated(where: $w) { name } }",
        json!({ "w": { "name": { "startswith": "Q" }, "_not": { "name": { "eq": "Quiet" } } } }),
        json!({}),
    )
    .await;
    sync(&mut ws).await;
    for name in ["Zed", "Quartz", "Quiet", "Zed again", "Quince"] {
        project(&s, &ta, &o2, name).await;
    }
    assert_eq!(name_of(&ws.next_of("q").await), "Quartz", "{strategy}");
    assert_eq!(name_of(&ws.next_of("q").await), "Quince", "{strategy}");
}
each_strategy!(argument_filters);

/// A client that comes back with its last position gets every event it missed, in order,
/// once, then the live ones: over WebSocket (`extensions.after`) and SSE (`Last-Event-ID`),
/// also from the position an SSE stream opens with (before any event).
async fn resume_after_a_disconnect(strategy: &str) {
    let nats = NatsServer::start().expect("nats");
    let t = world(strategy, &nats, "", "").await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let o = org(&s, &ta, "Acme").await;
    let bearer = format!("Bearer {ta}");
    let auth = [("Authorization", bearer.as_str())];
    // An SSE stream's first event is the position of "now".
    let mut first = Sse::open(s.port, &auth, &json!({ "query": CREATED })).await;
    let start = first
        .next_event(true)
        .await
        .and_then(|e| e.id)
        .expect("the opening position");
    drop(first);
    let mut ws = watching(s.port, &ta).await;
    for n in 1..=3 {
        project(&s, &ta, &o, &format!("P{n}")).await;
    }
    let mut last = String::new();
    for n in 1..=3 {
        let e = ws.next_of("p").await;
        assert_eq!(name_of(&e), format!("P{n}"));
        last = position_of(&e);
    }
    ws.close().await;
    for n in 4..=6 {
        project(&s, &ta, &o, &format!("P{n}")).await;
    }
    let mut ws = Ws::connect_as(s.port, &ta).await;
    ws.subscribe("p", CREATED, json!({}), json!({ "after": last }))
        .await;
    // Missed events may come before the pong: the catch-up starts at once.
    let mut got: Vec<String> = sync_seeing(&mut ws)
        .await
        .iter()
        .map(|m| name_of(&m["payload"]).to_owned())
        .collect();
    project(&s, &ta, &o, "P7").await;
    while got.len() < 4 {
        got.push(name_of(&ws.next_of("p").await).to_owned());
    }
    assert_eq!(
        got,
        ["P4", "P5", "P6", "P7"],
        "missed ones first ({strategy})"
    );
    // Nothing twice: the next event is the next project.
    project(&s, &ta, &o, "P8").await;
    assert_eq!(name_of(&ws.next_of("p").await), "P8");
    // SSE from the opening position: everything since.
    let mut again = Sse::open(
        s.port,
        &[auth[0], ("Last-Event-ID", &start)],
        &json!({ "query": CREATED }),
    )
    .await;
    let mut names = Vec::new();
    let mut ids = Vec::new();
    for _ in 1..=8 {
        let (id, r) = again.next_result().await;
        names.push(name_of(&r).to_owned());
        ids.push(id);
    }
    let want: Vec<String> = (1..=8).map(|n| format!("P{n}")).collect();
    assert_eq!(names, want, "SSE resumes with Last-Event-ID ({strategy})");
    // And from the middle.
    let mut mid = Sse::open(
        s.port,
        &[auth[0], ("Last-Event-ID", &ids[5])],
        &json!({ "query": CREATED }),
    )
    .await;
    let (_, r7) = mid.next_result().await;
    let (_, r8) = mid.next_result().await;
    assert_eq!((name_of(&r7), name_of(&r8)), ("P7", "P8"));
}
each_strategy!(resume_after_a_disconnect);

/// Queries and mutations run over both transports too (one `next`, then `complete`); a
/// subscription sent as a plain POST is told where subscriptions are served.
#[tokio::test]
async fn queries_and_mutations_over_both_transports() {
    let nats = NatsServer::start().expect("nats");
    let t = world("database_per_tenant", &nats, "", "").await;
    let s = Served::start(t.config.clone()).await;
    let ta = token(&t, "acme", &["admin"]);
    let mut ws = Ws::connect_as(s.port, &ta).await;
    ws.subscribe(
        "m",
        "mutation { createOrganization(name: \"Over WS\") { name } }",
        json!({}),
        json!({}),
    )
    .await;
    let next = ws.recv().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(
        next["payload"]["data"]["createOrganization"]["name"],
        "Over WS"
    );
    assert_eq!(ws.recv().await, json!({"id": "m", "type": "complete"}));
    ws.subscribe("q", "{ organizations { name } }", json!({}), json!({}))
        .await;
    let next = ws.recv().await;
    assert_eq!(
        next["payload"]["data"]["organizations"][0]["name"],
        "Over WS"
    );
    assert_eq!(ws.recv().await["type"], "complete");
    ws.subscribe("bad", "{ nope }", json!({}), json!({})).await;
    let e = ws.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["id"].as_str()),
        (Some("error"), Some("bad"))
    );
    assert_eq!(
        e["payload"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    let bearer = format!("Bearer {ta}");
    let mut sse = Sse::open(
        s.port,
        &[("Authorization", &bearer)],
        &json!({ "query": "{ organizations { name } }" }),
    )
    .await;
    let (_, r) = sse.next_result().await;
    assert_eq!(r["data"]["organizations"][0]["name"], "Over WS");
    assert_eq!(
        sse.next_event(false).await.expect("complete").event,
        "complete"
    );
    let plain = s.graphql(&ta, CREATED, json!({})).await;
    assert_eq!(
        plain["errors"][0]["extensions"]["code"],
        "OPERATION_NOT_SUPPORTED"
    );
    assert!(
        plain["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("graphql-transport-ws") && m.contains("text/event-stream")),
        "{plain}"
    );
}
