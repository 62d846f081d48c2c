//! The operations the admin API runs: the CLI's own (`fraiseql-ops`), each behind one small
//! function here, so that a change of an operation's signature is a change of one line, and
//! their errors become the API's (status and code).

use std::path::Path;

use fraiseql_config::Config;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};
use fraiseql_engine::tenancy::usage::Usage;
use fraiseql_ops::{provision, ProvisionError, TransferError};
use http::StatusCode;

use crate::error::ApiError;

fn provision_error(e: ProvisionError) -> ApiError {
    let message = e.to_string();
    match e {
        ProvisionError::InvalidKey(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_KEY", message)
        }
        ProvisionError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message),
        ProvisionError::Db { ref step, .. } if step == "connect" => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DATABASE_UNAVAILABLE",
            message,
        ),
        ProvisionError::Config(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "CONFIG", message)
        }
        ProvisionError::Db { .. } | ProvisionError::Migrate(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "DATABASE_ERROR", message)
        }
    }
}

fn transfer_error(e: TransferError) -> ApiError {
    let message = e.to_string();
    match e {
        TransferError::Provision(p) => provision_error(p),
        TransferError::InvalidKey(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_KEY", message)
        }
        TransferError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message),
        TransferError::NotReady(_) => {
            ApiError::new(StatusCode::CONFLICT, "NOT_PROVISIONED", message)
        }
        TransferError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "BUSY", message),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "BACKUP_FAILED", message),
    }
}

/// `fraiseql tenant create KEY --tier TIER`.
pub(crate) async fn create(config: &Config, key: &str, tier: &str) -> Result<(), ApiError> {
    provision::create_tenant(config, key, tier, None)
        .await
        .map(drop)
        .map_err(provision_error)
}

/// The registry row of `key`.
pub(crate) async fn get(config: &Config, key: &str) -> Result<Option<TenantRecord>, ApiError> {
    let registry = provision::registry_client(config)
        .await
        .map_err(provision_error)?;
    registry::get(&registry, key).await.map_err(|e| {
        provision_error(ProvisionError::Db {
            step: "registry".to_owned(),
            reason: e.to_string(),
        })
    })
}

/// `fraiseql tenant list`.
pub(crate) async fn list(config: &Config) -> Result<Vec<TenantRecord>, ApiError> {
    provision::list(config).await.map_err(provision_error)
}

/// This month's usage, as `fraiseql tenant list` shows it.
pub(crate) async fn usage(config: &Config) -> Result<(String, Vec<Usage>), ApiError> {
    fraiseql_ops::plans::usage(config)
        .await
        .map_err(provision_error)
}

/// `fraiseql tenant suspend|resume KEY`.
pub(crate) async fn set_status(
    config: &Config,
    key: &str,
    status: TenantStatus,
) -> Result<(), ApiError> {
    provision::set_status(config, key, status)
        .await
        .map_err(provision_error)
}

/// Whether `tier` names a plan of the config (`fraiseql tenant set-tier` without `--force`).
pub(crate) fn check_tier(config: &Config, tier: &str) -> Result<(), ApiError> {
    fraiseql_ops::plans::check_tier(config, tier)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_TIER", m))
}

/// `fraiseql tenant set-tier KEY TIER [--force]`.
pub(crate) async fn set_tier(
    config: &Config,
    key: &str,
    tier: &str,
    force: bool,
) -> Result<TenantRecord, ApiError> {
    if !force {
        check_tier(config, tier)?;
    }
    fraiseql_ops::plans::set_tier(config, key, tier, true)
        .await
        .map_err(|e| match e {
            ProvisionError::Config(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_TIER", m)
            }
            e => provision_error(e),
        })
}

/// `fraiseql tenant backup KEY --out PATH`: the archive's size.
pub(crate) async fn backup(config: &Config, key: &str, out: &Path) -> Result<u64, ApiError> {
    let progress = |line: &str| tracing::info!(tenant = %key, "backup: {line}");
    fraiseql_ops::transfer::backup(config, key, out, &progress)
        .await
        .map(|r| r.bytes)
        .map_err(transfer_error)
}

/// The archive name `fraiseql tenant backup` picks for `key` now.
pub(crate) fn archive_name(key: &str) -> String {
    fraiseql_ops::transfer::default_archive_name(key)
}
