//! The registry side of a move: refusing a target that holds the tenant already, and the switch
//! (the registry row to the target, the old copy recorded, the move's step), in one transaction.

use fraiseql_engine::tenancy::registry::{TenantRecord, TenantStatus};
use tokio_postgres::Client;

use crate::error::{db, TransferError};
use crate::server::Location;
use crate::transfer::copies::record_copy;
use crate::transfer::journal;

/// The target holds `what` already: refused, with a hint when it is the copy an earlier move
/// kept there.
pub(super) async fn occupied(
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
/// suspended row at the source; records the old copy and the move's step in the same
/// transaction.
pub(super) async fn switch(
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
        registry
            .execute(journal::SWITCHED, &[&rec.key])
            .await
            .map_err(db("registry"))?;
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
