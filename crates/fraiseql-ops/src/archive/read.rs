//! Reading an archive: its seal checked with the config's key, its manifest, and its sections
//! checked against their SHA-256 (the manifest, hence the checksums, are what the seal covers).

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{decode_header, hex, ArchiveKey, Manifest, Trust};
use crate::error::{archive_error, io, TransferError};
use crate::scratch::create_private;

/// An archive opened for restoring: its manifest, and where its data starts.
pub(crate) struct Archive {
    /// The file.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    data_at: u64,
    /// Why its origin was not established, when it was accepted anyway (`--insecure-unsigned`).
    pub unverified: Option<String>,
    /// Where restoring it keeps its scratch files (a folder of their own inside), when not
    /// `$TMPDIR`: a move's own scratch folder, so a killed move leaves one folder to remove.
    pub scratch_in: Option<PathBuf>,
}

impl Archive {
    /// Reads the header and manifest of `path`, checks its seal with `key` and the file's length
    /// against the manifest. An archive that is unsigned, or whose seal does not verify, is
    /// refused unless `insecure_unsigned`.
    pub async fn open(
        path: &Path,
        key: Option<&ArchiveKey>,
        insecure_unsigned: bool,
    ) -> Result<Self, TransferError> {
        let f = tokio::fs::File::open(path).await.map_err(io(path))?;
        let mut r = tokio::io::BufReader::new(f);
        let header = decode_header(&mut r)
            .await
            .map_err(|e| archive_error(path, e))?;
        let unverified = match header.seal.check(key) {
            Trust::Verified => None,
            Trust::Unverified(reason) if insecure_unsigned => Some(reason),
            Trust::Unverified(reason) => {
                return Err(TransferError::Unauthenticated {
                    path: path.display().to_string(),
                    reason,
                })
            }
        };
        let (manifest, data_at) = (header.manifest, header.data_at);
        let len = tokio::fs::metadata(path).await.map_err(io(path))?.len();
        let want = data_at + manifest.sections.iter().map(|s| s.bytes).sum::<u64>();
        if len != want {
            return Err(archive_error(
                path,
                format!("the file is {len} bytes, the manifest describes {want}: it is truncated or has something appended"),
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            manifest,
            data_at,
            unverified,
            scratch_in: None,
        })
    }

    /// Reads section `name` in chunks, checking its SHA-256 at the end; `each` gets the chunks.
    pub async fn read_section<F, Fut>(&self, name: &str, mut each: F) -> Result<(), TransferError>
    where
        F: FnMut(bytes::Bytes) -> Fut,
        Fut: std::future::Future<Output = Result<(), TransferError>>,
    {
        let (at, len) = self
            .manifest
            .section(name)
            .ok_or_else(|| archive_error(&self.path, format!("no section `{name}`")))?;
        let want = self
            .manifest
            .sections
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.sha256.clone())
            .unwrap_or_default();
        let mut f = tokio::fs::File::open(&self.path)
            .await
            .map_err(io(&self.path))?;
        f.seek(std::io::SeekFrom::Start(self.data_at + at))
            .await
            .map_err(io(&self.path))?;
        let mut left = len;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        while left > 0 {
            let want_now = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let got = f.read(&mut buf[..want_now]).await.map_err(io(&self.path))?;
            if got == 0 {
                return Err(archive_error(
                    &self.path,
                    format!("section `{name}` is truncated"),
                ));
            }
            ctx.update(&buf[..got]);
            left -= got as u64;
            each(bytes::Bytes::copy_from_slice(&buf[..got])).await?;
        }
        if hex(ctx.finish().as_ref()) != want {
            return Err(archive_error(
                &self.path,
                format!("section `{name}` is damaged (its SHA-256 differs from the manifest's)"),
            ));
        }
        Ok(())
    }

    /// Checks every section's checksum before anything is changed.
    pub async fn verify(&self) -> Result<(), TransferError> {
        for s in &self.manifest.sections {
            self.read_section(&s.name, |_| async { Ok(()) }).await?;
        }
        Ok(())
    }

    /// Writes section `name` to a private file of its own (what pg_restore reads).
    pub async fn extract(&self, name: &str, to: &Path) -> Result<(), TransferError> {
        let f = create_private(to).await?;
        let f = std::sync::Arc::new(tokio::sync::Mutex::new(f));
        self.read_section(name, |chunk| {
            let f = f.clone();
            async move {
                f.lock().await.write_all(&chunk).await.map_err(io(to))?;
                Ok(())
            }
        })
        .await?;
        f.lock().await.flush().await.map_err(io(to))?;
        Ok(())
    }
}
