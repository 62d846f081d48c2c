//! Reads the [`DatabaseModel`] of one schema from PostgreSQL's catalog: four statements, the
//! schema name a bind parameter of each.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::model::{Column, DatabaseModel, ForeignKey, Table};

/// Ordinary and partitioned tables, not partitions (a partition's rows are its parent's).
const TABLES: &str = "c.relkind IN ('r', 'p') AND NOT c.relispartition";

/// The tables of schema `schema`, their columns, unique keys and foreign keys.
pub(crate) async fn read(
    client: &Client,
    schema: &str,
) -> Result<DatabaseModel, tokio_postgres::Error> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let columns = client
        .query(
            &format!(
                "SELECT c.relname::text, a.attname::text, a.attnotnull,
                        format_type(coalesce(nullif(ty.typbasetype, 0), a.atttypid), NULL)
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_type ty ON ty.oid = a.atttypid
                 WHERE n.nspname = $1 AND {TABLES} AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY c.relname, a.attnum"
            ),
            &[&schema],
        )
        .await?;
    for r in columns {
        let table: String = r.get(0);
        let t = tables.entry(table.clone()).or_insert_with(|| Table {
            name: table,
            ..Table::default()
        });
        t.columns.push(Column {
            name: r.get(1),
            not_null: r.get(2),
            pg_type: r.get(3),
        });
    }
    let unique = client
        .query(
            &format!(
                "SELECT c.relname::text, i.indisprimary,
                        array(SELECT a.attname::text
                              FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
                              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.num
                              ORDER BY k.ord)
                 FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND {TABLES} AND i.indisunique
                   AND i.indpred IS NULL AND i.indexprs IS NULL
                 ORDER BY c.relname, i.indexrelid"
            ),
            &[&schema],
        )
        .await?;
    for r in unique {
        let Some(t) = tables.get_mut(&r.get::<_, String>(0)) else {
            continue;
        };
        let cols: Vec<String> = r.get(2);
        if r.get::<_, bool>(1) {
            t.primary_key = cols.clone();
        }
        t.unique.push(cols);
    }
    let fks = client
        .query(
            &format!(
                "SELECT c.relname::text, con.conname::text, pn.nspname::text, pc.relname::text,
                        array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
                              ORDER BY k.ord),
                        array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
                              ORDER BY k.ord)
                 FROM pg_constraint con
                 JOIN pg_class c ON c.oid = con.conrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_class pc ON pc.oid = con.confrelid
                 JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                 WHERE n.nspname = $1 AND {TABLES} AND con.contype = 'f'
                 ORDER BY c.relname, con.conname"
            ),
            &[&schema],
        )
        .await?;
    for r in fks {
        let Some(t) = tables.get_mut(&r.get::<_, String>(0)) else {
            continue;
        };
        t.foreign_keys.push(ForeignKey {
            name: r.get(1),
            ref_schema: r.get(2),
            ref_table: r.get(3),
            columns: r.get(4),
            ref_columns: r.get(5),
        });
    }
    let relations = client
        .query(
            "SELECT c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(DatabaseModel {
        schema: schema.to_owned(),
        tables: tables.into_values().collect(),
        relations,
    })
}
