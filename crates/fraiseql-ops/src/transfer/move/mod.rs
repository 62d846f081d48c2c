//! `fraiseql tenant move`: suspend (503 + `Retry-After`), wait out the servers' registry
//! caches, fence and drain writes, back up, restore on the target, verify, then switch the
//! registry row and resume in one statement. Each step is recorded once done (`../journal.rs`):
//! a killed move is finished with `--resume` from its last completed step. Before the switch, a
//! failure (or SIGINT / SIGTERM) undoes the target and serves the tenant from where it was;
//! after it, the old copy is marked and kept.

mod switch;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fraiseql_config::Config;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};
use tokio_postgres::Client;

use super::backup::backup_record;
use super::copies::registry_with_copies;
use super::journal::{self, Journal, Step};
use super::restore::{load, undo_target};
use super::Progress;
use crate::archive::read::Archive;
use crate::archive::{ArchiveKey, Manifest};
use crate::error::{db, TransferError};
use crate::home::{existing_roles, Made};
use crate::interrupt::Interrupt;
use crate::names::unix_now;
use crate::provision::plan_record;
use crate::scratch::Scratch;
use crate::server::{check_admin, cluster_key, connect_to, try_lock, unlock, Location};
use crate::strategy::{self, StrategyOps};
use crate::tools::tool_version;
use switch::{occupied, switch};

/// What a move did, with the time each step took.
#[derive(Debug, Clone)]
pub struct MoveReport {
    /// The tenant's registry row now.
    pub record: TenantRecord,
    /// Where it was.
    pub from: String,
    /// Where it is.
    pub to: String,
    /// From the suspension (or the resumption) to the switch (running servers answered 503 at
    /// most this long, plus their cache's lifetime of a suspended entry).
    pub suspended_for: Duration,
    /// Each step and how long it took.
    pub steps: Vec<(String, Duration)>,
    /// Rows moved (0 when a resumed move had copied them before it was interrupted).
    pub rows: u64,
    /// Unsent events moved (as `rows`).
    pub outbox_unsent: u64,
    /// The old copy, as kept.
    pub old_copy: String,
    /// What else the operator should know.
    pub notes: Vec<String>,
}

/// How a move runs.
#[derive(Debug, Clone, Default)]
pub struct MoveOptions {
    /// Finish a move that was interrupted (killed) from its last completed step.
    pub resume: bool,
    /// Stops the move and undoes it when fired (before its switch; after it, the move finishes).
    pub interrupt: Interrupt,
}

/// How long running servers may still start work on a tenant after its suspension: their
/// registry cache, plus (row_level) the longest wait for a pooled connection.
pub fn suspension_wait(config: &Config) -> Duration {
    strategy::of(config.multi_tenancy.strategy).suspension_wait(config)
}

/// Moves tenant `key` to the PostgreSQL server (and, for `schema_per_tenant` / `row_level`,
/// the host database) of `server` while the servers run: suspend, wait for running servers,
/// fence and drain its writes, back up, restore on the target, verify, switch the registry row
/// and resume in one statement. A failure or an interrupt before the switch leaves the tenant
/// served from where it was, the target cleaned up. A move that was killed is refused until it
/// is resumed ([`MoveOptions::resume`]). The old copy is kept until
/// [`drop_copy`](super::drop_copy).
pub async fn move_tenant(
    config: &Config,
    key: &str,
    server: &str,
    options: &MoveOptions,
    progress: Progress<'_>,
) -> Result<MoveReport, TransferError> {
    if !keys::is_valid(key) {
        return Err(TransferError::InvalidKey(keys::why_invalid(key)));
    }
    let registry = registry_with_copies(config).await?;
    registry
        .batch_execute(journal::DDL)
        .await
        .map_err(db("registry"))?;
    try_lock(&registry, key).await?;
    let result = match Move::prepare(config, &registry, key, server, options, progress).await {
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
    interrupt: &'a Interrupt,
    strategy: &'static dyn StrategyOps,
    /// The tenant's registry row at the source.
    rec: TenantRecord,
    /// Its row at the target, as planned.
    target: TenantRecord,
    from: Location,
    to: Location,
    /// Its status before the move, restored at the end.
    was: TenantStatus,
    /// The last step done (recorded in the journal).
    done: Step,
    /// What the restore made on the target (what undoing it removes).
    made: Made,
    notes: Vec<String>,
    steps: Vec<(String, Duration)>,
    step_at: Instant,
}

impl<'a> Move<'a> {
    /// The preflight, before anything changes: the tenant, the strategy, the tools, both
    /// servers, and the target's place (free, and not where the tenant is). A recorded
    /// unfinished move is refused, or taken up with `resume`.
    async fn prepare(
        config: &'a Config,
        registry: &'a Client,
        key: &str,
        server: &str,
        options: &'a MoveOptions,
        progress: Progress<'a>,
    ) -> Result<Self, TransferError> {
        let strategy = strategy::of(config.multi_tenancy.strategy);
        let rec = registry::get(registry, key)
            .await
            .map_err(db("registry"))?
            .ok_or_else(|| TransferError::Unknown(key.to_owned()))?;
        let recorded = journal::load(registry, &rec).await?;
        if !options.resume {
            journal::refuse_unfinished(registry, key).await?;
        }
        if rec.status == TenantStatus::Provisioning {
            return Err(TransferError::NotReady(key.to_owned()));
        }
        if rec.strategy != strategy.serving().name() {
            return Err(TransferError::WrongStrategy {
                archived: rec.strategy.clone(),
                configured: strategy.serving().name().to_owned(),
            });
        }
        if strategy.uses_pg_tools() {
            tool_version("pg_dump").await?;
            tool_version("pg_restore").await?;
        }
        let planned = plan_record(config, registry, key, &rec.tier, server, rec.id).await?;
        let mut m = Self {
            config,
            registry,
            progress,
            interrupt: &options.interrupt,
            strategy,
            was: rec.status,
            from: Location::of(&rec)?,
            to: Location::of(&planned)?,
            target: planned,
            rec,
            done: Step::Started,
            made: Made::default(),
            notes: Vec::new(),
            steps: Vec::new(),
            step_at: Instant::now(),
        };
        match (recorded, options.resume) {
            (Some(j), true) => m.take_up(j).await?,
            (None, true) => {
                return Err(TransferError::Refused(format!(
                    "no interrupted move of tenant `{key}` is recorded: run `fraiseql tenant move` without --resume"
                )))
            }
            (_, false) => m.check_fresh(server).await?,
        }
        Ok(m)
    }

    /// A new move: both servers answer as admins, the target is another place and free; the
    /// move is recorded.
    async fn check_fresh(&mut self, server: &str) -> Result<(), TransferError> {
        let key = self.rec.key.clone();
        check_admin(
            &connect_to(&self.rec.server, Some(&self.rec.database)).await?,
            "tenant's current server",
        )
        .await?;
        check_admin(&connect_to(server, None).await?, "target server").await?;
        if self.strategy.same_place(&self.from, &self.to) {
            return Err(TransferError::SameLocation {
                key,
                place: self.from.to_string(),
            });
        }
        if let Some(what) = self.strategy.occupied(&self.target, &key).await? {
            return Err(occupied(self.registry, &key, &self.to, what).await?);
        }
        if let Some(what) = self
            .strategy
            .occupied_by_source_name(&self.rec, &self.target)
            .await?
        {
            return Err(TransferError::TargetOccupied {
                what,
                hint: "restore into another database (--server-url …/<database>)".to_owned(),
            });
        }
        let before = existing_roles(&self.target).await?;
        self.made = self.planned_made(before);
        journal::begin(self.registry, &self.rec, &self.target, before).await
    }

    /// An interrupted move, taken up where its journal says: the registry row must still be
    /// where the move left it, and `--server-url` the recorded target.
    async fn take_up(&mut self, j: Journal) -> Result<(), TransferError> {
        let key = self.rec.key.clone();
        let at_source = (&self.rec.server, &self.rec.database, &self.rec.schema)
            == (&j.source.0, &j.source.1, &j.source.2);
        let at_target = Location::of(&self.rec)? == Location::of(&j.target)?;
        if !(at_source || (j.step >= Step::Switched && at_target)) {
            return Err(TransferError::Refused(format!(
                "the registry row of `{key}` changed since its move was interrupted (it is served from {} now); remove the record with `DELETE FROM fraiseql_tenant_move WHERE key = '{key}'` in the registry, then move it again",
                self.from
            )));
        }
        let recorded_to = Location::of(&j.target)?;
        if recorded_to != self.to {
            return Err(TransferError::Refused(format!(
                "the interrupted move of `{key}` goes to {recorded_to}; resume it with that --server-url"
            )));
        }
        if let Some(dir) = j.scratch.as_deref().filter(|d| is_scratch(d)) {
            // Left by the killed process: its copy of the tenant's data.
            let _ = std::fs::remove_dir_all(dir);
        }
        (self.progress)(&format!(
            "resuming the move of `{key}` to {recorded_to} (started {}) after {}",
            j.started_at,
            j.step.done()
        ));
        if j.step >= Step::Switched {
            self.from = Location {
                cluster: cluster_key(&j.source.0)?,
                database: j.source.1.clone(),
                schema: j.source.2.clone(),
            };
            self.rec.server = j.source.0.clone();
            self.rec.database = j.source.1.clone();
            self.rec.schema = j.source.2.clone();
        }
        self.target = j.target;
        self.was = j.was;
        self.done = j.step;
        if j.step < Step::Switched && self.rec.status != TenantStatus::Suspended {
            // Resumed by hand since: suspend, wait and fence again before copying.
            self.done = Step::Started;
        }
        self.made = self.planned_made(j.roles_before);
        Ok(())
    }

    /// What undoing the target removes: the roles that did not exist before the move, the
    /// tenant's database, schema or rows there (the target was free), and a schema of the
    /// source's name (`schema_per_tenant`, while it is restored under it).
    fn planned_made(&self, before: crate::home::RolesThere) -> Made {
        Made {
            created: before.created_if_missing(true),
            found: false,
            loaded: true,
            foreign_schema: (self.rec.schema != self.target.schema
                && self.strategy.uses_pg_tools())
            .then(|| self.rec.schema.clone()),
            restore_role: self
                .strategy
                .uses_pg_tools()
                .then(|| crate::dump::restore_role_name(&self.target)),
        }
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

    /// Records `step` as done in the journal.
    async fn record(&mut self, step: Step, scratch: Option<&str>) -> Result<(), TransferError> {
        journal::advance(self.registry, &self.rec.key, step, scratch).await?;
        self.done = step;
        Ok(())
    }

    async fn run(mut self) -> Result<MoveReport, TransferError> {
        let key = self.rec.key.clone();
        let started = Instant::now();
        self.step_at = Instant::now();
        let mut copied = None;
        if self.done < Step::Switched {
            copied = match self.until_copied().await {
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
                Ok(true) => self.done = Step::Switched,
                Ok(false) => {
                    let e = TransferError::Refused(
                        "the registry row changed during the move (someone resumed, moved or re-created the tenant)".to_owned(),
                    );
                    return Err(self.failed("switching the registry".to_owned(), e).await);
                }
                Err(e) => return Err(self.failed("switching the registry".to_owned(), e).await),
            }
            let resumed = if self.was == TenantStatus::Active {
                "resumed"
            } else {
                "left suspended, as it was"
            };
            self.step(&format!("switched to {} and {resumed}", self.to));
        }
        let suspended_for = started.elapsed();
        // 7. Mark the old copy (best effort: the tenant is served from the target already).
        let old_copy = self.mark_old_copy().await;
        self.step("old copy kept");
        self.notes.push(format!(
            "the old copy is kept at {old_copy}; remove it with `fraiseql tenant drop-copy {key}`"
        ));
        if let Err(e) = journal::finish(self.registry, &key).await {
            self.notes.push(format!("the move's record could not be removed ({e}): delete the row of `{key}` from fraiseql_tenant_move"));
        }
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
        let (rows, outbox_unsent) = copied
            .as_ref()
            .map_or((0, 0), |m: &Manifest| (m.rows(), m.outbox_unsent));
        Ok(MoveReport {
            record,
            from: self.from.to_string(),
            to: self.to.to_string(),
            suspended_for,
            steps: self.steps,
            rows,
            outbox_unsent,
            old_copy,
            notes: self.notes,
        })
    }

    /// Steps 1 to 5, from the last one done: suspend, wait, fence and drain, copy. Returns the
    /// copied manifest (none if the copy was done before an interruption); a failure names its
    /// step.
    async fn until_copied(&mut self) -> Result<Option<Manifest>, (String, TransferError)> {
        let at = |step: &str| {
            let step = step.to_owned();
            move |e| (step, e)
        };
        let key = self.rec.key.clone();
        let wait = self.strategy.suspension_wait(self.config);
        if self.done < Step::Suspended {
            // 1. Suspend; every running server sees it within its registry cache's lifetime.
            if self.was == TenantStatus::Active {
                registry::set_status(self.registry, &key, TenantStatus::Suspended)
                    .await
                    .map_err(db("registry"))
                    .map_err(at("suspending it"))?;
            }
            self.record(Step::Suspended, None)
                .await
                .map_err(at("suspending it"))?;
            (self.progress)(&format!(
                "tenant `{key}` suspended (new requests get 503 with Retry-After); waiting {:.1} s until every server has seen it",
                wait.as_secs_f64()
            ));
            self.interrupt
                .guard(async {
                    tokio::time::sleep(wait).await;
                    Ok(())
                })
                .await
                .map_err(at("waiting for the servers to see the suspension"))?;
            self.step("suspended; running servers have seen it");
        }
        if self.done < Step::Fenced {
            // 2. Fence and drain: no write of the tenant's may land at the source from here on.
            self.interrupt
                .guard(self.fence())
                .await
                .map_err(at("fencing its writes"))?;
            self.record(Step::Fenced, None)
                .await
                .map_err(at("fencing its writes"))?;
            self.step("writes fenced; in-flight writes finished");
        }
        if self.done >= Step::Copied {
            return Ok(None);
        }
        self.copy().await.map(Some)
    }

    /// Steps 3 to 5: back up into a private scratch folder, restore on the target (cleaned
    /// first, if an interrupted attempt left something there), check the source still holds
    /// what was copied. A failure names its step.
    async fn copy(&mut self) -> Result<Manifest, (String, TransferError)> {
        let at = |step: &str| {
            let step = step.to_owned();
            move |e| (step, e)
        };
        // Only data: roles made before an interruption are reused (other tenants may share them
        // by now); a failed move removes them.
        let data_only = Made {
            created: crate::home::Created {
                role: false,
                login_role: false,
                ..self.made.created
            },
            ..self.made.clone()
        };
        let left = undo_target(self.config, &self.target, &data_only).await;
        if !left.is_empty() {
            return Err((
                "clearing what an interrupted attempt left on the target".to_owned(),
                TransferError::Refused(left.join("; ")),
            ));
        }
        let scratch = Scratch::in_temp().map_err(at("backing it up"))?;
        let scratch_dir = scratch.dir().display().to_string();
        journal::advance(self.registry, &self.rec.key, self.done, Some(&scratch_dir))
            .await
            .map_err(at("backing it up"))?;
        let archive_path: PathBuf = scratch.file("move.fraiseql-tenant");
        // The archive never leaves this process: a key of its own seals it.
        let seal = ArchiveKey::ephemeral().ok_or_else(|| {
            (
                "backing it up".to_owned(),
                TransferError::Refused("the system's random source failed".to_owned()),
            )
        })?;
        // 3. Back up.
        let backup = self
            .interrupt
            .guard(backup_record(
                &self.rec,
                &archive_path,
                Some(&seal),
                self.progress,
            ))
            .await
            .map_err(at("backing it up"))?;
        self.step("backed up");
        // 4. Restore on the target and verify.
        let mut archive = Archive::open(&archive_path, Some(&seal), false)
            .await
            .map_err(at("reading the backup"))?;
        archive.scratch_in = Some(scratch.dir().to_owned());
        let (config, target, progress) = (self.config, &self.target, self.progress);
        let (made, notes) = (&mut self.made, &mut self.notes);
        self.interrupt
            .guard(load(config, target, &archive, made, notes, progress))
            .await
            .map_err(at("restoring it on the target"))?;
        self.step("restored on the target; verified");
        // 5. The source must still hold what was copied (the fence guarantees it; this checks).
        self.interrupt
            .guard(self.strategy.verify_source(&self.rec, &backup.manifest))
            .await
            .map_err(at("checking the source against the copy"))?;
        self.record(Step::Copied, None)
            .await
            .map_err(at("recording the copy"))?;
        drop(scratch);
        Ok(backup.manifest)
    }

    /// Stops the tenant's writes at the source and waits for those in flight.
    async fn fence(&self) -> Result<(), TransferError> {
        let c = connect_to(&self.rec.server, Some(&self.rec.database)).await?;
        let timeout_ms = self.config.limits.request_timeout_ms.saturating_add(5_000);
        self.strategy.fence(&c, &self.rec, timeout_ms).await
    }

    /// Undoes the move (see [`Self::rollback`]) and says what failed at `step` and what is left.
    /// The move's record goes: what could not be undone is in the message.
    async fn failed(&self, step: String, source: TransferError) -> TransferError {
        let mut cleanup = self.rollback().await;
        if let Err(e) = journal::finish(self.registry, &self.rec.key).await {
            cleanup.push(format!(
                "the move's record ({e}): delete the row of `{}` from fraiseql_tenant_move in the registry",
                self.rec.key
            ));
        }
        TransferError::MoveFailed {
            key: self.rec.key.clone(),
            step,
            from: self.from.to_string(),
            cause: Box::new(source),
            cleanup: if cleanup.is_empty() {
                "; the target was cleaned up".to_owned()
            } else {
                format!("; left on the target: {}", cleanup.join("; "))
            },
        }
    }

    /// Undoes a move that did not switch: the target's copy removed, the source's writes let
    /// through again, the tenant's status as it was. Returns what could not be undone.
    async fn rollback(&self) -> Vec<String> {
        let rec = &self.rec;
        let mut left = Vec::new();
        if self.done >= Step::Fenced || self.made.loaded {
            left.extend(undo_target(self.config, &self.target, &self.made).await);
        }
        if self.done >= Step::Suspended {
            let unfenced = async {
                let c = connect_to(&rec.server, Some(&rec.database)).await?;
                self.strategy.unfence(&c, rec).await
            }
            .await;
            if let Err(e) = unfenced {
                left.push(format!(
                    "writes at the source could not be let through again ({e}): run `fraiseql migrate --tenant {}`",
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

/// Whether `dir` is a scratch folder a move made (`.fraiseql-<hex>`), so removing it on resume
/// removes nothing else.
fn is_scratch(dir: &str) -> bool {
    std::path::Path::new(dir)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(".fraiseql-"))
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}
