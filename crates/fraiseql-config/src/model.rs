//! The typed configuration. Field names are the keys users write (INTERFACE.md fixes them).

mod plans;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use plans::{AdminConfig, TierConfig, DEFAULT_TIER};
pub(crate) use plans::{RawAdmin, RawTier};

/// The name of the per-tenant database in `[databases]`.
pub const TENANT_DATABASE: &str = "tenant";

/// The whole of `fraiseql.toml`, validated and with every `${VAR}` expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[schema]`
    pub schema: SchemaConfig,
    /// `[multi_tenancy]`
    pub multi_tenancy: MultiTenancyConfig,
    /// `[databases.<name>]`, by name; `tenant` is the per-tenant database.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// `[observers]`
    pub observers: ObserversConfig,
    /// `[[subscribers]]`: JetStream consumer groups writing events into a database.
    pub subscribers: Vec<SubscriberConfig>,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[auth]`, if present.
    pub auth: Option<AuthConfig>,
    /// `[rbac]`: schema coordinate (`Query.tenantConfig`, `Organization.memberCount`) -> roles
    /// allowed to read it. Coordinates not listed are open to every authenticated caller.
    pub rbac: BTreeMap<String, Vec<String>>,
    /// `[metrics]`
    pub metrics: MetricsConfig,
    /// `[logging]`
    pub logging: LoggingConfig,
    /// `[cache]`: the result cache of `@cache` root fields.
    pub cache: CacheConfig,
    /// NATS connection settings: `[nats]` (or the one-server form `[observers] nats_url`).
    pub nats: NatsConfig,
    /// `[federation]`: what the engine tells a gateway.
    pub federation: FederationConfig,
    /// `[transfer]`: tenant backup, restore and move.
    pub transfer: TransferConfig,
    /// `[subscriptions]`: GraphQL subscriptions over WebSocket and Server-Sent Events.
    pub subscriptions: SubscriptionsConfig,
    /// `[security]`: trusted documents and automatic persisted queries.
    pub security: SecurityConfig,
    /// `[tracing]`: OpenTelemetry traces exported over OTLP/HTTP (off without an endpoint).
    pub tracing: TracingConfig,
    /// `[tiers.<name>]`: the plans a tenant's registry `tier` picks (`default` for tiers not
    /// listed). Empty: no tenant is limited beyond `[limits]`.
    pub tiers: BTreeMap<String, TierConfig>,
    /// `[admin]`: the tenant lifecycle over HTTP, on a listener of its own.
    pub admin: AdminConfig,
}

/// `[security]`
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    /// Automatic persisted queries (Apollo's protocol): a client may send a document's SHA-256
    /// alone once the server has seen the document. Ignored while trusted documents are strict.
    pub apq: bool,
    /// Most bytes the automatic persisted queries' store holds (documents and their hashes).
    pub apq_cache_bytes: u64,
    /// `[security.trusted_documents]`
    pub trusted_documents: TrustedDocumentsConfig,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            apq: true,
            apq_cache_bytes: 8 * 1024 * 1024,
            trusted_documents: TrustedDocumentsConfig::default(),
        }
    }
}

/// `[security.trusted_documents]`: the documents this API serves, from a manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrustedDocumentsConfig {
    /// Whether the manifest is loaded and requests are checked against it.
    pub enabled: bool,
    /// `strict` (default): only the manifest's documents run; `permissive`: any document runs,
    /// and those outside the manifest are counted (`fraiseql_untrusted_documents_total`).
    pub mode: TrustedMode,
    /// The manifest file (`{"version": 1, "documents": {"<sha256>": "<document>"}}`), resolved
    /// against the config file's folder. Required when `enabled`.
    pub manifest_path: Option<PathBuf>,
}

/// `[security.trusted_documents] mode`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustedMode {
    /// Only documents of the manifest run (`FORBIDDEN_QUERY` for any other).
    #[default]
    Strict,
    /// Every document runs; those outside the manifest are counted and logged.
    Permissive,
}

/// `[tracing]`
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The OTLP/HTTP endpoint's base URL (`http://collector:4318`): spans go to
    /// `<endpoint>/v1/traces`. `None`: no exporter at all (the default). When the key is absent,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is read.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans (default `fraiseql`, or `OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// Share of traces sampled at their root (0..=1, default 1); a request that arrives with a
    /// `traceparent` follows its caller's decision.
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "fraiseql".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

/// `[subscriptions]`: GraphQL subscriptions (WebSocket `graphql-transport-ws` and Server-Sent
/// Events on `/graphql`), fed by change events in a JetStream stream of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionsConfig {
    /// Whether subscriptions are served (they need `[observers] enabled`: the outbox relay
    /// publishes their change events).
    pub enabled: bool,
    /// Most WebSocket and SSE connections open at once on this instance.
    pub max_connections: usize,
    /// Most subscriptions one WebSocket connection may hold.
    pub max_subscriptions_per_connection: usize,
    /// Most subscriptions one tenant may hold on this instance.
    pub max_subscriptions_per_tenant: usize,
    /// Seconds between keep-alives (WebSocket ping, SSE comment).
    pub keepalive_secs: u64,
    /// How long a WebSocket may take to send `connection_init` (then closed with 4408).
    pub connection_init_timeout_ms: u64,
    /// Events waiting to be written per subscriber; a subscriber whose buffer is full is
    /// disconnected ("too slow").
    pub buffer: usize,
    /// Change events are published on `<subject_prefix>.<tenant>.<Entity>.<OPERATION>`.
    pub subject_prefix: String,
    /// The JetStream stream holding change events (subjects `<subject_prefix>.>`).
    pub stream: String,
    /// How long the stream keeps change events: the window in which a client can resume.
    pub retention_secs: u64,
    /// Replicas of the stream (1 on a single server).
    pub replicas: usize,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_connections: 10_000,
            max_subscriptions_per_connection: 100,
            max_subscriptions_per_tenant: 10_000,
            keepalive_secs: 15,
            connection_init_timeout_ms: 3_000,
            buffer: 100,
            subject_prefix: "fraiseql.changes".to_owned(),
            stream: "FRAISEQL_CHANGES".to_owned(),
            retention_secs: 3_600,
            replicas: 1,
        }
    }
}

/// `[federation]`
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FederationConfig {
    /// A bearer token only the gateway holds: `_service { sdl }` (the whole schema, descriptions
    /// and RBAC-guarded fields included) is answered without a user's token to a request that
    /// carries it. Without it, `_service` follows `[limits] introspection`.
    pub service_token: Option<String>,
}

/// `[transfer]`: what `fraiseql tenant backup` signs archives with and `restore` checks them
/// against.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TransferConfig {
    /// The key archives are authenticated with (HMAC-SHA256), at least 32 bytes; `None` when
    /// unset or empty (backups then need `--insecure-unsigned`).
    pub archive_key: Option<String>,
}

impl std::fmt::Debug for TransferConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferConfig")
            .field("archive_key", &self.archive_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The shortest `[transfer] archive_key` accepted, in bytes.
pub const MIN_ARCHIVE_KEY_BYTES: usize = 32;

/// `[metrics]`
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Whether metrics are recorded at all (`GET /metrics` answers 404 when off).
    pub enabled: bool,
    /// Serve `/metrics` on this `host:port` instead of the `[server]` port (so it can be kept
    /// off the public interface).
    pub listen: Option<String>,
    /// A bearer token `/metrics` requires (`Authorization: Bearer <token>`), wherever it is
    /// served. Without `listen` or `token`, the production profile serves no `/metrics` beside
    /// `/graphql` (it lists tenant keys); the development profile serves it there openly.
    pub token: Option<String>,
    /// Tenants that keep a `tenant_id` label of their own; later ones report as `other`.
    pub max_tenant_labels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            token: None,
            max_tenant_labels: 100,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

/// `[cache]`
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Whether `@cache` fields are cached (off: always read from the database).
    pub enabled: bool,
    /// Most bytes the cached answers may take (keys and values).
    pub max_bytes: u64,
    /// NATS subject prefix invalidations travel on between server instances.
    pub subject: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            subject: "fraiseql.cache".to_owned(),
        }
    }
}

/// How NATS is reached: `[nats]`, or `[observers] nats_url` as a one-server list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NatsConfig {
    /// Server URLs (`nats://` or `tls://`); empty: no NATS configured.
    pub servers: Vec<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// PEM file of the CA(s) that signed the servers' certificates.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub tls_key: Option<PathBuf>,
    /// Refuse a connection that is not TLS.
    pub require_tls: bool,
    /// Connection name shown by `nats server report connections`.
    pub name: String,
    /// Reconnect attempts before giving up (0: forever).
    pub max_reconnects: usize,
    /// Longest delay between reconnect attempts, in milliseconds.
    pub reconnect_delay_ms: u64,
    /// Time to establish a connection, in milliseconds.
    pub connect_timeout_ms: u64,
}

/// `[server]`: where the HTTP server listens.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Interface to bind (default `127.0.0.1`).
    pub host: String,
    /// Port (default 8080).
    pub port: u16,
    /// `production` (default) or `development`.
    pub profile: Profile,
}

/// What kind of deployment this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Nothing is given away.
    Production,
    /// `fraiseql run` prints a GraphiQL link carrying a development token.
    Development,
}

/// `[schema]`: the GraphQL SDL file.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaConfig {
    /// Path of the SDL file, resolved against the config file's folder.
    pub path: PathBuf,
}

/// Tenant isolation strategy (`[multi_tenancy] strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenancyStrategy {
    /// One database per tenant (the seed's default).
    DatabasePerTenant,
    /// One schema per tenant in a shared database.
    SchemaPerTenant,
    /// Shared tables, isolated by row-level security only.
    RowLevel,
}

impl TenancyStrategy {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DatabasePerTenant => "database_per_tenant",
            Self::SchemaPerTenant => "schema_per_tenant",
            Self::RowLevel => "row_level",
        }
    }
}

/// `[multi_tenancy]`
#[derive(Debug, Clone, PartialEq)]
pub struct MultiTenancyConfig {
    /// Whether requests are routed per tenant.
    pub enabled: bool,
    /// How tenants are isolated.
    pub strategy: TenancyStrategy,
    /// The header naming the tenant (default `X-Tenant-ID`).
    pub auth_header: String,
    /// The `[databases.<name>]` holding the tenant registry (default `shared`).
    pub registry: String,
    /// Prefix of each tenant's database, schema and role name (default `tenant_`).
    pub name_prefix: String,
    /// Most connections open at once across all tenant pools (default 100).
    pub connection_budget: usize,
    /// A tenant pool unused this long is closed, in seconds (default 60).
    pub idle_pool_secs: u64,
    /// Let the tenant header alone pick the tenant for callers without a token (development,
    /// or behind a gateway that authenticates). Off by default: a tenant must be named by a
    /// verified token.
    pub trust_tenant_header: bool,
    /// NATS subject on which instances tell each other what each tenant consumed of its plan's
    /// rates (default `fraiseql.quota`).
    pub quota_subject: String,
}

/// JWT signature algorithm, fixed by config (a token's own `alg` header is never trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

/// `[auth]`: bearer tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// Whether every `/graphql` request needs a valid token.
    pub required: bool,
    /// The only accepted algorithm.
    pub algorithm: JwtAlgorithm,
    /// HS256 secret.
    pub secret: Option<String>,
    /// RS256/ES256 verification key, a PEM file.
    pub public_key: Option<PathBuf>,
    /// RS256/ES256 signing key for `fraiseql token`, a PEM file.
    pub private_key: Option<PathBuf>,
    /// RS256/ES256 verification keys as a JWKS file (selected by `kid`).
    pub jwks: Option<PathBuf>,
    /// `kid` put in the header of tokens issued by `fraiseql token` (to match a JWKS entry).
    pub key_id: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Claim naming the tenant key.
    pub tenant_claim: String,
    /// Claim listing the roles.
    pub roles_claim: String,
    /// Claim listing every tenant key the token may act for (machine-to-machine tokens); the
    /// tenant header then picks one of them. `None`: only the single `tenant_claim` is honoured.
    pub tenants_claim: Option<String>,
    /// Clock skew allowed for `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// Lifetime of tokens issued by `fraiseql token`, in seconds.
    pub token_ttl_secs: u64,
}

/// The only database type today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseType {
    /// PostgreSQL (the `type = "postgresql"` of the seed).
    Postgresql,
}

/// `[databases.<name>]`
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// `type`
    pub kind: DatabaseType,
    /// Connection URL; optional for `tenant`, whose targets come from the tenant registry.
    pub url: Option<String>,
    /// Maximum connections in one pool of this database.
    pub pool_max: usize,
    /// Seconds to wait for a free connection before failing the request.
    pub pool_timeout_secs: u64,
    /// Folder of `*.sql` migrations for this database (resolved against the config's folder).
    pub migrations: Option<PathBuf>,
}

/// `[observers]`
#[derive(Debug, Clone, PartialEq)]
pub struct ObserversConfig {
    /// Whether events are published.
    pub enabled: bool,
    /// Event backend (only `nats`; the servers are `Config::nats`).
    pub backend: String,
    /// The JetStream stream events are published to (created at start-up if missing).
    pub stream: StreamConfig,
    /// How long a publish waits for JetStream's acknowledgement.
    pub publish_timeout_ms: u64,
    /// How often tenants known to have unpublished events are swept.
    pub sweep_interval_ms: u64,
    /// How often EVERY tenant's outbox is swept (also once at start-up): finds events another
    /// instance committed and could not publish before it died.
    pub full_sweep_secs: u64,
    /// The `[databases.<name>]` holding `fraiseql_dead_letter` (default: the registry under
    /// multi-tenancy, else `tenant`).
    pub dead_letter_database: Option<String>,
    /// `[[observers.rules]]`: which entity changes publish which subject.
    pub rules: Vec<ObserverRule>,
}

/// `[observers.stream]`: the JetStream stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Stream name.
    pub name: String,
    /// Subjects it captures (every observer's subject must match one).
    pub subjects: Vec<String>,
    /// JetStream de-duplicates messages with the same `Nats-Msg-Id` within this window.
    pub duplicate_window_secs: u64,
    /// `limits`, `interest` or `workqueue`.
    pub retention: Retention,
    /// Replicas (1 on a single server).
    pub replicas: usize,
    /// Messages older than this are discarded (0: kept until limits).
    pub max_age_secs: u64,
}

/// Stream retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Kept until the stream's limits.
    Limits,
    /// Kept while a consumer has not acknowledged it.
    Interest,
    /// Removed once acknowledged by one consumer.
    WorkQueue,
}

/// What kind of change an observer reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Rows created.
    Create,
    /// Rows updated.
    Update,
    /// Rows deleted.
    Delete,
}

impl ChangeKind {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    /// Parses `CREATE`, `UPDATE` or `DELETE`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CREATE" => Some(Self::Create),
            "UPDATE" => Some(Self::Update),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// `[[observers.rules]]`: when `entity` sees `event`, publish to `subject`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverRule {
    /// The GraphQL type (with `@view`) whose changes are observed.
    pub entity: String,
    /// The change.
    pub event: ChangeKind,
    /// The subject published to (also the payload's `event_type`).
    pub subject: String,
    /// Payload key -> key of the entity's view `data` (for DELETE only the row's key is known).
    pub payload: BTreeMap<String, String>,
}

/// `[[subscribers]]`: a consumer group running SQL for each message.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberConfig {
    /// Subject filter, e.g. `analytics.>`.
    pub subject: String,
    /// The durable consumer's name, shared by every server instance.
    pub consumer_group: String,
    /// The `[databases.<name>]` the SQL runs on.
    pub database: Option<String>,
    /// One statement; `$name` binds the message's top-level field `name` (`NULL` if absent),
    /// `$data` the whole message, `$subject` its subject. Without it, a Rust handler registered
    /// for the consumer group handles the messages.
    pub sql: Option<String>,
    /// Deliveries before a message goes to the dead letters.
    pub max_deliver: i64,
    /// Seconds before an unacknowledged delivery is redelivered.
    pub ack_wait_secs: u64,
    /// First redelivery delay after a failure, doubled per attempt up to `max_backoff_ms`.
    pub backoff_ms: u64,
    /// Longest redelivery delay.
    pub max_backoff_ms: u64,
}

/// `[limits]`: every request is checked against these before any SQL runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Most lexical tokens in one GraphQL document.
    pub max_tokens: usize,
    /// Deepest selection nesting (root fields are depth 1).
    pub max_depth: usize,
    /// Most aliased fields in one operation.
    pub max_aliases: usize,
    /// Most root fields in one operation.
    pub max_root_fields: usize,
    /// Largest `limit` a list field accepts.
    pub max_limit: i64,
    /// Longest string (in characters) accepted in an argument value.
    pub max_string_length: usize,
    /// Longest list accepted in an argument value (e.g. `bulkCreateProjects(names:)`).
    pub max_list_length: usize,
    /// Whole-request time limit, in milliseconds (execution, once the body is read).
    pub request_timeout_ms: u64,
    /// Time a client has to send a request's headers (and, on a kept-alive connection, the next
    /// request's), in milliseconds; then the connection is closed.
    pub header_timeout_ms: u64,
    /// Time a client has to send a request's body, in milliseconds (408 after it). Bodies are
    /// read before a request counts against `max_in_flight`, so slow senders take no slot.
    pub body_timeout_ms: u64,
    /// Whether introspection (`__schema`, `__type`) is allowed.
    pub introspection: bool,
    /// Most fields in one operation once fragments are expanded (the selection budget).
    pub max_fields: usize,
    /// Most rows one operation may produce: the product of the limits of nested lists.
    pub max_rows: u64,
    /// Most `/graphql` requests in flight at once; more are answered 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Bytes of parsed documents kept in the document cache.
    pub document_cache_bytes: u64,
    /// Bytes of plans kept in the plan cache.
    pub plan_cache_bytes: u64,
    /// Prepared statements kept per database connection (least recently used are closed).
    pub prepared_statements: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_tokens: 15_000,
            max_depth: 12,
            max_aliases: 30,
            max_root_fields: 20,
            max_limit: 1000,
            max_string_length: 65_536,
            max_list_length: 10_000,
            request_timeout_ms: 30_000,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            introspection: true,
            max_fields: 1000,
            max_rows: 100_000,
            max_in_flight: 512,
            // About 2 KiB per operation in both: thousands of distinct operations, while a
            // stream of documents that differ only in literals (a client that inlines its
            // values) holds the server near 30 MiB (bench/events.sh: 42 MiB with 16 MiB each).
            document_cache_bytes: 4 * 1024 * 1024,
            plan_cache_bytes: 4 * 1024 * 1024,
            prepared_statements: 256,
        }
    }
}

// ---- the raw, serde-facing shape: unknown keys rejected, numbers may come from `${VAR}` strings ----

/// An integer written either as a TOML integer or as a string (so it can come from `${VAR}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "expected an integer (or a string such as \"${VAR:-10}\")"
)]
pub(crate) enum Num {
    Int(i64),
    Str(String),
}

/// A boolean written as TOML or as a string (`"${FLAG:-true}"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a boolean (or a string such as \"${VAR:-true}\")"
)]
pub(crate) enum Flag {
    Bool(bool),
    Str(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub schema: RawSchema,
    #[serde(default)]
    pub multi_tenancy: RawMultiTenancy,
    #[serde(default)]
    pub databases: BTreeMap<String, RawDatabase>,
    #[serde(default)]
    pub observers: RawObservers,
    #[serde(default)]
    pub subscribers: Vec<RawSubscriber>,
    #[serde(default)]
    pub limits: RawLimits,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub rbac: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub federation: RawFederation,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub cache: RawCache,
    pub nats: Option<RawNats>,
    #[serde(default)]
    pub transfer: RawTransfer,
    #[serde(default)]
    pub subscriptions: RawSubscriptions,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub tracing: RawTracing,
    #[serde(default)]
    pub tiers: BTreeMap<String, RawTier>,
    #[serde(default)]
    pub admin: RawAdmin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    pub apq: Option<Flag>,
    pub apq_cache_bytes: Option<Num>,
    #[serde(default)]
    pub trusted_documents: RawTrustedDocuments,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrustedDocuments {
    pub enabled: Option<Flag>,
    pub mode: Option<String>,
    pub manifest_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<Ratio>,
}

/// A number written as a TOML float or integer, or as a string (`"${RATIO:-0.1}"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a number (or a string such as \"${VAR:-0.1}\")"
)]
pub(crate) enum Ratio {
    Float(f64),
    Int(i64),
    Str(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransfer {
    pub archive_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscriptions {
    pub enabled: Option<Flag>,
    pub max_connections: Option<Num>,
    pub max_subscriptions_per_connection: Option<Num>,
    pub max_subscriptions_per_tenant: Option<Num>,
    pub keepalive_secs: Option<Num>,
    pub connection_init_timeout_ms: Option<Num>,
    pub buffer: Option<Num>,
    pub subject_prefix: Option<String>,
    pub stream: Option<String>,
    pub retention_secs: Option<Num>,
    pub replicas: Option<Num>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub enabled: Option<Flag>,
    pub listen: Option<String>,
    pub token: Option<String>,
    pub max_tenant_labels: Option<Num>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFederation {
    pub service_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogging {
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub enabled: Option<Flag>,
    pub max_bytes: Option<Num>,
    pub subject: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNats {
    pub servers: Option<Vec<String>>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub require_tls: Option<Flag>,
    pub name: Option<String>,
    pub max_reconnects: Option<Num>,
    pub reconnect_delay_ms: Option<Num>,
    pub connect_timeout_ms: Option<Num>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub host: Option<String>,
    pub port: Option<Num>,
    pub profile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchema {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMultiTenancy {
    pub enabled: Option<Flag>,
    pub strategy: Option<String>,
    pub auth_header: Option<String>,
    pub registry: Option<String>,
    pub name_prefix: Option<String>,
    pub connection_budget: Option<Num>,
    pub idle_pool_secs: Option<Num>,
    pub trust_tenant_header: Option<Flag>,
    pub quota_subject: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub required: Option<Flag>,
    pub algorithm: Option<String>,
    pub secret: Option<String>,
    pub public_key: Option<String>,
    pub private_key: Option<String>,
    pub jwks: Option<String>,
    pub key_id: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub tenant_claim: Option<String>,
    pub roles_claim: Option<String>,
    pub tenants_claim: Option<String>,
    pub leeway_secs: Option<Num>,
    pub token_ttl_secs: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub pool_max: Option<Num>,
    pub pool_timeout_secs: Option<Num>,
    pub migrations: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObservers {
    pub enabled: Option<Flag>,
    pub backend: Option<String>,
    pub nats_url: Option<String>,
    #[serde(default)]
    pub stream: RawStream,
    pub publish_timeout_ms: Option<Num>,
    pub sweep_interval_ms: Option<Num>,
    pub full_sweep_secs: Option<Num>,
    pub dead_letter_database: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStream {
    pub name: Option<String>,
    pub subjects: Option<Vec<String>>,
    pub duplicate_window_secs: Option<Num>,
    pub retention: Option<String>,
    pub replicas: Option<Num>,
    pub max_age_secs: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub entity: String,
    pub event: String,
    pub subject: String,
    #[serde(default)]
    pub payload: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscriber {
    pub subject: String,
    pub consumer_group: String,
    pub database: Option<String>,
    pub sql: Option<String>,
    pub max_deliver: Option<Num>,
    pub ack_wait_secs: Option<Num>,
    pub backoff_ms: Option<Num>,
    pub max_backoff_ms: Option<Num>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_body_bytes: Option<Num>,
    pub max_tokens: Option<Num>,
    pub max_depth: Option<Num>,
    pub max_aliases: Option<Num>,
    pub max_root_fields: Option<Num>,
    pub max_limit: Option<Num>,
    pub max_string_length: Option<Num>,
    pub max_list_length: Option<Num>,
    pub request_timeout_ms: Option<Num>,
    pub header_timeout_ms: Option<Num>,
    pub body_timeout_ms: Option<Num>,
    pub introspection: Option<Flag>,
    pub max_fields: Option<Num>,
    pub max_rows: Option<Num>,
    pub max_in_flight: Option<Num>,
    pub document_cache_bytes: Option<Num>,
    pub plan_cache_bytes: Option<Num>,
    pub prepared_statements: Option<Num>,
}
