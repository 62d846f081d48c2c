//! The data of a tenant that shares tables (`row_level`): its rows of every table with a
//! `tenant_id` column, in foreign-key order, and its unsent outbox rows, as `COPY` text, with a
//! checksum of each table's rows. Out from the backup's snapshot; in (`load.rs`) in one
//! transaction; found, checked against the copy and deleted by tenant id.

mod load;

pub(crate) use load::load;

use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::archive::write::{copy_to_file, section_file, Contents};
use crate::archive::{
    rows_section, ArchivedTable, Manifest, COPY_SETTINGS, OUTBOX_COLUMNS, OUTBOX_SECTION,
};
use crate::catalog::{has_outbox, ordered, tenant_tables, unsent_outbox};
use crate::error::{db, TransferError};
use crate::scratch::{create_private, Scratch};

/// The tenant's rows of every table with `tenant_id`, parents first, and its unsent outbox
/// rows, from the snapshot `c` holds.
pub(crate) async fn backup(
    c: &Client,
    rec: &TenantRecord,
    scratch: &Scratch,
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
        let (rows, file) = copy_to_file(c, &sql, rows_section(&t.schema, &t.name), scratch).await?;
        let sum = checksum(c, &t.qualified(), &t.columns, &t.tenant_type, rec.id).await?;
        archived.push(ArchivedTable {
            schema: t.schema.clone(),
            name: t.name.clone(),
            rows,
            columns: t.columns.clone(),
            tenant_type: Some(t.tenant_type.clone()),
            checksum: Some(sum),
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
        copy_to_file(c, &outbox_sql, OUTBOX_SECTION.to_owned(), scratch).await?
    } else {
        let path = scratch.file("outbox");
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

/// Deletes tenant `id`'s rows from every tenant table of `schema` (children first), its outbox
/// rows and its fence, in one transaction.
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
        // A kept copy is fenced: its rows can only go with the fence.
        crate::fence::unfence_sql(c, schema, &id).await?;
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

/// A checksum of tenant `id`'s rows of `table` (`columns` in order): `<rows>:<sum>`, the sum of
/// the first 64 bits of every row's MD5 (of its text, as the session renders it: both ends use
/// `COPY_SETTINGS`). Independent of row order; one changed value changes it.
pub(crate) async fn checksum(
    c: &Client,
    table: &str,
    columns: &[String],
    tenant_type: &str,
    id: Uuid,
) -> Result<String, TransferError> {
    let sql = format!(
        "SELECT count(*)::text || ':' || coalesce(sum(('x' || left(md5(ROW({cols})::text), 16))::bit(64)::bigint::numeric), 0)::text FROM {table} WHERE tenant_id = ($1::text)::{tenant_type}",
        cols = column_list(columns)
    );
    Ok(c.query_one(&sql, &[&id.to_string()])
        .await
        .map_err(db("checksumming rows"))?
        .get(0))
}

/// The tenant's rows at the source, table by table (count and checksum), still equal what was
/// copied: the fence kept every write out, and this checks it.
pub(crate) async fn recheck(
    c: &Client,
    rec: &TenantRecord,
    m: &Manifest,
) -> Result<(), TransferError> {
    c.batch_execute(COPY_SETTINGS)
        .await
        .map_err(db("session"))?;
    let mut wrong = Vec::new();
    for t in &m.tables {
        let table = format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name));
        let tenant_type = t.tenant_type.as_deref().unwrap_or("uuid");
        let now = checksum(c, &table, &t.columns, tenant_type, rec.id).await?;
        if t.checksum.as_deref() != Some(now.as_str()) {
            wrong.push(format!(
                "{}: {} now, {} copied (rows:checksum)",
                t.name,
                now,
                t.checksum.as_deref().unwrap_or("none")
            ));
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
