//! Writing an archive: data sections go to private scratch files first (a `COPY` or a
//! `pg_dump`), hashed as they are written; the archive is then put together, sealed with the
//! archive key, in a scratch file renamed at the end, so a failed backup leaves no half archive
//! behind.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::Client;

use super::{encode_header, hex, ArchiveKey, ArchivedTable, Manifest, Section};
use crate::error::{archive_error, db, io, TransferError};
use crate::scratch::{create_private, Scratch};

/// A data section on disk, before it joins an archive.
pub(crate) struct SectionFile {
    /// The scratch file.
    pub path: PathBuf,
    /// Its manifest entry.
    pub section: Section,
}

/// What a backup read from its snapshot, for the manifest and the data after it.
pub(crate) struct Contents {
    /// Every table with its row count.
    pub tables: Vec<ArchivedTable>,
    /// Unsent outbox rows.
    pub outbox_unsent: u64,
    /// The data sections, in file order.
    pub sections: Vec<SectionFile>,
    /// `pg_dump --version`, for dumps.
    pub tool: Option<String>,
}

/// Length and SHA-256 of the file at `path`.
pub(crate) async fn hash_file(path: &Path) -> Result<(u64, String), TransferError> {
    let mut f = tokio::fs::File::open(path).await.map_err(io(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).await.map_err(io(path))?;
        if got == 0 {
            break;
        }
        ctx.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, hex(ctx.finish().as_ref())))
}

/// The section `name` of the file at `path`, hashed.
pub(crate) async fn section_file(path: PathBuf, name: &str) -> Result<SectionFile, TransferError> {
    let (bytes, sha256) = hash_file(&path).await?;
    Ok(SectionFile {
        path,
        section: Section {
            name: name.to_owned(),
            bytes,
            sha256,
        },
    })
}

/// Rows in `COPY … TO STDOUT` text output: one line each (newlines in values are escaped).
fn copy_rows(chunk: &[u8]) -> u64 {
    chunk.iter().filter(|b| **b == b'\n').count() as u64
}

/// COPY of one query's rows into a section file; returns (rows, file).
pub(crate) async fn copy_to_file(
    c: &Client,
    sql: &str,
    name: String,
    scratch: &Scratch,
) -> Result<(u64, SectionFile), TransferError> {
    let path = scratch.file("rows");
    let mut f = create_private(&path).await?;
    let stream = c.copy_out(sql).await.map_err(db("copying rows"))?;
    futures_util::pin_mut!(stream);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let (mut bytes, mut rows) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(db("copying rows"))?;
        ctx.update(&chunk);
        rows += copy_rows(&chunk);
        bytes += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(io(&path))?;
    }
    f.flush().await.map_err(io(&path))?;
    Ok((
        rows,
        SectionFile {
            path,
            section: Section {
                name,
                bytes,
                sha256: hex(ctx.finish().as_ref()),
            },
        },
    ))
}

/// Writes the archive: header, manifest, seal (signed with `key`, else `unsigned`), sections;
/// into `scratch` (on `out`'s file system), renamed to `out` at the end.
pub(crate) async fn assemble(
    out: &Path,
    manifest: &Manifest,
    sections: &[SectionFile],
    key: Option<&ArchiveKey>,
    scratch: &Scratch,
) -> Result<u64, TransferError> {
    let partial = scratch.file("archive");
    let mut f = create_private(&partial).await?;
    let header = encode_header(manifest, key).map_err(|e| archive_error(out, e.to_string()))?;
    f.write_all(&header).await.map_err(io(&partial))?;
    let mut total = header.len() as u64;
    for s in sections {
        let mut src = tokio::fs::File::open(&s.path).await.map_err(io(&s.path))?;
        total += tokio::io::copy(&mut src, &mut f)
            .await
            .map_err(io(&partial))?;
    }
    f.flush().await.map_err(io(&partial))?;
    f.sync_all().await.map_err(io(&partial))?;
    drop(f);
    if tokio::fs::try_exists(out).await.unwrap_or(false) {
        return Err(TransferError::Refused(format!(
            "{} exists: choose another --out, or remove it first",
            out.display()
        )));
    }
    tokio::fs::rename(&partial, out).await.map_err(io(out))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_rows_are_lines() {
        assert_eq!(copy_rows(b"1\ta\\nb\n2\tc\n"), 2);
        assert_eq!(copy_rows(b""), 0);
    }
}
