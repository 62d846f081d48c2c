//! Archives from someone who can write where they are kept: forged manifests, dumps that run
//! SQL beyond the tenant, `row_level` outbox rows of another tenant.

use std::path::{Path, PathBuf};

use fraiseql::ops::transfer::{self, TransferError};
use serde_json::Value;

use super::{progress, scratch_dir, Scratch};
use crate::harness::world;

/// An archive taken apart: its header line, its manifest, its sections by name.
struct Parts {
    header: String,
    manifest: Value,
    sections: Vec<(String, Vec<u8>)>,
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn take_apart(path: &Path) -> Parts {
    let raw = std::fs::read(path).expect("archive");
    let first = raw.iter().position(|b| *b == b'\n').expect("header line");
    let second = first
        + 1
        + raw[first + 1..]
            .iter()
            .position(|b| *b == b'\n')
            .expect("manifest");
    let header = String::from_utf8(raw[..first].to_vec()).expect("header");
    let manifest: Value = serde_json::from_slice(&raw[first + 1..second]).expect("manifest");
    let mut at = second + 1;
    let mut sections = Vec::new();
    for s in manifest["sections"].as_array().expect("sections") {
        let n = s["bytes"].as_u64().expect("bytes") as usize;
        sections.push((
            s["name"].as_str().expect("name").to_owned(),
            raw[at..at + n].to_vec(),
        ));
        at += n;
    }
    Parts {
        header,
        manifest,
        sections,
    }
}

/// Writes `p` to `out` with every section's length and SHA-256 recomputed (what anyone who can
/// write the file can do).
fn put_together(p: &Parts, out: &Path) {
    let mut m = p.manifest.clone();
    m["sections"] = Value::Array(
        p.sections
            .iter()
            .map(|(n, b)| serde_json::json!({ "name": n, "bytes": b.len(), "sha256": sha256_hex(b) }))
            .collect(),
    );
    let mut out_bytes = format!("{}\n{}\n", p.header, m).into_bytes();
    for (_, b) in &p.sections {
        out_bytes.extend_from_slice(b);
    }
    std::fs::write(out, out_bytes).expect("write");
}

fn dir(name: &str) -> (PathBuf, Scratch) {
    let d = scratch_dir(name);
    (d.clone(), Scratch(d))
}

/// A manifest changed by hand (the tier, here) with the checksums recomputed: refused.
#[tokio::test]
async fn a_forged_manifest_is_refused() {
    let a = world("database_per_tenant").await;
    a.create_tenant("acme").await.expect("tenant");
    let (d, _keep) = dir("forged");
    let file = d.join("acme.fraiseql-tenant");
    transfer::backup(&a.config, "acme", &file, &progress)
        .await
        .expect("backup");
    let mut p = take_apart(&file);
    p.manifest["tenant"]["tier"] = Value::from("enterprise");
    let forged = d.join("forged.fraiseql-tenant");
    put_together(&p, &forged);
    let w = world("database_per_tenant").await;
    let r = transfer::restore(&w.config, "acme", &forged, None, false, &progress).await;
    match r {
        Err(e) => assert!(e.to_string().contains("altered"), "{e}"),
        Ok(r) => panic!("a forged archive was restored: tier {}", r.record.tier),
    }
}

/// Under the strategies whose archives hold a `pg_dump`.
mod an_archive_cannot_run_sql_as_the_administrator {
    #[tokio::test]
    async fn database_per_tenant() {
        super::an_archive_cannot_run_sql_as_the_administrator("database_per_tenant").await
    }
    #[tokio::test]
    async fn schema_per_tenant() {
        super::an_archive_cannot_run_sql_as_the_administrator("schema_per_tenant").await
    }
}

/// An archive whose dump holds a table with a CHECK calling a function that creates a
/// superuser role when it runs anywhere but at the source: the restore runs that function (it
/// checks the rows it loads), so it must not run with the administrator's rights.
async fn an_archive_cannot_run_sql_as_the_administrator(strategy: &str) {
    let a = world(strategy).await;
    let rec = a.create_tenant("acme").await.expect("tenant");
    let evil = format!("{}evil", a.prefix);
    let admin = a.admin_client(&rec).await.expect("admin");
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION fn_trap(x int) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
               IF current_database() <> '{db}' AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{evil}') THEN
                 EXECUTE 'CREATE ROLE {evil} SUPERUSER';
               END IF;
               RETURN true;
             END $$;
             CREATE TABLE tb_trap (x int CHECK (fn_trap(x)));
             INSERT INTO tb_trap VALUES (1);",
            db = rec.database
        ))
        .await
        .expect("trap");
    let (d, _keep) = dir("trap");
    let file = d.join("acme.fraiseql-tenant");
    transfer::backup(&a.config, "acme", &file, &progress)
        .await
        .expect("backup");
    let w = world(strategy).await;
    let r = transfer::restore(&w.config, "acme", &file, None, false, &progress).await;
    let made: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&evil],
        )
        .await
        .expect("roles")
        .get(0);
    assert!(
        !made,
        "{strategy}: the archive's SQL created a superuser role ({r:?})"
    );
    let e = r.expect_err("refused");
    assert!(
        e.to_string().contains("permission denied"),
        "{strategy}: {e}"
    );
}

/// A database_per_tenant archive holding an event trigger and an extension (objects that are
/// not the tenant's data): refused before anything is restored, naming the entry.
#[tokio::test]
async fn an_archive_with_objects_beyond_the_tenant_is_refused() {
    let a = world("database_per_tenant").await;
    let rec = a.create_tenant("acme").await.expect("tenant");
    let admin = a.admin_client(&rec).await.expect("admin");
    admin
        .batch_execute(
            "CREATE FUNCTION fn_watch() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
             CREATE EVENT TRIGGER watch_ddl ON ddl_command_end EXECUTE FUNCTION fn_watch();",
        )
        .await
        .expect("event trigger");
    let (d, _keep) = dir("beyond");
    let file = d.join("acme.fraiseql-tenant");
    transfer::backup(&a.config, "acme", &file, &progress)
        .await
        .expect("backup");
    let w = world("database_per_tenant").await;
    let r = transfer::restore(&w.config, "acme", &file, None, false, &progress).await;
    match r {
        Err(e) => assert!(e.to_string().contains("EVENT TRIGGER"), "{e}"),
        Ok(r) => {
            let there = w.admin_client(&r.record).await.expect("restored");
            let n: i64 = there
                .query_one("SELECT count(*) FROM pg_event_trigger", &[])
                .await
                .expect("event triggers")
                .get(0);
            panic!("the archive was restored, with {n} event trigger(s) made by the administrator");
        }
    }
}

/// A row_level archive whose outbox section carries an event of another tenant (`victim`, a
/// tenant of the target): refused, and no event of `victim` appears.
#[tokio::test]
async fn row_level_outbox_rows_of_another_tenant_are_refused() {
    let a = world("row_level").await;
    a.create_tenant("acme").await.expect("tenant");
    let (d, _keep) = dir("outbox");
    let file = d.join("acme.fraiseql-tenant");
    transfer::backup(&a.config, "acme", &file, &progress)
        .await
        .expect("backup");
    let mut p = take_apart(&file);
    let id = uuid::Uuid::new_v4();
    let line = format!(
        "{id}\tvictim\tanalytics.project_created\t{{\"tenant_id\": \"victim\", \"event_id\": \"{id}\"}}\t2026-01-01 00:00:00+00\t0\t2026-01-01 00:00:00+00\t\\N\t\\N\n"
    );
    let outbox = p
        .sections
        .iter_mut()
        .find(|(n, _)| n == "outbox")
        .expect("outbox section");
    outbox.1.extend_from_slice(line.as_bytes());
    let forged = d.join("forged.fraiseql-tenant");
    put_together(&p, &forged);

    let w = world("row_level").await;
    let victim = w.create_tenant("victim").await.expect("victim");
    let r = transfer::restore(&w.config, "acme", &forged, None, false, &progress).await;
    let host = w.admin_client(&victim).await.expect("host");
    let n: i64 = host
        .query_one(
            "SELECT count(*) FROM fraiseql_outbox WHERE tenant_key = 'victim'",
            &[],
        )
        .await
        .expect("outbox")
        .get(0);
    assert_eq!(n, 0, "an event of another tenant was restored ({r:?})");
    let e = r.expect_err("refused");
    assert!(
        matches!(e, TransferError::Archive { .. } | TransferError::Refused(_)),
        "{e}"
    );
    assert!(e.to_string().contains("another tenant"), "{e}");
}
