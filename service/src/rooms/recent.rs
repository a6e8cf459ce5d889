//! The newest events of each room that had an event since the server
//! started, kept in memory: the syncs one event wakes (one per member) and
//! the state diff at their tokens read them without a query.
//!
//! A room's tail holds every event of the room above its `complete_after`
//! position. An append adds its event *before* it releases its stream
//! position, and readers never read past the settled positions, so no
//! reader can see a position the tail lacks. An append that stops between
//! its commit and that (request cancelled) drops the room's tail instead;
//! the next append starts a new one, complete from its own position.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use ruma::{EventId, OwnedRoomId, RoomId};
use tessera_storage::{EventOutline, StoredEvent};

/// Events kept per room: more than a default sync timeline asks for.
const PER_ROOM: usize = 32;

/// Events kept over all rooms; least recently used rooms go first.
const TOTAL: usize = 16_384;

#[derive(Default)]
pub(crate) struct RecentEvents {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<OwnedRoomId, Tail>,
    /// Events held over all tails.
    total: usize,
    /// Advances on every access: the recency of each tail.
    clock: u64,
}

struct Tail {
    /// Every settled event of the room above this position is in `events`.
    complete_after: i64,
    /// Oldest first.
    events: VecDeque<StoredEvent>,
    used: u64,
}

impl RecentEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an appended event (before its position is released); a
    /// redaction it applies replaces its target's JSON in the same step.
    pub(crate) fn push(&self, room: &RoomId, event: StoredEvent, redacted: Option<(&EventId, &str)>) {
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        let position = event.stream_ordering;
        let tail = inner.rooms.entry(room.to_owned()).or_insert_with(|| Tail {
            complete_after: position - 1,
            events: VecDeque::new(),
            used,
        });
        tail.used = used;
        if let Some((target, json)) = redacted
            && let Some(target) = tail.events.iter_mut().find(|e| e.event_id == target)
            && target.redacted_by.is_none()
        {
            target.replace_json(json);
            target.redacted_by = Some(event.event_id.to_string());
        }
        // Appends to one room commit in order, so this is nearly always
        // the back; an event at or below `complete_after` is not needed.
        let mut added = 0;
        if position > tail.complete_after {
            let at = tail.events.partition_point(|e| e.stream_ordering < position);
            tail.events.insert(at, event);
            added = 1;
        }
        let mut removed = 0;
        while tail.events.len() > PER_ROOM {
            if let Some(oldest) = tail.events.pop_front() {
                tail.complete_after = tail.complete_after.max(oldest.stream_ordering);
                removed += 1;
            }
        }
        inner.total = inner.total + added - removed;
        if inner.total > TOTAL {
            inner.evict();
        }
    }

    /// Drops a room's tail: an append may have committed without adding
    /// its event.
    pub(crate) fn forget(&self, room: &RoomId) {
        let mut inner = self.lock();
        if let Some(tail) = inner.rooms.remove(room) {
            inner.total -= tail.events.len();
        }
    }

    /// The room's events above `after` up to `upto` (settled positions),
    /// newest first, at most `limit`, rejected ones left out; `None` when
    /// the tail does not hold them all.
    pub(crate) fn range(
        &self,
        room: &RoomId,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Option<Vec<StoredEvent>> {
        let mut inner = self.lock();
        let tail = inner.used_tail(room)?;
        let events: Vec<StoredEvent> = tail
            .events
            .iter()
            .rev()
            .filter(|e| e.stream_ordering > after && e.stream_ordering <= upto && !e.rejected)
            .take(limit)
            .cloned()
            .collect();
        // Below `complete_after` the tail may lack events: fine only when
        // the newest `limit` were all found above it.
        (after >= tail.complete_after || events.len() == limit).then_some(events)
    }

    /// The outlines of the room's events in `(after, upto]` (settled
    /// positions), oldest first, rejected ones left out; `None` when the
    /// tail does not hold them all.
    pub(crate) fn outlines(&self, room: &RoomId, after: i64, upto: i64) -> Option<Vec<EventOutline>> {
        let mut inner = self.lock();
        let tail = inner.used_tail(room)?;
        if after < tail.complete_after {
            return None;
        }
        Some(
            tail.events
                .iter()
                .filter(|e| e.stream_ordering > after && e.stream_ordering <= upto && !e.rejected)
                .map(|e| EventOutline {
                    stream_ordering: e.stream_ordering,
                    event_id: e.event_id.to_string(),
                    sender: e.sender.clone(),
                    event_type: e.event_type.clone(),
                })
                .collect(),
        )
    }

    /// The room's last event at or before `upto` (a settled position):
    /// `None` when it is older than the tail.
    pub(crate) fn last_upto(&self, room: &RoomId, upto: i64) -> Option<StoredEvent> {
        let mut inner = self.lock();
        let tail = inner.used_tail(room)?;
        tail.events.iter().rev().find(|e| e.stream_ordering <= upto).cloned()
    }
}

impl Inner {
    /// The room's tail, marked as just used.
    fn used_tail(&mut self, room: &RoomId) -> Option<&mut Tail> {
        self.clock += 1;
        let used = self.clock;
        let tail = self.rooms.get_mut(room)?;
        tail.used = used;
        Some(tail)
    }

    /// Drops the least recently used tails until a tenth of the bound is
    /// free, so eviction is amortised.
    fn evict(&mut self) {
        let mut by_use: Vec<(u64, OwnedRoomId)> =
            self.rooms.iter().map(|(room, tail)| (tail.used, room.clone())).collect();
        by_use.sort_unstable_by_key(|(used, _)| *used);
        for (_, room) in by_use {
            if self.total <= TOTAL - TOTAL / 10 {
                break;
            }
            if let Some(tail) = self.rooms.remove(&room) {
                self.total -= tail.events.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(room: &str, position: i64) -> StoredEvent {
        StoredEvent {
            stream_ordering: position,
            event_id: EventId::parse(format!("$e{position}")).unwrap(),
            room_id: room.to_owned(),
            sender: "@a:x".into(),
            event_type: "m.room.message".into(),
            state_key: None,
            depth: position,
            origin_server_ts: 0,
            json: "{}".into(),
            redacted_by: None,
            rejected: false,
            status: Default::default(),
            state_before: 0,
            state_after: 0,
            txn_device_id: None,
            txn_id: None,
            parsed: Default::default(),
        }
    }

    fn positions(events: &[StoredEvent]) -> Vec<i64> {
        events.iter().map(|e| e.stream_ordering).collect()
    }

    #[test]
    fn answers_only_what_it_holds_whole() {
        let recent = RecentEvents::default();
        let room = RoomId::parse("!r:x").unwrap();
        assert!(recent.range(&room, 0, 10, 5).is_none(), "no tail yet");
        for position in [10, 12, 11, 14] {
            recent.push(&room, event("!r:x", position), None);
        }
        // Complete above 9 (the first append's position minus one).
        assert_eq!(positions(&recent.range(&room, 9, 14, 10).unwrap()), [14, 12, 11, 10]);
        assert_eq!(positions(&recent.range(&room, 10, 12, 10).unwrap()), [12, 11]);
        assert_eq!(positions(&recent.range(&room, 0, 14, 2).unwrap()), [14, 12], "newest two are held");
        assert!(recent.range(&room, 0, 14, 5).is_none(), "older events may exist below the tail");
        assert_eq!(recent.last_upto(&room, 13).unwrap().stream_ordering, 12);
        assert!(recent.last_upto(&room, 9).is_none(), "older than the tail");
        let outlines = recent.outlines(&room, 10, 14).unwrap();
        assert_eq!(
            outlines.iter().map(|e| e.stream_ordering).collect::<Vec<_>>(),
            [11, 12, 14],
            "oldest first"
        );
        assert!(recent.outlines(&room, 8, 14).is_none(), "older events may exist below the tail");
        recent.forget(&room);
        assert!(recent.range(&room, 9, 14, 10).is_none(), "forgotten");
    }

    #[test]
    fn keeps_a_bounded_tail_and_applies_redactions() {
        let recent = RecentEvents::default();
        let room = RoomId::parse("!r:x").unwrap();
        for position in 1..=100 {
            recent.push(&room, event("!r:x", position), None);
        }
        let held = recent.range(&room, 100 - PER_ROOM as i64, 100, 1000).unwrap();
        assert_eq!(held.len(), PER_ROOM);
        assert!(recent.range(&room, 100 - PER_ROOM as i64 - 1, 100, 1000).is_none(), "trimmed below");
        let target = EventId::parse("$e99").unwrap();
        recent.push(&room, event("!r:x", 101), Some((&target, "{\"redacted\":true}")));
        let e99 = recent.last_upto(&room, 99).unwrap();
        assert_eq!(&*e99.json, "{\"redacted\":true}");
        assert_eq!(e99.redacted_by.as_deref(), Some("$e101"));
    }

    #[test]
    fn evicts_least_recently_used_rooms() {
        let recent = RecentEvents::default();
        let rooms = TOTAL / PER_ROOM + 10;
        for room in 0..rooms {
            for position in 0..PER_ROOM as i64 {
                let id = format!("!r{room}:x");
                recent.push(&RoomId::parse(&id).unwrap(), event(&id, position + 1), None);
            }
            // The first room stays in use.
            recent.range(&RoomId::parse("!r0:x").unwrap(), 0, 100, 1);
        }
        let inner = recent.lock();
        assert!(inner.total <= TOTAL);
        assert_eq!(inner.total, inner.rooms.values().map(|t| t.events.len()).sum::<usize>());
        assert!(inner.rooms.contains_key(<&RoomId>::try_from("!r0:x").unwrap()), "recently used stays");
        assert!(!inner.rooms.contains_key(<&RoomId>::try_from("!r1:x").unwrap()), "oldest went");
    }
}
