//! Cross-signing keys and the signatures uploaded for keys
//! (`0018_cross_signing`). The service checks every key and signature
//! before it reaches here; this module stores them and reads them back.

use ruma::UserId;
use sqlx::Row;

use crate::{Result, Store};

/// A cross-signing key as stored: its usage (`master`, `self_signing`,
/// `user_signing`), `ed25519:<public key>` ID and canonical JSON.
#[derive(Debug, Clone)]
pub struct CrossSigningKeyRow {
    pub usage: String,
    pub key_id: String,
    pub key_json: String,
}

/// A signature of a user's device or cross-signing key.
#[derive(Debug, Clone)]
pub struct KeySignature {
    pub target_user_id: String,
    /// A device ID, or a cross-signing key's `ed25519:<public key>`.
    pub target_key: String,
    pub signer_user_id: String,
    pub signer_key_id: String,
    pub signature: String,
}

impl Store {
    /// The user's cross-signing keys.
    pub async fn cross_signing_keys(&self, user_id: &UserId) -> Result<Vec<CrossSigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT usage, key_id, key_json FROM cross_signing_keys WHERE user_id = $1 ORDER BY usage",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CrossSigningKeyRow {
                    usage: row.try_get(0)?,
                    key_id: row.try_get(1)?,
                    key_json: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Replaces the user's keys of the given usages, and records a
    /// device-list change of the user at `stream_ordering`, atomically.
    pub async fn upload_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: &[CrossSigningKeyRow],
        stream_ordering: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO cross_signing_keys (user_id, usage, key_id, key_json, stream_ordering)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, usage) DO UPDATE
                 SET key_id = excluded.key_id, key_json = excluded.key_json,
                     stream_ordering = excluded.stream_ordering",
            )
            .bind(user_id.as_str())
            .bind(&key.usage)
            .bind(&key.key_id)
            .bind(&key.key_json)
            .bind(stream_ordering)
            .execute(&mut tx)
            .await?;
        }
        crate::keys::insert_device_list_change(&mut tx, user_id, stream_ordering).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores checked signatures (a signature again by the same key
    /// replaces the old one) and, at `stream_ordering`, the device-list
    /// changes they cause: `changed_users` for everyone sharing a room with
    /// them, `signed_others` (signer, target) for the signer alone.
    pub async fn store_key_signatures(
        &self,
        signatures: &[KeySignature],
        changed_users: &[&UserId],
        signed_others: &[(&UserId, &UserId)],
        stream_ordering: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for signature in signatures {
            sqlx::query(
                "INSERT INTO key_signatures (target_user_id, target_key, signer_user_id, signer_key_id, signature)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (target_user_id, target_key, signer_user_id, signer_key_id)
                 DO UPDATE SET signature = excluded.signature",
            )
            .bind(&signature.target_user_id)
            .bind(&signature.target_key)
            .bind(&signature.signer_user_id)
            .bind(&signature.signer_key_id)
            .bind(&signature.signature)
            .execute(&mut tx)
            .await?;
        }
        for user in changed_users {
            crate::keys::insert_device_list_change(&mut tx, user, stream_ordering).await?;
        }
        for (signer, target) in signed_others {
            sqlx::query(
                "INSERT INTO user_signature_changes (signer_user_id, target_user_id, stream_ordering)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(signer.as_str())
            .bind(target.as_str())
            .bind(stream_ordering)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The users whose master keys `signer` signed in `(after, upto]`.
    pub async fn user_signature_changes(
        &self,
        signer: &UserId,
        after: i64,
        upto: i64,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT target_user_id FROM user_signature_changes
             WHERE signer_user_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3",
        )
        .bind(signer.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }
}

/// `$first, …, $(first + count - 1)`: the placeholders of an `IN` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Users per statement in the batched reads below.
const CHUNK: usize = 100;

impl Store {
    /// Which of the users have an account (deactivated or not).
    pub async fn existing_users(&self, users: &[&UserId]) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for chunk in users.chunks(CHUNK) {
            let sql =
                format!("SELECT user_id FROM users WHERE user_id IN ({})", placeholders(1, chunk.len()));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            for row in query.fetch_all(&self.read).await? {
                found.push(row.try_get(0)?);
            }
        }
        Ok(found)
    }

    /// The identity keys of every device of the users, with the users.
    pub async fn device_keys_of_users(
        &self,
        users: &[&UserId],
    ) -> Result<Vec<(String, crate::StoredDeviceKeys)>> {
        let mut found = Vec::new();
        for chunk in users.chunks(CHUNK) {
            let sql = format!(
                "SELECT k.user_id, k.device_id, d.display_name, k.keys_json FROM device_keys k
                 JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
                 WHERE k.user_id IN ({}) ORDER BY k.user_id, k.device_id",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            for row in query.fetch_all(&self.read).await? {
                let keys = crate::StoredDeviceKeys {
                    device_id: row.try_get(1)?,
                    display_name: row.try_get(2)?,
                    keys_json: row.try_get(3)?,
                };
                found.push((row.try_get(0)?, keys));
            }
        }
        Ok(found)
    }

    /// The cross-signing keys of the users, with the users.
    pub async fn cross_signing_keys_of_users(
        &self,
        users: &[&UserId],
    ) -> Result<Vec<(String, CrossSigningKeyRow)>> {
        let mut found = Vec::new();
        for chunk in users.chunks(CHUNK) {
            let sql = format!(
                "SELECT user_id, usage, key_id, key_json FROM cross_signing_keys WHERE user_id IN ({})
                 ORDER BY user_id, usage",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            for row in query.fetch_all(&self.read).await? {
                let key = CrossSigningKeyRow {
                    usage: row.try_get(1)?,
                    key_id: row.try_get(2)?,
                    key_json: row.try_get(3)?,
                };
                found.push((row.try_get(0)?, key));
            }
        }
        Ok(found)
    }

    /// The signatures on the users' keys made by the key's owner or by
    /// `viewer`.
    pub async fn key_signatures_of_users(
        &self,
        users: &[&UserId],
        viewer: Option<&UserId>,
    ) -> Result<Vec<KeySignature>> {
        let mut found = Vec::new();
        for chunk in users.chunks(CHUNK) {
            let sql = format!(
                "SELECT target_user_id, target_key, signer_user_id, signer_key_id, signature FROM key_signatures
                 WHERE target_user_id IN ({}) AND (signer_user_id = target_user_id OR signer_user_id = $1)",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(viewer.map_or("", |v| v.as_str()));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            for row in query.fetch_all(&self.read).await? {
                found.push(KeySignature {
                    target_user_id: row.try_get(0)?,
                    target_key: row.try_get(1)?,
                    signer_user_id: row.try_get(2)?,
                    signer_key_id: row.try_get(3)?,
                    signature: row.try_get(4)?,
                });
            }
        }
        Ok(found)
    }
}
