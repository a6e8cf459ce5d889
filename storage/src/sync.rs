//! What `/sync` reads: a user's rooms that changed in a stream range, the
//! events of a room in a range, and stored filters.

use ruma::{RoomId, UserId};
use sqlx::Row;

use crate::{
    Result, StorageError, Store,
    events::{StoredEvent, columns, event_from_row},
};

/// A user's membership in a room and the stream position that set it.
#[derive(Clone, Debug)]
pub struct MembershipRow {
    pub room_id: String,
    pub membership: String,
    pub stream_ordering: i64,
    pub forgotten: bool,
}

impl Store {
    /// Every room the user has a membership in.
    pub async fn memberships_of(&self, user_id: &UserId) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(
            "SELECT room_id, membership, stream_ordering, forgotten FROM room_memberships WHERE user_id = $1",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MembershipRow {
                    room_id: row.try_get(0)?,
                    membership: row.try_get(1)?,
                    stream_ordering: row.try_get(2)?,
                    forgotten: row.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect()
    }

    /// Up to `limit` of a room's events in `(after, upto]`, newest first.
    pub async fn room_events_in_range(
        &self,
        room_id: &RoomId,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM events WHERE room_id = $1 AND status = 0
               AND stream_ordering > $2 AND stream_ordering <= $3
             ORDER BY stream_ordering DESC LIMIT $4",
            columns("")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The room's last event at or before a stream position.
    pub async fn last_event_upto(&self, room_id: &RoomId, upto: i64) -> Result<Option<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM events WHERE room_id = $1 AND status = 0 AND stream_ordering <= $2
             ORDER BY stream_ordering DESC LIMIT 1",
            columns("")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(upto)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// Stores a filter under its ID (idempotent).
    pub async fn put_filter(&self, user_id: &UserId, filter_id: &str, json: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO filters (user_id, filter_id, json) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, filter_id) DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(filter_id)
        .bind(json)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn get_filter(&self, user_id: &UserId, filter_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2")
            .bind(user_id.as_str())
            .bind(filter_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| row.try_get(0).map_err(StorageError::from)).transpose()
    }
}

impl Store {
    /// How many users have this membership in a room.
    pub async fn member_count(&self, room_id: &RoomId, membership: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM room_memberships WHERE room_id = $1 AND membership = $2")
            .bind(room_id.as_str())
            .bind(membership)
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Up to `limit` joined or invited members other than `user`, by user ID
    /// (the room summary's heroes).
    pub async fn room_heroes(&self, room_id: &RoomId, user: &UserId, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT user_id FROM room_memberships
             WHERE room_id = $1 AND membership IN ('join', 'invite') AND user_id <> $2
             ORDER BY user_id LIMIT $3",
        )
        .bind(room_id.as_str())
        .bind(user.as_str())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }
}
