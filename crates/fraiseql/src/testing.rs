//! Test support: a database per test cloned from a migrated template, and [`TestClient`], which
//! sends GraphQL requests through the real router without a socket (`Router::oneshot`).

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use fraiseql_engine::resolvers::Resolvers;

use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::Engine;

/// Errors of the test harness (tests fail loudly with them).
pub type TestError = Box<dyn std::error::Error + Send + Sync>;

/// The maintenance database URL tests use to create and drop databases:
/// `$FRAISEQL_TEST_PG`, else the local superuser.
pub fn admin_url() -> String {
    std::env::var("FRAISEQL_TEST_PG").unwrap_or_else(|_| {
        "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_owned()
    })
}

/// `admin_url()` with another database name (its query string, e.g. `sslmode`, kept).
pub fn url_for(database: &str) -> String {
    let admin = admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin.as_str(), String::new()),
    };
    match base.rfind('/') {
        Some(i) => format!("{}/{database}{query}", &base[..i]),
        None => admin.clone(),
    }
}

async fn connect_url(url: &str) -> Result<tokio_postgres::Client, TestError> {
    Ok(fraiseql_engine::connections::connect(url, None, None).await?)
}

async fn admin() -> Result<tokio_postgres::Client, TestError> {
    connect_url(&admin_url()).await
}

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDatabase {
    /// Database name.
    pub name: String,
    /// Connection URL (superuser).
    pub url: String,
}

impl TestDatabase {
    /// A fresh database with the migrations of `dir` applied: cloned from a template that is
    /// migrated once per distinct set of migration files (so tests in parallel processes share it).
    pub async fn migrated(dir: &Path) -> Result<Self, TestError> {
        let files = fraiseql_engine::migrate::files(dir)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (name, path) in &files {
            name.hash(&mut h);
            std::fs::read(path)?.hash(&mut h);
        }
        let template = format!("fraiseql_tpl_{:016x}", h.finish());
        let admin = admin().await?;
        // One process creates the template; the others wait on the lock, then find it.
        admin
            .execute("SELECT pg_advisory_lock(7431002)", &[])
            .await?;
        let made = Self::ensure_template(&admin, &template, dir).await;
        admin
            .execute("SELECT pg_advisory_unlock(7431002)", &[])
            .await?;
        made?;
        let name = format!("fraiseql_test_{}", uuid_like());
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await?;
        Ok(Self {
            url: url_for(&name),
            name,
        })
    }

    async fn ensure_template(
        admin: &tokio_postgres::Client,
        template: &str,
        dir: &Path,
    ) -> Result<(), TestError> {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await?
            .is_some();
        if exists {
            return Ok(());
        }
        let building = format!("{template}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{building}\""))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{building}\""))
            .await?;
        {
            let mut client = connect_url(&url_for(&building)).await?;
            fraiseql_engine::migrate::apply(&mut client, dir).await?;
        }
        // Renamed only once complete, so a crash mid-way never leaves a half-migrated template.
        admin
            .batch_execute(&format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
            ))
            .await?;
        Ok(())
    }

    /// A client connected to this database as the superuser.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, TestError> {
        connect_url(&self.url).await
    }

    /// Applies the migrations of `dir` (recorded, so applying twice is a no-op).
    pub async fn apply(&self, dir: &Path) -> Result<(), TestError> {
        let mut client = self.connect().await?;
        fraiseql_engine::migrate::apply(&mut client, dir).await?;
        Ok(())
    }
}

impl TestDatabase {
    /// A fresh, empty database.
    pub async fn empty() -> Result<Self, TestError> {
        let admin = admin().await?;
        let name = format!("fraiseql_test_{}", uuid_like());
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        Ok(Self {
            url: url_for(&name),
            name,
        })
    }
}

/// The HS256 secret [`TestTenancy`] configures.
pub const TEST_JWT_SECRET: &str = "fraiseql-test-secret-0123456789-abcdefghij";

/// A multi-tenant world for one test: a registry database and a host database (of
/// `schema_per_tenant` and `row_level` tenants) of its own, and a unique name prefix so tenant
/// databases, schemas and roles never collide with other tests. Everything it provisioned is
/// dropped with it.
pub struct TestTenancy {
    /// The registry database (`[databases.shared]`).
    pub shared: TestDatabase,
    /// The database tenants are provisioned through (`[databases.tenant] url`), and the home of
    /// `schema_per_tenant` and `row_level` tenants.
    pub host: TestDatabase,
    /// Prefix of every database, schema and role this world creates.
    pub prefix: String,
    /// The config tenants are provisioned and served with.
    pub config: fraiseql_config::Config,
    /// That config as TOML (for a server process of the test's own).
    pub config_text: String,
}

impl TestTenancy {
    /// A world with `strategy` (`database_per_tenant`, `schema_per_tenant`, `row_level`) whose
    /// tenant migrations are `migrations`, the schema `schema`; `extra` is appended to the config.
    /// Tokens are optional and the tenant header alone picks the tenant
    /// (`trust_tenant_header`), as behind an authenticating gateway; [`TestTenancy::secured`]
    /// is the production default.
    pub async fn new(
        strategy: &str,
        migrations: &Path,
        schema: &Path,
        extra: &str,
    ) -> Result<Self, TestError> {
        Self::build(strategy, migrations, schema, extra, false).await
    }

    /// A world where every request needs a token bound to its tenant (`[auth] required`, no
    /// trusted header).
    pub async fn secured(
        strategy: &str,
        migrations: &Path,
        schema: &Path,
        extra: &str,
    ) -> Result<Self, TestError> {
        Self::build(strategy, migrations, schema, extra, true).await
    }

    async fn build(
        strategy: &str,
        migrations: &Path,
        schema: &Path,
        extra: &str,
        secured: bool,
    ) -> Result<Self, TestError> {
        let shared = TestDatabase::empty().await?;
        let host = TestDatabase::empty().await?;
        let prefix = format!("t{}_", &uuid_like()[..8]);
        let text = format!(
            r#"[schema]
path = "{schema}"
[multi_tenancy]
enabled = true
strategy = "{strategy}"
name_prefix = "{prefix}"
trust_tenant_header = {trust}
[databases.tenant]
type = "postgresql"
url = "{host}"
pool_max = 4
pool_timeout_secs = 5
migrations = "{migrations}"
[databases.shared]
type = "postgresql"
url = "{registry}"
pool_max = 4
[auth]
required = {secured}
secret = "{TEST_JWT_SECRET}"
issuer = "fraiseql"
audience = "fraiseql"
{extra}"#,
            schema = schema.display(),
            migrations = migrations.display(),
            host = host.url,
            registry = shared.url,
            trust = !secured,
        );
        let config = fraiseql_config::parse_str(&text, "test.toml", Path::new("/"), &|_| None)?;
        Ok(Self {
            shared,
            host,
            prefix,
            config,
            config_text: text,
        })
    }

    /// Provisions tenant `key` (idempotent).
    pub async fn create_tenant(
        &self,
        key: &str,
    ) -> Result<fraiseql_engine::tenancy::TenantRecord, TestError> {
        Ok(fraiseql_ops::provision::create_tenant(&self.config, key, "free", None).await?)
    }

    /// A superuser client inside the tenant's database with its schema on the search_path
    /// (for arranging data the API cannot write yet).
    pub async fn admin_client(
        &self,
        rec: &fraiseql_engine::tenancy::TenantRecord,
    ) -> Result<tokio_postgres::Client, TestError> {
        let path = (rec.schema != "public").then_some(rec.schema.as_str());
        Ok(fraiseql_ops::provision::connect(&rec.server, Some(&rec.database), path).await?)
    }

    /// A client connected AS the tenant's own role (what the server uses), no tenant context set.
    pub async fn role_client(
        &self,
        rec: &fraiseql_engine::tenancy::TenantRecord,
    ) -> Result<tokio_postgres::Client, TestError> {
        let target =
            fraiseql_engine::connections::parse_url("tenant", &rec.server)?.derive("role", |cfg| {
                cfg.dbname(&rec.database)
                    .user(&rec.role)
                    .password(rec.password.as_bytes());
                if rec.schema != "public" {
                    cfg.options(format!("-c search_path={}", rec.schema));
                }
            });
        Ok(target.connect().await?)
    }

    /// A test client serving this world.
    pub async fn client(&self) -> Result<TestClient, TestError> {
        TestClient::from_config(self.config.clone()).await
    }

    /// A test client serving this world with Rust `resolvers`.
    pub async fn client_with(&self, resolvers: Resolvers) -> Result<TestClient, TestError> {
        TestClient::with_resolvers(self.config.clone(), resolvers).await
    }

    /// A token for `tenant` with `roles`, signed with [`TEST_JWT_SECRET`].
    pub fn token(&self, tenant: &str, roles: &[&str]) -> Result<String, TestError> {
        let auth = self.config.auth.as_ref().ok_or("no [auth]")?;
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        Ok(fraiseql_engine::identity::jwt::issue(
            auth,
            self.config.server.profile,
            tenant,
            &roles,
            None,
        )?)
    }
}

impl Drop for TestTenancy {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let shared = self.shared.name.clone();
        let host = self.host.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(admin) = admin().await else { return };
                let like = format!("{prefix}%");
                let dbs = admin
                    .query(
                        "SELECT datname FROM pg_database WHERE datname LIKE $1",
                        &[&like],
                    )
                    .await
                    .unwrap_or_default();
                for row in dbs {
                    let name: String = row.get(0);
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
                for db in [&shared, &host] {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                        .await;
                }
                let roles = admin
                    .query(
                        "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
                        &[&like],
                    )
                    .await
                    .unwrap_or_default();
                for row in roles {
                    let name: String = row.get(0);
                    let _ = admin
                        .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                        .await;
                }
            });
        })
        .join();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime; a thread with its own runtime does the async work.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = admin().await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn uuid_like() -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::time::SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    std::thread::current().id().hash(&mut h);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COUNTER
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct TestResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body parsed as JSON (`Null` if it was not JSON).
    pub json: serde_json::Value,
    /// The raw body.
    pub text: String,
    /// Every response header.
    pub headers: http::HeaderMap,
}

/// Sends GraphQL requests through the real router, in process.
pub struct TestClient {
    engine: Arc<Engine>,
    router: axum::Router,
    tenant: Option<String>,
    token: Option<String>,
}

impl TestClient {
    /// Loads the config file, checks the schema against the databases, and builds the router.
    pub async fn create(config: impl AsRef<Path>) -> Result<Self, TestError> {
        let config = fraiseql_config::load_file(config.as_ref())?;
        Self::from_config(config).await
    }

    /// Like [`TestClient::create`] with an already loaded config.
    pub async fn from_config(config: fraiseql_config::Config) -> Result<Self, TestError> {
        Self::with_resolvers(config, Resolvers::new()).await
    }

    /// Like [`TestClient::from_config`], serving Rust `resolvers` too.
    pub async fn with_resolvers(
        config: fraiseql_config::Config,
        resolvers: Resolvers,
    ) -> Result<Self, TestError> {
        let engine = Arc::new(Engine::with_resolvers(config, resolvers)?);
        engine.check_databases().await?;
        engine.start_events().await?;
        engine.start_cache_bus().await?;
        engine.start_subscriptions();
        Ok(Self {
            router: fraiseql_server::router(engine.clone()),
            engine,
            tenant: None,
            token: None,
        })
    }

    /// The engine behind the client.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Sends the configured tenant header (`[multi_tenancy] auth_header`) on later requests.
    pub fn set_tenant(&mut self, key: impl Into<String>) {
        self.tenant = Some(key.into());
    }

    /// Sends `Authorization: Bearer <token>` on later requests (`None` to stop).
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// Stops sending the tenant header.
    pub fn clear_tenant(&mut self) {
        self.tenant = None;
    }

    /// Runs `query` and returns the response body as JSON.
    pub async fn execute(&self, query: &str) -> Result<serde_json::Value, TestError> {
        Ok(self.execute_with(query, serde_json::json!({})).await?.json)
    }

    /// Runs `query` with `variables`.
    pub async fn execute_with(
        &self,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<TestResponse, TestError> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        self.post_raw(
            "application/json",
            Some("application/graphql-response+json"),
            serde_json::to_vec(&body)?,
        )
        .await
    }

    /// POSTs `body` as tenant `tenant` (overriding [`TestClient::set_tenant`]) with this client's token.
    pub async fn post_as(&self, tenant: &str, body: Vec<u8>) -> Result<TestResponse, TestError> {
        let req =
            http::Request::post("/graphql").header(http::header::CONTENT_TYPE, "application/json");
        self.send_as(Some(tenant), req, Body::from(body)).await
    }

    /// Sends any POST body to `/graphql`.
    pub async fn post_raw(
        &self,
        content_type: &str,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<TestResponse, TestError> {
        let mut req =
            http::Request::post("/graphql").header(http::header::CONTENT_TYPE, content_type);
        if let Some(a) = accept {
            req = req.header(http::header::ACCEPT, a);
        }
        self.send(req, Body::from(body)).await
    }

    /// Sends a GET to `uri` (e.g. `/graphql?query=...`).
    pub async fn get(&self, uri: &str, accept: Option<&str>) -> Result<TestResponse, TestError> {
        let mut req = http::Request::get(uri);
        if let Some(a) = accept {
            req = req.header(http::header::ACCEPT, a);
        }
        self.send(req, Body::empty()).await
    }

    async fn send(
        &self,
        req: http::request::Builder,
        body: Body,
    ) -> Result<TestResponse, TestError> {
        self.send_as(self.tenant.as_deref(), req, body).await
    }

    async fn send_as(
        &self,
        tenant: Option<&str>,
        mut req: http::request::Builder,
        body: Body,
    ) -> Result<TestResponse, TestError> {
        if let Some(t) = tenant {
            // Raw bytes, so tests can send what a hostile client would (unicode, huge values).
            req = req.header(
                self.engine.config().multi_tenancy.auth_header.as_str(),
                http::HeaderValue::from_bytes(t.as_bytes())?,
            );
        }
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.oneshot(req, body).await
    }

    /// Sends a GET to `uri` with these headers alone (no tenant header, no token).
    pub async fn get_with(
        &self,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<TestResponse, TestError> {
        let mut req = http::Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.oneshot(req, Body::empty()).await
    }

    async fn oneshot(
        &self,
        req: http::request::Builder,
        body: Body,
    ) -> Result<TestResponse, TestError> {
        let resp = self.router.clone().oneshot(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(TestResponse {
            status,
            content_type,
            json,
            text,
            headers,
        })
    }
}

/// A `nats-server` with JetStream of a test's own (as nats.rs's tests do): a free local port and a
/// temporary store, killed and removed on drop. It can be stopped and started again on the same
/// port and store, to test what happens while NATS is away.
pub struct NatsServer {
    child: Option<std::process::Child>,
    /// The port it listens on.
    pub port: u16,
    store: std::path::PathBuf,
    extra: Vec<String>,
}

impl NatsServer {
    /// Starts a server (`$NATS_SERVER_BIN`, else `nats-server` on the PATH, else
    /// `/usr/sbin/nats-server`) and waits until it accepts connections.
    pub fn start() -> Result<Self, TestError> {
        Self::start_with(&[])
    }

    /// Like [`NatsServer::start`] with more `nats-server` arguments (TLS, cluster routes...).
    pub fn start_with(extra: &[&str]) -> Result<Self, TestError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::start_on(port, extra)
    }

    /// Like [`NatsServer::start_with`] on a given port.
    pub fn start_on(port: u16, extra: &[&str]) -> Result<Self, TestError> {
        let store = std::env::temp_dir().join(format!("fraiseql-nats-{}", uuid_like()));
        std::fs::create_dir_all(&store)?;
        let mut s = Self {
            child: None,
            port,
            store,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        s.resume()?;
        Ok(s)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn binary() -> String {
        if let Ok(b) = std::env::var("NATS_SERVER_BIN") {
            return b;
        }
        let on_path = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nats-server").is_file()));
        if on_path {
            "nats-server".to_owned()
        } else {
            "/usr/sbin/nats-server".to_owned()
        }
    }

    /// Stops the server (SIGKILL): clients see the connection drop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn resume(&mut self) -> Result<(), TestError> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = std::process::Command::new(Self::binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(format!("nats-server did not listen on port {}", self.port).into())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A PostgreSQL cluster of a test's own (`initdb` into a temporary folder, a free port), stopped
/// and removed on drop: a second server to move tenants to, or one with TLS. Run as the
/// `postgres` OS user when the test runs as root (PostgreSQL refuses to run as root).
pub struct PgCluster {
    dir: std::path::PathBuf,
    /// The port it listens on (127.0.0.1 and localhost).
    pub port: u16,
    bin: std::path::PathBuf,
}

/// Files of a TLS set-up made for a test: a CA and a server certificate it signed.
pub struct TestCerts {
    /// The CA certificate (PEM), for `sslrootcert` or `[nats] tls_ca`.
    pub ca: std::path::PathBuf,
    /// The server certificate (PEM), for `localhost` and `127.0.0.1`.
    pub cert: std::path::PathBuf,
    /// Its key (PEM).
    pub key: std::path::PathBuf,
}

impl TestCerts {
    /// Makes a CA and a server certificate (CN and SANs `localhost`, `127.0.0.1`) in `dir` with
    /// the `openssl` command.
    pub fn make(dir: &Path) -> Result<Self, TestError> {
        std::fs::create_dir_all(dir)?;
        let run = |args: &[&str]| -> Result<(), TestError> {
            let o = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()?;
            if !o.status.success() {
                return Err(format!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr)
                )
                .into());
            }
            Ok(())
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=fraiseql test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ])?;
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )?;
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ])?;
        Ok(Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        })
    }
}

fn as_postgres(cmd: &Path) -> std::process::Command {
    // PostgreSQL refuses to run as root: root runs its tools as `postgres`.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        std::process::Command::new(cmd)
    }
}

impl PgCluster {
    /// Starts a cluster with `settings` appended to its `postgresql.conf` (e.g. `ssl = on`) and
    /// `hba` as its `pg_hba.conf` (trust for every local TCP connection when `None`).
    pub fn start(settings: &str, hba: Option<&str>) -> Result<Self, TestError> {
        let bin = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("fraiseql-pg-{}", uuid_like()));
        std::fs::create_dir_all(&dir)?;
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let o = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()?;
        if !o.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 60\nfsync = off\nsynchronous_commit = off\n{settings}\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        if let Some(h) = hba {
            std::fs::write(data.join("pg_hba.conf"), h)?;
        }
        let o = as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-l"])
            .arg(dir.join("log"))
            .args(["-w", "-t", "30", "start"])
            .output()?;
        if !o.status.success() {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(
                format!("pg_ctl start: {}{log}", String::from_utf8_lossy(&o.stderr)).into(),
            );
        }
        Ok(Self { dir, port, bin })
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), on a port of its own: promote it
    /// with [`PgCluster::promote`] to fail over.
    pub fn standby_of(primary: &PgCluster) -> Result<Self, TestError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("fraiseql-pg-{}", uuid_like()));
        std::fs::create_dir_all(&dir)?;
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let o = as_postgres(&primary.bin.join("pg_basebackup"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--no-sync",
                "-c",
                "fast",
            ])
            .output()?;
        if !o.status.success() {
            return Err(format!("pg_basebackup: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        let conf = format!(
            "\nport = {port}\nunix_socket_directories = '{}'\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        let o = as_postgres(&primary.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-l"])
            .arg(dir.join("log"))
            .args(["-w", "-t", "30", "start"])
            .output()?;
        if !o.status.success() {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start (standby): {}{log}",
                String::from_utf8_lossy(&o.stderr)
            )
            .into());
        }
        Ok(Self {
            dir,
            port,
            bin: primary.bin.clone(),
        })
    }

    /// Promotes a standby to a primary (`pg_ctl promote`, waiting for it).
    pub fn promote(&self) -> Result<(), TestError> {
        let o = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-t", "30", "promote"])
            .output()?;
        if !o.status.success() {
            return Err(format!("pg_ctl promote: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        Ok(())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a crash of its host would.
    pub fn crash(&self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// A folder the cluster's user can read (for certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The superuser URL of database `db` (plain TCP on 127.0.0.1).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP answer read off the wire.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port` over a connection of its own (no client library:
/// what a test sees is what went over the socket). `None` if nothing answered.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<HttpAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    // Chunked bodies (streamed answers) are joined.
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut joined = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            joined.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        joined
    } else {
        body.to_owned()
    };
    Some(HttpAnswer {
        status,
        headers,
        body,
    })
}

/// A server process of a test's own (`fraiseql run` or an application's binary), ended by its
/// pid when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    /// The port it serves `/graphql` on.
    pub port: u16,
}

impl ServerProcess {
    /// Spawns `cmd` (which must serve on `port`) and waits up to 30 s until `/health` answers.
    pub async fn start(mut cmd: std::process::Command, port: u16) -> Result<Self, TestError> {
        let child = cmd.spawn()?;
        let mut s = Self { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if http(port, "GET", "/health", &[], "").await.is_some() {
                return Ok(s);
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(format!("the server exited before answering: {status}").into());
            }
            if std::time::Instant::now() > deadline {
                return Err("the server did not answer /health within 30 s".into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A free local port for a server to listen on.
    pub fn free_port() -> Result<u16, TestError> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// POSTs a GraphQL request with these headers; the answer.
    pub async fn graphql(
        &self,
        headers: &[(&str, &str)],
        query: &str,
        variables: serde_json::Value,
    ) -> Option<HttpAnswer> {
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        http(self.port, "POST", "/graphql", &all, &body).await
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; its status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
