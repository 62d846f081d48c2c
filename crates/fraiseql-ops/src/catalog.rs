//! What the operations read from PostgreSQL's catalog: the tables of a tenant (with a
//! `tenant_id` column, under `row_level`) and the foreign keys between them, the order that
//! restores parents first, the tables of a database or schema with their row counts, and the
//! unsent outbox rows.

use std::collections::{BTreeMap, BTreeSet};

use fraiseql_schema::quote_ident;
use tokio_postgres::Client;

use crate::archive::ArchivedTable;
use crate::error::{db, TransferError};

/// A table with a `tenant_id` column (row_level).
#[derive(Debug, Clone)]
pub(crate) struct TenantTable {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Every column but generated ones, in order.
    pub columns: Vec<String>,
    /// `format_type` of `tenant_id`.
    pub tenant_type: String,
    /// Columns filled from a sequence (serial, identity) and that sequence.
    pub sequences: Vec<(String, String)>,
}

impl TenantTable {
    /// `"schema"."name"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// A foreign key between two tenant tables.
#[derive(Debug, Clone)]
pub(crate) struct ForeignKey {
    /// The referencing table.
    pub child: String,
    /// Its columns.
    pub child_columns: Vec<String>,
    /// The referenced table.
    pub parent: String,
    /// Its columns.
    pub parent_columns: Vec<String>,
}

/// The tables of `schema` with a `tenant_id` column (fraiseql's own excepted), and the foreign
/// keys within `schema`.
pub(crate) async fn tenant_tables(
    c: &Client,
    schema: &str,
) -> Result<(Vec<TenantTable>, Vec<ForeignKey>), TransferError> {
    let rows = c
        .query(
            "SELECT c.relname::text,
                    array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated = ''),
                    max(format_type(a.atttypid, a.atttypmod)) FILTER (WHERE a.attname = 'tenant_id'),
                    array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) IS NOT NULL),
                    array_agg(pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) ORDER BY a.attnum) FILTER (WHERE pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) IS NOT NULL)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND c.relname NOT LIKE 'fraiseql\\_%'
             GROUP BY n.nspname, c.relname
             HAVING bool_or(a.attname = 'tenant_id')
             ORDER BY c.relname",
            &[&schema],
        )
        .await
        .map_err(db("reading the tenant tables"))?;
    let tables = rows
        .iter()
        .map(|r| {
            let seq_cols: Vec<String> = r.get::<_, Option<Vec<String>>>(3).unwrap_or_default();
            let seqs: Vec<String> = r.get::<_, Option<Vec<String>>>(4).unwrap_or_default();
            TenantTable {
                schema: schema.to_owned(),
                name: r.get(0),
                columns: r.get::<_, Option<Vec<String>>>(1).unwrap_or_default(),
                tenant_type: r
                    .get::<_, Option<String>>(2)
                    .unwrap_or_else(|| "uuid".into()),
                sequences: seq_cols.into_iter().zip(seqs).collect(),
            }
        })
        .collect();
    let rows = c
        .query(
            "SELECT cc.relname::text, pc.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)
             FROM pg_constraint con
             JOIN pg_class cc ON cc.oid = con.conrelid
             JOIN pg_class pc ON pc.oid = con.confrelid
             JOIN pg_namespace cn ON cn.oid = cc.relnamespace
             JOIN pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE con.contype = 'f' AND cn.nspname = $1 AND pn.nspname = $1
             ORDER BY con.conname",
            &[&schema],
        )
        .await
        .map_err(db("reading the foreign keys"))?;
    let fks = rows
        .iter()
        .map(|r| ForeignKey {
            child: r.get(0),
            parent: r.get(1),
            child_columns: r.get(2),
            parent_columns: r.get(3),
        })
        .collect();
    Ok((tables, fks))
}

/// The order in which `names` are restored: parents (by `fks`) first.
pub(crate) fn restore_order(
    names: &[String],
    fks: &[ForeignKey],
) -> Result<Vec<String>, TransferError> {
    let edges: Vec<(String, String)> = fks
        .iter()
        .map(|f| (f.parent.clone(), f.child.clone()))
        .collect();
    dependency_order(names, &edges).map_err(TransferError::Refused)
}

/// `tables` in [`restore_order`].
pub(crate) fn ordered(
    tables: Vec<TenantTable>,
    fks: &[ForeignKey],
) -> Result<Vec<TenantTable>, TransferError> {
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let order = restore_order(&names, fks)?;
    let mut by_name: BTreeMap<String, TenantTable> =
        tables.into_iter().map(|t| (t.name.clone(), t)).collect();
    Ok(order
        .into_iter()
        .filter_map(|n| by_name.remove(&n))
        .collect())
}

/// Orders `tables` so that every table comes after the tables it references (`edges` are
/// `(referenced, referencing)`; self-references are ignored). Ties go by name, so the order is
/// stable. A cycle is an error naming its tables.
pub fn dependency_order(
    tables: &[String],
    edges: &[(String, String)],
) -> Result<Vec<String>, String> {
    let known: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
    let mut incoming: BTreeMap<&str, BTreeSet<&str>> =
        known.iter().map(|t| (*t, BTreeSet::new())).collect();
    for (parent, child) in edges {
        if parent == child || !known.contains(parent.as_str()) || !known.contains(child.as_str()) {
            continue;
        }
        if let Some(set) = incoming.get_mut(child.as_str()) {
            set.insert(parent.as_str());
        }
    }
    let mut out = Vec::with_capacity(known.len());
    while !incoming.is_empty() {
        let ready: Vec<&str> = incoming
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(t, _)| *t)
            .collect();
        if ready.is_empty() {
            return Err(format!(
                "the foreign keys between {} form a cycle: no order restores them",
                cycle(incoming).join(", ")
            ));
        }
        for t in ready {
            incoming.remove(t);
            for deps in incoming.values_mut() {
                deps.remove(t);
            }
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

/// The tables of a cycle among `rest` (every table there waits for another): tables that only
/// depend on the cycle are not part of it, so those nothing left depends on are peeled off.
fn cycle<'a>(mut rest: BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<&'a str> {
    loop {
        let sinks: Vec<&str> = rest
            .keys()
            .copied()
            .filter(|t| !rest.values().any(|deps| deps.contains(t)))
            .collect();
        if sinks.is_empty() {
            break;
        }
        for t in sinks {
            rest.remove(t);
        }
    }
    rest.keys().copied().collect()
}

/// The ordinary tables of a database (every non-system schema) or of one schema, with their
/// row counts.
pub(crate) async fn table_counts(
    c: &Client,
    schema: Option<&str>,
) -> Result<Vec<ArchivedTable>, TransferError> {
    let rows = c
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r'
               AND CASE WHEN $1::text IS NULL
                        THEN n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                        ELSE n.nspname = $1 END
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY 1, 2",
            &[&schema],
        )
        .await
        .map_err(db("listing the tables"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (s, t): (String, String) = (r.get(0), r.get(1));
        let n: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{}",
                    quote_ident(&s),
                    quote_ident(&t)
                ),
                &[],
            )
            .await
            .map_err(db("counting rows"))?
            .get(0);
        out.push(ArchivedTable {
            schema: s,
            name: t,
            rows: n.max(0) as u64,
            columns: Vec::new(),
            tenant_type: None,
            checksum: None,
        });
    }
    Ok(out)
}

/// Whether `schema` has an outbox table.
pub(crate) async fn has_outbox(c: &Client, schema: &str) -> Result<bool, TransferError> {
    Ok(c.query_one(
        "SELECT to_regclass(format('%I.fraiseql_outbox', $1::text)) IS NOT NULL",
        &[&schema],
    )
    .await
    .map_err(db("outbox"))?
    .get(0))
}

/// The unsent rows of `schema`'s outbox (of tenant `key` only, if given); 0 without an outbox.
pub(crate) async fn unsent_outbox(
    c: &Client,
    schema: &str,
    key: Option<&str>,
) -> Result<u64, TransferError> {
    if !has_outbox(c, schema).await? {
        return Ok(0);
    }
    let n: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.fraiseql_outbox WHERE sent_at IS NULL AND ($1::text IS NULL OR tenant_key = $1)",
                quote_ident(schema)
            ),
            &[&key],
        )
        .await
        .map_err(db("outbox"))?
        .get(0);
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn edge(p: &str, c: &str) -> (String, String) {
        (p.to_owned(), c.to_owned())
    }

    #[test]
    fn parents_come_first_and_ties_go_by_name() {
        let t = names(&[
            "tb_task",
            "tb_project",
            "tb_member",
            "tb_organization",
            "tb_tenant_config",
        ]);
        let e = vec![
            edge("tb_organization", "tb_member"),
            edge("tb_organization", "tb_project"),
            edge("tb_project", "tb_task"),
            edge("tb_task", "tb_task"),
            edge("elsewhere", "tb_task"),
        ];
        assert_eq!(
            dependency_order(&t, &e).expect("order"),
            names(&[
                "tb_organization",
                "tb_tenant_config",
                "tb_member",
                "tb_project",
                "tb_task"
            ])
        );
        assert_eq!(
            dependency_order(&[], &[]).expect("empty"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let t = names(&["a", "b", "c"]);
        let e = vec![edge("a", "b"), edge("b", "a"), edge("a", "c")];
        let err = dependency_order(&t, &e).expect_err("cycle");
        assert!(err.contains("between a, b form a cycle"), "{err}");
    }
}
