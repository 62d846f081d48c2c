//! A database of a test's own: cloned from a template migrated once per set of migration files,
//! dropped with the value.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::Path;

use crate::{unique_suffix, TestError};

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

pub(crate) async fn connect_url(url: &str) -> Result<tokio_postgres::Client, TestError> {
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
        let name = format!("fraiseql_test_{}", unique_suffix());
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

    /// From now on, counts every row a committed transaction proposes for insertion into `table`
    /// (in `public`), including rows `ON CONFLICT DO NOTHING` then skips: a handler that ran
    /// twice shows here even where its table keeps one row per event. A `BEFORE INSERT` trigger
    /// writes the count in the same transaction, so a run that rolled back is not counted. Read
    /// it with [`TestDatabase::insert_attempts`].
    pub async fn count_insert_attempts(&self, table: &str) -> Result<(), TestError> {
        let table = plain_identifier(table)?;
        self.connect()
            .await?
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS fraiseql_test_insert_attempt (tbl text NOT NULL);
                 CREATE OR REPLACE FUNCTION fraiseql_test_count_insert() RETURNS trigger
                   LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
                   BEGIN INSERT INTO fraiseql_test_insert_attempt (tbl) VALUES (TG_TABLE_NAME); RETURN NEW; END $$;
                 CREATE TRIGGER fraiseql_test_count_insert BEFORE INSERT ON public.\"{table}\"
                   FOR EACH ROW EXECUTE FUNCTION fraiseql_test_count_insert();"
            ))
            .await?;
        Ok(())
    }

    /// Rows proposed for insertion into `table` by committed transactions since
    /// [`TestDatabase::count_insert_attempts`].
    pub async fn insert_attempts(&self, table: &str) -> Result<i64, TestError> {
        let table = plain_identifier(table)?;
        Ok(self
            .connect()
            .await?
            .query_one(
                "SELECT count(*) FROM fraiseql_test_insert_attempt WHERE tbl = $1",
                &[&table],
            )
            .await?
            .get(0))
    }

    /// A fresh, empty database.
    pub async fn empty() -> Result<Self, TestError> {
        let admin = admin().await?;
        let name = format!("fraiseql_test_{}", unique_suffix());
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        Ok(Self {
            url: url_for(&name),
            name,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        with_admin_blocking(move |admin| async move { drop_database(&admin, &name).await });
    }
}

/// `name` if it is a plain lower-case SQL identifier (it is spliced into DDL).
fn plain_identifier(name: &str) -> Result<&str, TestError> {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(name)
    } else {
        Err(format!("`{name}` is not a plain lower-case table name").into())
    }
}

/// Drops database `name` (its sessions ended first); errors are ignored, as in any clean-up.
pub(crate) async fn drop_database(admin: &tokio_postgres::Client, name: &str) {
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}

/// Runs `cleanup` with a maintenance connection and waits for it. `Drop` may run inside a
/// runtime, which cannot block on a future: a thread with a runtime of its own does the async
/// work. Nothing happens if the server does not answer.
pub(crate) fn with_admin_blocking<F, Fut>(cleanup: F)
where
    F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            if let Ok(admin) = admin().await {
                cleanup(admin).await;
            }
        });
    })
    .join();
}
