//! Access, refresh and login tokens. Only SHA-256 hashes are stored; the
//! service layer hashes what the client sent and looks the hash up.
//!
//! Refresh follows the spec's rule that the old refresh token stays valid
//! until the new access or refresh token is first used
//! (<https://spec.matrix.org/v1.16/client-server-api/#refreshing-access-tokens>):
//! the new row remembers the one it replaces, and the first authentication
//! with the new token deletes the old row.

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use sqlx::Row;

use crate::{Result, StorageError, Store, store::now_ms, users::parse_user_id};

/// A token to create, with the device it belongs to.
pub struct NewAccessToken<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
    /// Used only when the device is new: an existing device keeps its name.
    pub device_display_name: Option<&'a str>,
    pub token_hash: &'a [u8],
    pub refresh_token_hash: Option<&'a [u8]>,
    pub expires_ts: Option<i64>,
    /// Where the login came from, recorded as the device's last-seen IP.
    pub ip: Option<&'a str>,
}

/// Who an access token belongs to, as found by its hash.
#[derive(Clone, Debug)]
pub struct TokenOwner {
    pub token_id: i64,
    pub token_hash: Vec<u8>,
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub expires_ts: Option<i64>,
    /// Set until the token is first used after a refresh.
    pub replaces_id: Option<i64>,
    pub is_guest: bool,
    pub is_admin: bool,
    pub deactivated: bool,
    /// When the device was last seen, to rate-limit last-seen writes.
    pub last_seen_ts: Option<i64>,
}

/// Creates the device if it does not exist yet, revokes any token the device
/// had (the spec: logging in again as a known device invalidates its previous
/// tokens), and stores the new token.
pub(crate) async fn insert_device_and_token(
    tx: &mut crate::pool::Tx,
    new: &NewAccessToken<'_>,
    now: i64,
) -> Result<i64> {
    sqlx::query(
        // A new device counts as seen at login: clients (matrix-nio) reject a
        // device list where a device has no `last_seen_ts`.
        "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip)
         VALUES ($1, $2, $3, $4, $4, $5)
         ON CONFLICT (user_id, device_id) DO NOTHING",
    )
    .bind(new.user_id.as_str())
    .bind(new.device_id.as_str())
    .bind(new.device_display_name)
    .bind(now)
    .bind(new.ip)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
        .bind(new.user_id.as_str())
        .bind(new.device_id.as_str())
        .execute(&mut *tx)
        .await?;
    insert_token(tx, new, None, now).await
}

async fn insert_token(
    tx: &mut crate::pool::Tx,
    new: &NewAccessToken<'_>,
    replaces_id: Option<i64>,
    now: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO access_tokens
             (token_hash, refresh_token_hash, user_id, device_id, expires_ts, replaces_id, created_ts)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(new.token_hash)
    .bind(new.refresh_token_hash)
    .bind(new.user_id.as_str())
    .bind(new.device_id.as_str())
    .bind(new.expires_ts)
    .bind(replaces_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    Ok(row.try_get(0)?)
}

impl Store {
    /// Logs a device in: creates it if needed and gives it a fresh token.
    /// Conflict if the account was deactivated meanwhile, or, when
    /// `verified_password_hash` is given, if the password changed since the
    /// caller checked it (the row is locked on PostgreSQL, and SQLite has a
    /// single writer, so a concurrent change cannot slip in between).
    pub async fn create_access_token(
        &self,
        new: NewAccessToken<'_>,
        verified_password_hash: Option<&str>,
    ) -> Result<()> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let mut tx = self.write.begin().await?;
        let check = match self.backend {
            crate::Backend::Postgres => {
                "SELECT password_hash, deactivated FROM users WHERE user_id = $1 FOR UPDATE"
            }
            crate::Backend::Sqlite => "SELECT password_hash, deactivated FROM users WHERE user_id = $1",
        };
        let row = sqlx::query(check).bind(new.user_id.as_str()).fetch_optional(&mut tx).await?;
        let Some(row) = row else { return Err(StorageError::Conflict("account is gone")) };
        let current_hash: Option<String> = row.try_get(0)?;
        if row.try_get::<i64, _>(1)? != 0 {
            return Err(StorageError::Conflict("account is deactivated"));
        }
        if verified_password_hash.is_some() && current_hash.as_deref() != verified_password_hash {
            return Err(StorageError::Conflict("password changed"));
        }
        insert_device_and_token(&mut tx, &new, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The owner of the access token with this hash.
    pub async fn find_access_token(&self, token_hash: &[u8]) -> Result<Option<TokenOwner>> {
        let key = token_hash.to_vec();
        if let Some(owner) = self.token_cache.get(&key) {
            return Ok(Some(TokenOwner::clone(&owner)));
        }
        let generation = self.token_cache.generation();
        let row = sqlx::query(
            "SELECT t.id, t.token_hash, t.user_id, t.device_id, t.expires_ts, t.replaces_id,
                    u.is_guest, u.is_admin, u.deactivated, d.last_seen_ts
             FROM access_tokens t
             JOIN users u ON u.user_id = t.user_id
             LEFT JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        let owner = row
            .map(|row| -> Result<TokenOwner> {
                let device_id: String = row.try_get(3)?;
                Ok(TokenOwner {
                    token_id: row.try_get(0)?,
                    token_hash: row.try_get(1)?,
                    user_id: parse_user_id(row.try_get(2)?)?,
                    device_id: device_id.into(),
                    expires_ts: row.try_get(4)?,
                    replaces_id: row.try_get(5)?,
                    is_guest: row.try_get::<i64, _>(6)? != 0,
                    is_admin: row.try_get::<i64, _>(7)? != 0,
                    deactivated: row.try_get::<i64, _>(8)? != 0,
                    last_seen_ts: row.try_get(9)?,
                })
            })
            .transpose()?;
        if let Some(owner) = &owner {
            self.token_cache.insert_read_at(generation, key, std::sync::Arc::new(owner.clone()), 1);
        }
        Ok(owner)
    }

    /// Called on the first use of a refreshed token: revokes the token it
    /// replaced, and any other token refreshed from that one.
    pub async fn finish_refresh(&self, token_id: i64, replaces_id: i64) -> Result<()> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM access_tokens WHERE id = $1 OR (replaces_id = $1 AND id <> $2)")
            .bind(replaces_id)
            .bind(token_id)
            .execute(&mut tx)
            .await?;
        sqlx::query("UPDATE access_tokens SET replaces_id = NULL WHERE id = $1")
            .bind(token_id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Exchanges a refresh token for a new access (and refresh) token on the
    /// same device. Returns the owner, or `None` if the refresh token is
    /// unknown. `new.user_id`/`new.device_id` are ignored: the owner's are used.
    pub async fn refresh_access_token(
        &self,
        refresh_token_hash: &[u8],
        token_hash: &[u8],
        new_refresh_token_hash: &[u8],
        expires_ts: Option<i64>,
    ) -> Result<Option<(OwnedUserId, OwnedDeviceId)>> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let mut tx = self.write.begin().await?;
        // A no-op update takes the row lock on PostgreSQL, so two refreshes
        // (or a refresh and a revocation) of one token cannot interleave.
        let Some(row) = sqlx::query(
            "UPDATE access_tokens SET id = id WHERE refresh_token_hash = $1
             RETURNING id, user_id, device_id, replaces_id",
        )
        .bind(refresh_token_hash)
        .fetch_optional(&mut tx)
        .await?
        else {
            return Ok(None);
        };
        let old_id: i64 = row.try_get(0)?;
        let user_id = parse_user_id(row.try_get(1)?)?;
        let device_id: OwnedDeviceId = row.try_get::<String, _>(2)?.into();
        // Using this refresh token proves its own issuance arrived, so the
        // token it was refreshed from, and any other token refreshed from
        // that one, can go now.
        if let Some(grandparent) = row.try_get::<Option<i64>, _>(3)? {
            sqlx::query("DELETE FROM access_tokens WHERE id = $1 OR (replaces_id = $1 AND id <> $2)")
                .bind(grandparent)
                .bind(old_id)
                .execute(&mut tx)
                .await?;
            sqlx::query("UPDATE access_tokens SET replaces_id = NULL WHERE id = $1")
                .bind(old_id)
                .execute(&mut tx)
                .await?;
        }
        let new = NewAccessToken {
            user_id: &user_id,
            device_id: &device_id,
            device_display_name: None,
            token_hash,
            refresh_token_hash: Some(new_refresh_token_hash),
            expires_ts,
            ip: None,
        };
        insert_token(&mut tx, &new, Some(old_id), now_ms()).await?;
        tx.commit().await?;
        Ok(Some((user_id, device_id)))
    }

    /// Revokes one access token (its refresh token goes with it).
    pub async fn delete_access_token(&self, token_id: i64) -> Result<()> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        sqlx::query("DELETE FROM access_tokens WHERE id = $1").bind(token_id).execute(&self.write).await?;
        Ok(())
    }

    /// Stores a single-use login token for `m.login.token`.
    pub async fn create_login_token(
        &self,
        user_id: &UserId,
        token_hash: &[u8],
        expires_ts: i64,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM login_tokens WHERE expires_ts < $1").bind(now).execute(&mut tx).await?;
        sqlx::query("INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(user_id.as_str())
            .bind(expires_ts)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Consumes a login token: it can be used once, and only before it expires.
    pub async fn take_login_token(&self, token_hash: &[u8]) -> Result<Option<OwnedUserId>> {
        let row = sqlx::query("DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_id, expires_ts")
            .bind(token_hash)
            .fetch_optional(&self.write)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_ts: i64 = row.try_get(1)?;
        if expires_ts < now_ms() {
            return Ok(None);
        }
        parse_user_id(row.try_get(0)?).map(Some)
    }
}
