//! End-to-end encryption keys: device identity keys, one-time keys,
//! fallback keys, and the device-list change stream (`0016_device_keys`).
//!
//! Key JSON is stored as the service checked it; this module only keeps
//! the rules a statement must enforce: an identical re-upload is a no-op,
//! a one-time key ID is never given a different key, and a one-time key is
//! handed out at most once however many claims race.

use ruma::{DeviceId, RoomId, UserId};
use sqlx::Row;

use crate::{Backend, Result, StorageError, Store};

/// One key of an upload: its algorithm, whole key ID and JSON.
pub struct NewKey<'a> {
    pub algorithm: &'a str,
    pub key_id: &'a str,
    pub json: &'a str,
}

/// What `POST /keys/upload` stores for one device, in one transaction.
pub struct KeyUpload<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
    /// The device's identity keys, canonical JSON.
    pub device_keys: Option<&'a str>,
    pub one_time_keys: &'a [NewKey<'a>],
    pub fallback_keys: &'a [NewKey<'a>],
    /// The position a device-list change takes if the identity keys change.
    pub stream_ordering: i64,
}

/// A device's stored identity keys, with its display name.
pub struct StoredDeviceKeys {
    pub device_id: String,
    pub display_name: Option<String>,
    pub keys_json: String,
}

impl Store {
    /// Stores an upload atomically. Returns whether the identity keys
    /// changed (a device-list change was recorded at the upload's position).
    /// Conflict if a one-time key ID already holds a different key.
    pub async fn upload_keys(&self, upload: KeyUpload<'_>) -> Result<bool> {
        let user = upload.user_id.as_str();
        let device = upload.device_id.as_str();
        let mut tx = self.write.begin().await?;
        let mut changed = false;
        if let Some(keys) = upload.device_keys {
            let stored =
                sqlx::query("SELECT keys_json FROM device_keys WHERE user_id = $1 AND device_id = $2")
                    .bind(user)
                    .bind(device)
                    .fetch_optional(&mut tx)
                    .await?;
            let stored: Option<String> = stored.map(|row| row.try_get(0)).transpose()?;
            if stored.as_deref() != Some(keys) {
                sqlx::query(
                    "INSERT INTO device_keys (user_id, device_id, keys_json, stream_ordering)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id, device_id)
                     DO UPDATE SET keys_json = excluded.keys_json, stream_ordering = excluded.stream_ordering",
                )
                .bind(user)
                .bind(device)
                .bind(keys)
                .bind(upload.stream_ordering)
                .execute(&mut tx)
                .await?;
                insert_device_list_change(&mut tx, upload.user_id, upload.stream_ordering).await?;
                changed = true;
            }
        }
        for key in upload.one_time_keys {
            // ON CONFLICT rather than a check first: two uploads of the same
            // key may race, and neither must fail on the other's row.
            let inserted = sqlx::query(
                "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, device_id, key_id) DO NOTHING",
            )
            .bind(user)
            .bind(device)
            .bind(key.algorithm)
            .bind(key.key_id)
            .bind(key.json)
            .execute(&mut tx)
            .await?;
            if inserted.rows_affected() == 0 {
                let row = sqlx::query(
                    "SELECT key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3",
                )
                .bind(user)
                .bind(device)
                .bind(key.key_id)
                .fetch_one(&mut tx)
                .await?;
                if row.try_get::<String, _>(0)? != key.json {
                    return Err(StorageError::Conflict("one-time key ID already holds another key"));
                }
            }
        }
        for key in upload.fallback_keys {
            // The same key again leaves its `used` mark; a new one replaces
            // the algorithm's previous key, unused.
            sqlx::query(
                "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
                 VALUES ($1, $2, $3, $4, $5, 0)
                 ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
                 SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0
                 WHERE fallback_keys.key_id <> excluded.key_id OR fallback_keys.key_json <> excluded.key_json",
            )
            .bind(user)
            .bind(device)
            .bind(key.algorithm)
            .bind(key.key_id)
            .bind(key.json)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Per algorithm, how many one-time keys of the device are unclaimed.
    pub async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2
             GROUP BY algorithm",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// The algorithms of the device's fallback keys not claimed yet.
    pub async fn unused_fallback_key_types(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0
             ORDER BY algorithm",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// The identity keys of every device of the user that uploaded some.
    pub async fn device_keys_of(&self, user_id: &UserId) -> Result<Vec<StoredDeviceKeys>> {
        let rows = sqlx::query(
            "SELECT k.device_id, d.display_name, k.keys_json FROM device_keys k
             JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
             WHERE k.user_id = $1 ORDER BY k.device_id",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredDeviceKeys {
                    device_id: row.try_get(0)?,
                    display_name: row.try_get(1)?,
                    keys_json: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Claims one key per (user, device, algorithm), in one transaction:
    /// the device's oldest one-time key of the algorithm, deleted, or else
    /// its fallback key, kept and marked used. Returns each claim's key ID
    /// and JSON, in order.
    pub async fn claim_keys(
        &self,
        claims: &[(&UserId, &DeviceId, &str)],
    ) -> Result<Vec<Option<(String, String)>>> {
        // One statement that picks and deletes: on PostgreSQL, concurrent
        // claims skip the rows another holds (without SKIP LOCKED the loser
        // would wait, find its row gone and hand out nothing); SQLite runs
        // one writer at a time, so the statement is atomic as it stands.
        let claim = match self.backend {
            Backend::Postgres => {
                "DELETE FROM one_time_keys WHERE seq = (
                     SELECT seq FROM one_time_keys
                     WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                     ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING key_id, key_json"
            }
            Backend::Sqlite => {
                "DELETE FROM one_time_keys WHERE seq = (
                     SELECT seq FROM one_time_keys
                     WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                     ORDER BY seq LIMIT 1)
                 RETURNING key_id, key_json"
            }
        };
        // One transaction, one commit, however many devices: a client
        // claims for everyone in a room at once.
        let mut tx = self.write.begin().await?;
        let mut claimed = Vec::with_capacity(claims.len());
        for (user_id, device_id, algorithm) in claims {
            let row = sqlx::query(claim)
                .bind(user_id.as_str())
                .bind(device_id.as_str())
                .bind(algorithm)
                .fetch_optional(&mut tx)
                .await?;
            if let Some(row) = row {
                claimed.push(Some((row.try_get(0)?, row.try_get(1)?)));
                continue;
            }
            let row = sqlx::query(
                "UPDATE fallback_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                 RETURNING key_id, key_json",
            )
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .bind(algorithm)
            .fetch_optional(&mut tx)
            .await?;
            claimed
                .push(row.map(|row| Ok::<_, StorageError>((row.try_get(0)?, row.try_get(1)?))).transpose()?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records that the user's device list changed at `stream_ordering`
    /// (a device added or removed).
    pub async fn record_device_list_change(&self, user_id: &UserId, stream_ordering: i64) -> Result<()> {
        let mut tx = self.write.begin().await?;
        insert_device_list_change(&mut tx, user_id, stream_ordering).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The users whose device lists changed in `(after, upto]` among the
    /// user and those sharing a joined room with them.
    pub async fn device_list_changes_seen_by(
        &self,
        user_id: &UserId,
        after: i64,
        upto: i64,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT c.user_id FROM device_list_changes c
             WHERE c.stream_ordering > $2 AND c.stream_ordering <= $3
               AND (c.user_id = $1 OR c.user_id IN (
                   SELECT b.user_id FROM room_memberships a
                   JOIN room_memberships b ON b.room_id = a.room_id AND b.membership = 'join'
                   WHERE a.user_id = $1 AND a.membership = 'join'))",
        )
        .bind(user_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// The position of the user's last device-list change (0 if none).
    pub async fn last_device_list_change(&self, user_id: &UserId) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(stream_ordering) FROM device_list_changes WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    /// The position of the user's last device-list change before `position`.
    pub async fn device_list_change_before(&self, user_id: &UserId, position: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(stream_ordering) FROM device_list_changes WHERE user_id = $1 AND stream_ordering < $2",
        )
        .bind(user_id.as_str())
        .bind(position)
        .fetch_one(&self.read)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// Everyone sharing a joined room with the user, the user included if
    /// they are in any.
    pub async fn users_sharing_rooms(&self, user_id: &UserId) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT b.user_id FROM room_memberships a
             JOIN room_memberships b ON b.room_id = a.room_id AND b.membership = 'join'
             WHERE a.user_id = $1 AND a.membership = 'join'",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// The room's joined members now.
    pub async fn joined_user_ids(&self, room_id: &RoomId) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT user_id FROM room_memberships WHERE room_id = $1 AND membership = 'join'")
                .bind(room_id.as_str())
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// The room's members whose membership was last set in `(after, upto]`,
    /// with that membership.
    pub async fn membership_changes_in_range(
        &self,
        room_id: &RoomId,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT user_id, membership FROM room_memberships
             WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3",
        )
        .bind(room_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }
}

pub(crate) async fn insert_device_list_change(
    tx: &mut crate::pool::Tx,
    user_id: &UserId,
    stream_ordering: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO device_list_changes (user_id, stream_ordering) VALUES ($1, $2)
         ON CONFLICT (stream_ordering, user_id) DO NOTHING",
    )
    .bind(user_id.as_str())
    .bind(stream_ordering)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
