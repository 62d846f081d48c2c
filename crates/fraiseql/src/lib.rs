//! fraiseql: a multi-tenant GraphQL engine for PostgreSQL.
//!
//! This crate is what applications depend on: it re-exports the pipeline's crates and offers
//! [`serve`] (what `fraiseql run` does) and [`testing`] (a test client and per-test databases).

pub mod testing;

use std::sync::Arc;

pub use fraiseql_config as config;
pub use fraiseql_engine as engine;
pub use fraiseql_plan as plan;
pub use fraiseql_schema as schema;
pub use fraiseql_server as server;

pub use fraiseql_engine::resolvers::{
    Args, Change, Context, Event, EventContext, EventMessage, FieldBatch, ResolverError, Resolvers,
};
pub use fraiseql_engine::Engine;

/// Logs to stderr, filtered by `RUST_LOG` (default: `info`, with the database and NATS clients
/// at `warn`). For binaries; call once.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn,async_nats=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
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
    let metrics_listener = match c.metrics.listen.as_deref().filter(|_| c.metrics.enabled) {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind {
                    addr: addr.to_owned(),
                    source,
                })?,
        ),
        None => None,
    };
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
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(a) = l.local_addr() {
            println!("Metrics: http://{a}/metrics");
        }
        let router = fraiseql_server::metrics_router(engine.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        })
    });
    serve(engine, listener, shutdown).await?;
    if let Some(t) = metrics_task {
        t.abort();
    }
    println!("fraiseql stopped");
    Ok(())
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
    // Idle tenant connections and pools are closed in the background.
    let sweeper = engine.tenants().is_some().then(|| {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let Some(t) = engine.tenants() {
                    t.sweep();
                }
            }
        })
    });
    // No Nagle delay: a response is written as soon as it is ready.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let result = axum::serve(listener, fraiseql_server::router(engine))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(s) = sweeper {
        s.abort();
    }
    result
}
