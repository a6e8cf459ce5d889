//! Users: accounts, passwords, admin/guest flags, deactivation, profiles.

use ruma::{OwnedMxcUri, OwnedUserId, UserId};
use sqlx::Row;

use crate::{
    Result, StorageError, Store,
    error::is_unique_violation,
    registration_tokens,
    store::now_ms,
    tokens::{self, NewAccessToken},
};

/// An account as the service layer sees it.
#[derive(Clone, Debug)]
pub struct User {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub deactivated: bool,
}

/// A user's global profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<OwnedMxcUri>,
}

/// Everything registration writes, committed in one transaction.
pub struct NewUser<'a> {
    pub user_id: &'a UserId,
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub displayname: Option<&'a str>,
    /// A registration token to consume; registration fails with a conflict
    /// if it is used up by the time we commit.
    pub registration_token: Option<&'a str>,
    /// The first device and its token, unless the client inhibited login.
    pub login: Option<NewAccessToken<'a>>,
}

pub(crate) fn parse_user_id(raw: String) -> Result<OwnedUserId> {
    UserId::parse(raw).map_err(StorageError::corrupt)
}

impl Store {
    /// Creates an account (and its first device and token). Conflict if the
    /// ID was ever taken, or if the registration token is used up.
    pub async fn create_user(&self, new: NewUser<'_>) -> Result<()> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        if let Some(token) = new.registration_token {
            registration_tokens::consume(&mut tx, token, now).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO users (user_id, password_hash, is_admin, is_guest, displayname, created_ts)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new.user_id.as_str())
        .bind(new.password_hash)
        .bind(i64::from(new.is_admin))
        .bind(i64::from(new.is_guest))
        .bind(new.displayname)
        .bind(now)
        .execute(&mut tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(StorageError::Conflict("user ID taken")),
            other => other?,
        };
        if let Some(login) = &new.login {
            tokens::insert_device_and_token(&mut tx, login, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The account with this ID, deactivated or not.
    pub async fn get_user(&self, user_id: &UserId) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT password_hash, is_admin, is_guest, deactivated FROM users WHERE user_id = $1",
        )
        .bind(user_id.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(User {
                user_id: user_id.to_owned(),
                password_hash: row.try_get(0)?,
                is_admin: row.try_get::<i64, _>(1)? != 0,
                is_guest: row.try_get::<i64, _>(2)? != 0,
                deactivated: row.try_get::<i64, _>(3)? != 0,
            })
        })
        .transpose()
    }

    /// Replaces the password hash and, when `logout_devices` is set, deletes
    /// every device but `keep` with its tokens, atomically.
    pub async fn change_password(
        &self,
        user_id: &UserId,
        hash: &str,
        logout_devices: bool,
        keep: Option<&ruma::DeviceId>,
    ) -> Result<()> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(hash)
            .bind(user_id.as_str())
            .execute(&mut tx)
            .await?;
        if logout_devices {
            crate::devices::delete_devices_except(&mut tx, user_id, keep).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks the account deactivated (the row stays so the ID is never
    /// reused), removes its password, every device and token, its
    /// encryption keys and key backups, and clears the profile when `erase`
    /// is set.
    pub async fn deactivate_user(&self, user_id: &UserId, erase: bool) -> Result<()> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let mut tx = self.write.begin().await?;
        let deactivate = if erase {
            "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL,
                 avatar_url = NULL WHERE user_id = $1"
        } else {
            "UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = $1"
        };
        sqlx::query(deactivate).bind(user_id.as_str()).execute(&mut tx).await?;
        for statement in [
            "DELETE FROM access_tokens WHERE user_id = $1",
            "DELETE FROM devices WHERE user_id = $1",
            "DELETE FROM to_device_messages WHERE user_id = $1",
            "DELETE FROM device_keys WHERE user_id = $1",
            "DELETE FROM one_time_keys WHERE user_id = $1",
            "DELETE FROM fallback_keys WHERE user_id = $1",
            "DELETE FROM login_tokens WHERE user_id = $1",
            // The account's keys: its backups (versions stay, deleted, so
            // their numbers are never reused) and its cross-signing keys.
            "DELETE FROM backup_keys WHERE user_id = $1",
            "UPDATE backup_versions SET deleted = 1, key_count = 0 WHERE user_id = $1",
            "DELETE FROM cross_signing_keys WHERE user_id = $1",
            "DELETE FROM key_signatures WHERE target_user_id = $1 OR signer_user_id = $1",
        ] {
            sqlx::query(statement).bind(user_id.as_str()).execute(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The profile of an active user; `None` if there is no such user.
    /// The user directory for `searcher`: this server's other users (active)
    /// who share a joined room with them or are joined to a room in the
    /// room directory, whose user ID or display name contains every one of
    /// `words` (lowercase, any case matched); by user ID, at most `limit`.
    pub async fn search_users(
        &self,
        searcher: &UserId,
        words: &[String],
        limit: i64,
    ) -> Result<Vec<(String, Profile)>> {
        let mut sql = String::from(
            "SELECT u.user_id, u.displayname, u.avatar_url FROM users u
             WHERE u.deactivated = 0 AND u.user_id <> $1 AND u.user_id IN (
                 SELECT b.user_id FROM room_memberships a
                 JOIN room_memberships b ON b.room_id = a.room_id AND b.membership = 'join'
                 WHERE a.user_id = $1 AND a.membership = 'join'
                 UNION
                 SELECT m.user_id FROM room_memberships m JOIN rooms r ON r.room_id = m.room_id
                 WHERE r.is_public = 1 AND m.membership = 'join')",
        );
        for n in 0..words.len() {
            let p = n + 3;
            sql.push_str(&format!(
                " AND (LOWER(u.user_id) LIKE ${p} ESCAPE '\\' OR LOWER(COALESCE(u.displayname, '')) LIKE ${p} ESCAPE '\\')"
            ));
        }
        sql.push_str(" ORDER BY u.user_id LIMIT $2");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(searcher.as_str()).bind(limit);
        for word in words {
            let escaped = word.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            query = query.bind(format!("%{escaped}%"));
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                let avatar_url: Option<String> = row.try_get(2)?;
                let profile =
                    Profile { displayname: row.try_get(1)?, avatar_url: avatar_url.map(Into::into) };
                Ok((row.try_get(0)?, profile))
            })
            .collect()
    }

    pub async fn get_profile(&self, user_id: &UserId) -> Result<Option<Profile>> {
        let row =
            sqlx::query("SELECT displayname, avatar_url FROM users WHERE user_id = $1 AND deactivated = 0")
                .bind(user_id.as_str())
                .fetch_optional(&self.read)
                .await?;
        row.map(|row| {
            let avatar_url: Option<String> = row.try_get(1)?;
            Ok(Profile { displayname: row.try_get(0)?, avatar_url: avatar_url.map(Into::into) })
        })
        .transpose()
    }

    pub async fn set_displayname(&self, user_id: &UserId, name: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET displayname = $1 WHERE user_id = $2")
            .bind(name)
            .bind(user_id.as_str())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn set_avatar_url(&self, user_id: &UserId, url: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET avatar_url = $1 WHERE user_id = $2")
            .bind(url)
            .bind(user_id.as_str())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Grants or removes server admin rights.
    pub async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<bool> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let done = sqlx::query("UPDATE users SET is_admin = $1 WHERE user_id = $2")
            .bind(i64::from(admin))
            .bind(user_id.as_str())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many accounts exist (for the CLI and logs).
    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users").fetch_one(&self.read).await?.try_get(0)?)
    }
}
