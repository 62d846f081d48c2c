//! Plans and quotas (`[tiers.<name>]`): a tenant over its plan gets 429 with the rate-limit
//! headers, a tier change reaches a running server, two server processes hold a tenant to one
//! rate between them, the plan's statement timeout and row limit apply, and when the connection
//! budget is short, waiting tenants take turns (weighted by plan) instead of the flood going
//! first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fraiseql::Resolvers;
use fraiseql_testing::{http, NatsServer, ServerProcess, TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{code, eventually, until_waiting_on_lock, world_with};

const TYPENAME: &[u8] = br#"{"query": "{ __typename }"}"#;

fn header<'r>(r: &'r fraiseql_testing::TestResponse, name: &str) -> &'r str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Sends `{ __typename }` as `tenant` until an answer is 429 (at most `n` tries); every answer.
async fn until_refused(
    client: &TestClient,
    tenant: &str,
    body: &[u8],
    n: usize,
) -> Vec<fraiseql_testing::TestResponse> {
    let mut all = Vec::new();
    for _ in 0..n {
        let r = client.post_as(tenant, body.to_vec()).await.expect("send");
        let refused = r.status == 429;
        all.push(r);
        if refused {
            break;
        }
    }
    all
}

#[tokio::test]
async fn over_its_plan_a_tenant_gets_429_with_the_rate_limit_headers() {
    let t = world_with(
        "row_level",
        "[tiers.free]\nrequests_per_second = 1\nburst = 2\nmutations_per_second = 1\n",
    )
    .await;
    t.create_tenant("acme").await.expect("acme");
    let client = t.client().await.expect("client");

    let answers = until_refused(&client, "acme", TYPENAME, 10).await;
    let first = &answers[0];
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(
        header(first, "ratelimit-policy"),
        "\"default\";q=1;w=1;fraiseql-burst=2, \"mutations\";q=1;w=1"
    );
    assert_eq!(header(first, "ratelimit"), "\"default\";r=1;t=1");
    assert_eq!(header(first, "x-ratelimit-limit"), "1");
    assert_eq!(header(first, "x-ratelimit-remaining"), "1");
    assert_eq!(answers[1].status, 200, "the burst is 2");
    let refused = answers.last().expect("answers");
    assert_eq!(refused.status, 429, "10 requests at once, 1/s");
    assert_eq!(header(refused, "retry-after"), "1");
    assert_eq!(header(refused, "ratelimit"), "\"default\";r=0;t=1");
    assert_eq!(header(refused, "x-ratelimit-remaining"), "0");
    assert_eq!(
        refused.json,
        json!({"errors": [{
            "message": "tenant acme is over its plan's rate (1 requests/s); retry in 1s",
            "extensions": {"code": "RATE_LIMITED"}
        }]})
    );
    let metrics = client.engine().metrics();
    assert_eq!(
        metrics.sum(
            "fraiseql_tenant_rate_limited",
            Some(r#"tenant_id="acme",limit="requests""#)
        ),
        1.0
    );

    // Mutations have their own rate: wait for request tokens, then two mutations in a row.
    let mutation = json!({"query": "mutation { createOrganization(name: \"Org\") { id } }"})
        .to_string()
        .into_bytes();
    let second = eventually(
        "a mutation is refused by its own rate",
        Duration::from_secs(20),
        || {
            let (client, mutation) = (&client, mutation.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(2100)).await;
                let one = client
                    .post_as("acme", mutation.clone())
                    .await
                    .expect("send");
                let two = client.post_as("acme", mutation).await.expect("send");
                match (one.status, two.status) {
                    (200, 429) if code(&two.json) == "RATE_LIMITED" => Ok(two),
                    other => Err(format!("{other:?}: {}", two.text)),
                }
            }
        },
    )
    .await;
    assert_eq!(
        header(&second, "ratelimit"),
        "\"mutations\";r=0;t=1",
        "{}",
        second.text
    );
    assert_eq!(
        second.json["errors"][0]["message"],
        "tenant acme is over its plan's rate of mutations (1/s); retry in 1s"
    );
    assert!(
        metrics.sum(
            "fraiseql_tenant_rate_limited",
            Some(r#"tenant_id="acme",limit="mutations""#)
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_tier_change_reaches_a_running_server() {
    let t = world_with(
        "row_level",
        "[tiers.free]\nrequests_per_second = 1\nburst = 1\n[tiers.pro]\nrequests_per_second = 1000\n",
    )
    .await;
    t.create_tenant("acme").await.expect("acme");
    let client = t.client().await.expect("client");
    let answers = until_refused(&client, "acme", TYPENAME, 10).await;
    assert_eq!(answers.last().map(|r| r.status), Some(429), "on free: 1/s");

    let rec = fraiseql::ops::plans::set_tier(&t.config, "acme", "pro", false)
        .await
        .expect("set tier");
    assert_eq!(rec.tier, "pro");
    let err = fraiseql::ops::plans::set_tier(&t.config, "acme", "gold", false)
        .await
        .expect_err("no such plan")
        .to_string();
    assert_eq!(
        err,
        "tier `gold` is not one of the config's [tiers] (free, pro), and there is no [tiers.default]: its tenants would have no limits. Add [tiers.gold], or pass --force"
    );
    eventually(
        "the running server serves acme on pro",
        Duration::from_secs(10),
        || async {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let r = client
                    .post_as("acme", TYPENAME.to_vec())
                    .await
                    .expect("send");
                seen.push((r.status, header(&r, "x-ratelimit-limit").to_owned()));
            }
            match seen.iter().all(|(s, l)| *s == 200 && l == "1000") {
                true => Ok(()),
                false => Err(format!("{seen:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn the_plans_statement_timeout_and_row_limit_apply() {
    let t = world_with(
        "schema_per_tenant",
        "[tiers.free]\nstatement_timeout_ms = 1234\nmax_rows = 100\n",
    )
    .await;
    t.create_tenant("acme").await.expect("acme");
    let resolvers = Resolvers::new().query("tenantConfig", |ctx, _| async move {
        let timeout: String = ctx
            .db()
            .query_one("SHOW statement_timeout", &[])
            .await?
            .get(0);
        Ok(Value::from(timeout))
    });
    let client = t.client_with(resolvers).await.expect("client");
    let r = client
        .post_as("acme", br#"{"query": "{ tenantConfig }"}"#.to_vec())
        .await
        .expect("send");
    assert_eq!(r.json, json!({"data": {"tenantConfig": "1234ms"}}));
    let r = client
        .post_as(
            "acme",
            br#"{"query": "{ organizations(limit: 200) { name } }"}"#.to_vec(),
        )
        .await
        .expect("send");
    assert_eq!(code(&r.json), "QUERY_TOO_COMPLEX", "{}", r.text);
    assert_eq!(
        r.json["errors"][0]["message"],
        "the operation may return more than 100 rows (the product of nested list limits), above tenant acme's plan (max_rows); ask for fewer rows with smaller `limit` arguments"
    );
    let r = client
        .post_as(
            "acme",
            br#"{"query": "{ organizations(limit: 100) { name } }"}"#.to_vec(),
        )
        .await
        .expect("send");
    assert_eq!(r.json, json!({"data": {"organizations": []}}));
}

/// A client whose `tenantConfig` waits for advisory lock `lock` in its transaction, on a pool of
/// `budget` connections whose waiters wait long enough for the test.
async fn blocking_client(t: &TestTenancy, lock: i64, budget: usize) -> Arc<TestClient> {
    let resolvers = Resolvers::new().query("tenantConfig", move |ctx, _| async move {
        ctx.db()
            .query_one("SELECT pg_advisory_xact_lock($1)", &[&lock])
            .await?;
        Ok(Value::Null)
    });
    let mut config = t.config.clone();
    config.multi_tenancy.connection_budget = budget;
    let tenant_db = config.databases.get_mut("tenant").expect("tenant");
    tenant_db.pool_timeout_secs = 60;
    tenant_db.pool_max = 40;
    Arc::new(
        TestClient::with_resolvers(config, resolvers)
            .await
            .expect("client"),
    )
}

/// Sends `n` requests of `tenant` (`body`), each noting its tenant in `done` when answered.
fn requests(
    client: &Arc<TestClient>,
    tenant: &'static str,
    body: &'static [u8],
    n: usize,
    done: &Arc<Mutex<Vec<&'static str>>>,
) -> Vec<impl std::future::Future<Output = u16>> {
    (0..n)
        .map(|_| {
            let (client, done) = (client.clone(), done.clone());
            async move {
                let r = client.post_as(tenant, body.to_vec()).await.expect("send");
                done.lock().expect("done").push(tenant);
                r.status
            }
        })
        .collect()
}

/// Waits until `n` requests wait for their turn at the tenants' connection budget.
async fn turns_waiting(client: &TestClient, n: usize) {
    let pool = client
        .engine()
        .routes()
        .tenants()
        .expect("tenancy")
        .pool()
        .clone();
    eventually(
        "requests wait for their turn",
        Duration::from_secs(20),
        || {
            let pool = pool.clone();
            async move {
                match pool.waiting_turns() {
                    w if w == n => Ok(()),
                    w => Err(format!("{w} waiting")),
                }
            }
        },
    )
    .await;
}

/// Budget 2, both connections held by A's slow requests and ten more of A's waiting: B's three
/// requests, arriving last, are answered in turns between A's, not after all of them.
#[tokio::test]
async fn a_flooding_tenant_cannot_starve_another_under_a_short_budget() {
    const LOCK: i64 = 7_431_023;
    let t = world_with("database_per_tenant", "").await;
    let a_rec = t.create_tenant("tenant_a").await.expect("a");
    t.create_tenant("tenant_b").await.expect("b");
    let client = blocking_client(&t, LOCK, 2).await;
    // Each tenant has a database of its own: A's requests wait for the lock in A's.
    let a_admin = t.admin_client(&a_rec).await.expect("a admin");
    a_admin
        .query_one("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .expect("lock");
    let done = Arc::new(Mutex::new(Vec::new()));
    let slow = br#"{"query": "{ tenantConfig }"}"#;
    let quick = br#"{"query": "{ organizations { name } }"}"#;
    let a = tokio::spawn(futures_util::future::join_all(requests(
        &client, "tenant_a", slow, 12, &done,
    )));
    until_waiting_on_lock(
        &a_admin,
        LOCK,
        2,
        Duration::from_secs(20),
        "A holds both connections",
    )
    .await;
    turns_waiting(&client, 10).await;
    let b = tokio::spawn(futures_util::future::join_all(requests(
        &client, "tenant_b", quick, 3, &done,
    )));
    turns_waiting(&client, 13).await;
    a_admin
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .expect("unlock");
    let (a, b) = (a.await.expect("a"), b.await.expect("b"));
    assert!(a.iter().chain(&b).all(|s| *s == 200), "{a:?} {b:?}");
    let order = done.lock().expect("done").clone();
    let first_b = order.iter().position(|t| *t == "tenant_b").expect("b");
    let last_b = order.iter().rposition(|t| *t == "tenant_b").expect("b");
    // In turns: A's two in flight, then A and B alternately (B's third answer comes about
    // eighth); first come first served would answer B after all twelve of A's.
    assert!(
        first_b < 6 && last_b < 10,
        "B's answers came late: {order:?}"
    );
}

/// Budget 2, tenants on plans of weight 1 and 3 each with twenty requests waiting: while both
/// wait, the heavier plan gets three turns for each of the other's.
#[tokio::test]
async fn waiting_tenants_take_turns_weighted_by_plan() {
    const LOCK: i64 = 7_431_029;
    let t = world_with(
        "row_level",
        "[tiers.free]\nweight = 1\n[tiers.pro]\nweight = 3\n",
    )
    .await;
    t.create_tenant("small").await.expect("small");
    t.create_tenant("big").await.expect("big");
    fraiseql::ops::plans::set_tier(&t.config, "big", "pro", false)
        .await
        .expect("pro");
    let client = blocking_client(&t, LOCK, 2).await;
    let admin = t.host.connect().await.expect("host");
    admin
        .query_one("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .expect("lock");
    let done = Arc::new(Mutex::new(Vec::new()));
    let slow = br#"{"query": "{ tenantConfig }"}"#;
    // The small plan's requests arrive first: first come first served would answer them all
    // before any of the big plan's.
    let small = tokio::spawn(futures_util::future::join_all(requests(
        &client, "small", slow, 20, &done,
    )));
    until_waiting_on_lock(
        &admin,
        LOCK,
        2,
        Duration::from_secs(20),
        "two of small's hold the budget",
    )
    .await;
    turns_waiting(&client, 18).await;
    let big = tokio::spawn(futures_util::future::join_all(requests(
        &client, "big", slow, 20, &done,
    )));
    turns_waiting(&client, 38).await;
    admin
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .expect("unlock");
    let (small, big) = (small.await.expect("small"), big.await.expect("big"));
    assert!(small.iter().chain(&big).all(|s| *s == 200));
    let order = done.lock().expect("done").clone();
    // After the two that held the budget, sixteen turns while both waited.
    let big_turns = order[2..18].iter().filter(|t| **t == "big").count();
    assert!(
        (10..=14).contains(&big_turns),
        "weight 3 vs 1: about 12 of 16 turns expected, got {big_turns}: {order:?}"
    );
}

/// Two server processes, one NATS: a tenant whose plan is 50 requests/s, driven at several
/// times that through both, is admitted 50/s all together (within 20%), not 50/s on each.
#[tokio::test]
async fn two_instances_hold_a_tenant_to_one_rate() {
    let nats = NatsServer::start().expect("nats");
    let t = world_with(
        "row_level",
        &format!(
            "[nats]\nservers = [\"{}\"]\n[tiers.free]\nrequests_per_second = 50\nburst = 10\n",
            nats.url()
        ),
    )
    .await;
    t.create_tenant("acme").await.expect("acme");
    let mut servers = Vec::new();
    let mut paths = Vec::new();
    for i in 0..2 {
        let port = ServerProcess::free_port().expect("port");
        let path = std::env::temp_dir().join(format!("fraiseql-plans-{i}-{port}.toml"));
        std::fs::write(&path, format!("[server]\nport = {port}\n{}", t.config_text))
            .expect("config");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_saas-server"));
        cmd.arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        servers.push(ServerProcess::start(cmd, port).await.expect("server"));
        paths.push(path);
    }
    const DRIVE: Duration = Duration::from_secs(5);
    let started = Instant::now();
    let drivers = servers.iter().flat_map(|s| {
        let port = s.port;
        (0..6).map(move |_| async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            while started.elapsed() < DRIVE {
                let body = std::str::from_utf8(TYPENAME).expect("utf8");
                let r = http(
                    port,
                    "POST",
                    "/graphql",
                    &[
                        ("Content-Type", "application/json"),
                        ("X-Tenant-ID", "acme"),
                    ],
                    body,
                )
                .await
                .expect("answer");
                match r.status {
                    200 => ok += 1,
                    429 => refused += 1,
                    other => panic!("{other}: {}", r.body),
                }
            }
            (ok, refused)
        })
    });
    let counts = futures_util::future::join_all(drivers).await;
    let took = started.elapsed().as_secs_f64();
    let admitted: u64 = counts.iter().map(|c| c.0).sum();
    let refused: u64 = counts.iter().map(|c| c.1).sum();
    let plan = 50.0 * took;
    assert!(
        refused as f64 > plan,
        "the drivers must ask for well over the plan: {admitted} admitted, {refused} refused in {took:.1}s"
    );
    let off = (admitted as f64 - plan) / plan;
    eprintln!(
        "two instances: {admitted} admitted, {refused} refused in {took:.1}s ({:+.1}% off the plan's {plan:.0})",
        off * 100.0
    );
    assert!(
        off.abs() <= 0.2,
        "{admitted} admitted in {took:.1}s by two instances: {:+.0}% off the plan's {plan:.0}",
        off * 100.0
    );
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}
