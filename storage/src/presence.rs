//! Presence rows, and who may see whose (users who share a room).

use ruma::UserId;
use sqlx::{Row, any::AnyRow};

use crate::{Result, Store};

/// A user's stored presence.
#[derive(Clone, Debug)]
pub struct PresenceRow {
    pub user_id: String,
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
    pub last_sync_ts: i64,
}

fn presence_from_row(row: &AnyRow) -> Result<PresenceRow> {
    Ok(PresenceRow {
        user_id: row.try_get(0)?,
        state: row.try_get(1)?,
        status_msg: row.try_get(2)?,
        last_active_ts: row.try_get(3)?,
        last_sync_ts: row.try_get(4)?,
    })
}

/// Users sharing a joined room with `$1` (including themselves).
const SHARES_A_ROOM: &str = "SELECT m2.user_id FROM room_memberships m1
     JOIN room_memberships m2 ON m2.room_id = m1.room_id AND m2.membership = 'join'
     WHERE m1.user_id = $1 AND m1.membership = 'join'";

impl Store {
    /// Sets the state (and, at a new position, makes it news).
    pub async fn put_presence(&self, row: &PresenceRow, stream_ordering: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO presence (user_id, state, status_msg, last_active_ts, last_sync_ts, stream_ordering)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                 last_active_ts = excluded.last_active_ts, last_sync_ts = excluded.last_sync_ts,
                 stream_ordering = excluded.stream_ordering",
        )
        .bind(&row.user_id)
        .bind(&row.state)
        .bind(&row.status_msg)
        .bind(row.last_active_ts)
        .bind(row.last_sync_ts)
        .bind(stream_ordering)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records that the user synced (no new position: not news by itself).
    pub async fn touch_presence_sync(&self, user: &UserId, now: i64) -> Result<()> {
        sqlx::query("UPDATE presence SET last_sync_ts = $1 WHERE user_id = $2")
            .bind(now)
            .bind(user.as_str())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn get_presence(&self, user: &UserId) -> Result<Option<PresenceRow>> {
        let row = sqlx::query(
            "SELECT user_id, state, status_msg, last_active_ts, last_sync_ts FROM presence WHERE user_id = $1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(presence_from_row).transpose()
    }

    /// Presence that changed in `(after, upto]` of users sharing a room
    /// with `viewer`: read when the viewer syncs, never copied per member.
    pub async fn presence_changes_for(
        &self,
        viewer: &UserId,
        after: i64,
        upto: i64,
    ) -> Result<Vec<PresenceRow>> {
        let sql = format!(
            "SELECT user_id, state, status_msg, last_active_ts, last_sync_ts FROM presence
             WHERE stream_ordering > $2 AND stream_ordering <= $3 AND (user_id = $1 OR user_id IN ({SHARES_A_ROOM}))"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(viewer.as_str())
            .bind(after)
            .bind(upto)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(presence_from_row).collect()
    }

    /// Whether two users share a joined room.
    pub async fn share_a_room(&self, a: &UserId, b: &UserId) -> Result<bool> {
        let sql = format!("SELECT 1 FROM ({SHARES_A_ROOM}) AS shared WHERE shared.user_id = $2 LIMIT 1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(a.as_str())
            .bind(b.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.is_some())
    }

    /// Users shown online or unavailable whose timestamps say otherwise by
    /// now: local users (IDs ending in `local_suffix`, `:server.name`) by
    /// their activity and syncs, other servers' users by when their server
    /// last told us (`remote_gone_before`).
    pub async fn stale_presence(
        &self,
        idle_before: i64,
        gone_before: i64,
        local_suffix: &str,
        remote_gone_before: i64,
    ) -> Result<Vec<PresenceRow>> {
        let rows = sqlx::query(
            "SELECT user_id, state, status_msg, last_active_ts, last_sync_ts FROM presence
             WHERE state IN ('online', 'unavailable') AND CASE WHEN user_id LIKE $3
                 THEN (state = 'online' AND last_active_ts < $1) OR last_sync_ts < $2
                 ELSE last_sync_ts < $4 END",
        )
        .bind(idle_before)
        .bind(gone_before)
        // Server names hold neither `%` nor `_` (letters, digits, `-`, `.`,
        // `:` and brackets), so the suffix needs no escaping.
        .bind(format!("%{local_suffix}"))
        .bind(remote_gone_before)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(presence_from_row).collect()
    }
}
