//! Archives from someone who can write where they are kept: forged manifests, dumps that run
//! SQL beyond the tenant, `row_level` outbox rows of another tenant.

use std::path::{Path, PathBuf};

use fraiseql::ops::provision;
use fraiseql::ops::transfer::{self, TransferError};

use super::{backup_acme, progress, restore_acme, scratch_dir, Scratch};
use crate::harness::{world, world_keyed, TEST_ARCHIVE_KEY};

/// An archive taken apart: its manifest and its sections by name.
struct Parts {
    manifest: transfer::Manifest,
    sections: Vec<(String, Vec<u8>)>,
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

async fn take_apart(path: &Path) -> Parts {
    let raw = std::fs::read(path).expect("archive");
    let mut r = tokio::io::BufReader::new(std::io::Cursor::new(raw.clone()));
    let h = transfer::decode_header(&mut r).await.expect("header");
    let mut at = h.data_at as usize;
    let mut sections = Vec::new();
    for s in &h.manifest.sections {
        let n = s.bytes as usize;
        sections.push((s.name.clone(), raw[at..at + n].to_vec()));
        at += n;
    }
    Parts {
        manifest: h.manifest,
        sections,
    }
}

/// Writes `p` to `out` with every section's length and SHA-256 recomputed (what anyone who can
/// write the file can do), sealed with `key` (what only a holder of the key can do) or with the
/// original seal line kept (`seal`).
fn put_together(p: &Parts, out: &Path, key: Option<&str>, seal: Option<&[u8]>) {
    let mut m = p.manifest.clone();
    m.sections = p
        .sections
        .iter()
        .map(|(n, b)| transfer::Section {
            name: n.clone(),
            bytes: b.len() as u64,
            sha256: sha256_hex(b),
        })
        .collect();
    let k = key.map(|k| transfer::ArchiveKey::new(k.as_bytes()));
    let mut bytes = transfer::encode_header(&m, k.as_ref()).expect("header");
    if let Some(line) = seal {
        // The first two lines, then the seal line of another archive.
        let two = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(1)
            .map(|(i, _)| i + 1)
            .expect("two lines");
        bytes.truncate(two);
        bytes.extend_from_slice(line);
    }
    for (_, b) in &p.sections {
        bytes.extend_from_slice(b);
    }
    std::fs::write(out, bytes).expect("write");
}

/// The seal line (third line) of the archive at `path`.
fn seal_line(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).expect("archive");
    let ends: Vec<usize> = raw
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .take(3)
        .collect();
    raw[ends[1] + 1..=ends[2]].to_vec()
}

fn dir(name: &str) -> (PathBuf, Scratch) {
    let d = scratch_dir(name);
    (d.clone(), Scratch(d))
}

/// A manifest changed by hand (the tier, here) with the checksums recomputed and the seal line
/// kept: refused as altered, naming `--insecure-unsigned`; nothing is restored.
#[tokio::test]
async fn a_forged_manifest_is_refused() {
    let a = world("database_per_tenant").await;
    a.create_tenant("acme").await.expect("tenant");
    let (d, _keep) = dir("forged");
    let file = d.join("acme.fraiseql-tenant");
    backup_acme(&a, &file).await;
    let mut p = take_apart(&file).await;
    p.manifest.tenant.tier = "enterprise".to_owned();
    let forged = d.join("forged.fraiseql-tenant");
    put_together(&p, &forged, None, Some(&seal_line(&file)));
    let w = world("database_per_tenant").await;
    let r = restore_acme(&w, &forged, None).await;
    match r {
        Err(e @ TransferError::Unauthenticated { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("it was altered after it was signed")
                    && text.contains("--insecure-unsigned"),
                "{text}"
            );
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(r) => panic!("a forged archive was restored: tier {}", r.record.tier),
    }
    assert!(provision::list(&w.config).await.expect("list").is_empty());
}

/// The key is what an archive is checked with: without one a backup is refused (naming the
/// setting) unless `insecure_unsigned`; an archive of another key, an unsigned one and a
/// version 1 one are refused unless `insecure_unsigned`, which restores them with a note.
#[tokio::test]
async fn archives_are_authenticated_with_the_archive_key() {
    let a = world("row_level").await;
    a.create_tenant("acme").await.expect("tenant");
    let (d, _keep) = dir("keys");
    let signed = d.join("signed.fraiseql-tenant");
    backup_acme(&a, &signed).await;

    let other = world_keyed("row_level", Some("another key, 32 bytes or more......"), "").await;
    match restore_acme(&other, &signed, None).await {
        Err(e @ TransferError::Unauthenticated { .. }) => {
            assert!(e.to_string().contains("made with another key"), "{e}")
        }
        r => panic!("an archive of another key: {r:?}"),
    }

    let keyless = world_keyed("row_level", None, "").await;
    keyless.create_tenant("acme").await.expect("tenant");
    let unsigned = d.join("unsigned.fraiseql-tenant");
    match transfer::backup(
        &keyless.config,
        "acme",
        &unsigned,
        &Default::default(),
        &progress,
    )
    .await
    {
        Err(e @ TransferError::NoArchiveKey) => {
            let text = e.to_string();
            assert!(
                text.contains("[transfer] archive_key") && text.contains("--insecure-unsigned"),
                "{text}"
            );
        }
        r => panic!("a backup without a key: {r:?}"),
    }
    let insecure = transfer::BackupOptions {
        insecure_unsigned: true,
        ..Default::default()
    };
    transfer::backup(&keyless.config, "acme", &unsigned, &insecure, &progress)
        .await
        .expect("an unsigned backup");
    let w = world("row_level").await;
    match restore_acme(&w, &unsigned, None).await {
        Err(e @ TransferError::Unauthenticated { .. }) => {
            assert!(e.to_string().contains("it is not signed"), "{e}")
        }
        r => panic!("an unsigned archive: {r:?}"),
    }
    // A version 1 archive (no seal line): the unsigned one, rewritten as before.
    let p = take_apart(&unsigned).await;
    let mut m = p.manifest.clone();
    m.version = 1;
    let mut v1 = format!(
        "{} 1\n{}\n",
        transfer::MAGIC,
        serde_json::to_string(&m).expect("json")
    )
    .into_bytes();
    for (_, b) in &p.sections {
        v1.extend_from_slice(b);
    }
    let old = d.join("v1.fraiseql-tenant");
    std::fs::write(&old, v1).expect("write");
    match restore_acme(&w, &old, None).await {
        Err(e @ TransferError::Unauthenticated { .. }) => {
            assert!(e.to_string().contains("version 1 archive"), "{e}")
        }
        r => panic!("a version 1 archive: {r:?}"),
    }
    let trusting = transfer::RestoreOptions {
        insecure_unsigned: true,
        ..Default::default()
    };
    let r = transfer::restore(&w.config, "acme", &old, None, &trusting, &progress)
        .await
        .expect("restored with --insecure-unsigned");
    assert!(
        r.notes.iter().any(|n| n.contains("origin was not checked")),
        "{:?}",
        r.notes
    );
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
    backup_acme(&a, &file).await;
    let w = world(strategy).await;
    let r = restore_acme(&w, &file, None).await;
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
    // PostgreSQL's refusal: the restore runs as a role of its own, which cannot do that.
    let e = r.expect_err("refused");
    assert!(
        e.to_string()
            .contains("must be superuser to create superusers"),
        "{strategy}: {e}"
    );
    // Nothing of it is left: no tenant registered, no database or schema of it.
    assert!(provision::list(&w.config).await.expect("list").is_empty());
    let like = format!("{}%", w.prefix);
    let host = provision::connect(&w.host.url, None, None)
        .await
        .expect("host");
    let left: i64 = host
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE $1) + (SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1)",
            &[&like],
        )
        .await
        .expect("leftovers")
        .get(0);
    assert_eq!(left, 0, "{strategy}: left on the target");
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
    backup_acme(&a, &file).await;
    let w = world("database_per_tenant").await;
    let r = restore_acme(&w, &file, None).await;
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
    backup_acme(&a, &file).await;
    let mut p = take_apart(&file).await;
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
    // Signed with the key: someone who holds it.
    put_together(&p, &forged, Some(TEST_ARCHIVE_KEY), None);

    let w = world("row_level").await;
    let victim = w.create_tenant("victim").await.expect("victim");
    let r = restore_acme(&w, &forged, None).await;
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
