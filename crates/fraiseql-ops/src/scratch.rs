//! Files made along the way (data sections, a move's archive, a dump for pg_restore): in a
//! folder of the operation's own that only its user can enter (0700), each file created 0600,
//! removed with everything in it when the operation ends, however it ends. The binary turns
//! SIGINT and SIGTERM into an [`Interrupt`](crate::interrupt::Interrupt), so Ctrl-C ends the
//! operation through the same path; only SIGKILL leaves the folder behind
//! (`.fraiseql-<uuid>`, in `$TMPDIR` or beside the archive).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use uuid::Uuid;

use crate::error::{io, TransferError};

/// A private folder for one operation's files, removed when dropped.
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: PathBuf,
    next: AtomicU32,
}

impl Scratch {
    /// A new folder `.fraiseql-<uuid>` in `parent`, mode 0700.
    pub fn new_in(parent: &Path) -> Result<Self, TransferError> {
        let dir = parent.join(format!(".fraiseql-{}", Uuid::new_v4().simple()));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir).map_err(io(&dir))?;
        Ok(Self {
            dir,
            next: AtomicU32::new(0),
        })
    }

    /// A new folder in `$TMPDIR` (the system's temporary folder).
    pub fn in_temp() -> Result<Self, TransferError> {
        Self::new_in(&std::env::temp_dir())
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new file name in the folder (`<n>-<name>`); nothing is created.
    pub fn file(&self, name: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{n}-{name}"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_folder_is_private_and_goes_away() {
        use std::os::unix::fs::PermissionsExt;
        let s = Scratch::in_temp().expect("scratch");
        let dir = s.dir().to_owned();
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let f = s.file("dump");
        assert_ne!(f, s.file("dump"), "every name is new");
        drop(create_private(&f).await.expect("file"));
        let mode = std::fs::metadata(&f).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            create_private(&f).await.is_err(),
            "never over an existing file"
        );
        drop(s);
        assert!(!dir.exists());
    }
}
