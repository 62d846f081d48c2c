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
pub const TEST_JWT_SECRET: &str = "fraiseql-test-secret-0123456789";

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
        Ok(
            fraiseql_engine::tenancy::provision::create_tenant(&self.config, key, "free", None)
                .await?,
        )
    }

    /// A superuser client inside the tenant's database with its schema on the search_path
    /// (for arranging data the API cannot write yet).
    pub async fn admin_client(
        &self,
        rec: &fraiseql_engine::tenancy::TenantRecord,
    ) -> Result<tokio_postgres::Client, TestError> {
        let path = (rec.schema != "public").then_some(rec.schema.as_str());
        Ok(
            fraiseql_engine::tenancy::provision::connect(&rec.server, Some(&rec.database), path)
                .await?,
        )
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
            auth, tenant, &roles, None,
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
        let resp = self.router.clone().oneshot(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(TestResponse {
            status,
            content_type,
            json,
            text,
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
}

impl NatsServer {
    /// Starts a server (`$NATS_SERVER_BIN`, else `nats-server` on the PATH, else
    /// `/usr/sbin/nats-server`) and waits until it accepts connections.
    pub fn start() -> Result<Self, TestError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = std::env::temp_dir().join(format!("fraiseql-nats-{}", uuid_like()));
        std::fs::create_dir_all(&store)?;
        let mut s = Self {
            child: None,
            port,
            store,
        };
        s.resume()?;
        Ok(s)
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
