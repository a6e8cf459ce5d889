//! Other servers' signing keys (`0019_server_keys`), as the service
//! verified them.

use ruma::ServerName;
use sqlx::Row;

use crate::{Result, Store};

/// One verified key of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyRow {
    pub key_id: String,
    /// Unpadded base64.
    pub public_key: String,
    /// Until when (ms since the epoch) it may verify a signature.
    pub valid_until_ts: i64,
}

/// A server's key response as it signed it.
#[derive(Debug, Clone)]
pub struct ServerKeyResponse {
    pub response_json: String,
    pub valid_until_ts: i64,
    pub fetched_ts: i64,
}

impl Store {
    /// The server's known keys.
    pub async fn server_signing_keys(&self, server: &ServerName) -> Result<Vec<ServerKeyRow>> {
        let rows = sqlx::query(
            "SELECT key_id, public_key, valid_until_ts FROM server_signing_keys WHERE server_name = $1
             ORDER BY key_id",
        )
        .bind(server.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ServerKeyRow {
                    key_id: row.try_get(0)?,
                    public_key: row.try_get(1)?,
                    valid_until_ts: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Stores a verified key response and its keys. A key already known
    /// takes the new validity (a key moved to `old_verify_keys` stops
    /// verifying at its `expired_ts`); a response replaces an older one.
    pub async fn store_server_keys(
        &self,
        server: &ServerName,
        keys: &[ServerKeyRow],
        response: &ServerKeyResponse,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO server_signing_keys (server_name, key_id, public_key, valid_until_ts)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (server_name, key_id) DO UPDATE
                 SET public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts",
            )
            .bind(server.as_str())
            .bind(&key.key_id)
            .bind(&key.public_key)
            .bind(key.valid_until_ts)
            .execute(&mut tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO server_key_responses (server_name, response_json, valid_until_ts, fetched_ts)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (server_name) DO UPDATE
             SET response_json = excluded.response_json, valid_until_ts = excluded.valid_until_ts,
                 fetched_ts = excluded.fetched_ts
             WHERE excluded.fetched_ts >= server_key_responses.fetched_ts",
        )
        .bind(server.as_str())
        .bind(&response.response_json)
        .bind(response.valid_until_ts)
        .bind(response.fetched_ts)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The server's last key response.
    pub async fn server_key_response(&self, server: &ServerName) -> Result<Option<ServerKeyResponse>> {
        let row = sqlx::query(
            "SELECT response_json, valid_until_ts, fetched_ts FROM server_key_responses WHERE server_name = $1",
        )
        .bind(server.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(ServerKeyResponse {
                response_json: row.try_get(0)?,
                valid_until_ts: row.try_get(1)?,
                fetched_ts: row.try_get(2)?,
            })
        })
        .transpose()
    }
}
