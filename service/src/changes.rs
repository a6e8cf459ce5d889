//! Which keys of a stream changed last, and at which stream position: lets
//! a sync skip reading a stream in which nothing concerning it changed
//! since its token.
//!
//! Writers record a change before they release their position (see
//! [`crate::streams::Reserved`]), so a reader whose snapshot reaches a
//! position also sees every change at or below it. Positions at or below
//! the log's horizon (the last one before the server started) are not in
//! the log: a token that old always reads. The log keeps at most
//! [`MAX_KEYS`] keys: past that, the oldest tenth is dropped and the
//! horizon raised to the newest change dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::streams::StreamAllocator;

/// Keys a log holds at most.
const MAX_KEYS: usize = 100_000;

/// Per key (a user or room ID, or "" for a stream as a whole), the
/// position of its last change. Cheap to clone (shared).
#[derive(Clone)]
pub struct ChangeLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// Changes at or below it may be missing from `last`.
    horizon: i64,
    last: HashMap<String, i64>,
}

impl ChangeLog {
    /// A log of the changes from now on.
    pub fn new(streams: &StreamAllocator) -> Self {
        let inner = Inner { horizon: streams.persisted_upto(), last: HashMap::new() };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `key` changed at `position`.
    pub fn record(&self, key: &str, position: i64) {
        let mut inner = self.lock();
        match inner.last.get_mut(key) {
            Some(at) => *at = (*at).max(position),
            None => {
                inner.last.insert(key.to_owned(), position);
                if inner.last.len() > MAX_KEYS {
                    inner.forget_oldest();
                }
            }
        }
    }

    /// Whether `key` may have changed after `after` (always, for a position
    /// from before the log's horizon).
    pub fn changed_after(&self, key: &str, after: i64) -> bool {
        let inner = self.lock();
        after < inner.horizon || inner.last.get(key).is_some_and(|at| *at > after)
    }
}

impl Inner {
    /// Drops the oldest tenth of the keys, raising the horizon past them.
    fn forget_oldest(&mut self) {
        let mut positions: Vec<i64> = self.last.values().copied().collect();
        let cut = positions.len() / 10;
        let (_, &mut newest_dropped, _) = positions.select_nth_unstable(cut);
        self.last.retain(|_, at| *at > newest_dropped);
        self.horizon = self.horizon.max(newest_dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_from_the_last_change_of_a_key() {
        let streams = StreamAllocator::in_memory(10);
        let log = ChangeLog::new(&streams);
        assert!(!log.changed_after("@a:x", 10), "nothing recorded since the start");
        log.record("@a:x", 15);
        log.record("@a:x", 12);
        assert!(log.changed_after("@a:x", 14));
        assert!(!log.changed_after("@a:x", 15), "the later change counts, not the last recorded");
        assert!(!log.changed_after("@b:x", 11), "other keys are unaffected");
    }

    #[test]
    fn keeps_a_bounded_number_of_keys() {
        let log = ChangeLog::new(&StreamAllocator::in_memory(0));
        for n in 1..=(MAX_KEYS as i64 + 1) {
            log.record(&format!("@u{n}:x"), n);
        }
        let (horizon, held) = {
            let inner = log.lock();
            (inner.horizon, inner.last.len())
        };
        assert!(held <= MAX_KEYS, "{held} keys held");
        assert!(horizon > 0, "dropped keys raise the horizon");
        assert!(log.changed_after("@u1:x", horizon - 1), "below the horizon, every key reads");
        let newest = format!("@u{}:x", MAX_KEYS + 1);
        assert!(log.changed_after(&newest, MAX_KEYS as i64));
        assert!(!log.changed_after(&newest, MAX_KEYS as i64 + 1));
    }

    #[test]
    fn positions_before_the_start_always_read() {
        let log = ChangeLog::new(&StreamAllocator::in_memory(10));
        assert!(log.changed_after("@a:x", 9));
        assert!(!log.changed_after("@a:x", 10));
    }
}
