//! Rooms: the room row, current state, memberships and forward extremities.

use ruma::{RoomId, RoomVersionId, UserId};
use sqlx::Row;

use crate::{
    Result, StorageError, Store,
    events::{StoredEvent, columns, event_from_row, event_from_row_at},
    store::now_ms,
};

/// What the server knows about a room without reading its state.
#[derive(Clone, Debug)]
pub struct RoomInfo {
    pub room_version: RoomVersionId,
    pub creator: String,
    pub is_public: bool,
}

impl Store {
    /// Records a new room; conflict if the ID exists.
    pub async fn create_room(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        creator: &UserId,
        is_public: bool,
    ) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(room_id.as_str())
        .bind(version.as_str())
        .bind(creator.as_str())
        .bind(i64::from(is_public))
        .bind(now_ms())
        .execute(&self.write)
        .await;
        match done {
            Err(e) if crate::error::is_unique_violation(&e) => Err(StorageError::Conflict("room exists")),
            other => other.map(drop).map_err(Into::into),
        }
    }

    pub async fn get_room(&self, room_id: &RoomId) -> Result<Option<RoomInfo>> {
        let row = sqlx::query("SELECT room_version, creator, is_public FROM rooms WHERE room_id = $1")
            .bind(room_id.as_str())
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| {
            let version: String = row.try_get(0)?;
            Ok(RoomInfo {
                room_version: version.try_into().map_err(StorageError::corrupt)?,
                creator: row.try_get(1)?,
                is_public: row.try_get::<i64, _>(2)? != 0,
            })
        })
        .transpose()
    }

    /// The room's current state events.
    pub async fn current_state(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM current_state c JOIN events e ON e.event_id = c.event_id WHERE c.room_id = $1
             ORDER BY e.stream_ordering",
            columns("e.")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).fetch_all(&self.read).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// One event of the room's current state.
    pub async fn current_state_event(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM current_state c JOIN events e ON e.event_id = c.event_id
             WHERE c.room_id = $1 AND c.event_type = $2 AND c.state_key = $3",
            columns("e.")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(event_type)
            .bind(state_key)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// The events a new local event follows (the room's forward extremities).
    pub async fn forward_extremities(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM forward_extremities f JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1
             ORDER BY e.stream_ordering",
            columns("e.")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).fetch_all(&self.read).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Every gap in every room's timeline here (see `timeline_gaps`):
    /// room and stream position of the first event after it.
    pub async fn timeline_gaps(&self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT room_id, stream_ordering FROM timeline_gaps").fetch_all(&self.read).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Notes a gap in the room's timeline before the event at `position`
    /// (a backfilled event whose own history was not brought with it).
    pub async fn add_timeline_gap(&self, room_id: &RoomId, position: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO timeline_gaps (room_id, stream_ordering) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(room_id.as_str())
        .bind(position)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// A user's membership in a room and the stream position of that event.
    pub async fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT membership, stream_ordering FROM room_memberships WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
    }

    /// The event that set a user's current membership.
    pub async fn membership_event(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM room_memberships m JOIN events e ON e.event_id = m.event_id
             WHERE m.room_id = $1 AND m.user_id = $2",
            columns("e.")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// The rooms a user has the given membership in.
    pub async fn rooms_with_membership(&self, user_id: &UserId, membership: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT room_id FROM room_memberships WHERE user_id = $1 AND membership = $2 ORDER BY stream_ordering",
        )
        .bind(user_id.as_str())
        .bind(membership)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// The members of a room with their membership events.
    pub async fn room_members(&self, room_id: &RoomId) -> Result<Vec<(String, StoredEvent)>> {
        let sql = format!(
            "SELECT m.membership, {} FROM room_memberships m JOIN events e ON e.event_id = m.event_id
             WHERE m.room_id = $1 ORDER BY m.user_id",
            columns("e.")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                let membership: String = row.try_get(0)?;
                // The event columns follow the membership column.
                Ok((membership, event_from_row_at(row, 1)?))
            })
            .collect()
    }

    /// Marks a room forgotten for a user who has left it.
    pub async fn forget_room(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        sqlx::query("UPDATE room_memberships SET forgotten = 1 WHERE room_id = $1 AND user_id = $2")
            .bind(room_id.as_str())
            .bind(user_id.as_str())
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Points `alias` at a room; conflict if the alias is taken.
    pub async fn create_alias(&self, alias: &str, room_id: &RoomId, creator: &UserId) -> Result<()> {
        let done = sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)")
            .bind(alias)
            .bind(room_id.as_str())
            .bind(creator.as_str())
            .execute(&self.write)
            .await;
        match done {
            Err(e) if crate::error::is_unique_violation(&e) => Err(StorageError::Conflict("alias taken")),
            other => other.map(drop).map_err(Into::into),
        }
    }

    /// The room an alias points at.
    pub async fn resolve_alias(&self, alias: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT room_id FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| Ok(row.try_get(0)?)).transpose()
    }

    /// One entry of the state a group stands for, without resolving it all.
    pub async fn state_entry_at(
        &self,
        group: i64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<StoredEvent>> {
        let state = self.state_at_group(group).await?;
        let Some(event_id) = state.get(&(event_type.to_owned(), state_key.to_owned())) else {
            return Ok(None);
        };
        Ok(self.get_events(std::slice::from_ref(event_id)).await?.pop())
    }

    /// Events by ID (those the server has), in no particular order.
    pub async fn get_events(&self, event_ids: &[String]) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::with_capacity(event_ids.len());
        let mut missing = Vec::new();
        for id in event_ids {
            match self.event_cache.get(id) {
                Some(event) => events.push(StoredEvent::clone(&event)),
                None => missing.push(id),
            }
        }
        let generation = self.event_cache.generation();
        for chunk in missing.chunks(100) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql =
                format!("SELECT {} FROM events WHERE event_id IN ({})", columns(""), placeholders.join(", "));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.read).await? {
                let event = event_from_row(&row)?;
                let key = event.event_id.as_str().to_owned();
                self.event_cache.insert_read_at(generation, key, std::sync::Arc::new(event.clone()), 1);
                events.push(event);
            }
        }
        Ok(events)
    }
}

impl Store {
    /// The room's first event at or after `ts` (`forward`), or its last at
    /// or before it, by `origin_server_ts`.
    pub async fn event_near_timestamp(
        &self,
        room_id: &RoomId,
        ts: i64,
        forward: bool,
    ) -> Result<Option<StoredEvent>> {
        let sql = if forward {
            format!(
                "SELECT {} FROM events WHERE room_id = $1 AND status = 0 AND origin_server_ts >= $2
                 ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1",
                columns("")
            )
        } else {
            format!(
                "SELECT {} FROM events WHERE room_id = $1 AND status = 0 AND origin_server_ts <= $2
                 ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1",
                columns("")
            )
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(ts)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }
}

impl Store {
    /// How many users are joined to a room.
    pub async fn joined_member_count(&self, room_id: &RoomId) -> Result<i64> {
        let row =
            sqlx::query("SELECT COUNT(*) FROM room_memberships WHERE room_id = $1 AND membership = 'join'")
                .bind(room_id.as_str())
                .fetch_one(&self.read)
                .await?;
        Ok(row.try_get(0)?)
    }

    /// A room's current state events of one type, any state key.
    pub async fn current_state_of_type(
        &self,
        room_id: &RoomId,
        event_type: &str,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM current_state c JOIN events e ON e.event_id = c.event_id
             WHERE c.room_id = $1 AND c.event_type = $2 ORDER BY e.stream_ordering",
            columns("e.")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(event_type)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}
