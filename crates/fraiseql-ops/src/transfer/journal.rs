//! A move's progress in the registry (`fraiseql_tenant_move`, a row per tenant being moved),
//! written after each step, so a move that was killed is finished from its last completed step
//! (`tenant move --resume`), and no other move, restore or drop-copy starts on the tenant
//! meanwhile. The row holds the target's registry entry as planned (its passwords too, like
//! `fraiseql_tenant`), so a resumed move switches to exactly what it restored.

use fraiseql_engine::tenancy::registry::{TenantRecord, TenantStatus};
use tokio_postgres::Client;

use crate::error::{db, TransferError};
use crate::home::RolesThere;

/// The table, in the registry database.
pub(crate) const DDL: &str = "CREATE TABLE IF NOT EXISTS fraiseql_tenant_move (
    key TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    was_status TEXT NOT NULL,
    source_server TEXT NOT NULL,
    source_database TEXT NOT NULL,
    source_schema TEXT NOT NULL,
    target_server TEXT NOT NULL,
    target_database TEXT NOT NULL,
    target_schema TEXT NOT NULL,
    target_role TEXT NOT NULL,
    target_password TEXT NOT NULL,
    target_login_role TEXT NOT NULL,
    target_login_password TEXT NOT NULL,
    target_role_existed BOOLEAN NOT NULL,
    target_login_role_existed BOOLEAN NOT NULL,
    scratch TEXT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
REVOKE ALL ON fraiseql_tenant_move FROM PUBLIC;";

/// The steps of a move, in order; each is recorded once done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    /// Planned and recorded; nothing changed yet.
    Started,
    /// The tenant is suspended.
    Suspended,
    /// Its writes at the source are fenced and drained.
    Fenced,
    /// It is restored on the target and verified.
    Copied,
    /// The registry points at the target.
    Switched,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Suspended => "suspended",
            Self::Fenced => "fenced",
            Self::Copied => "copied",
            Self::Switched => "switched",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Started,
            Self::Suspended,
            Self::Fenced,
            Self::Copied,
            Self::Switched,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// What was done, for messages.
    pub fn done(self) -> &'static str {
        match self {
            Self::Started => "its start (nothing changed yet)",
            Self::Suspended => "suspending the tenant",
            Self::Fenced => "fencing its writes at the source",
            Self::Copied => "copying it to the target",
            Self::Switched => "switching the registry to the target",
        }
    }
}

/// One unfinished move.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    /// The last completed step.
    pub step: Step,
    /// The tenant's status before the move.
    pub was: TenantStatus,
    /// Where the tenant was: server URL, database, schema.
    pub source: (String, String, String),
    /// The tenant's registry row at the target, as planned.
    pub target: TenantRecord,
    /// Which of the target's roles existed before the move.
    pub roles_before: RolesThere,
    /// The move's scratch folder, if one was made.
    pub scratch: Option<String>,
    /// When it started (UTC).
    pub started_at: String,
}

/// Records the start of `rec`'s move to `target`; refused if one is recorded already.
pub(crate) async fn begin(
    registry: &Client,
    rec: &TenantRecord,
    target: &TenantRecord,
    roles_before: RolesThere,
) -> Result<(), TransferError> {
    registry
        .execute(
            "INSERT INTO fraiseql_tenant_move (key, step, was_status, source_server, source_database, source_schema, target_server, target_database, target_schema, target_role, target_password, target_login_role, target_login_password, target_role_existed, target_login_role_existed)
             VALUES ($1, 'started', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[&rec.key, &rec.status.as_str(), &rec.server, &rec.database, &rec.schema, &target.server, &target.database, &target.schema, &target.role, &target.password, &target.login_role, &target.login_password, &roles_before.role, &roles_before.login_role],
        )
        .await
        .map_err(db("registry (recording the move)"))?;
    Ok(())
}

/// Records `step` as done (and the scratch folder, once there is one).
pub(crate) async fn advance(
    registry: &Client,
    key: &str,
    step: Step,
    scratch: Option<&str>,
) -> Result<(), TransferError> {
    registry
        .execute(
            "UPDATE fraiseql_tenant_move SET step = $2, scratch = coalesce($3, scratch), updated_at = now() WHERE key = $1",
            &[&key, &step.as_str(), &scratch],
        )
        .await
        .map_err(db("registry (recording the move)"))?;
    Ok(())
}

/// The statement the switch runs in its transaction: the step and the registry row change
/// together.
pub(crate) const SWITCHED: &str =
    "UPDATE fraiseql_tenant_move SET step = 'switched', updated_at = now() WHERE key = $1";

/// The unfinished move of `rec`'s tenant, if one is recorded.
pub(crate) async fn load(
    registry: &Client,
    rec: &TenantRecord,
) -> Result<Option<Journal>, TransferError> {
    let Some(r) = registry
        .query_opt(
            "SELECT step, was_status, source_server, source_database, source_schema, target_server, target_database, target_schema, target_role, target_password, target_login_role, target_login_password, target_role_existed, target_login_role_existed, scratch, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
             FROM fraiseql_tenant_move WHERE key = $1",
            &[&rec.key],
        )
        .await
        .map_err(db("registry"))?
    else {
        return Ok(None);
    };
    let step: String = r.get(0);
    let step = Step::parse(&step).ok_or_else(|| {
        TransferError::Refused(format!(
            "fraiseql_tenant_move records an unknown step `{step}` for tenant `{}`",
            rec.key
        ))
    })?;
    let was = if r.get::<_, String>(1) == "suspended" {
        TenantStatus::Suspended
    } else {
        TenantStatus::Active
    };
    let target = TenantRecord {
        server: r.get(5),
        database: r.get(6),
        schema: r.get(7),
        role: r.get(8),
        password: r.get(9),
        login_role: r.get(10),
        login_password: r.get(11),
        status: TenantStatus::Provisioning,
        ..rec.clone()
    };
    Ok(Some(Journal {
        step,
        was,
        source: (r.get(2), r.get(3), r.get(4)),
        target,
        roles_before: RolesThere {
            role: r.get(12),
            login_role: r.get(13),
        },
        scratch: r.get(14),
        started_at: r.get(15),
    }))
}

/// Forgets the move of `key` (finished, or wholly undone).
pub(crate) async fn finish(registry: &Client, key: &str) -> Result<(), TransferError> {
    registry
        .execute("DELETE FROM fraiseql_tenant_move WHERE key = $1", &[&key])
        .await
        .map_err(db("registry (recording the move)"))?;
    Ok(())
}

/// Refuses to start on `key` while a move of it is unfinished (restore, drop-copy).
pub(crate) async fn refuse_unfinished(registry: &Client, key: &str) -> Result<(), TransferError> {
    registry.batch_execute(DDL).await.map_err(db("registry"))?;
    let row = registry
        .query_opt(
            "SELECT step, target_server, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' FROM fraiseql_tenant_move WHERE key = $1",
            &[&key],
        )
        .await
        .map_err(db("registry"))?;
    let Some(r) = row else {
        return Ok(());
    };
    let step: String = r.get(0);
    let target: String = r.get(1);
    Err(TransferError::MoveUnfinished {
        key: key.to_owned(),
        to: crate::server::server_place(&target),
        step: Step::parse(&step).map_or(step.clone(), |s| s.done().to_owned()),
        started: r.get(2),
    })
}
