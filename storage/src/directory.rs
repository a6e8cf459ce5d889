//! Room directory: the alias table beyond create/resolve (which live with
//! the room in `rooms.rs`), the published-room flag, and the public room
//! list in its stable order (joined members descending, then room ID).
//!
//! Must not: decide who may change an alias or a room's visibility.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
use sqlx::Row;

use crate::{
    Result, StorageError, Store,
    events::{StoredEvent, columns, event_from_row},
};

/// A published room and its joined-member count, the list's sort key.
pub type PublicRoomKey = (OwnedRoomId, i64);

impl Store {
    /// The room an alias points at and the user who created the alias.
    pub async fn get_alias(&self, alias: &RoomAliasId) -> Result<Option<(OwnedRoomId, OwnedUserId)>> {
        let row = sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
            .bind(alias.as_str())
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| {
            let room_id: String = row.try_get(0)?;
            let creator: String = row.try_get(1)?;
            Ok((
                RoomId::parse(room_id).map_err(StorageError::corrupt)?,
                UserId::parse(creator).map_err(StorageError::corrupt)?,
            ))
        })
        .transpose()
    }

    /// Removes an alias; whether it existed.
    pub async fn delete_alias(&self, alias: &RoomAliasId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM room_aliases WHERE alias = $1")
            .bind(alias.as_str())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The aliases that point at a room, in alphabetical order.
    pub async fn room_aliases(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let rows = sqlx::query("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
            .bind(room_id.as_str())
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                let alias: String = row.try_get(0)?;
                RoomAliasId::parse(alias).map_err(StorageError::corrupt)
            })
            .collect()
    }

    /// Publishes a room in the directory or withdraws it; whether the room
    /// exists.
    pub async fn set_room_public(&self, room_id: &RoomId, public: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE rooms SET is_public = $1 WHERE room_id = $2")
            .bind(i64::from(public))
            .bind(room_id.as_str())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many rooms are published.
    pub async fn count_public_rooms(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM rooms WHERE is_public = 1").fetch_one(&self.read).await?;
        Ok(row.try_get(0)?)
    }

    /// Up to `limit` published rooms with their joined-member counts, in the
    /// list's order (most joined members first, then by room ID): those
    /// after `from` or, `backwards`, those before it, nearest first. `from`
    /// `None` starts at the beginning (or, backwards, at the end).
    pub async fn public_rooms(
        &self,
        from: Option<(i64, &str)>,
        backwards: bool,
        limit: i64,
    ) -> Result<Vec<PublicRoomKey>> {
        // Keyset paging on (joined, room_id) rather than offsets: a room
        // whose member count changes between pages may move past the
        // cursor, but the others are each listed once.
        let order = if backwards { "joined ASC, room_id DESC" } else { "joined DESC, room_id ASC" };
        let (condition, limit_param) = match (from, backwards) {
            (None, _) => ("", "$1"),
            (Some(_), false) => ("WHERE joined < $1 OR (joined = $1 AND room_id > $2)", "$3"),
            (Some(_), true) => ("WHERE joined > $1 OR (joined = $1 AND room_id < $2)", "$3"),
        };
        let sql = format!(
            "SELECT room_id, joined FROM (
                 SELECT r.room_id AS room_id,
                        (SELECT COUNT(*) FROM room_memberships m
                         WHERE m.room_id = r.room_id AND m.membership = 'join') AS joined
                 FROM rooms r WHERE r.is_public = 1
             ) p {condition} ORDER BY {order} LIMIT {limit_param}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some((joined, room_id)) = from {
            query = query.bind(joined).bind(room_id);
        }
        let rows = query.bind(limit).fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                let room_id: String = row.try_get(0)?;
                Ok((RoomId::parse(room_id).map_err(StorageError::corrupt)?, row.try_get(1)?))
            })
            .collect()
    }

    /// The current state events with an empty state key and one of `types`
    /// in each of `room_ids` (what a directory entry shows), in no
    /// particular order.
    pub async fn current_state_of_types(
        &self,
        room_ids: &[OwnedRoomId],
        types: &[&str],
    ) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::new();
        if types.is_empty() {
            return Ok(events);
        }
        for chunk in room_ids.chunks(100) {
            let rooms: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let kinds: Vec<String> = (1..=types.len()).map(|i| format!("${}", chunk.len() + i)).collect();
            let sql = format!(
                "SELECT {} FROM current_state c JOIN events e ON e.event_id = c.event_id
                 WHERE c.room_id IN ({}) AND c.event_type IN ({}) AND c.state_key = ''",
                columns("e."),
                rooms.join(", "),
                kinds.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for room_id in chunk {
                query = query.bind(room_id.as_str());
            }
            for kind in types {
                query = query.bind(*kind);
            }
            for row in query.fetch_all(&self.read).await? {
                events.push(event_from_row(&row)?);
            }
        }
        Ok(events)
    }
}
