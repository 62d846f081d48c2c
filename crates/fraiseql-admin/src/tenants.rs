//! `/admin/tenants`: the handlers. A tenant is shown as its key, id, status, tier, strategy and
//! this month's usage (requests, rows, 429s: what the servers added to the registry); a
//! provisioning that failed here says why.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{TenantRecord, TenantStatus};
use fraiseql_engine::tenancy::usage::Usage;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::jobs::Job;
use crate::{body, ops, Admin};

/// The tier of a tenant created without one (as `fraiseql tenant create`).
const DEFAULT_TIER: &str = "free";

fn view(rec: &TenantRecord, period: &str, usage: Option<&Usage>, job: Option<Job>) -> Value {
    let u = usage.cloned().unwrap_or_default();
    let mut v = json!({
        "key": rec.key,
        "id": rec.id.to_string(),
        "status": rec.status.as_str(),
        "tier": rec.tier,
        "strategy": rec.strategy,
        "usage": {
            "period": period,
            "requests": u.requests,
            "rows": u.rows,
            "rate_limited": u.rate_limited,
        },
    });
    if let (TenantStatus::Provisioning, Some(Job::Failed(e))) = (rec.status, job) {
        v["provisioning_error"] = Value::String(e);
    }
    v
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if keys::is_valid(key) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_KEY",
            format!("invalid tenant key: {}", keys::why_invalid(key)),
        ))
    }
}

fn body_timeout(admin: &Admin) -> Duration {
    Duration::from_millis(admin.config.limits.body_timeout_ms)
}

/// One tenant as the API shows it.
async fn show(admin: &Admin, key: &str) -> Result<Value, ApiError> {
    let rec = ops::get(&admin.config, &admin.ensured, key)
        .await?
        .ok_or_else(|| ApiError::unknown_tenant(key))?;
    let (period, usage) = ops::usage(&admin.config, &admin.ensured).await?;
    Ok(view(
        &rec,
        &period,
        usage.iter().find(|u| u.key == key),
        admin.jobs.get(key),
    ))
}

/// `GET /admin/tenants`
pub(crate) async fn list(State(admin): State<Admin>) -> Result<Json<Value>, ApiError> {
    let (all, period, usage) = ops::list(&admin.config, &admin.ensured).await?;
    let tenants: Vec<Value> = all
        .iter()
        .map(|r| {
            view(
                r,
                &period,
                usage.iter().find(|u| u.key == r.key),
                admin.jobs.get(&r.key),
            )
        })
        .collect();
    Ok(Json(json!({ "tenants": tenants })))
}

/// `GET /admin/tenants/{key}`
pub(crate) async fn get(
    State(admin): State<Admin>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_key(&key)?;
    Ok(Json(show(&admin, &key).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Create {
    key: String,
    tier: Option<String>,
    #[serde(default)]
    force: bool,
}

fn accepted(key: &str, v: Value) -> Response {
    let mut r = (StatusCode::ACCEPTED, Json(v)).into_response();
    if let Ok(l) = HeaderValue::from_str(&format!("/admin/tenants/{key}")) {
        r.headers_mut().insert(header::LOCATION, l);
    }
    r
}

/// `POST /admin/tenants {key, tier?, force?}`: 202 with `Location` while it is provisioned in
/// the background. Repeated with the same key it answers the tenant as it is (200 once active,
/// 202 while provisioning, running a stopped provisioning again); with another tier, 409.
pub(crate) async fn create(
    State(admin): State<Admin>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let c: Create = body::json(&headers, body, body_timeout(&admin)).await?;
    check_key(&c.key)?;
    let tier = c.tier.as_deref().unwrap_or(DEFAULT_TIER);
    if !c.force {
        ops::check_tier(&admin.config, tier)?;
    }
    if let Some(rec) = ops::get(&admin.config, &admin.ensured, &c.key).await? {
        if c.tier.as_deref().is_some_and(|t| t != rec.tier) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "TENANT_EXISTS",
                format!(
                    "tenant `{}` exists on tier `{}`; change its tier with PUT /admin/tenants/{}/tier",
                    rec.key, rec.tier, rec.key
                ),
            ));
        }
        if rec.status != TenantStatus::Provisioning {
            return Ok(Json(show(&admin, &c.key).await?).into_response());
        }
        // A provisioning that stopped (here or elsewhere) is resumed; one under way is left.
        if admin.jobs.get(&c.key) != Some(Job::Running) {
            admin.jobs.start(admin.config.clone(), &c.key, &rec.tier);
        }
        let mut v = show(&admin, &c.key).await?;
        if let Some(o) = v.as_object_mut() {
            o.remove("provisioning_error");
        }
        return Ok(accepted(&c.key, v));
    }
    admin.jobs.start(admin.config.clone(), &c.key, tier);
    Ok(accepted(
        &c.key,
        json!({ "key": c.key, "status": "provisioning", "tier": tier }),
    ))
}

async fn set_status(admin: &Admin, key: &str, status: TenantStatus) -> Result<Value, ApiError> {
    check_key(key)?;
    let rec = ops::get(&admin.config, &admin.ensured, key)
        .await?
        .ok_or_else(|| ApiError::unknown_tenant(key))?;
    if rec.status == TenantStatus::Provisioning {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "NOT_PROVISIONED",
            format!("tenant `{key}` is still being provisioned (GET /admin/tenants/{key} says how it goes)"),
        ));
    }
    ops::set_status(&admin.config, key, status).await?;
    show(admin, key).await
}

/// `POST /admin/tenants/{key}/suspend`: its requests are refused with 503 within 3 s.
pub(crate) async fn suspend(
    State(admin): State<Admin>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        set_status(&admin, &key, TenantStatus::Suspended).await?,
    ))
}

/// `POST /admin/tenants/{key}/resume`: served again within a second.
pub(crate) async fn resume(
    State(admin): State<Admin>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(set_status(&admin, &key, TenantStatus::Active).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetTier {
    tier: String,
    #[serde(default)]
    force: bool,
}

/// `PUT /admin/tenants/{key}/tier {tier, force?}`: running servers apply it within 3 s.
pub(crate) async fn set_tier(
    State(admin): State<Admin>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    check_key(&key)?;
    let t: SetTier = body::json(&headers, body, body_timeout(&admin)).await?;
    ops::set_tier(&admin.config, &key, &t.tier, t.force).await?;
    Ok(Json(show(&admin, &key).await?))
}

/// `POST /admin/tenants/{key}/backup`: an archive in `[admin] backup_dir`, written from one
/// snapshot while the tenant is served; 201 with its path once it is complete.
pub(crate) async fn backup(
    State(admin): State<Admin>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    check_key(&key)?;
    let dir = &admin.config.admin.backup_dir;
    tokio::fs::create_dir_all(dir).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "BACKUP_FAILED",
            format!("[admin] backup_dir {}: {e}", dir.display()),
        )
    })?;
    let path = dir.join(ops::archive_name(&key));
    let bytes = ops::backup(&admin.config, &key, &path).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": key, "path": path.display().to_string(), "bytes": bytes })),
    )
        .into_response())
}
