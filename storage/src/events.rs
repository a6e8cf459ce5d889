//! Events: appending one to a room's DAG (with its state, extremities,
//! membership and transaction ID, in one transaction) and reading them back.
//!
//! The caller (the rooms service) serialises appends per room and assigns
//! `stream_ordering`; this module never decides order, it records it.

use std::sync::{Arc, OnceLock};

use ruma::{DeviceId, EventId, OwnedEventId, RoomId, UserId};
use serde_json::value::RawValue;
use sqlx::{Row, any::AnyRow};

use crate::{Backend, Result, StorageError, Store, state};

/// An event as stored, with its indexed columns.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub stream_ordering: i64,
    pub event_id: OwnedEventId,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    /// The signed PDU (redacted if `redacted_by` is set). Shared: events
    /// are cloned out of caches for every sync that reads them.
    pub json: Arc<str>,
    pub redacted_by: Option<String>,
    /// Refused by the authorization rules: never in state or the timeline.
    pub rejected: bool,
    /// Where the event stands in its room ([`EventStatus`]).
    pub status: EventStatus,
    pub state_before: i64,
    pub state_after: i64,
    pub txn_device_id: Option<String>,
    pub txn_id: Option<String>,
    /// What clients see of `json` beyond the columns above, parsed once
    /// for every clone of this copy (see [`StoredEvent::content`]); a new
    /// `json` needs a new one.
    pub parsed: Arc<OnceLock<ClientParts>>,
}

/// The parts of a PDU that clients see and that have no column of their
/// own. `content` is kept as its JSON text, written into every client's
/// copy of the event as it stands, and parsed only for the readers that
/// look inside it: a whole PDU parsed into a JSON tree (hashes,
/// signatures, auth and prev events) weighed about 2 KiB per cached event,
/// more than its text.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ClientParts {
    content: Option<Box<RawValue>>,
    /// Top-level `redacts` (room versions before 11).
    pub redacts: Option<serde_json::Value>,
    #[serde(skip)]
    content_value: OnceLock<Option<serde_json::Value>>,
}

impl StoredEvent {
    /// The client-visible parts of the PDU, found at most once per copy
    /// read from the database: the syncs that one event wakes, each with a
    /// clone, share them. Empty if the stored JSON is not an object.
    pub fn client_parts(&self) -> &ClientParts {
        self.parsed.get_or_init(|| serde_json::from_str(&self.json).unwrap_or_default())
    }

    /// The PDU's `content` as JSON text.
    pub fn content_json(&self) -> Option<&RawValue> {
        self.client_parts().content.as_deref()
    }

    /// The PDU's `content`, parsed on first use.
    pub fn content(&self) -> Option<&serde_json::Value> {
        let parts = self.client_parts();
        parts
            .content_value
            .get_or_init(|| parts.content.as_ref().and_then(|raw| serde_json::from_str(raw.get()).ok()))
            .as_ref()
    }

    /// Replaces the PDU (with its redacted form).
    pub fn replace_json(&mut self, json: &str) {
        self.json = json.into();
        self.parsed = Arc::default();
    }
}

const COLUMNS: &str = "stream_ordering, event_id, room_id, sender, event_type, state_key, depth, \
     origin_server_ts, json, redacted_by, status, state_before, state_after, txn_device_id, txn_id";

pub(crate) fn event_from_row(row: &AnyRow) -> Result<StoredEvent> {
    event_from_row_at(row, 0)
}

/// Reads the event columns starting at column `at` (after other columns).
pub(crate) fn event_from_row_at(row: &AnyRow, at: usize) -> Result<StoredEvent> {
    let event_id: String = row.try_get(at + 1)?;
    Ok(StoredEvent {
        stream_ordering: row.try_get(at)?,
        event_id: EventId::parse(event_id).map_err(StorageError::corrupt)?,
        room_id: row.try_get(at + 2)?,
        sender: row.try_get(at + 3)?,
        event_type: row.try_get(at + 4)?,
        state_key: row.try_get(at + 5)?,
        depth: row.try_get(at + 6)?,
        origin_server_ts: row.try_get(at + 7)?,
        json: row.try_get::<String, _>(at + 8)?.into(),
        redacted_by: row.try_get(at + 9)?,
        rejected: row.try_get::<i64, _>(at + 10)? == EventStatus::Rejected as i64,
        status: EventStatus::from_column(row.try_get(at + 10)?),
        state_before: row.try_get(at + 11)?,
        state_after: row.try_get(at + 12)?,
        txn_device_id: row.try_get(at + 13)?,
        txn_id: row.try_get(at + 14)?,
        parsed: Arc::default(),
    })
}

/// An event's place in its room (the `status` column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventStatus {
    /// In the timeline and the DAG's state.
    #[default]
    Timeline = 0,
    /// Refused by the authorization rules: kept, never in state or shown.
    Rejected = 1,
    /// Known (another event's auth event, state received when joining) but
    /// not part of the timeline; its state is not known.
    Outlier = 2,
    /// Passed its auth events and the state before it, failed the room's
    /// current state: kept in the DAG, not shown, not an extremity.
    SoftFailed = 3,
}

impl EventStatus {
    fn from_column(value: i64) -> Self {
        match value {
            1 => Self::Rejected,
            2 => Self::Outlier,
            3 => Self::SoftFailed,
            _ => Self::Timeline,
        }
    }
}

/// A client transaction ID with what it is unique within: the device, and
/// the request it came with (`scope`: the room and event type of a send,
/// the room and target of a redaction). The spec scopes transaction IDs to
/// the endpoint, so the same ID in two rooms makes two events.
#[derive(Clone, Copy, Debug)]
pub struct TxnKey<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
    pub scope: &'a str,
    pub txn_id: &'a str,
}

/// Everything one append writes.
pub struct NewEvent<'a> {
    pub stream_ordering: i64,
    pub event_id: &'a EventId,
    pub room_id: &'a RoomId,
    pub sender: &'a UserId,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub json: &'a str,
    pub prev_events: &'a [OwnedEventId],
    /// The state group before the event ([`state::EMPTY`] for a create event).
    pub state_before: i64,
    /// For a membership event: the target user and membership. Written
    /// for a timeline event, and for an outlier: the out-of-band
    /// membership of a local user in a room this server takes no part in
    /// (an invite received, a knock sent, their rejection or rescinding).
    pub membership: Option<(&'a str, &'a str)>,
    /// The sending device's transaction ID, for idempotent sends.
    pub txn: Option<TxnKey<'a>>,
    /// For a redaction the server applies: the target and its redacted JSON,
    /// replaced in the same transaction so the two never disagree.
    pub redaction: Option<(&'a EventId, &'a str)>,
    /// `content.m.relates_to` of the event, if any.
    pub relation: Option<NewRelation<'a>>,
    /// The push-rule verdicts of the local members it notifies.
    pub push_actions: &'a [crate::NewPushAction],
    /// Where it stands: only a timeline event changes the room's
    /// extremities, state and memberships.
    pub status: EventStatus,
    /// The room's whole current state after the event, when it is not the
    /// state after the event alone (a fork, resolved; or the state a join
    /// through another server received): current state and memberships
    /// are replaced by it.
    pub current_state: Option<&'a [crate::state::StateEntry]>,
    /// Other servers to send the event to (queued in the same transaction).
    pub destinations: &'a [&'a str],
    /// Older than the room's timeline here (backfilled from another
    /// server, at a negative stream position): in the timeline, but
    /// changing no extremities, current state or memberships. An outlier
    /// of the same ID becomes this event.
    pub historical: bool,
    /// Appended without its previous events (a gap in the timeline here,
    /// see `timeline_gaps`).
    pub after_gap: bool,
}

/// An event's relation to another (`m.relates_to`).
pub struct NewRelation<'a> {
    pub relates_to: &'a str,
    pub rel_type: &'a str,
    pub aggregation_key: Option<&'a str>,
}

/// Columns for `SELECT ... FROM events e`.
pub(crate) fn columns(prefix: &str) -> String {
    COLUMNS.split(", ").map(|c| format!("{prefix}{}", c.trim())).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Appends an event: the row, its edges, the room's forward extremities,
    /// the state group after it, current state, membership and transaction
    /// ID, all in one transaction. Returns the state group after the event.
    /// Conflict if the transaction ID was used meanwhile.
    pub async fn append_event(&self, new: NewEvent<'_>) -> Result<i64> {
        if self.backend == Backend::Postgres
            && new.state_key.is_none()
            && new.redaction.is_none()
            && new.status == EventStatus::Timeline
            && new.current_state.is_none()
            && !new.historical
            && !new.after_gap
        {
            return self.append_message_postgres(&new).await.map(|()| new.state_before);
        }
        // A redacted event leaves the cache once this write ends, however;
        // so does an outlier that a historical event replaces.
        let _redacted =
            new.redaction.map(|(target, _)| self.event_cache.remove_on_drop(target.as_str().to_owned()));
        let _promoted =
            new.historical.then(|| self.event_cache.remove_on_drop(new.event_id.as_str().to_owned()));
        let mut tx = self.write.begin().await?;
        // Whether the event moves the room on: extremities, current state.
        let timeline = new.status == EventStatus::Timeline && !new.historical;
        let changes_state = matches!(new.status, EventStatus::Timeline | EventStatus::SoftFailed);
        let on_conflict = match new.historical {
            true => {
                "ON CONFLICT (event_id) DO UPDATE SET stream_ordering = excluded.stream_ordering,
                     status = excluded.status, state_before = excluded.state_before,
                     state_after = excluded.state_after
                 WHERE events.status = 2"
            }
            false => "",
        };
        let state_after = match new.state_key.filter(|_| changes_state) {
            Some(state_key) => {
                state::add_state_group(
                    &mut tx,
                    &self.state_cache,
                    new.room_id.as_str(),
                    new.stream_ordering,
                    new.state_before,
                    (new.event_type, state_key, new.event_id.as_str()),
                )
                .await?
            }
            None => new.state_before,
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO events (stream_ordering, event_id, room_id, sender, event_type, state_key, depth,
                 origin_server_ts, json, state_before, state_after, txn_device_id, txn_id, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) {on_conflict}"
        )))
        .bind(new.stream_ordering)
        .bind(new.event_id.as_str())
        .bind(new.room_id.as_str())
        .bind(new.sender.as_str())
        .bind(new.event_type)
        .bind(new.state_key)
        .bind(new.depth)
        .bind(new.origin_server_ts)
        .bind(new.json)
        .bind(new.state_before)
        .bind(state_after)
        .bind(new.txn.map(|t| t.device_id.as_str()))
        .bind(new.txn.map(|t| t.txn_id))
        .bind(new.status as i64)
        .execute(&mut tx)
        .await?;
        let edge = match new.historical {
            true => {
                "INSERT INTO event_edges (event_id, prev_event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            }
            false => "INSERT INTO event_edges (event_id, prev_event_id) VALUES ($1, $2)",
        };
        for prev in new.prev_events {
            sqlx::query(edge).bind(new.event_id.as_str()).bind(prev.as_str()).execute(&mut tx).await?;
            if timeline {
                sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2")
                    .bind(new.room_id.as_str())
                    .bind(prev.as_str())
                    .execute(&mut tx)
                    .await?;
            }
        }
        if timeline {
            sqlx::query("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)")
                .bind(new.room_id.as_str())
                .bind(new.event_id.as_str())
                .execute(&mut tx)
                .await?;
        }
        if new.after_gap && timeline {
            sqlx::query("INSERT INTO timeline_gaps (room_id, stream_ordering) VALUES ($1, $2)")
                .bind(new.room_id.as_str())
                .bind(new.stream_ordering)
                .execute(&mut tx)
                .await?;
        }
        for destination in new.destinations {
            sqlx::query("INSERT INTO outbound_pdus (destination, event_id) VALUES ($1, $2)")
                .bind(*destination)
                .bind(new.event_id.as_str())
                .execute(&mut tx)
                .await?;
        }
        if let Some(state) = new.current_state.filter(|_| timeline) {
            state::replace_current_state(&mut tx, new.room_id.as_str(), state, new.stream_ordering).await?;
        } else if let Some(state_key) = new.state_key.filter(|_| timeline) {
            sqlx::query(
                "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id",
            )
            .bind(new.room_id.as_str())
            .bind(new.event_type)
            .bind(state_key)
            .bind(new.event_id.as_str())
            .execute(&mut tx)
            .await?;
        }
        let out_of_band = new.status == EventStatus::Outlier;
        if let Some((user_id, membership)) =
            new.membership.filter(|_| (timeline && new.current_state.is_none()) || out_of_band)
        {
            sqlx::query(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                     event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = 0",
            )
            .bind(new.room_id.as_str())
            .bind(user_id)
            .bind(membership)
            .bind(new.event_id.as_str())
            .bind(new.stream_ordering)
            .execute(&mut tx)
            .await?;
        }
        if let Some((target, redacted_json)) = new.redaction {
            sqlx::query(
                "UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3 AND redacted_by IS NULL",
            )
            .bind(redacted_json)
            .bind(new.event_id.as_str())
            .bind(target.as_str())
            .execute(&mut tx)
            .await?;
            // A redacted edit, reaction or thread reply stops counting.
            sqlx::query("DELETE FROM event_relations WHERE event_id = $1")
                .bind(target.as_str())
                .execute(&mut tx)
                .await?;
        }
        if let Some(relation) = &new.relation {
            sqlx::query(
                "INSERT INTO event_relations
                     (event_id, relates_to, rel_type, event_type, sender, room_id, stream_ordering, aggregation_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(new.event_id.as_str())
            .bind(relation.relates_to)
            .bind(relation.rel_type)
            .bind(new.event_type)
            .bind(new.sender.as_str())
            .bind(new.room_id.as_str())
            .bind(new.stream_ordering)
            .bind(relation.aggregation_key)
            .execute(&mut tx)
            .await?;
        }
        crate::push_actions::insert(
            &mut tx,
            new.room_id.as_str(),
            new.stream_ordering,
            new.event_id.as_str(),
            new.origin_server_ts,
            new.push_actions,
        )
        .await?;
        if let Some(txn) = new.txn {
            let inserted = sqlx::query(
                "INSERT INTO event_txns (user_id, device_id, scope, txn_id, event_id) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(txn.user_id.as_str())
            .bind(txn.device_id.as_str())
            .bind(txn.scope)
            .bind(txn.txn_id)
            .bind(new.event_id.as_str())
            .execute(&mut tx)
            .await;
            match inserted {
                Err(e) if crate::error::is_unique_violation(&e) => {
                    return Err(StorageError::Conflict("transaction ID already used"));
                }
                other => other?,
            };
        }
        tx.commit().await?;
        Ok(state_after)
    }

    /// [`Store::append_event`] for an event that changes no state and
    /// redacts nothing (a message), on PostgreSQL: every row in one
    /// statement, which commits on its own. One round trip instead of a
    /// transaction's eight, for the most frequent write there is. The
    /// lists (prev events, push verdicts) travel as JSON, so the text is
    /// the same for every event and stays prepared.
    async fn append_message_postgres(&self, new: &NewEvent<'_>) -> Result<()> {
        let prev_events: Vec<&str> = new.prev_events.iter().map(|p| p.as_str()).collect();
        let push_actions: Vec<serde_json::Value> = new
            .push_actions
            .iter()
            .map(|a| {
                serde_json::json!({
                    "user_id": a.user_id, "thread_id": a.thread_id, "actions": a.actions,
                    "notify": i64::from(a.notify), "highlight": i64::from(a.highlight),
                })
            })
            .collect();
        let relation = new.relation.as_ref();
        let inserted = sqlx::query(
            "WITH prev AS (SELECT value AS event_id FROM json_array_elements_text($13::json)),
             event AS (
                 INSERT INTO events (stream_ordering, event_id, room_id, sender, event_type, state_key, depth,
                     origin_server_ts, json, state_before, state_after, txn_device_id, txn_id)
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, $9, $9, $10, $11)
             ),
             edges AS (INSERT INTO event_edges (event_id, prev_event_id) SELECT $2, event_id FROM prev),
             followed AS (
                 DELETE FROM forward_extremities WHERE room_id = $3 AND event_id IN (SELECT event_id FROM prev)
             ),
             extremity AS (INSERT INTO forward_extremities (room_id, event_id) VALUES ($3, $2)),
             verdicts AS (
                 INSERT INTO event_push_actions
                     (user_id, room_id, stream_ordering, event_id, thread_id, actions, notify, highlight, ts)
                 SELECT a.user_id, $3, $1, $2, a.thread_id, a.actions, a.notify, a.highlight, $7
                 FROM json_to_recordset($14::json)
                     AS a(user_id TEXT, thread_id TEXT, actions TEXT, notify BIGINT, highlight BIGINT)
             ),
             relation AS (
                 INSERT INTO event_relations
                     (event_id, relates_to, rel_type, event_type, sender, room_id, stream_ordering, aggregation_key)
                 SELECT $2, $15, $16, $5, $4, $3, $1, $17 WHERE $15 IS NOT NULL
             ),
             txn AS (
                 INSERT INTO event_txns (user_id, device_id, scope, txn_id, event_id)
                 SELECT $12, $10, $18, $11, $2 WHERE $11 IS NOT NULL
             ),
             outbound AS (
                 INSERT INTO outbound_pdus (destination, event_id)
                 SELECT value, $2 FROM json_array_elements_text($19::json)
             )
             SELECT 1",
        )
        .bind(new.stream_ordering)
        .bind(new.event_id.as_str())
        .bind(new.room_id.as_str())
        .bind(new.sender.as_str())
        .bind(new.event_type)
        .bind(new.depth)
        .bind(new.origin_server_ts)
        .bind(new.json)
        .bind(new.state_before)
        .bind(new.txn.map(|t| t.device_id.as_str()))
        .bind(new.txn.map(|t| t.txn_id))
        .bind(new.txn.map(|t| t.user_id.as_str()))
        .bind(serde_json::json!(prev_events).to_string())
        .bind(serde_json::Value::Array(push_actions).to_string())
        .bind(relation.map(|r| r.relates_to))
        .bind(relation.map(|r| r.rel_type))
        .bind(relation.and_then(|r| r.aggregation_key))
        .bind(new.txn.map(|t| t.scope))
        .bind(serde_json::json!(new.destinations).to_string())
        .execute(&self.write)
        .await;
        match inserted {
            Err(sqlx::Error::Database(e))
                if e.is_unique_violation() && e.constraint() == Some("event_txns_pkey") =>
            {
                Err(StorageError::Conflict("transaction ID already used"))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Up to `limit` of a room's timeline events at stream positions up to
    /// `upto`, newest first in the room's topological order (depth, then
    /// stream): where paging back from a sync token starts, so events that
    /// arrived late from another server (low depth, high position) do not
    /// hide those received before them.
    pub async fn room_events_upto_stream(
        &self,
        room_id: &RoomId,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND status = 0 AND stream_ordering <= $2
             ORDER BY depth DESC, stream_ordering DESC LIMIT $3"
        )))
        .bind(room_id.as_str())
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The lowest stream position an event holds, or 0 if none is below
    /// it: backfilled history takes the positions below.
    pub async fn lowest_stream_ordering(&self) -> Result<i64> {
        let row = sqlx::query("SELECT MIN(stream_ordering) FROM events").fetch_one(&self.read).await?;
        let lowest: Option<i64> = row.try_get(0)?;
        Ok(lowest.unwrap_or(0).min(0))
    }

    /// The event a device's transaction ID produced in its scope, if any.
    pub async fn get_txn_event(&self, txn: TxnKey<'_>) -> Result<Option<OwnedEventId>> {
        let row = sqlx::query(
            "SELECT event_id FROM event_txns
             WHERE user_id = $1 AND device_id = $2 AND scope = $3 AND txn_id = $4",
        )
        .bind(txn.user_id.as_str())
        .bind(txn.device_id.as_str())
        .bind(txn.scope)
        .bind(txn.txn_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| EventId::parse(row.try_get::<String, _>(0)?).map_err(StorageError::corrupt)).transpose()
    }

    /// One event by ID (through the event cache, like [`Store::get_events`]).
    pub async fn get_event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        Ok(self.get_events(&[event_id.as_str().to_owned()]).await?.pop())
    }

    /// The `(depth, stream)` position of a room's last event at or before
    /// a stream position, if any.
    pub async fn last_room_event_upto(&self, room_id: &RoomId, stream: i64) -> Result<Option<(i64, i64)>> {
        let row = sqlx::query(
            "SELECT depth, stream_ordering FROM events
             WHERE room_id = $1 AND status = 0 AND stream_ordering <= $2
             ORDER BY stream_ordering DESC LIMIT 1",
        )
        .bind(room_id.as_str())
        .bind(stream)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
    }

    /// A room's events in topological order, after or before a position.
    /// `from` is exclusive; `backwards` pages towards older events.
    pub async fn room_events(
        &self,
        room_id: &RoomId,
        from: (i64, i64),
        backwards: bool,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let sql = if backwards {
            format!(
                "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND status = 0
                   AND (depth < $2 OR (depth = $2 AND stream_ordering < $3))
                 ORDER BY depth DESC, stream_ordering DESC LIMIT $4"
            )
        } else {
            format!(
                "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND status = 0
                   AND (depth > $2 OR (depth = $2 AND stream_ordering > $3))
                 ORDER BY depth ASC, stream_ordering ASC LIMIT $4"
            )
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(from.0)
            .bind(from.1)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}
