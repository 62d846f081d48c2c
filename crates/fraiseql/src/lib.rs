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

pub use fraiseql_engine::Engine;

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
    let result = axum::serve(listener, fraiseql_server::router(engine))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(s) = sweeper {
        s.abort();
    }
    result
}
