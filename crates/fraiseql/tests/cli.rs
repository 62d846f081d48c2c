//! The `fraiseql` binary: `config validate`, `migrate`, and `run` serving until SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Command;

use fraiseql::testing::{url_for, TestDatabase};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/saas")
}

fn fraiseql(db: &TestDatabase, config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fraiseql"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TENANT_DB_URL", &db.url)
        .env("SHARED_DB_URL", &db.url)
        .env("PORT", "0")
        .output()
        .expect("run fraiseql")
}

#[tokio::test]
async fn config_validate_passes_on_the_example() {
    let db = TestDatabase::migrated(&example().join("migrations/tenant"))
        .await
        .expect("db");
    let out = fraiseql(
        &db,
        &example().join("fraiseql.toml"),
        &["config", "validate"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("✓ database `tenant` answers and matches the schema"),
        "{stdout}"
    );
}

#[tokio::test]
async fn config_validate_names_a_misspelt_key_and_its_line() {
    let db = TestDatabase::migrated(&example().join("migrations/tenant"))
        .await
        .expect("db");
    let dir = tempdir();
    let text = std::fs::read_to_string(example().join("fraiseql.toml")).expect("read");
    let text = text.replace("pool_max = 20", "pool_maxx = 20");
    let line = text
        .lines()
        .position(|l| l.starts_with("pool_maxx"))
        .expect("line")
        + 1;
    let config = dir.join("fraiseql.toml");
    std::fs::write(&config, text).expect("write");
    let out = fraiseql(&db, &config, &["config", "validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "fraiseql.toml:{line}: `databases.tenant.pool_maxx`: unknown field `pool_maxx`"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn config_validate_reports_schema_that_does_not_match_the_database() {
    let db = TestDatabase::migrated(&example().join("migrations/tenant"))
        .await
        .expect("db");
    let dir = tempdir();
    let sdl = std::fs::read_to_string(example().join("schema.graphql"))
        .expect("read")
        .replace("@view(name: \"v_task\")", "@view(name: \"v_tasks\")")
        .replace(
            "t.fk_project = {parent}.pk_project",
            "t.fk_project = {parent}.pk_projekt",
        );
    std::fs::write(dir.join("schema.graphql"), sdl).expect("write");
    let text = std::fs::read_to_string(example().join("fraiseql.toml")).expect("read");
    std::fs::write(dir.join("fraiseql.toml"), text).expect("write");
    let out = fraiseql(&db, &dir.join("fraiseql.toml"), &["config", "validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Task: view \"v_tasks\" does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Project.taskCount: @sql expression does not run"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let admin = tokio_postgres::connect(&fraiseql::testing::admin_url(), tokio_postgres::NoTls)
        .await
        .expect("admin");
    tokio::spawn(admin.1);
    let name = format!("fraiseql_cli_migrate_{}", std::process::id());
    admin
        .0
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .expect("drop");
    admin
        .0
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create");
    let url = url_for(&name);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_fraiseql"))
            .args(["--config"])
            .arg(example().join("fraiseql.toml"))
            .arg("migrate")
            .env("TENANT_DB_URL", &url)
            .env("SHARED_DB_URL", &url)
            .output()
            .expect("run")
    };
    let first = run();
    let second = run();
    admin
        .0
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop");
    let first_out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{first_out}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        first_out
            .contains("database `tenant`: applied 0001_tables.sql, 0002_views.sql, 0003_rls.sql"),
        "{first_out}"
    );
    let second_out = String::from_utf8_lossy(&second.stdout);
    assert!(
        second_out.contains("database `tenant`: up to date"),
        "{second_out}"
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
