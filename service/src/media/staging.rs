//! An upload on its way in: its bytes written to a staging file as they
//! arrive, hashed and counted on the way, never held whole in memory.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::Error;

/// A finished staging file. Removed when dropped unless handed to the
/// blob store ([`Staged::into_path`]).
pub(crate) struct Staged {
    path: Option<PathBuf>,
    /// SHA-256 of the bytes, lower-case hex.
    pub hash: String,
    pub size: u64,
}

impl Staged {
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("a staged file has its path until taken")
    }

    /// The file, for the blob store to take; no longer removed on drop.
    pub fn into_path(mut self) -> PathBuf {
        self.path.take().expect("a staged file has its path until taken")
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `body` to a new file in `dir`; more than `limit` bytes is
/// 413 `M_TOO_LARGE` (and nothing is kept).
pub(crate) async fn stage<S>(dir: &Path, body: S, limit: u64) -> Result<Staged, Error>
where
    S: Stream<Item = Result<Bytes, Error>>,
{
    let path = dir.join(format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()));
    let file = tokio::fs::File::create(&path).await.map_err(Error::internal)?;
    // Owns the path from here: any early return removes the file.
    let mut staged = Staged { path: Some(path), hash: String::new(), size: 0 };
    let mut writer = tokio::io::BufWriter::with_capacity(64 * 1024, file);
    let mut hasher = Sha256::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        staged.size += chunk.len() as u64;
        if staged.size > limit {
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
        writer.write_all(&chunk).await.map_err(Error::internal)?;
    }
    writer.flush().await.map_err(Error::internal)?;
    writer.into_inner().sync_all().await.map_err(Error::internal)?;
    staged.hash = hex::encode(hasher.finalize());
    Ok(staged)
}

pub(crate) fn too_large(limit: u64) -> Error {
    Error::too_large(format!("The file is larger than this server's limit of {limit} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, Error>> {
        futures_util::stream::iter(parts.iter().map(|part| Ok(Bytes::from_static(part))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn a_body_is_hashed_counted_and_refused_past_the_limit() {
        let dir = std::env::temp_dir();
        let staged = stage(&dir, chunks(&[b"hello ", b"world"]), 11).await.expect("within the limit");
        assert_eq!(staged.size, 11);
        // sha256("hello world")
        assert_eq!(staged.hash, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(std::fs::read(staged.path()).expect("staged bytes"), b"hello world");
        let path = staged.path().to_owned();
        drop(staged);
        assert!(!path.exists(), "an unused staging file is removed");

        let refused = stage(&dir, chunks(&[b"hello ", b"world"]), 10).await;
        assert!(matches!(refused, Err(Error::Matrix { status: 413, .. })));
    }
}
