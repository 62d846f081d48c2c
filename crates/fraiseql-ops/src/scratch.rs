//! Files made along the way (data sections, a move's archive, a dump for pg_restore): private to
//! the user, removed when the operation ends, whatever way it ends.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{io, TransferError};

/// Files made along the way, removed when dropped.
#[derive(Default)]
pub(crate) struct Scratch(Vec<PathBuf>);

impl Scratch {
    /// A new file name in `dir` (`.fraiseql-<name>-<uuid>.partial`), removed with the scratch.
    pub fn file(&mut self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!(
            ".fraiseql-{}-{}.partial",
            name,
            Uuid::new_v4().simple()
        ));
        self.0.push(p.clone());
        p
    }

    /// Removes `path` with the scratch too.
    pub fn adopt(&mut self, path: PathBuf) {
        self.0.push(path);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Creates `path`, readable and writable by its owner only; refused if it exists.
pub(crate) async fn create_private(path: &Path) -> Result<tokio::fs::File, TransferError> {
    let mut o = tokio::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path).await.map_err(io(path))
}
