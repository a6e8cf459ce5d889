//! Registration tokens (`m.login.registration_token`), created by an admin.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#token-authenticated-registration>.

use sqlx::Row;

use crate::{Result, StorageError, Store, store::now_ms};

/// A registration token and how much of it is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationToken {
    pub token: String,
    pub uses_allowed: Option<i64>,
    pub completed: i64,
    pub expiry_ts: Option<i64>,
}

impl RegistrationToken {
    /// Whether a registration could still complete with this token at `now`.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.uses_allowed.is_none_or(|allowed| self.completed < allowed)
            && self.expiry_ts.is_none_or(|expiry| now < expiry)
    }
}

/// Counts one completed registration against the token, atomically with the
/// account creation that uses it. Conflict if it is used up or expired.
pub(crate) async fn consume(tx: &mut crate::pool::Tx, token: &str, now: i64) -> Result<()> {
    let done = sqlx::query(
        "UPDATE registration_tokens SET completed = completed + 1
         WHERE token = $1 AND (uses_allowed IS NULL OR completed < uses_allowed)
           AND (expiry_ts IS NULL OR expiry_ts > $2)",
    )
    .bind(token)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::Conflict("registration token is not valid"));
    }
    Ok(())
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<RegistrationToken> {
    Ok(RegistrationToken {
        token: row.try_get(0)?,
        uses_allowed: row.try_get(1)?,
        completed: row.try_get(2)?,
        expiry_ts: row.try_get(3)?,
    })
}

impl Store {
    /// Creates a token; conflict if one with the same text exists.
    pub async fn create_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<i64>,
        expiry_ts: Option<i64>,
    ) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO registration_tokens (token, uses_allowed, expiry_ts, created_ts)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token)
        .bind(uses_allowed)
        .bind(expiry_ts)
        .bind(now_ms())
        .execute(&self.write)
        .await;
        match done {
            Err(e) if crate::error::is_unique_violation(&e) => {
                Err(StorageError::Conflict("registration token exists"))
            }
            other => other.map(drop).map_err(Into::into),
        }
    }

    pub async fn get_registration_token(&self, token: &str) -> Result<Option<RegistrationToken>> {
        let row = sqlx::query(
            "SELECT token, uses_allowed, completed, expiry_ts FROM registration_tokens
             WHERE token = $1",
        )
        .bind(token)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn list_registration_tokens(&self) -> Result<Vec<RegistrationToken>> {
        let rows = sqlx::query(
            "SELECT token, uses_allowed, completed, expiry_ts FROM registration_tokens
             ORDER BY created_ts, token",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Deletes a token; `false` if there was none.
    pub async fn delete_registration_token(&self, token: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM registration_tokens WHERE token = $1")
            .bind(token)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
