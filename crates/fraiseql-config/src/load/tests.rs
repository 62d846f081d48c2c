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
    assert_eq!(
        c.observers.nats_url.as_deref(),
        Some("nats://127.0.0.1:4222")
    );
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
