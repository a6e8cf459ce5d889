//! Unread counts per user and room, kept in memory once read: each append
//! adds its push-rule verdicts to the counts held for its room's members
//! (before it releases its position), and a read receipt drops the user's
//! counts for the room, so a woken sync answers without a query.
//!
//! Counts read from storage at a position are kept only if nothing in the
//! room was appended above it and no receipt was written meanwhile: the
//! check and the insert are one step under the lock that appends apply
//! their verdicts under, and appends note their change before they commit.

use std::{collections::HashMap, sync::Mutex};

use tessera_storage::{NewPushAction, UnreadCounts};

/// Entries kept over all rooms.
const ENTRIES: usize = 100_000;

#[derive(Default)]
pub(crate) struct UnreadCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per room, per user: the counts per thread (ordered by thread ID, as
    /// storage answers) and the position they are exact at.
    rooms: HashMap<String, HashMap<String, Held>>,
    entries: usize,
    /// Advances on every receipt (see [`UnreadCache::insert`]).
    receipts: u64,
}

struct Held {
    counts: Vec<UnreadCounts>,
    at: i64,
}

impl UnreadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counts up to `upto` (a settled position), if held.
    pub(crate) fn get(&self, user: &str, room: &str, upto: i64) -> Option<Vec<UnreadCounts>> {
        let inner = self.lock();
        let held = inner.rooms.get(room)?.get(user)?;
        (held.at <= upto).then(|| held.counts.clone())
    }

    /// Take before reading counts from storage.
    pub(crate) fn receipts_seen(&self) -> u64 {
        self.lock().receipts
    }

    /// Keeps counts read from storage up to `upto`, unless `appended_since`
    /// (asked under the lock) says the room had an append above `upto`, or
    /// a receipt was written since `receipts_seen` returned `receipts`.
    pub(crate) fn insert(
        &self,
        user: &str,
        room: &str,
        upto: i64,
        counts: Vec<UnreadCounts>,
        receipts: u64,
        appended_since: impl FnOnce() -> bool,
    ) {
        let mut inner = self.lock();
        if inner.receipts != receipts || appended_since() {
            return;
        }
        if inner.entries >= ENTRIES {
            inner.shed();
        }
        let held = Held { counts, at: upto };
        if inner.rooms.entry(room.to_owned()).or_default().insert(user.to_owned(), held).is_none() {
            inner.entries += 1;
        }
    }

    /// An append at `position` stored these verdicts.
    pub(crate) fn appended(&self, room: &str, position: i64, verdicts: &[NewPushAction]) {
        let mut inner = self.lock();
        let Some(users) = inner.rooms.get_mut(room) else { return };
        // Every verdict makes a row, and storage lists a thread with rows
        // even when none of them notifies.
        for verdict in verdicts {
            let Some(held) = users.get_mut(&verdict.user_id) else { continue };
            let at = held.counts.partition_point(|c| c.thread_id < verdict.thread_id);
            if held.counts.get(at).is_none_or(|c| c.thread_id != verdict.thread_id) {
                let thread_id = verdict.thread_id.clone();
                held.counts.insert(at, UnreadCounts { thread_id, notifications: 0, highlights: 0 });
            }
            held.counts[at].notifications += i64::from(verdict.notify);
            held.counts[at].highlights += i64::from(verdict.highlight);
            held.at = held.at.max(position);
        }
    }

    /// An append may have committed without applying its verdicts.
    pub(crate) fn forget_room(&self, room: &str) {
        let mut inner = self.lock();
        if let Some(users) = inner.rooms.remove(room) {
            inner.entries -= users.len();
        }
    }

    /// `user` wrote a read receipt in `room` (called once it is stored).
    pub(crate) fn receipt(&self, user: &str, room: &str) {
        let mut inner = self.lock();
        inner.receipts += 1;
        if let Some(users) = inner.rooms.get_mut(room)
            && users.remove(user).is_some()
        {
            inner.entries -= 1;
        }
    }
}

impl Inner {
    /// Drops whole rooms, in no particular order, down to nine tenths.
    fn shed(&mut self) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            if self.entries <= ENTRIES - ENTRIES / 10 {
                break;
            }
            if let Some(users) = self.rooms.remove(&room) {
                self.entries -= users.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(user: &str, thread: &str, highlight: bool) -> NewPushAction {
        NewPushAction {
            user_id: user.into(),
            thread_id: thread.into(),
            actions: "[]".into(),
            notify: true,
            highlight,
        }
    }

    fn counts(thread: &str, notifications: i64, highlights: i64) -> UnreadCounts {
        UnreadCounts { thread_id: thread.into(), notifications, highlights }
    }

    #[test]
    fn appends_add_to_held_counts() {
        let cache = UnreadCache::default();
        assert!(cache.get("@a:x", "!r", 10).is_none());
        let seen = cache.receipts_seen();
        cache.insert("@a:x", "!r", 10, vec![counts("main", 2, 0)], seen, || false);
        assert_eq!(cache.get("@a:x", "!r", 10).unwrap(), [counts("main", 2, 0)]);
        cache.appended("!r", 12, &[verdict("@a:x", "$t", true), verdict("@b:x", "main", false)]);
        assert!(cache.get("@a:x", "!r", 11).is_none(), "a reader behind the counts reads storage");
        assert_eq!(cache.get("@a:x", "!r", 12).unwrap(), [counts("$t", 1, 1), counts("main", 2, 0)]);
        assert!(cache.get("@b:x", "!r", 12).is_none(), "not held, not made up");
        cache.receipt("@a:x", "!r");
        assert!(cache.get("@a:x", "!r", 12).is_none(), "a receipt drops them");
    }

    #[test]
    fn refuses_counts_that_may_be_stale() {
        let cache = UnreadCache::default();
        let seen = cache.receipts_seen();
        cache.insert("@a:x", "!r", 10, vec![], seen, || true);
        assert!(cache.get("@a:x", "!r", 10).is_none(), "the room had an append above the read");
        cache.receipt("@b:x", "!other");
        cache.insert("@a:x", "!r", 10, vec![], seen, || false);
        assert!(cache.get("@a:x", "!r", 10).is_none(), "a receipt was written during the read");
        let seen = cache.receipts_seen();
        cache.insert("@a:x", "!r", 10, vec![], seen, || false);
        assert_eq!(cache.get("@a:x", "!r", 10).unwrap(), []);
        cache.forget_room("!r");
        assert!(cache.get("@a:x", "!r", 10).is_none());
    }
}
