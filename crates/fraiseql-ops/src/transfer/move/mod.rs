//! `fraiseql tenant move`: suspend (503 + `Retry-After`), wait out the servers' registry
//! caches, fence and drain writes, back up, restore on the target, verify, then switch the
//! registry row and resume in one statement. Before that, a failure undoes the target and
//! serves the tenant from where it was; after it, the old copy is marked and kept.

use std::path::Path;
use std::time::{Duration, Instant};

use fraiseql_config::Config;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};
use tokio_postgres::Client;
use uuid::Uuid;

use super::backup::backup_record;
use super::copies::{record_copy, COPY_DDL};
use super::restore::{load, undo_target};
use super::Progress;
use crate::archive::read::Archive;
use crate::archive::Manifest;
use crate::error::{db, TransferError};
use crate::home::{dml_grants, Created, Made};
use crate::names::unix_now;
use crate::provision::plan_record;
use crate::scratch::Scratch;
use crate::server::{
    check_admin, cluster_key, connect_to, registry_client, try_lock, unlock, Location,
};
use crate::strategy::{self, StrategyOps};
use crate::tools::tool_version;

/// What a move did, with the time each step took.
#[derive(Debug, Clone)]
pub struct MoveReport {
    /// The tenant's registry row now.
    pub record: TenantRecord,
    /// Where it was.
    pub from: String,
    /// Where it is.
    pub to: String,
    /// From the suspension to the switch (running servers answered 503 at most this long, plus
    /// their cache's lifetime of a suspended entry).
    pub suspended_for: Duration,
    /// Each step and how long it took.
    pub steps: Vec<(String, Duration)>,
    /// Rows moved.
    pub rows: u64,
    /// Unsent events moved.
    pub outbox_unsent: u64,
    /// The old copy, as kept.
    pub old_copy: String,
    /// What else the operator should know.
    pub notes: Vec<String>,
}

/// How long running servers may still start work on a tenant after its suspension: their
/// registry cache, plus (row_level, whose writes cannot be fenced per tenant) the longest wait
/// for a pooled connection.
pub fn suspension_wait(config: &Config) -> Duration {
    strategy::of(config.multi_tenancy.strategy).suspension_wait(config)
}

/// Moves tenant `key` to the PostgreSQL server (and, for `schema_per_tenant` / `row_level`,
/// the host database) of `server` while the servers run: suspend, wait for running servers
/// and in-flight work, back up, restore on the target, verify row counts, switch the registry
/// row and resume in one statement. A failure before the switch leaves the tenant served from
/// where it was, the target cleaned up. The old copy is kept until [`drop_copy`](super::drop_copy).
pub async fn move_tenant(
    config: &Config,
    key: &str,
    server: &str,
    progress: Progress<'_>,
) -> Result<MoveReport, TransferError> {
    if !keys::is_valid(key) {
        return Err(TransferError::InvalidKey(keys::why_invalid(key)));
    }
    let registry = registry_client(config).await?;
    registry
        .batch_execute(COPY_DDL)
        .await
        .map_err(db("registry"))?;
    try_lock(&registry, key).await?;
    let result = match Move::prepare(config, &registry, key, server, progress).await {
        Ok(m) => m.run().await,
        Err(e) => Err(e),
    };
    unlock(&registry, key).await;
    result
}

/// One move, from its preflight on.
struct Move<'a> {
    config: &'a Config,
    registry: &'a Client,
    progress: Progress<'a>,
    strategy: &'static dyn StrategyOps,
    /// The tenant's registry row at the source.
    rec: TenantRecord,
    /// Its row at the target, as planned.
    target: TenantRecord,
    from: Location,
    to: Location,
    /// Its status before the move, restored at the end.
    was: TenantStatus,
    /// What the restore made on the target.
    made: Made,
    /// Whether the source's writes were fenced (granted again if the move fails).
    fenced: bool,
    notes: Vec<String>,
    steps: Vec<(String, Duration)>,
    step_at: Instant,
}

impl<'a> Move<'a> {
    /// The preflight, before anything changes: the tenant, the strategy, the tools, both
    /// servers, and the target's place (free, and not where the tenant is).
    async fn prepare(
        config: &'a Config,
        registry: &'a Client,
        key: &str,
        server: &str,
        progress: Progress<'a>,
    ) -> Result<Self, TransferError> {
        let strategy = strategy::of(config.multi_tenancy.strategy);
        let rec = registry::get(registry, key)
            .await
            .map_err(db("registry"))?
            .ok_or_else(|| TransferError::Unknown(key.to_owned()))?;
        if rec.status == TenantStatus::Provisioning {
            return Err(TransferError::NotReady(key.to_owned()));
        }
        if rec.strategy != strategy.serving().name() {
            return Err(TransferError::WrongStrategy {
                archived: rec.strategy.clone(),
                configured: strategy.serving().name().to_owned(),
            });
        }
        let from = Location::of(&rec)?;
        if strategy.uses_pg_tools() {
            tool_version("pg_dump").await?;
            tool_version("pg_restore").await?;
        }
        let source = connect_to(&rec.server, Some(&rec.database)).await?;
        check_admin(&source, "tenant's current server").await?;
        check_admin(&connect_to(server, None).await?, "target server").await?;
        let target = plan_record(config, registry, key, &rec.tier, server, rec.id).await?;
        let to = Location::of(&target)?;
        if strategy.same_place(&from, &to) {
            return Err(TransferError::SameLocation {
                key: key.to_owned(),
                place: from.to_string(),
            });
        }
        if let Some(what) = strategy.occupied(&target, key).await? {
            return Err(occupied(registry, key, &to, what).await?);
        }
        drop(source);
        Ok(Self {
            config,
            registry,
            progress,
            strategy,
            was: rec.status,
            rec,
            target,
            from,
            to,
            made: Made::default(),
            fenced: false,
            notes: Vec::new(),
            steps: Vec::new(),
            step_at: Instant::now(),
        })
    }

    /// Records step `name` as done now, with the time since the last one.
    fn step(&mut self, name: &str) {
        let now = Instant::now();
        self.steps.push((name.to_owned(), now - self.step_at));
        (self.progress)(&format!(
            "{name} ({:.2} s)",
            (now - self.step_at).as_secs_f64()
        ));
        self.step_at = now;
    }

    async fn run(mut self) -> Result<MoveReport, TransferError> {
        let key = self.rec.key.clone();
        let started = Instant::now();
        self.step_at = Instant::now();
        // 1. Suspend; every running server sees it within its registry cache's lifetime.
        if self.was == TenantStatus::Active {
            registry::set_status(self.registry, &key, TenantStatus::Suspended)
                .await
                .map_err(db("registry"))?;
        }
        let wait = self.strategy.suspension_wait(self.config);
        (self.progress)(&format!(
            "tenant `{key}` suspended (new requests get 503 with Retry-After); waiting {:.1} s until every server has seen it",
            wait.as_secs_f64()
        ));
        let suspended_at = Instant::now();
        let mut scratch = Scratch::default();
        let archive_path = std::env::temp_dir().join(format!(
            ".fraiseql-move-{key}-{}.fraiseql-tenant",
            Uuid::new_v4().simple()
        ));
        scratch.adopt(archive_path.clone());
        let manifest = match self.copy(wait, &archive_path).await {
            Ok(m) => m,
            Err((step, e)) => return Err(self.failed(step, e).await),
        };
        // 6. Switch and resume, in one statement; only if nobody changed the row meanwhile.
        match switch(
            self.registry,
            &self.rec,
            &self.target,
            self.was,
            &self.to.to_string(),
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                let e = TransferError::Refused(
                    "the registry row changed during the move (someone resumed, moved or re-created the tenant)".to_owned(),
                );
                return Err(self.failed("switching the registry".to_owned(), e).await);
            }
            Err(e) => return Err(self.failed("switching the registry".to_owned(), e).await),
        }
        let suspended_for = suspended_at.elapsed();
        let resumed = if self.was == TenantStatus::Active {
            "resumed"
        } else {
            "left suspended, as it was"
        };
        self.step(&format!("switched to {} and {resumed}", self.to));
        // 7. Mark the old copy (best effort: the tenant is served from the target already).
        let old_copy = self.mark_old_copy().await;
        self.step("old copy kept");
        self.notes.push(format!(
            "the old copy is kept at {old_copy}; remove it with `fraiseql tenant drop-copy {key}`"
        ));
        drop(scratch);
        let record = registry::get(self.registry, &key)
            .await
            .map_err(db("registry"))?
            .ok_or_else(|| TransferError::Unknown(key.clone()))?;
        (self.progress)(&format!(
            "moved tenant `{key}` from {} to {} in {:.2} s (suspended for {:.2} s)",
            self.from,
            self.to,
            started.elapsed().as_secs_f64(),
            suspended_for.as_secs_f64()
        ));
        Ok(MoveReport {
            record,
            from: self.from.to_string(),
            to: self.to.to_string(),
            suspended_for,
            steps: self.steps,
            rows: manifest.rows(),
            outbox_unsent: manifest.outbox_unsent,
            old_copy,
            notes: self.notes,
        })
    }

    /// Steps 2 to 5, once the tenant is suspended: wait `wait`, fence and drain, back up into
    /// `archive_path`, restore on the target, check the source. A failure names its step.
    async fn copy(
        &mut self,
        wait: Duration,
        archive_path: &Path,
    ) -> Result<Manifest, (String, TransferError)> {
        let at = |step: &str| {
            let step = step.to_owned();
            move |e| (step, e)
        };
        tokio::time::sleep(wait).await;
        self.step("suspended; running servers have seen it");
        // 2. Fence and drain: no write of the tenant's may land at the source from here on.
        self.fenced = self.strategy.fences_writes();
        self.drain()
            .await
            .map_err(at("waiting for its in-flight work"))?;
        self.step("in-flight work finished; writes fenced");
        // 3. Back up.
        let backup = backup_record(&self.rec, archive_path, self.progress)
            .await
            .map_err(at("backing it up"))?;
        self.step("backed up");
        // 4. Restore on the target and verify.
        let archive = Archive::open(archive_path)
            .await
            .map_err(at("reading the backup"))?;
        load(
            self.config,
            &self.target,
            &archive,
            &mut self.made,
            &mut self.notes,
            self.progress,
        )
        .await
        .map_err(at("restoring it on the target"))?;
        self.step("restored on the target; row counts verified");
        // 5. Where writes could not be fenced, the source must still hold what was copied.
        self.strategy
            .verify_source(&self.rec, &backup.manifest)
            .await
            .map_err(at("re-counting the source"))?;
        Ok(backup.manifest)
    }

    /// Stops the tenant's writes at the source and waits for those in flight.
    async fn drain(&self) -> Result<(), TransferError> {
        let c = connect_to(&self.rec.server, Some(&self.rec.database)).await?;
        let timeout_ms = self.config.limits.request_timeout_ms.saturating_add(5_000);
        self.strategy.drain(&c, &self.rec, timeout_ms).await
    }

    /// Undoes the move (see [`Self::rollback`]) and says what failed at `step` and what is left.
    async fn failed(&self, step: String, source: TransferError) -> TransferError {
        let cleanup = self.rollback().await;
        TransferError::MoveFailed {
            key: self.rec.key.clone(),
            step,
            from: self.from.to_string(),
            source: Box::new(source),
            cleanup: if cleanup.is_empty() {
                "; the target was cleaned up".to_owned()
            } else {
                format!("; left on the target: {}", cleanup.join("; "))
            },
        }
    }

    /// Undoes a move that did not switch: the target's copy removed, the source's writes granted
    /// again, the tenant's status as it was. Returns what could not be undone.
    async fn rollback(&self) -> Vec<String> {
        let (rec, made) = (&self.rec, &self.made);
        let mut left = Vec::new();
        if made.loaded || made.created != Created::default() {
            left.extend(undo_target(self.config, &self.target, made).await);
        }
        if self.fenced {
            let regrant = async {
                let c = connect_to(&rec.server, Some(&rec.database)).await?;
                c.batch_execute(&dml_grants(&rec.schema, &rec.role))
                    .await
                    .map_err(db("granting writes again"))
            }
            .await;
            if let Err(e) = regrant {
                left.push(format!(
                    "writes at the source could not be granted again ({e}): run `fraiseql migrate --tenant {}`",
                    rec.key
                ));
            }
        }
        if self.was == TenantStatus::Active {
            if let Err(e) =
                registry::set_status(self.registry, &rec.key, TenantStatus::Active).await
            {
                left.push(format!(
                    "the tenant could not be resumed ({e}): run `fraiseql tenant resume {}`",
                    rec.key
                ));
            }
        }
        left
    }

    /// Renames or marks the old copy so nothing serves or publishes from it; returns where it
    /// is. A failure is a note: the tenant is served from the target already.
    async fn mark_old_copy(&mut self) -> String {
        let marked = async {
            let cluster = cluster_key(&self.rec.server)?;
            self.strategy
                .mark_old_copy(self.registry, &self.rec, &cluster, unix_now())
                .await
        }
        .await;
        match marked {
            Ok(place) => place,
            Err(e) => {
                self.notes.push(format!(
                    "the old copy could not be renamed/marked ({e}); it is kept as {}",
                    self.from
                ));
                self.from.to_string()
            }
        }
    }
}

/// The target holds `what` already: refused, with a hint when it is the copy an earlier move
/// kept there.
async fn occupied(
    registry: &Client,
    key: &str,
    to: &Location,
    what: String,
) -> Result<TransferError, TransferError> {
    let recorded = registry
        .query_opt(
            "SELECT 1 FROM fraiseql_tenant_copy WHERE key = $1 AND server_key = $2",
            &[&key, &to.cluster],
        )
        .await
        .map_err(db("registry"))?
        .is_some();
    Ok(TransferError::TargetOccupied {
        what,
        hint: if recorded {
            format!("it is the copy an earlier move kept: remove it with `fraiseql tenant drop-copy {key}`, then move again")
        } else {
            "remove it, or move the tenant somewhere else".to_owned()
        },
    })
}

/// Points the registry row at the target and restores its status, only if it is still the
/// suspended row at the source; records the old copy in the same transaction.
async fn switch(
    registry: &Client,
    rec: &TenantRecord,
    target: &TenantRecord,
    status: TenantStatus,
    moved_to: &str,
) -> Result<bool, TransferError> {
    registry
        .batch_execute("BEGIN")
        .await
        .map_err(db("registry"))?;
    let result = async {
        let n = registry
            .execute(
                "UPDATE fraiseql_tenant SET server = $2, database = $3, schema_name = $4, role_name = $5, role_password = $6, login_role = $7, login_password = $8, status = $9, updated_at = now()
                 WHERE key = $1 AND status = 'suspended' AND server = $10 AND database = $11 AND schema_name = $12",
                &[&rec.key, &target.server, &target.database, &target.schema, &target.role, &target.password, &target.login_role, &target.login_password, &status.as_str(), &rec.server, &rec.database, &rec.schema],
            )
            .await
            .map_err(db("registry"))?;
        if n != 1 {
            return Ok(false);
        }
        record_copy(registry, rec, moved_to).await?;
        Ok(true)
    }
    .await;
    match result {
        Ok(true) => registry
            .batch_execute("COMMIT")
            .await
            .map(|()| true)
            .map_err(db("registry")),
        other => {
            let _ = registry.batch_execute("ROLLBACK").await;
            other
        }
    }
}
