//! Loading a tenant's rows (`row_level`) in one transaction: every table staged from its
//! section (every row must be the tenant's), sequence keys taken on the target renumbered (with
//! the foreign keys pointing at them), inserted parents first, sequences moved past the
//! restored keys, the unsent events added (every one must be the tenant's), and the counts and
//! checksums checked before COMMIT.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::quote_ident;
use futures_util::SinkExt;
use tokio_postgres::Client;

use super::{checksum, column_list};
use crate::archive::read::Archive;
use crate::archive::{rows_section, ArchivedTable, COPY_SETTINGS, OUTBOX_COLUMNS, OUTBOX_SECTION};
use crate::catalog::{restore_order, tenant_tables, unsent_outbox, ForeignKey, TenantTable};
use crate::error::{db, TransferError};

/// Loads the archive's rows into `rec`'s (migrated) tables through `c`; `notes` gets the keys
/// that were renumbered.
pub(crate) async fn load(
    c: &Client,
    rec: &TenantRecord,
    archive: &Archive,
    notes: &mut Vec<String>,
) -> Result<(), TransferError> {
    let m = &archive.manifest;
    let (targets, fks) = tenant_tables(c, &rec.schema).await?;
    let by_name: BTreeMap<&str, &TenantTable> =
        targets.iter().map(|t| (t.name.as_str(), t)).collect();
    check_tables(&m.tables, &by_name, rec)?;
    let names: Vec<String> = m.tables.iter().map(|t| t.name.clone()).collect();
    let order = restore_order(&names, &fks)?;
    let loader = Loader {
        c,
        rec,
        archive,
        staging: m
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), format!("fraiseql_restore_{i}")))
            .collect(),
        by_name,
        fks: &fks,
    };
    c.batch_execute(COPY_SETTINGS)
        .await
        .map_err(db("session"))?;
    c.batch_execute("BEGIN").await.map_err(db("restore"))?;
    match loader.run(&order, notes).await {
        Ok(()) => c.batch_execute("COMMIT").await.map_err(db("restore")),
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Every archived table and column must exist on the target.
fn check_tables(
    tables: &[ArchivedTable],
    by_name: &BTreeMap<&str, &TenantTable>,
    rec: &TenantRecord,
) -> Result<(), TransferError> {
    for t in tables {
        let Some(here) = by_name.get(t.name.as_str()) else {
            return Err(TransferError::Refused(format!(
                "table {} of the archive does not exist in {}.{} on the target (or has no tenant_id): the target's migrations differ from the source's; run `fraiseql migrate` with the same migrations",
                t.name, rec.database, rec.schema
            )));
        };
        if let Some(col) = t.columns.iter().find(|c| !here.columns.contains(c)) {
            return Err(TransferError::Refused(format!(
                "table {} on the target has no column {col}: the target's migrations are older than the source's; run `fraiseql migrate` on the target first",
                t.name
            )));
        }
    }
    Ok(())
}

/// One load, inside its transaction.
struct Loader<'a> {
    c: &'a Client,
    rec: &'a TenantRecord,
    archive: &'a Archive,
    /// The target's tables, by name (every archived table is there: [`check_tables`]).
    by_name: BTreeMap<&'a str, &'a TenantTable>,
    fks: &'a [ForeignKey],
    /// The temporary table each archived table is staged in.
    staging: BTreeMap<&'a str, String>,
}

impl Loader<'_> {
    /// Refuses the archive when staging found `foreign` rows of another tenant (`what` says
    /// where): nothing of it has been restored yet.
    fn refuse_foreign(
        &self,
        foreign: i64,
        what: std::fmt::Arguments<'_>,
    ) -> Result<(), TransferError> {
        if foreign == 0 {
            return Ok(());
        }
        Err(TransferError::Archive {
            path: self.archive.path.display().to_string(),
            reason: format!("{what}: refused, nothing was restored"),
        })
    }

    async fn run(&self, order: &[String], notes: &mut Vec<String>) -> Result<(), TransferError> {
        let tables = &self.archive.manifest.tables;
        for t in tables {
            self.stage(t).await?;
        }
        let mut renumbered = BTreeSet::new();
        for t in tables {
            renumbered.extend(self.renumber(t, notes).await?);
        }
        for name in order {
            if let Some(t) = tables.iter().find(|t| &t.name == name) {
                self.insert(t).await?;
            }
        }
        self.load_outbox().await?;
        self.check_counts(&renumbered).await
    }

    fn target(&self, t: &ArchivedTable) -> (&TenantTable, &str) {
        let name = t.name.as_str();
        (self.by_name[name], &self.staging[name])
    }

    /// Streams section `section` of the archive into `COPY … FROM STDIN` (`sql`); returns the
    /// rows PostgreSQL took.
    async fn copy_in(
        &self,
        sql: &str,
        section: &str,
        step: &'static str,
    ) -> Result<u64, TransferError> {
        let sink = self
            .c
            .copy_in::<_, bytes::Bytes>(sql)
            .await
            .map_err(db(step))?;
        let sink = Arc::new(tokio::sync::Mutex::new(Box::pin(sink)));
        let s2 = sink.clone();
        self.archive
            .read_section(section, move |chunk| {
                let s = s2.clone();
                async move { s.lock().await.send(chunk).await.map_err(db(step)) }
            })
            .await?;
        let rows = sink
            .lock()
            .await
            .as_mut()
            .finish()
            .await
            .map_err(db(step))?;
        Ok(rows)
    }

    /// The table's rows, into a temporary table shaped like the target's.
    async fn stage(&self, t: &ArchivedTable) -> Result<(), TransferError> {
        let (here, stage) = self.target(t);
        self.c
            .batch_execute(&format!(
                "CREATE TEMP TABLE {stage} (LIKE {}) ON COMMIT DROP",
                here.qualified()
            ))
            .await
            .map_err(db("staging"))?;
        let rows = self
            .copy_in(
                &format!("COPY {stage} ({}) FROM STDIN", column_list(&t.columns)),
                &rows_section(&t.schema, &t.name),
                "copying rows",
            )
            .await?;
        if rows != t.rows {
            return Err(TransferError::Verify(format!(
                "{}: {rows} rows in the archive's section, the manifest says {}",
                t.name, t.rows
            )));
        }
        // Inserted as the admin (no row-level security): each row must be the tenant's.
        let foreign: i64 = self
            .c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {stage} WHERE tenant_id IS DISTINCT FROM ($1::text)::{}",
                    here.tenant_type
                ),
                &[&self.rec.id.to_string()],
            )
            .await
            .map_err(db("staging"))?
            .get(0);
        self.refuse_foreign(
            foreign,
            format_args!(
                "table {} of the archive holds {foreign} row(s) of another tenant (a tenant_id other than {})",
                t.name, self.rec.id
            ),
        )
    }

    /// Renumbers the table's sequence keys that are taken on the target; returns the tables
    /// whose rows changed (it, and those with foreign keys to it).
    async fn renumber(
        &self,
        t: &ArchivedTable,
        notes: &mut Vec<String>,
    ) -> Result<Vec<String>, TransferError> {
        let (here, _) = self.target(t);
        let mut changed = Vec::new();
        for (i, (col, seq)) in here.sequences.iter().enumerate() {
            if !t.columns.contains(col) {
                continue;
            }
            if let Some(n) = self.renumber_column(t, i, col, seq).await? {
                notes.push(format!(
                    "{}.{col}: {n} keys renumbered (they were taken on the target); foreign keys follow",
                    t.name
                ));
                changed.push(t.name.clone());
                changed.extend(
                    self.fks
                        .iter()
                        .filter(|f| f.parent == t.name)
                        .map(|f| f.child.clone()),
                );
            }
        }
        Ok(changed)
    }

    /// Staged keys of `col` that exist on the target get new ones from `seq`, and so do the
    /// staged foreign keys pointing at them. Returns how many, or `None` when none is taken.
    async fn renumber_column(
        &self,
        t: &ArchivedTable,
        i: usize,
        col: &str,
        seq: &str,
    ) -> Result<Option<u64>, TransferError> {
        let (here, stage) = self.target(t);
        let c = self.c;
        let qc = quote_ident(col);
        let taken: bool = c
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} x JOIN {stage} s ON x.{qc} = s.{qc})",
                    here.qualified()
                ),
                &[],
            )
            .await
            .map_err(db("checking keys"))?
            .get(0);
        if !taken {
            return Ok(None);
        }
        let map = format!("{stage}_map_{i}");
        c.batch_execute(&format!(
            "CREATE TEMP TABLE {map} ON COMMIT DROP AS SELECT {qc} AS old, {qc} AS new FROM {stage} WITH NO DATA"
        ))
        .await
        .map_err(db("renumbering"))?;
        let n = c
            .execute(
                &format!(
                    "INSERT INTO {map} (old, new) SELECT k, nextval($1::text::regclass) FROM (SELECT DISTINCT {qc} AS k FROM {stage} WHERE {qc} IS NOT NULL ORDER BY 1) s"
                ),
                &[&seq],
            )
            .await
            .map_err(db("renumbering"))?;
        c.batch_execute(&format!(
            "UPDATE {stage} SET {qc} = m.new FROM {map} m WHERE {stage}.{qc} = m.old"
        ))
        .await
        .map_err(db("renumbering"))?;
        for fk in self
            .fks
            .iter()
            .filter(|f| f.parent == t.name && f.parent_columns.iter().any(|p| p == col))
        {
            if fk.parent_columns.len() != 1 {
                return Err(TransferError::Refused(format!(
                    "{}.{col} is taken on the target and must be renumbered, but the foreign key from {} covers several columns; restore into a server without this tenant's key range in use",
                    t.name, fk.child
                )));
            }
            let Some(child_stage) = self.staging.get(fk.child.as_str()) else {
                continue;
            };
            let cc = quote_ident(&fk.child_columns[0]);
            c.batch_execute(&format!(
                "UPDATE {child_stage} SET {cc} = m.new FROM {map} m WHERE {child_stage}.{cc} = m.old"
            ))
            .await
            .map_err(db("renumbering"))?;
        }
        Ok(Some(n))
    }

    /// The staged rows into the target table, and its sequences past the restored keys.
    async fn insert(&self, t: &ArchivedTable) -> Result<(), TransferError> {
        let (here, stage) = self.target(t);
        let cols = column_list(&t.columns);
        self.c
            .batch_execute(&format!(
                "INSERT INTO {} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {stage}",
                here.qualified()
            ))
            .await
            .map_err(db(&format!("restoring rows into {}", t.name)))?;
        for (col, seq) in &here.sequences {
            self.c
                .execute(
                    &format!(
                        "SELECT setval($1::text::regclass, greatest(m, pg_sequence_last_value($1::text::regclass))) FROM (SELECT max({}) AS m FROM {}) x WHERE m IS NOT NULL",
                        quote_ident(col),
                        here.qualified()
                    ),
                    &[seq],
                )
                .await
                .map_err(db("moving sequences"))?;
        }
        Ok(())
    }

    /// The unsent events: due now at their new home.
    async fn load_outbox(&self) -> Result<(), TransferError> {
        let schema = quote_ident(&self.rec.schema);
        let cols = OUTBOX_COLUMNS.join(", ");
        self.c
            .batch_execute(&format!(
                "CREATE TEMP TABLE fraiseql_restore_outbox ON COMMIT DROP AS SELECT {cols} FROM {schema}.fraiseql_outbox WITH NO DATA"
            ))
            .await
            .map_err(db("staging"))?;
        self.copy_in(
            &format!("COPY fraiseql_restore_outbox ({cols}) FROM STDIN"),
            OUTBOX_SECTION,
            "copying events",
        )
        .await?;
        // Published as whose they say they are: each must be the tenant's, by its key and by the
        // tenant its payload names.
        let foreign: i64 = self
            .c
            .query_one(
                "SELECT count(*) FROM fraiseql_restore_outbox WHERE tenant_key IS DISTINCT FROM $1 OR (jsonb_typeof(payload) = 'object' AND payload ? 'tenant_id' AND payload->>'tenant_id' IS DISTINCT FROM $1)",
                &[&self.rec.key],
            )
            .await
            .map_err(db("staging"))?
            .get(0);
        self.refuse_foreign(
            foreign,
            format_args!(
                "the archive's outbox holds {foreign} event(s) of another tenant (not `{}`)",
                self.rec.key
            ),
        )?;
        let picked = OUTBOX_COLUMNS
            .iter()
            .map(|c| if *c == "next_attempt_at" { "now()" } else { c })
            .collect::<Vec<_>>()
            .join(", ");
        self.c
            .batch_execute(&format!(
                "INSERT INTO {schema}.fraiseql_outbox ({cols}) SELECT {picked} FROM fraiseql_restore_outbox"
            ))
            .await
            .map_err(db("restoring events"))
    }

    /// Every table's count of the tenant's rows and (unless keys were renumbered in it) their
    /// checksum, and its unsent events, against the manifest.
    async fn check_counts(&self, renumbered: &BTreeSet<String>) -> Result<(), TransferError> {
        let m = &self.archive.manifest;
        let id = self.rec.id.to_string();
        let mut wrong = Vec::new();
        for t in &m.tables {
            let (here, _) = self.target(t);
            let n: i64 = self
                .c
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE tenant_id = ($1::text)::{}",
                        here.qualified(),
                        here.tenant_type
                    ),
                    &[&id],
                )
                .await
                .map_err(db("counting rows"))?
                .get(0);
            if n.max(0) as u64 != t.rows {
                wrong.push(format!("{}: {n} rows, the archive has {}", t.name, t.rows));
                continue;
            }
            if let Some(want) = t
                .checksum
                .as_deref()
                .filter(|_| !renumbered.contains(&t.name))
            {
                let got = checksum(
                    self.c,
                    &here.qualified(),
                    &t.columns,
                    &here.tenant_type,
                    self.rec.id,
                )
                .await?;
                if got != want {
                    wrong.push(format!(
                        "{}: its rows differ from the archive's (checksum {got}, the archive has {want})",
                        t.name
                    ));
                }
            }
        }
        let unsent = unsent_outbox(self.c, &self.rec.schema, Some(&self.rec.key)).await?;
        m.verdict(wrong, unsent)
    }
}
