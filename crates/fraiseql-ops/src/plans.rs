//! `fraiseql tenant set-tier` (a tenant's plan) and the usage `fraiseql tenant list` and the
//! admin API show. Running servers apply a tier change within `directory::RECORD_TTL` (they
//! re-read the registry); usage is what the servers added to the registry's monthly rows.

use fraiseql_config::Config;
use fraiseql_engine::tenancy::keys;
use fraiseql_engine::tenancy::registry::{self, TenantRecord};
use fraiseql_engine::tenancy::usage::{self, Usage};

use crate::error::{provision_db as db, ProvisionError};
use crate::server::registry_client;

/// Whether `tier` names a plan of `config`: `[tiers.<tier>]`, or any name when
/// `[tiers.default]` covers the rest. The error says which names there are.
pub fn check_tier(config: &Config, tier: &str) -> Result<(), String> {
    if config.tier(tier).is_some() || config.tiers.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = config.tiers.keys().map(String::as_str).collect();
    Err(format!(
        "tier `{tier}` is not one of the config's [tiers] ({}), and there is no [tiers.default]: its tenants would have no limits. Add [tiers.{tier}], or pass --force",
        names.join(", ")
    ))
}

/// Sets tenant `key`'s tier. Unless `force`, `tier` must name a plan of `config` (see
/// [`check_tier`]). Returns the updated record.
pub async fn set_tier(
    config: &Config,
    key: &str,
    tier: &str,
    force: bool,
) -> Result<TenantRecord, ProvisionError> {
    if !keys::is_valid(key) {
        return Err(ProvisionError::InvalidKey(keys::why_invalid(key)));
    }
    let tier_ok = !tier.is_empty()
        && tier.len() <= 40
        && tier
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !tier_ok {
        return Err(ProvisionError::Config(format!(
            "tier {tier:?}: a tier name is 1-40 of [a-z0-9_-]"
        )));
    }
    if !force {
        check_tier(config, tier).map_err(ProvisionError::Config)?;
    }
    let registry = registry_client(config).await?;
    if !registry::set_tier(&registry, key, tier)
        .await
        .map_err(db("registry"))?
    {
        return Err(ProvisionError::Unknown(key.to_owned()));
    }
    registry::get(&registry, key)
        .await
        .map_err(db("registry"))?
        .ok_or_else(|| ProvisionError::Unknown(key.to_owned()))
}

/// This month's usage (UTC) of every tenant that used anything, and the month (`YYYY-MM`).
pub async fn usage(config: &Config) -> Result<(String, Vec<Usage>), ProvisionError> {
    let registry = registry_client(config).await?;
    usage::this_month(&registry).await.map_err(db("usage"))
}
