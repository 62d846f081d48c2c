//! Migrations: every `*.sql` file of a folder, in name order, each once per database, each in its
//! own transaction, recorded in `fraiseql_migrations`. Re-running is a no-op.

use std::path::{Path, PathBuf};

use tokio_postgres::Client;

/// Why migrating a database failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The folder or a file cannot be read.
    #[error("cannot read migrations in {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A migration failed; it was rolled back and later ones were not tried.
    #[error("migration {version} failed: {reason}")]
    Failed {
        /// File name.
        version: String,
        /// PostgreSQL's message.
        reason: String,
    },
    /// Bookkeeping failed.
    #[error("migration bookkeeping failed: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// The migration files of `dir`, sorted by name.
pub fn files(dir: &Path) -> Result<Vec<(String, PathBuf)>, MigrateError> {
    let read = |source| MigrateError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                out.push((name.to_owned(), path.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Applies the pending migrations of `dir` to the database of `client`; returns the ones applied.
/// An advisory lock serialises concurrent migrators of the same database.
pub async fn apply(client: &mut Client, dir: &Path) -> Result<Vec<String>, MigrateError> {
    let files = files(dir)?;
    client
        .batch_execute(
            "SELECT pg_advisory_lock(7431001);
             CREATE TABLE IF NOT EXISTS fraiseql_migrations (
                 version TEXT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );",
        )
        .await?;
    let result = apply_locked(client, &files).await;
    client
        .batch_execute("SELECT pg_advisory_unlock(7431001)")
        .await?;
    result
}

async fn apply_locked(
    client: &mut Client,
    files: &[(String, PathBuf)],
) -> Result<Vec<String>, MigrateError> {
    let mut applied = Vec::new();
    for (version, path) in files {
        let done = client
            .query_opt(
                "SELECT 1 FROM fraiseql_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        let sql = std::fs::read_to_string(path).map_err(|source| MigrateError::Read {
            path: path.clone(),
            source,
        })?;
        let tx = client.transaction().await?;
        if let Err(e) = tx.batch_execute(&sql).await {
            let reason = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            return Err(MigrateError::Failed {
                version: version.clone(),
                reason,
            });
        }
        tx.execute(
            "INSERT INTO fraiseql_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tx.commit().await?;
        applied.push(version.clone());
    }
    Ok(applied)
}
