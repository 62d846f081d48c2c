//! `[tiers.<name>]` (the plans a tenant's registry `tier` picks) and `[admin]` (the tenant
//! lifecycle over HTTP): each refused value names its key.

use std::collections::BTreeMap;
use std::path::Path;

use super::{resolve, valid_listen, Cx};
use crate::error::ConfigError;
use crate::model::*;

/// The shortest `[admin] token` accepted: it guards tenant creation, suspension and backups.
pub const ADMIN_TOKEN_BYTES: usize = 32;

impl Cx<'_> {
    pub(super) fn tiers(
        &self,
        raw: BTreeMap<String, RawTier>,
        limits: &LimitsConfig,
    ) -> Result<BTreeMap<String, TierConfig>, ConfigError> {
        let big = i64::from(u32::MAX);
        let mut tiers = BTreeMap::new();
        for (name, t) in raw {
            let path = format!("tiers.{name}");
            // The registry's tier column holds any text; the names a config can list are the
            // ones a CLI and an API can pass around without quoting.
            let name_ok = !name.is_empty()
                && name.len() <= 40
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !name_ok {
                return Err(self.invalid(&path, "a tier name is 1-40 of [a-z0-9_-]"));
            }
            let opt = |key: &str, n: Option<Num>, min: i64, max: i64| match n {
                None => Ok(None),
                some => self
                    .int(&format!("{path}.{key}"), some, 0, min, max)
                    .map(Some),
            };
            let rps = opt("requests_per_second", t.requests_per_second, 1, big)?;
            let burst = opt("burst", t.burst, 1, big)?;
            if burst.is_some() && rps.is_none() {
                return Err(self.invalid(
                    &format!("{path}.burst"),
                    "`burst` is the size of the `requests_per_second` bucket: set requests_per_second too",
                ));
            }
            let timeout = opt("statement_timeout_ms", t.statement_timeout_ms, 1, big)?;
            if let Some(ms) = timeout.filter(|ms| *ms as u64 > limits.request_timeout_ms) {
                return Err(self.invalid(
                    &format!("{path}.statement_timeout_ms"),
                    format!(
                        "{ms} is above [limits] request_timeout_ms ({}), which ends every request first; use at most that",
                        limits.request_timeout_ms
                    ),
                ));
            }
            let max_rows = opt("max_rows", t.max_rows, 1, i64::MAX)?;
            if let Some(rows) = max_rows.filter(|r| *r as u64 > limits.max_rows) {
                return Err(self.invalid(
                    &format!("{path}.max_rows"),
                    format!(
                        "{rows} is above [limits] max_rows ({}), which applies to every tenant; raise that, or use at most it here",
                        limits.max_rows
                    ),
                ));
            }
            let as_u32 = |v: Option<i64>| v.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
            tiers.insert(
                name,
                TierConfig {
                    requests_per_second: as_u32(rps),
                    burst: as_u32(burst),
                    mutations_per_second: as_u32(opt(
                        "mutations_per_second",
                        t.mutations_per_second,
                        1,
                        big,
                    )?),
                    max_concurrent: as_u32(opt("max_concurrent", t.max_concurrent, 1, big)?),
                    statement_timeout_ms: timeout.map(|v| v as u64),
                    max_rows: max_rows.map(|v| v as u64),
                    max_subscriptions: as_u32(opt(
                        "max_subscriptions",
                        t.max_subscriptions,
                        0,
                        big,
                    )?),
                    weight: self.int(&format!("{path}.weight"), t.weight, 1, 1, 1000)? as u32,
                },
            );
        }
        Ok(tiers)
    }

    pub(super) fn admin(
        &self,
        raw: RawAdmin,
        base: &Path,
        auth: Option<&AuthConfig>,
        multi_tenancy: &MultiTenancyConfig,
    ) -> Result<AdminConfig, ConfigError> {
        let listen = raw
            .listen
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let token = raw.token.filter(|s| !s.trim().is_empty());
        if let Some(l) = &listen {
            if !valid_listen(l) {
                return Err(self.invalid(
                    "admin.listen",
                    format!("{l:?} is not host:port (e.g. \"127.0.0.1:9200\")"),
                ));
            }
            if !multi_tenancy.enabled {
                return Err(self.invalid(
                    "admin.listen",
                    "the admin API manages tenants: it needs [multi_tenancy] enabled = true",
                ));
            }
            if token.is_none() {
                return Err(self.invalid(
                    "admin.token",
                    "[admin] listen needs a token (e.g. token = \"${FRAISEQL_ADMIN_TOKEN}\", made with `openssl rand -hex 32`)",
                ));
            }
        }
        if let Some(t) = &token {
            if t.len() < ADMIN_TOKEN_BYTES {
                return Err(self.invalid(
                    "admin.token",
                    format!(
                        "use a token of at least {ADMIN_TOKEN_BYTES} bytes (e.g. `openssl rand -hex 32`)"
                    ),
                ));
            }
            if auth.and_then(|a| a.secret.as_deref()) == Some(t.as_str()) {
                return Err(self.invalid(
                    "admin.token",
                    "is the same as [auth] secret: anyone who can sign a tenant's token could manage every tenant; use a token of its own",
                ));
            }
        }
        let backup_dir = raw
            .backup_dir
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "backups".to_owned());
        Ok(AdminConfig {
            listen,
            token,
            backup_dir: resolve(base, &backup_dir),
        })
    }
}
