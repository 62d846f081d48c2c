//! What a move keeps and leaves: under `row_level` no update is lost to a writer that ignores the
//! suspension; scratch files are private to the user.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fraiseql::engine::tenancy::{TenantRecord, TenantStatus};
use fraiseql::ops::provision;
use fraiseql::ops::transfer::{self, TransferError};
use fraiseql_testing::{url_for, TestTenancy};

use super::{arrange_rows, progress, scratch_dir, Scratch};
use crate::harness::{create_org, create_project, world};

/// The tenant tables of the example, with the columns that order their rows.
const TABLES: &[(&str, &str)] = &[
    ("tb_organization", "pk_org"),
    ("tb_member", "pk_member"),
    ("tb_project", "pk_project"),
    ("tb_task", "pk_task"),
    ("tb_tenant_config", "key"),
];

/// Every row of `id` in every table, as JSON text, in key order.
async fn contents(c: &tokio_postgres::Client, id: uuid::Uuid) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (t, k) in TABLES {
        let rows = c
            .query(
                &format!("SELECT to_jsonb(x)::text FROM {t} x WHERE tenant_id = $1 ORDER BY {k}"),
                &[&id],
            )
            .await
            .expect("rows");
        out.push(((*t).to_owned(), rows.iter().map(|r| r.get(0)).collect()));
    }
    out
}

/// A host database for `row_level` tenants beside the world's, on the same server (dropped
/// with the world: it carries its prefix).
async fn second_host(t: &TestTenancy) -> String {
    let name = format!("{}target", t.prefix);
    provision::connect(&t.host.url, None, None)
        .await
        .expect("admin")
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("target database");
    url_for(&name)
}

/// Updates the tenant's projects and tasks as the shared role with its context, as a request
/// that got the tenant's record before the suspension would, until `stop`; returns (updates
/// committed, errors).
async fn write_all_along(
    t: &TestTenancy,
    rec: &TenantRecord,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<String>) {
    let c = t.role_client(rec).await.expect("shared role");
    let (mut ok, mut errors) = (0u64, Vec::new());
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let sql = format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{}', true);
             UPDATE tb_project SET name = 'Project ' || pk_project || ' v{n}';
             UPDATE tb_task SET status = CASE WHEN status = 'done' THEN 'todo' ELSE 'done' END;
             COMMIT",
            rec.id
        );
        match c.batch_execute(&sql).await {
            Ok(()) => ok += 1,
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                errors.push(
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (ok, errors)
}

/// The suspicion, as a test: under `row_level`, a writer that ignores the suspension
/// updates every project and task of the tenant throughout its move. Afterwards every row at
/// the target equals the row at the source (the old copy, kept until drop-copy), content and
/// all: an update is either in both or refused, never only at the source.
#[tokio::test]
async fn row_level_move_loses_no_update() {
    let t = world("row_level").await;
    let rec = t.create_tenant("mover").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("mover");
    let org = create_org(&client, "Mover").await;
    for i in 0..20 {
        create_project(&client, &org, &format!("P{i}")).await;
    }
    arrange_rows(&t, &rec).await;
    let to = second_host(&t).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writing = write_all_along(&t, &rec, stop.clone());
    let moving = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r =
            transfer::move_tenant(&t.config, "mover", &to, &Default::default(), &progress).await;
        stop.store(true, Ordering::Relaxed);
        r
    };
    let ((ok, errors), moved) = tokio::join!(writing, moving);
    let report = moved.unwrap_or_else(|e| panic!("move: {e}"));
    assert_eq!(report.record.status, TenantStatus::Active);
    assert!(
        ok > 10,
        "the writer wrote before the move ({ok} updates, {errors:?})"
    );

    let source = t.admin_client(&rec).await.expect("source");
    let target = t.admin_client(&report.record).await.expect("target");
    let (before, after) = (
        contents(&source, rec.id).await,
        contents(&target, rec.id).await,
    );
    for ((table, src), (_, dst)) in before.iter().zip(&after) {
        assert_eq!(src.len(), dst.len(), "{table}: row counts");
        for (s, d) in src.iter().zip(dst) {
            assert_eq!(
                s, d,
                "{table}: a row at the target differs from the source's (an update was lost)"
            );
        }
    }
}

/// Sets an environment variable for the test (nextest runs each test in a process of its
/// own), removing it when dropped.
struct EnvVar(&'static str);

impl EnvVar {
    fn set(name: &'static str, value: &Path) -> Self {
        std::env::set_var(name, value);
        Self(name)
    }
}

impl Drop for EnvVar {
    fn drop(&mut self) {
        std::env::remove_var(self.0);
    }
}

/// A `pg_dump` that runs the real one, then notes the mode of the file it wrote and of that
/// file's folder in `log`.
fn observing_pg_dump(dir: &Path, log: &Path) {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v pg_dump"])
            .output()
            .expect("pg_dump")
            .stdout,
    )
    .expect("path");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real} --version; fi\n{real} \"$@\"; rc=$?\nfor a in \"$@\"; do case \"$a\" in --file=*) f=\"${{a#--file=}}\";; esac; done\nstat -c '%a' \"$f\" \"$(dirname \"$f\")\" >> {log}\nexit $rc\n",
        real = real.trim(),
        log = log.display()
    );
    let path = dir.join("pg_dump");
    std::fs::write(&path, script).expect("script");
    std::process::Command::new("chmod")
        .args(["755", path.to_str().expect("path")])
        .status()
        .expect("chmod");
}

/// What `pg_dump` writes during a backup (the section it stages) is readable by its owner only,
/// in a folder only its owner can enter.
#[tokio::test]
async fn pg_dump_output_is_private() {
    let t = world("database_per_tenant").await;
    t.create_tenant("acme").await.expect("tenant");
    let d = scratch_dir("private");
    let _keep = Scratch(d.clone());
    let bin = d.join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let log = d.join("modes.log");
    observing_pg_dump(&bin, &log);
    let _bindir = EnvVar::set("FRAISEQL_PG_BINDIR", &bin);
    let out = d.join("acme.fraiseql-tenant");
    transfer::backup(&t.config, "acme", &out, &Default::default(), &progress)
        .await
        .expect("backup");
    let modes = std::fs::read_to_string(&log).expect("pg_dump ran");
    let modes: Vec<&str> = modes.lines().collect();
    assert_eq!(
        modes,
        ["600", "700"],
        "the dump file's mode, then its folder's"
    );
    let left: Vec<_> = std::fs::read_dir(&d)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        left.len(),
        3,
        "bin, modes.log and the archive only: {left:?}"
    );
}

/// Set by [`pause_after_restore`] once the move restored the tenant on the target.
static RESTORED: AtomicBool = AtomicBool::new(false);
/// Set by the test once it aborted the move's task.
static ABORTED: AtomicBool = AtomicBool::new(false);

/// A move's progress lines; after "restored on the target" it waits (a few seconds at most)
/// until the test has aborted the move, as a SIGKILL would, before anything else happens.
fn pause_after_restore(line: &str) {
    progress(line);
    if line.starts_with("restored on the target") {
        RESTORED.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !ABORTED.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A `row_level` move stopped dead after its restore on the target (its task dropped, nothing
/// undone, as a SIGKILL leaves it): the tenant stays suspended and fenced; a new move is refused
/// naming `--resume`; `--resume` clears what the first attempt restored, copies again and
/// switches; every row at the target equals the source's and the tenant is active there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_row_level_move_resumes() {
    let t = world("row_level").await;
    let rec = t.create_tenant("mover").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("mover");
    let org = create_org(&client, "Mover").await;
    for i in 0..5 {
        create_project(&client, &org, &format!("P{i}")).await;
    }
    arrange_rows(&t, &rec).await;
    let to = second_host(&t).await;

    let task = tokio::spawn({
        let (config, to) = (t.config.clone(), to.clone());
        async move {
            transfer::move_tenant(
                &config,
                "mover",
                &to,
                &Default::default(),
                &pause_after_restore,
            )
            .await
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !RESTORED.load(Ordering::SeqCst) {
        assert!(!task.is_finished(), "the move ended before its restore");
        assert!(
            std::time::Instant::now() < deadline,
            "the move never restored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    ABORTED.store(true, Ordering::SeqCst);
    assert!(task.await.expect_err("aborted").is_cancelled());

    let registry = provision::registry_client(&t.config)
        .await
        .expect("registry");
    let now = fraiseql::engine::tenancy::registry::get(&registry, "mover")
        .await
        .expect("registry")
        .expect("mover");
    assert_eq!(now.status, TenantStatus::Suspended, "left suspended");
    assert_eq!(now.database, rec.database, "still at the source");
    let c = t.role_client(&rec).await.expect("shared role");
    let fenced = c
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{}', true); UPDATE tb_project SET name = name; COMMIT",
            rec.id
        ))
        .await
        .expect_err("fenced");
    assert!(
        fenced.to_string().contains("is being moved")
            || format!("{fenced:?}").contains("is being moved"),
        "{fenced:?}"
    );

    match transfer::move_tenant(&t.config, "mover", &to, &Default::default(), &progress).await {
        Err(e @ TransferError::MoveUnfinished { .. }) => {
            assert!(e.to_string().contains("--resume"), "{e}")
        }
        r => panic!("a second move while one is unfinished: {r:?}"),
    }
    let resume = transfer::MoveOptions {
        resume: true,
        ..Default::default()
    };
    let report = transfer::move_tenant(&t.config, "mover", &to, &resume, &progress)
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!(report.record.status, TenantStatus::Active);
    assert_ne!(report.record.database, rec.database, "at the target");
    let source = t.admin_client(&rec).await.expect("source");
    let target = t.admin_client(&report.record).await.expect("target");
    assert_eq!(
        contents(&source, rec.id).await,
        contents(&target, rec.id).await,
        "every row at the target is the source's, once"
    );
    let mut client = t.client().await.expect("client");
    client.set_tenant("mover");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create_project(&client, &org, "After the resumed move").await;
}
