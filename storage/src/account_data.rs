//! Account data: per-user JSON blobs by type, global (`room_id` empty) or
//! per room.

use ruma::UserId;
use sqlx::Row;

use crate::{Result, Store};

/// One piece of account data that changed.
#[derive(Clone, Debug)]
pub struct AccountDataRow {
    /// Empty for global account data.
    pub room_id: String,
    pub data_type: String,
    pub content: String,
}

impl Store {
    /// Sets (replaces) account data at a stream position.
    pub async fn put_account_data(
        &self,
        user_id: &UserId,
        room_id: &str,
        data_type: &str,
        content: &str,
        stream_ordering: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO account_data (user_id, room_id, data_type, content, stream_ordering)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, room_id, data_type)
             DO UPDATE SET content = excluded.content, stream_ordering = excluded.stream_ordering",
        )
        .bind(user_id.as_str())
        .bind(room_id)
        .bind(data_type)
        .bind(content)
        .bind(stream_ordering)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn get_account_data(
        &self,
        user_id: &UserId,
        room_id: &str,
        data_type: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
        )
        .bind(user_id.as_str())
        .bind(room_id)
        .bind(data_type)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| Ok(row.try_get(0)?)).transpose()
    }

    /// The account data set in `(after, upto]` (all of it for `after` 0).
    pub async fn account_data_changes(
        &self,
        user_id: &UserId,
        after: i64,
        upto: i64,
    ) -> Result<Vec<AccountDataRow>> {
        let rows = sqlx::query(
            "SELECT room_id, data_type, content FROM account_data
             WHERE user_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3
             ORDER BY stream_ordering",
        )
        .bind(user_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AccountDataRow {
                    room_id: row.try_get(0)?,
                    data_type: row.try_get(1)?,
                    content: row.try_get(2)?,
                })
            })
            .collect()
    }
}
