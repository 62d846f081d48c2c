use std::path::Path;

use super::*;

const SEED: &str = r#"[multi_tenancy]
enabled = true
strategy = "database_per_tenant"
auth_header = "X-Tenant-ID"
# Tenant database pool
[databases.tenant]
type = "postgresql"
pool_max = 20
# Shared services
[databases.shared]
type = "postgresql"
url = "${SHARED_DB_URL}"
pool_max = 10
[observers]
enabled = true
backend = "nats"
nats_url = "${NATS_URL}"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SHARED_DB_URL" => Some("postgres://postgres@127.0.0.1/shared".into()),
        "NATS_URL" => Some("nats://127.0.0.1:4222".into()),
        "POOL" => Some("7".into()),
        "BAD_POOL" => Some("seven".into()),
        _ => None,
    }
}

fn parse(src: &str) -> Result<Config, ConfigError> {
    parse_str(src, "fraiseql.toml", Path::new("/etc/app"), &env)
}

#[test]
fn the_seeds_config_parses_and_expands() {
    let c = parse(SEED).expect("seed config");
    assert!(c.multi_tenancy.enabled);
    assert_eq!(c.multi_tenancy.strategy, TenancyStrategy::DatabasePerTenant);
    assert_eq!(c.multi_tenancy.auth_header, "X-Tenant-ID");
    assert_eq!(c.databases["tenant"].pool_max, 20);
    assert_eq!(c.databases["tenant"].url, None);
    assert_eq!(
        c.databases["shared"].url.as_deref(),
        Some("postgres://postgres@127.0.0.1/shared")
    );
    assert_eq!(c.nats.servers, ["nats://127.0.0.1:4222"]);
    assert_eq!(c.schema.path, Path::new("/etc/app/schema.graphql"));
    assert_eq!(c.server.port, 8080);
    assert_eq!(c.limits, LimitsConfig::default());
}

#[test]
fn misspelt_key_names_key_and_line() {
    let src = SEED.replace("pool_max = 20", "pool_maxx = 20");
    let err = parse(&src).expect_err("misspelt key").to_string();
    insta::assert_snapshot!(err, @"fraiseql.toml:8: `databases.tenant.pool_maxx`: unknown field `pool_maxx`, expected one of `type`, `url`, `pool_max`, `pool_timeout_secs`, `migrations`");
}

#[test]
fn unknown_section_names_key_and_line() {
    let src = format!("{SEED}[observer]\nenabled = true\n");
    let err = parse(&src).expect_err("unknown section").to_string();
    assert!(
        err.starts_with("fraiseql.toml:18: `observer`: unknown field `observer`"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_key_and_line() {
    let src = SEED.replace("enabled = true\nstrategy", "enabled = \"maybe\"\nstrategy");
    let err = parse(&src).expect_err("wrong type").to_string();
    assert_eq!(
        err,
        "fraiseql.toml:2: `multi_tenancy.enabled`: expected true or false, found \"maybe\""
    );
    let src = SEED.replace("pool_max = 10", "pool_max = [1]");
    let err = parse(&src).expect_err("wrong type").to_string();
    assert!(
        err.starts_with("fraiseql.toml:13: `databases.shared.pool_max`: expected an integer"),
        "{err}"
    );
}

#[test]
fn missing_variable_names_variable_key_and_line() {
    let src = SEED.replace("${NATS_URL}", "${NATS_URLL}");
    let err = parse(&src).expect_err("missing var").to_string();
    insta::assert_snapshot!(err, @"fraiseql.toml:17: `observers.nats_url`: environment variable `NATS_URLL` is not set (set it, or write `${NATS_URLL:-default}`)");
}

#[test]
fn numbers_can_come_from_variables_with_defaults() {
    let src = SEED
        .replace("pool_max = 20", "pool_max = \"${POOL}\"")
        .replace("pool_max = 10", "pool_max = \"${UNSET:-3}\"");
    let c = parse(&src).expect("numbers from env");
    assert_eq!(c.databases["tenant"].pool_max, 7);
    assert_eq!(c.databases["shared"].pool_max, 3);
    let src = SEED.replace("pool_max = 20", "pool_max = \"${BAD_POOL}\"");
    let err = parse(&src).expect_err("not a number").to_string();
    assert_eq!(
        err,
        "fraiseql.toml:8: `databases.tenant.pool_max`: expected an integer, found \"seven\""
    );
}

#[test]
fn variables_in_comments_are_not_expanded() {
    let src = format!("# uses ${{NOT_SET_ANYWHERE}}\n{SEED}");
    assert!(parse(&src).is_ok());
}

#[test]
fn semantic_errors_are_clear() {
    let err = parse(&SEED.replace("database_per_tenant", "per_tenant")).expect_err("strategy");
    assert!(
        err.to_string().contains("unknown strategy \"per_tenant\""),
        "{err}"
    );
    let err = parse(&SEED.replace("url = \"${SHARED_DB_URL}\"\n", "")).expect_err("url");
    assert_eq!(
        err.to_string(),
        "fraiseql.toml:10: `databases.shared.url`: missing or empty `url` (only the `tenant` database may omit it)"
    );
    let err = parse(&SEED.replace("pool_max = 20", "pool_max = 0")).expect_err("range");
    assert!(err.to_string().contains("0 is out of range"), "{err}");
    let err =
        parse("[databases.shared]\ntype=\"postgresql\"\nurl=\"x\"\n").expect_err("no tenant db");
    assert!(
        err.to_string().contains("missing `[databases.tenant]`"),
        "{err}"
    );
}

#[test]
fn syntax_errors_give_the_line() {
    let err = parse("[server]\nport = \n").expect_err("syntax");
    assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
}

#[test]
fn nats_servers_and_the_one_server_form() {
    let c = parse(SEED).expect("seed");
    assert_eq!(c.nats.servers, vec!["nats://127.0.0.1:4222".to_owned()]);
    let cluster = SEED.replace(
        "nats_url = \"${NATS_URL}\"\n",
        "[nats]\nservers = [\"nats://a:4222\", \"tls://b:4222\"]\nname = \"api-1\"\nmax_reconnects = 10\n",
    );
    let c = parse(&cluster).expect("cluster");
    assert_eq!(c.nats.servers, ["nats://a:4222", "tls://b:4222"]);
    assert_eq!((c.nats.name.as_str(), c.nats.max_reconnects), ("api-1", 10));
    let both = format!("{SEED}[nats]\nservers = [\"nats://nats:4222\"]\n");
    let err = parse(&both).expect_err("both").to_string();
    assert!(
        err.contains("both [nats] servers and [observers] nats_url are set"),
        "{err}"
    );
    let none = SEED.replace("nats_url = \"${NATS_URL}\"\n", "");
    let err = parse(&none).expect_err("events without NATS").to_string();
    assert!(err.contains("events need NATS"), "{err}");
    let bad = format!(
        "{}[nats]\nservers = [\"http://x\"]\n",
        none.replace("enabled = true\nbackend", "enabled = false\nbackend")
    );
    assert_eq!(
        parse(&bad).expect_err("http:// refused").to_string(),
        "fraiseql.toml:18: `nats.servers`: a NATS server is nats://host:port or tls://host:port"
    );
}

#[test]
fn reserved_payload_keys_are_refused_naming_the_rule() {
    let src = format!(
        "{SEED}[observers.stream]\nsubjects = [\"analytics.>\"]\n[[observers.rules]]\nentity = \"Project\"\nevent = \"CREATE\"\nsubject = \"analytics.project_created\"\npayload = {{ tenant_id = \"org_id\" }}\n"
    );
    let err = parse(&src).expect_err("reserved").to_string();
    assert!(
        err.contains("`observers.rules.0.payload`")
            && err.contains("rule #1 (Project CREATE -> analytics.project_created): payload key `tenant_id` is reserved"),
        "{err}"
    );
}

#[test]
fn metrics_logging_cache_and_limits_sections() {
    let src = format!(
        "{SEED}[metrics]\nlisten = \"127.0.0.1:9100\"\nmax_tenant_labels = 5\n[logging]\nformat = \"json\"\n[cache]\nmax_bytes = 1024\n[limits]\nmax_rows = 10\nmax_fields = 7\n[server]\nprofile = \"development\"\n"
    );
    let c = parse(&src).expect("sections");
    assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:9100"));
    assert_eq!(c.metrics.max_tenant_labels, 5);
    assert_eq!(c.logging.format, LogFormat::Json);
    assert_eq!(c.cache.max_bytes, 1024);
    assert_eq!((c.limits.max_rows, c.limits.max_fields), (10, 7));
    assert_eq!(c.server.profile, Profile::Development);
    let err = parse(&format!("{SEED}[metrics]\nlisten = \"9100\"\n")).expect_err("listen");
    assert!(err.to_string().contains("is not host:port"), "{err}");
    let err = parse(&format!("{SEED}[logging]\nformat = \"xml\"\n")).expect_err("format");
    assert!(err.to_string().contains("\"xml\" is not"), "{err}");
}

#[test]
fn production_refuses_the_published_development_secret_and_short_secrets() {
    let with = |profile: &str, secret: &str| {
        parse(&format!(
            "{SEED}[server]\nprofile = \"{profile}\"\n[auth]\nalgorithm = \"HS256\"\nsecret = \"{secret}\"\n"
        ))
    };
    let published = crate::KNOWN_DEVELOPMENT_SECRETS[0];
    let e = with("production", published)
        .expect_err("published secret")
        .to_string();
    assert!(
        e.contains("auth.secret")
            && e.contains("the example's published development secret")
            && e.contains("JWT_SECRET")
            && e.contains("openssl rand -base64 48"),
        "{e}"
    );
    let e = with("production", "short-but-over-16-bytes")
        .expect_err("short secret")
        .to_string();
    assert!(e.contains("is 23 bytes, fewer than 32"), "{e}");
    // The engine's default profile is production too.
    let e = parse(&format!("{SEED}[auth]\nsecret = \"{published}\"\n"))
        .expect_err("default profile")
        .to_string();
    assert!(e.contains("published development secret"), "{e}");
    assert!(with("development", published).is_ok());
    assert!(with("production", &"k".repeat(32)).is_ok());
}

#[test]
fn the_archive_key_comes_from_the_environment_and_is_long_enough() {
    let env = |name: &str| match name {
        "FRAISEQL_ARCHIVE_KEY" => Some("k".repeat(48)),
        "SHORT_KEY" => Some("too short".to_owned()),
        other => self::env(other),
    };
    let read = |extra: &str| {
        parse_str(
            &format!("{SEED}{extra}"),
            "fraiseql.toml",
            Path::new("/etc/app"),
            &env,
        )
    };
    let c = read("[transfer]\narchive_key = \"${FRAISEQL_ARCHIVE_KEY}\"\n").expect("key");
    assert_eq!(c.transfer.archive_key, Some("k".repeat(48)));
    assert!(
        !format!("{:?}", c.transfer).contains("kkkk"),
        "the key is not in Debug output"
    );
    let none = read("[transfer]\narchive_key = \"${UNSET_KEY:-}\"\n").expect("empty");
    assert_eq!(none.transfer.archive_key, None, "an empty key is no key");
    assert_eq!(read("").expect("absent").transfer.archive_key, None);
    let err = read("[transfer]\narchive_key = \"${SHORT_KEY}\"\n")
        .expect_err("short")
        .to_string();
    insta::assert_snapshot!(err, @"fraiseql.toml:19: `transfer.archive_key`: the key is 9 bytes; use at least 32 (`openssl rand -base64 48` makes one)");
    let err = read("[transfer]\narchive_kee = \"x\"\n")
        .expect_err("unknown")
        .to_string();
    assert!(err.contains("unknown field `archive_kee`"), "{err}");
}

#[test]
fn subscriptions_keys_have_defaults_bounds_and_a_stream_of_their_own() {
    let c = parse(SEED).expect("seed config");
    assert_eq!(c.subscriptions, SubscriptionsConfig::default());
    assert_eq!(c.subscriptions.subject_prefix, "fraiseql.changes");
    let c = parse(&format!(
        "{SEED}[subscriptions]\nmax_subscriptions_per_connection = \"${{POOL}}\"\nbuffer = 16\nretention_secs = 60\n"
    ))
    .expect("keys");
    assert_eq!(c.subscriptions.max_subscriptions_per_connection, 7);
    assert_eq!(
        (c.subscriptions.buffer, c.subscriptions.retention_secs),
        (16, 60)
    );
    let err = |extra: &str| {
        parse(&format!("{SEED}{extra}"))
            .expect_err(extra)
            .to_string()
    };
    insta::assert_snapshot!(
        err("[subscriptions]\nbuffer = 0\n"),
        @"fraiseql.toml:19: `subscriptions.buffer`: 0 is out of range (1..=1000000)"
    );
    insta::assert_snapshot!(
        err("[subscriptions]\nsubject_prefix = \"analytics\"\n"),
        @r#"fraiseql.toml:19: `subscriptions.subject_prefix`: "analytics" overlaps [observers.stream] subjects ("analytics.>"); change events need subjects of their own"#
    );
    insta::assert_snapshot!(
        err("[subscriptions]\nstream = \"FRAISEQL_EVENTS\"\n"),
        @r#"fraiseql.toml:19: `subscriptions.stream`: "FRAISEQL_EVENTS" is also [observers.stream] name; change events go to a stream of their own"#
    );
    insta::assert_snapshot!(
        err("[subscriptions]\nmax_subscription = 3\n"),
        @"fraiseql.toml:19: `subscriptions.max_subscription`: unknown field `max_subscription`, expected one of `enabled`, `max_connections`, `max_subscriptions_per_connection`, `max_subscriptions_per_tenant`, `keepalive_secs`, `connection_init_timeout_ms`, `buffer`, `subject_prefix`, `stream`, `retention_secs`, `replicas`"
    );
}

#[test]
fn security_reads_trusted_documents_and_apq() {
    let c = parse(SEED).expect("defaults");
    assert_eq!(c.security, SecurityConfig::default());
    assert!(c.security.apq && !c.security.trusted_documents.enabled);
    let c = parse(&format!(
        "{SEED}[security]\napq = false\napq_cache_bytes = 4096\n[security.trusted_documents]\nenabled = true\nmode = \"permissive\"\nmanifest_path = \"documents.json\"\n"
    ))
    .expect("security");
    assert!(!c.security.apq);
    assert_eq!(c.security.apq_cache_bytes, 4096);
    let td = &c.security.trusted_documents;
    assert_eq!(td.mode, TrustedMode::Permissive);
    assert_eq!(
        td.manifest_path.as_deref(),
        Some(Path::new("/etc/app/documents.json"))
    );
    let err = parse(&format!(
        "{SEED}[security.trusted_documents]\nenabled = true\n"
    ))
    .expect_err("no manifest")
    .to_string();
    assert!(
        err.contains("security.trusted_documents.manifest_path")
            && err.contains("fraiseql documents manifest"),
        "{err}"
    );
    let err = parse(&format!(
        "{SEED}[security.trusted_documents]\nmode = \"lenient\"\n"
    ))
    .expect_err("mode")
    .to_string();
    insta::assert_snapshot!(err, @r#"fraiseql.toml:19: `security.trusted_documents.mode`: "lenient" is not "strict" or "permissive""#);
    let err = parse(&format!("{SEED}[security]\ntrusted = true\n"))
        .expect_err("unknown key")
        .to_string();
    assert!(err.contains("unknown field `trusted`"), "{err}");
}

#[test]
fn tracing_reads_its_keys_then_the_opentelemetry_variables() {
    let c = parse(SEED).expect("defaults");
    assert_eq!(c.tracing, TracingConfig::default());
    assert_eq!(c.tracing.otlp_endpoint, None);
    let c = parse(&format!(
        "{SEED}[tracing]\notlp_endpoint = \"http://collector:4318/\"\nservice_name = \"api\"\nsample_ratio = 0.25\n"
    ))
    .expect("tracing");
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("http://collector:4318")
    );
    assert_eq!(c.tracing.service_name, "api");
    assert_eq!(c.tracing.sample_ratio, 0.25);
    let otel = |name: &str| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("https://otel.example:4318".to_owned()),
        "OTEL_SERVICE_NAME" => Some("from-env".to_owned()),
        other => env(other),
    };
    let c = parse_str(SEED, "fraiseql.toml", Path::new("/etc/app"), &otel).expect("env");
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("https://otel.example:4318")
    );
    assert_eq!(c.tracing.service_name, "from-env");
    // The keys win over the variables.
    let src = format!("{SEED}[tracing]\notlp_endpoint = \"http://mine:4318\"\nservice_name = \"mine\"\nsample_ratio = 1\n");
    let c = parse_str(&src, "fraiseql.toml", Path::new("/etc/app"), &otel).expect("keys");
    assert_eq!(c.tracing.otlp_endpoint.as_deref(), Some("http://mine:4318"));
    assert_eq!(c.tracing.service_name, "mine");
    let err = parse(&format!("{SEED}[tracing]\nsample_ratio = 1.5\n"))
        .expect_err("ratio")
        .to_string();
    assert!(err.contains("1.5 is out of range (0..=1)"), "{err}");
    let err = parse(&format!(
        "{SEED}[tracing]\notlp_endpoint = \"collector:4318\"\n"
    ))
    .expect_err("scheme")
    .to_string();
    assert!(
        err.contains("tracing.otlp_endpoint") && err.contains("not an http:// or https:// URL"),
        "{err}"
    );
}

const TIERS: &str = r#"
[tiers.free]
requests_per_second = 50
burst = 100
max_concurrent = 10
statement_timeout_ms = 5000
max_rows = 10000
max_subscriptions = 5
mutations_per_second = "${MUT:-10}"
[tiers.pro]
requests_per_second = 500
weight = 4
[tiers.default]
max_concurrent = 2
"#;

#[test]
fn tiers_are_tables_of_optional_limits_and_default_covers_the_rest() {
    let c = parse(&format!("{SEED}{TIERS}")).expect("tiers");
    let free = &c.tiers["free"];
    assert_eq!(free.requests_per_second, Some(50));
    assert_eq!(free.burst, Some(100));
    assert_eq!(free.max_concurrent, Some(10));
    assert_eq!(free.statement_timeout_ms, Some(5000));
    assert_eq!(free.max_rows, Some(10_000));
    assert_eq!(free.max_subscriptions, Some(5));
    assert_eq!(free.mutations_per_second, Some(10));
    assert_eq!(free.weight, 1);
    assert_eq!(c.tiers["pro"].weight, 4);
    assert_eq!(c.tiers["pro"].burst, None);
    assert_eq!(c.tier("pro"), Some(&c.tiers["pro"]));
    assert_eq!(c.tier("enterprise"), Some(&c.tiers["default"]));
    let without_default =
        parse(&format!("{SEED}[tiers.free]\nrequests_per_second = 1\n")).expect("tiers");
    assert_eq!(without_default.tier("enterprise"), None);
    assert!(parse(SEED).expect("seed").tiers.is_empty());
}

#[test]
fn a_tier_that_no_request_could_meet_names_its_key() {
    let err = |extra: &str| {
        parse(&format!("{SEED}{extra}"))
            .expect_err(extra)
            .to_string()
    };
    insta::assert_snapshot!(err("[tiers.free]\nrequests_per_second = 0\n"), @"fraiseql.toml:19: `tiers.free.requests_per_second`: 0 is out of range (1..=4294967295)");
    insta::assert_snapshot!(err("[tiers.free]\nburst = 5\n"), @"fraiseql.toml:19: `tiers.free.burst`: `burst` is the size of the `requests_per_second` bucket: set requests_per_second too");
    insta::assert_snapshot!(err("[tiers.free]\nstatement_timeout_ms = 60000\n"), @"fraiseql.toml:19: `tiers.free.statement_timeout_ms`: 60000 is above [limits] request_timeout_ms (30000), which ends every request first; use at most that");
    insta::assert_snapshot!(err("[tiers.free]\nmax_rows = 1000000\n"), @"fraiseql.toml:19: `tiers.free.max_rows`: 1000000 is above [limits] max_rows (100000), which applies to every tenant; raise that, or use at most it here");
    insta::assert_snapshot!(err("[tiers.\"Gold Plan\"]\nweight = 2\n"), @r#"fraiseql.toml:18: `tiers.Gold Plan`: a tier name is 1-40 of [a-z0-9_-]"#);
    insta::assert_snapshot!(err("[tiers.free]\nrps = 2\n"), @"fraiseql.toml:19: `tiers.free.rps`: unknown field `rps`, expected one of `requests_per_second`, `burst`, `mutations_per_second`, `max_concurrent`, `statement_timeout_ms`, `max_rows`, `max_subscriptions`, `weight`");
}

#[test]
fn the_admin_listener_needs_a_long_token_of_its_own() {
    let admin = |body: &str| {
        parse(&format!(
            "{SEED}[auth]\nsecret = \"{}\"\n[server]\nprofile = \"development\"\n[admin]\n{body}",
            "s".repeat(40)
        ))
    };
    let c = admin(&format!(
        "listen = \"127.0.0.1:9200\"\ntoken = \"{}\"\n",
        "t".repeat(32)
    ))
    .expect("admin");
    assert_eq!(c.admin.listen.as_deref(), Some("127.0.0.1:9200"));
    assert_eq!(c.admin.backup_dir, Path::new("/etc/app/backups"));
    // Empty (an unset `${ADMIN_LISTEN:-}`): not served, no token needed.
    assert_eq!(admin("listen = \"\"\n").expect("off").admin.listen, None);
    let err = |body: &str| admin(body).expect_err(body).to_string();
    insta::assert_snapshot!(err("listen = \"127.0.0.1:9200\"\n"), @r#"fraiseql.toml:22: `admin.token`: [admin] listen needs a token (e.g. token = "${FRAISEQL_ADMIN_TOKEN}", made with `openssl rand -hex 32`)"#);
    insta::assert_snapshot!(err("listen = \"127.0.0.1:9200\"\ntoken = \"short\"\n"), @"fraiseql.toml:24: `admin.token`: use a token of at least 32 bytes (e.g. `openssl rand -hex 32`)");
    insta::assert_snapshot!(err(&format!("listen = \"127.0.0.1:9200\"\ntoken = \"{}\"\n", "s".repeat(40))), @"fraiseql.toml:24: `admin.token`: is the same as [auth] secret: anyone who can sign a tenant's token could manage every tenant; use a token of its own");
    insta::assert_snapshot!(err("listen = \"9200\"\n"), @r#"fraiseql.toml:23: `admin.listen`: "9200" is not host:port (e.g. "127.0.0.1:9200")"#);
}
