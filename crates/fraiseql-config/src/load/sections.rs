//! Building the `Config` sections from their raw TOML forms: one method per section, each
//! naming the key of any value it refuses.

use std::collections::BTreeMap;
use std::path::Path;

use super::{resolve, subject_matches, valid_subject_prefix, Cx};
use crate::error::ConfigError;
use crate::model::*;

impl Cx<'_> {
    pub(super) fn server(&self, raw: RawServer) -> Result<ServerConfig, ConfigError> {
        let profile = match raw.profile.as_deref().map(str::trim) {
            None | Some("production") => Profile::Production,
            Some("development") => Profile::Development,
            Some(other) => {
                return Err(self.invalid(
                    "server.profile",
                    format!("{other:?} is not \"production\" or \"development\""),
                ))
            }
        };
        let server = ServerConfig {
            host: raw.host.unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: self.int("server.port", raw.port, 8080, 0, 65535)? as u16,
            profile,
        };
        Ok(server)
    }

    pub(super) fn multi_tenancy(
        &self,
        mt: RawMultiTenancy,
    ) -> Result<MultiTenancyConfig, ConfigError> {
        let strategy = match mt.strategy.as_deref() {
            None | Some("database_per_tenant") => TenancyStrategy::DatabasePerTenant,
            Some("schema_per_tenant") => TenancyStrategy::SchemaPerTenant,
            Some("row_level") => TenancyStrategy::RowLevel,
            Some(other) => {
                return Err(self.invalid(
                    "multi_tenancy.strategy",
                    format!("unknown strategy {other:?}; expected \"database_per_tenant\", \"schema_per_tenant\" or \"row_level\""),
                ))
            }
        };
        let auth_header = mt
            .auth_header
            .clone()
            .unwrap_or_else(|| "X-Tenant-ID".to_owned());
        let header_ok = !auth_header.is_empty()
            && auth_header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !header_ok {
            return Err(self.invalid(
                "multi_tenancy.auth_header",
                format!("{auth_header:?} is not a valid HTTP header name"),
            ));
        }
        let name_prefix = mt.name_prefix.unwrap_or_else(|| "tenant_".to_owned());
        let prefix_ok = !name_prefix.is_empty()
            && name_prefix.len() <= 14
            && name_prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && name_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !prefix_ok {
            return Err(self.invalid(
                "multi_tenancy.name_prefix",
                "must be 1-14 characters of [a-z0-9_], starting with a letter",
            ));
        }
        let multi_tenancy = MultiTenancyConfig {
            enabled: self.flag("multi_tenancy.enabled", mt.enabled, false)?,
            strategy,
            auth_header,
            registry: mt.registry.unwrap_or_else(|| "shared".to_owned()),
            name_prefix,
            connection_budget: self.int(
                "multi_tenancy.connection_budget",
                mt.connection_budget,
                100,
                1,
                100_000,
            )? as usize,
            idle_pool_secs: self.int(
                "multi_tenancy.idle_pool_secs",
                mt.idle_pool_secs,
                60,
                1,
                86_400,
            )? as u64,
            trust_tenant_header: self.flag(
                "multi_tenancy.trust_tenant_header",
                mt.trust_tenant_header,
                false,
            )?,
            quota_subject: match mt.quota_subject {
                None => "fraiseql.quota".to_owned(),
                Some(s) if valid_subject_prefix(&s) => s,
                Some(_) => {
                    return Err(self.invalid(
                        "multi_tenancy.quota_subject",
                        "a subject is dot-separated tokens of letters, digits, `_` and `-` (no wildcards)",
                    ))
                }
            },
        };

        Ok(multi_tenancy)
    }

    pub(super) fn databases(
        &self,
        raw: BTreeMap<String, RawDatabase>,
        base: &Path,
    ) -> Result<BTreeMap<String, DatabaseConfig>, ConfigError> {
        let mut databases = BTreeMap::new();
        for (name, db) in raw {
            let path = format!("databases.{name}");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(self.invalid(&path, "database names are [A-Za-z0-9_]+"));
            }
            let kind = match db.kind.as_deref() {
                Some("postgresql") | Some("postgres") => DatabaseType::Postgresql,
                Some(other) => {
                    return Err(self.invalid(
                        &format!("{path}.type"),
                        format!("unsupported database type {other:?}; expected \"postgresql\""),
                    ))
                }
                None => {
                    return Err(
                        self.invalid(&path, "missing key `type` (use type = \"postgresql\")")
                    )
                }
            };
            let url = db.url.filter(|u| !u.trim().is_empty());
            if url.is_none() && name != TENANT_DATABASE {
                return Err(self.invalid(
                    &format!("{path}.url"),
                    "missing or empty `url` (only the `tenant` database may omit it)",
                ));
            }
            let pool_max =
                self.int(&format!("{path}.pool_max"), db.pool_max, 10, 1, 10_000)? as usize;
            let pool_timeout_secs = self.int(
                &format!("{path}.pool_timeout_secs"),
                db.pool_timeout_secs,
                5,
                1,
                3600,
            )? as u64;
            databases.insert(
                name,
                DatabaseConfig {
                    kind,
                    url,
                    pool_max,
                    pool_timeout_secs,
                    migrations: db
                        .migrations
                        .filter(|m| !m.is_empty())
                        .map(|m| resolve(base, &m)),
                },
            );
        }
        if !databases.contains_key(TENANT_DATABASE) {
            return Err(self.invalid(
                "databases",
                "missing `[databases.tenant]`: the database the schema's types live in",
            ));
        }

        Ok(databases)
    }

    pub(super) fn limits(&self, l: RawLimits) -> Result<LimitsConfig, ConfigError> {
        let d = LimitsConfig::default();
        let big = i64::from(u32::MAX);
        let limits = LimitsConfig {
            max_body_bytes: self.int(
                "limits.max_body_bytes",
                l.max_body_bytes,
                d.max_body_bytes as i64,
                1024,
                big,
            )? as usize,
            max_tokens: self.int(
                "limits.max_tokens",
                l.max_tokens,
                d.max_tokens as i64,
                1,
                big,
            )? as usize,
            max_depth: self.int("limits.max_depth", l.max_depth, d.max_depth as i64, 1, 1000)?
                as usize,
            max_aliases: self.int(
                "limits.max_aliases",
                l.max_aliases,
                d.max_aliases as i64,
                0,
                big,
            )? as usize,
            max_root_fields: self.int(
                "limits.max_root_fields",
                l.max_root_fields,
                d.max_root_fields as i64,
                1,
                big,
            )? as usize,
            max_limit: self.int("limits.max_limit", l.max_limit, d.max_limit, 1, big)?,
            max_string_length: self.int(
                "limits.max_string_length",
                l.max_string_length,
                d.max_string_length as i64,
                1,
                big,
            )? as usize,
            max_list_length: self.int(
                "limits.max_list_length",
                l.max_list_length,
                d.max_list_length as i64,
                1,
                big,
            )? as usize,
            request_timeout_ms: self.int(
                "limits.request_timeout_ms",
                l.request_timeout_ms,
                d.request_timeout_ms as i64,
                1,
                big,
            )? as u64,
            header_timeout_ms: self.int(
                "limits.header_timeout_ms",
                l.header_timeout_ms,
                d.header_timeout_ms as i64,
                1,
                big,
            )? as u64,
            body_timeout_ms: self.int(
                "limits.body_timeout_ms",
                l.body_timeout_ms,
                d.body_timeout_ms as i64,
                1,
                big,
            )? as u64,
            introspection: self.flag("limits.introspection", l.introspection, d.introspection)?,
            max_fields: self.int(
                "limits.max_fields",
                l.max_fields,
                d.max_fields as i64,
                1,
                big,
            )? as usize,
            max_rows: self.int(
                "limits.max_rows",
                l.max_rows,
                d.max_rows as i64,
                1,
                i64::MAX,
            )? as u64,
            max_in_flight: self.int(
                "limits.max_in_flight",
                l.max_in_flight,
                d.max_in_flight as i64,
                1,
                1_000_000,
            )? as usize,
            document_cache_bytes: self.int(
                "limits.document_cache_bytes",
                l.document_cache_bytes,
                d.document_cache_bytes as i64,
                0,
                i64::MAX,
            )? as u64,
            plan_cache_bytes: self.int(
                "limits.plan_cache_bytes",
                l.plan_cache_bytes,
                d.plan_cache_bytes as i64,
                0,
                i64::MAX,
            )? as u64,
            prepared_statements: self.int(
                "limits.prepared_statements",
                l.prepared_statements,
                d.prepared_statements as i64,
                1,
                100_000,
            )? as usize,
        };
        Ok(limits)
    }

    pub(super) fn federation(&self, raw: RawFederation) -> Result<FederationConfig, ConfigError> {
        let service_token = raw.service_token.filter(|s| !s.trim().is_empty());
        if service_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(self.invalid(
                "federation.service_token",
                "use a token of at least 16 bytes (e.g. `openssl rand -hex 24`)",
            ));
        }
        Ok(FederationConfig { service_token })
    }

    pub(super) fn logging(&self, raw: RawLogging) -> Result<LoggingConfig, ConfigError> {
        let logging = LoggingConfig {
            format: match raw.format.as_deref().map(str::trim) {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(self.invalid(
                        "logging.format",
                        format!("{other:?} is not \"text\" or \"json\""),
                    ))
                }
            },
        };
        Ok(logging)
    }

    pub(super) fn cache(&self, raw: RawCache) -> Result<CacheConfig, ConfigError> {
        let cd = CacheConfig::default();
        let cache = CacheConfig {
            enabled: self.flag("cache.enabled", raw.enabled, cd.enabled)?,
            max_bytes: self.int(
                "cache.max_bytes",
                raw.max_bytes,
                cd.max_bytes as i64,
                0,
                i64::MAX,
            )? as u64,
            subject: match raw.subject {
                None => cd.subject,
                Some(s) if valid_subject_prefix(&s) => s,
                Some(_) => {
                    return Err(self.invalid(
                        "cache.subject",
                        "a subject prefix is dot-separated tokens of letters, digits, `_` and `-` (no wildcards)",
                    ))
                }
            },
        };

        Ok(cache)
    }

    pub(super) fn transfer(&self, raw: RawTransfer) -> Result<TransferConfig, ConfigError> {
        let archive_key = raw.archive_key.filter(|k| !k.is_empty());
        if let Some(k) = &archive_key {
            if k.len() < MIN_ARCHIVE_KEY_BYTES {
                return Err(self.invalid(
                    "transfer.archive_key",
                    format!(
                        "the key is {} bytes; use at least {MIN_ARCHIVE_KEY_BYTES} (`openssl rand -base64 48` makes one)",
                        k.len()
                    ),
                ));
            }
        }
        Ok(TransferConfig { archive_key })
    }
}

impl Cx<'_> {
    pub(super) fn subscriptions(
        &self,
        raw: RawSubscriptions,
        observers: &ObserversConfig,
    ) -> Result<SubscriptionsConfig, ConfigError> {
        let d = SubscriptionsConfig::default();
        let big = i64::from(u32::MAX);
        let subject_prefix = match raw.subject_prefix {
            None => d.subject_prefix,
            Some(s) if valid_subject_prefix(&s) => s,
            Some(_) => {
                return Err(self.invalid(
                    "subscriptions.subject_prefix",
                    "a subject prefix is dot-separated tokens of letters, digits, `_` and `-` (no wildcards)",
                ))
            }
        };
        // The two streams may not capture the same subjects (JetStream refuses overlaps), and a
        // Rust observer must never be able to publish a change event.
        let wildcard = format!("{subject_prefix}.>");
        if let Some(s) = observers.stream.subjects.iter().find(|s| {
            subject_matches(s, &format!("{subject_prefix}.t.E.CREATE"))
                || subject_matches(&wildcard, &s.replace(['*', '>'], "x"))
        }) {
            return Err(self.invalid(
                "subscriptions.subject_prefix",
                format!("{subject_prefix:?} overlaps [observers.stream] subjects ({s:?}); change events need subjects of their own"),
            ));
        }
        let stream = raw.stream.unwrap_or(d.stream);
        if stream.is_empty()
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(self.invalid(
                "subscriptions.stream",
                "a stream name is letters, digits, `_` and `-`",
            ));
        }
        if stream == observers.stream.name {
            return Err(self.invalid(
                "subscriptions.stream",
                format!("{stream:?} is also [observers.stream] name; change events go to a stream of their own"),
            ));
        }
        Ok(SubscriptionsConfig {
            enabled: self.flag("subscriptions.enabled", raw.enabled, d.enabled)?,
            max_connections: self.int(
                "subscriptions.max_connections",
                raw.max_connections,
                d.max_connections as i64,
                1,
                10_000_000,
            )? as usize,
            max_subscriptions_per_connection: self.int(
                "subscriptions.max_subscriptions_per_connection",
                raw.max_subscriptions_per_connection,
                d.max_subscriptions_per_connection as i64,
                1,
                100_000,
            )? as usize,
            max_subscriptions_per_tenant: self.int(
                "subscriptions.max_subscriptions_per_tenant",
                raw.max_subscriptions_per_tenant,
                d.max_subscriptions_per_tenant as i64,
                1,
                10_000_000,
            )? as usize,
            keepalive_secs: self.int(
                "subscriptions.keepalive_secs",
                raw.keepalive_secs,
                d.keepalive_secs as i64,
                1,
                3600,
            )? as u64,
            connection_init_timeout_ms: self.int(
                "subscriptions.connection_init_timeout_ms",
                raw.connection_init_timeout_ms,
                d.connection_init_timeout_ms as i64,
                1,
                big,
            )? as u64,
            buffer: self.int(
                "subscriptions.buffer",
                raw.buffer,
                d.buffer as i64,
                1,
                1_000_000,
            )? as usize,
            subject_prefix,
            stream,
            retention_secs: self.int(
                "subscriptions.retention_secs",
                raw.retention_secs,
                d.retention_secs as i64,
                1,
                big,
            )? as u64,
            replicas: self.int("subscriptions.replicas", raw.replicas, 1, 1, 5)? as usize,
        })
    }

    pub(super) fn security(
        &self,
        raw: RawSecurity,
        base: &Path,
    ) -> Result<SecurityConfig, ConfigError> {
        let d = SecurityConfig::default();
        let td = raw.trusted_documents;
        let enabled = self.flag("security.trusted_documents.enabled", td.enabled, false)?;
        let mode = match td.mode.as_deref().map(str::trim) {
            None | Some("strict") => TrustedMode::Strict,
            Some("permissive") => TrustedMode::Permissive,
            Some(other) => {
                return Err(self.invalid(
                    "security.trusted_documents.mode",
                    format!("{other:?} is not \"strict\" or \"permissive\""),
                ))
            }
        };
        let manifest_path = td
            .manifest_path
            .filter(|p| !p.trim().is_empty())
            .map(|p| resolve(base, &p));
        if enabled && manifest_path.is_none() {
            return Err(self.invalid(
                "security.trusted_documents.manifest_path",
                "trusted documents are enabled: name the manifest (`fraiseql documents manifest` writes one)",
            ));
        }
        Ok(SecurityConfig {
            apq: self.flag("security.apq", raw.apq, d.apq)?,
            apq_cache_bytes: self.int(
                "security.apq_cache_bytes",
                raw.apq_cache_bytes,
                d.apq_cache_bytes as i64,
                0,
                i64::MAX,
            )? as u64,
            trusted_documents: TrustedDocumentsConfig {
                enabled,
                mode,
                manifest_path,
            },
        })
    }

    /// `[tracing]`; the OpenTelemetry variables stand in for keys that are absent.
    pub(super) fn tracing(
        &self,
        raw: RawTracing,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TracingConfig, ConfigError> {
        let d = TracingConfig::default();
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let (endpoint, key) = match nonempty(raw.otlp_endpoint) {
            Some(e) => (Some(e), "tracing.otlp_endpoint"),
            None => (
                nonempty(env("OTEL_EXPORTER_OTLP_ENDPOINT")),
                "tracing.otlp_endpoint (from OTEL_EXPORTER_OTLP_ENDPOINT)",
            ),
        };
        let otlp_endpoint = match endpoint.map(|e| e.trim().trim_end_matches('/').to_owned()) {
            None => None,
            Some(e) if e.starts_with("http://") || e.starts_with("https://") => Some(e),
            Some(e) => {
                return Err(self.invalid(
                    key,
                    format!("{e:?} is not an http:// or https:// URL (the OTLP/HTTP endpoint, e.g. \"http://localhost:4318\")"),
                ))
            }
        };
        let service_name = nonempty(raw.service_name)
            .or_else(|| nonempty(env("OTEL_SERVICE_NAME")))
            .unwrap_or(d.service_name);
        let sample_ratio = match raw.sample_ratio {
            None => d.sample_ratio,
            Some(Ratio::Float(f)) => f,
            Some(Ratio::Int(i)) => i as f64,
            Some(Ratio::Str(s)) => s.trim().parse::<f64>().map_err(|_| {
                self.invalid(
                    "tracing.sample_ratio",
                    format!("expected a number, found {s:?}"),
                )
            })?,
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(self.invalid(
                "tracing.sample_ratio",
                format!("{sample_ratio} is out of range (0..=1)"),
            ));
        }
        Ok(TracingConfig {
            otlp_endpoint,
            service_name,
            sample_ratio,
        })
    }
}
