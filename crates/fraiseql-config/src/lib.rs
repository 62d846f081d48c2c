//! `fraiseql.toml`: the configuration model, `${VAR}` / `${VAR:-default}` expansion and validation.
//!
//! Pure: reading the file and the environment are injected, so everything here is tested without I/O.
//! Every error names the key and the line of the file it comes from.

mod error;
mod expand;
mod load;
mod model;

pub use error::ConfigError;
pub use load::plans::ADMIN_TOKEN_BYTES;
pub use load::{
    load_file, parse_str, subject_matches, KNOWN_DEVELOPMENT_SECRETS, PRODUCTION_SECRET_BYTES,
    RESERVED_PAYLOAD_KEYS,
};
pub use model::{AdminConfig, TierConfig, DEFAULT_TIER};
pub use model::{
    AuthConfig, CacheConfig, ChangeKind, Config, DatabaseConfig, DatabaseType, FederationConfig,
    JwtAlgorithm, LimitsConfig, LogFormat, LoggingConfig, MetricsConfig, MultiTenancyConfig,
    NatsConfig, ObserverRule, ObserversConfig, Profile, Retention, SchemaConfig, SecurityConfig,
    ServerConfig, StreamConfig, SubscriberConfig, SubscriptionsConfig, TenancyStrategy,
    TracingConfig, TransferConfig, TrustedDocumentsConfig, TrustedMode, MIN_ARCHIVE_KEY_BYTES,
    TENANT_DATABASE,
};
