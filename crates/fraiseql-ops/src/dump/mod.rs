//! The data of a tenant with tables of its own (`database_per_tenant`, `schema_per_tenant`):
//! out with `pg_dump --format=custom` of its database or schema, from the backup's snapshot; in
//! with `pg_restore --single-transaction`, then checked table by table against the manifest.
//! `scope` is the tenant's schema when only that schema is its own.

use std::collections::BTreeMap;
use std::path::Path;

use fraiseql_config::Config;
use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio_postgres::Client;

use crate::archive::read::Archive;
use crate::archive::write::{section_file, Contents};
use crate::archive::{Manifest, DUMP_SECTION};
use crate::catalog::{table_counts, unsent_outbox};
use crate::error::{db, TransferError};
use crate::home::{migrate_tenant, Made};
use crate::scratch::Scratch;
use crate::server::connect_to;
use crate::tools::{conninfo_value, env_for, exact_pattern, run_tool, tool_version};

/// `pg_dump` of the tenant's database or schema, from the snapshot `c` holds.
pub(crate) async fn backup(
    c: &Client,
    rec: &TenantRecord,
    scope: Option<&str>,
    dir: &Path,
    scratch: &mut Scratch,
) -> Result<Contents, TransferError> {
    let version = tool_version("pg_dump").await?;
    let snapshot: String = c
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(db("snapshot"))?
        .get(0);
    let tables = table_counts(c, scope).await?;
    let outbox = unsent_outbox(c, &rec.schema, None).await?;
    let path = scratch.file(dir, "dump");
    let mut args = vec![
        "--format=custom".to_owned(),
        "--no-owner".to_owned(),
        "--no-privileges".to_owned(),
        format!("--snapshot={snapshot}"),
        format!("--file={}", path.display()),
    ];
    if let Some(s) = scope {
        args.push("--strict-names".to_owned());
        args.push(format!("--schema={}", exact_pattern(s)));
    }
    args.push(format!("--dbname=dbname={}", conninfo_value(&rec.database)));
    run_tool("pg_dump", &args, &env_for(&rec.server, &rec.database)?).await?;
    Ok(Contents {
        tables,
        outbox_unsent: outbox,
        sections: vec![section_file(path, DUMP_SECTION).await?],
        tool: Some(version),
    })
}

/// Restores the archive's dump into `rec`'s home (provisioned without its tables), renames the
/// archive's schema to the tenant's (`made.foreign_schema`), checks the row counts, applies
/// pending migrations and grants, and makes the unsent events due now.
pub(crate) async fn restore(
    config: &Config,
    rec: &TenantRecord,
    archive: &Archive,
    scope: Option<&str>,
    made: &mut Made,
    notes: &mut Vec<String>,
) -> Result<(), TransferError> {
    let scratch_dir = std::env::temp_dir();
    let mut scratch = Scratch::default();
    let dump = scratch.file(&scratch_dir, "restore");
    archive.extract(DUMP_SECTION, &dump).await?;
    made.loaded = true;
    let args = vec![
        "--no-owner".to_owned(),
        "--no-privileges".to_owned(),
        "--exit-on-error".to_owned(),
        "--single-transaction".to_owned(),
        format!("--dbname=dbname={}", conninfo_value(&rec.database)),
        dump.display().to_string(),
    ];
    run_tool("pg_restore", &args, &env_for(&rec.server, &rec.database)?).await?;
    drop(scratch);
    let c = connect_to(&rec.server, Some(&rec.database)).await?;
    if let Some(from) = made.foreign_schema.clone() {
        c.batch_execute(&format!(
            "ALTER SCHEMA {} RENAME TO {}",
            quote_ident(&from),
            quote_ident(&rec.schema)
        ))
        .await
        .map_err(db("renaming the restored schema"))?;
        made.foreign_schema = None;
        notes.push(format!(
            "schema {from} of the archive was restored as {}",
            rec.schema
        ));
    }
    verify(&c, rec, scope, &archive.manifest).await?;
    migrate_tenant(config, rec).await?;
    // Unsent events are due now at their new home (not after a backoff from before).
    c.batch_execute(&format!(
        "UPDATE {}.fraiseql_outbox SET next_attempt_at = now() WHERE sent_at IS NULL",
        quote_ident(&rec.schema)
    ))
    .await
    .map_err(db("outbox"))
}

/// Row counts of the restored database or schema against the manifest.
async fn verify(
    c: &Client,
    rec: &TenantRecord,
    scope: Option<&str>,
    m: &Manifest,
) -> Result<(), TransferError> {
    let here: BTreeMap<(String, String), u64> = table_counts(c, scope)
        .await?
        .into_iter()
        .map(|t| ((t.schema, t.name), t.rows))
        .collect();
    let mut wrong = Vec::new();
    for t in &m.tables {
        // A schema of its own was restored under the tenant's schema name.
        let schema = if scope.is_some() {
            rec.schema.clone()
        } else {
            t.schema.clone()
        };
        match here.get(&(schema.clone(), t.name.clone())) {
            Some(n) if *n == t.rows => {}
            Some(n) => wrong.push(format!(
                "{schema}.{}: {n} rows, the archive has {}",
                t.name, t.rows
            )),
            None => wrong.push(format!("{schema}.{} is missing", t.name)),
        }
    }
    let unsent = unsent_outbox(c, &rec.schema, None).await?;
    if unsent != m.outbox_unsent {
        wrong.push(format!(
            "fraiseql_outbox: {unsent} unsent events, the archive has {}",
            m.outbox_unsent
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(TransferError::Verify(wrong.join("; ")))
    }
}
