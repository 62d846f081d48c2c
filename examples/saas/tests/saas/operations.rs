//! Tenant operations against real servers, all on loopback: a tenant moved to a second
//! PostgreSQL cluster of the test's own (`initdb` into a temporary folder, another port) while a
//! server process runs and serves the other tenants, under each strategy (same answers before
//! and after, other tenants untouched, no event lost, the 503 window measured); backup then
//! restore into an empty server; a restore over an existing tenant refused unless forced;
//! row-level keys renumbered where they are taken; a failed move leaving the tenant where it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql::engine::tenancy::{TenantRecord, TenantStatus};
use fraiseql::ops::provision;
use fraiseql::ops::transfer::{self, TransferError};
use fraiseql_testing::{HttpAnswer, NatsServer, PgCluster, ServerProcess, TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{
    code, count_handler_runs, create_org, create_project, event_counts, eventually, post_as, world,
    world_with,
};

mod archives;
mod moves;

/// Everything a tenant's callers can read: organizations with members, projects, tasks and
/// their counts, and the tenant's configuration.
const EVERYTHING: &str = "{ organizations(limit: 20) { id identifier name subscriptionTier createdAt memberCount members(limit: 50) { name email } projects(limit: 50) { id identifier name createdAt taskCount organization { name } tasks(limit: 50) { id title status } } } tenantConfig }";

fn progress(line: &str) {
    eprintln!("    {line}");
}

/// `--force`.
fn force() -> transfer::RestoreOptions {
    transfer::RestoreOptions {
        force: true,
        ..Default::default()
    }
}

/// Backs `acme` of `t` up to `file` with the default options.
async fn backup_acme(t: &TestTenancy, file: &Path) -> transfer::BackupReport {
    transfer::backup(&t.config, "acme", file, &Default::default(), &progress)
        .await
        .expect("backup")
}

/// Restores `acme` from `file` into `t` (onto `server`, else where `t` puts tenants) with the
/// default options.
async fn restore_acme(
    t: &TestTenancy,
    file: &Path,
    server: Option<&str>,
) -> Result<transfer::RestoreReport, TransferError> {
    transfer::restore(
        &t.config,
        "acme",
        file,
        server,
        &Default::default(),
        &progress,
    )
    .await
}

/// Arrays sorted by their JSON text: lists without an order of their own (members, tasks) may
/// come back in another physical order after a restore; everything else must be equal.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(canonical).collect();
            items.sort_by_key(|x| x.to_string());
            Value::Array(items)
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        other => other.clone(),
    }
}

/// Members, tasks and a config row for `rec`'s organizations and projects, written as the
/// superuser (the API has no mutations for them).
async fn arrange_rows(t: &TestTenancy, rec: &TenantRecord) {
    let c = t.admin_client(rec).await.expect("admin");
    c.execute(
        "INSERT INTO tb_member (identifier, tenant_id, fk_org, name, email)
         SELECT o.identifier || '-m' || i, o.tenant_id, o.pk_org, 'Member ' || i, o.identifier || i || '@x.test'
         FROM tb_organization o, generate_series(1, 2) i WHERE o.tenant_id = $1",
        &[&rec.id],
    )
    .await
    .expect("members");
    c.execute(
        "INSERT INTO tb_task (identifier, tenant_id, fk_project, title, status)
         SELECT p.identifier || '-t' || i, p.tenant_id, p.pk_project, 'Task ' || i, CASE WHEN i = 1 THEN 'done' ELSE 'todo' END
         FROM tb_project p, generate_series(1, 2) i WHERE p.tenant_id = $1",
        &[&rec.id],
    )
    .await
    .expect("tasks");
    c.execute(
        "INSERT INTO tb_tenant_config (tenant_id, key, value) VALUES ($1, 'theme', $2::text::jsonb) ON CONFLICT DO NOTHING",
        &[&rec.id, &format!("\"{}\"", rec.key)],
    )
    .await
    .expect("config");
}

/// `PgCluster` URL for a tenant server of `strategy`: its maintenance database for
/// `database_per_tenant`, else a host database created there.
async fn target_url(cluster: &PgCluster, strategy: &str) -> String {
    if strategy == "database_per_tenant" {
        return cluster.url("postgres");
    }
    let admin = provision::connect(&cluster.url("postgres"), None, None)
        .await
        .expect("target cluster");
    admin
        .batch_execute("CREATE DATABASE tenant_host")
        .await
        .expect("host database");
    cluster.url("tenant_host")
}

/// The example's observers and subscriber on `nats`; the periodic full sweep is off (an hour),
/// so events published after a move were found by following the tenant, not by a sweep of
/// every tenant.
fn events_config(nats: &NatsServer) -> String {
    format!(
        r#"
[observers]
enabled = true
nats_url = "{url}"
sweep_interval_ms = 200
publish_timeout_ms = 1000
full_sweep_secs = 3600
[observers.stream]
name = "OPS_EVENTS"
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
sql = "INSERT INTO tb_analytics_event (event_id, event_type, tenant_id, data, recorded_at) VALUES ($event_id, $subject, $tenant_id, $data, now()) ON CONFLICT (event_id) DO NOTHING"
max_deliver = 5
backoff_ms = 100
max_backoff_ms = 400
"#,
        url = nats.url()
    )
}

/// The example's server binary on the world's config, on a port of its own.
async fn serve(t: &TestTenancy, name: &str) -> (ServerProcess, PathBuf) {
    let port = ServerProcess::free_port().expect("port");
    let path = std::env::temp_dir().join(format!("fraiseql-ops-{name}-{port}.toml"));
    std::fs::write(&path, format!("[server]\nport = {port}\n{}", t.config_text)).expect("config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_saas-server"));
    cmd.arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    (ServerProcess::start(cmd, port).await.expect("server"), path)
}

async fn ask(port: u16, tenant: &str, token: &str, query: &str, vars: Value) -> HttpAnswer {
    let body = json!({ "query": query, "variables": vars }).to_string();
    post_as(port, tenant, token, &body).await
}

/// A mutation through the server; the id it returns.
async fn mutate_id(
    port: u16,
    tenant: &str,
    token: &str,
    query: &str,
    vars: Value,
    field: &str,
) -> String {
    let a = ask(port, tenant, token, query, vars).await;
    let v = a.json();
    v["data"][field]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{field}: {} {}", a.status, a.body))
        .to_owned()
}

async fn org_via(port: u16, tenant: &str, token: &str, name: &str) -> String {
    mutate_id(
        port,
        tenant,
        token,
        "mutation($n: String!) { createOrganization(name: $n) { id } }",
        json!({ "n": name }),
        "createOrganization",
    )
    .await
}

async fn project_via(port: u16, tenant: &str, token: &str, org: &str, name: &str) -> String {
    mutate_id(
        port,
        tenant,
        token,
        "mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id } }",
        json!({ "o": org, "n": name }),
        "createProject",
    )
    .await
}

/// Analytics rows of `mover` and of `other`.
async fn analytics_by_tenant(t: &TestTenancy) -> (i64, i64) {
    let c = t.shared.connect().await.expect("shared");
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE tenant_id = 'mover'), count(*) FILTER (WHERE tenant_id = 'other') FROM tb_analytics_event",
            &[],
        )
        .await
        .expect("analytics");
    (r.get(0), r.get(1))
}

/// Waits until `n` analytics rows arrived (panics after `within`) and the consumer group is
/// idle; checks each of the `n` events was stored, handled and written once
/// ([`crate::harness::EventCounts::assert_each_once_after_kill`], `forgettable` the handler runs
/// acknowledged before NATS was killed); the rows of `mover` and `other`.
async fn wait_for_events(
    t: &TestTenancy,
    nats: &NatsServer,
    n: i64,
    forgettable: i64,
    within: Duration,
) -> (i64, i64) {
    let deadline = Instant::now() + within;
    loop {
        let (m, o) = analytics_by_tenant(t).await;
        if m + o >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} analytics rows after {within:?}",
            m + o
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let js = nats.jetstream().await.expect("jetstream");
    event_counts(&t.shared, &js, "OPS_EVENTS", within)
        .await
        .assert_each_once_after_kill(n as u64, forgettable, &format!("{n} events"));
    analytics_by_tenant(t).await
}

/// One answer seen by a poller.
struct Seen {
    at: Duration,
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

each_strategy!(move_while_serving);

/// The issue's scenario: `mover` moves to a second cluster while the example's server runs and
/// serves `other` (reads and writes) on the first. Before, during (every 200) and after: the
/// same answers for `mover`; `other` never sees anything but 200 and its own data; the events
/// committed while NATS was down (right before the move) are published once, from the new
/// home; the 503 window is measured from outside.
async fn move_while_serving(strategy: &str) {
    let mut nats = NatsServer::start().expect("nats");
    let cluster = PgCluster::start("", None).expect("second cluster");
    let to = target_url(&cluster, strategy).await;
    let t = world_with(strategy, &events_config(&nats)).await;
    count_handler_runs(&t.shared).await;
    let mover = t.create_tenant("mover").await.expect("mover");
    let other = t.create_tenant("other").await.expect("other");
    let (server, config_path) = serve(&t, &format!("move-{strategy}")).await;
    let port = server.port;
    let (tm, to_) = (
        t.token("mover", &["admin"]).expect("token"),
        t.token("other", &["admin"]).expect("token"),
    );

    // Data through the API (projects publish events) and behind it.
    let mover_org = org_via(port, "mover", &tm, "Mover Org").await;
    let other_org = org_via(port, "other", &to_, "Other Org").await;
    for i in 0..3 {
        project_via(port, "mover", &tm, &mover_org, &format!("M{i}")).await;
        project_via(port, "other", &to_, &other_org, &format!("O{i}")).await;
    }
    arrange_rows(&t, &mover).await;
    arrange_rows(&t, &other).await;
    assert_eq!(
        wait_for_events(&t, &nats, 6, 0, Duration::from_secs(20)).await,
        (3, 3),
        "{strategy}: (mover, other)"
    );

    // Right before the move, NATS goes away (SIGKILL): these events stay in the outboxes.
    let acknowledged = t
        .shared
        .insert_attempts("tb_analytics_event")
        .await
        .expect("runs");
    nats.stop();
    project_via(port, "mover", &tm, &mover_org, "M late 1").await;
    project_via(port, "mover", &tm, &mover_org, "M late 2").await;
    project_via(port, "other", &to_, &other_org, "O late").await;
    let before = canonical(&ask(port, "mover", &tm, EVERYTHING, json!({})).await.json());
    assert!(
        before["data"]["organizations"][0]["projects"]
            .as_array()
            .is_some_and(|p| p.len() == 5),
        "{before}"
    );
    let other_q = "query($o: ID!) { projectsByOrg(orgId: $o) { name taskCount tasks { title } } tenantConfig }";
    let other_before = canonical(
        &ask(port, "other", &to_, other_q, json!({ "o": other_org }))
            .await
            .json(),
    );
    let unsent_before: i64 = t
        .admin_client(&mover)
        .await
        .expect("admin")
        .query_one(
            "SELECT count(*) FROM fraiseql_outbox WHERE sent_at IS NULL AND tenant_key = 'mover'",
            &[],
        )
        .await
        .expect("outbox")
        .get(0);
    assert_eq!(unsent_before, 2);

    // Callers of both tenants, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mover_calls = tokio::spawn({
        let (stop, tm) = (stop.clone(), tm.clone());
        async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let a = ask(port, "mover", &tm, EVERYTHING, json!({})).await;
                seen.push(Seen {
                    at: t0.elapsed(),
                    status: a.status,
                    retry_after: a.header("retry-after").map(str::to_owned),
                    body: a.json(),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }
    });
    let other_calls = tokio::spawn({
        let (stop, to_, other_org) = (stop.clone(), to_.clone(), other_org.clone());
        async move {
            let mut seen = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let a = ask(port, "other", &to_, other_q, json!({ "o": other_org })).await;
                seen.push(Seen {
                    at: t0.elapsed(),
                    status: a.status,
                    retry_after: None,
                    body: a.json(),
                });
                n += 1;
                if n % 5 == 0 {
                    // Writes of the other tenant go on during the move.
                    let w = ask(
                        port,
                        "other",
                        &to_,
                        "mutation($n: String!) { createOrganization(name: $n) { id } }",
                        json!({ "n": format!("During {n}") }),
                    )
                    .await;
                    seen.push(Seen {
                        at: t0.elapsed(),
                        status: w.status,
                        retry_after: None,
                        body: w.json(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    eprintln!("  moving `mover` ({strategy}) to {}:", cluster.port);
    let moved_at = t0.elapsed();
    let report = transfer::move_tenant(&t.config, "mover", &to, &Default::default(), &progress)
        .await
        .unwrap_or_else(|e| panic!("{strategy}: move failed: {e}"));
    let move_took = t0.elapsed() - moved_at;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = mover_calls.await.expect("mover caller");
    let other_seen = other_calls.await.expect("other caller");

    // The mover's callers: 200 with the same answer, or 503 TENANT_SUSPENDED with Retry-After.
    for s in &seen {
        match s.status {
            200 => assert_eq!(
                canonical(&s.body),
                before,
                "{strategy}: a 200 during the move at {:?}",
                s.at
            ),
            503 => {
                assert_eq!(code(&s.body), "TENANT_SUSPENDED", "{strategy}: {}", s.body);
                assert!(
                    s.retry_after
                        .as_deref()
                        .is_some_and(|r| r.parse::<u64>().is_ok()),
                    "Retry-After"
                );
            }
            other => panic!("{strategy}: status {other} during the move: {}", s.body),
        }
    }
    let first = seen
        .iter()
        .position(|s| s.status == 503)
        .expect("some 503 during the move");
    let last = seen.iter().rposition(|s| s.status == 503).expect("503");
    let back = seen.get(last + 1).expect("served again after the move");
    assert_eq!(back.status, 200);
    assert!(
        seen[first..=last].iter().all(|s| s.status == 503),
        "{strategy}: one window, no flapping"
    );
    let window = back.at - seen[first].at;
    eprintln!(
        "  503 window ({strategy}): {:.2} s (first 503 {:.2} s after the move began, served again {:.2} s after it; move {:.2} s, suspended {:.2} s by its own clock; {} requests answered 503)",
        window.as_secs_f64(),
        (seen[first].at.saturating_sub(moved_at)).as_secs_f64(),
        back.at.saturating_sub(moved_at).as_secs_f64(),
        move_took.as_secs_f64(),
        report.suspended_for.as_secs_f64(),
        last - first + 1
    );
    for (step, d) in &report.steps {
        eprintln!("    {:>6.2} s  {step}", d.as_secs_f64());
    }

    // The other tenant: only 200s, its data as it was, its writes done.
    assert!(other_seen.len() > 20);
    for s in &other_seen {
        assert_eq!(
            s.status, 200,
            "{strategy}: other tenant at {:?}: {}",
            s.at, s.body
        );
        assert!(
            s.body.get("errors").is_none(),
            "{strategy}: other tenant: {}",
            s.body
        );
        if s.body["data"].get("projectsByOrg").is_some() {
            assert_eq!(
                canonical(&s.body),
                other_before,
                "{strategy}: other tenant's answer changed"
            );
        }
    }

    // After: served from the second cluster, same answers.
    assert!(
        report
            .record
            .server
            .contains(&format!(":{}/", cluster.port)),
        "{strategy}: {}",
        report.to
    );
    assert_eq!(report.record.status, TenantStatus::Active);
    assert_eq!(report.record.id, mover.id);
    assert_eq!(report.outbox_unsent, 2);
    let after = canonical(&ask(port, "mover", &tm, EVERYTHING, json!({})).await.json());
    assert_eq!(after, before, "{strategy}: same answers after the move");
    let moved = fraiseql::engine::tenancy::registry::get(
        &provision::registry_client(&t.config)
            .await
            .expect("registry"),
        "mover",
    )
    .await
    .expect("registry")
    .expect("mover");
    let there = t.admin_client(&moved).await.expect("the new home");
    let n: i64 = there
        .query_one(
            "SELECT count(*) FROM tb_project WHERE tenant_id = $1",
            &[&mover.id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 5, "{strategy}: the rows are on the second cluster");

    // The old copy is kept, and not served.
    let copies = transfer::copies(&t.config, Some("mover"))
        .await
        .expect("copies");
    assert_eq!(copies.len(), 1, "{copies:?}");
    let source_admin = provision::connect(&t.host.url, None, None)
        .await
        .expect("source");
    match strategy {
        "database_per_tenant" => {
            assert!(
                copies[0]
                    .database
                    .starts_with(&format!("{}mover_moved_", t.prefix)),
                "{copies:?}"
            );
            let exists: bool = source_admin
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                    &[&copies[0].database],
                )
                .await
                .expect("db")
                .get(0);
            assert!(exists);
        }
        "schema_per_tenant" => {
            assert!(
                copies[0]
                    .schema
                    .starts_with(&format!("{}mover_moved_", t.prefix)),
                "{copies:?}"
            );
        }
        _ => {
            let left: i64 = t
                .host
                .connect()
                .await
                .expect("host")
                .query_one(
                    "SELECT count(*) FROM tb_project WHERE tenant_id = $1",
                    &[&mover.id],
                )
                .await
                .expect("old rows")
                .get(0);
            assert_eq!(left, 5, "row_level: the old rows stay until drop-copy");
        }
    }

    // No event lost: NATS back, every event stored once and handled once, the moved ones
    // published from the new home (its outbox is the one marked sent).
    nats.resume().expect("nats again");
    assert_eq!(
        wait_for_events(&t, &nats, 9, acknowledged, Duration::from_secs(30)).await,
        (5, 4),
        "{strategy}: (mover, other)"
    );
    // Published is not yet marked: a publish whose acknowledgement came late is marked by the
    // sweeper's next pass.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let unsent: i64 = there
            .query_one("SELECT count(*) FROM fraiseql_outbox WHERE sent_at IS NULL AND tenant_key = 'mover'", &[])
            .await
            .expect("outbox")
            .get(0);
        if unsent == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{strategy}: {unsent} moved events never marked sent at the new home"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Writes go to the new home, and their events flow.
    project_via(port, "mover", &tm, &mover_org, "M after").await;
    assert_eq!(
        wait_for_events(&t, &nats, 10, acknowledged, Duration::from_secs(20)).await,
        (6, 4),
        "{strategy}: (mover, other)"
    );

    // drop-copy removes the old copy; the tenant is still served.
    let dropped = transfer::drop_copy(&t.config, "mover", &progress)
        .await
        .expect("drop-copy");
    assert_eq!(dropped.len(), 1);
    assert!(matches!(
        transfer::drop_copy(&t.config, "mover", &progress).await,
        Err(TransferError::NoCopy(_))
    ));
    match strategy {
        "database_per_tenant" => {
            let exists: bool = source_admin
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                    &[&copies[0].database],
                )
                .await
                .expect("db")
                .get(0);
            assert!(!exists, "the old database is gone");
        }
        "schema_per_tenant" => {
            let exists: bool = t
                .host
                .connect()
                .await
                .expect("host")
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[&copies[0].schema],
                )
                .await
                .expect("schema")
                .get(0);
            assert!(!exists, "the old schema is gone");
        }
        _ => {
            let left: i64 = t
                .host
                .connect()
                .await
                .expect("host")
                .query_one(
                    "SELECT count(*) FROM tb_project WHERE tenant_id = $1",
                    &[&mover.id],
                )
                .await
                .expect("old rows")
                .get(0);
            assert_eq!(left, 0, "row_level: the old rows are gone");
            let others: i64 = t
                .host
                .connect()
                .await
                .expect("host")
                .query_one(
                    "SELECT count(*) FROM tb_project WHERE tenant_id = $1",
                    &[&other.id],
                )
                .await
                .expect("other rows")
                .get(0);
            assert_eq!(others, 4, "row_level: the other tenant's rows stay");
        }
    }
    let v = ask(
        port,
        "mover",
        &tm,
        "{ organizations { projects { name } } }",
        json!({}),
    )
    .await
    .json();
    assert_eq!(
        v["data"]["organizations"][0]["projects"]
            .as_array()
            .map(Vec::len),
        Some(6),
        "{v}"
    );
    drop(server);
    let _ = std::fs::remove_file(config_path);
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "fraiseql-ops-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits (up to `within`, panicking with `what`) until `client`, which may hold an outdated
/// registry record of its tenant, answers [`EVERYTHING`] as `want`.
async fn answers_until(client: &TestClient, want: &Value, what: &str, within: Duration) {
    eventually(what, within, || async {
        let v = canonical(
            &client
                .execute(EVERYTHING)
                .await
                .map_err(|e| e.to_string())?,
        );
        if v == *want {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
}

async fn answers(t: &TestTenancy, key: &str) -> Value {
    let mut c = t.client().await.expect("client");
    c.set_tenant(key);
    let v = c.execute(EVERYTHING).await.expect("answer");
    assert!(v.get("errors").is_none(), "{v}");
    canonical(&v)
}

each_strategy!(backup_then_restore_into_an_empty_server);

/// Backup of a served tenant, restored into another registry and an empty PostgreSQL server:
/// the same answers, the same id, new roles; restoring again there is refused unless forced,
/// and forced it replaces what changed since.
async fn backup_then_restore_into_an_empty_server(strategy: &str) {
    let a = world(strategy).await;
    let rec = a.create_tenant("acme").await.expect("tenant");
    a.create_tenant("bystander").await.expect("bystander");
    let mut client = a.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Acme").await;
    let second = create_org(&client, "Acme Two").await;
    for name in ["Alpha", "Beta", "Gamma"] {
        create_project(&client, &org, name).await;
    }
    create_project(&client, &second, "Delta").await;
    arrange_rows(&a, &rec).await;
    let original = answers(&a, "acme").await;

    let dir = scratch_dir("backup");
    let _cleanup = Scratch(dir.clone());
    let file = dir.join("acme.fraiseql-tenant");
    let b = backup_acme(&a, &file).await;
    assert_eq!(b.manifest.tenant.id, rec.id.to_string());
    let tenant_rows: u64 = b
        .manifest
        .tables
        .iter()
        .filter(|t| t.name.starts_with("tb_"))
        .map(|t| t.rows)
        .sum();
    assert_eq!(
        tenant_rows,
        2 + 4 + 4 + 8 + 1,
        "orgs, members, projects, tasks, config: {:?}",
        b.manifest.tables
    );
    let raw = std::fs::read(&file).expect("archive");
    assert!(
        !String::from_utf8_lossy(&raw).contains(&rec.password),
        "no password in the archive"
    );
    assert!(matches!(
        transfer::backup(&a.config, "acme", &file, &Default::default(), &progress).await,
        Err(TransferError::Refused(m)) if m.contains("exists")
    ));

    // An empty server, another registry (and another name prefix).
    let cluster = PgCluster::start("", None).expect("empty cluster");
    let to = target_url(&cluster, strategy).await;
    let w = world(strategy).await;
    let r = restore_acme(&w, &file, Some(&to))
        .await
        .unwrap_or_else(|e| panic!("{strategy}: restore: {e}"));
    assert_eq!(r.record.id, rec.id);
    assert_eq!(r.record.status, TenantStatus::Active);
    assert!(r.record.server.contains(&format!(":{}/", cluster.port)));
    assert_ne!(
        r.record.role, rec.role,
        "roles follow the target's name prefix"
    );
    assert_ne!(r.record.password, rec.password, "new passwords");
    assert_eq!(
        answers(&w, "acme").await,
        original,
        "{strategy}: same answers after the restore"
    );
    // Writes work there (grants, sequences past the restored keys).
    let mut wc = w.client().await.expect("client");
    wc.set_tenant("acme");
    create_project(&wc, &org, "Epsilon").await;

    // Again over it: refused, unless forced; forced, the archive's state comes back.
    let again = restore_acme(&w, &file, Some(&to)).await;
    match again {
        Err(e @ TransferError::Exists { .. }) => assert!(e.to_string().contains("--force"), "{e}"),
        other => panic!("{strategy}: expected a refusal, got {other:?}"),
    }
    let forced = transfer::restore(&w.config, "acme", &file, Some(&to), &force(), &progress)
        .await
        .unwrap_or_else(|e| panic!("{strategy}: forced restore: {e}"));
    assert_eq!(forced.record.id, rec.id);
    assert_eq!(
        answers(&w, "acme").await,
        original,
        "{strategy}: the forced restore replaced the data"
    );

    // Over the original tenant in its own registry: refused too.
    let over = restore_acme(&a, &file, None).await;
    assert!(
        matches!(over, Err(TransferError::Exists { .. })),
        "{over:?}"
    );
    // A damaged archive is refused before anything is touched.
    let mut broken = raw.clone();
    let last = broken.len() - 1;
    broken[last] ^= 0xff;
    let damaged = dir.join("damaged.fraiseql-tenant");
    std::fs::write(&damaged, broken).expect("write");
    match transfer::restore(&a.config, "acme", &damaged, None, &force(), &progress).await {
        Err(e @ TransferError::Archive { .. }) => assert!(e.to_string().contains("damaged"), "{e}"),
        other => panic!("{strategy}: expected a damaged archive, got {other:?}"),
    }
    assert_eq!(
        answers(&a, "acme").await,
        original,
        "the source is untouched"
    );
}

/// A row_level tenant restored into a host where another tenant already uses the same
/// serial keys: the taken keys are renumbered, the foreign keys follow, the answers are the
/// same, and the host's own tenant is untouched.
#[tokio::test]
async fn row_level_restore_renumbers_keys_taken_on_the_target() {
    let a = world("row_level").await;
    let rec = a.create_tenant("acme").await.expect("tenant");
    let mut client = a.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Acme").await;
    for name in ["Alpha", "Beta"] {
        create_project(&client, &org, name).await;
    }
    arrange_rows(&a, &rec).await;
    let original = answers(&a, "acme").await;
    let dir = scratch_dir("renumber");
    let _cleanup = Scratch(dir.clone());
    let file = dir.join("acme.fraiseql-tenant");
    backup_acme(&a, &file).await;

    let w = world("row_level").await;
    let host = w.create_tenant("resident").await.expect("resident");
    let mut rc = w.client().await.expect("client");
    rc.set_tenant("resident");
    let rorg = create_org(&rc, "Resident").await;
    for name in ["R1", "R2", "R3"] {
        create_project(&rc, &rorg, name).await;
    }
    arrange_rows(&w, &host).await;
    let resident = answers(&w, "resident").await;

    let r = restore_acme(&w, &file, None).await.expect("restore");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("tb_organization.pk_org") && n.contains("renumbered")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes.iter().any(|n| n.contains("tb_project.pk_project")),
        "{:?}",
        r.notes
    );
    assert_eq!(
        answers(&w, "acme").await,
        original,
        "same answers with renumbered keys"
    );
    assert_eq!(
        answers(&w, "resident").await,
        resident,
        "the resident tenant is untouched"
    );
    // New rows of both tenants get fresh keys.
    create_project(&rc, &rorg, "R4").await;
    let mut ac = w.client().await.expect("client");
    ac.set_tenant("acme");
    create_project(&ac, &org, "Gamma").await;
}

each_strategy!(a_failed_move_leaves_the_tenant_where_it_was);

/// The target refuses to create `tb_task` (an event trigger), so the move fails after the
/// suspension, part-way through the restore: the tenant is active at the source again with the
/// same answers and its writes granted back, and nothing of it is left on the target.
async fn a_failed_move_leaves_the_tenant_where_it_was(strategy: &str) {
    let cluster = PgCluster::start("", None).expect("second cluster");
    let to = target_url(&cluster, strategy).await;
    let trap_db = if strategy == "database_per_tenant" {
        "template1"
    } else {
        "tenant_host"
    };
    let trap = provision::connect(&cluster.url(trap_db), None, None)
        .await
        .expect("target");
    trap.batch_execute(
        "CREATE FUNCTION refuse_tasks() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' AND object_identity LIKE '%.tb_task') THEN
             RAISE EXCEPTION 'this server refuses tb_task';
           END IF;
         END $$;
         CREATE EVENT TRIGGER refuse_tasks ON ddl_command_end EXECUTE FUNCTION refuse_tasks();",
    )
    .await
    .expect("trap");
    drop(trap);

    let t = world(strategy).await;
    let rec = t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Acme").await;
    create_project(&client, &org, "Alpha").await;
    arrange_rows(&t, &rec).await;
    let original = answers(&t, "acme").await;

    let err = transfer::move_tenant(&t.config, "acme", &to, &Default::default(), &progress)
        .await
        .expect_err("the move must fail");
    let text = err.to_string();
    eprintln!("  {strategy}: {text}");
    assert!(matches!(err, TransferError::MoveFailed { .. }), "{err:?}");
    assert!(
        text.contains("refuses tb_task") && text.contains("served from"),
        "{text}"
    );
    assert!(text.contains("the target was cleaned up"), "{text}");

    let now = fraiseql::engine::tenancy::registry::get(
        &provision::registry_client(&t.config)
            .await
            .expect("registry"),
        "acme",
    )
    .await
    .expect("registry")
    .expect("acme");
    assert_eq!(
        now, rec,
        "{strategy}: the registry row is as it was (active, same home)"
    );
    assert_eq!(
        answers(&t, "acme").await,
        original,
        "{strategy}: same answers at the source"
    );
    // The running client saw the suspension: it serves the tenant again once that expires.
    answers_until(
        &client,
        &original,
        "the running client serves acme again",
        fraiseql::engine::tenancy::directory::SUSPENDED_TTL + Duration::from_secs(10),
    )
    .await;
    create_project(&client, &org, "Written after the failed move").await;
    assert!(transfer::copies(&t.config, Some("acme"))
        .await
        .expect("copies")
        .is_empty());

    // Nothing of it on the target.
    let target = provision::connect(&cluster.url("postgres"), None, None)
        .await
        .expect("target");
    let like = format!("{}%", t.prefix);
    let left: i64 = target
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE $1) + (SELECT count(*) FROM pg_roles WHERE rolname LIKE $1)",
            &[&like],
        )
        .await
        .expect("leftovers")
        .get(0);
    assert_eq!(
        left, 0,
        "{strategy}: no database or role of the tenant on the target"
    );
    if strategy == "schema_per_tenant" {
        let host = provision::connect(&to, None, None).await.expect("host");
        let schemas: i64 = host
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1",
                &[&like],
            )
            .await
            .expect("schemas")
            .get(0);
        assert_eq!(schemas, 0);
    }
}

/// What a move refuses before touching anything: the same server, an unknown tenant, an
/// archive of another tenant.
#[tokio::test]
async fn moves_and_restores_that_cannot_work_are_refused_up_front() {
    let t = world("database_per_tenant").await;
    t.create_tenant("acme").await.expect("tenant");
    let same = transfer::move_tenant(
        &t.config,
        "acme",
        &t.host.url,
        &Default::default(),
        &progress,
    )
    .await;
    assert!(
        matches!(same, Err(TransferError::SameLocation { .. })),
        "{same:?}"
    );
    let unknown = transfer::move_tenant(
        &t.config,
        "nobody",
        &t.host.url,
        &Default::default(),
        &progress,
    )
    .await;
    assert!(
        matches!(unknown, Err(TransferError::Unknown(_))),
        "{unknown:?}"
    );
    let bad = transfer::backup(
        &t.config,
        "Bad Key",
        Path::new("/tmp/x"),
        &Default::default(),
        &progress,
    )
    .await;
    assert!(matches!(bad, Err(TransferError::InvalidKey(_))), "{bad:?}");
    let dir = scratch_dir("refusals");
    let _cleanup = Scratch(dir.clone());
    let file = dir.join("acme.fraiseql-tenant");
    backup_acme(&t, &file).await;
    let wrong = transfer::restore(&t.config, "other", &file, None, &force(), &progress).await;
    assert!(
        matches!(wrong, Err(TransferError::WrongTenant { .. })),
        "{wrong:?}"
    );
    let not_archive = dir.join("not-an-archive");
    std::fs::write(&not_archive, b"PGDMP\x01\x0e\x00").expect("write");
    let r = transfer::restore(&t.config, "acme", &not_archive, None, &force(), &progress).await;
    assert!(matches!(r, Err(TransferError::Archive { .. })), "{r:?}");
    // The tenant was never suspended by any of this.
    let rec = t.create_tenant("acme").await.expect("tenant");
    assert_eq!(rec.status, TenantStatus::Active);
}

each_strategy!(a_promoted_replica_takes_over_with_one_command);

/// The runbook's PostgreSQL failover: the tenant's server (a cluster of the test's own) has a
/// streaming standby; the primary crashes, the standby is promoted, and `tenant set-server
/// --from <old> --server-url <new>` points the registry at it. Before the promotion the
/// command refuses (a standby cannot take writes) and changes nothing; after it, the tenant's
/// answers are the same and it writes again, while a tenant on another server never noticed.
async fn a_promoted_replica_takes_over_with_one_command(strategy: &str) {
    use fraiseql::ops::failover::{set_server, Which};
    let primary = PgCluster::start("", None).expect("primary");
    let from = target_url(&primary, strategy).await;
    let t = world(strategy).await;
    let rec = provision::create_tenant(&t.config, "acme", "free", Some(&from))
        .await
        .expect("tenant on the primary");
    let other = t.create_tenant("other").await.expect("other tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Acme").await;
    create_project(&client, &org, "Alpha").await;
    arrange_rows(&t, &rec).await;
    let mut oc = t.client().await.expect("client");
    oc.set_tenant("other");
    create_org(&oc, "Other").await;
    let before = answers(&t, "acme").await;
    let other_before = answers(&t, "other").await;

    let standby = PgCluster::standby_of(&primary).expect("standby");
    let to = if strategy == "database_per_tenant" {
        standby.url("postgres")
    } else {
        standby.url("tenant_host")
    };
    // The standby has caught up when the project is there.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = match provision::connect(&to, Some(&rec.database), None).await {
            Ok(c) => c
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}.tb_project",
                        fraiseql::schema::quote_ident(&rec.schema)
                    ),
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0),
            Err(_) => 0,
        };
        if seen == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the standby did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    primary.crash();
    let refused = set_server(&t.config, Which::From(&from), &to)
        .await
        .expect_err("a standby is refused");
    assert!(refused.to_string().contains("is a standby"), "{refused}");
    let registry = provision::registry_client(&t.config)
        .await
        .expect("registry");
    let record = |key: &'static str| {
        let registry = &registry;
        async move {
            fraiseql::engine::tenancy::registry::get(registry, key)
                .await
                .expect("registry")
                .expect("registered")
        }
    };
    assert_eq!(
        record("acme").await,
        rec,
        "{strategy}: the refused set-server changed nothing"
    );
    standby.promote().expect("promote");
    let switched = set_server(&t.config, Which::From(&from), &to)
        .await
        .expect("switch");
    assert_eq!(
        switched.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["acme"],
        "only the tenants of the failed server"
    );
    let again = set_server(&t.config, Which::Tenant("acme"), &to)
        .await
        .expect_err("already there");
    assert!(again.to_string().contains("already served from"), "{again}");

    // A running server follows the registry once its cached record expires.
    let within = fraiseql::engine::tenancy::directory::RECORD_TTL + Duration::from_secs(10);
    answers_until(
        &client,
        &before,
        "the running server answers for acme from the promoted server",
        within,
    )
    .await;
    assert_eq!(
        answers(&t, "acme").await,
        before,
        "{strategy}: same answers"
    );
    create_project(&client, &org, "Written after the failover").await;
    assert_eq!(answers(&t, "other").await, other_before);
    assert_eq!(
        record("other").await,
        other,
        "the other tenant's row is untouched"
    );
}
