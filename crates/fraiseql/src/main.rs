//! The `fraiseql` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use fraiseql::config::Config;
use fraiseql::engine::tenancy::provision;
use fraiseql::engine::tenancy::TenantStatus;
use fraiseql::Engine;

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
    /// Apply pending migrations to every tenant (or one) and to every shared database that has
    /// `migrations` configured.
    Migrate {
        /// Only this tenant (default: `$TENANT_ID`, else all).
        #[arg(long, env = "TENANT_ID")]
        tenant: Option<String>,
    },
    /// Tenant registry: create (provision), list, suspend, resume.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Print a signed development token (HS256 secret or `[auth] private_key`).
    Token {
        /// The tenant key the token is for.
        #[arg(long)]
        tenant: String,
        /// A role (repeat for several).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The `sub` claim.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Events: the dead letters of the `[[subscribers]]` consumer groups.
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
}

#[derive(Subcommand)]
enum EventsAction {
    /// Messages a consumer group gave up on after `max_deliver` deliveries.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Every dead letter: id, consumer group, subject, attempts, last error, payload.
    List,
    /// Runs each dead letter's consumer-group statement again; a success removes it. Each row is
    /// claimed first, so two operators never run one handler twice.
    Retry {
        /// Only this dead letter.
        #[arg(long)]
        id: Option<i64>,
        /// Also take rows whose earlier retry was interrupted (outcome unknown).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TenantAction {
    /// Provision a tenant: database or schema, login role, migrations, RLS, registry row. Idempotent.
    Create {
        /// `[a-z0-9_]{1,40}`
        key: String,
        /// Subscription tier recorded in the registry.
        #[arg(long, default_value = "free")]
        tier: String,
        /// Place the tenant on another PostgreSQL server (its admin URL) than `[databases.tenant] url`.
        #[arg(long)]
        server_url: Option<String>,
    },
    /// List the registry.
    List,
    /// Refuse the tenant's requests with 503.
    Suspend {
        /// Tenant key.
        key: String,
    },
    /// Serve the tenant again.
    Resume {
        /// Tenant key.
        key: String,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate config + schema + databases.
    Validate,
}

fn main() -> std::process::ExitCode {
    fraiseql::init_tracing();
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
        Command::Migrate { tenant } => migrate(&cli.config, tenant.as_deref()).await,
        Command::Tenant { action } => tenant(&cli.config, action).await,
        Command::Events {
            action: EventsAction::DeadLetters { action },
        } => dead_letters(&cli.config, action).await,
        Command::Token {
            tenant,
            roles,
            subject,
        } => {
            let config = load(&cli.config)?;
            let auth = config
                .auth
                .as_ref()
                .context("no [auth] section in the config: tokens are not used")?;
            let token =
                fraiseql::engine::identity::jwt::issue(auth, &tenant, &roles, subject.as_deref())?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn dead_letters(path: &Path, action: DeadLetterAction) -> anyhow::Result<()> {
    use fraiseql::engine::events::dead_letter::{self, Retried};
    let config = load(path)?;
    let timeout = std::time::Duration::from_millis(config.limits.request_timeout_ms);
    let skip = config
        .multi_tenancy
        .enabled
        .then_some(fraiseql::config::TENANT_DATABASE);
    let pools = fraiseql::engine::connections::Pools::new(&config, timeout, skip)?;
    match action {
        DeadLetterAction::List => {
            let letters = dead_letter::list(&config, &pools).await?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for d in letters {
                println!(
                    "#{} {} {} attempts={} at {}{}\n  error: {}\n  payload: {}",
                    d.id,
                    d.consumer,
                    d.subject,
                    d.attempts,
                    d.created_at,
                    d.retry_started_at
                        .as_deref()
                        .map(|t| format!(" (retry started {t}, outcome unknown)"))
                        .unwrap_or_default(),
                    d.error,
                    d.payload
                );
            }
            Ok(())
        }
        DeadLetterAction::Retry { id, force } => {
            let results = dead_letter::retry(&config, &pools, id, force).await?;
            let mut failed = 0;
            for r in &results {
                match r {
                    Retried::Done(id) => println!("#{id} handled; removed from the dead letters"),
                    Retried::Failed(id, e) => {
                        failed += 1;
                        println!("#{id} failed again: {e}");
                    }
                    Retried::Claimed(id) => println!(
                        "#{id} skipped: another retry holds it (or one was interrupted; --force takes it over)"
                    ),
                    Retried::Unconfirmed(id, e) => {
                        failed += 1;
                        println!("#{id} was handled but could not be removed ({e}); it stays claimed and will not run again unless forced");
                    }
                }
            }
            if results.is_empty() {
                println!("nothing to retry");
            }
            if failed > 0 {
                bail!("{failed} dead letter(s) failed again");
            }
            Ok(())
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(fraiseql::config::load_file(path)?)
}

async fn run(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let engine = Arc::new(Engine::from_config(config)?);
    fraiseql::run(engine).await?;
    Ok(())
}

async fn validate(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    println!("✓ config {} is valid", path.display());
    let engine = Engine::from_config(config)?;
    println!(
        "✓ schema {} is valid ({} types, {} queries, {} mutations)",
        engine.config().schema.path.display(),
        engine.schema().catalog.types.len(),
        engine.schema().catalog.queries.len(),
        engine.schema().catalog.mutations.len()
    );
    engine.check_databases().await?;
    if let Some(t) = engine.tenants() {
        match t.any_active().await? {
            Some(rec) => println!("✓ tenant `{}` answers and matches the schema", rec.key),
            None => println!("- no active tenant yet: the tenant schema was not checked"),
        }
    }
    for name in engine.config().databases.keys() {
        println!("✓ database `{name}` answers and matches the schema");
    }
    let c = engine.config();
    if c.observers.enabled {
        match fraiseql::engine::nats::probe(&c.nats, std::time::Duration::from_secs(3)).await {
            Ok(_) => println!("✓ NATS answers ({})", c.nats.servers.join(", ")),
            Err(e) => bail!("NATS does not answer: {e}"),
        }
    }
    Ok(())
}

async fn migrate(path: &Path, only: Option<&str>) -> anyhow::Result<()> {
    let config = load(path)?;
    let mut failed = 0;
    let multi = config.multi_tenancy.enabled;
    for (name, db) in &config.databases {
        if multi && name == fraiseql::config::TENANT_DATABASE {
            continue;
        }
        let (Some(url), Some(dir)) = (&db.url, &db.migrations) else {
            continue;
        };
        let result = async {
            let mut client = fraiseql::engine::connections::connect(url, None, None).await?;
            let applied = fraiseql::engine::migrate::apply(&mut client, dir).await?;
            anyhow::Ok(applied)
        }
        .await;
        report(&format!("database `{name}`"), result, &mut failed);
    }
    if multi {
        let tenants = provision::list(&config).await?;
        if let Some(key) = only {
            if !tenants.iter().any(|t| t.key == key) {
                bail!("no tenant `{key}` in the registry");
            }
        }
        for rec in tenants.iter().filter(|t| only.is_none_or(|k| k == t.key)) {
            let result = provision::migrate_tenant(&config, rec)
                .await
                .map_err(anyhow::Error::from);
            report(&format!("tenant `{}`", rec.key), result, &mut failed);
        }
    }
    if failed > 0 {
        bail!("{failed} database(s) failed to migrate");
    }
    Ok(())
}

fn report(what: &str, result: anyhow::Result<Vec<String>>, failed: &mut usize) {
    match result {
        Ok(applied) if applied.is_empty() => println!("{what}: up to date"),
        Ok(applied) => println!("{what}: applied {}", applied.join(", ")),
        Err(e) => {
            *failed += 1;
            eprintln!("{what}: {e:#}");
        }
    }
}

async fn tenant(path: &Path, action: TenantAction) -> anyhow::Result<()> {
    let config = load(path)?;
    if !config.multi_tenancy.enabled {
        bail!(
            "[multi_tenancy] enabled = false in {}: there are no tenants",
            path.display()
        );
    }
    match action {
        TenantAction::Create {
            key,
            tier,
            server_url,
        } => {
            let rec = provision::create_tenant(&config, &key, &tier, server_url.as_deref()).await?;
            println!(
                "tenant `{}` is {} ({}: database {}, schema {}, role {}; id {})",
                rec.key,
                rec.status.as_str(),
                rec.strategy,
                rec.database,
                rec.schema,
                rec.role,
                rec.id
            );
        }
        TenantAction::List => {
            println!(
                "{:<24} {:<36} {:<20} {:<11} tier",
                "key", "id", "strategy", "status"
            );
            for t in provision::list(&config).await? {
                println!(
                    "{:<24} {:<36} {:<20} {:<11} {}",
                    t.key,
                    t.id,
                    t.strategy,
                    t.status.as_str(),
                    t.tier
                );
            }
        }
        TenantAction::Suspend { key } => {
            provision::set_status(&config, &key, TenantStatus::Suspended).await?;
            println!("tenant `{key}` suspended");
        }
        TenantAction::Resume { key } => {
            provision::set_status(&config, &key, TenantStatus::Active).await?;
            println!("tenant `{key}` active");
        }
    }
    Ok(())
}
