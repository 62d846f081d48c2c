//! The `fraiseql` binary on the SaaS example's config: tenant commands, `config validate`,
//! `migrate`, `token`, and `run` printing its banner and stopping cleanly on SIGTERM; `schema init` in
//! [`schema_init`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fraiseql_testing::TestTenancy;

mod schema_init;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/saas")
}

/// A registry/host database and a unique tenant-name prefix, cleaned up afterwards.
async fn world() -> TestTenancy {
    world_of("database_per_tenant").await
}

/// [`world`] under `strategy`: the example's tenant and shared migrations applied.
async fn world_of(strategy: &str) -> TestTenancy {
    let w = TestTenancy::new(
        strategy,
        &example().join("migrations/tenant"),
        &example().join("schema.graphql"),
        "",
    )
    .await
    .expect("world");
    w.shared
        .apply(&example().join("migrations/shared"))
        .await
        .expect("shared migrations");
    w
}

/// A connection to the world's shared database (where the analytics consumer writes).
async fn shared_client(w: &TestTenancy) -> tokio_postgres::Client {
    tokio_postgres::connect(&w.shared.url, tokio_postgres::NoTls)
        .await
        .map(|(c, conn)| {
            tokio::spawn(conn);
            c
        })
        .expect("analytics")
}

/// Runs the count `sql` every `pause_ms` until `enough` holds for it: `Ok` with that count, or
/// `Err` with the last one after 30 s.
async fn count_until(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    enough: impl Fn(i64) -> bool,
    pause_ms: u64,
) -> Result<i64, i64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rows: i64 = client.query_one(sql, params).await.expect("count").get(0);
        if enough(rows) {
            return Ok(rows);
        }
        if std::time::Instant::now() >= deadline {
            return Err(rows);
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
    }
}

fn cmd(w: &TestTenancy, config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fraiseql"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("TENANT_DB_URL", &w.shared.url)
        .env("MASTER_DB_URL", &w.shared.url)
        .env("SHARED_DB_URL", &w.shared.url)
        .env("TENANT_PREFIX", &w.prefix)
        .env("PORT", "0")
        .env("OBSERVERS_ENABLED", "false")
        .env(
            "FRAISEQL_ARCHIVE_KEY",
            "fraiseql-cli-test-archive-key-0123456789",
        )
        .env_remove("TENANT_ID")
        .env_remove("FRAISEQL_CONFIG");
    c
}

fn run(w: &TestTenancy, config: &Path, args: &[&str]) -> Output {
    cmd(w, config, args).output().expect("run fraiseql")
}

/// [`run`], asserting it succeeded (what it printed names why not).
fn run_ok(w: &TestTenancy, config: &Path, args: &[&str]) -> Output {
    let o = run(w, config, args);
    assert!(o.status.success(), "{}", out(&o));
    o
}

/// Asserts `tenant list` shows `acme_corp` on a line containing `has`.
fn assert_listed(w: &TestTenancy, config: &Path, has: &str) {
    let list = out(&run(w, config, &["tenant", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("acme_corp") && l.contains(has)),
        "{list}"
    );
}

/// `fraiseql token --tenant acme_corp --role admin` with `config`.
fn admin_token(w: &TestTenancy, config: &Path) -> String {
    let o = run_ok(
        w,
        config,
        &["token", "--tenant", "acme_corp", "--role", "admin"],
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Two [`start_run`] instances with `config` and `env`, both on `nats`.
async fn two_instances(
    w: &TestTenancy,
    config: &Path,
    nats: &fraiseql_testing::NatsServer,
    env: &[(&str, &str)],
) -> [fraiseql_testing::ServerProcess; 2] {
    let url = nats.url();
    let mut env = env.to_vec();
    env.push(("NATS_URL", &url));
    [
        start_run(w, config, &env).await,
        start_run(w, config, &env).await,
    ]
}

/// POSTs `body` to `/graphql` with `headers`; the answer's JSON, once checked to be a 200 without
/// errors.
async fn post_ok(port: u16, headers: &[(&str, &str)], body: &str) -> serde_json::Value {
    let a = fraiseql_testing::http(port, "POST", "/graphql", headers, body)
        .await
        .expect("answer");
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert!(v["errors"].is_null(), "{v}");
    v
}

/// Creates the tenant `acme_corp` with `fraiseql tenant create` and `config`.
fn create_acme_corp(w: &TestTenancy, config: &Path) {
    assert!(run(w, config, &["tenant", "create", "acme_corp"])
        .status
        .success());
}

/// Creates the tenant `acme_corp` with `fraiseql tenant create`; an admin token for it.
fn acme_corp_admin(w: &TestTenancy, config: &Path) -> String {
    create_acme_corp(w, config);
    admin_token(w, config)
}

/// A [`world`] with `acme_corp` created through the example's config, and that config.
async fn acme_corp_world() -> (TestTenancy, PathBuf) {
    let w = world().await;
    let config = example().join("fraiseql.toml");
    create_acme_corp(&w, &config);
    (w, config)
}

/// `fraiseql run` with `config` and `env` on a free port, quiet, once `/health` answers.
async fn start_run(
    w: &TestTenancy,
    config: &Path,
    env: &[(&str, &str)],
) -> fraiseql_testing::ServerProcess {
    let port = fraiseql_testing::ServerProcess::free_port().expect("port");
    let mut c = cmd(w, config, &["run"]);
    c.env("PORT", port.to_string())
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    fraiseql_testing::ServerProcess::start(c, port)
        .await
        .expect("server")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn tenant_commands_validate_migrate_and_token() {
    let w = world().await;
    let config = example().join("fraiseql.toml");

    let o = run_ok(&w, &config, &["config", "validate"]);
    assert!(out(&o).contains("no active tenant yet"), "{}", out(&o));

    let o = run_ok(&w, &config, &["tenant", "create", "acme_corp"]);
    assert!(
        out(&o).contains("tenant `acme_corp` is active (database_per_tenant"),
        "{}",
        out(&o)
    );
    let again = run(&w, &config, &["tenant", "create", "acme_corp"]);
    assert!(again.status.success(), "idempotent: {}", out(&again));

    let o = run(&w, &config, &["tenant", "create", "Bad'; DROP"]);
    assert!(!o.status.success());
    assert!(out(&o).contains("invalid tenant key"), "{}", out(&o));

    let o = run_ok(&w, &config, &["config", "validate"]);
    assert!(
        out(&o).contains("✓ tenant `acme_corp` answers and matches the schema"),
        "{}",
        out(&o)
    );

    run_ok(&w, &config, &["tenant", "suspend", "acme_corp"]);
    assert_listed(&w, &config, "suspended");
    assert!(run(&w, &config, &["tenant", "resume", "acme_corp"])
        .status
        .success());
    assert_listed(&w, &config, "active");
    // A plan of the example's [tiers], applied by running servers within 3 s.
    let o = run(&w, &config, &["tenant", "set-tier", "acme_corp", "pro"]);
    assert_eq!(
        out(&o).trim(),
        "tenant `acme_corp` is on tier `pro` (running servers apply it within 3 s)"
    );
    assert_listed(&w, &config, " pro ");
    let o = run(&w, &config, &["tenant", "set-tier", "nobody", "pro"]);
    assert!(!o.status.success());
    assert_eq!(out(&o).trim(), "error: no tenant `nobody` in the registry");
    let o = run(&w, &config, &["tenant", "suspend", "nobody"]);
    assert!(!o.status.success());
    assert_eq!(out(&o).trim(), "error: no tenant `nobody` in the registry");

    let o = run_ok(&w, &config, &["migrate"]);
    assert!(
        out(&o).contains("tenant `acme_corp`: up to date"),
        "{}",
        out(&o)
    );
    let o = run(&w, &config, &["migrate", "--tenant", "nobody"]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("error: no tenant `nobody` in the registry"),
        "{}",
        out(&o)
    );

    // One broken tenant is reported and does not stop the others.
    assert!(run(&w, &config, &["tenant", "create", "global_corp"])
        .status
        .success());
    let admin = w.shared.connect().await.expect("admin");
    admin
        .batch_execute(&format!(
            "DROP DATABASE \"{}acme_corp\" WITH (FORCE)",
            w.prefix
        ))
        .await
        .expect("break acme_corp");
    let o = run(&w, &config, &["migrate"]);
    assert!(!o.status.success());
    let text = out(&o);
    assert!(text.contains("tenant `acme_corp`: "), "{text}");
    assert!(text.contains("tenant `global_corp`: up to date"), "{text}");
    assert!(text.contains("1 database(s) failed to migrate"), "{text}");

    let o = run(
        &w,
        &config,
        &["token", "--tenant", "acme_corp", "--role", "admin"],
    );
    let token = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(o.status.success());
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT alone on stdout: {token}"
    );
}

#[tokio::test]
async fn run_prints_the_banner_and_stops_on_sigterm() {
    let (w, config) = acme_corp_world().await;
    assert!(run(&w, &config, &["tenant", "create", "global_corp"])
        .status
        .success());
    // Events on, against a NATS server of this test's own.
    let nats = fraiseql_testing::NatsServer::start().expect("nats-server");
    let mut child = cmd(&w, &config, &["run"])
        .env("OBSERVERS_ENABLED", "true")
        .env("NATS_URL", nats.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let done = line.starts_with("Tenants:");
        banner.push(line);
        if done {
            break;
        }
    }
    let text = banner.join("\n");
    assert!(text.contains("🍓 FraiseQL v"), "{text}");
    assert!(
        text.contains("GraphQL endpoint: http://localhost:"),
        "{text}"
    );
    assert!(
        text.contains("Multi-tenancy: database_per_tenant"),
        "{text}"
    );
    assert!(text.contains("NATS: connected"), "{text}");
    assert!(text.contains("Tenants: 2 configured"), "{text}");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "graceful shutdown exits 0");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "fraiseql stopped"), "{rest:?}");
}

#[tokio::test]
async fn config_validate_names_a_misspelt_key_and_its_line() {
    let w = world().await;
    let dir = tempdir();
    let text = std::fs::read_to_string(example().join("fraiseql.toml")).expect("read");
    let text = text.replace("pool_max = \"${TENANT_POOL_MAX:-20}\"", "pool_maxx = 20");
    let line = text
        .lines()
        .position(|l| l.starts_with("pool_maxx"))
        .expect("line")
        + 1;
    let config = dir.join("fraiseql.toml");
    std::fs::write(&config, text).expect("write");
    let o = run(&w, &config, &["config", "validate"]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains(&format!(
            "fraiseql.toml:{line}: `databases.tenant.pool_maxx`: unknown field `pool_maxx`"
        )),
        "{}",
        out(&o)
    );
}

#[tokio::test]
async fn config_validate_reports_a_schema_that_does_not_match_the_tenant_database() {
    let w = world().await;
    assert!(run(
        &w,
        &example().join("fraiseql.toml"),
        &["tenant", "create", "acme_corp"]
    )
    .status
    .success());
    let dir = tempdir();
    let sdl = std::fs::read_to_string(example().join("schema.graphql"))
        .expect("read")
        .replace("@view(name: \"v_task\")", "@view(name: \"v_tasks\")")
        .replace(
            "t.fk_project = {parent}.pk_project",
            "t.fk_project = {parent}.pk_projekt",
        );
    std::fs::write(dir.join("schema.graphql"), sdl).expect("write");
    let text = std::fs::read_to_string(example().join("fraiseql.toml"))
        .expect("read")
        .replace(
            "\"migrations/tenant\"",
            &format!(
                "{:?}",
                example().join("migrations/tenant").display().to_string()
            ),
        );
    std::fs::write(dir.join("fraiseql.toml"), text).expect("write");
    let o = run(&w, &dir.join("fraiseql.toml"), &["config", "validate"]);
    assert!(!o.status.success());
    let text = out(&o);
    assert!(
        text.contains("does not match database `tenant `acme_corp``"),
        "{text}"
    );
    assert!(
        text.contains("Task: view \"v_tasks\" does not exist"),
        "{text}"
    );
    assert!(
        text.contains("Project.taskCount: @sql expression does not run"),
        "{text}"
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fraiseql-cli-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

#[tokio::test]
async fn events_dead_letters_list_and_retry() {
    let w = world().await;
    let config = example().join("fraiseql.toml");
    let o = run_ok(&w, &config, &["events", "dead-letters", "list"]);
    assert!(out(&o).contains("no dead letters"), "{}", out(&o));
    // A dead letter whose consumer group is not configured any more cannot succeed.
    let c = w.shared.connect().await.expect("connect");
    c.batch_execute(
        "INSERT INTO fraiseql_dead_letter (consumer, subject, payload, error, attempts) VALUES ('gone', 'analytics.x', '{}', 'boom', 5)",
    )
    .await
    .expect("insert");
    let o = run(&w, &config, &["events", "dead-letters", "list"]);
    assert!(
        out(&o).contains("#1 gone analytics.x attempts=5"),
        "{}",
        out(&o)
    );
    let o = run(
        &w,
        &config,
        &["events", "dead-letters", "retry", "--id", "1"],
    );
    assert!(!o.status.success());
    assert!(
        out(&o).contains("#1 failed again: consumer group `gone` is no longer configured"),
        "{}",
        out(&o)
    );
}

#[tokio::test]
async fn config_validate_checks_nats_when_events_are_on() {
    let w = world().await;
    let config = example().join("fraiseql.toml");
    let o = cmd(&w, &config, &["config", "validate"])
        .env("OBSERVERS_ENABLED", "true")
        .env("NATS_URL", "nats://127.0.0.1:1")
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(
        out(&o).contains("✗ NATS answers (nats://127.0.0.1:1): "),
        "{}",
        out(&o)
    );
    let nats = fraiseql_testing::NatsServer::start().expect("nats-server");
    let o = cmd(&w, &config, &["config", "validate"])
        .env("OBSERVERS_ENABLED", "true")
        .env("NATS_URL", nats.url())
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("✓ NATS answers"), "{}", out(&o));
}

/// The advisory lock the `blocked` root field of [`blocking_example`] waits for.
const BLOCKING_LOCK: i64 = 7_431_023;

/// The example's config and schema in a folder of the test's own, the schema with a root field
/// `blocked` that waits, in the request's transaction, until advisory lock [`BLOCKING_LOCK`] is
/// free, and `extra` appended to the config.
fn blocking_example(extra: &str) -> PathBuf {
    let dir = tempdir();
    let sdl = std::fs::read_to_string(example().join("schema.graphql"))
        .expect("read")
        .replace(
            "type Query {",
            &format!(
                "type Query {{\n  blocked: Int @sql(expr: \"(SELECT 1 FROM pg_advisory_xact_lock_shared({BLOCKING_LOCK}))\")"
            ),
        );
    std::fs::write(dir.join("schema.graphql"), sdl).expect("write");
    let text = std::fs::read_to_string(example().join("fraiseql.toml"))
        .expect("read")
        .replace(
            "\"migrations/tenant\"",
            &format!(
                "{:?}",
                example().join("migrations/tenant").display().to_string()
            ),
        );
    std::fs::write(dir.join("fraiseql.toml"), format!("{text}\n{extra}")).expect("write");
    dir.join("fraiseql.toml")
}

/// Waits until `done` holds (panics with `what` after 30 s).
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// 500 requests while the in-flight limit is 8 and the admitted ones cannot finish: exactly 8
/// are admitted, the other 492 are shed at once with 503 and `Retry-After: 1`; meanwhile
/// `/health` answers (it is not behind the limit); once the 8 can finish they answer 200, and
/// the server serves normally afterwards.
#[tokio::test]
async fn requests_over_the_in_flight_limit_are_shed_and_health_still_answers() {
    use fraiseql_testing::http;
    let w = world().await;
    let config = blocking_example("");
    let token = acme_corp_admin(&w, &config);
    let server = start_run(&w, &config, &[("MAX_IN_FLIGHT", "8")]).await;
    let port = server.port;
    let auth = format!("Bearer {token}");
    // The admitted requests wait on a lock the test holds in the tenant's database.
    let rec = w.create_tenant("acme_corp").await.expect("record");
    let lock = w.admin_client(&rec).await.expect("tenant database");
    lock.query_one("SELECT pg_advisory_lock($1)", &[&BLOCKING_LOCK])
        .await
        .expect("lock");

    let answered = std::sync::atomic::AtomicUsize::new(0);
    let requests = (0..500).map(|_| {
        let (auth, answered) = (auth.clone(), &answered);
        async move {
            let a = http(
                port,
                "POST",
                "/graphql",
                &[
                    ("Content-Type", "application/json"),
                    ("X-Tenant-ID", "acme_corp"),
                    ("Authorization", &auth),
                ],
                r#"{"query": "{ blocked }"}"#,
            )
            .await
            .expect("answer");
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (a.status, a.header("retry-after").map(str::to_owned))
        }
    });
    let meanwhile = async {
        let answered = || answered.load(std::sync::atomic::Ordering::SeqCst);
        wait_for("492 requests answered while 8 are in flight", || {
            answered() >= 492
        })
        .await;
        let health = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            http(port, "GET", "/health", &[], ""),
        )
        .await
        .expect("/health waited behind the requests in flight")
        .expect("/health answers");
        assert_eq!(health.status, 200, "{}", health.body);
        assert_eq!(answered(), 492, "the admitted requests are still held");
        lock.query_one("SELECT pg_advisory_unlock($1)", &[&BLOCKING_LOCK])
            .await
            .expect("unlock");
    };
    let (answers, ()) = tokio::join!(futures_util::future::join_all(requests), meanwhile);
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let shed = answers
        .iter()
        .filter(|(s, r)| *s == 503 && r.as_deref() == Some("1"))
        .count();
    assert_eq!(
        (ok, shed),
        (8, 492),
        "8 admitted, the rest shed with 503 and Retry-After: 1: {answers:?}"
    );
    // The server still answers normally afterwards.
    let a = server
        .graphql(
            &[("X-Tenant-ID", "acme_corp"), ("Authorization", &auth)],
            "{ organizations { name } }",
            serde_json::json!({}),
        )
        .await
        .expect("answer");
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_address() {
    use fraiseql_testing::{http, ServerProcess};
    let w = world().await;
    let config = example().join("fraiseql.toml");
    let port = ServerProcess::free_port().expect("port");
    let metrics_port = ServerProcess::free_port().expect("port");
    let mut c = cmd(&w, &config, &["run"]);
    c.env("PORT", port.to_string())
        .env("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = ServerProcess::start(c, port).await.expect("server");
    let public = http(port, "GET", "/metrics", &[], "")
        .await
        .expect("answer");
    assert_eq!(public.status, 404, "not on the public port");
    let private = http(metrics_port, "GET", "/metrics", &[], "")
        .await
        .expect("answer");
    assert_eq!(private.status, 200);
    assert!(
        private.header("content-type").is_some_and(
            |c| c.starts_with("text/plain") || c.starts_with("application/openmetrics-text")
        ),
        "{:?}",
        private.headers
    );
}

#[tokio::test]
async fn run_refuses_tenancy_without_auth_and_warns_when_the_header_is_trusted() {
    let w = world().await;
    let dir = tempdir();
    let text = std::fs::read_to_string(example().join("fraiseql.toml"))
        .expect("read")
        .replace("required = true", "required = false")
        .replace(
            "\"migrations/tenant\"",
            &format!(
                "{:?}",
                example().join("migrations/tenant").display().to_string()
            ),
        )
        .replace(
            "schema.graphql",
            &example().join("schema.graphql").display().to_string(),
        );
    std::fs::write(dir.join("fraiseql.toml"), &text).expect("write");
    let o = run(&w, &dir.join("fraiseql.toml"), &["run"]);
    assert!(!o.status.success());
    assert!(out(&o).contains("[auth] required = false"), "{}", out(&o));
    let trusted = text.replace(
        "auth_header = \"X-Tenant-ID\"",
        "auth_header = \"X-Tenant-ID\"\ntrust_tenant_header = true",
    );
    std::fs::write(dir.join("trusted.toml"), trusted).expect("write");
    let mut child = cmd(&w, &dir.join("trusted.toml"), &["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut banner = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let done = line.starts_with("WARNING");
        banner.push(line);
        if done || banner.len() > 20 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = banner.join("\n");
    assert!(
        text.contains("WARNING: [multi_tenancy] trust_tenant_header = true"),
        "{text}"
    );
}

/// `[logging] format = "json"`: one JSON object per request with its id (the caller's
/// X-Request-Id, or a new one returned in the response), tenant, status and duration; never the
/// token.
#[tokio::test]
async fn requests_are_logged_as_json_with_their_request_id() {
    use fraiseql_testing::{http, ServerProcess};
    let (w, config) = acme_corp_world().await;
    let token =
        String::from_utf8_lossy(&run(&w, &config, &["token", "--tenant", "acme_corp"]).stdout)
            .trim()
            .to_owned();
    let port = ServerProcess::free_port().expect("port");
    let log = tempdir().join("server.log");
    let mut c = cmd(&w, &config, &["run"]);
    c.env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut server = ServerProcess::start(c, port).await.expect("server");
    let auth = format!("Bearer {token}");
    let body = r#"{"query": "query Orgs { organizations { name } }", "operationName": "Orgs"}"#;
    let a = http(
        port,
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json"),
            ("X-Tenant-ID", "acme_corp"),
            ("Authorization", &auth),
            ("X-Request-Id", "trace-me-42"),
        ],
        body,
    )
    .await
    .expect("answer");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-request-id"), Some("trace-me-42"));
    let b = http(
        port,
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json"),
            ("X-Tenant-ID", "acme_corp"),
        ],
        body,
    )
    .await
    .expect("answer");
    assert_eq!(b.status, 401);
    let generated = b.header("x-request-id").expect("an id").to_owned();
    assert_eq!(generated.len(), 32);
    server.terminate();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(&token), "the token was logged:\n{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["message"] == "graphql request")
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["request_id"], "trace-me-42");
    assert_eq!(lines[0]["tenant"], "acme_corp");
    assert_eq!(lines[0]["operation"], "Orgs");
    assert_eq!(lines[0]["kind"], "query");
    assert_eq!(lines[0]["status"], 200);
    assert!(lines[0]["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    assert_eq!(lines[1]["request_id"], generated.as_str());
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[1]["errors"], "UNAUTHENTICATED");
}

/// Two server processes behind one NATS: a cached answer on B is fresh right after a mutation
/// committed on A (A waits for B's acknowledgement before answering), and the other way round.
#[tokio::test]
async fn a_mutation_on_one_instance_refreshes_the_cache_of_the_other() {
    use fraiseql_testing::http;
    let (w, config) = acme_corp_world().await;
    let rec = w.create_tenant("acme_corp").await.expect("tenant");
    let admin = w.admin_client(&rec).await.expect("admin");
    let set = |value: &'static str| {
        let admin = &admin;
        let id = rec.id;
        async move {
            admin
                .execute(
                    "INSERT INTO tb_tenant_config (tenant_id, key, value) VALUES ($1, 'theme', to_jsonb($2::text)) ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&id, &value],
                )
                .await
                .expect("config row");
        }
    };
    set("dark").await;
    let token = admin_token(&w, &config);
    w.shared
        .count_insert_attempts("tb_analytics_event")
        .await
        .expect("count handler runs");
    let nats = fraiseql_testing::NatsServer::start().expect("nats-server");
    let [server_a, server_b] = two_instances(&w, &config, &nats, &[]).await;
    let (pa, pb) = (server_a.port, server_b.port);
    // Each hears the other (presence every second).
    for port in [pa, pb] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let m = http(port, "GET", "/metrics", &[], "")
                .await
                .expect("metrics");
            if m.body.contains("fraiseql_cache_peers 1") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no peer heard: {}",
                m.body
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Tenant-ID", "acme_corp"),
        ("Authorization", auth.as_str()),
    ];
    let config_on = |port: u16| async move {
        let a = http(
            port,
            "POST",
            "/graphql",
            &headers,
            r#"{"query": "{ tenantConfig }"}"#,
        )
        .await
        .expect("answer");
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()["data"]["tenantConfig"]["theme"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let mutate_on = |port: u16, n: u32| async move {
        let body = format!(
            r#"{{"query": "mutation {{ createOrganization(name: \"Org {n}\") {{ id }} }}"}}"#
        );
        let a = http(port, "POST", "/graphql", &headers, &body)
            .await
            .expect("answer");
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.json()["errors"].is_null(), "{}", a.body);
    };
    for round in 0..5u32 {
        let (writer, reader) = if round % 2 == 0 { (pa, pb) } else { (pb, pa) };
        let before = if round % 2 == 0 { "dark" } else { "light" };
        let after = if round % 2 == 0 { "light" } else { "dark" };
        // Cached on the reader...
        assert_eq!(config_on(reader).await, before);
        assert_eq!(config_on(reader).await, before);
        // ...changed behind the API's back: still the cached answer...
        set(after).await;
        assert_eq!(config_on(reader).await, before, "round {round}: not cached");
        // ...until a mutation commits on the OTHER instance.
        mutate_on(writer, round).await;
        assert_eq!(
            config_on(reader).await,
            after,
            "round {round}: stale after the mutation on the other instance"
        );
    }
    let m = http(pb, "GET", "/metrics", &[], "").await.expect("metrics");
    assert!(
        m.body
            .contains("fraiseql_cache_hits_total{tenant_id=\"acme_corp\"}"),
        "{}",
        m.body
    );
}

/// `events status`: the stream, the consumer group, each tenant's outbox backlog and the dead
/// letters; non-zero with the reason when NATS does not answer.
#[tokio::test]
async fn events_status_reports_the_stream_consumers_outboxes_and_dead_letters() {
    use fraiseql_testing::ServerProcess;
    let (w, config) = acme_corp_world().await;
    let mut nats = fraiseql_testing::NatsServer::start().expect("nats-server");
    let port = ServerProcess::free_port().expect("port");
    let mut c = cmd(&w, &config, &["run"]);
    c.env("PORT", port.to_string())
        .env("OBSERVERS_ENABLED", "true")
        .env("NATS_URL", nats.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = ServerProcess::start(c, port).await.expect("server");
    // The server creates the stream and the consumer group as it starts.
    let nats_url = nats.url();
    let status = || {
        cmd(&w, &config, &["events", "status"])
            .env("NATS_URL", &nats_url)
            .output()
            .expect("run")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let o = loop {
        let o = status();
        if o.status.success() || std::time::Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    for want in [
        "Stream FRAISEQL_EVENTS: 0 messages",
        "subjects analytics.>",
        "analytics_sync: pending 0, ack pending 0, redelivered 0",
        "acme_corp: 0 unsent",
        "Dead letters:",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    server.terminate();
    nats.stop();
    let o = status();
    assert!(!o.status.success());
    assert!(out(&o).contains("Stream: not readable"), "{}", out(&o));
}

/// The tenant's organizations as the superuser sees them in its current home, by name.
async fn org_names(w: &TestTenancy, key: &str) -> Vec<String> {
    let registry = fraiseql::ops::provision::registry_client(&w.config)
        .await
        .expect("registry");
    let rec = fraiseql::engine::tenancy::registry::get(&registry, key)
        .await
        .expect("registry")
        .expect("registered");
    w.admin_client(&rec)
        .await
        .expect("admin")
        .query("SELECT name FROM tb_organization ORDER BY name", &[])
        .await
        .expect("organizations")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The tenant transfer and failover commands through the binary: backup writes an archive (and
/// does not overwrite one); restore over the existing tenant is refused without --force and
/// changes nothing, and with it brings back the archive's data over what changed since;
/// set-server refuses an unknown tenant, the server it is already on, and a call without a
/// tenant or --from.
#[tokio::test]
async fn tenant_backup_restore_and_set_server_commands() {
    let w = world().await;
    let config = example().join("fraiseql.toml");
    run_ok(&w, &config, &["tenant", "create", "acme"]);
    let rec = w.create_tenant("acme").await.expect("record");
    let admin = w.admin_client(&rec).await.expect("admin");
    admin
        .execute(
            "INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('kept', $1, 'Kept')",
            &[&rec.id],
        )
        .await
        .expect("arrange");
    let dir = tempdir();
    let archive = dir.join("acme.fraiseql-tenant");
    let file = archive.to_str().expect("path");
    run_ok(&w, &config, &["tenant", "backup", "acme", "--out", file]);
    let written = std::fs::read(&archive).expect("the archive");
    let o = run(&w, &config, &["tenant", "backup", "acme", "--out", file]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("acme.fraiseql-tenant exists: choose another --out, or remove it first"),
        "{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read(&archive).expect("the archive"),
        written,
        "an existing archive is not overwritten"
    );

    // Changed after the backup.
    admin
        .batch_execute(
            "UPDATE tb_organization SET name = 'Changed';
             INSERT INTO tb_organization (identifier, tenant_id, name)
               SELECT 'added', tenant_id, 'Added' FROM tb_organization",
        )
        .await
        .expect("change");
    drop(admin);
    let changed = vec!["Added".to_owned(), "Changed".to_owned()];
    assert_eq!(org_names(&w, "acme").await, changed);
    let o = run(&w, &config, &["tenant", "restore", "acme", "--from", file]);
    assert!(!o.status.success());
    assert!(out(&o).contains("--force"), "{}", out(&o));
    assert_eq!(
        org_names(&w, "acme").await,
        changed,
        "a refused restore changes nothing"
    );
    let o = run(
        &w,
        &config,
        &["tenant", "restore", "acme", "--from", file, "--force"],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("tenant `acme` is active"), "{}", out(&o));
    assert_eq!(
        org_names(&w, "acme").await,
        ["Kept"],
        "the forced restore brought back the archive's data"
    );

    let url = w.shared.url.clone();
    let o = run(
        &w,
        &config,
        &["tenant", "set-server", "nope", "--server-url", &url],
    );
    assert!(!o.status.success());
    assert!(out(&o).contains("no tenant `nope`"), "{}", out(&o));
    let o = run(
        &w,
        &config,
        &["tenant", "set-server", "acme", "--server-url", &url],
    );
    assert!(!o.status.success());
    assert!(out(&o).contains("already served from"), "{}", out(&o));
    let o = run(&w, &config, &["tenant", "set-server", "--server-url", &url]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("required arguments were not provided"),
        "{}",
        out(&o)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Two `fraiseql run` processes on one registry, one analytics database and one NATS: requests
/// spread over both (four clients, alternating) all commit and are all seen by either; each
/// event is stored in the stream once and lands in `tb_analytics_event` once, and the two
/// processes' consumers together handled each event once (the consumer group is shared: the
/// group's SQL ran once per event, and so say the processes' metrics).
#[tokio::test]
async fn two_instances_share_the_work_and_consume_each_event_once() {
    use fraiseql_testing::http;
    let (w, config) = acme_corp_world().await;
    let token = admin_token(&w, &config);
    w.shared
        .count_insert_attempts("tb_analytics_event")
        .await
        .expect("count handler runs");
    let nats = fraiseql_testing::NatsServer::start().expect("nats-server");
    let [server_a, server_b] =
        two_instances(&w, &config, &nats, &[("OBSERVERS_ENABLED", "true")]).await;
    let ports = [server_a.port, server_b.port];
    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Tenant-ID", "acme_corp"),
        ("Authorization", auth.as_str()),
    ];
    let post = |port: u16, body: String| {
        let headers = &headers;
        async move { post_ok(port, headers, &body).await }
    };
    let org = post(
        ports[0],
        r#"{"query": "mutation { createOrganization(name: \"Shared\") { id } }"}"#.to_owned(),
    )
    .await["data"]["createOrganization"]["id"]
        .as_str()
        .expect("org id")
        .to_owned();
    const CLIENTS: usize = 4;
    const EACH: usize = 15;
    let clients = (0..CLIENTS).map(|c| {
        let org = org.clone();
        let post = &post;
        async move {
            for i in 0..EACH {
                let body = format!(
                    r#"{{"query": "mutation($o: ID!, $n: String!) {{ createProject(orgId: $o, name: $n) {{ id }} }}", "variables": {{"o": "{org}", "n": "P {c}-{i}"}}}}"#
                );
                post(ports[(c + i) % 2], body).await;
            }
        }
    });
    futures_util::future::join_all(clients).await;
    let total = CLIENTS * EACH;
    let read = format!(
        r#"{{"query": "query($o: ID!) {{ projectsByOrg(orgId: $o, limit: 1000) {{ name }} }}", "variables": {{"o": "{org}"}}}}"#
    );
    for port in ports {
        let v = post(port, read.clone()).await;
        assert_eq!(
            v["data"]["projectsByOrg"].as_array().map(Vec::len),
            Some(total),
            "every commit is seen by either instance"
        );
    }

    // One organization and `total` projects: that many events, each stored once, handled once,
    // recorded once.
    let events = total as i64 + 1;
    let analytics = shared_client(&w).await;
    let rows = count_until(
        &analytics,
        "SELECT count(*) FROM tb_analytics_event WHERE tenant_id = 'acme_corp'",
        &[],
        |rows| rows >= events,
        100,
    )
    .await
    .unwrap_or_else(|rows| panic!("{rows} of {events} analytics rows after 30 s"));
    assert_eq!(rows, events);
    let js = nats.jetstream().await.expect("jetstream");
    let idle = fraiseql_testing::wait_consumer_idle(
        &js,
        "FRAISEQL_EVENTS",
        "analytics_sync",
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(idle.stored, events as u64, "messages stored in the stream");
    // Once per event; a run more only for a redelivery (an acknowledgement JetStream did not get
    // in time), never twice for one delivery.
    let runs = w
        .shared
        .insert_attempts("tb_analytics_event")
        .await
        .expect("handler runs");
    assert!(
        runs >= events && runs as u64 <= idle.deliveries,
        "{runs} runs of the group's SQL for {events} events and {} deliveries",
        idle.deliveries
    );
    let processed = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("fraiseql_nats_events_processed{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // A process counts a run once JetStream answered its acknowledgement, a moment after the
    // group went idle: wait for the count (with a deadline), then it must not exceed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let handled = loop {
        let mut handled = 0.0;
        for port in ports {
            let m = http(port, "GET", "/metrics", &[], "")
                .await
                .expect("metrics");
            handled += processed(&m.body);
        }
        if handled >= runs as f64 || std::time::Instant::now() > deadline {
            break handled;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        handled, runs as f64,
        "the two instances' metrics count the group's runs between them"
    );
}

/// Sends `head` on a new connection to `port`, then one byte of `trickle` every `every` until the
/// server answers or closes; what it answered (`""`: closed without an answer).
async fn trickle(
    port: u16,
    head: &'static [u8],
    trickle: &'static [u8],
    every: std::time::Duration,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return "connect failed".to_owned();
    };
    if s.write_all(head).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut bytes = trickle.iter().cycle();
    loop {
        tokio::select! {
            n = s.read(&mut buf) => match n {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&answer).into_owned(),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(every) => {
                let b = bytes.next().copied().unwrap_or(b' ');
                if s.write_all(&[b]).await.is_err() {
                    return String::from_utf8_lossy(&answer).into_owned();
                }
            }
        }
    }
}

/// Slow clients hold no slot: 1,000 connections from 127.0.0.1 (behind a load balancer every
/// client has one address) trickle their bodies (700, more than `max_in_flight`) or their headers
/// (300). Meanwhile an authenticated query from the same address is answered normally; then each
/// trickler is cut off at its deadline: 408 for a body, a closed connection for headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_take_no_slot_and_are_cut_off_at_their_deadlines() {
    const BODIES: usize = 700;
    const HEADERS: usize = 300;
    let (w, config) = acme_corp_world().await;
    let token = admin_token(&w, &config);
    let env = [
        ("MAX_IN_FLIGHT", "512"),
        ("HEADER_TIMEOUT_MS", "6000"),
        ("BODY_TIMEOUT_MS", "6000"),
    ];
    let server = start_run(&w, &config, &env).await;
    let port = server.port;

    let every = std::time::Duration::from_millis(500);
    let body_head: &'static [u8] = b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{";
    let header_head: &'static [u8] = b"POST /graphql HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let started = std::time::Instant::now();
    let mut tricklers = Vec::new();
    for _ in 0..BODIES {
        tricklers.push(tokio::spawn(trickle(port, body_head, b" ", every)));
    }
    for _ in 0..HEADERS {
        tricklers.push(tokio::spawn(trickle(port, header_head, b"a", every)));
    }
    // Let every connection reach the server (the bodies' headers are complete at once).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let auth = format!("Bearer {token}");
    let tenant = [("X-Tenant-ID", "acme_corp"), ("Authorization", &auth)];
    let answer = server
        .graphql(&tenant, "{ organizations { id } }", serde_json::json!({}))
        .await
        .expect("an answer while 1,000 connections trickle");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json(),
        serde_json::json!({"data": {"organizations": []}})
    );
    assert!(
        tricklers.iter().all(|t| !t.is_finished()),
        "the tricklers were still sending when the query was answered"
    );

    let mut timed_out = 0;
    let mut closed = 0;
    for (i, t) in tricklers.into_iter().enumerate() {
        let got = tokio::time::timeout(std::time::Duration::from_secs(60), t)
            .await
            .expect("every trickler is cut off within a minute")
            .expect("trickler task");
        if i < BODIES {
            assert!(
                got.starts_with("HTTP/1.1 408"),
                "a body trickler got: {got:?}"
            );
            assert!(
                got.contains("the request body did not arrive within 6000 ms"),
                "{got:?}"
            );
            timed_out += 1;
        } else {
            assert_eq!(got, "", "a header trickler is closed without an answer");
            closed += 1;
        }
    }
    assert_eq!((timed_out, closed), (BODIES, HEADERS));
    // Not before their deadline: none was cut off before 6 s had passed.
    assert!(started.elapsed() >= std::time::Duration::from_secs(6));
    drop(server);
}

/// The example's published secret does not reach production: under the production profile,
/// `config validate` and `run` refuse it and say which setting to change; with a secret of 32+
/// bytes of its own the same config validates.
#[tokio::test]
async fn production_refuses_the_development_secret() {
    let w = world().await;
    let config = example().join("fraiseql.toml");
    for args in [&["config", "validate"][..], &["run"][..]] {
        let o = cmd(&w, &config, args)
            .env("FRAISEQL_PROFILE", "production")
            .env_remove("JWT_SECRET")
            .output()
            .expect("run fraiseql");
        assert!(!o.status.success(), "{args:?}: {}", out(&o));
        let text = out(&o);
        assert!(
            text.contains("auth.secret")
                && text.contains("the example's published development secret")
                && text.contains("JWT_SECRET"),
            "{args:?}: {text}"
        );
    }
    let o = cmd(&w, &config, &["config", "validate"])
        .env("FRAISEQL_PROFILE", "production")
        .env("JWT_SECRET", "k".repeat(48))
        .output()
        .expect("run fraiseql");
    assert!(o.status.success(), "{}", out(&o));
}

/// A `schema_per_tenant` world for the transfer commands: the binary reads the example's config
/// with its host and registry (see [`transfer_cmd`]).
async fn schema_world() -> TestTenancy {
    world_of("schema_per_tenant").await
}

/// [`cmd`] for a `schema_per_tenant` world: its host database holds the tenants.
fn transfer_cmd(w: &TestTenancy, args: &[&str]) -> Command {
    let mut c = cmd(w, &example().join("fraiseql.toml"), args);
    c.env("TENANCY_STRATEGY", "schema_per_tenant")
        .env("TENANT_DB_URL", &w.host.url);
    c
}

/// Where the real `tool` is on `PATH`.
fn real_tool(tool: &str) -> String {
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .expect("which")
            .stdout,
    )
    .expect("path");
    real.trim().to_owned()
}

/// A folder for `pg_dump` / `pg_restore` stand-ins: `tool` runs the real one, then (unless it
/// was asked for its version or a listing) touches `<dir>/<tool>.reached` and waits until
/// `<dir>/go` exists (a minute at most) before exiting with the real one's status.
fn pausing_tool(dir: &Path, tool: &str) {
    let real = real_tool(tool);
    let d = dir.display();
    let script = format!(
        "#!/bin/sh\n{real} \"$@\"; rc=$?\ncase \"$1\" in --version|--list) exit $rc;; esac\ntouch \"{d}/{tool}.reached\"\ni=0; while [ ! -e \"{d}/go\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\nexit $rc\n",
    );
    let path = dir.join(tool);
    std::fs::write(&path, script).expect("script");
    assert!(Command::new("chmod")
        .args(["755", path.to_str().expect("path")])
        .status()
        .expect("chmod")
        .success());
}

/// `tool` in `dir`: the real one, as it is.
fn passthrough_tool(dir: &Path, tool: &str) {
    let real = real_tool(tool);
    std::os::unix::fs::symlink(real, dir.join(tool)).expect("symlink");
}

/// A database beside the world's host, for a move's target (dropped with the world).
async fn target_database(w: &TestTenancy) -> String {
    let name = format!("{}target", w.prefix);
    fraiseql::ops::provision::connect(&w.host.url, None, None)
        .await
        .expect("admin")
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("target");
    fraiseql_testing::url_for(&name)
}

/// Waits until `path` exists (the deadline fails the test).
fn wait_for_file(path: &Path, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the command ended ({status}) before {}", path.display());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits for `child` to exit (a minute at most); its status and everything it printed.
fn finish(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            let o = child.wait_with_output().expect("output");
            return (o.status, out(&o));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The tenant's registry row as `tenant list` prints it.
fn listed(w: &TestTenancy, key: &str) -> String {
    let o = transfer_cmd(w, &["tenant", "list"]).output().expect("list");
    out(&o)
        .lines()
        .find(|l| l.starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("{key} is not listed: {}", out(&o)))
        .to_owned()
}

/// A `schema_per_tenant` world with the tenant `acme` made by `tenant create`.
async fn world_with_acme() -> TestTenancy {
    let w = schema_world().await;
    let o = transfer_cmd(&w, &["tenant", "create", "acme"])
        .output()
        .expect("create");
    assert!(o.status.success(), "{}", out(&o));
    w
}

/// The names of the files in `dir`.
fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect()
}

/// A `tenant move` of `acme` held inside its `paused` tool (see [`pausing_tool`]), in a fresh
/// folder with its stand-in tools in `bin` and its `$TMPDIR` in `tmp`.
struct PausedMove {
    dir: PathBuf,
    bin: PathBuf,
    tmp: PathBuf,
    child: std::process::Child,
}

impl PausedMove {
    /// Starts moving `acme` to `to` and waits until it reaches `paused`; `passed` runs as is.
    fn start(w: &TestTenancy, to: &str, paused: &str, passed: &str) -> Self {
        let dir = tempdir();
        let (bin, tmp) = (dir.join("bin"), dir.join("tmp"));
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::create_dir_all(&tmp).expect("tmp");
        pausing_tool(&bin, paused);
        passthrough_tool(&bin, passed);
        let mut child = transfer_cmd(w, &["tenant", "move", "acme", "--server-url", to])
            .env("FRAISEQL_PG_BINDIR", &bin)
            .env("TMPDIR", &tmp)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("move");
        wait_for_file(&bin.join(format!("{paused}.reached")), &mut child);
        Self {
            dir,
            bin,
            tmp,
            child,
        }
    }

    /// Waits for the move to exit (see [`finish`]), then lets the paused tool go.
    fn finish(self) -> (std::process::ExitStatus, String) {
        let done = finish(self.child);
        std::fs::write(self.bin.join("go"), b"").expect("go");
        done
    }
}

/// Ctrl-C during `tenant move` (SIGINT while its backup runs): the command undoes what it did
/// and exits. The tenant is active at its old place with its writes, nothing of it is on the
/// target, and no scratch file is left in `$TMPDIR`.
#[tokio::test]
async fn ctrl_c_during_a_move_undoes_it() {
    let w = world_with_acme().await;
    let to = target_database(&w).await;
    let paused = PausedMove::start(&w, &to, "pg_dump", "pg_restore");
    assert!(Command::new("kill")
        .args(["-INT", &paused.child.id().to_string()])
        .status()
        .expect("kill")
        .success());
    let (dir, tmp) = (paused.dir.clone(), paused.tmp.clone());
    let (status, text) = paused.finish();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("interrupted (SIGINT or SIGTERM)") && text.contains("is served from"),
        "{text}"
    );
    let line = listed(&w, "acme");
    assert!(line.contains(" active "), "{line}\n{text}");
    let left = entries(&tmp);
    assert!(left.is_empty(), "scratch left in $TMPDIR: {left:?}\n{text}");
    let target = fraiseql::ops::provision::connect(&to, None, None)
        .await
        .expect("target");
    let schemas: i64 = target
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1",
            &[&format!("{}%", w.prefix)],
        )
        .await
        .expect("schemas")
        .get(0);
    assert_eq!(schemas, 0, "nothing of the tenant on the target");
    let mut client = w.client().await.expect("client");
    client.set_tenant("acme");
    let v = client
        .execute(r#"mutation { createOrganization(name: "After Ctrl-C") { id } }"#)
        .await
        .expect("execute");
    assert!(
        v.get("errors").is_none(),
        "writes after Ctrl-C: {v}\n{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `tenant move` killed (SIGKILL) right after its restore on the target (`pg_restore` waits
/// there): a plain re-run is refused naming `--resume`; `--resume` clears the partial copy,
/// copies again and switches; the tenant is active on the target with every row.
#[tokio::test]
async fn a_killed_move_resumes() {
    let w = world_with_acme().await;
    let mut client = w.client().await.expect("client");
    client.set_tenant("acme");
    for name in ["One", "Two", "Three"] {
        let v = client
            .execute(&format!(
                r#"mutation {{ createOrganization(name: "{name}") {{ id }} }}"#
            ))
            .await
            .expect("execute");
        assert!(v.get("errors").is_none(), "{v}");
    }
    let before = client
        .execute("{ organizations { name } }")
        .await
        .expect("read");
    let to = target_database(&w).await;
    let mut paused = PausedMove::start(&w, &to, "pg_restore", "pg_dump");
    paused.child.kill().expect("SIGKILL");
    let (dir, tmp) = (paused.dir.clone(), paused.tmp.clone());
    let (_, text) = paused.finish();
    assert!(
        std::fs::read_dir(&tmp).expect("tmp").next().is_some(),
        "a killed move leaves its scratch folder"
    );

    // Killed: nothing was undone, the move is recorded as unfinished.
    let line = listed(&w, "acme");
    assert!(line.contains(" suspended "), "{line}\n{text}");
    let o = transfer_cmd(&w, &["tenant", "move", "acme", "--server-url", &to])
        .output()
        .expect("again");
    assert!(!o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("was interrupted after fencing its writes at the source")
            && out(&o).contains("--resume"),
        "{}",
        out(&o)
    );
    let o = transfer_cmd(
        &w,
        &["tenant", "move", "acme", "--server-url", &to, "--resume"],
    )
    .env("TMPDIR", &tmp)
    .output()
    .expect("resume");
    assert!(o.status.success(), "{}\n{text}", out(&o));
    let left = entries(&tmp);
    assert!(
        left.is_empty(),
        "the resumed move removed the killed one's scratch: {left:?}"
    );
    assert!(
        out(&o).contains("resuming the move of `acme`"),
        "{}",
        out(&o)
    );
    let line = listed(&w, "acme");
    assert!(line.contains(" active "), "{line}\n{}", out(&o));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = client
        .execute("{ organizations { name } }")
        .await
        .expect("read");
    assert_eq!(after, before);
    let _ = std::fs::remove_dir_all(dir);
}

/// `documents manifest`: one document per operation (with the fragments it spreads, from any
/// file), ids that are each document's SHA-256, in order; `--out` writes the file; a document
/// the schema refuses is named and nothing is written.
#[test]
fn documents_manifest_builds_a_checked_manifest_from_graphql_files() {
    let dir = tempdir();
    std::fs::write(
        dir.join("orgs.graphql"),
        "query Orgs { organizations { id ...OrgName } }\nquery Count { organizations { memberCount } }\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("fragments.graphql"),
        "fragment OrgName on Organization { name }\n",
    )
    .expect("write");
    let config = example().join("fraiseql.toml");
    let manifest = |extra: &[&Path]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fraiseql"));
        c.arg("--config")
            .arg(&config)
            .args(["documents", "manifest"])
            .args(extra)
            .env_remove("FRAISEQL_CONFIG");
        c.output().expect("run fraiseql")
    };
    let files = [dir.join("orgs.graphql"), dir.join("fragments.graphql")];
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let o = manifest(&refs);
    assert!(o.status.success(), "{}", out(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("manifest JSON");
    assert_eq!(json["version"], 1);
    let docs = json["documents"].as_object().expect("documents");
    assert_eq!(docs.len(), 2, "{json}");
    let ids: Vec<&String> = docs.keys().collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    for (id, doc) in docs {
        let text = doc.as_str().expect("text");
        assert_eq!(
            *id,
            fraiseql::engine::document::manifest::sha256_hex(text),
            "{text}"
        );
    }
    let orgs = docs
        .values()
        .filter_map(|d| d.as_str())
        .find(|d| d.starts_with("query Orgs"))
        .expect("Orgs");
    assert!(orgs.contains("fragment OrgName on Organization"), "{orgs}");
    // The server loads what the command wrote.
    let out_file = dir.join("manifest.json");
    let mut args = refs.clone();
    args.extend([Path::new("--out"), out_file.as_path()]);
    let o = manifest(&args);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("2 documents written to"), "{}", out(&o));
    let loaded = fraiseql::engine::document::manifest::Manifest::load(&out_file).expect("loadable");
    assert_eq!(loaded.len(), 2);

    std::fs::write(
        dir.join("bad.graphql"),
        "query Bad { organizations { nope } }\n",
    )
    .expect("write");
    std::fs::remove_file(&out_file).expect("rm");
    let bad = dir.join("bad.graphql");
    let o = manifest(&[bad.as_path(), Path::new("--out"), out_file.as_path()]);
    assert!(!o.status.success());
    let text = out(&o);
    assert!(
        text.contains("do not fit the schema")
            && text.contains("does not have a field `nope`")
            && text.contains("bad.graphql"),
        "{text}"
    );
    assert!(!out_file.exists(), "nothing is written");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// OpenTelemetry across the event path: a mutation sent with a W3C `traceparent` is one trace
/// from the HTTP request through its SQL statements, the relay's publish (the context travels
/// in the outbox row and the message's `traceparent` header) to the `analytics_sync` consumer's
/// insert, as an OTLP receiver decoding the protobuf with the official definitions
/// (`opentelemetry-proto`) sees it; each span's parent is the one before it, the statements
/// carry no values, and the request's log line carries the trace id. The endpoint comes from
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (the config has no `[tracing]`).
#[tokio::test]
async fn one_trace_runs_from_the_request_to_the_consumers_insert() {
    use fraiseql_testing::ServerProcess;
    let (w, config) = acme_corp_world().await;
    let token = admin_token(&w, &config);
    let dir = tempdir();
    let spans_file = dir.join("spans.jsonl");
    let python = std::env::var("FRAISEQL_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut receiver = Command::new(&python)
        .arg(example().join("../../scripts/otlp-receiver.py"))
        .arg("--out")
        .arg(&spans_file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python (scripts/test.sh installs opentelemetry-proto)");
    let stdout = receiver.stdout.take().expect("stdout");
    let receiver = Killed(receiver);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("receiver's port");
    let receiver_port: u16 = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!("the receiver did not start (opentelemetry-proto missing?): {first:?}")
        });

    let nats = fraiseql_testing::NatsServer::start().expect("nats-server");
    let port = ServerProcess::free_port().expect("port");
    let log = dir.join("server.log");
    let mut c = cmd(&w, &config, &["run"]);
    c.env("PORT", port.to_string())
        .env("OBSERVERS_ENABLED", "true")
        .env("NATS_URL", nats.url())
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{receiver_port}"),
        )
        .env("OTEL_SERVICE_NAME", "fraiseql-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut server = ServerProcess::start(c, port).await.expect("server");
    let auth = format!("Bearer {token}");
    let post = |body: String, traceparent: Option<String>| {
        let auth = auth.clone();
        async move {
            let mut headers = vec![
                ("Content-Type", "application/json".to_owned()),
                ("X-Tenant-ID", "acme_corp".to_owned()),
                ("Authorization", auth),
            ];
            if let Some(tp) = traceparent {
                headers.push(("traceparent", tp));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_ok(port, &headers, &body).await
        }
    };
    let org = post(
        r#"{"query": "mutation { createOrganization(name: \"Traced Org\") { id } }"}"#.to_owned(),
        None,
    )
    .await["data"]["createOrganization"]["id"]
        .as_str()
        .expect("org id")
        .to_owned();
    // The caller's trace: a trace id and the id of its span that sends the request.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let body = format!(
        r#"{{"query": "mutation Traced($o: ID!, $n: String!) {{ createProject(orgId: $o, name: $n) {{ id }} }}", "operationName": "Traced", "variables": {{"o": "{org}", "n": "Secret Project Name"}}}}"#
    );
    let project = post(body, Some(format!("00-{trace_id}-{caller_span}-01"))).await["data"]
        ["createProject"]["id"]
        .as_str()
        .expect("project id")
        .to_owned();

    // The consumer's insert lands (the event went through the outbox and JetStream).
    let analytics = shared_client(&w).await;
    count_until(
        &analytics,
        "SELECT count(*) FROM tb_analytics_event WHERE data->>'project_id' = $1",
        &[&project],
        |rows| rows == 1,
        50,
    )
    .await
    .unwrap_or_else(|_| panic!("the project's analytics row did not land in 30 s"));

    // Every span of the trace reaches the receiver (batched every 100 ms).
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&spans_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|s| s["trace_id"] == trace_id)
            .collect()
    };
    let has = |spans: &[serde_json::Value], name: &str| spans.iter().any(|s| s["name"] == name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let spans = loop {
        let spans = read();
        let inserts = spans
            .iter()
            .filter(|s| s["attributes"]["db.operation"] == "INSERT")
            .count();
        if ["POST /graphql", "graphql.execute", "subscriber.handle"]
            .iter()
            .all(|n| has(&spans, n))
            && spans.iter().any(|s| s["kind"] == "SPAN_KIND_PRODUCER")
            && spans.iter().any(|s| s["kind"] == "SPAN_KIND_CONSUMER")
            && inserts >= 2
        {
            break spans;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trace's spans did not all arrive in 30 s: {}",
            serde_json::to_string_pretty(&spans).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let one = |pred: &dyn Fn(&serde_json::Value) -> bool, what: &str| -> serde_json::Value {
        let found: Vec<&serde_json::Value> = spans.iter().filter(|s| pred(s)).collect();
        assert_eq!(found.len(), 1, "one {what} span: {found:?}");
        found[0].clone()
    };
    let by_id = |id: &serde_json::Value| spans.iter().find(|s| s["span_id"] == *id).cloned();
    // The request continues the caller's trace.
    let request = one(&|s| s["name"] == "POST /graphql", "request");
    assert_eq!(request["parent_span_id"], caller_span);
    assert_eq!(request["kind"], "SPAN_KIND_SERVER");
    assert_eq!(request["service"], "fraiseql-under-test");
    assert_eq!(request["attributes"]["http.response.status_code"], 200);
    assert_eq!(request["attributes"]["graphql.operation.name"], "Traced");
    assert_eq!(request["attributes"]["graphql.operation.type"], "mutation");
    assert_eq!(request["attributes"]["fraiseql.tenant"], "acme_corp");
    for stage in [
        "graphql.identity",
        "graphql.document",
        "graphql.plan",
        "graphql.execute",
    ] {
        let s = one(&|s| s["name"] == stage, stage);
        assert_eq!(s["parent_span_id"], request["span_id"], "{stage}");
    }
    let execute = one(&|s| s["name"] == "graphql.execute", "execute");
    // The mutation's statements, one span each, under the execution stage; text, no values.
    let statements: Vec<&serde_json::Value> = spans
        .iter()
        .filter(|s| s["attributes"]["db.system"] == "postgresql")
        .collect();
    let tenant_db = format!("{}acme_corp", w.prefix);
    let on_tenant: Vec<&&serde_json::Value> = statements
        .iter()
        .filter(|s| s["attributes"]["db.name"] == tenant_db.as_str())
        .collect();
    assert!(
        on_tenant.len() >= 2,
        "mutation and outbox insert: {statements:?}"
    );
    for s in &on_tenant {
        assert_eq!(s["parent_span_id"], execute["span_id"], "{s}");
        assert_eq!(s["kind"], "SPAN_KIND_CLIENT");
        assert_eq!(s["attributes"]["fraiseql.tenant"], "acme_corp");
        assert!(s["attributes"]["db.statement"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
    }
    assert!(
        on_tenant.iter().any(|s| s["attributes"]["db.statement"]
            .as_str()
            .is_some_and(|t| t.contains("INSERT INTO fraiseql_outbox"))),
        "the outbox insert: {on_tenant:?}"
    );
    let all = serde_json::to_string(&spans).unwrap_or_default();
    assert!(
        !all.contains("Secret Project Name"),
        "a value reached a span: {all}"
    );
    assert!(!all.contains(&token), "the token reached a span");
    // The relay's publish continues the request (from the outbox row)...
    let publish = one(
        &|s| {
            s["kind"] == "SPAN_KIND_PRODUCER"
                && s["attributes"]["messaging.destination.name"] == "analytics.project_created"
        },
        "publish",
    );
    assert_eq!(publish["name"], "analytics.project_created publish");
    let publish_parent = by_id(&publish["parent_span_id"]).expect("the publish span's parent");
    assert_eq!(
        publish_parent["name"], "graphql.execute",
        "{publish_parent}"
    );
    // ... the consumer continues the publish (from the message's header) ...
    let consume = one(&|s| s["kind"] == "SPAN_KIND_CONSUMER", "consume");
    assert_eq!(consume["name"], "analytics.project_created process");
    assert_eq!(consume["parent_span_id"], publish["span_id"]);
    assert_eq!(
        consume["attributes"]["messaging.consumer.group.name"],
        "analytics_sync"
    );
    let handle = one(&|s| s["name"] == "subscriber.handle", "handle");
    assert_eq!(handle["parent_span_id"], consume["span_id"]);
    // ... down to its insert into the analytics database.
    let insert = one(
        &|s| {
            s["parent_span_id"] == handle["span_id"] && s["attributes"]["db.system"] == "postgresql"
        },
        "the consumer's insert",
    );
    assert_eq!(insert["attributes"]["db.operation"], "INSERT");
    assert_eq!(insert["attributes"]["db.name"], "shared");
    assert_eq!(insert["attributes"]["fraiseql.tenant"], "acme_corp");

    // The request's log line carries the trace id.
    server.terminate();
    let text = std::fs::read_to_string(&log).expect("log");
    let line = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "graphql request" && v["operation"] == "Traced")
        .unwrap_or_else(|| panic!("no log line of the request:\n{text}"));
    assert_eq!(line["trace_id"], trace_id, "{line}");
    drop(receiver);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Apollo Client itself (`@apollo/client` 4: `createPersistedQueryLink` over `HttpLink`, run by
/// node from `scripts/federation/apq.mjs`) against the binary: the first hash-only request gets
/// `PersistedQueryNotFound` (200, so the link keeps hashing), the link resends with the text, and
/// from then on the hash alone answers, over GET (`useGETForHashedQueries`) and POST.
#[tokio::test]
async fn apollo_clients_persisted_query_link_round_trips() {
    use fraiseql_testing::{http, ServerProcess};
    let tools = std::env::var_os("FRAISEQL_FEDERATION_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| example().join("../../target/federation-tools"));
    assert!(
        tools.join("node_modules/@apollo/client").is_dir(),
        "@apollo/client is not installed in {}: run scripts/federation/install.sh (scripts/test.sh does)",
        tools.display()
    );
    let (w, config) = acme_corp_world().await;
    let token = admin_token(&w, &config);
    let port = ServerProcess::free_port().expect("port");
    let mut c = cmd(&w, &config, &["run"]);
    c.env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = ServerProcess::start(c, port).await.expect("server");
    let auth = format!("Bearer {token}");
    for name in ["Alpha", "Beta", "Gamma"] {
        let a = http(
            port,
            "POST",
            "/graphql",
            &[
                ("Content-Type", "application/json"),
                ("X-Tenant-ID", "acme_corp"),
                ("Authorization", &auth),
            ],
            &format!(
                r#"{{"query": "mutation {{ createOrganization(name: \"{name}\") {{ id }} }}"}}"#
            ),
        )
        .await
        .expect("answer");
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let apollo = |mode: &str| {
        let o = Command::new("node")
            .arg(tools.join("apq.mjs"))
            .arg(format!("http://127.0.0.1:{port}/graphql"))
            .arg(&token)
            .arg("acme_corp")
            .arg(mode)
            .current_dir(&tools)
            .output()
            .expect("node");
        assert!(o.status.success(), "{}", out(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("apq.mjs output");
        let sizes: Vec<usize> = v["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["organizations"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [2, 1], "{v}");
        v["requests"].as_array().expect("requests").clone()
    };
    let body = |r: &serde_json::Value| -> serde_json::Value {
        r["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null)
    };

    // A fresh server, hashes over GET.
    let requests = apollo("get");
    assert_eq!(requests.len(), 3, "{requests:?}");
    let first = &requests[0];
    assert_eq!(first["method"], "GET");
    let url = first["url"].as_str().expect("url");
    assert!(
        url.contains("extensions=") && !url.contains("query="),
        "the hash alone: {url}"
    );
    assert_eq!(first["status"], 200, "{first}");
    assert!(
        first["response"]
            .as_str()
            .is_some_and(|r| r.contains("PERSISTED_QUERY_NOT_FOUND")),
        "{first}"
    );
    let retry = &requests[1];
    assert_eq!(retry["method"], "POST");
    let sent = body(retry);
    assert!(
        sent["query"]
            .as_str()
            .is_some_and(|q| q.contains("query Orgs")),
        "{sent}"
    );
    let hash = sent["extensions"]["persistedQuery"]["sha256Hash"].clone();
    assert_eq!(
        hash,
        serde_json::Value::String(fraiseql::engine::document::manifest::sha256_hex(
            sent["query"].as_str().unwrap_or("")
        )),
        "the link hashes the text it sends"
    );
    assert_eq!(retry["status"], 200);
    let again = &requests[2];
    assert_eq!(
        (again["method"].as_str(), again["status"].as_u64()),
        (Some("GET"), Some(200))
    );
    assert!(
        again["response"]
            .as_str()
            .is_some_and(|r| r.contains("\"data\"")),
        "{again}"
    );

    // The hash is known now: over POST, each query is one request without its text.
    let requests = apollo("post");
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        assert_eq!(
            (r["method"].as_str(), r["status"].as_u64()),
            (Some("POST"), Some(200))
        );
        let sent = body(r);
        assert!(sent.get("query").is_none(), "{sent}");
        assert_eq!(sent["extensions"]["persistedQuery"]["sha256Hash"], hash);
        assert_eq!(sent["operationName"], "Orgs");
    }
}
