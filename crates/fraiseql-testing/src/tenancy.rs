//! A multi-tenant world of a test's own: registry and host databases, a unique name prefix, and
//! everything provisioned under it dropped with the value.

use std::path::Path;

use fraiseql_engine::resolvers::Resolvers;

use crate::client::TestClient;
use crate::database::{drop_database, with_admin_blocking, TestDatabase};
use crate::{unique_suffix, TestError};

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
        let prefix = format!("t{}_", &unique_suffix()[..8]);
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
        let like = format!("{}%", self.prefix);
        let own = [self.shared.name.clone(), self.host.name.clone()];
        with_admin_blocking(move |admin| async move {
            let tenant_dbs = admin
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1",
                    &[&like],
                )
                .await
                .unwrap_or_default();
            for row in tenant_dbs {
                drop_database(&admin, row.get(0)).await;
            }
            // Before the roles: the host database holds schemas and rows the roles own.
            for db in &own {
                drop_database(&admin, db).await;
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
    }
}
