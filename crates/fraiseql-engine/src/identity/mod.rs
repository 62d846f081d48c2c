//! Identity (the pipeline's second step): who is asking, before the body is looked at. The
//! bearer token is verified ([`jwt`]); under multi-tenancy the tenant is the token's tenant
//! claim, which the tenant header may only repeat. A token that names no tenant picks none;
//! machine-to-machine tokens may list several (`[auth] tenants_claim`) and the header picks one
//! of them. The header alone picks a tenant only where the config says so
//! (`[multi_tenancy] trust_tenant_header`). [`rbac`] then says what the roles may read.

mod crypto;
pub mod jwt;
pub mod rbac;

use std::sync::Arc;

use fraiseql_config::Config;

pub use jwt::{AuthError, Identity, Verifier};

use crate::error::{ErrorCode, GraphqlError};
use crate::tenancy::{TenantError, TenantRecord, Tenants};

/// Who is asking, resolved from the request's headers before anything else.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The tenant (multi-tenancy on), routed to its own database/schema/rows.
    pub tenant: Option<Arc<TenantRecord>>,
    /// The verified token's identity (default: anonymous, no roles).
    pub identity: Arc<Identity>,
}

/// Why a request was refused before execution, with the HTTP status to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentifyError {
    /// 400, 401, 403 or 503.
    pub status: u16,
    /// The error to show.
    pub error: GraphqlError,
    /// Seconds after which a retry may succeed (503).
    pub retry_after: Option<u64>,
}

impl IdentifyError {
    fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error: GraphqlError::new(code, message),
            retry_after: None,
        }
    }
}

/// The tenant header as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantHeader<'a> {
    /// Not sent.
    Absent,
    /// Sent once, visible ASCII.
    Value(&'a str),
    /// Sent with bytes outside visible ASCII, or more than once: refused, never ignored.
    Malformed,
}

/// Resolves the caller: the token (verified; required unless `[auth] required = false`), then
/// under multi-tenancy the tenant it is bound to.
pub async fn identify(
    config: &Config,
    verifier: Option<&Verifier>,
    tenants: Option<&Tenants>,
    header: TenantHeader<'_>,
    authorization: Option<&str>,
) -> Result<RequestContext, IdentifyError> {
    let unauthenticated = |m: String| IdentifyError::new(401, ErrorCode::Unauthenticated, m);
    let identity = match (verifier, authorization) {
        (None, _) => Arc::new(Identity::default()),
        (Some(v), None) if v.required() => {
            return Err(unauthenticated(AuthError::Missing.to_string()))
        }
        (Some(_), None) => Arc::new(Identity::default()),
        (Some(v), Some(h)) => {
            let token = h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
                .ok_or_else(|| {
                    unauthenticated("the Authorization header must be `Bearer <jwt>`".into())
                })?;
            v.verify(token.trim())
                .map_err(|e| unauthenticated(e.to_string()))?
        }
    };
    let Some(tenants) = tenants else {
        return Ok(RequestContext {
            tenant: None,
            identity,
        });
    };
    let name = config.multi_tenancy.auth_header.as_str();
    let header = match header {
        TenantHeader::Malformed => {
            return Err(IdentifyError::new(
                400,
                ErrorCode::BadRequest,
                format!("invalid {name} header: send it once, as a tenant key (lowercase letters, digits, `_`)"),
            ))
        }
        TenantHeader::Absent => None,
        TenantHeader::Value(v) => Some(v),
    };
    let key = if identity.authenticated {
        match (identity.tenant.as_deref(), header) {
            (Some(claim), Some(h)) if h != claim => {
                return Err(IdentifyError::new(
                    403,
                    ErrorCode::Forbidden,
                    format!("the {name} header does not match the token's tenant"),
                ))
            }
            (Some(claim), _) => claim.to_owned(),
            // A machine-to-machine token lists the tenants it may act for; the header picks one.
            (None, Some(h)) if identity.tenants.iter().any(|t| t == h) => h.to_owned(),
            (None, Some(_)) if !identity.tenants.is_empty() => {
                return Err(IdentifyError::new(
                    403,
                    ErrorCode::Forbidden,
                    format!("the token may not act for the tenant in the {name} header"),
                ))
            }
            (None, None) if !identity.tenants.is_empty() => {
                return Err(IdentifyError::new(
                    400,
                    ErrorCode::BadRequest,
                    format!("this token acts for several tenants: name one in the {name} header"),
                ))
            }
            (None, _) => {
                let claim = config
                    .auth
                    .as_ref()
                    .map_or("tenant_id", |a| a.tenant_claim.as_str());
                return Err(IdentifyError::new(
                    403,
                    ErrorCode::Forbidden,
                    format!("the token names no tenant (claim `{claim}`); under multi-tenancy every token is bound to one"),
                ));
            }
        }
    } else if config.multi_tenancy.trust_tenant_header {
        match header {
            Some(h) => h.to_owned(),
            None => {
                return Err(IdentifyError::new(
                    400,
                    ErrorCode::BadRequest,
                    format!("missing {name} header"),
                ))
            }
        }
    } else {
        return Err(unauthenticated(
            "a token bound to a tenant is required (send Authorization: Bearer <jwt>)".into(),
        ));
    };
    let tenant = tenants.resolve(&key).await.map_err(|e| match e {
        TenantError::Invalid(m) => {
            IdentifyError::new(400, ErrorCode::BadRequest, format!("invalid {name}: {m}"))
        }
        // An unauthenticated caller must not tell a suspended tenant from an unknown one.
        TenantError::Unknown | TenantError::Suspended if !identity.authenticated => {
            IdentifyError::new(403, ErrorCode::UnknownTenant, "unknown tenant")
        }
        TenantError::Unknown => IdentifyError::new(403, ErrorCode::UnknownTenant, "unknown tenant"),
        TenantError::Suspended => IdentifyError {
            retry_after: Some(30),
            ..IdentifyError::new(
                503,
                ErrorCode::TenantSuspended,
                "this tenant is suspended (or being moved); try again later",
            )
        },
        TenantError::RegistryUnavailable => IdentifyError {
            retry_after: Some(1),
            ..IdentifyError::new(
                503,
                ErrorCode::DatabaseUnavailable,
                "the tenant registry is unavailable; try again shortly",
            )
        },
    })?;
    Ok(RequestContext {
        tenant: Some(tenant),
        identity,
    })
}

/// Why the configuration is unsafe to serve.
pub fn check_config(config: &Config) -> Result<(), String> {
    let mt = &config.multi_tenancy;
    if !mt.enabled {
        return Ok(());
    }
    let authenticated = config.auth.as_ref().is_some_and(|a| a.required);
    if !authenticated && !mt.trust_tenant_header {
        return Err(format!(
            "[multi_tenancy] is enabled but {}: any caller could pick any tenant with the {} header. \
             Configure [auth] (tokens bound to a tenant), or set [multi_tenancy] trust_tenant_header = true \
             if a gateway in front of this server authenticates callers",
            if config.auth.is_none() { "there is no [auth]" } else { "[auth] required = false" },
            mt.auth_header
        ));
    }
    Ok(())
}
