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
//! A sender needs a member's progress only when it passes one of the
//! sender's own events. Each recording therefore also notes, in memory, a
//! notice per sender of what a member newly received, and an incremental
//! sync reads only its user's notices (when it has any): one message in a
//! room of N members costs O(N) notices, not every member's progress in
//! every member's sync, which is O(N²). Notices are not stored: a sync
//! whose token is older than the server's memory of them (it restarted, or
//! shed them) gets every delivery recorded in its rooms since the token.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};
use tessera_storage::{DeliveryRow, EventOutline, Store, UserDeliveries};

use crate::{Result, changes::ChangeLog, notifier::Notifier, now_ms, rooms::Rooms, streams::StreamAllocator};

/// The ephemeral event that carries delivery status.
pub const EVENT_TYPE: &str = "org.tessera.delivered";

/// How long acknowledgements gather before they are recorded together.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Notices kept in memory over all viewers; past it they are all dropped
/// (syncs from before then read the stored deliveries instead).
const NOTICES: usize = 500_000;

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
    /// Per viewer, the position of their last notice.
    changes: ChangeLog,
    notices: Arc<Mutex<Notices>>,
    /// The recorder task, until [`Delivery::stop`] takes it.
    recorder: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Tells the recorder to record what is pending and stop.
    stop: Arc<tokio::sync::Notify>,
}

/// The deliveries that passed each viewer's own events, latest per room
/// and member, with the position they were recorded at.
struct Notices {
    by_viewer: HashMap<String, HashMap<(String, String), Notice>>,
    entries: usize,
    /// Notices recorded at or below this position may be missing.
    horizon: i64,
}

struct Notice {
    event_id: String,
    ts: i64,
    position: i64,
}

impl Notices {
    fn add(&mut self, notice: NewNotice, ts: i64, position: i64) {
        if self.entries >= NOTICES {
            self.by_viewer.clear();
            self.entries = 0;
            // This batch's earlier notices at `position` went too.
            self.horizon = position;
        }
        let NewNotice { viewer, room, user, event_id } = notice;
        let replaced =
            self.by_viewer.entry(viewer).or_default().insert((room, user), Notice { event_id, ts, position });
        self.entries += usize::from(replaced.is_none());
    }

    /// The viewer's notices recorded in `(after, upto]`, or `None` when
    /// some may be missing.
    fn between(&self, viewer: &str, after: i64, upto: i64) -> Option<Vec<DeliveryRow>> {
        if after < self.horizon {
            return None;
        }
        let Some(notices) = self.by_viewer.get(viewer) else { return Some(Vec::new()) };
        let mut rows: Vec<(i64, DeliveryRow)> = notices
            .iter()
            .filter(|(_, n)| n.position > after && n.position <= upto)
            .map(|((room, user), n)| {
                let row = DeliveryRow {
                    room_id: room.clone(),
                    user_id: user.clone(),
                    event_id: n.event_id.clone(),
                    ts: n.ts,
                };
                (n.position, row)
            })
            .collect();
        rows.sort_by_key(|(position, _)| *position);
        Some(rows.into_iter().map(|(_, row)| row).collect())
    }
}

/// A member's delivery that passed one of the viewer's own events.
struct NewNotice {
    viewer: String,
    room: String,
    user: String,
    event_id: String,
}

impl Delivery {
    /// The service and its recorder task (see [`Delivery::stop`]).
    pub fn start(store: Store, streams: StreamAllocator, notifier: Notifier, rooms: Rooms) -> Self {
        let changes = ChangeLog::new(&streams);
        // Every notice recorded from now on is kept.
        let horizon = streams.persisted_upto();
        let notices = Notices { by_viewer: HashMap::new(), entries: 0, horizon };
        let this = Self {
            store,
            streams,
            notifier,
            rooms,
            pending: Arc::default(),
            wake: Arc::default(),
            changes,
            notices: Arc::new(Mutex::new(notices)),
            recorder: Arc::default(),
            stop: Arc::default(),
        };
        let recorder = this.clone();
        let task = tokio::spawn(async move { recorder.record_until_stopped().await });
        *this.recorder.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        this
    }

    /// Records what is pending and stops the recorder: for a shutdown,
    /// once no request is left to acknowledge anything, before the
    /// database closes.
    pub async fn stop(&self) {
        self.stop.notify_one();
        let task = self.recorder.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "the delivery recorder failed");
        }
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

    async fn record_until_stopped(&self) {
        // Per user, the position up to which deliveries are recorded. Only
        // this task writes them, so once read they are known here.
        let mut recorded = HashMap::new();
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = self.stop.notified() => {
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
        // Each user's joined rooms that may have events in what they newly
        // received, `(from, acked]` (from the rooms service's memory).
        let mut acks = Vec::with_capacity(pending.len());
        for (user, acked) in pending {
            let from = match recorded.get(&user) {
                Some(from) => *from,
                None => self.store.delivered_upto(&user).await?,
            };
            crate::remember(recorded, user.clone(), from.max(acked));
            if acked > from {
                let memberships = self.rooms.memberships_of(&user, acked).await?;
                let rooms: Vec<String> = memberships
                    .iter()
                    .filter(|m| {
                        m.membership == "join"
                            && m.stream_ordering <= acked
                            && self.rooms.changed_after(&m.room_id, from)
                    })
                    .map(|m| m.room_id.clone())
                    .collect();
                acks.push((user, from, acked, rooms));
            }
        }
        if acks.is_empty() {
            return Ok(());
        }
        // Each room's events over all its users' spans, read once.
        let mut spans: HashMap<&str, (i64, i64)> = HashMap::new();
        for (_, from, acked, rooms) in &acks {
            for room in rooms {
                let span = spans.entry(room.as_str()).or_insert((*from, *acked));
                *span = (span.0.min(*from), span.1.max(*acked));
            }
        }
        let mut events: HashMap<&str, Vec<EventOutline>> = HashMap::with_capacity(spans.len());
        for (room, (after, upto)) in spans {
            let Ok(room_id) = RoomId::parse(room) else { continue };
            events.insert(room, self.rooms.event_outlines(&room_id, after, upto).await?);
        }
        let is_local = |user: &str| {
            <&UserId>::try_from(user).is_ok_and(|user| user.server_name() == self.rooms.server_name())
        };
        let mut batch = Vec::with_capacity(acks.len());
        let mut notices = Vec::new();
        for (user, from, acked, rooms) in &acks {
            let mut delivered = Vec::new();
            for room in rooms {
                let Some(room_events) = events.get(room.as_str()) else { continue };
                let received = received(room_events, *from, *acked);
                let Some(latest) = received.last() else { continue };
                // Each other local sender of what the user received learns
                // of it (remote ones never sync here).
                let mut viewers: Vec<&str> = received
                    .iter()
                    .filter(|e| e.event_type != "m.room.member" && e.sender != user.as_str())
                    .map(|e| e.sender.as_str())
                    .filter(|sender| is_local(sender))
                    .collect();
                viewers.sort_unstable();
                viewers.dedup();
                notices.extend(viewers.into_iter().map(|viewer| NewNotice {
                    viewer: viewer.to_owned(),
                    room: room.clone(),
                    user: user.to_string(),
                    event_id: latest.event_id.clone(),
                }));
                delivered.push((room.clone(), latest.event_id.clone()));
            }
            batch.push(UserDeliveries { user_id: user.to_string(), rooms: delivered, upto: *acked });
        }
        // A stream position only when a delivery row stores it: a batch
        // that only moves `delivered_upto` changes nothing a sync reads.
        let position = if batch.iter().any(|user| !user.rooms.is_empty()) {
            Some(self.streams.reserve().await?)
        } else {
            None
        };
        let at = position.as_ref().map_or(0, |p| p.position);
        let ts = now_ms();
        self.store.record_deliveries(&batch, ts, at).await?;
        // Noted before the position is released: a sync that reads up to
        // it finds them.
        let viewers: HashSet<String> = notices.iter().map(|n| n.viewer.clone()).collect();
        {
            let mut kept = self.notices.lock().unwrap_or_else(|p| p.into_inner());
            for notice in notices {
                kept.add(notice, ts, at);
            }
        }
        for viewer in &viewers {
            self.changes.record(viewer, at);
        }
        drop(position);
        for viewer in &viewers {
            if let Ok(viewer) = UserId::parse(viewer) {
                self.notifier.deliveries_changed(&viewer);
            }
        }
        Ok(())
    }

    /// Per room, the `org.tessera.delivered` event `viewer` is to see in a
    /// sync over `(after, upto]`: the deliveries that passed the viewer's
    /// own events since `after`, or every delivery in the viewer's rooms
    /// for an initial sync.
    pub async fn events_for(
        &self,
        viewer: &UserId,
        after: Option<i64>,
        upto: i64,
    ) -> Result<BTreeMap<String, Value>> {
        let rows = match after {
            None => self.store.deliveries_between(viewer, 0, upto).await?,
            Some(after) if self.changes.changed_after(viewer.as_str(), after) => {
                let kept = self.notices.lock().unwrap_or_else(|p| p.into_inner()).between(
                    viewer.as_str(),
                    after,
                    upto,
                );
                match kept {
                    Some(rows) => rows,
                    None => self.store.deliveries_between(viewer, after, upto).await?,
                }
            }
            Some(_) => return Ok(BTreeMap::new()),
        };
        let mut by_room: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
        for row in rows {
            by_room
                .entry(row.room_id)
                .or_default()
                .insert(row.user_id, json!({ "event_id": row.event_id, "ts": row.ts }));
        }
        Ok(by_room
            .into_iter()
            .map(|(room, content)| (room, json!({ "type": EVENT_TYPE, "content": content })))
            .collect())
    }
}

/// The events of `(from, acked]` among a room's outlines (oldest first).
fn received(events: &[EventOutline], from: i64, acked: i64) -> &[EventOutline] {
    let start = events.partition_point(|e| e.stream_ordering <= from);
    let end = events.partition_point(|e| e.stream_ordering <= acked);
    &events[start..end]
}
