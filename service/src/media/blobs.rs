//! Where media bytes live: a [`BlobStore`] names each file by the SHA-256
//! of its bytes, so a file uploaded many times is stored once. The
//! default, [`LocalBlobs`], keeps them under the data directory.
//!
//! An S3-compatible object store fits the same trait (docs/media.md says
//! how): `put` uploads the staged file, `read` is a ranged GET.

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use crate::federation::BoxFuture;

/// A reader of (part of) a blob.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// The bytes of media and thumbnails, by hash (lower-case hex SHA-256).
pub trait BlobStore: Send + Sync {
    /// Takes the finished file at `staged` (a file under
    /// [`BlobStore::staging_dir`]) as the blob `hash`. The file is gone
    /// afterwards, whether or not the blob existed already.
    fn put<'a>(&'a self, hash: &'a str, staged: &'a Path) -> BoxFuture<'a, io::Result<()>>;

    /// The blob's bytes from `start` on, at most `len` of them (all when
    /// `None`); `None` when there is no such blob.
    fn read<'a>(
        &'a self,
        hash: &'a str,
        start: u64,
        len: Option<u64>,
    ) -> BoxFuture<'a, io::Result<Option<BlobReader>>>;

    /// Removes a blob (no error if it is absent).
    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<()>>;

    /// Every blob, for the cleanup command.
    fn list(&self) -> BoxFuture<'_, io::Result<Vec<BlobEntry>>>;

    /// A local directory where uploads are written while they arrive.
    fn staging_dir(&self) -> &Path;
}

/// A stored blob and when it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    pub hash: String,
    pub written: std::time::SystemTime,
}

/// Blobs as files: `<dir>/ab/cd/abcd…`, staged under `<dir>/staging`.
pub struct LocalBlobs {
    dir: PathBuf,
    staging: PathBuf,
}

impl LocalBlobs {
    /// Creates the directories if need be.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let staging = dir.join("staging");
        std::fs::create_dir_all(&staging)?;
        Ok(Self { dir: dir.to_owned(), staging })
    }

    /// Removes the leftovers of uploads a crash cut off: only while no
    /// server runs on this directory (at its start).
    pub fn clear_staging(&self) -> io::Result<()> {
        std::fs::remove_dir_all(&self.staging)?;
        std::fs::create_dir_all(&self.staging)
    }

    fn path(&self, hash: &str) -> io::Result<PathBuf> {
        // The name comes from our own hashing, but a path is never built
        // from anything but hex.
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a SHA-256 hex digest"));
        }
        Ok(self.dir.join(&hash[..2]).join(&hash[2..4]).join(hash))
    }
}

impl BlobStore for LocalBlobs {
    fn put<'a>(&'a self, hash: &'a str, staged: &'a Path) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let path = self.path(hash)?;
            if tokio::fs::try_exists(&path).await? {
                // Freshly written as far as cleanup can tell: it is about to
                // be named by a new row, and cleanup spares recent blobs.
                let touched = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|file| file.set_modified(std::time::SystemTime::now()));
                if touched.is_ok() {
                    return tokio::fs::remove_file(staged).await;
                }
            }
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            // Same file system: atomic, and a concurrent upload of the same
            // bytes just replaces it with identical content.
            tokio::fs::rename(staged, &path).await
        })
    }

    fn read<'a>(
        &'a self,
        hash: &'a str,
        start: u64,
        len: Option<u64>,
    ) -> BoxFuture<'a, io::Result<Option<BlobReader>>> {
        Box::pin(async move {
            let mut file = match tokio::fs::File::open(self.path(hash)?).await {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            if start > 0 {
                file.seek(io::SeekFrom::Start(start)).await?;
            }
            let reader: BlobReader = match len {
                Some(len) => Box::pin(file.take(len)),
                None => Box::pin(file),
            };
            Ok(Some(reader))
        })
    }

    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(hash)?).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, io::Result<Vec<BlobEntry>>> {
        Box::pin(async move {
            let mut hashes = Vec::new();
            let mut stack = vec![(self.dir.clone(), 0)];
            while let Some((dir, depth)) = stack.pop() {
                let mut entries = tokio::fs::read_dir(&dir).await?;
                while let Some(entry) = entries.next_entry().await? {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    match depth {
                        0 | 1 if name.len() == 2 => stack.push((entry.path(), depth + 1)),
                        2 if self.path(&name).is_ok() => {
                            let written = entry.metadata().await?.modified()?;
                            hashes.push(BlobEntry { hash: name, written });
                        }
                        _ => {}
                    }
                }
            }
            Ok(hashes)
        })
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blob_is_stored_once_read_in_ranges_and_deleted() {
        let dir = std::env::temp_dir().join(format!("tessera-blobs-{}", rand::random::<u64>()));
        let blobs = LocalBlobs::open(&dir).expect("blob directory");
        let hash = "ab".repeat(32);
        for _ in 0..2 {
            let staged = blobs.staging_dir().join("upload");
            tokio::fs::write(&staged, b"hello world").await.expect("staged file");
            blobs.put(&hash, &staged).await.expect("put");
            assert!(!staged.exists(), "the staged file is taken");
        }
        let listed: Vec<String> =
            blobs.list().await.expect("list").into_iter().map(|entry| entry.hash).collect();
        assert_eq!(listed, vec![hash.clone()]);

        let mut part = String::new();
        let mut reader = blobs.read(&hash, 6, Some(3)).await.expect("read").expect("blob exists");
        reader.read_to_string(&mut part).await.expect("bytes");
        assert_eq!(part, "wor");

        blobs.delete(&hash).await.expect("delete");
        assert!(blobs.read(&hash, 0, None).await.expect("read").is_none());
        assert!(blobs.read("../../etc/passwd", 0, None).await.is_err(), "only hashes name blobs");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
