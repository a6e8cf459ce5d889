//! The content repository's records (`0022_media`): one row per media ID
//! (uploaded here, reserved for an asynchronous upload, or cached from
//! another server) and its thumbnails. The bytes are not here: rows name
//! them by their SHA-256 in the service's blob store.
//!
//! Must not: touch files, or decide limits and quotas (the service does).

use sqlx::Row;

use crate::{Result, StorageError, Store, error::is_unique_violation, store::now_ms};

/// A media ID and what is known of its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRow {
    pub server_name: String,
    pub media_id: String,
    /// The local user who uploaded (or reserved) it; `None` for remote media.
    pub uploader: Option<String>,
    pub content_type: Option<String>,
    pub file_name: Option<String>,
    /// The content, once it has arrived.
    pub content: Option<MediaContent>,
    /// When the bytes arrived (or the ID was reserved), ms since the epoch.
    pub created_ts: i64,
    /// Until when a reserved ID waits for its bytes.
    pub unused_expires_ts: Option<i64>,
}

/// Where a file's bytes are and how many there are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaContent {
    /// SHA-256 of the bytes, lower-case hex: the blob's name.
    pub hash: String,
    pub size: i64,
}

/// A file whose bytes have arrived.
#[derive(Clone, Debug)]
pub struct NewMedia<'a> {
    pub server_name: &'a str,
    pub media_id: &'a str,
    pub uploader: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub file_name: Option<&'a str>,
    pub content: MediaContent,
}

/// A stored thumbnail of some media.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThumbnailRow {
    pub width: i64,
    pub height: i64,
    /// `crop` or `scale`.
    pub method: String,
    pub animated: bool,
    pub content_type: String,
    pub content: MediaContent,
}

/// What a user has in the content repository.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaUsage {
    /// Bytes of the files they uploaded.
    pub bytes: i64,
    /// Reserved IDs still waiting for their bytes and not expired.
    pub pending: i64,
}

/// Only remote media's last access is tracked, and only this coarsely: a
/// download writes at most once an hour.
const ACCESS_GRANULARITY_MS: i64 = 3_600_000;

impl Store {
    /// Records a file uploaded here or fetched from another server.
    /// Remote media fetched twice at once is recorded once; a local media
    /// ID taken already is `Conflict`.
    pub async fn insert_media(&self, media: &NewMedia<'_>) -> Result<()> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO media (server_name, media_id, uploader, content_type, file_name, content_hash, size,
                                created_ts, unused_expires_ts, last_access_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $8)",
        )
        .bind(media.server_name)
        .bind(media.media_id)
        .bind(media.uploader)
        .bind(media.content_type)
        .bind(media.file_name)
        .bind(&media.content.hash)
        .bind(media.content.size)
        .bind(now)
        .execute(&self.write)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) && media.uploader.is_none() => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict("media ID taken")),
            Err(e) => Err(e.into()),
        }
    }

    /// Reserves a media ID for `uploader`'s asynchronous upload.
    pub async fn reserve_media(
        &self,
        server_name: &str,
        media_id: &str,
        uploader: &str,
        expires_ts: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO media (server_name, media_id, uploader, created_ts, unused_expires_ts, last_access_ts)
             VALUES ($1, $2, $3, $4, $5, $4)",
        )
        .bind(server_name)
        .bind(media_id)
        .bind(uploader)
        .bind(now_ms())
        .bind(expires_ts)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Gives a reserved ID its bytes, unless they arrived already or the
    /// reservation expired: `false` then.
    pub async fn fill_reserved_media(
        &self,
        server_name: &str,
        media_id: &str,
        content_type: Option<&str>,
        file_name: Option<&str>,
        content: &MediaContent,
    ) -> Result<bool> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE media SET content_type = $3, file_name = $4, content_hash = $5, size = $6,
                              created_ts = $7, unused_expires_ts = NULL
             WHERE server_name = $1 AND media_id = $2 AND content_hash IS NULL AND unused_expires_ts > $7",
        )
        .bind(server_name)
        .bind(media_id)
        .bind(content_type)
        .bind(file_name)
        .bind(&content.hash)
        .bind(content.size)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// A media ID's row, if it exists (reserved IDs included, even expired).
    pub async fn get_media(&self, server_name: &str, media_id: &str) -> Result<Option<MediaRow>> {
        let row = sqlx::query(
            "SELECT server_name, media_id, uploader, content_type, file_name, content_hash, size, created_ts,
                    unused_expires_ts
             FROM media WHERE server_name = $1 AND media_id = $2",
        )
        .bind(server_name)
        .bind(media_id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(media_row).transpose()
    }

    /// Notes that remote media was downloaded (for `purge_remote_media`).
    pub async fn touch_remote_media(&self, row: &MediaRow) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE media SET last_access_ts = $3
             WHERE server_name = $1 AND media_id = $2 AND last_access_ts < $4",
        )
        .bind(&row.server_name)
        .bind(&row.media_id)
        .bind(now)
        .bind(now - ACCESS_GRANULARITY_MS)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The bytes `uploader` stored and the reservations still open.
    pub async fn media_usage(&self, uploader: &str) -> Result<MediaUsage> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN content_hash IS NULL AND unused_expires_ts > $2 THEN 1 ELSE 0 END), 0)
                         AS BIGINT)
             FROM media WHERE uploader = $1",
        )
        .bind(uploader)
        .bind(now_ms())
        .fetch_one(&self.read)
        .await?;
        Ok(MediaUsage { bytes: row.try_get(0)?, pending: row.try_get(1)? })
    }

    /// A stored thumbnail of exactly this size and kind.
    pub async fn get_thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        width: i64,
        height: i64,
        method: &str,
        animated: bool,
    ) -> Result<Option<ThumbnailRow>> {
        let row = sqlx::query(
            "SELECT width, height, method, animated, content_type, content_hash, size FROM media_thumbnails
             WHERE server_name = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5
               AND animated = $6",
        )
        .bind(server_name)
        .bind(media_id)
        .bind(width)
        .bind(height)
        .bind(method)
        .bind(i64::from(animated))
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(ThumbnailRow {
                width: row.try_get(0)?,
                height: row.try_get(1)?,
                method: row.try_get(2)?,
                animated: row.try_get::<i64, _>(3)? != 0,
                content_type: row.try_get(4)?,
                content: MediaContent { hash: row.try_get(5)?, size: row.try_get(6)? },
            })
        })
        .transpose()
    }

    /// Records a thumbnail; one made concurrently by another request is
    /// kept instead (they are the same picture).
    pub async fn insert_thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        thumbnail: &ThumbnailRow,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO media_thumbnails (server_name, media_id, width, height, method, animated, content_type,
                                           content_hash, size)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING",
        )
        .bind(server_name)
        .bind(media_id)
        .bind(thumbnail.width)
        .bind(thumbnail.height)
        .bind(&thumbnail.method)
        .bind(i64::from(thumbnail.animated))
        .bind(&thumbnail.content_type)
        .bind(&thumbnail.content.hash)
        .bind(thumbnail.content.size)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Forgets media cached from other servers (`server_name` is ours)
    /// not downloaded since `before_ts`, and their thumbnails; returns how
    /// many media IDs went.
    pub async fn purge_remote_media(&self, own_server: &str, before_ts: i64) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "DELETE FROM media_thumbnails WHERE server_name <> $1 AND EXISTS (
                 SELECT 1 FROM media m WHERE m.server_name = media_thumbnails.server_name
                   AND m.media_id = media_thumbnails.media_id AND m.last_access_ts < $2)",
        )
        .bind(own_server)
        .bind(before_ts)
        .execute(&mut tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM media WHERE server_name <> $1 AND last_access_ts < $2")
            .bind(own_server)
            .bind(before_ts)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected())
    }

    /// Forgets reservations that expired without their bytes.
    pub async fn delete_expired_reservations(&self) -> Result<u64> {
        let deleted = sqlx::query("DELETE FROM media WHERE content_hash IS NULL AND unused_expires_ts <= $1")
            .bind(now_ms())
            .execute(&self.write)
            .await?;
        Ok(deleted.rows_affected())
    }

    /// Of `hashes`, those no media or thumbnail names any more.
    pub async fn unreferenced_blobs(&self, hashes: &[String]) -> Result<Vec<String>> {
        let mut unreferenced = Vec::new();
        for hash in hashes {
            let used = sqlx::query(
                "SELECT 1 FROM media WHERE content_hash = $1
                 UNION ALL SELECT 1 FROM media_thumbnails WHERE content_hash = $1 LIMIT 1",
            )
            .bind(hash)
            .fetch_optional(&self.read)
            .await?;
            if used.is_none() {
                unreferenced.push(hash.clone());
            }
        }
        Ok(unreferenced)
    }
}

fn media_row(row: &sqlx::any::AnyRow) -> Result<MediaRow> {
    let hash: Option<String> = row.try_get(5)?;
    let size: Option<i64> = row.try_get(6)?;
    Ok(MediaRow {
        server_name: row.try_get(0)?,
        media_id: row.try_get(1)?,
        uploader: row.try_get(2)?,
        content_type: row.try_get(3)?,
        file_name: row.try_get(4)?,
        content: hash.map(|hash| MediaContent { hash, size: size.unwrap_or(0) }),
        created_ts: row.try_get(7)?,
        unused_expires_ts: row.try_get(8)?,
    })
}
