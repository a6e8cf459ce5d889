//! Which keys of a stream changed last, and at which stream position: lets
//! a sync skip reading a stream in which nothing concerning it changed
//! since its token.
//!
//! Writers record a change before they release their position (see
//! [`crate::streams::Reserved`]), so a reader whose snapshot reaches a
//! position also sees every change at or below it. Positions at or below
//! the log's horizon (the last one before the server started) are not in
//! the log: a token that old always reads.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::streams::StreamAllocator;

/// Per key (a user or room ID, or "" for a stream as a whole), the
/// position of its last change. Cheap to clone (shared).
#[derive(Clone)]
pub struct ChangeLog {
    horizon: i64,
    last: Arc<Mutex<HashMap<String, i64>>>,
}

impl ChangeLog {
    /// A log of the changes from now on.
    pub fn new(streams: &StreamAllocator) -> Self {
        Self { horizon: streams.persisted_upto(), last: Arc::default() }
    }

    /// `key` changed at `position`.
    pub fn record(&self, key: &str, position: i64) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(key) {
            Some(at) => *at = (*at).max(position),
            None => {
                last.insert(key.to_owned(), position);
            }
        }
    }

    /// Whether `key` may have changed after `after` (always, for a position
    /// from before the log began).
    pub fn changed_after(&self, key: &str, after: i64) -> bool {
        after < self.horizon
            || self.last.lock().unwrap_or_else(|p| p.into_inner()).get(key).is_some_and(|at| *at > after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_from_the_last_change_of_a_key() {
        let streams = StreamAllocator::new(10);
        let log = ChangeLog::new(&streams);
        assert!(!log.changed_after("@a:x", 10), "nothing recorded since the start");
        log.record("@a:x", 15);
        log.record("@a:x", 12);
        assert!(log.changed_after("@a:x", 14));
        assert!(!log.changed_after("@a:x", 15), "the later change counts, not the last recorded");
        assert!(!log.changed_after("@b:x", 11), "other keys are unaffected");
    }

    #[test]
    fn positions_before_the_start_always_read() {
        let log = ChangeLog::new(&StreamAllocator::new(10));
        assert!(log.changed_after("@a:x", 9));
        assert!(!log.changed_after("@a:x", 10));
    }
}
