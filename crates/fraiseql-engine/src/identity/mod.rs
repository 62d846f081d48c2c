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
    /// The request carries `[federation] service_token`: the gateway, which may read the
    /// subgraph's SDL (`_service`) whatever `[limits] introspection` says.
    pub gateway: bool,
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

/// Resolves the caller of a request that reads nothing but `_service` (and `__typename`):
/// gateways and composition tools fetch the SDL without a user's token. The SDL is the whole
/// schema, descriptions and RBAC-guarded fields included, so: with `[federation] service_token`
/// only a request carrying it (the gateway) gets it; without one, `_service` follows `[limits]
/// introspection` (on: answered without credentials, so `IntrospectAndCompose` works as is).
pub fn identify_service(
    config: &Config,
    authorization: Option<&str>,
) -> Result<RequestContext, IdentifyError> {
    match &config.federation.service_token {
        Some(token) => {
            let given = authorization.and_then(|a| a.strip_prefix("Bearer "));
            if given.is_some_and(|g| same_secret(token, g)) {
                Ok(RequestContext {
                    gateway: true,
                    ..RequestContext::default()
                })
            } else {
                Err(IdentifyError::new(
                    401,
                    ErrorCode::Forbidden,
                    SERVICE_REFUSED,
                ))
            }
        }
        None if config.limits.introspection => Ok(RequestContext::default()),
        None => Err(IdentifyError::new(
            403,
            ErrorCode::Forbidden,
            SERVICE_REFUSED,
        )),
    }
}

/// Why `_service` is refused.
pub const SERVICE_REFUSED: &str = "the subgraph's SDL (_service) is served to the gateway with [federation] service_token, or with [limits] introspection on when no service_token is set";

/// Whether `ctx` may read `_service` (see [`identify_service`]).
pub fn may_read_service(config: &Config, ctx: &RequestContext) -> bool {
    match &config.federation.service_token {
        Some(_) => ctx.gateway,
        None => config.limits.introspection,
    }
}

/// Compares digests, so the time taken says nothing about where two secrets differ.
fn same_secret(a: &str, b: &str) -> bool {
    let d = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d(a).as_ref() == d(b).as_ref()
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
            gateway: false,
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
        gateway: false,
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
