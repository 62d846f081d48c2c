//! The `fraiseql` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use fraiseql::config::Config;
use fraiseql::Engine;
use tokio_postgres::NoTls;

#[derive(Parser)]
#[command(
    name = "fraiseql",
    version,
    about = "A multi-tenant GraphQL engine for PostgreSQL"
)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        env = "FRAISEQL_CONFIG",
        default_value = "fraiseql.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server.
    Run,
    /// Check the config, the schema, and that every database answers and matches the schema.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Apply pending migrations to every database that has `migrations` configured.
    Migrate,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate config + schema + databases.
    Validate,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run => run(&cli.config).await,
        Command::Config {
            action: ConfigAction::Validate,
        } => validate(&cli.config).await,
        Command::Migrate => migrate(&cli.config).await,
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(fraiseql::config::load_file(path)?)
}

async fn run(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let engine = Arc::new(Engine::from_config(config)?);
    engine.check_databases().await?;
    let c = engine.config();
    let addr = format!("{}:{}", c.server.host, c.server.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
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
    if c.observers.enabled {
        println!("NATS: not supported by this version (observers are ignored)");
    } else {
        println!("NATS: disabled");
    }
    println!(
        "Databases: {}",
        c.databases.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    fraiseql::serve(engine, listener, shutdown_signal()).await?;
    println!("fraiseql stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn validate(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    println!("✓ config {} is valid", path.display());
    let engine = Engine::from_config(config)?;
    println!(
        "✓ schema {} is valid ({} types, {} root fields)",
        engine.config().schema.path.display(),
        engine.schema().catalog.types.len(),
        engine.schema().catalog.queries.len()
    );
    engine.check_databases().await?;
    for name in engine.config().databases.keys() {
        println!("✓ database `{name}` answers and matches the schema");
    }
    Ok(())
}

async fn migrate(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let mut failed = 0;
    for (name, db) in &config.databases {
        let (Some(url), Some(dir)) = (&db.url, &db.migrations) else {
            continue;
        };
        let pg = fraiseql::engine::db::pg_config(name, url)?;
        let result = async {
            let (mut client, conn) = pg.connect(NoTls).await?;
            let task = tokio::spawn(conn);
            let applied = fraiseql::engine::migrate::apply(&mut client, dir).await?;
            drop(client);
            let _ = task.await;
            anyhow::Ok(applied)
        }
        .await;
        match result {
            Ok(applied) if applied.is_empty() => println!("database `{name}`: up to date"),
            Ok(applied) => println!("database `{name}`: applied {}", applied.join(", ")),
            Err(e) => {
                failed += 1;
                eprintln!("database `{name}`: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} database(s) failed to migrate");
    }
    Ok(())
}
