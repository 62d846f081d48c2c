//! The `fraiseql` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use fraiseql::config::Config;
use fraiseql::engine::tenancy::TenantStatus;
use fraiseql::ops::provision;
use fraiseql::ops::transfer;
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
    /// Tenant registry: create (provision), list, suspend, resume, backup, restore, move, drop-copy.
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
    /// Trusted documents: the manifest `[security.trusted_documents]` loads.
    Documents {
        #[command(subcommand)]
        action: DocumentsAction,
    },
    /// The schema: a starting one read from a database's tables.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
}

#[derive(Subcommand)]
enum SchemaAction {
    /// Read a database's tables (columns, types, NOT NULL, primary and foreign keys) and write a
    /// starting point to edit: a migration creating a `v_<table>` view per table (its key, a
    /// jsonb `data` column, the columns filters, orderings and relations use; `tb_` prefixes
    /// dropped), the SDL (a `@view` type per table, relations both ways, per type a list, a
    /// look-up and a connection, all with `where`), and the config when `--config` does not
    /// exist. `fraiseql migrate` then `fraiseql run` serve it. Tables without a one-column key
    /// are skipped with a note. Refuses to overwrite a file unless --force.
    Init {
        /// The database holding the tables; default `[databases.tenant] url` of the config
        /// (without multi-tenancy).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// The PostgreSQL schema whose tables are read (and where the views are created).
        #[arg(long, default_value = "public")]
        schema: String,
        /// The SDL file to write; default `[schema] path`, else `schema.graphql` beside the config.
        #[arg(long)]
        sdl: Option<PathBuf>,
        /// The migrations folder (the migration is `NNNN_views.sql` after its last one); default
        /// `[databases.tenant] migrations`, else `migrations` beside the config.
        #[arg(long)]
        migrations: Option<PathBuf>,
        /// Overwrite the files if they exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum DocumentsAction {
    /// Build a manifest from `.graphql` files: one document per operation (with the fragments
    /// it spreads, from any of the files), each checked against the config's schema and limits;
    /// `{"version": 1, "documents": {"<sha256>": "<document>"}}`, ids in order.
    Manifest {
        /// The `.graphql` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the manifest here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum EventsAction {
    /// The stream, each consumer group's pending / ack-pending / redelivered messages, each
    /// tenant's outbox backlog and the dead letters (what `nats stream report` and `nats
    /// consumer report` would tell, and what only fraiseql knows). Exits non-zero when
    /// something needs attention.
    Status,
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
    /// List the registry, with each tenant's usage this month (requests, rows, 429s).
    List,
    /// Change the tenant's plan (`[tiers.<tier>]`); running servers apply it within 3 s.
    SetTier {
        /// Tenant key.
        key: String,
        /// The tier: a `[tiers.<name>]` of the config (any name when `[tiers.default]` exists).
        tier: String,
        /// Accept a tier the config does not list (and has no `[tiers.default]` for).
        #[arg(long)]
        force: bool,
    },
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
    /// Write the tenant's data (its database, schema, or rows), registry entry (no passwords)
    /// and unsent events to one archive file, from one snapshot, while it is served. The
    /// archive is signed with `[transfer] archive_key`.
    Backup {
        /// Tenant key.
        key: String,
        /// The archive to write (refused if it exists); default `<key>-<UTC time>.fraiseql-tenant`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Without `[transfer] archive_key`, write an unsigned archive (it restores only with
        /// `--insecure-unsigned`) instead of refusing.
        #[arg(long)]
        insecure_unsigned: bool,
    },
    /// Provision the tenant from an archive (new roles and passwords), load its data, check
    /// every table's row count. Refused if the tenant exists there, unless --force; refused if
    /// the archive is not signed with `[transfer] archive_key`, unless --insecure-unsigned.
    Restore {
        /// Tenant key (the archive's).
        key: String,
        /// The archive `tenant backup` wrote.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL server (admin URL) to restore onto; default `[databases.tenant] url`.
        #[arg(long)]
        server_url: Option<String>,
        /// Replace the tenant's data where it is restored.
        #[arg(long)]
        force: bool,
        /// Accept an archive that is unsigned, made with another key, or altered: only if you
        /// trust everyone who could write where it was kept.
        #[arg(long)]
        insecure_unsigned: bool,
    },
    /// Move the tenant to another PostgreSQL server while the servers run: suspend (503 with
    /// Retry-After), fence and drain, back up, restore there, verify, switch, resume. The old
    /// copy is kept. Ctrl-C undoes it; a killed move is finished with --resume.
    Move {
        /// Tenant key.
        key: String,
        /// The target server's admin URL (schema_per_tenant / row_level: with the host database).
        #[arg(long)]
        server_url: String,
        /// Finish a move that was killed, from its last completed step.
        #[arg(long)]
        resume: bool,
    },
    /// Point tenants at another PostgreSQL server that already holds their data (a promoted
    /// replica, after a failover): checks each tenant there first, then switches the registry;
    /// running servers follow within 3 s. Nothing is copied (see `move` for that).
    SetServer {
        /// Tenant key (or --from for every tenant of a server).
        #[arg(required_unless_present = "from", conflicts_with = "from")]
        key: Option<String>,
        /// The server to serve from now (admin URL, like `tenant create --server-url`).
        #[arg(long)]
        server_url: String,
        /// Every tenant served from this server (URL or host:port's URL) instead of one key.
        #[arg(long)]
        from: Option<String>,
    },
    /// Remove the old copy a move kept.
    DropCopy {
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
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run) {
        fraiseql::init_tracing();
    }
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
        Command::Events {
            action: EventsAction::Status,
        } => events_status(&cli.config).await,
        Command::Documents {
            action: DocumentsAction::Manifest { files, out },
        } => documents_manifest(&cli.config, &files, out.as_deref()),
        Command::Schema {
            action:
                SchemaAction::Init {
                    database_url,
                    schema,
                    sdl,
                    migrations,
                    force,
                },
        } => {
            let paths = InitPaths {
                sdl,
                migrations,
                force,
            };
            schema_init(&cli.config, database_url, schema, paths).await
        }
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
            let profile = config.server.profile;
            if profile == fraiseql::config::Profile::Production {
                eprintln!("note: the production profile: this token is not marked as a development token and is valid on production servers until it expires");
            }
            let token = fraiseql::engine::identity::jwt::issue(
                auth,
                profile,
                &tenant,
                &roles,
                subject.as_deref(),
            )?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn events_status(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let timeout = std::time::Duration::from_millis(config.limits.request_timeout_ms);
    let skip = config
        .multi_tenancy
        .enabled
        .then_some(fraiseql::config::TENANT_DATABASE);
    let pools = fraiseql::engine::connections::Pools::new(&config, timeout, skip)?;
    let s = fraiseql::ops::events_status::report(&config, &pools).await;
    let mut attention = 0;
    match &s.stream {
        Ok(st) => {
            println!(
                "Stream {}: {} messages, {} bytes, sequences {}..{}, replicas {}, subjects {}",
                st.name,
                st.messages,
                st.bytes,
                st.first_seq,
                st.last_seq,
                st.replicas,
                st.subjects.join(" ")
            );
            if let Some(c) = &st.cluster {
                println!("  cluster: {c}");
            }
        }
        Err(e) => {
            attention += 1;
            println!("Stream: not readable: {e}");
        }
    }
    if !s.consumers.is_empty() {
        println!("Consumer groups:");
        for c in &s.consumers {
            match &c.missing {
                Some(why) => {
                    attention += 1;
                    println!("  {}: not on the stream ({why})", c.name);
                }
                None => println!(
                    "  {}: pending {}, ack pending {}, redelivered {}, acknowledged through {}",
                    c.name, c.pending, c.ack_pending, c.redelivered, c.ack_floor
                ),
            }
        }
    }
    println!("Outbox backlog (committed, not yet published):");
    for o in &s.outboxes {
        match &o.error {
            Some(e) => {
                attention += 1;
                println!("  {}: not readable: {e}", o.target);
            }
            None => println!(
                "  {}: {} unsent{}",
                o.target,
                o.unsent,
                o.oldest_secs
                    .map(|s| format!(", oldest {s:.1} s"))
                    .unwrap_or_default()
            ),
        }
    }
    match &s.dead_letters {
        Ok(groups) => {
            println!("Dead letters:");
            for (g, n) in groups {
                if *n > 0 {
                    attention += 1;
                }
                println!("  {g}: {n}");
            }
            if groups.is_empty() {
                println!("  none");
            }
        }
        Err(e) => {
            attention += 1;
            println!("Dead letters: not readable: {e}");
        }
    }
    if attention > 0 {
        bail!("{attention} item(s) need attention (see above; `fraiseql events dead-letters list` shows the dead letters)");
    }
    Ok(())
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

/// `documents manifest`: the manifest of `files`, on standard output or in `out`.
fn documents_manifest(config: &Path, files: &[PathBuf], out: Option<&Path>) -> anyhow::Result<()> {
    let config = load(config)?;
    let path = &config.schema.path;
    let sdl = std::fs::read_to_string(path)
        .with_context(|| format!("reading the schema {}", path.display()))?;
    let schema = fraiseql::schema::build(&sdl, &path.display().to_string())?;
    let mut sources = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        sources.push((f.display().to_string(), text));
    }
    let documents = fraiseql::engine::document::operations::manifest_documents(
        &schema.api,
        &config.limits,
        &sources,
    )
    .map_err(|problems| {
        anyhow::anyhow!(
            "the documents do not fit the schema {}:\n  - {}",
            path.display(),
            problems.join("\n  - ")
        )
    })?;
    let n = documents.len();
    let json = serde_json::json!({ "version": 1, "documents": documents });
    let text = serde_json::to_string_pretty(&json)? + "\n";
    match out {
        None => print!("{text}"),
        Some(o) => {
            std::fs::write(o, text).with_context(|| format!("writing {}", o.display()))?;
            eprintln!("{n} documents written to {}", o.display());
        }
    }
    Ok(())
}

/// The files `schema init` writes, as given on the command line.
struct InitPaths {
    sdl: Option<PathBuf>,
    migrations: Option<PathBuf>,
    force: bool,
}

/// `schema init`: defaults from the config when it exists; a config written when it does not.
async fn schema_init(
    config: &Path,
    database_url: Option<String>,
    schema: String,
    paths: InitPaths,
) -> anyhow::Result<()> {
    let dir = config.parent().unwrap_or(Path::new("")).to_owned();
    let (url, sdl, migrations, write_config) = if config.exists() {
        let c = load(config)?;
        let tenant = c.databases.get(fraiseql::config::TENANT_DATABASE);
        let url = match database_url {
            Some(u) => u,
            None if c.multi_tenancy.enabled => bail!(
                "{} has multi-tenancy: give --database-url of a database holding the tables (a tenant's)",
                config.display()
            ),
            None => tenant.and_then(|d| d.url.clone()).with_context(|| {
                format!("no [databases.tenant] url in {}: give --database-url", config.display())
            })?,
        };
        let migrations = match (paths.migrations, tenant.and_then(|d| d.migrations.clone())) {
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => {
                eprintln!("note: [databases.tenant] has no `migrations`: add migrations = \"migrations\" for `fraiseql migrate` to apply the views");
                dir.join("migrations")
            }
        };
        (url, paths.sdl.unwrap_or(c.schema.path), migrations, None)
    } else {
        let url = database_url.with_context(|| {
            format!(
                "there is no {}: give --database-url (or $DATABASE_URL) to read the tables from",
                config.display()
            )
        })?;
        let sdl = paths.sdl.unwrap_or_else(|| dir.join("schema.graphql"));
        let migrations = paths.migrations.unwrap_or_else(|| dir.join("migrations"));
        (url, sdl, migrations, Some(config.to_owned()))
    };
    let options = fraiseql::ops::scaffold::InitOptions {
        database_url: url,
        schema,
        sdl,
        migrations,
        config: write_config,
        force: paths.force,
    };
    let w = fraiseql::ops::scaffold::init(&options).await?;
    for n in &w.notes {
        eprintln!("note: {n}");
    }
    let files: Vec<String> = w.files.iter().map(|f| f.display().to_string()).collect();
    println!(
        "wrote {} ({} types: {}); next: fraiseql migrate, then fraiseql run",
        files.join(", "),
        w.types.len(),
        w.types.join(", ")
    );
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(fraiseql::config::load_file(path)?)
}

async fn run(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let telemetry = fraiseql::init_telemetry(&config)?;
    let served = async {
        let engine = Arc::new(Engine::from_config(config)?);
        fraiseql::run(engine).await?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    // The spans still buffered go out before the process ends.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    served
}

/// `config validate`: every check on its own line, each failure naming the database, tenant or
/// NATS that failed and why; non-zero when any did.
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
    let mut failed: Vec<String> = Vec::new();
    let mut check = |what: String, r: Result<(), String>| match r {
        Ok(()) => println!("✓ {what}"),
        Err(e) => {
            println!("✗ {what}: {e}");
            failed.push(what);
        }
    };
    if let Some(t) = engine.tenants() {
        let registry = engine.config().multi_tenancy.registry.clone();
        match t.active().await {
            Err(e) => check(
                format!("tenant registry (database `{registry}`)"),
                Err(e.to_string()),
            ),
            Ok(active) => {
                check(
                    format!(
                        "tenant registry (database `{registry}`): {} active tenant(s)",
                        active.len()
                    ),
                    Ok(()),
                );
                if active.is_empty() {
                    println!("- no active tenant yet: the tenant schema was not checked");
                }
                for rec in &active {
                    let r = engine.check_tenant(rec).await.map_err(|e| e.to_string());
                    check(
                        format!("tenant `{}` answers and matches the schema", rec.key),
                        r,
                    );
                }
            }
        }
    }
    let names: Vec<String> = engine.pools().iter().map(|(n, _)| n.clone()).collect();
    for name in names {
        let r = engine
            .check_database(&name)
            .await
            .map_err(|e| e.to_string());
        check(
            format!("database `{name}` answers and matches the schema"),
            r,
        );
    }
    let c = engine.config();
    let needs_nats = c.observers.enabled
        || (c.cache.enabled
            && !engine.schema().catalog.cache.is_empty()
            && !c.nats.servers.is_empty());
    if needs_nats {
        let r = fraiseql::engine::nats::probe(&c.nats, std::time::Duration::from_secs(3))
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        check(format!("NATS answers ({})", c.nats.servers.join(", ")), r);
    }
    if !failed.is_empty() {
        bail!("{} check(s) failed: {}", failed.len(), failed.join("; "));
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
        TenantAction::List => list_tenants(&config).await?,
        TenantAction::SetTier { key, tier, force } => {
            let rec = fraiseql::ops::plans::set_tier(&config, &key, &tier, force).await?;
            println!(
                "tenant `{}` is on tier `{}` (running servers apply it within 3 s)",
                rec.key, rec.tier
            );
        }
        TenantAction::Suspend { key } => {
            provision::set_status(&config, &key, TenantStatus::Suspended).await?;
            println!("tenant `{key}` suspended");
        }
        TenantAction::Resume { key } => {
            provision::set_status(&config, &key, TenantStatus::Active).await?;
            println!("tenant `{key}` active");
        }
        TenantAction::SetServer {
            key,
            server_url,
            from,
        } => {
            use fraiseql::ops::failover::{set_server, Which};
            let which = match (&key, &from) {
                (Some(k), _) => Which::Tenant(k),
                (None, Some(f)) => Which::From(f),
                (None, None) => bail!("give a tenant key or --from <server URL>"),
            };
            for s in set_server(&config, which, &server_url).await? {
                println!(
                    "tenant `{}`: served from {} instead of {} (running servers follow within 3 s)",
                    s.key,
                    provision::server_place(&server_url),
                    s.from
                );
            }
        }
        TenantAction::Backup {
            key,
            out,
            insecure_unsigned,
        } => {
            let out = out.unwrap_or_else(|| transfer::default_archive_name(&key).into());
            let options = transfer::BackupOptions {
                insecure_unsigned,
                interrupt: interrupt_on_signals(),
            };
            transfer::backup(&config, &key, &out, &options, &|l| println!("{l}")).await?;
        }
        TenantAction::Restore {
            key,
            from,
            server_url,
            force,
            insecure_unsigned,
        } => {
            let options = transfer::RestoreOptions {
                force,
                insecure_unsigned,
                interrupt: interrupt_on_signals(),
            };
            let r = transfer::restore(
                &config,
                &key,
                &from,
                server_url.as_deref(),
                &options,
                &|l| println!("{l}"),
            )
            .await?;
            for n in &r.notes {
                println!("note: {n}");
            }
            println!(
                "tenant `{}` is {} ({}: database {}, schema {}, role {}; id {})",
                r.record.key,
                r.record.status.as_str(),
                r.record.strategy,
                r.record.database,
                r.record.schema,
                r.record.role,
                r.record.id
            );
        }
        TenantAction::Move {
            key,
            server_url,
            resume,
        } => {
            let options = transfer::MoveOptions {
                resume,
                interrupt: interrupt_on_signals(),
            };
            let r =
                transfer::move_tenant(&config, &key, &server_url, &options, &|l| println!("{l}"))
                    .await?;
            for n in &r.notes {
                println!("note: {n}");
            }
        }
        TenantAction::DropCopy { key } => {
            transfer::drop_copy(&config, &key, &|l| println!("{l}")).await?;
        }
    }
    Ok(())
}

/// `fraiseql tenant list`: every tenant with its status, tier and this month's usage.
async fn list_tenants(config: &fraiseql::config::Config) -> anyhow::Result<()> {
    let (period, usage) = fraiseql::ops::plans::usage(config).await?;
    println!(
        "{:<24} {:<36} {:<20} {:<11} {:<12} {:>10} {:>12} {:>8}",
        "key", "id", "strategy", "status", "tier", "requests", "rows", "429s"
    );
    for t in provision::list(config).await? {
        let u = usage
            .iter()
            .find(|u| u.key == t.key)
            .cloned()
            .unwrap_or_default();
        println!(
            "{:<24} {:<36} {:<20} {:<11} {:<12} {:>10} {:>12} {:>8}",
            t.key,
            t.id,
            t.strategy,
            t.status.as_str(),
            t.tier,
            u.requests,
            u.rows,
            u.rate_limited
        );
    }
    println!("(usage: {period}, UTC, as the servers last added it: every 10 s)");
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM stop a backup, restore or move: the first fires the returned
/// interrupt (the command undoes what it did and removes its scratch files, then exits with an
/// error), a second exits at once (a move is then finished or undone with `--resume`).
fn interrupt_on_signals() -> transfer::Interrupt {
    let interrupt = transfer::Interrupt::new();
    let fire = interrupt.clone();
    // Installed now: a signal from here on is caught.
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    tokio::spawn(async move {
        let (mut int, mut term) = signals;
        for n in 0..2 {
            tokio::select! {
                () = recv(&mut int) => {},
                () = recv(&mut term) => {},
            }
            if n == 0 {
                eprintln!("interrupted: undoing what was done (a second Ctrl-C stops at once)");
                fire.fire();
            } else {
                eprintln!("stopped before undoing everything");
                std::process::exit(130);
            }
        }
    });
    interrupt
}

/// The next signal of `s` (never, if it could not be installed).
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
