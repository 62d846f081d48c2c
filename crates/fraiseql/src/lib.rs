//! fraiseql: a multi-tenant GraphQL engine for PostgreSQL.
//!
//! This crate is what applications depend on: it re-exports the pipeline's crates, the
//! operations ([`ops`]: provisioning, backup, restore, move) and the admin API ([`admin`]: the
//! same operations over HTTP), and offers [`serve`] (what `fraiseql run` does). Test support (a test client, per-test databases) is the
//! `fraiseql-testing` crate, a dev-dependency.

use std::sync::Arc;

mod telemetry;

pub use fraiseql_admin as admin;
pub use fraiseql_config as config;
pub use fraiseql_engine as engine;
pub use fraiseql_ops as ops;
pub use fraiseql_plan as plan;
pub use fraiseql_schema as schema;
pub use fraiseql_server as server;
pub use telemetry::{init_telemetry, Telemetry, TelemetryError};

pub use fraiseql_engine::resolvers::{
    Args, Change, Context, Event, EventContext, EventMessage, FieldBatch, ResolverError, Resolvers,
};
pub use fraiseql_engine::Engine;

/// Logs text lines to stderr, filtered by `RUST_LOG` (default: `info`, with the database and
/// NATS clients at `warn`). For binaries; see [`init_tracing_as`].
pub fn init_tracing() {
    init_tracing_as(fraiseql_config::LogFormat::Text);
}

/// Logs to stderr as `[logging] format` says: text lines, or one JSON object per line (with the
/// request fields: `request_id`, `tenant`, `operation`, `status`, `duration_ms`). `RUST_LOG`
/// filters (default `info`).
pub fn init_tracing_as(format: fraiseql_config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn,async_nats=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        fraiseql_config::LogFormat::Text => builder.try_init(),
        fraiseql_config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Why [`run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The databases do not answer or do not match the schema.
    #[error(transparent)]
    Engine(#[from] fraiseql_engine::EngineError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `host:port`
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What `fraiseql run` does: checks the databases against the schema, binds `[server]`,
/// prints the banner, and serves until SIGINT/SIGTERM.
pub async fn run(engine: Arc<Engine>) -> Result<(), RunError> {
    engine.check_databases().await?;
    engine.start_events().await?;
    engine.start_cache_bus().await?;
    engine.start_subscriptions();
    engine.start_quota_exchange().await?;
    let c = engine.config();
    let addr = format!("{}:{}", c.server.host, c.server.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr()?;
    let shutdown = shutdown_signal();
    let metrics_listener =
        bind_if_set(c.metrics.listen.as_deref().filter(|_| c.metrics.enabled)).await?;
    let admin_listener = bind_if_set(c.admin.listen.as_deref()).await?;
    let shown_host = match c.server.host.as_str() {
        "0.0.0.0" | "127.0.0.1" | "::" | "::1" => "localhost".to_owned(),
        h => h.to_owned(),
    };
    println!("🍓 FraiseQL v{}", env!("CARGO_PKG_VERSION"));
    println!(
        "GraphQL endpoint: http://{shown_host}:{}/graphql",
        local.port()
    );
    if c.multi_tenancy.enabled {
        println!("Multi-tenancy: {}", c.multi_tenancy.strategy.as_str());
    } else {
        println!("Multi-tenancy: disabled (single database)");
    }
    match engine.events() {
        Some(e) if e.wait_connected(std::time::Duration::from_secs(2)).await => {
            println!("NATS: connected")
        }
        Some(_) => println!("NATS: not connected (retrying; events wait in the outbox)"),
        None => println!("NATS: disabled"),
    }
    match engine.tenants() {
        Some(t) => match t.count_active().await {
            Ok(n) => println!("Tenants: {n} configured"),
            Err(e) => println!("Tenants: unknown ({e})"),
        },
        None => println!(
            "Databases: {}",
            c.databases.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
    if c.multi_tenancy.enabled && c.multi_tenancy.trust_tenant_header {
        println!(
            "WARNING: [multi_tenancy] trust_tenant_header = true: callers without a token pick their tenant with {}; only run this behind a gateway that authenticates",
            c.multi_tenancy.auth_header
        );
    }
    let endpoint = format!("http://{shown_host}:{}/graphql", local.port());
    if let Some(line) = development_link(&engine, &endpoint).await {
        println!("{line}");
    }
    if c.metrics.enabled
        && metrics_listener.is_none()
        && !fraiseql_server::metrics_beside_graphql(c)
    {
        println!("Metrics: not served (they list tenant keys): set [metrics] listen = \"127.0.0.1:9100\" or [metrics] token");
    }
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(a) = l.local_addr() {
            println!("Metrics: http://{a}/metrics");
        }
        let router = fraiseql_server::metrics_router(engine.clone());
        let timeouts = fraiseql_server::Timeouts::of(&c.limits);
        tokio::spawn(async move {
            let never = std::future::pending::<()>();
            if let Err(e) = fraiseql_server::serve(l, router, timeouts, never).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        })
    });
    let admin_task = admin_listener.map(|l| {
        if let Ok(a) = l.local_addr() {
            println!(
                "Admin API: http://{a}/admin/tenants (OpenAPI: http://{a}/admin/openapi.json)"
            );
        }
        let config = Arc::new(c.clone());
        tokio::spawn(async move {
            let never = std::future::pending::<()>();
            if let Err(e) = fraiseql_admin::serve(l, config, never).await {
                tracing::error!(error = %e, "admin listener stopped");
            }
        })
    });
    serve(engine, listener, shutdown).await?;
    for t in [metrics_task, admin_task].into_iter().flatten() {
        t.abort();
    }
    println!("fraiseql stopped");
    Ok(())
}

/// The environment variable naming the tenant of [`development_link`]'s token (default: the
/// first active tenant, by key).
pub const DEV_TENANT_VAR: &str = "FRAISEQL_DEV_TENANT";

/// The banner line of `fraiseql run` under `[server] profile = "development"`: a GraphiQL link
/// whose URL fragment carries a tenant and a development token signed like `fraiseql token`'s,
/// e.g. `GraphiQL (development token for acme_corp): http://localhost:8080/graphql#tenant=acme_corp&token=<jwt>`.
/// The page reads the fragment (browsers never send it to a server) and fills the
/// `Authorization` and tenant headers. The token is for the tenant named by
/// `$FRAISEQL_DEV_TENANT`, else the first active tenant, with every role named in `[rbac]`,
/// valid for `[auth] token_ttl_secs`.
///
/// `None` under `production` (the default profile: no token is ever printed) and when the
/// config has no `[auth]`; otherwise a line saying why there is no link (no signing key, no
/// active tenant, ...).
pub async fn development_link(engine: &Engine, endpoint: &str) -> Option<String> {
    let c = engine.config();
    if c.server.profile != fraiseql_config::Profile::Development {
        return None;
    }
    let auth = c.auth.as_ref()?;
    let no_link = |why: String| Some(format!("GraphiQL: {endpoint} (no development link: {why})"));
    let can_sign = match auth.algorithm {
        fraiseql_config::JwtAlgorithm::Hs256 => auth.secret.is_some(),
        _ => auth.private_key.is_some(),
    };
    if !can_sign {
        return no_link(
            "the config cannot sign tokens; set [auth] private_key (or an HS256 secret)".into(),
        );
    }
    let tenant = match engine.tenants() {
        None => None,
        Some(t) => match std::env::var(DEV_TENANT_VAR).ok().filter(|k| !k.is_empty()) {
            Some(key) => match t.resolve(&key).await {
                Ok(rec) => Some(rec.key.clone()),
                Err(e) => {
                    return no_link(format!("tenant `{key}` (${DEV_TENANT_VAR}): {e}"));
                }
            },
            None => match t.any_active().await {
                Ok(Some(rec)) => Some(rec.key.clone()),
                Ok(None) => {
                    return no_link(
                        "no active tenant yet; create one with `fraiseql tenant create <key>`"
                            .into(),
                    )
                }
                Err(e) => return no_link(format!("tenant registry: {e}")),
            },
        },
    };
    let mut roles: Vec<String> = c.rbac.values().flatten().cloned().collect();
    roles.sort();
    roles.dedup();
    // Without multi-tenancy the tenant claim is not used; the token still needs one.
    let claim = tenant.as_deref().unwrap_or("default");
    let token =
        match fraiseql_engine::identity::jwt::issue(auth, c.server.profile, claim, &roles, None) {
            Ok(t) => t,
            Err(e) => return no_link(e.to_string()),
        };
    Some(match tenant {
        Some(key) => {
            format!("GraphiQL (development token for {key}): {endpoint}#tenant={key}&token={token}")
        }
        None => format!("GraphiQL (development token): {endpoint}#token={token}"),
    })
}

/// Resolves on SIGINT or SIGTERM.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // The handlers are installed now, not when the future is first polled: a SIGTERM that
    // arrives right after the banner must already be caught.
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(int) => {},
                () = wait(term) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

/// Serves `engine` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // In the background: busy tenants' registry records are re-read in batches before they
    // expire, and (every tenth tick) idle tenant connections and pools are closed and the
    // tenants' usage is added to the registry.
    let sweeper = engine.tenants().is_some().then(|| {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(fraiseql_engine::tenancy::directory::REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0u64.. {
                tick.tick().await;
                let Some(t) = engine.tenants() else { continue };
                // A failed refresh leaves the records to expire; requests then read them one
                // by one, as without the refresh.
                let _ = t.refresh().await;
                if n % 10 == 9 {
                    // Ten ticks: `quota::usage::FLUSH_EVERY`.
                    if let Some(pool) = engine.routes().tenants() {
                        pool.sweep();
                    }
                    flush_usage(&engine).await;
                }
            }
        })
    });
    engine.start_subscriptions();
    let timeouts = fraiseql_server::Timeouts::of(&engine.config().limits);
    // On shutdown every subscription connection writes what is queued for it, then closes
    // (WebSocket close 1001, the SSE stream ends); requests in flight finish.
    let closing = engine.clone();
    let shutdown = async move {
        shutdown.await;
        if let Some(s) = closing.subscriptions() {
            s.shut_down();
        }
    };
    let result = fraiseql_server::serve(
        listener,
        fraiseql_server::router(engine.clone()),
        timeouts,
        shutdown,
    )
    .await;
    if let Some(s) = engine.subscriptions() {
        if !s.closed(SUBSCRIPTIONS_CLOSE_WAIT).await {
            tracing::warn!(
                open = s.open_connections(),
                "subscription connections still open after the shutdown's wait"
            );
        }
    }
    if let Some(s) = sweeper {
        s.abort();
        // What was counted since the last flush.
        flush_usage(&engine).await;
    }
    result
}

/// How long a shutdown waits for subscription connections to write what is queued and close.
const SUBSCRIPTIONS_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Adds the tenants' usage counted here to the registry (kept for the next try if it fails).
async fn flush_usage(engine: &Engine) {
    if let Err(e) = engine.flush_usage().await {
        tracing::warn!(error = %e, "tenant usage kept for the next flush");
    }
}

/// A listener on `addr`, when one is configured (`/metrics` and the admin API may have their own).
async fn bind_if_set(addr: Option<&str>) -> Result<Option<tokio::net::TcpListener>, RunError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    tokio::net::TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| RunError::Bind {
            addr: addr.to_owned(),
            source,
        })
}
