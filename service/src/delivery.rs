//! Delivery status (beyond the spec): the sender learns which event of a
//! room each member has received on at least one device, as the ephemeral
//! event `org.tessera.delivered`. Specified in docs/delivery-status.md.
//!
//! A device that asks for its next batch with `since = S` has received
//! everything up to S. Such a request only notes S in memory; a background
//! task records, every [`FLUSH_EVERY`] at most, for each user with news
//! and each room with new events since the user's last record, the latest
//! event up to S, for all those users in one transaction: a busy server
//! commits delivery records a few times a second, never once per sync or
//! per message per member. Members' syncs read the records lazily; only
//! the senders of newly delivered events are woken. The records are
//! advisory (a delivery tick), so a crash may lose the last
//! [`FLUSH_EVERY`] of them, never a message.
//!
//! The recorder finds each user's rooms and their latest events in the
//! rooms service's memory, and keeps what it writes (the rows written since
//! the server started, up to a bound) for members' syncs to read without a
//! query: see [`Recorded`].

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};
use tessera_storage::{Store, UserDeliveries};

use crate::{Result, changes::ChangeLog, notifier::Notifier, now_ms, rooms::Rooms, streams::StreamAllocator};

/// How long acknowledgements gather before they are recorded together.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Delivery rows kept in memory, over all rooms.
const RECORDED_ROWS: usize = 100_000;

/// A room's latest event up to a position: position, event ID, sender.
type LatestEvent = (i64, String, String);

/// The delivery-status service. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    store: Store,
    streams: StreamAllocator,
    notifier: Notifier,
    rooms: Rooms,
    /// Per user, the highest position acknowledged and not yet recorded.
    pending: Arc<Mutex<HashMap<OwnedUserId, i64>>>,
    /// Wakes the recorder when `pending` gains its first entry.
    wake: Arc<tokio::sync::Notify>,
    /// Per room, the position of its last recorded delivery.
    changes: ChangeLog,
    /// The rows the recorder wrote, for syncs to read.
    recorded_rows: Arc<Mutex<Recorded>>,
}

impl Delivery {
    /// The service and its recorder task (which stops at shutdown, after
    /// recording what is pending).
    pub fn start(store: Store, streams: StreamAllocator, notifier: Notifier, rooms: Rooms) -> Self {
        let changes = ChangeLog::new(&streams);
        let recorded_rows = Arc::new(Mutex::new(Recorded::since(streams.persisted_upto())));
        let this = Self {
            store,
            streams,
            notifier,
            rooms,
            pending: Arc::default(),
            wake: Arc::default(),
            changes,
            recorded_rows,
        };
        let recorder = this.clone();
        tokio::spawn(async move { recorder.record_until_shutdown().await });
        this
    }

    /// A device of `user` acknowledged everything up to `acked`.
    pub fn acknowledged(&self, user: &UserId, acked: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = pending.is_empty();
        let position = pending.entry(user.to_owned()).or_insert(acked);
        *position = (*position).max(acked);
        if was_empty {
            self.wake.notify_one();
        }
    }

    async fn record_until_shutdown(&self) {
        // Per user, the position up to which deliveries are recorded. Only
        // this task writes them, so once read they are known here.
        let mut recorded = HashMap::new();
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = self.notifier.shutting_down() => {
                    self.record_pending(&mut recorded).await;
                    return;
                }
            }
            tokio::time::sleep(FLUSH_EVERY).await;
            self.record_pending(&mut recorded).await;
        }
    }

    /// Records every pending acknowledgement; logs (and drops) on failure:
    /// the records are advisory.
    async fn record_pending(&self, recorded: &mut HashMap<OwnedUserId, i64>) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return;
        }
        if let Err(e) = self.record(pending, recorded).await {
            // Positions may be stale after a failed transaction: re-read.
            recorded.clear();
            tracing::warn!(error = %e, "recording deliveries failed");
        }
    }

    async fn record(
        &self,
        pending: HashMap<OwnedUserId, i64>,
        recorded: &mut HashMap<OwnedUserId, i64>,
    ) -> Result<()> {
        let mut batch = Vec::with_capacity(pending.len());
        let mut senders = HashSet::new();
        // The same room's latest event up to the same position, once.
        let mut latest: HashMap<(String, i64), Option<LatestEvent>> = HashMap::new();
        for (user, acked) in pending {
            let from = match recorded.get(&user) {
                Some(from) => *from,
                None => self.store.delivered_upto(&user).await?,
            };
            if acked <= from {
                crate::remember(recorded, user, from);
                continue;
            }
            // The joined rooms with events in `(from, acked]`, and the
            // latest of those events.
            let mut rooms = Vec::new();
            let memberships = self.rooms.memberships_of(&user, acked).await?;
            for membership in memberships.iter().filter(|m| m.membership == "join") {
                let room = &membership.room_id;
                if !self.rooms.changed_after(room, from) {
                    continue;
                }
                let event = match latest.get(&(room.clone(), acked)) {
                    Some(event) => event.clone(),
                    None => {
                        let Ok(room_id) = RoomId::parse(room) else { continue };
                        let event = self
                            .rooms
                            .last_event_upto(&room_id, acked)
                            .await?
                            .map(|e| (e.stream_ordering, e.event_id.to_string(), e.sender));
                        latest.insert((room.clone(), acked), event.clone());
                        event
                    }
                };
                if let Some((position, event_id, sender)) = event
                    && position > from
                {
                    if sender != user.as_str() {
                        senders.insert(sender);
                    }
                    rooms.push((room.clone(), event_id));
                }
            }
            batch.push(UserDeliveries { user_id: user.to_string(), rooms, upto: acked });
            crate::remember(recorded, user, acked);
        }
        if batch.is_empty() {
            return Ok(());
        }
        // A stream position only when a delivery row stores it: a position
        // stored nowhere could put a client's token ahead of what the
        // counter resumes from after a restart.
        let position = batch.iter().any(|user| !user.rooms.is_empty()).then(|| self.streams.reserve());
        let at = position.as_ref().map_or(0, |p| p.position);
        for (room, _) in batch.iter().flat_map(|user| &user.rooms) {
            self.changes.record(room, at);
        }
        let ts = now_ms();
        let written = self.store.record_deliveries(&batch, ts, at).await;
        // Before the position is released, as the rows' readers expect.
        let mut recorded_rows = self.recorded_rows.lock().unwrap_or_else(|p| p.into_inner());
        match written {
            Ok(()) => recorded_rows.write(&batch, ts, at),
            // Perhaps committed, perhaps not: those rooms read from storage.
            Err(_) => {
                recorded_rows.forget(batch.iter().flat_map(|user| &user.rooms).map(|(room, _)| room), at)
            }
        }
        drop(recorded_rows);
        written?;
        drop(position);
        for sender in senders {
            if let Ok(sender) = UserId::parse(&sender) {
                self.notifier.user_changed(&sender);
            }
        }
        Ok(())
    }

    /// Whether the room may have deliveries recorded after `after`.
    pub fn changed_after(&self, room: &str, after: i64) -> bool {
        self.changes.changed_after(room, after)
    }

    /// Per room, the `org.tessera.delivered` event of the deliveries
    /// recorded in `(after, upto]` that `viewer` may see: those of the
    /// other members of `joined`, the viewer's joined rooms.
    pub async fn events_for<'a>(
        &self,
        viewer: &UserId,
        joined: impl Iterator<Item = &'a str>,
        after: i64,
        upto: i64,
    ) -> Result<BTreeMap<String, Value>> {
        let held = {
            let recorded_rows = self.recorded_rows.lock().unwrap_or_else(|p| p.into_inner());
            joined
                .filter(|room| self.changes.changed_after(room, after))
                .map(|room| Some((room, recorded_rows.rows(room, viewer.as_str(), after, upto)?)))
                .collect::<Option<Vec<_>>>()
        };
        if let Some(held) = held {
            return Ok(held
                .into_iter()
                .filter(|(_, content)| !content.is_empty())
                .map(|(room, content)| (room.to_owned(), delivered_event(content)))
                .collect());
        }
        let mut by_room: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
        for row in self.store.deliveries_for(viewer, after, upto).await? {
            by_room
                .entry(row.room_id)
                .or_default()
                .insert(row.user_id, json!({ "event_id": row.event_id, "ts": row.ts }));
        }
        Ok(by_room.into_iter().map(|(room, content)| (room, delivered_event(content))).collect())
    }
}

fn delivered_event(content: serde_json::Map<String, Value>) -> Value {
    json!({ "type": "org.tessera.delivered", "content": content })
}

/// The delivery rows the recorder wrote since the server started, per room
/// and member, up to [`RECORDED_ROWS`]: a room's entry holds every row of
/// the room above its `complete_after`. When the bound is reached, or a
/// write may or may not have committed, rooms are dropped, and the entries
/// made after that are complete only from that position on.
struct Recorded {
    rooms: HashMap<String, RoomRows>,
    /// Rows held over all rooms.
    total: usize,
    /// What a new room entry is complete after.
    complete_after: i64,
}

struct RoomRows {
    complete_after: i64,
    /// Per member: event ID, timestamp, position.
    rows: HashMap<String, (String, i64, i64)>,
}

impl Recorded {
    /// Nothing held yet, complete after `start` (no row above it exists).
    fn since(start: i64) -> Self {
        Self { rooms: HashMap::new(), total: 0, complete_after: start }
    }

    fn write(&mut self, batch: &[UserDeliveries], ts: i64, position: i64) {
        for user in batch {
            for (room, event_id) in &user.rooms {
                let complete_after = self.complete_after;
                let entry = self
                    .rooms
                    .entry(room.clone())
                    .or_insert_with(|| RoomRows { complete_after, rows: HashMap::new() });
                if entry.rows.insert(user.user_id.clone(), (event_id.clone(), ts, position)).is_none() {
                    self.total += 1;
                }
            }
        }
        if self.total > RECORDED_ROWS {
            // Whole rooms, in no particular order, down to nine tenths.
            let rooms: Vec<String> = self.rooms.keys().cloned().collect();
            for room in rooms {
                if self.total <= RECORDED_ROWS - RECORDED_ROWS / 10 {
                    break;
                }
                if let Some(entry) = self.rooms.remove(&room) {
                    self.total -= entry.rows.len();
                }
            }
            self.complete_after = self.complete_after.max(position);
        }
    }

    fn forget<'a>(&mut self, rooms: impl Iterator<Item = &'a String>, position: i64) {
        for room in rooms {
            if let Some(entry) = self.rooms.remove(room) {
                self.total -= entry.rows.len();
            }
        }
        self.complete_after = self.complete_after.max(position);
    }

    /// The other members' rows of `room` in `(after, upto]`, as the
    /// event's content; `None` when the entry may lack some.
    fn rows(
        &self,
        room: &str,
        viewer: &str,
        after: i64,
        upto: i64,
    ) -> Option<serde_json::Map<String, Value>> {
        let entry = self.rooms.get(room)?;
        if after < entry.complete_after {
            return None;
        }
        Some(
            entry
                .rows
                .iter()
                .filter(|(user, (_, _, position))| {
                    user.as_str() != viewer && *position > after && *position <= upto
                })
                .map(|(user, (event_id, ts, _))| (user.clone(), json!({ "event_id": event_id, "ts": ts })))
                .collect(),
        )
    }
}
