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

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};
use tessera_storage::{Store, UserDeliveries};

use crate::{Result, changes::ChangeLog, notifier::Notifier, now_ms, streams::StreamAllocator};

/// How long acknowledgements gather before they are recorded together.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The delivery-status service. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    store: Store,
    streams: StreamAllocator,
    notifier: Notifier,
    /// Per user, the highest position acknowledged and not yet recorded.
    pending: Arc<Mutex<HashMap<OwnedUserId, i64>>>,
    /// Wakes the recorder when `pending` gains its first entry.
    wake: Arc<tokio::sync::Notify>,
    /// Per room, the position of its last recorded delivery.
    changes: ChangeLog,
}

impl Delivery {
    /// The service and its recorder task (which stops at shutdown, after
    /// recording what is pending).
    pub fn start(store: Store, streams: StreamAllocator, notifier: Notifier) -> Self {
        let changes = ChangeLog::new(&streams);
        let this = Self { store, streams, notifier, pending: Arc::default(), wake: Arc::default(), changes };
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
        let mut latest: HashMap<(String, i64), Option<(String, String)>> = HashMap::new();
        for (user, acked) in pending {
            let from = match recorded.get(&user) {
                Some(from) => *from,
                None => self.store.delivered_upto(&user).await?,
            };
            if acked <= from {
                recorded.insert(user, from);
                continue;
            }
            let mut rooms = Vec::new();
            for room in self.store.joined_rooms_with_events(&user, from, acked).await? {
                let event = match latest.get(&(room.clone(), acked)) {
                    Some(event) => event.clone(),
                    None => {
                        let Ok(room_id) = RoomId::parse(&room) else { continue };
                        let event = self
                            .store
                            .last_event_upto(&room_id, acked)
                            .await?
                            .map(|e| (e.event_id.to_string(), e.sender));
                        latest.insert((room.clone(), acked), event.clone());
                        event
                    }
                };
                if let Some((event_id, sender)) = event {
                    if sender != user.as_str() {
                        senders.insert(sender);
                    }
                    rooms.push((room, event_id));
                }
            }
            batch.push(UserDeliveries { user_id: user.to_string(), rooms, upto: acked });
            recorded.insert(user, acked);
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
        self.store.record_deliveries(&batch, now_ms(), at).await?;
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
    /// recorded in `(after, upto]` that `viewer` may see.
    pub async fn events_for(
        &self,
        viewer: &UserId,
        after: i64,
        upto: i64,
    ) -> Result<BTreeMap<String, Value>> {
        let mut by_room: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
        for row in self.store.deliveries_for(viewer, after, upto).await? {
            by_room
                .entry(row.room_id)
                .or_default()
                .insert(row.user_id, json!({ "event_id": row.event_id, "ts": row.ts }));
        }
        Ok(by_room
            .into_iter()
            .map(|(room, content)| (room, json!({ "type": "org.tessera.delivered", "content": content })))
            .collect())
    }
}
