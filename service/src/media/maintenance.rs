//! The operator's media commands (`tessera media ...`): forgetting other
//! servers' media not downloaded for a while, and removing what nothing
//! names any more (blobs left by purges, failed writes or crashes, and
//! reserved IDs that never got their bytes).

use std::time::{Duration, SystemTime};

use tessera_storage::Store;

use super::BlobStore;
use crate::{Error, Result, now_ms};

/// A blob this young is kept even when nothing names it yet: an upload
/// writes its blob a moment before the row that names it.
const GRACE: Duration = Duration::from_secs(3600);

/// What a cleanup removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub media: u64,
    pub reservations: u64,
    pub blobs: u64,
}

/// Forgets other servers' media (and its thumbnails) not downloaded for
/// `older_than`, then removes the blobs nothing names any more.
pub async fn purge_remote(
    store: &Store,
    blobs: &dyn BlobStore,
    own_server: &str,
    older_than: Duration,
) -> Result<Removed> {
    let before = now_ms().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
    let media = store.purge_remote_media(own_server, before).await?;
    Ok(Removed { media, ..cleanup(store, blobs).await? })
}

/// Removes expired reservations and the blobs nothing names.
pub async fn cleanup(store: &Store, blobs: &dyn BlobStore) -> Result<Removed> {
    let reservations = store.delete_expired_reservations().await?;
    let cutoff = SystemTime::now() - GRACE;
    let old: Vec<String> = blobs
        .list()
        .await
        .map_err(Error::internal)?
        .into_iter()
        .filter(|entry| entry.written < cutoff)
        .map(|entry| entry.hash)
        .collect();
    let mut removed = 0;
    // One at a time, each checked just before it goes: a blob named again
    // meanwhile (a new upload of the same bytes) stays.
    for hash in old {
        if store.unreferenced_blobs(std::slice::from_ref(&hash)).await?.is_empty() {
            continue;
        }
        blobs.delete(&hash).await.map_err(Error::internal)?;
        removed += 1;
    }
    Ok(Removed { media: 0, reservations, blobs: removed })
}
