//! The data of a tenant with tables of its own (`database_per_tenant`, `schema_per_tenant`):
//! out with `pg_dump --format=custom` of its database or schema, from the backup's snapshot
//! (into a file created private first); in with `pg_restore --single-transaction`, confined to
//! the tenant's place (`toc.rs`: what the dump may hold; `confine.rs`: the role it runs as),
//! then checked table by table against the manifest. `scope` is the tenant's schema when only
//! that schema is its own.

mod confine;
mod toc;

use std::collections::BTreeMap;

use fraiseql_config::Config;
use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

use crate::archive::read::Archive;
use crate::archive::write::{section_file, Contents};
use crate::archive::{Manifest, DUMP_SECTION};
use crate::catalog::{has_outbox, table_counts, unsent_outbox};
use crate::error::{archive_error, db, io, TransferError};
use crate::home::{migrate_tenant, Made};
use crate::scratch::{create_private, Scratch};
use crate::server::connect_to;
use crate::tools::{conninfo_value, env_for, exact_pattern, run_tool, tool_version};

/// `pg_dump` of the tenant's database or schema, from the snapshot `c` holds.
pub(crate) async fn backup(
    c: &Client,
    rec: &TenantRecord,
    scope: Option<&str>,
    scratch: &Scratch,
) -> Result<Contents, TransferError> {
    let version = tool_version("pg_dump").await?;
    let snapshot: String = c
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(db("snapshot"))?
        .get(0);
    let tables = table_counts(c, scope).await?;
    let outbox = unsent_outbox(c, &rec.schema, None).await?;
    // pg_dump writes into the file as created here (0600), not one of its own (umask).
    let path = scratch.file("dump");
    drop(create_private(&path).await?);
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

/// Restores the archive's dump into `rec`'s home (provisioned without its tables), confined to
/// it (`toc.rs`, `confine.rs`), renames the archive's schema to the tenant's
/// (`made.foreign_schema`), checks the row counts and that every unsent event is the tenant's,
/// applies pending migrations and grants, and makes the unsent events due now.
pub(crate) async fn restore(
    config: &Config,
    rec: &TenantRecord,
    archive: &Archive,
    scope: Option<&str>,
    made: &mut Made,
    notes: &mut Vec<String>,
) -> Result<(), TransferError> {
    let archived_schema = archive.manifest.tenant.schema.clone();
    let place = match scope {
        None => confine::Confined::Database,
        Some(_) => confine::Confined::Schema(&archived_schema),
    };
    let scratch = match &archive.scratch_in {
        Some(dir) => Scratch::new_in(dir)?,
        None => Scratch::in_temp()?,
    };
    let dump = scratch.file("restore.dump");
    archive.extract(DUMP_SECTION, &dump).await?;
    let env = env_for(&rec.server, &rec.database)?;
    let list = run_tool(
        "pg_restore",
        &["--list".to_owned(), dump.display().to_string()],
        &env,
    )
    .await?;
    let toc_place = match &place {
        confine::Confined::Database => toc::Place::Database,
        confine::Confined::Schema(s) => toc::Place::Schema(s),
    };
    let keep = toc::check(&list, toc_place).map_err(|e| archive_error(&archive.path, e))?;
    let use_list = scratch.file("restore.list");
    let mut f = create_private(&use_list).await?;
    f.write_all(keep.as_bytes()).await.map_err(io(&use_list))?;
    f.flush().await.map_err(io(&use_list))?;
    drop(f);

    let role = confine::RestoreRole::plan(rec);
    made.restore_role = Some(role.name.clone());
    made.loaded = true;
    confine::create(rec, &role, &place).await?;
    let args = vec![
        "--no-owner".to_owned(),
        "--no-privileges".to_owned(),
        "--exit-on-error".to_owned(),
        "--single-transaction".to_owned(),
        format!("--use-list={}", use_list.display()),
        format!("--dbname=dbname={}", conninfo_value(&rec.database)),
        dump.display().to_string(),
    ];
    // As the restore role: whatever SQL the dump holds runs with its rights only.
    let mut as_role: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k != "PGUSER" && k != "PGPASSWORD")
        .collect();
    as_role.push(("PGUSER".to_owned(), role.name.clone()));
    as_role.push(("PGPASSWORD".to_owned(), role.password.clone()));
    run_tool("pg_restore", &args, &as_role).await?;
    drop(scratch);
    confine::hand_over(rec, &role, &place, &archive.path).await?;
    if let Some(left) = confine::drop_role(rec, &role.name).await {
        notes.push(format!("the restore's own role was not dropped: {left}"));
    } else {
        made.restore_role = None;
    }

    let c = connect_to(&rec.server, Some(&rec.database)).await?;
    c.batch_execute("SET search_path = pg_catalog, pg_temp")
        .await
        .map_err(db("session"))?;
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
    foreign_events(&c, rec, &archive.path).await?;
    migrate_tenant(config, rec).await?;
    // Unsent events are due now at their new home (not after a backoff from before). As the
    // tenant: the table's definition came from the archive.
    confine::as_tenant(rec)
        .await?
        .batch_execute(&format!(
            "UPDATE {}.fraiseql_outbox SET next_attempt_at = now() WHERE sent_at IS NULL",
            quote_ident(&rec.schema)
        ))
        .await
        .map_err(db("outbox"))
}

/// Drops the role a restore of `rec` ran as (after a failure or an interrupt); what could not
/// be dropped.
pub(crate) async fn drop_restore_role(rec: &TenantRecord, role: &str) -> Option<String> {
    confine::drop_role(rec, role).await
}

/// The name of the role a restore into `rec`'s place runs as.
pub(crate) fn restore_role_name(rec: &TenantRecord) -> String {
    confine::name_for(rec)
}

/// Every unsent event of the restored outbox must be the tenant's (by its key, and by the
/// tenant its payload names): the relay publishes them in the tenant's name.
async fn foreign_events(
    c: &Client,
    rec: &TenantRecord,
    archive: &std::path::Path,
) -> Result<(), TransferError> {
    if !has_outbox(c, &rec.schema).await? {
        return Ok(());
    }
    let foreign: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.fraiseql_outbox WHERE sent_at IS NULL AND (tenant_key IS DISTINCT FROM $1 OR (jsonb_typeof(payload) = 'object' AND payload ? 'tenant_id' AND payload->>'tenant_id' IS DISTINCT FROM $1))",
                quote_ident(&rec.schema)
            ),
            &[&rec.key],
        )
        .await
        .map_err(db("outbox"))?
        .get(0);
    if foreign > 0 {
        return Err(archive_error(
            archive,
            format!(
                "the archive's outbox holds {foreign} unsent event(s) of another tenant (not `{}`): refused, nothing was restored",
                rec.key
            ),
        ));
    }
    Ok(())
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
    m.verdict(wrong, unsent)
}
