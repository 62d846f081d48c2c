//! Bearer tokens: verification with the algorithm fixed by config (a token's `alg` header is
//! never trusted, so `none` and HS/RS confusion are refused), and issuing development tokens.
//! Configured `issuer` and `audience` are required claims, as is `exp`; `nbf` is checked when
//! present. Tokens issued under the development profile carry [`DEVELOPMENT_CLAIM`], and a
//! server under the production profile refuses them: a token printed by a development server
//! (its GraphiQL link, `fraiseql token`) is no key to production, even with the same secret.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use fraiseql_config::{AuthConfig, JwtAlgorithm, Profile};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};

/// Why a token is refused (all are 401), or why keys cannot be loaded (start-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header while auth is required.
    #[error("missing bearer token (send Authorization: Bearer <jwt>)")]
    Missing,
    /// Not a valid token for this server (signature, algorithm, issuer, audience, time).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The key material in the config cannot be loaded.
    #[error("auth keys: {0}")]
    Keys(String),
}

/// What a verified token says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The tenant key claim, if present (and not `null`).
    pub tenant: Option<String>,
    /// The tenants a machine-to-machine token may act for (`[auth] tenants_claim`).
    pub tenants: Vec<String>,
    /// Roles.
    pub roles: std::sync::Arc<[String]>,
    /// `sub`, if present.
    pub subject: Option<String>,
    /// Whether a verified token stands behind this identity.
    pub authenticated: bool,
    /// The roles as a PostgreSQL text array (`app.roles`), worked out once per token.
    pub roles_text: Option<String>,
    /// The token's `exp` (seconds since the epoch): long-lived subscriptions end then.
    pub expires_at: Option<u64>,
}

/// The claim that marks a token issued under the development profile (`true`).
pub const DEVELOPMENT_CLAIM: &str = "fraiseql_dev";

/// Verifies tokens for one `[auth]` config.
pub struct Verifier {
    config: AuthConfig,
    /// The production profile: tokens marked with [`DEVELOPMENT_CLAIM`] are refused.
    production: bool,
    validation: Validation,
    key: Option<DecodingKey>,
    jwks: HashMap<String, DecodingKey>,
    /// Verified tokens (by their full text) with their `exp`: clients resend the same token on
    /// every request, and a signature check per request is pure overhead. Bounded by bytes.
    verified:
        moka::sync::Cache<String, (std::sync::Arc<Identity>, u64), foldhash::fast::RandomState>,
}

/// Bytes the verified-token cache may hold.
const VERIFIED_CACHE_BYTES: u64 = 4 * 1024 * 1024;

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|e| AuthError::Keys(format!("cannot read {}: {e}", path.display())))
}

impl Verifier {
    /// Loads keys; fails at start-up, never at the first request. Under `profile` production,
    /// development tokens are refused.
    pub fn new(config: &AuthConfig, profile: Profile) -> Result<Self, AuthError> {
        super::crypto::install();
        let alg = algorithm(config.algorithm);
        let mut validation = Validation::new(alg);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        // A configured issuer or audience is required, not only compared when present.
        let mut required = vec!["exp"];
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let bad = |e: jsonwebtoken::errors::Error| AuthError::Keys(e.to_string());
        let key = match config.algorithm {
            JwtAlgorithm::Hs256 => config
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            JwtAlgorithm::Rs256 => match &config.public_key {
                Some(p) => Some(DecodingKey::from_rsa_pem(&read(p)?).map_err(bad)?),
                None => None,
            },
            JwtAlgorithm::Es256 => match &config.public_key {
                Some(p) => Some(DecodingKey::from_ec_pem(&read(p)?).map_err(bad)?),
                None => None,
            },
        };
        let mut jwks = HashMap::new();
        if let (Some(path), false) = (&config.jwks, config.algorithm == JwtAlgorithm::Hs256) {
            let set: JwkSet = serde_json::from_slice(&read(path)?)
                .map_err(|e| AuthError::Keys(format!("{} is not a JWKS: {e}", path.display())))?;
            for jwk in &set.keys {
                if let Some(kid) = &jwk.common.key_id {
                    jwks.insert(kid.clone(), DecodingKey::from_jwk(jwk).map_err(bad)?);
                }
            }
        }
        if key.is_none() && jwks.is_empty() {
            return Err(AuthError::Keys("no verification key configured".into()));
        }
        Ok(Self {
            config: config.clone(),
            production: profile == Profile::Production,
            validation,
            key,
            jwks,
            verified: moka::sync::Cache::builder()
                .weigher(|k: &String, _: &(std::sync::Arc<Identity>, u64)| {
                    u32::try_from(k.len() + 256).unwrap_or(u32::MAX)
                })
                .max_capacity(VERIFIED_CACHE_BYTES)
                .time_to_live(std::time::Duration::from_secs(60))
                .build_with_hasher(foldhash::fast::RandomState::default()),
        })
    }

    /// Whether requests must carry a token.
    pub fn required(&self) -> bool {
        self.config.required
    }

    /// Verifies `token` and extracts the identity.
    pub fn verify(&self, token: &str) -> Result<std::sync::Arc<Identity>, AuthError> {
        if let Some((identity, exp)) = self.verified.get(token) {
            if now_secs() < exp.saturating_add(self.config.leeway_secs) {
                return Ok(identity);
            }
            self.verified.invalidate(token);
        }
        let (identity, exp) = self.verify_uncached(token)?;
        let identity = std::sync::Arc::new(identity);
        if token.len() <= 8192 {
            self.verified
                .insert(token.to_owned(), (identity.clone(), exp));
        }
        Ok(identity)
    }

    fn verify_uncached(&self, token: &str) -> Result<(Identity, u64), AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let header = decode_header(token).map_err(invalid)?;
        let key = match header.kid.as_ref().and_then(|k| self.jwks.get(k)) {
            Some(k) => k,
            None => self
                .key
                .as_ref()
                .ok_or_else(|| AuthError::Invalid("unknown key id".into()))?,
        };
        let data =
            decode::<serde_json::Map<String, serde_json::Value>>(token, key, &self.validation)
                .map_err(invalid)?;
        let claims = data.claims;
        if self.production && claims.get(DEVELOPMENT_CLAIM).is_some_and(|v| *v != false) {
            return Err(AuthError::Invalid(
                "a development token (issued under the development profile) is refused by a production server".into(),
            ));
        }
        // jsonwebtoken accepts a list for `iss`; RFC 7519 makes it one string.
        if self.config.issuer.is_some() && !claims.get("iss").is_some_and(|v| v.is_string()) {
            return Err(AuthError::Invalid("claim `iss` must be a string".into()));
        }
        let tenant = match claims.get(&self.config.tenant_claim) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(AuthError::Invalid(format!(
                    "claim `{}` must be a string",
                    self.config.tenant_claim
                )))
            }
        };
        let roles = match claims.get(&self.config.roles_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                return Err(AuthError::Invalid(format!(
                    "claim `{}` must be a list of strings",
                    self.config.roles_claim
                )))
            }
        };
        let tenants = match self
            .config
            .tenants_claim
            .as_ref()
            .map(|c| (c, claims.get(c)))
        {
            None | Some((_, None | Some(serde_json::Value::Null))) => Vec::new(),
            Some((_, Some(serde_json::Value::Array(a)))) if a.iter().all(|v| v.is_string()) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some((c, Some(_))) => {
                return Err(AuthError::Invalid(format!(
                    "claim `{c}` must be a list of tenant keys"
                )))
            }
        };
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        // `exp` is required and was validated; it bounds how long the result may be reused.
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let roles_text = (!roles.is_empty()).then(|| {
            fraiseql_plan::param_text(&serde_json::Value::Array(
                roles
                    .iter()
                    .cloned()
                    .map(serde_json::Value::String)
                    .collect(),
            ))
            .unwrap_or_default()
        });
        Ok((
            Identity {
                tenant,
                tenants,
                roles: roles.into(),
                subject,
                authenticated: true,
                roles_text,
                expires_at: Some(exp),
            },
            exp,
        ))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Issues a token for `tenant` with `roles`, signed with the configured key (`fraiseql token`,
/// the development GraphiQL link). Under the development `profile` it is marked with
/// [`DEVELOPMENT_CLAIM`], so production servers refuse it.
pub fn issue(
    config: &AuthConfig,
    profile: Profile,
    tenant: &str,
    roles: &[String],
    subject: Option<&str>,
) -> Result<String, AuthError> {
    let now = now_secs();
    let mut claims = serde_json::Map::new();
    claims.insert(config.tenant_claim.clone(), tenant.into());
    claims.insert(config.roles_claim.clone(), roles.to_vec().into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), (now + config.token_ttl_secs).into());
    claims.insert("sub".into(), subject.unwrap_or("dev").into());
    if profile == Profile::Development {
        claims.insert(DEVELOPMENT_CLAIM.into(), true.into());
    }
    if let Some(iss) = &config.issuer {
        claims.insert("iss".into(), iss.clone().into());
    }
    if let Some(aud) = &config.audience {
        claims.insert("aud".into(), aud.clone().into());
    }
    sign(config, &claims)
}

/// Signs `claims` as they are with the configured key (for `fraiseql token`, and for tests
/// that need tokens missing a claim).
pub fn sign(
    config: &AuthConfig,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, AuthError> {
    super::crypto::install();
    let bad = |e: jsonwebtoken::errors::Error| AuthError::Keys(e.to_string());
    let key = match config.algorithm {
        JwtAlgorithm::Hs256 => EncodingKey::from_secret(
            config
                .secret
                .as_deref()
                .ok_or_else(|| AuthError::Keys("no secret".into()))?
                .as_bytes(),
        ),
        JwtAlgorithm::Rs256 | JwtAlgorithm::Es256 => {
            let path = config.private_key.as_ref().ok_or_else(|| {
                AuthError::Keys("`[auth] private_key` is needed to sign tokens".into())
            })?;
            let pem = read(path)?;
            if config.algorithm == JwtAlgorithm::Rs256 {
                EncodingKey::from_rsa_pem(&pem).map_err(bad)?
            } else {
                EncodingKey::from_ec_pem(&pem).map_err(bad)?
            }
        }
    };
    let mut header = Header::new(algorithm(config.algorithm));
    header.kid = config.key_id.clone();
    encode(&header, claims, &key).map_err(bad)
}

#[cfg(test)]
mod tests;
