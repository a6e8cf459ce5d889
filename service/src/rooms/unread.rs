//! Unread counts per user and room, kept in memory once read, so that a
//! woken sync answers without a query.
//!
//! Per room the cache keeps a short log of the push-rule verdicts of its
//! latest appends (each append logs its verdicts before it releases its
//! position), and per user the counts exact at some position. A read at a
//! settled position `upto` at or above a user's position adds the user's
//! logged verdicts in between and moves the counts forward to `upto`: every
//! append at or below `upto` has logged by then, and appends above it are
//! left out. A read receipt drops the user's counts.
//!
//! Counts read from storage at `upto` are kept only if the log covers every
//! append above `upto` and no receipt was written meanwhile. A room starts
//! its log when counts are first kept for it, and only if nothing was
//! appended above the read (appends note their change before they commit).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use tessera_storage::{NewPushAction, UnreadCounts};

/// Users' counts kept over all rooms.
const ENTRIES: usize = 100_000;

/// Verdicts a room's log keeps (a few seconds of a 500-member room at 20
/// messages a second; a user whose counts fall behind it reads storage).
const LOG_VERDICTS: usize = 16_384;

#[derive(Default)]
pub(crate) struct UnreadCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, Room>,
    entries: usize,
    /// Advances on every receipt (see [`UnreadCache::insert`]).
    receipts: u64,
}

struct Room {
    /// Recent appends' verdicts, oldest first, each sorted by user.
    log: VecDeque<(i64, Vec<Verdict>)>,
    verdicts: usize,
    /// Every append of the room above this position is in `log`.
    log_from: i64,
    /// Per user: the counts per thread (ordered by thread ID, as storage
    /// answers) and the position they are exact at.
    users: HashMap<String, Held>,
}

struct Verdict {
    user_id: String,
    thread_id: String,
    notify: bool,
    highlight: bool,
}

struct Held {
    counts: Vec<UnreadCounts>,
    at: i64,
}

impl UnreadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counts up to `upto` (a settled position), if the cache can
    /// tell them.
    pub(crate) fn get(&self, user: &str, room: &str, upto: i64) -> Option<Vec<UnreadCounts>> {
        let mut inner = self.lock();
        let room = inner.rooms.get_mut(room)?;
        let held = room.users.get_mut(user)?;
        if upto < held.at || held.at < room.log_from {
            return None;
        }
        let start = room.log.partition_point(|(position, _)| *position <= held.at);
        for (position, verdicts) in room.log.range(start..) {
            if *position > upto {
                break;
            }
            if let Ok(at) = verdicts.binary_search_by(|v| v.user_id.as_str().cmp(user)) {
                add(&mut held.counts, &verdicts[at]);
            }
        }
        held.at = upto;
        Some(held.counts.clone())
    }

    /// Take before reading counts from storage.
    pub(crate) fn receipts_seen(&self) -> u64 {
        self.lock().receipts
    }

    /// Keeps counts read from storage up to `upto`, unless a receipt was
    /// written since `receipts_seen` returned `receipts`, or the room's log
    /// cannot tell what was appended above `upto`: it has none yet and
    /// `appended_since` (asked under the lock) says the room changed above
    /// `upto`, or it starts above `upto`.
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
        if inner.receipts != receipts {
            return;
        }
        let covered = match inner.rooms.get(room) {
            Some(logged) => logged.log_from <= upto,
            None => !appended_since(),
        };
        if !covered {
            return;
        }
        if inner.entries >= ENTRIES {
            inner.shed();
        }
        let logged = inner.rooms.entry(room.to_owned()).or_insert_with(|| Room {
            log: VecDeque::new(),
            verdicts: 0,
            log_from: upto,
            users: HashMap::new(),
        });
        let fresh = logged.users.insert(user.to_owned(), Held { counts, at: upto }).is_none();
        inner.entries += usize::from(fresh);
    }

    /// An append at `position` stored these verdicts (called before it
    /// releases the position).
    pub(crate) fn appended(&self, room: &str, position: i64, verdicts: &[NewPushAction]) {
        let mut inner = self.lock();
        let Some(logged) = inner.rooms.get_mut(room) else { return };
        let mut entry: Vec<Verdict> = verdicts
            .iter()
            .map(|v| Verdict {
                user_id: v.user_id.clone(),
                thread_id: v.thread_id.clone(),
                notify: v.notify,
                highlight: v.highlight,
            })
            .collect();
        entry.sort_unstable_by(|a, b| a.user_id.cmp(&b.user_id));
        logged.verdicts += entry.len();
        logged.log.push_back((position, entry));
        while logged.verdicts > LOG_VERDICTS
            && let Some((dropped, verdicts)) = logged.log.pop_front()
        {
            logged.verdicts -= verdicts.len();
            logged.log_from = dropped;
        }
    }

    /// An append may have committed without logging its verdicts.
    pub(crate) fn forget_room(&self, room: &str) {
        let mut inner = self.lock();
        if let Some(logged) = inner.rooms.remove(room) {
            inner.entries -= logged.users.len();
        }
    }

    /// `user` wrote a read receipt in `room` (called once it is stored).
    pub(crate) fn receipt(&self, user: &str, room: &str) {
        let mut inner = self.lock();
        inner.receipts += 1;
        if let Some(logged) = inner.rooms.get_mut(room)
            && logged.users.remove(user).is_some()
        {
            inner.entries -= 1;
        }
    }
}

/// Adds one verdict to counts ordered by thread. Every verdict makes a row,
/// and storage lists a thread with rows even when none of them notifies.
fn add(counts: &mut Vec<UnreadCounts>, verdict: &Verdict) {
    let at = counts.partition_point(|c| c.thread_id < verdict.thread_id);
    if counts.get(at).is_none_or(|c| c.thread_id != verdict.thread_id) {
        let thread_id = verdict.thread_id.clone();
        counts.insert(at, UnreadCounts { thread_id, notifications: 0, highlights: 0 });
    }
    counts[at].notifications += i64::from(verdict.notify);
    counts[at].highlights += i64::from(verdict.highlight);
}

impl Inner {
    /// Drops whole rooms, in no particular order, down to nine tenths.
    fn shed(&mut self) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            if self.entries <= ENTRIES - ENTRIES / 10 {
                break;
            }
            if let Some(logged) = self.rooms.remove(&room) {
                self.entries -= logged.users.len();
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
    fn appends_add_to_held_counts_up_to_the_read() {
        let cache = UnreadCache::default();
        assert!(cache.get("@a:x", "!r", 10).is_none());
        let seen = cache.receipts_seen();
        cache.insert("@a:x", "!r", 10, vec![counts("main", 2, 0)], seen, || false);
        assert_eq!(cache.get("@a:x", "!r", 10).unwrap(), [counts("main", 2, 0)]);
        cache.appended("!r", 12, &[verdict("@b:x", "main", false), verdict("@a:x", "$t", true)]);
        cache.appended("!r", 14, &[verdict("@a:x", "main", false)]);
        assert_eq!(cache.get("@a:x", "!r", 11).unwrap(), [counts("main", 2, 0)], "12 is above the read");
        assert_eq!(cache.get("@a:x", "!r", 13).unwrap(), [counts("$t", 1, 1), counts("main", 2, 0)]);
        assert!(cache.get("@a:x", "!r", 12).is_none(), "a read behind the counts reads storage");
        assert_eq!(cache.get("@a:x", "!r", 20).unwrap(), [counts("$t", 1, 1), counts("main", 3, 0)]);
        assert!(cache.get("@b:x", "!r", 20).is_none(), "not held, not made up");
        cache.receipt("@a:x", "!r");
        assert!(cache.get("@a:x", "!r", 20).is_none(), "a receipt drops them");
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
        // Once the room logs, an append above a read does not stop a user's
        // counts from being kept: the log adds it.
        cache.appended("!r", 11, &[verdict("@b:x", "main", false)]);
        cache.insert("@b:x", "!r", 10, vec![counts("main", 1, 0)], seen, || true);
        assert_eq!(cache.get("@b:x", "!r", 11).unwrap(), [counts("main", 2, 0)]);
        cache.forget_room("!r");
        assert!(cache.get("@a:x", "!r", 11).is_none());
    }

    #[test]
    fn counts_behind_a_trimmed_log_are_read_again() {
        let cache = UnreadCache::default();
        let seen = cache.receipts_seen();
        cache.insert("@a:x", "!r", 1, vec![], seen, || false);
        cache.insert("@b:x", "!r", 1, vec![], seen, || false);
        let many: Vec<NewPushAction> =
            (0..LOG_VERDICTS).map(|i| verdict(&format!("@u{i}:x"), "main", false)).collect();
        cache.appended("!r", 2, &[verdict("@a:x", "main", false)]);
        assert_eq!(cache.get("@a:x", "!r", 2).unwrap(), [counts("main", 1, 0)]);
        cache.appended("!r", 3, &many);
        assert!(cache.get("@b:x", "!r", 3).is_none(), "position 2 left the log");
        assert_eq!(cache.get("@a:x", "!r", 3).unwrap(), [counts("main", 1, 0)], "@a had counted it");
        cache.insert("@b:x", "!r", 1, vec![], seen, || false);
        assert!(cache.get("@b:x", "!r", 3).is_none(), "counts from before the log are refused");
        cache.insert("@b:x", "!r", 3, vec![counts("main", 1, 0)], seen, || true);
        assert_eq!(cache.get("@b:x", "!r", 3).unwrap(), [counts("main", 1, 0)]);
    }
}
