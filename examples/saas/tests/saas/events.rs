//! Events end to end against real PostgreSQL and a NATS server of each test's own: the seed's
//! event and analytics tests, and the faults an outbox exists for (NATS down, the server killed,
//! the analytics database refusing writes, a poison message, two instances in one group).

use std::time::{Duration, Instant};

use fraiseql::engine::events::dead_letter::{self, Retried};
use fraiseql_testing::{NatsServer, TestClient, TestTenancy};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::{
    code, count_handler_runs, create_org, create_project, event_counts, eventually, world_with,
};

const SYNC_SQL: &str = "INSERT INTO tb_analytics_event (event_id, event_type, tenant_id, data, recorded_at) VALUES ($event_id, $subject, $tenant_id, $data, now()) ON CONFLICT (event_id) DO NOTHING";

/// The example's observers and subscriber, pointed at `nats`, with quick retries.
/// `/metrics` is served beside `/graphql` behind this token (the production profile's rule).
const METRICS_TOKEN: &str = "a-metrics-token-of-the-tests";

/// GET `/metrics` with the token.
async fn scrape(client: &TestClient) -> String {
    let auth = format!("Bearer {METRICS_TOKEN}");
    client
        .get_with("/metrics", &[("Authorization", &auth)])
        .await
        .expect("metrics")
        .text
}

fn events_config(nats: &NatsServer, max_deliver: u32) -> String {
    events_config_for(&format!("nats_url = {:?}", nats.url()), max_deliver)
}

/// Like [`events_config`], reaching NATS as `nats` says (`nats_url = ...` under
/// `[observers]`, or `servers = [...]`, which goes under `[nats]`).
fn events_config_for(nats: &str, max_deliver: u32) -> String {
    let (nats_section, observers_line) = if nats.starts_with("servers") {
        (format!("[nats]\n{nats}\n"), String::new())
    } else {
        (String::new(), format!("{nats}\n"))
    };
    format!(
        r#"
{nats_section}
[metrics]
token = "{METRICS_TOKEN}"
[observers]
enabled = true
{observers_line}sweep_interval_ms = 200
publish_timeout_ms = 1000
full_sweep_secs = 3600
[observers.stream]
name = "EVENTS"
subjects = ["analytics.>"]
# These tests count the analytics events alone: the change events of the schema's
# subscriptions, which ride the same outbox, are off here (subscriptions.rs tests them).
[subscriptions]
enabled = false
[[observers.rules]]
entity = "Project"
event = "CREATE"
subject = "analytics.project_created"
payload = {{ project_id = "id", name = "name" }}
[[subscribers]]
subject = "analytics.>"
consumer_group = "analytics_sync"
database = "shared"
sql = "{SYNC_SQL}"
max_deliver = {max_deliver}
backoff_ms = 100
max_backoff_ms = 400
"#
    )
}

/// A world with events: tenants are provisioned by the caller; `tb_analytics_event` is created
/// in the shared database.
async fn events_world(nats: &NatsServer, max_deliver: u32) -> TestTenancy {
    events_world_with("database_per_tenant", nats, max_deliver).await
}

async fn events_world_with(strategy: &str, nats: &NatsServer, max_deliver: u32) -> TestTenancy {
    world_with(strategy, &events_config(nats, max_deliver)).await
}

async fn analytics_count(t: &TestTenancy, filter: &str) -> i64 {
    let c = t.shared.connect().await.expect("shared");
    c.query_one(
        &format!("SELECT count(*) FROM tb_analytics_event WHERE {filter}"),
        &[],
    )
    .await
    .expect("count")
    .get(0)
}

/// Waits until `tb_analytics_event` holds `n` rows; panics after `within`. The count it returns
/// may exceed `n` if more events arrived (no more can: each event id is written once; whether an
/// event was published or handled twice is what [`event_counts`] tells).
async fn wait_for_rows(t: &TestTenancy, n: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let got = analytics_count(t, "true").await;
        if got >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} analytics rows after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seed's `test_project_creation_event`: creating a project publishes
/// `analytics.project_created` with the event's id, type, tenant key, project id and time.
#[tokio::test]
async fn test_project_creation_event() {
    let nats = NatsServer::start().expect("nats");
    let t = events_world(&nats, 5).await;
    t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let watcher = async_nats::connect(nats.url()).await.expect("connect");
    let mut sub = watcher
        .subscribe("analytics.project_created")
        .await
        .expect("subscribe");
    watcher.flush().await.expect("flush");

    let org = create_org(&client, "Org").await;
    let project = create_project(&client, &org, "Test").await;
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("an event within 10 s")
        .expect("a message");
    assert_eq!(msg.subject.as_str(), "analytics.project_created");
    let body: Value = serde_json::from_slice(&msg.payload).expect("JSON");
    assert_eq!(body["event_type"], "analytics.project_created");
    assert_eq!(body["tenant_id"], "acme");
    assert_eq!(body["project_id"], project.as_str());
    assert_eq!(body["name"], "Test");
    assert_eq!(body["operation"], "CREATE");
    let event_id = body["event_id"].as_str().expect("event_id");
    assert_eq!(event_id.len(), 36, "{body}");
    assert_eq!(
        msg.headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str()),
        Some(event_id),
        "the message id is the event id (JetStream de-duplicates on it): {:?}",
        msg.headers
    );
    assert!(
        body["timestamp"]
            .as_str()
            .is_some_and(|s| s.starts_with("20")),
        "{body}"
    );
}

each_strategy!(test_analytics_sync);

/// The exactly-once check is not a formality: three events pass it, and the same check fails
/// once one of them is deliberately published a second time (a copy of its message under a new
/// `Nats-Msg-Id`, so JetStream keeps it: what a relay that published twice would do).
#[tokio::test]
async fn a_double_publish_fails_the_exactly_once_check() {
    let nats = NatsServer::start().expect("nats");
    let t = events_world_with("schema_per_tenant", &nats, 5).await;
    count_handler_runs(&t.shared).await;
    t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Org").await;
    for name in ["One", "Two", "Three"] {
        create_project(&client, &org, name).await;
    }
    wait_for_rows(&t, 3, Duration::from_secs(15)).await;
    let js = nats.jetstream().await.expect("jetstream");
    event_counts(&t.shared, &js, "EVENTS", Duration::from_secs(15))
        .await
        .assert_each_once(3, "three events, each published once");

    let stream = js.get_stream("EVENTS").await.expect("stream");
    let first = stream.get_raw_message(1).await.expect("the first event");
    let mut headers = first.headers.clone();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        uuid::Uuid::new_v4().to_string().as_str(),
    );
    js.publish_with_headers(first.subject.clone(), headers, first.payload.clone())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let doubled = event_counts(&t.shared, &js, "EVENTS", Duration::from_secs(15)).await;
    assert_eq!(doubled.stored, 4, "{doubled:?}");
    let verdict = std::panic::catch_unwind(|| {
        doubled.assert_each_once(3, "one event published twice");
    });
    assert!(
        verdict.is_err(),
        "the check passed a double publish: {doubled:?}"
    );
}

/// The seed's `test_analytics_sync`: the analytics_sync group writes the event once into
/// `tb_analytics_event`, and the metrics count it (the outbox lives in the tenant's database, its
/// schema, or the shared tables).
async fn test_analytics_sync(strategy: &str) {
    let nats = NatsServer::start().expect("nats");
    let t = events_world_with(strategy, &nats, 5).await;
    t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Org").await;
    let project = create_project(&client, &org, "Synced").await;

    assert_eq!(wait_for_rows(&t, 1, Duration::from_secs(15)).await, 1);
    let c = t.shared.connect().await.expect("shared");
    let row = c
        .query_one(
            "SELECT event_type, tenant_id, data->>'project_id', event_id::text = data->>'event_id' FROM tb_analytics_event",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "analytics.project_created");
    assert_eq!(row.get::<_, String>(1), "acme");
    assert_eq!(row.get::<_, String>(2), project);
    assert!(row.get::<_, bool>(3));

    let m = client.engine().metrics();
    assert_eq!(
        m.sum(
            "fraiseql_nats_events_processed",
            Some(r#"tenant_id="acme",event_type="analytics.project_created""#)
        ),
        1.0
    );
    // It lists tenant keys: without the token, nothing.
    let refused = client.get_with("/metrics", &[]).await.expect("metrics");
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert!(!refused.text.contains("acme"), "{}", refused.text);
    let text = scrape(&client).await;
    assert!(
        text.contains(r#"fraiseql_nats_events_processed{tenant_id="acme",event_type="analytics.project_created"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("fraiseql_tenant_requests_total{tenant_id=\"acme\",endpoint=\"/graphql\"}"),
        "{text}"
    );
    // Every family, with its labels, after matching traffic: an error, a cached field.
    let bad = client
        .execute("{ organization(id: \"not-a-uuid\") { name } }")
        .await
        .expect("answer");
    assert_eq!(code(&bad), "BAD_USER_INPUT", "{bad}");
    // The result cache serves only while the invalidation bus is connected to NATS.
    eventually(
        "the result cache serves",
        Duration::from_secs(10),
        || async {
            match client.engine().cache().map(|c| c.serving()) {
                Some(true) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    client.execute("{ tenantConfig }").await.expect("config");
    client.execute("{ tenantConfig }").await.expect("config");
    let lag = async {
        loop {
            let text = scrape(&client).await;
            // Gauges, as last seen: the consumer's lag (polled every 2 s) and the outbox backlog
            // (set when the relay marks its rows sent).
            if text.contains("fraiseql_nats_consumer_lag{consumer=\"analytics_sync\"} 0")
                && text.contains("fraiseql_outbox_backlog 0")
            {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(10), lag)
        .await
        .expect("the lag and backlog gauges reach 0");
    for want in [
        "# TYPE fraiseql_tenant_latency_seconds histogram",
        "fraiseql_tenant_latency_seconds_bucket{le=\"0.01\",tenant_id=\"acme\",operation=\"mutation\"}",
        "fraiseql_tenant_latency_seconds_count{tenant_id=\"acme\",operation=\"query\"}",
        "fraiseql_tenant_errors_total{tenant_id=\"acme\",error_type=\"BAD_USER_INPUT\"} 1",
        "# TYPE fraiseql_nats_events_processed unknown",
        "fraiseql_nats_handler_failures_total{consumer=\"analytics_sync\"} 0",
        "fraiseql_nats_dead_letters_total{consumer=\"analytics_sync\"} 0",
        "fraiseql_outbox_events_total{tenant_id=\"acme\"} 1",
        "fraiseql_outbox_published_total{tenant_id=\"acme\"} 1",
        "fraiseql_outbox_backlog 0",
        "fraiseql_requests_in_flight 0",
        "fraiseql_requests_shed_total 0",
        "fraiseql_cache_hits_total{tenant_id=\"acme\"} 1",
        "fraiseql_cache_misses_total{tenant_id=\"acme\"} 1",
        "fraiseql_pool_connections_open{pool=\"tenants\"}",
        "fraiseql_pool_connections_max{pool=\"shared\"} 4",
        "# EOF",
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    // The outbox row was marked sent.
    let admin = t
        .admin_client(&t.create_tenant("acme").await.expect("tenant"))
        .await
        .expect("admin");
    let unsent: i64 = admin
        .query_one(
            "SELECT count(*) FROM fraiseql_outbox WHERE sent_at IS NULL",
            &[],
        )
        .await
        .expect("outbox")
        .get(0);
    assert_eq!(unsent, 0);
}

/// Under a strategy with an outbox per tenant, and under `row_level` (one outbox shared by both
/// tenants, each seeing only its own rows: the sweeper must sweep each tenant's).
mod nats_down_while_500_mutations_commit_loses_nothing {
    #[tokio::test]
    async fn database_per_tenant() {
        super::nats_down_while_500_mutations_commit_loses_nothing("database_per_tenant").await
    }
    #[tokio::test]
    async fn row_level() {
        super::nats_down_while_500_mutations_commit_loses_nothing("row_level").await
    }
}

/// NATS is down while 500 mutations commit across two tenants: once it is back, each of the 500
/// events is stored in the stream once and handled once (500 analytics rows, none missing).
async fn nats_down_while_500_mutations_commit_loses_nothing(strategy: &str) {
    let mut nats = NatsServer::start().expect("nats");
    let t = events_world_with(strategy, &nats, 5).await;
    count_handler_runs(&t.shared).await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    let b = t.create_tenant("tenant_b").await.expect("b");
    let mut ca = t.client().await.expect("client");
    ca.set_tenant("tenant_a");
    let mut cb = t.client().await.expect("client");
    cb.set_tenant("tenant_b");
    let (oa, ob) = (create_org(&ca, "A").await, create_org(&cb, "B").await);
    assert!(
        ca.engine()
            .events()
            .expect("events")
            .wait_connected(Duration::from_secs(5))
            .await
    );

    nats.stop();
    for chunk in 0..25 {
        let batch = (0..10).map(|i| {
            let n = chunk * 10 + i;
            let (c, o) = if n % 2 == 0 { (&ca, &oa) } else { (&cb, &ob) };
            let name = format!("P{n:03}");
            async move { create_project(c, o, &name).await }
        });
        futures_util::future::join_all(batch).await;
    }
    for chunk in 0..25 {
        let batch = (0..10).map(|i| {
            let n = 250 + chunk * 10 + i;
            let (c, o) = if n % 2 == 0 { (&ca, &oa) } else { (&cb, &ob) };
            let name = format!("P{n:03}");
            async move { create_project(c, o, &name).await }
        });
        futures_util::future::join_all(batch).await;
    }
    assert_eq!(
        analytics_count(&t, "true").await,
        0,
        "nothing can arrive while NATS is down"
    );

    nats.resume().expect("nats again");
    wait_for_rows(&t, 500, Duration::from_secs(90)).await;
    let js = nats.jetstream().await.expect("jetstream");
    event_counts(&t.shared, &js, "EVENTS", Duration::from_secs(30))
        .await
        .assert_each_once(500, "NATS down, then back");
    let c = t.shared.connect().await.expect("shared");
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE tenant_id = 'tenant_a'), count(*) FILTER (WHERE tenant_id = 'tenant_b') FROM tb_analytics_event",
            &[],
        )
        .await
        .expect("counts");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (250, 250));
    // Every outbox event is in analytics, and each outbox is fully sent.
    for rec in [&a, &b] {
        let admin = t.admin_client(rec).await.expect("admin");
        let ids: Vec<String> = admin
            .query(
                "SELECT event_id::text FROM fraiseql_outbox WHERE tenant_key = $1 ORDER BY 1",
                &[&rec.key],
            )
            .await
            .expect("outbox")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ids.len(), 250);
        let found: i64 = c
            .query_one(
                "SELECT count(*) FROM tb_analytics_event WHERE event_id::text = ANY($1)",
                &[&ids],
            )
            .await
            .expect("match")
            .get(0);
        assert_eq!(found, 250);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let unsent: i64 = admin
                .query_one(
                    "SELECT count(*) FROM fraiseql_outbox WHERE sent_at IS NULL",
                    &[],
                )
                .await
                .expect("unsent")
                .get(0);
            if unsent == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{unsent} outbox rows never marked sent"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The analytics database refuses writes for a while: the messages are redelivered and land
/// once. A poison message ends in the dead letters after max_deliver while others keep flowing;
/// `retry` runs it again once it is fixed.
#[tokio::test]
async fn refused_writes_are_redelivered_and_poison_goes_to_dead_letters() {
    let nats = NatsServer::start().expect("nats");
    let t = events_world(&nats, 6).await;
    t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let o = create_org(&client, "Org").await;
    let shared = t.shared.connect().await.expect("shared");
    shared
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'analytics is read-only for now'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON tb_analytics_event FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .expect("trigger");
    for i in 0..5 {
        create_project(&client, &o, &format!("Refused {i}")).await;
    }
    let m = client.engine().metrics();
    let deadline = Instant::now() + Duration::from_secs(15);
    while m.total("fraiseql_nats_handler_failures_total") < 5.0 {
        assert!(Instant::now() < deadline, "the handler never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared
        .batch_execute("DROP TRIGGER refuse ON tb_analytics_event")
        .await
        .expect("drop trigger");
    assert_eq!(wait_for_rows(&t, 5, Duration::from_secs(30)).await, 5);

    // A poison message: event_id is not a uuid, so every delivery fails.
    let publisher =
        async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    publisher
        .publish(
            "analytics.poison",
            r#"{"event_id": "not-a-uuid", "tenant_id": "acme", "event_type": "analytics.poison"}"#
                .into(),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    // Others keep flowing meanwhile.
    create_project(&client, &o, "After poison").await;
    assert_eq!(wait_for_rows(&t, 6, Duration::from_secs(30)).await, 6);

    let config = t.config.clone();
    let pools =
        fraiseql::engine::connections::Pools::new(&config, Duration::from_secs(5), Some("tenant"))
            .expect("pools");
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let l = dead_letter::list(&config, &pools).await.expect("list");
        if !l.is_empty() || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    let dl = &letters[0];
    assert_eq!(
        (dl.consumer.as_str(), dl.subject.as_str(), dl.attempts),
        ("analytics_sync", "analytics.poison", 6)
    );
    assert!(dl.error.contains("22P02"), "{}", dl.error);
    assert_eq!(m.total("fraiseql_nats_dead_letters_total"), 1.0);
    assert_eq!(
        analytics_count(&t, "true").await,
        6,
        "each event landed once"
    );

    // Retried as is: fails again, recorded.
    let r = dead_letter::retry(&config, &pools, None, false)
        .await
        .expect("retry");
    assert!(
        matches!(r.as_slice(), [Retried::Failed(id, _)] if *id == dl.id),
        "{r:?}"
    );
    // Fixed, then retried: it lands and leaves the dead letters.
    let fixed = json!({"event_id": "6b3e1f9e-8d7c-4d1b-9a8e-3f2c1d0b9a87", "tenant_id": "acme", "event_type": "analytics.poison"}).to_string();
    let db = t.shared.connect().await.expect("shared");
    db.execute(
        "UPDATE fraiseql_dead_letter SET payload = $1 WHERE id = $2",
        &[&fixed, &dl.id],
    )
    .await
    .expect("fix");
    let r = dead_letter::retry(&config, &pools, Some(dl.id), false)
        .await
        .expect("retry");
    assert_eq!(r, vec![Retried::Done(dl.id)]);
    assert_eq!(
        analytics_count(&t, "event_type = 'analytics.poison'").await,
        1
    );
    assert!(dead_letter::list(&config, &pools)
        .await
        .expect("list")
        .is_empty());
}

/// Creates projects `names` (one `bulkCreateProjects` per 50) in `org` through `client`.
async fn bulk_projects(client: &TestClient, org: &str, names: std::ops::Range<usize>) {
    let names: Vec<String> = names.map(|i| format!("P{i:03}")).collect();
    for chunk in names.chunks(50) {
        let v = client
            .execute_with(
                "mutation($o: ID!, $n: [String!]!) { bulkCreateProjects(orgId: $o, names: $n) { id } }",
                json!({ "o": org, "n": chunk }),
            )
            .await
            .expect("bulk")
            .json;
        assert!(v.get("errors").is_none(), "{v}");
    }
}

/// Two server instances in one consumer group share its position: with both running, each event
/// is handled once between them; when the one that handled more stops, the other handles the
/// events committed after, and none of the earlier ones again. Both instances handled events.
#[tokio::test]
async fn two_instances_share_one_consumer_group() {
    let nats = NatsServer::start().expect("nats");
    let t = events_world(&nats, 5).await;
    count_handler_runs(&t.shared).await;
    t.create_tenant("acme").await.expect("tenant");
    let mut one = t.client().await.expect("one");
    let mut two = t.client().await.expect("two");
    one.set_tenant("acme");
    two.set_tenant("acme");
    let js = nats.jetstream().await.expect("jetstream");
    let handled = |c: &TestClient| c.engine().metrics().total("fraiseql_nats_events_processed");

    let o = create_org(&one, "Org").await;
    bulk_projects(&two, &o, 0..200).await;
    wait_for_rows(&t, 200, Duration::from_secs(30)).await;
    event_counts(&t.shared, &js, "EVENTS", Duration::from_secs(30))
        .await
        .assert_each_once(200, "both instances running");
    let (a, b) = (handled(&one), handled(&two));
    assert_eq!(a + b, 200.0, "one: {a}, two: {b}");

    // JetStream may hand one instance every message; the one that handled more stops.
    let (gone, stays, stays_before) = if a >= b { (one, two, b) } else { (two, one, a) };
    drop(gone);
    bulk_projects(&stays, &o, 200..250).await;
    wait_for_rows(&t, 250, Duration::from_secs(60)).await;
    // A pull request of the stopped instance may still take a message: it is redelivered to the
    // other after `ack_wait_secs` (30 s).
    event_counts(&t.shared, &js, "EVENTS", Duration::from_secs(60))
        .await
        .assert_each_once(250, "after one instance stopped");
    let later = handled(&stays) - stays_before;
    assert_eq!(
        later, 50.0,
        "the remaining instance handled the 50 events committed after the other stopped, and none of the 200 before"
    );
    let (stopped, remaining) = (a.max(b), handled(&stays));
    assert!(
        stopped > 0.0 && remaining > 0.0,
        "both instances handled events: the stopped one {stopped}, the remaining one {remaining}"
    );
}

/// A `saas-server` process of this test's own (the example's binary, Rust resolvers included).
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    async fn start(config: &std::path::Path, port: u16) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_saas-server"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn saas-server");
        let s = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.request("GET /health HTTP/1.1", "", "").await.is_none() {
            assert!(Instant::now() < deadline, "saas-server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    }

    /// One HTTP/1.1 request; the body of the answer (None if the server does not answer).
    async fn request(&self, line: &str, tenant: &str, body: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let req = format!(
            "{line}\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Tenant-ID: {tenant}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
    }

    async fn graphql(&self, tenant: &str, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let text = self
            .request("POST /graphql HTTP/1.1", tenant, &body)
            .await
            .expect("answer");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }

    fn kill(&mut self) {
        // SIGKILL: no shutdown code runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server is killed with SIGKILL after its mutations committed and before their events were
/// published (NATS is down, so publishing cannot happen first): after a restart every event
/// arrives once.
#[tokio::test]
async fn events_survive_a_sigkill_between_commit_and_publish() {
    let mut nats = NatsServer::start().expect("nats");
    let t = events_world(&nats, 5).await;
    let rec = t.create_tenant("acme").await.expect("tenant");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    // The world's own config (events included), served on a port of this test's.
    let text = format!("[server]\nport = {port}\n{}", t.config_text);
    let config = std::env::temp_dir().join(format!("fraiseql-sigkill-{port}.toml"));
    std::fs::write(&config, text).expect("config");

    nats.stop();
    let mut server = Server::start(&config, port).await;
    let v = server
        .graphql(
            "acme",
            r#"mutation { createOrganization(name: "Org") { id } }"#,
            json!({}),
        )
        .await;
    let org = v["data"]["createOrganization"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    for i in 0..20 {
        let v = server
            .graphql(
                "acme",
                "mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id } }",
                json!({ "o": org, "n": format!("Killed {i}") }),
            )
            .await;
        assert!(v["data"]["createProject"]["id"].is_string(), "{v}");
    }
    server.kill();
    let admin = t.admin_client(&rec).await.expect("admin");
    let unsent: i64 = admin
        .query_one(
            "SELECT count(*) FROM fraiseql_outbox WHERE sent_at IS NULL",
            &[],
        )
        .await
        .expect("outbox")
        .get(0);
    assert_eq!(unsent, 20, "committed, not published");

    nats.resume().expect("nats again");
    let _server = Server::start(&config, port).await;
    assert_eq!(wait_for_rows(&t, 20, Duration::from_secs(30)).await, 20);
    assert_eq!(analytics_count(&t, "tenant_id = 'acme'").await, 20);
    let _ = std::fs::remove_file(&config);
}

/// Observers and subscribers written in Rust: an observer of task updates adds an event in the
/// mutation's transaction; a Rust handler of consumer group `audit` writes it down.
#[tokio::test]
async fn rust_observers_and_subscribers() {
    use fraiseql::{Event, Resolvers};
    let nats = NatsServer::start().expect("nats");
    let extra = format!(
        "{}\n[[subscribers]]\nsubject = \"analytics.task_changed\"\nconsumer_group = \"audit\"\nmax_deliver = 3\nbackoff_ms = 50\n",
        events_config(&nats, 5)
    );
    let t = world_with("database_per_tenant", &extra).await;
    let shared = t.shared.connect().await.expect("shared");
    shared
        .batch_execute(
            "CREATE TABLE audit_log (event_id uuid PRIMARY KEY, task_id text, status text)",
        )
        .await
        .expect("audit table");
    let rec = t.create_tenant("acme").await.expect("tenant");
    let resolvers = Resolvers::new()
        .observer("Task", "UPDATE", |ctx, change| async move {
            let ids: Vec<String> = change
                .keys
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            let rows = ctx
                .db()
                .query(
                    "SELECT id::text, status FROM tb_task WHERE id::text = ANY($1) ORDER BY id",
                    &[&ids],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    Event::new(
                        "analytics.task_changed",
                        json!({ "task_id": r.get::<_, String>(0), "status": r.get::<_, String>(1), "event_id": "forged" }),
                    )
                })
                .collect())
        })
        .subscriber("audit", |ctx, msg| async move {
            let db = ctx.database("shared").await?;
            db.execute(
                "INSERT INTO audit_log (event_id, task_id, status) VALUES ($1::text::uuid, $2, $3) ON CONFLICT DO NOTHING",
                &[
                    &msg.payload["event_id"].as_str().unwrap_or_default(),
                    &msg.payload["task_id"].as_str().unwrap_or_default(),
                    &msg.payload["status"].as_str().unwrap_or_default(),
                ],
            )
            .await?;
            Ok(())
        });
    let mut client = t.client_with(resolvers).await.expect("client");
    client.set_tenant("acme");
    let o = create_org(&client, "Org").await;
    let p = create_project(&client, &o, "P").await;
    let admin = t.admin_client(&rec).await.expect("admin");
    let task: String = admin
        .query_one(
            "INSERT INTO tb_task (tenant_id, fk_project, title, identifier) SELECT $1, pk_project, 'T', 't' FROM tb_project WHERE id = $2::text::uuid RETURNING id::text",
            &[&rec.id, &p],
        )
        .await
        .expect("task")
        .get(0);
    let v = client
        .execute_with(
            "mutation($id: ID!) { updateTaskStatus(id: $id, status: DONE) { status } }",
            json!({ "id": task }),
        )
        .await
        .expect("update")
        .json;
    assert_eq!(v, json!({"data": {"updateTaskStatus": {"status": "done"}}}));

    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let rows = shared
            .query("SELECT event_id::text, task_id, status FROM audit_log", &[])
            .await
            .expect("audit");
        if let Some(r) = rows.first() {
            break (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
            );
        }
        assert!(Instant::now() < deadline, "the Rust subscriber never wrote");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((row.1.as_str(), row.2.as_str()), (task.as_str(), "done"));
    assert_eq!(
        row.0.len(),
        36,
        "the engine's event id, not the observer's: {}",
        row.0
    );
    // The same event reached analytics_sync too (subject analytics.>), with the same id.
    assert_eq!(wait_for_rows(&t, 2, Duration::from_secs(20)).await, 2);
    assert_eq!(
        analytics_count(
            &t,
            &format!(
                "event_type = 'analytics.task_changed' AND event_id::text = '{}'",
                row.0
            )
        )
        .await,
        1
    );
}

/// Three `nats-server`s with JetStream, routed to each other on 127.0.0.1.
struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    fn start() -> Self {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("port")
        };
        let ports: Vec<u16> = (0..3).map(|_| free()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free()).collect();
        let nodes = (0..3)
            .map(|i| {
                let others: Vec<String> = (0..3)
                    .filter(|j| *j != i)
                    .map(|j| format!("nats://127.0.0.1:{}", routes[j]))
                    .collect();
                let name = format!("n{i}");
                let cluster = format!("nats://127.0.0.1:{}", routes[i]);
                let others = others.join(",");
                NatsServer::start_on(
                    ports[i],
                    &[
                        "-n",
                        &name,
                        "--cluster_name",
                        "fraiseql_test",
                        "--cluster",
                        &cluster,
                        "--routes",
                        &others,
                    ],
                )
                .expect("node")
            })
            .collect();
        Self { nodes }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// A JetStream context on any node.
    async fn js(&self) -> async_nats::jetstream::Context {
        let client = async_nats::ConnectOptions::new()
            .connect(
                self.urls()
                    .iter()
                    .map(|u| u.parse::<async_nats::ServerAddr>().expect("url"))
                    .collect::<Vec<_>>(),
            )
            .await
            .expect("connect");
        async_nats::jetstream::new(client)
    }

    /// Waits until the cluster can hold a stream with 3 replicas.
    async fn wait_ready(&self) {
        let js = self.js().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let made = js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: "READY".into(),
                    subjects: vec!["ready.>".into()],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            if made.is_ok() {
                let _ = js.delete_stream("READY").await;
                return;
            }
            assert!(Instant::now() < deadline, "no cluster: {made:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The index of the node leading `stream`.
    async fn leader(&self, stream: &str) -> usize {
        let js = self.js().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = js.get_stream(stream).await {
                if let Ok(info) = s.info().await {
                    if let Some(l) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                        if let Some(i) = l.strip_prefix('n').and_then(|n| n.parse().ok()) {
                            return i;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader for {stream}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Waits until the load has created `n` projects; panics after `within` (it stalled or failed).
async fn wait_created(created: &std::sync::Mutex<Vec<String>>, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = created.lock().expect("lock").len();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the load created {got} of {n} projects in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The seed's "NATS cluster deployed and replicated": a stream with 3 replicas on a 3-node
/// cluster; under mutation load one node is killed (SIGKILL) and brought back, then the node
/// that leads the stream is killed. Every committed change is stored in the stream once and has
/// one analytics row afterwards, and the consumer group went on by itself.
#[tokio::test]
async fn a_three_node_cluster_loses_a_node_and_the_streams_leader_without_losing_an_event() {
    let mut cluster = NatsCluster::start();
    cluster.wait_ready().await;
    let servers: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    let config = events_config_for(&format!("servers = [{}]", servers.join(", ")), 5).replace(
        "[observers.stream]\nname = \"EVENTS\"",
        "[observers.stream]\nname = \"EVENTS\"\nreplicas = 3",
    );
    let t = world_with("database_per_tenant", &config).await;
    count_handler_runs(&t.shared).await;
    t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Org").await;
    let client = std::sync::Arc::new(client);
    let created = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let load = {
        let client = client.clone();
        let created = created.clone();
        let org = org.clone();
        tokio::spawn(async move {
            for n in 0..300 {
                let id = create_project(&client, &org, &format!("P{n:03}")).await;
                created.lock().expect("lock").push(id);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let count = || created.lock().expect("lock").len();
    let stage = Duration::from_secs(60);
    wait_created(&created, 60, stage).await;
    let leader = cluster.leader("EVENTS").await;
    let follower = (leader + 1) % 3;
    cluster.nodes[follower].stop();
    println!("killed follower n{follower} after {} mutations", count());
    wait_created(&created, 120, stage).await;
    cluster.nodes[follower].resume().expect("follower back");
    wait_created(&created, 160, stage).await;
    let leader = cluster.leader("EVENTS").await;
    cluster.nodes[leader].stop();
    println!(
        "killed the stream's leader n{leader} after {} mutations",
        count()
    );
    load.await.expect("load");
    let new_leader = cluster.leader("EVENTS").await;
    assert_ne!(new_leader, leader, "a new leader took over");
    let ids = created.lock().expect("lock").clone();
    assert_eq!(ids.len(), 300);
    wait_for_rows(&t, 300, Duration::from_secs(120)).await;
    // The consumer group went on by itself: it ends with nothing left to deliver or acknowledge.
    let counts = event_counts(&t.shared, &cluster.js().await, "EVENTS", stage).await;
    // The relay's retries while the leader changed were dropped by Nats-Msg-Id; an
    // acknowledgement lost with the leader is a redelivery, counted as such.
    counts.assert_each_once(300, "a follower, then the stream's leader killed");
    let c = t.shared.connect().await.expect("shared");
    let found: i64 = c
        .query_one(
            "SELECT count(DISTINCT data->>'project_id') FILTER (WHERE data->>'project_id' = ANY($1)) FROM tb_analytics_event",
            &[&ids],
        )
        .await
        .expect("counts")
        .get(0);
    assert_eq!(found, 300, "every committed project has its row");
    println!(
        "300 mutations, {} messages stored, {} deliveries, {} handler runs, 300 analytics rows; leader n{leader} -> n{new_leader}",
        counts.stored, counts.deliveries, counts.handled
    );
}

/// An outbox created before `traceparent` existed: the server refuses to start (every mutation
/// with observers would fail) and says what to run; `fraiseql migrate` adds the column, and
/// events flow again.
#[tokio::test]
async fn an_outbox_without_traceparent_is_refused_at_start_up_until_migrated() {
    let nats = NatsServer::start().expect("nats");
    let t = events_world(&nats, 5).await;
    let rec = t.create_tenant("acme").await.expect("tenant");
    let admin = t.admin_client(&rec).await.expect("admin");
    admin
        .batch_execute("ALTER TABLE fraiseql_outbox DROP COLUMN traceparent")
        .await
        .expect("an older outbox");
    let engine = fraiseql::Engine::from_config(t.config.clone()).expect("engine");
    let err = engine
        .check_databases()
        .await
        .expect_err("an outdated outbox")
        .to_string();
    assert_eq!(
        err,
        "tenant `acme`: fraiseql_outbox has no `traceparent` column; run `fraiseql migrate` (it adds the column to every tenant's outbox) before starting this version"
    );
    fraiseql::ops::provision::migrate_tenant(&t.config, &rec)
        .await
        .expect("migrate");
    engine.check_databases().await.expect("migrated");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Org").await;
    let project = create_project(&client, &org, "After the upgrade").await;
    wait_for_rows(&t, 1, Duration::from_secs(20)).await;
    assert_eq!(
        analytics_count(&t, &format!("data->>'project_id' = '{project}'")).await,
        1
    );
}
