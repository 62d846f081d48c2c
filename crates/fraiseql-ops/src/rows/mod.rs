//! The data of a tenant that shares tables (`row_level`): its rows of every table with a
//! `tenant_id` column, in foreign-key order, and its unsent outbox rows, as `COPY` text. Out from
//! the backup's snapshot; in (`load.rs`) in one transaction; found, re-counted and deleted by
//! tenant id.

mod load;

pub(crate) use load::load;

use std::path::Path;

use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::archive::write::{copy_to_file, section_file, Contents};
use crate::archive::{rows_section, ArchivedTable, Manifest, OUTBOX_COLUMNS, OUTBOX_SECTION};
use crate::catalog::{has_outbox, ordered, tenant_tables, unsent_outbox};
use crate::error::{db, TransferError};
use crate::scratch::{create_private, Scratch};

/// The tenant's rows of every table with `tenant_id`, parents first, and its unsent outbox
/// rows, from the snapshot `c` holds.
pub(crate) async fn backup(
    c: &Client,
    rec: &TenantRecord,
    dir: &Path,
    scratch: &mut Scratch,
) -> Result<Contents, TransferError> {
    c.execute(
        "SELECT set_config('fraiseql.transfer_tenant', $1, true), set_config('fraiseql.transfer_key', $2, true)",
        &[&rec.id.to_string(), &rec.key],
    )
    .await
    .map_err(db("snapshot"))?;
    let (tables, fks) = tenant_tables(c, &rec.schema).await?;
    let tables = ordered(tables, &fks)?;
    let mut archived = Vec::new();
    let mut sections = Vec::new();
    for t in &tables {
        let sql = format!(
            "COPY (SELECT {} FROM {} WHERE tenant_id = current_setting('fraiseql.transfer_tenant')::{}) TO STDOUT",
            column_list(&t.columns),
            t.qualified(),
            t.tenant_type
        );
        let (rows, file) =
            copy_to_file(c, &sql, rows_section(&t.schema, &t.name), dir, scratch).await?;
        archived.push(ArchivedTable {
            schema: t.schema.clone(),
            name: t.name.clone(),
            rows,
            columns: t.columns.clone(),
            tenant_type: Some(t.tenant_type.clone()),
        });
        sections.push(file);
    }
    let has_unsent = unsent_outbox(c, &rec.schema, Some(&rec.key)).await?;
    let outbox_sql = format!(
        "COPY (SELECT {} FROM {}.fraiseql_outbox WHERE tenant_key = current_setting('fraiseql.transfer_key') AND sent_at IS NULL ORDER BY created_at) TO STDOUT",
        OUTBOX_COLUMNS.join(", "),
        quote_ident(&rec.schema)
    );
    let (unsent, file) = if has_outbox(c, &rec.schema).await? {
        copy_to_file(c, &outbox_sql, OUTBOX_SECTION.to_owned(), dir, scratch).await?
    } else {
        let path = scratch.file(dir, "outbox");
        drop(create_private(&path).await?);
        (0, section_file(path, OUTBOX_SECTION).await?)
    };
    debug_assert_eq!(unsent, has_unsent);
    sections.push(file);
    Ok(Contents {
        tables: archived,
        outbox_unsent: unsent,
        sections,
        tool: None,
    })
}

/// Quoted column names, comma-separated.
pub(crate) fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What of tenant `rec.id` (and of `key`'s unsent events) is in `host`'s tables: a description,
/// or `None`.
pub(crate) async fn occupied(
    host: &Client,
    rec: &TenantRecord,
    key: &str,
) -> Result<Option<String>, TransferError> {
    let (tables, _) = tenant_tables(host, &rec.schema).await?;
    let id = rec.id.to_string();
    let mut found = Vec::new();
    for t in &tables {
        let any: bool = host
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE tenant_id = ($1::text)::{})",
                    t.qualified(),
                    t.tenant_type
                ),
                &[&id],
            )
            .await
            .map_err(db("target"))?
            .get(0);
        if any {
            found.push(t.name.clone());
        }
    }
    if unsent_outbox(host, &rec.schema, Some(key)).await? > 0 {
        found.push("fraiseql_outbox".to_owned());
    }
    Ok((!found.is_empty()).then(|| {
        format!(
            "rows of tenant id {} in database {} ({})",
            rec.id,
            rec.database,
            found.join(", ")
        )
    }))
}

/// Deletes tenant `id`'s rows from every tenant table of `schema` (children first) and its
/// outbox rows, in one transaction.
pub(crate) async fn delete(
    c: &Client,
    schema: &str,
    id: Uuid,
    key: &str,
) -> Result<(), TransferError> {
    let (tables, fks) = tenant_tables(c, schema).await?;
    let tables = ordered(tables, &fks)?;
    c.batch_execute("BEGIN")
        .await
        .map_err(db("deleting rows"))?;
    let id = id.to_string();
    let result = async {
        for t in tables.iter().rev() {
            c.execute(
                &format!(
                    "DELETE FROM {} WHERE tenant_id = ($1::text)::{}",
                    t.qualified(),
                    t.tenant_type
                ),
                &[&id],
            )
            .await
            .map_err(db("deleting rows"))?;
        }
        if has_outbox(c, schema).await? {
            c.execute(
                &format!(
                    "DELETE FROM {}.fraiseql_outbox WHERE tenant_key = $1",
                    quote_ident(schema)
                ),
                &[&key],
            )
            .await
            .map_err(db("deleting outbox rows"))?;
        }
        Ok::<(), TransferError>(())
    }
    .await;
    match result {
        Ok(()) => c.batch_execute("COMMIT").await.map_err(db("deleting rows")),
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// The tenant's row counts at the source still equal the archive's (a write that slipped past
/// the drain would be lost).
pub(crate) async fn recount(
    c: &Client,
    rec: &TenantRecord,
    m: &Manifest,
) -> Result<(), TransferError> {
    let id = rec.id.to_string();
    let mut wrong = Vec::new();
    for t in &m.tables {
        let n: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{} WHERE tenant_id = ($1::text)::{}",
                    quote_ident(&t.schema),
                    quote_ident(&t.name),
                    t.tenant_type.as_deref().unwrap_or("uuid")
                ),
                &[&id],
            )
            .await
            .map_err(db("re-counting"))?
            .get(0);
        if n.max(0) as u64 != t.rows {
            wrong.push(format!("{}: {n} rows now, {} copied", t.name, t.rows));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(TransferError::Verify(format!(
            "the tenant's data changed at the source during the move ({})",
            wrong.join("; ")
        )))
    }
}
