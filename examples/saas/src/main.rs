//! The SaaS example served with its Rust resolvers (`memberCount`, `taskCount`,
//! `createProject`): `cargo run -p fraiseql-example-saas -- [--config examples/saas/fraiseql.toml]`.

use std::sync::Arc;

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(p)) => p,
        (None, _) => std::env::var("FRAISEQL_CONFIG")
            .unwrap_or_else(|_| "examples/saas/fraiseql.toml".to_owned()),
        _ => anyhow::bail!("usage: saas-server [--config <fraiseql.toml>]"),
    };
    let config = fraiseql::config::load_file(std::path::Path::new(&path))
        .with_context(|| format!("loading {path}"))?;
    let telemetry = fraiseql::init_telemetry(&config)?;
    let served = async {
        let engine = fraiseql::Engine::with_resolvers(config, fraiseql_example_saas::resolvers())?;
        fraiseql::run(Arc::new(engine)).await?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    served
}
