//! State sets ("state groups"): the state at any event without a full copy
//! per event.
//!
//! A group is a full snapshot (`parent_id` NULL) or a one-entry delta on
//! its parent. A state event creates a group; other events share their
//! parent's. The new group is a snapshot instead once the deltas since the
//! last snapshot would outnumber the room's state entries or reach
//! [`MAX_CHAIN`]: storage per state change stays O(1) amortised (about two
//! entries in small rooms, state/1024 more in big ones) and reading a group
//! walks at most 1,024 parents. See docs/ARCHITECTURE.md for the numbers.
//! Group IDs are the stream ordering of the event that created them.

use std::{collections::BTreeMap, sync::Arc};

use sqlx::{Any, Row};

use crate::{Result, Store, cache::Cache};

/// The group of the empty state (before a room's create event).
pub const EMPTY: i64 = 0;

/// The longest delta chain: past it the next group is a snapshot, so
/// reading any group walks at most this many parents.
const MAX_CHAIN: i64 = 1024;

/// A full state: (type, state_key) → event ID.
pub type StateMap = BTreeMap<(String, String), String>;

/// Adds the group after a state event; returns its ID (`id`).
pub(crate) async fn add_state_group(
    tx: &mut crate::pool::Tx,
    cache: &Cache<i64, StateMap>,
    room_id: &str,
    id: i64,
    parent: i64,
    (event_type, state_key, event_id): (&str, &str, &str),
) -> Result<i64> {
    let (parent_chain, parent_size) = if parent == EMPTY {
        (0, 0)
    } else {
        let row = sqlx::query("SELECT chain_entries, state_entries FROM state_groups WHERE id = $1")
            .bind(parent)
            .fetch_one(&mut *tx)
            .await?;
        (row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?)
    };
    let replaces = parent != EMPTY
        && sqlx::query(
            "SELECT 1 FROM state_group_entries WHERE group_id = $1 AND event_type = $2 AND state_key = $3",
        )
        .bind(parent)
        .bind(event_type)
        .bind(state_key)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    // The full size is only known exactly from a snapshot; between
    // snapshots it is tracked per group.
    let size = parent_size + i64::from(!replaces || parent == EMPTY);
    if parent == EMPTY || parent_chain + 1 > parent_size.min(MAX_CHAIN) {
        let mut state = match cache.get(&parent) {
            Some(cached) => StateMap::clone(&cached),
            None => state_of(&mut *tx, parent).await?,
        };
        state.insert((event_type.to_owned(), state_key.to_owned()), event_id.to_owned());
        sqlx::query("INSERT INTO state_groups (id, room_id, parent_id, chain_entries, state_entries) VALUES ($1, $2, NULL, 0, $3)")
            .bind(id)
            .bind(room_id)
            .bind(i64::try_from(state.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        for ((kind, key), event) in &state {
            insert_entry(tx, id, kind, key, event).await?;
        }
    } else {
        sqlx::query("INSERT INTO state_groups (id, room_id, parent_id, chain_entries, state_entries) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(room_id)
            .bind(parent)
            .bind(parent_chain + 1)
            .bind(size)
            .execute(&mut *tx)
            .await?;
        insert_entry(tx, id, event_type, state_key, event_id).await?;
    }
    Ok(id)
}

async fn insert_entry(
    tx: &mut crate::pool::Tx,
    group: i64,
    kind: &str,
    key: &str,
    event: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(group)
    .bind(kind)
    .bind(key)
    .bind(event)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Resolves a group to its full state: the snapshot at the end of its chain
/// with the deltas applied in order, in one recursive query.
async fn state_of<'e, E>(executor: E, group: i64) -> Result<StateMap>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    if group == EMPTY {
        return Ok(StateMap::new());
    }
    let rows = sqlx::query(
        "WITH RECURSIVE chain(id, parent_id, lvl) AS (
             SELECT id, parent_id, 0 FROM state_groups WHERE id = $1
             UNION ALL
             SELECT g.id, g.parent_id, c.lvl + 1 FROM state_groups g JOIN chain c ON g.id = c.parent_id
         )
         SELECT e.event_type, e.state_key, e.event_id, c.lvl
         FROM chain c JOIN state_group_entries e ON e.group_id = c.id
         ORDER BY c.lvl DESC",
    )
    .bind(group)
    .fetch_all(executor)
    .await?;
    let mut state = StateMap::new();
    for row in rows {
        state.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
    }
    Ok(state)
}

impl Store {
    /// The full state a group stands for. Served from memory when the
    /// group, or its parent, was resolved before (groups never change);
    /// otherwise resolved with one query over its chain.
    pub async fn state_at_group(&self, group: i64) -> Result<Arc<StateMap>> {
        if group == EMPTY {
            return Ok(Arc::default());
        }
        if let Some(state) = self.state_cache.get(&group) {
            return Ok(state);
        }
        let parent: Option<Option<i64>> = sqlx::query("SELECT parent_id FROM state_groups WHERE id = $1")
            .bind(group)
            .fetch_optional(&self.read)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        let state = match parent.map(|parent| parent.and_then(|p| self.state_cache.get(&p))) {
            // Not a group (yet): nothing to cache.
            None => return Ok(Arc::default()),
            // One delta on a resolved parent.
            Some(Some(parent)) => {
                let mut state = StateMap::clone(&parent);
                let rows = sqlx::query(
                    "SELECT event_type, state_key, event_id FROM state_group_entries WHERE group_id = $1",
                )
                .bind(group)
                .fetch_all(&self.read)
                .await?;
                for row in rows {
                    state.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
                }
                state
            }
            Some(None) => state_of(&self.read, group).await?,
        };
        let state = Arc::new(state);
        self.state_cache.insert(group, Arc::clone(&state), state.len());
        Ok(state)
    }
}

/// One entry of a room's state, with the membership a member event sets.
#[derive(Clone, Debug)]
pub struct StateEntry {
    pub event_type: String,
    pub state_key: String,
    pub event_id: String,
    /// For `m.room.member`: its `membership`.
    pub membership: Option<String>,
}

/// Replaces the room's current state, and the memberships it changes, by
/// `state` (a fork resolved, or the state received when joining through
/// another server). A membership whose event changed gets `stream_ordering`.
pub(crate) async fn replace_current_state(
    tx: &mut crate::pool::Tx,
    room_id: &str,
    state: &[StateEntry],
    stream_ordering: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM current_state WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
    for entry in state {
        sqlx::query(
            "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(room_id)
        .bind(&entry.event_type)
        .bind(&entry.state_key)
        .bind(&entry.event_id)
        .execute(&mut *tx)
        .await?;
        if let Some(membership) = &entry.membership {
            sqlx::query(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                     event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = 0
                 WHERE room_memberships.event_id <> excluded.event_id",
            )
            .bind(room_id)
            .bind(&entry.state_key)
            .bind(membership)
            .bind(&entry.event_id)
            .bind(stream_ordering)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

impl Store {
    /// Writes `state` as a snapshot group `id` of the room (the state
    /// before an event whose predecessors are not all known: a join
    /// through another server, a gap in the DAG). `id` is a stream
    /// position of its own, so it never meets an event's group.
    pub async fn create_state_snapshot(&self, room_id: &str, id: i64, state: &StateMap) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO state_groups (id, room_id, parent_id, chain_entries, state_entries) VALUES ($1, $2, NULL, 0, $3)",
        )
        .bind(id)
        .bind(room_id)
        .bind(i64::try_from(state.len()).unwrap_or(i64::MAX))
        .execute(&mut tx)
        .await?;
        for ((kind, key), event) in state {
            insert_entry(&mut tx, id, kind, key, event).await?;
        }
        tx.commit().await?;
        self.state_cache.insert(id, Arc::new(state.clone()), state.len());
        Ok(id)
    }
}
