//! The operations the admin API runs: the CLI's own (`fraiseql-ops`), each behind one small
//! function here, so that a change of an operation's signature is a change of one line, and
//! their errors become the API's (status and code).

use std::path::Path;

use fraiseql_config::Config;
use fraiseql_engine::tenancy::registry::{self, TenantRecord, TenantStatus};
use fraiseql_engine::tenancy::usage::{self, Usage};
use fraiseql_ops::{provision, ProvisionError, TransferError};
use http::StatusCode;
use tokio::sync::OnceCell;

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

fn registry_error(e: tokio_postgres::Error) -> ApiError {
    provision_error(ProvisionError::Db {
        step: "registry".to_owned(),
        reason: e.to_string(),
    })
}

/// A registry connection for reads. The tables are ensured (DDL, which takes a moment's lock
/// the servers' registry reads would wait behind) once per admin API, not per request: reads are
/// what a SaaS polls.
async fn registry(
    config: &Config,
    ensured: &OnceCell<()>,
) -> Result<tokio_postgres::Client, ApiError> {
    ensured
        .get_or_try_init(|| async {
            provision::registry_client(config)
                .await
                .map(drop)
                .map_err(provision_error)
        })
        .await?;
    let url = provision::registry_url(config).map_err(provision_error)?;
    provision::connect(url, None, None)
        .await
        .map_err(provision_error)
}

/// The registry row of `key`.
pub(crate) async fn get(
    config: &Config,
    ensured: &OnceCell<()>,
    key: &str,
) -> Result<Option<TenantRecord>, ApiError> {
    let registry = registry(config, ensured).await?;
    registry::get(&registry, key).await.map_err(registry_error)
}

/// Every registered tenant (`fraiseql tenant list`), and this month's usage.
pub(crate) async fn list(
    config: &Config,
    ensured: &OnceCell<()>,
) -> Result<(Vec<TenantRecord>, String, Vec<Usage>), ApiError> {
    let registry = registry(config, ensured).await?;
    let all = registry::list(&registry).await.map_err(registry_error)?;
    let (period, usage) = usage::this_month(&registry).await.map_err(registry_error)?;
    Ok((all, period, usage))
}

/// This month's usage, as `fraiseql tenant list` shows it.
pub(crate) async fn usage(
    config: &Config,
    ensured: &OnceCell<()>,
) -> Result<(String, Vec<Usage>), ApiError> {
    let registry = registry(config, ensured).await?;
    usage::this_month(&registry).await.map_err(registry_error)
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
    // Signed with `[transfer] archive_key`: without one the admin API refuses, as the CLI does
    // unless --insecure-unsigned.
    let options = fraiseql_ops::transfer::BackupOptions::default();
    fraiseql_ops::transfer::backup(config, key, out, &options, &progress)
        .await
        .map(|r| r.bytes)
        .map_err(transfer_error)
}

/// The archive name `fraiseql tenant backup` picks for `key` now.
pub(crate) fn archive_name(key: &str) -> String {
    fraiseql_ops::transfer::default_archive_name(key)
}
