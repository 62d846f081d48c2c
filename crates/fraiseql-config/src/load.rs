//! Reading a config: TOML parse -> structural check (unknown keys, types) -> `${VAR}` expansion ->
//! semantic validation. Each step's errors carry the key and its line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item, Value};

use crate::error::ConfigError;
use crate::expand::{expand, ExpandError};
use crate::model::*;

/// Reads and validates `path`, expanding `${VAR}` from the process environment.
/// A relative `[schema] path` is resolved against the config file's folder.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    parse_str(&src, &path.display().to_string(), base, &|name| {
        std::env::var(name).ok()
    })
}

/// Parses and validates config text. `file` names it in errors; `base` resolves relative paths;
/// `env` answers `${VAR}` look-ups.
pub fn parse_str(
    src: &str,
    file: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let doc = Document::parse(src.to_owned()).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        line: e.span().map_or(1, |s| line_of(src, s.start)),
        message: e.message().to_owned(),
    })?;
    let mut lines = HashMap::new();
    record_lines(src, "", doc.as_item(), &mut lines);
    let cx = Cx { file, lines };

    // Structure first, on the text as written, so unknown keys and wrong types point at their line.
    let _: RawConfig =
        toml_edit::de::from_document(doc.clone()).map_err(|e| cx.serde_error(src, &e))?;

    let mut expanded = doc.into_mut();
    expand_item(&cx, "", expanded.as_item_mut(), env)?;
    let raw: RawConfig =
        toml_edit::de::from_document(expanded).map_err(|e| cx.serde_error(src, &e))?;
    cx.build(raw, base, env)
}

/// The file name and the line of every key path, for errors found after parsing.
struct Cx<'a> {
    file: &'a str,
    lines: HashMap<String, usize>,
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn record_lines(src: &str, prefix: &str, item: &Item, out: &mut HashMap<String, usize>) {
    let table: Box<dyn Iterator<Item = (&toml_edit::Key, &Item)>> = match item {
        Item::Table(t) => Box::new(t.iter().filter_map(|(k, _)| t.get_key_value(k))),
        Item::Value(Value::InlineTable(t)) => {
            Box::new(t.iter().filter_map(|(k, _)| t.get_key_value(k)))
        }
        _ => return,
    };
    for (key, child) in table {
        let path = join(prefix, key.get());
        if let Some(span) = key.span().or_else(|| child.span()) {
            out.insert(path.clone(), line_of(src, span.start));
        }
        record_lines(src, &path, child, out);
    }
}

fn expand_item(
    cx: &Cx<'_>,
    path: &str,
    item: &mut Item,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match item {
        Item::Table(t) => {
            for (k, v) in t.iter_mut() {
                expand_item(cx, &join(path, k.get()), v, env)?;
            }
        }
        Item::Value(v) => expand_value(cx, path, v, env)?,
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                for (k, v) in t.iter_mut() {
                    expand_item(cx, &join(path, k.get()), v, env)?;
                }
            }
        }
        Item::None => {}
    }
    Ok(())
}

fn expand_value(
    cx: &Cx<'_>,
    path: &str,
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.value().contains('$') => {
            let out = expand(s.value(), env).map_err(|e| match e {
                ExpandError::Missing(var) => ConfigError::MissingVar {
                    file: cx.file.to_owned(),
                    line: cx.line(path),
                    key: path.to_owned(),
                    var,
                },
                ExpandError::Malformed(message) => cx.invalid(path, message),
            })?;
            *value = Value::from(out);
        }
        Value::Array(a) => {
            for v in a.iter_mut() {
                expand_value(cx, path, v, env)?;
            }
        }
        Value::InlineTable(t) => {
            for (k, v) in t.iter_mut() {
                expand_value(cx, &join(path, k.get()), v, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Cx<'_> {
    /// The line of `path`, else of its closest parent that is in the file, else 1.
    fn line(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return *l;
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return 1,
            }
        }
    }

    fn invalid(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line(path),
            key: path.to_owned(),
            message: message.into(),
        }
    }

    fn serde_error(&self, src: &str, e: &toml_edit::de::Error) -> ConfigError {
        let line = e.span().map_or(1, |s| line_of(src, s.start));
        // Name the key: the path whose recorded line is this one (deepest wins).
        let key = self
            .lines
            .iter()
            .filter(|(_, l)| **l == line)
            .map(|(k, _)| k.as_str())
            .max_by_key(|k| k.len())
            .unwrap_or("(document)")
            .to_owned();
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            key,
            message: e.message().trim().to_owned(),
        }
    }

    fn int(
        &self,
        path: &str,
        n: Option<Num>,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let v = match n {
            None => return Ok(default),
            Some(Num::Int(i)) => i,
            Some(Num::Str(s)) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| self.invalid(path, format!("expected an integer, found {s:?}")))?,
        };
        if v < min || v > max {
            return Err(self.invalid(path, format!("{v} is out of range ({min}..={max})")));
        }
        Ok(v)
    }

    fn flag(&self, path: &str, f: Option<Flag>, default: bool) -> Result<bool, ConfigError> {
        match f {
            None => Ok(default),
            Some(Flag::Bool(b)) => Ok(b),
            Some(Flag::Str(s)) => match s.trim() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                other => {
                    Err(self.invalid(path, format!("expected true or false, found {other:?}")))
                }
            },
        }
    }

    fn build(
        &self,
        raw: RawConfig,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let server = self.server(raw.server)?;
        let schema_path = raw
            .schema
            .path
            .unwrap_or_else(|| "schema.graphql".to_owned());
        let schema = SchemaConfig {
            path: resolve(base, &schema_path),
        };
        let multi_tenancy = self.multi_tenancy(raw.multi_tenancy)?;
        let databases = self.databases(raw.databases, base)?;
        let backend = raw
            .observers
            .backend
            .clone()
            .unwrap_or_else(|| "nats".to_owned());
        if backend != "nats" {
            return Err(self.invalid(
                "observers.backend",
                format!("unsupported backend {backend:?}; expected \"nats\""),
            ));
        }
        let nats = self.nats(raw.nats, raw.observers.nats_url.clone(), base)?;
        let observers = self.observers(raw.observers, backend, &databases)?;
        let subscribers = raw
            .subscribers
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.subscriber(i, r, &databases))
            .collect::<Result<Vec<_>, _>>()?;
        let mut groups = std::collections::BTreeSet::new();
        for s in &subscribers {
            if !groups.insert(s.consumer_group.as_str()) {
                return Err(self.invalid(
                    "subscribers",
                    format!("consumer_group {:?} is declared twice", s.consumer_group),
                ));
            }
        }

        let limits = self.limits(raw.limits)?;
        let metrics = self.metrics(raw.metrics)?;
        let logging = self.logging(raw.logging)?;
        let cache = self.cache(raw.cache)?;
        let federation = self.federation(raw.federation)?;
        let transfer = self.transfer(raw.transfer)?;
        let subscriptions = self.subscriptions(raw.subscriptions, &observers)?;
        let security = self.security(raw.security, base)?;
        let tracing = self.tracing(raw.tracing, env)?;

        if multi_tenancy.enabled && !databases.contains_key(&multi_tenancy.registry) {
            return Err(self.invalid(
                "multi_tenancy.registry",
                format!(
                    "names database `{}`, which is not configured; add [databases.{}] with a url",
                    multi_tenancy.registry, multi_tenancy.registry
                ),
            ));
        }
        let auth = match raw.auth {
            None => None,
            Some(a) => Some(self.auth(a, base, server.profile)?),
        };
        let tiers = self.tiers(raw.tiers, &limits)?;
        let admin = self.admin(raw.admin, base, auth.as_ref(), &multi_tenancy)?;
        for (coord, roles) in &raw.rbac {
            if !coord.contains('.') || roles.is_empty() {
                return Err(self.invalid(
                    &format!("rbac.{coord}"),
                    "expected `\"Type.field\" = [\"role\", ...]` with at least one role",
                ));
            }
        }

        if observers.enabled && nats.servers.is_empty() {
            return Err(self.invalid(
                "observers.enabled",
                "events need NATS: set [nats] servers = [\"nats://...\"] (or [observers] nats_url)",
            ));
        }
        Ok(Config {
            auth,
            tiers,
            admin,
            rbac: raw.rbac,
            metrics,
            logging,
            cache,
            nats,
            federation,
            transfer,
            subscriptions,
            security,
            tracing,
            server,
            schema,
            multi_tenancy,
            databases,
            observers,
            subscribers,
            limits,
        })
    }

    fn observers(
        &self,
        o: RawObservers,
        backend: String,
        databases: &BTreeMap<String, DatabaseConfig>,
    ) -> Result<ObserversConfig, ConfigError> {
        let big = i64::from(u32::MAX);
        let st = o.stream;
        let retention = match st.retention.as_deref().unwrap_or("limits") {
            "limits" => Retention::Limits,
            "interest" => Retention::Interest,
            "workqueue" => Retention::WorkQueue,
            other => {
                return Err(self.invalid(
                    "observers.stream.retention",
                    format!("{other:?} is not one of \"limits\", \"interest\", \"workqueue\""),
                ))
            }
        };
        let name = st.name.unwrap_or_else(|| "FRAISEQL_EVENTS".to_owned());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(self.invalid(
                "observers.stream.name",
                "a stream name is letters, digits, `_` and `-`",
            ));
        }
        let stream = StreamConfig {
            name,
            subjects: st
                .subjects
                .unwrap_or_else(|| vec!["analytics.>".to_owned()]),
            duplicate_window_secs: self.int(
                "observers.stream.duplicate_window_secs",
                st.duplicate_window_secs,
                120,
                1,
                big,
            )? as u64,
            retention,
            replicas: self.int("observers.stream.replicas", st.replicas, 1, 1, 5)? as usize,
            max_age_secs: self.int("observers.stream.max_age_secs", st.max_age_secs, 0, 0, big)?
                as u64,
        };
        let mut rules = Vec::new();
        for (i, r) in o.rules.into_iter().enumerate() {
            let path = format!("observers.rules.{i}");
            let event = ChangeKind::parse(&r.event).ok_or_else(|| {
                self.invalid(
                    &format!("{path}.event"),
                    format!(
                        "{:?} is not one of \"CREATE\", \"UPDATE\", \"DELETE\"",
                        r.event
                    ),
                )
            })?;
            if !stream
                .subjects
                .iter()
                .any(|s| subject_matches(s, &r.subject))
            {
                return Err(self.invalid(
                    &format!("{path}.subject"),
                    format!(
                        "{:?} is not captured by the stream's subjects {:?}",
                        r.subject, stream.subjects
                    ),
                ));
            }
            if let Some(k) = r
                .payload
                .keys()
                .find(|k| RESERVED_PAYLOAD_KEYS.contains(&k.as_str()))
            {
                return Err(self.invalid(
                    &format!("{path}.payload"),
                    format!(
                        "rule #{} ({} {} -> {}): payload key `{k}` is reserved (every event carries {}); rename it",
                        i + 1,
                        r.entity,
                        r.event,
                        r.subject,
                        RESERVED_PAYLOAD_KEYS.join(", ")
                    ),
                ));
            }
            rules.push(ObserverRule {
                entity: r.entity,
                event,
                subject: r.subject,
                payload: r.payload,
            });
        }
        if let Some(d) = &o.dead_letter_database {
            if !databases.contains_key(d) {
                return Err(self.invalid(
                    "observers.dead_letter_database",
                    format!("no [databases.{d}]"),
                ));
            }
        }
        Ok(ObserversConfig {
            enabled: self.flag("observers.enabled", o.enabled, false)?,
            backend,
            stream,
            publish_timeout_ms: self.int(
                "observers.publish_timeout_ms",
                o.publish_timeout_ms,
                5000,
                10,
                big,
            )? as u64,
            sweep_interval_ms: self.int(
                "observers.sweep_interval_ms",
                o.sweep_interval_ms,
                1000,
                10,
                big,
            )? as u64,
            full_sweep_secs: self.int(
                "observers.full_sweep_secs",
                o.full_sweep_secs,
                300,
                1,
                big,
            )? as u64,
            dead_letter_database: o.dead_letter_database,
            rules,
        })
    }

    fn subscriber(
        &self,
        i: usize,
        r: RawSubscriber,
        databases: &BTreeMap<String, DatabaseConfig>,
    ) -> Result<SubscriberConfig, ConfigError> {
        let path = format!("subscribers.{i}");
        let big = i64::from(u32::MAX);
        match (&r.sql, &r.database) {
            (Some(_), None) => {
                return Err(self.invalid(
                    &format!("{path}.database"),
                    "`sql` needs `database`: the [databases.<name>] it runs on",
                ))
            }
            (_, Some(d)) if !databases.contains_key(d) => {
                return Err(self.invalid(&format!("{path}.database"), format!("no [databases.{d}]")))
            }
            _ => {}
        }
        if r.consumer_group.is_empty()
            || !r
                .consumer_group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(self.invalid(
                &format!("{path}.consumer_group"),
                "a consumer group name is letters, digits, `_` and `-`",
            ));
        }
        Ok(SubscriberConfig {
            subject: r.subject,
            consumer_group: r.consumer_group,
            database: r.database,
            sql: r.sql,
            max_deliver: self.int(&format!("{path}.max_deliver"), r.max_deliver, 5, 1, 1000)?,
            ack_wait_secs: self.int(
                &format!("{path}.ack_wait_secs"),
                r.ack_wait_secs,
                30,
                1,
                big,
            )? as u64,
            backoff_ms: self.int(&format!("{path}.backoff_ms"), r.backoff_ms, 500, 0, big)? as u64,
            max_backoff_ms: self.int(
                &format!("{path}.max_backoff_ms"),
                r.max_backoff_ms,
                30_000,
                0,
                big,
            )? as u64,
        })
    }
}

/// Keys every event payload carries; `[[observers.rules]] payload` may not set them.
pub const RESERVED_PAYLOAD_KEYS: [&str; 7] = [
    "event_id",
    "event_type",
    "tenant_id",
    "entity",
    "operation",
    "key",
    "timestamp",
];

fn valid_subject_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

fn valid_listen(s: &str) -> bool {
    s.parse::<std::net::SocketAddr>().is_ok()
        || s.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && p.parse::<u16>().is_ok() && !h.contains(char::is_whitespace)
        })
}

impl Cx<'_> {
    fn metrics(&self, m: RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let d = MetricsConfig::default();
        let listen = m
            .listen
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if let Some(l) = &listen {
            if !valid_listen(l) {
                return Err(self.invalid(
                    "metrics.listen",
                    format!("{l:?} is not host:port (e.g. \"127.0.0.1:9100\")"),
                ));
            }
        }
        let token = m.token.filter(|s| !s.trim().is_empty());
        if token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(self.invalid(
                "metrics.token",
                "use a token of at least 16 bytes (e.g. `openssl rand -hex 24`)",
            ));
        }
        Ok(MetricsConfig {
            enabled: self.flag("metrics.enabled", m.enabled, d.enabled)?,
            listen,
            token,
            max_tenant_labels: self.int(
                "metrics.max_tenant_labels",
                m.max_tenant_labels,
                d.max_tenant_labels as i64,
                0,
                1_000_000,
            )? as usize,
        })
    }

    /// `[nats]`, or `[observers] nats_url` as its one-server form (both at once is an error).
    fn nats(
        &self,
        n: Option<RawNats>,
        observers_url: Option<String>,
        base: &Path,
    ) -> Result<NatsConfig, ConfigError> {
        let observers_url = observers_url.filter(|u| !u.trim().is_empty());
        let path = |p: Option<String>| p.filter(|s| !s.is_empty()).map(|s| resolve(base, &s));
        let raw_servers = n.as_ref().and_then(|n| n.servers.clone());
        let servers = match (raw_servers, observers_url) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "nats.servers",
                    "both [nats] servers and [observers] nats_url are set; keep [nats] servers (nats_url is its one-server form)",
                ))
            }
            (Some(list), None) => list,
            (None, Some(url)) => vec![url],
            (None, None) => Vec::new(),
        };
        let servers: Vec<String> = servers
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        for s in &servers {
            let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|p| s.starts_with(p))
                || !s.contains("://");
            if !scheme_ok {
                return Err(self.invalid(
                    "nats.servers",
                    "a NATS server is nats://host:port or tls://host:port",
                ));
            }
        }
        let n = n.unwrap_or_default();
        let nats = NatsConfig {
            servers,
            token: n.token.filter(|s| !s.is_empty()),
            user: n.user.filter(|s| !s.is_empty()),
            password: n.password.filter(|s| !s.is_empty()),
            tls_ca: path(n.tls_ca),
            tls_cert: path(n.tls_cert),
            tls_key: path(n.tls_key),
            require_tls: self.flag("nats.require_tls", n.require_tls, false)?,
            name: n
                .name
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "fraiseql".to_owned()),
            max_reconnects: self.int("nats.max_reconnects", n.max_reconnects, 0, 0, 1_000_000)?
                as usize,
            reconnect_delay_ms: self.int(
                "nats.reconnect_delay_ms",
                n.reconnect_delay_ms,
                2000,
                1,
                600_000,
            )? as u64,
            connect_timeout_ms: self.int(
                "nats.connect_timeout_ms",
                n.connect_timeout_ms,
                2000,
                1,
                600_000,
            )? as u64,
        };
        if nats.user.is_some() != nats.password.is_some() {
            return Err(self.invalid("nats.user", "`user` and `password` go together"));
        }
        if nats.tls_cert.is_some() != nats.tls_key.is_some() {
            return Err(self.invalid("nats.tls_cert", "`tls_cert` and `tls_key` go together"));
        }
        if nats.token.is_some() && nats.user.is_some() {
            return Err(self.invalid("nats", "give one of `token` or `user`/`password`"));
        }
        Ok(nats)
    }
}

/// Whether NATS subject `pattern` (with `*` and `>` wildcards) matches `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Cx<'_> {
    fn auth(&self, a: RawAuth, base: &Path, profile: Profile) -> Result<AuthConfig, ConfigError> {
        let algorithm = match a.algorithm.as_deref().unwrap_or("HS256") {
            "HS256" => JwtAlgorithm::Hs256,
            "RS256" => JwtAlgorithm::Rs256,
            "ES256" => JwtAlgorithm::Es256,
            other => {
                return Err(self.invalid(
                    "auth.algorithm",
                    format!(
                    "unsupported algorithm {other:?}; expected \"HS256\", \"RS256\" or \"ES256\""
                ),
                ))
            }
        };
        let path = |p: Option<String>| p.filter(|s| !s.is_empty()).map(|s| resolve(base, &s));
        let secret = a.secret.filter(|s| !s.is_empty());
        let public_key = path(a.public_key);
        let jwks = path(a.jwks);
        match algorithm {
            JwtAlgorithm::Hs256 => {
                let Some(s) = &secret else {
                    return Err(self.invalid("auth.secret", "HS256 needs a secret"));
                };
                if s.len() < 16 {
                    return Err(self.invalid("auth.secret", "use a secret of at least 16 bytes"));
                }
                if profile == Profile::Production {
                    let published = KNOWN_DEVELOPMENT_SECRETS.contains(&s.as_str());
                    if published || s.len() < PRODUCTION_SECRET_BYTES {
                        let why = if published {
                            "is the example's published development secret".to_owned()
                        } else {
                            format!("is {} bytes, fewer than {PRODUCTION_SECRET_BYTES}", s.len())
                        };
                        return Err(self.invalid(
                            "auth.secret",
                            format!(
                                "{why}: the production profile refuses it. Set it (the example reads JWT_SECRET) to at least {PRODUCTION_SECRET_BYTES} random bytes, e.g. `openssl rand -base64 48`, or run with [server] profile = \"development\" (FRAISEQL_PROFILE=development) on a machine of your own"
                            ),
                        ));
                    }
                }
            }
            _ if public_key.is_none() && jwks.is_none() => {
                return Err(self.invalid(
                    "auth.public_key",
                    "RS256/ES256 need `public_key` (PEM) or `jwks`",
                ));
            }
            _ => {}
        }
        Ok(AuthConfig {
            required: self.flag("auth.required", a.required, true)?,
            algorithm,
            secret,
            public_key,
            private_key: path(a.private_key),
            jwks,
            key_id: a.key_id.filter(|s| !s.is_empty()),
            issuer: a.issuer.filter(|s| !s.is_empty()),
            audience: a.audience.filter(|s| !s.is_empty()),
            tenant_claim: a.tenant_claim.unwrap_or_else(|| "tenant_id".to_owned()),
            roles_claim: a.roles_claim.unwrap_or_else(|| "roles".to_owned()),
            tenants_claim: a.tenants_claim.filter(|s| !s.is_empty()),
            leeway_secs: self.int("auth.leeway_secs", a.leeway_secs, 30, 0, 3600)? as u64,
            token_ttl_secs: self.int(
                "auth.token_ttl_secs",
                a.token_ttl_secs,
                3600,
                1,
                31_536_000,
            )? as u64,
        })
    }
}

/// Secrets published in this repository's examples: a production server refuses them.
pub const KNOWN_DEVELOPMENT_SECRETS: &[&str] = &["dev-only-secret-change-me-0123456789"];

/// The shortest HS256 secret the production profile accepts.
pub const PRODUCTION_SECRET_BYTES: usize = 32;

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

pub(crate) mod plans;
mod sections;
#[cfg(test)]
mod tests;
