//! Shared set-up for the example's tests: a migrated database of its own, demo data, a client.

use std::path::{Path, PathBuf};

use std::time::Duration;

use fraiseql_testing::{
    http, wait_consumer_idle, HttpAnswer, TestClient, TestDatabase, TestResponse, TestTenancy,
};
use serde_json::Value;

pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

/// A test's world: its database (dropped at the end) and a client on the example's schema.
pub struct Saas {
    pub client: TestClient,
    /// Kept so the database lives (and is dropped) with the test.
    pub _db: TestDatabase,
    /// `id` of organization "Acme Corp" (120 projects with 3 tasks each; 5 members).
    pub acme: String,
}

/// The example's config pointed at `db` (both `tenant` and `shared` use it here).
pub fn config_for(db: &TestDatabase, extra: &str) -> fraiseql::config::Config {
    let dir = example_dir();
    let text = format!(
        r#"[schema]
path = "schema.graphql"
[databases.tenant]
type = "postgresql"
url = "{url}"
pool_max = 4
[databases.shared]
type = "postgresql"
url = "{url}"
pool_max = 2
{extra}"#,
        url = db.url
    );
    fraiseql::config::parse_str(&text, "test.toml", &dir, &|_| None).expect("test config")
}

pub async fn setup() -> Saas {
    setup_with("").await
}

pub async fn setup_with(extra_config: &str) -> Saas {
    let db = TestDatabase::migrated(&example_dir().join("migrations/tenant"))
        .await
        .expect("test database");
    db.apply(&example_dir().join("migrations/shared"))
        .await
        .expect("shared migrations");
    let c = db.connect().await.expect("connect");
    c.batch_execute(
        "INSERT INTO tb_organization (identifier, tenant_id, name, subscription_tier) VALUES
           ('acme', '11111111-1111-4111-8111-111111111111', 'Acme Corp', 'pro'),
           ('zeta', '11111111-1111-4111-8111-111111111111', 'Zeta Inc', 'free'),
           ('beta', '11111111-1111-4111-8111-111111111111', 'Beta LLC', 'free');
         INSERT INTO tb_member (identifier, tenant_id, fk_org, name, email)
           SELECT 'm' || i, tenant_id, pk_org, 'Member ' || i, 'm' || i || '@acme.test'
           FROM tb_organization, generate_series(1, 5) i WHERE identifier = 'acme';
         INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
           SELECT 'p' || i, tenant_id, pk_org, 'Project ' || lpad(i::text, 3, '0')
           FROM tb_organization, generate_series(1, 120) i WHERE identifier = 'acme';
         INSERT INTO tb_task (identifier, tenant_id, fk_project, title)
           SELECT p.identifier || '-t' || i, p.tenant_id, p.pk_project, 'Task ' || i
           FROM tb_project p, generate_series(1, 3) i;",
    )
    .await
    .expect("seed");
    let acme: String = c
        .query_one(
            "SELECT id::text FROM tb_organization WHERE identifier = 'acme'",
            &[],
        )
        .await
        .expect("acme")
        .get(0);
    let client = TestClient::from_config(config_for(&db, extra_config))
        .await
        .expect("client");
    Saas {
        client,
        _db: db,
        acme,
    }
}

/// The archive key of the test worlds (`[transfer] archive_key`): every world signs and
/// checks archives with it.
pub const TEST_ARCHIVE_KEY: &str = "fraiseql-test-archive-key-0123456789abcdef";

/// A multi-tenant world with the example's migrations and schema; `extra` is appended to the
/// config (after `[transfer] archive_key`, see [`world_keyed`]).
pub async fn world_with(strategy: &str, extra: &str) -> TestTenancy {
    world_keyed(strategy, Some(TEST_ARCHIVE_KEY), extra).await
}

/// [`world_with`] with `key` as its archive key (none: backups need `insecure_unsigned`).
pub async fn world_keyed(strategy: &str, key: Option<&str>, extra: &str) -> TestTenancy {
    let transfer = key.map_or(String::new(), |k| {
        format!("[transfer]\narchive_key = \"{k}\"\n")
    });
    let t = TestTenancy::new(
        strategy,
        &example_dir().join("migrations/tenant"),
        &example_dir().join("schema.graphql"),
        &format!("{transfer}{extra}"),
    )
    .await
    .expect("tenancy world");
    // `[databases.shared]` is the registry and the analytics database here.
    t.shared
        .apply(&example_dir().join("migrations/shared"))
        .await
        .expect("shared migrations");
    t
}

pub async fn world(strategy: &str) -> TestTenancy {
    world_with(strategy, "").await
}

/// A world where every request needs a token bound to its tenant (the production default).
pub async fn secured_world_with(strategy: &str, extra: &str) -> TestTenancy {
    let t = TestTenancy::secured(
        strategy,
        &example_dir().join("migrations/tenant"),
        &example_dir().join("schema.graphql"),
        extra,
    )
    .await
    .expect("tenancy world");
    t.shared
        .apply(&example_dir().join("migrations/shared"))
        .await
        .expect("shared migrations");
    t
}

/// `extensions.code` of the first error.
pub fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// `query` sent by `client` with no variables: the answer as it came.
pub async fn send(client: &TestClient, query: &str) -> TestResponse {
    client
        .execute_with(query, serde_json::json!({}))
        .await
        .expect("send")
}

/// Asserts `r` came with HTTP `status` and the error code `expected`.
pub fn assert_answered(r: &TestResponse, status: u16, expected: &str) {
    assert_eq!((r.status, code(&r.json)), (status, expected), "{}", r.text);
}

/// Asserts `r` is refused as `FORBIDDEN` with `message` and reads nothing; `case` names it in
/// a failure.
pub fn assert_unreadable(r: &TestResponse, message: &str, case: &str) {
    assert_eq!(code(&r.json), "FORBIDDEN", "{case}: {}", r.text);
    assert_eq!(r.json["errors"][0]["message"], message, "{case}");
    assert!(
        r.json["data"].is_null(),
        "{case}: nothing is read: {}",
        r.text
    );
}

/// One test module per tenancy strategy, each calling `$body(strategy)`.
macro_rules! each_strategy {
    ($body:ident) => {
        mod $body {
            #[tokio::test]
            async fn database_per_tenant() {
                super::$body("database_per_tenant").await
            }
            #[tokio::test]
            async fn schema_per_tenant() {
                super::$body("schema_per_tenant").await
            }
            #[tokio::test]
            async fn row_level() {
                super::$body("row_level").await
            }
        }
    };
}

/// Runs a mutation through `client` and returns `data.<field>.id`, panicking with the answer if
/// there is none.
async fn created_id(client: &TestClient, query: &str, vars: Value, field: &str) -> String {
    let v = client
        .execute_with(query, vars)
        .await
        .expect("execute")
        .json;
    v["data"][field]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{field}: {v}"))
        .to_owned()
}

/// `createOrganization(name:)`: the new organization's id.
pub async fn create_org(client: &TestClient, name: &str) -> String {
    created_id(
        client,
        "mutation($n: String!) { createOrganization(name: $n) { id } }",
        serde_json::json!({ "n": name }),
        "createOrganization",
    )
    .await
}

/// `createProject(orgId:, name:)`: the new project's id.
pub async fn create_project(client: &TestClient, org: &str, name: &str) -> String {
    created_id(
        client,
        "mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id } }",
        serde_json::json!({ "o": org, "n": name }),
        "createProject",
    )
    .await
}

/// Polls `check` every 50 ms until it answers `Ok`; after `within`, panics with `what` and the
/// last `Err` (what was seen instead).
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) if std::time::Instant::now() > deadline => {
                panic!("{what}: not within {within:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// What became of a test's events once consumer group `analytics_sync` had nothing left to
/// deliver or to have acknowledged: the figures that differ when an event is published or
/// handled twice (the analytics table keeps one row per event id whatever happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCounts {
    /// Messages the JetStream stream stored.
    pub stored: u64,
    /// Deliveries JetStream made to the group (redeliveries included).
    pub deliveries: u64,
    /// Committed runs of the group's SQL (inserts attempted into `tb_analytics_event`, kept or
    /// skipped by `ON CONFLICT`).
    pub handled: i64,
    /// Rows in `tb_analytics_event`.
    pub rows: i64,
}

impl EventCounts {
    /// Panics unless each of `committed` events was stored once, written once, and handled once
    /// per delivery: a run beyond one per event must be a redelivery by JetStream (an
    /// acknowledgement it did not get in time, e.g. around a NATS restart), which delivery at
    /// least once allows and `ON CONFLICT` absorbs; a second run of one delivery, or a second
    /// publication of an event, fails.
    #[track_caller]
    pub fn assert_each_once(&self, committed: u64, what: &str) {
        self.assert_each_once_after_kill(committed, 0, what);
    }

    /// [`Self::assert_each_once`] after NATS was killed (SIGKILL) once `forgettable` handler
    /// runs had been acknowledged: JetStream writes a consumer's delivery and acknowledgement
    /// state lazily, so a killed server may come back with its consumer sequence and ack floor
    /// behind (measured: back at zero), and redeliver what it had been told was done, under
    /// delivery numbers it counts again. Those reruns are bounded by the runs acknowledged before
    /// the kill, and `ON CONFLICT` absorbs them; nothing may be stored or written twice.
    #[track_caller]
    pub fn assert_each_once_after_kill(&self, committed: u64, forgettable: i64, what: &str) {
        let handled = u64::try_from(self.handled).unwrap_or(0);
        let forgettable = u64::try_from(forgettable).unwrap_or(0);
        assert!(
            self.stored == committed
                && self.rows == committed as i64
                && handled >= committed
                && handled <= self.deliveries + forgettable,
            "{what}: {committed} events committed ({forgettable} handler runs acknowledged before \
             a kill of NATS); want each stored once, written once, handled once per delivery; \
             got {self:?}"
        );
    }
}

/// Makes the shared database count the group's runs (see [`EventCounts::handled`]); call it
/// before any event flows.
pub async fn count_handler_runs(shared: &TestDatabase) {
    shared
        .count_insert_attempts("tb_analytics_event")
        .await
        .expect("count handler runs");
}

/// Waits (up to `within`, failing with what was left) until group `analytics_sync` of `stream`
/// is idle, then counts.
pub async fn event_counts(
    shared: &TestDatabase,
    js: &async_nats::jetstream::Context,
    stream: &str,
    within: Duration,
) -> EventCounts {
    let idle = wait_consumer_idle(js, stream, "analytics_sync", within)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: i64 = shared
        .connect()
        .await
        .expect("shared")
        .query_one("SELECT count(*) FROM tb_analytics_event", &[])
        .await
        .expect("rows")
        .get(0);
    EventCounts {
        stored: idle.stored,
        deliveries: idle.deliveries,
        handled: shared
            .insert_attempts("tb_analytics_event")
            .await
            .expect("handler runs"),
        rows,
    }
}

/// Backends of the host database waiting for advisory lock `key`.
pub async fn waiting_on_lock(admin: &tokio_postgres::Client, key: i64) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1::bigint::oid",
            &[&key],
        )
        .await
        .expect("locks")
        .get(0)
}

/// Waits (up to `within`, failing the test after) until `n` backends wait for advisory lock
/// `key`; `what` names the wait.
pub async fn until_waiting_on_lock(
    admin: &tokio_postgres::Client,
    key: i64,
    n: i64,
    within: Duration,
    what: &str,
) {
    eventually(what, within, || async {
        match waiting_on_lock(admin, key).await {
            w if w == n => Ok(()),
            w => Err(format!("{w} of {n} waiting on the lock")),
        }
    })
    .await;
}

/// POSTs the GraphQL request `body` to `/graphql` on `port` as `tenant`, with `token` as its
/// bearer; the answer, whatever its status.
pub async fn post_as(port: u16, tenant: &str, token: &str, body: &str) -> HttpAnswer {
    let auth = format!("Bearer {token}");
    http(
        port,
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json"),
            ("X-Tenant-ID", tenant),
            ("Authorization", &auth),
        ],
        body,
    )
    .await
    .expect("an answer")
}
