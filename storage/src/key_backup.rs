//! Server-side key backups (`0017_key_backup`): each user's backup
//! versions and the room keys stored in them.
//!
//! A version's row stays when it is deleted (`deleted` 1, its keys gone),
//! so that its number is never reused. Writes to a version's keys lock its
//! row first (PostgreSQL; SQLite has one writer), so that an upload, a
//! deletion of keys and a deletion of the version follow one another, and
//! `etag` and `key_count` move with the keys in the same transaction.
//!
//! Must not: decide which of two keys for a session is better (the caller
//! passes that rule in) or know about HTTP.

use ruma::UserId;
use sqlx::Row;

use crate::{Backend, Result, StorageError, Store, error::is_unique_violation, pool::Tx};

/// A backup version that is not deleted.
#[derive(Clone, Debug)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    /// The `auth_data` JSON object, as text.
    pub auth_data: String,
    /// Bumped by every change to the version's keys.
    pub etag: i64,
    /// How many keys the version holds.
    pub count: i64,
}

/// One session's key, as the server compares and stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupKey {
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    /// The encrypted `session_data` JSON object, as text.
    pub session_data: String,
}

/// A stored key with where it belongs.
#[derive(Clone, Debug)]
pub struct BackupKeyRow {
    pub room_id: String,
    pub session_id: String,
    pub key: BackupKey,
}

/// What an upload of keys did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupUpload {
    /// The version does not exist or was deleted.
    UnknownVersion,
    /// The version exists but is not the user's newest: nothing is written
    /// there (the spec: uploads go to the current backup only).
    NotCurrent { current: i64 },
    /// Written; the version's `etag` and key count afterwards.
    Stored { etag: i64, count: i64 },
}

/// What deleting a backup version did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionDeletion {
    Deleted,
    AlreadyDeleted,
    Unknown,
}

/// Which keys of a version a read or deletion covers.
#[derive(Clone, Copy, Debug)]
pub enum KeyScope<'a> {
    All,
    Room(&'a str),
    Session(&'a str, &'a str),
}

impl KeyScope<'_> {
    /// The extra condition on `backup_keys` (parameters `$3`, `$4`).
    fn condition(self) -> &'static str {
        match self {
            KeyScope::All => "",
            KeyScope::Room(_) => " AND room_id = $3",
            KeyScope::Session(..) => " AND room_id = $3 AND session_id = $4",
        }
    }

    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        match self {
            KeyScope::All => query,
            KeyScope::Room(room) => query.bind(room),
            KeyScope::Session(room, session) => query.bind(room).bind(session),
        }
    }
}

/// Tries at numbering a new version before giving up. Only concurrent
/// creations by the same user (on PostgreSQL) take the same number, and
/// each failed try means one of them succeeded: only that many concurrent
/// creations by one user could exhaust them.
const CREATE_ATTEMPTS: usize = 100;

impl Store {
    /// Creates a version numbered one above the user's highest (deleted
    /// ones included) and returns its number.
    pub async fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: &str,
        auth_data: &str,
    ) -> Result<i64> {
        for _ in 0..CREATE_ATTEMPTS {
            let created = sqlx::query(
                "INSERT INTO backup_versions (user_id, version, algorithm, auth_data, etag, key_count, deleted)
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, 0, 0, 0
                 FROM backup_versions WHERE user_id = $1
                 RETURNING version",
            )
            .bind(user_id.as_str())
            .bind(algorithm)
            .bind(auth_data)
            .fetch_one(&self.write)
            .await;
            match created {
                Err(e) if is_unique_violation(&e) => continue,
                other => return Ok(other?.try_get(0)?),
            }
        }
        Err(StorageError::Conflict("backup version numbered concurrently"))
    }

    /// The user's current backup version: the highest not deleted.
    pub async fn current_backup_version(&self, user_id: &UserId) -> Result<Option<BackupVersion>> {
        let row = sqlx::query(
            "SELECT version, algorithm, auth_data, etag, key_count FROM backup_versions
             WHERE user_id = $1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
        )
        .bind(user_id.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(backup_version).transpose()
    }

    /// One of the user's backup versions, unless it was deleted.
    pub async fn get_backup_version(&self, user_id: &UserId, version: i64) -> Result<Option<BackupVersion>> {
        let row = sqlx::query(
            "SELECT version, algorithm, auth_data, etag, key_count FROM backup_versions
             WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user_id.as_str())
        .bind(version)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(backup_version).transpose()
    }

    /// Replaces a version's `auth_data` if it is not deleted and its
    /// algorithm is `algorithm`; `false` if nothing matched.
    pub async fn update_backup_auth_data(
        &self,
        user_id: &UserId,
        version: i64,
        algorithm: &str,
        auth_data: &str,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE backup_versions SET auth_data = $4
             WHERE user_id = $1 AND version = $2 AND algorithm = $3 AND deleted = 0",
        )
        .bind(user_id.as_str())
        .bind(version)
        .bind(algorithm)
        .bind(auth_data)
        .execute(&self.write)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// Marks a version deleted and deletes its keys.
    pub async fn delete_backup_version(&self, user_id: &UserId, version: i64) -> Result<VersionDeletion> {
        let mut tx = self.write.begin().await?;
        let Some(deleted) = self.lock_backup_version(&mut tx, user_id, version).await? else {
            return Ok(VersionDeletion::Unknown);
        };
        if deleted {
            return Ok(VersionDeletion::AlreadyDeleted);
        }
        sqlx::query(
            "UPDATE backup_versions SET deleted = 1, key_count = 0, etag = etag + 1
             WHERE user_id = $1 AND version = $2",
        )
        .bind(user_id.as_str())
        .bind(version)
        .execute(&mut tx)
        .await?;
        sqlx::query("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2")
            .bind(user_id.as_str())
            .bind(version)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(VersionDeletion::Deleted)
    }

    /// Stores `keys` (room, session, key) in the user's current version
    /// `version`. A session that already has a key keeps it unless
    /// `replaces(new, stored)` says the new one is better. The `etag`
    /// moves only if some key was written.
    pub async fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        keys: &[(&str, &str, BackupKey)],
        replaces: impl Fn(&BackupKey, &BackupKey) -> bool,
    ) -> Result<BackupUpload> {
        let mut tx = self.write.begin().await?;
        if self.lock_backup_version(&mut tx, user_id, version).await? != Some(false) {
            return Ok(BackupUpload::UnknownVersion);
        }
        // At least `version` itself is not deleted, so there is a maximum.
        let current: i64 =
            sqlx::query("SELECT MAX(version) FROM backup_versions WHERE user_id = $1 AND deleted = 0")
                .bind(user_id.as_str())
                .fetch_one(&mut tx)
                .await?
                .try_get(0)?;
        if current != version {
            return Ok(BackupUpload::NotCurrent { current });
        }

        let wanted: Vec<serde_json::Value> = keys
            .iter()
            .map(|(room_id, session_id, _)| serde_json::json!({ "room_id": room_id, "session_id": session_id }))
            .collect();
        let sql = format!(
            "SELECT k.room_id, k.session_id, k.first_message_index, k.forwarded_count, k.is_verified,
                    k.session_data
             FROM backup_keys k JOIN {} ON k.room_id = r.room_id AND k.session_id = r.session_id
             WHERE k.user_id = $2 AND k.version = $3",
            self.json_rows("$1", &[("room_id", "TEXT"), ("session_id", "TEXT")]),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(wanted).to_string())
            .bind(user_id.as_str())
            .bind(version)
            .fetch_all(&mut tx)
            .await?;
        let stored: std::collections::HashMap<(String, String), BackupKey> = rows
            .iter()
            .map(|row| backup_key_row(row).map(|r| ((r.room_id, r.session_id), r.key)))
            .collect::<Result<_>>()?;

        let mut added = 0_i64;
        let mut writes = Vec::new();
        for (room_id, session_id, key) in keys {
            match stored.get(&((*room_id).to_owned(), (*session_id).to_owned())) {
                Some(old) if !replaces(key, old) => continue,
                Some(_) => {}
                None => added += 1,
            }
            writes.push(serde_json::json!({
                "room_id": room_id,
                "session_id": session_id,
                "first_message_index": key.first_message_index,
                "forwarded_count": key.forwarded_count,
                "is_verified": i64::from(key.is_verified),
                "session_data": key.session_data,
            }));
        }
        if !writes.is_empty() {
            let sql = format!(
                "INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index,
                                          forwarded_count, is_verified, session_data)
                 SELECT $2, $3, r.room_id, r.session_id, r.first_message_index, r.forwarded_count,
                        r.is_verified, r.session_data
                 FROM {} WHERE true
                 ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                     first_message_index = excluded.first_message_index,
                     forwarded_count = excluded.forwarded_count,
                     is_verified = excluded.is_verified,
                     session_data = excluded.session_data",
                self.json_rows(
                    "$1",
                    &[
                        ("room_id", "TEXT"),
                        ("session_id", "TEXT"),
                        ("first_message_index", "BIGINT"),
                        ("forwarded_count", "BIGINT"),
                        ("is_verified", "BIGINT"),
                        ("session_data", "TEXT"),
                    ],
                ),
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(serde_json::Value::Array(writes).to_string())
                .bind(user_id.as_str())
                .bind(version)
                .execute(&mut tx)
                .await?;
            sqlx::query(
                "UPDATE backup_versions SET etag = etag + 1, key_count = key_count + $3
                 WHERE user_id = $1 AND version = $2",
            )
            .bind(user_id.as_str())
            .bind(version)
            .bind(added)
            .execute(&mut tx)
            .await?;
        }
        let (etag, count) = counters(&mut tx, user_id, version).await?;
        tx.commit().await?;
        Ok(BackupUpload::Stored { etag, count })
    }

    /// The keys of a version in `scope`; `None` if the version does not
    /// exist or was deleted.
    pub async fn get_backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        scope: KeyScope<'_>,
    ) -> Result<Option<Vec<BackupKeyRow>>> {
        if self.get_backup_version(user_id, version).await?.is_none() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
             FROM backup_keys WHERE user_id = $1 AND version = $2{}",
            scope.condition()
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.as_str()).bind(version);
        let rows = scope.bind(query).fetch_all(&self.read).await?;
        Ok(Some(rows.iter().map(backup_key_row).collect::<Result<_>>()?))
    }

    /// Deletes the keys of a version in `scope` (any version not deleted,
    /// current or not); the `etag` moves only if some key was deleted.
    /// `None` if the version does not exist or was deleted, else its
    /// `etag` and key count afterwards.
    pub async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        scope: KeyScope<'_>,
    ) -> Result<Option<(i64, i64)>> {
        let mut tx = self.write.begin().await?;
        if self.lock_backup_version(&mut tx, user_id, version).await? != Some(false) {
            return Ok(None);
        }
        let sql = format!("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2{}", scope.condition());
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.as_str()).bind(version);
        let removed = scope.bind(query).execute(&mut tx).await?.rows_affected();
        if removed > 0 {
            sqlx::query(
                "UPDATE backup_versions SET etag = etag + 1, key_count = key_count - $3
                 WHERE user_id = $1 AND version = $2",
            )
            .bind(user_id.as_str())
            .bind(version)
            .bind(i64::try_from(removed).map_err(StorageError::corrupt)?)
            .execute(&mut tx)
            .await?;
        }
        let counters = counters(&mut tx, user_id, version).await?;
        tx.commit().await?;
        Ok(Some(counters))
    }

    /// Locks a version's row for the rest of `tx` and says whether it is
    /// deleted; `None` if it does not exist.
    async fn lock_backup_version(&self, tx: &mut Tx, user_id: &UserId, version: i64) -> Result<Option<bool>> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT deleted FROM backup_versions WHERE user_id = $1 AND version = $2 FOR UPDATE"
            }
            // One writer at a time: the transaction is alone anyway.
            Backend::Sqlite => "SELECT deleted FROM backup_versions WHERE user_id = $1 AND version = $2",
        };
        let row = sqlx::query(sql).bind(user_id.as_str()).bind(version).fetch_optional(&mut *tx).await?;
        row.map(|row| Ok(row.try_get::<i64, _>(0)? != 0)).transpose()
    }
}

/// A version's `etag` and key count, inside `tx`.
async fn counters(tx: &mut Tx, user_id: &UserId, version: i64) -> Result<(i64, i64)> {
    let row = sqlx::query("SELECT etag, key_count FROM backup_versions WHERE user_id = $1 AND version = $2")
        .bind(user_id.as_str())
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

fn backup_version(row: &sqlx::any::AnyRow) -> Result<BackupVersion> {
    Ok(BackupVersion {
        version: row.try_get(0)?,
        algorithm: row.try_get(1)?,
        auth_data: row.try_get(2)?,
        etag: row.try_get(3)?,
        count: row.try_get(4)?,
    })
}

/// A row of `room_id, session_id, first_message_index, forwarded_count,
/// is_verified, session_data`.
fn backup_key_row(row: &sqlx::any::AnyRow) -> Result<BackupKeyRow> {
    Ok(BackupKeyRow {
        room_id: row.try_get(0)?,
        session_id: row.try_get(1)?,
        key: BackupKey {
            first_message_index: row.try_get(2)?,
            forwarded_count: row.try_get(3)?,
            is_verified: row.try_get::<i64, _>(4)? != 0,
            session_data: row.try_get(5)?,
        },
    })
}
