//! The key counts every `/sync` response carries, kept in memory per
//! device: read on every response (a message to a room of 500 wakes 500
//! syncs), they change only when the device uploads keys, someone claims
//! one, or the device comes or goes, and each of those forgets the entry.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::KeyCounts;

/// Past this many devices the cache starts over.
const MAX_DEVICES: usize = 100_000;

#[derive(Clone, Default)]
pub(super) struct KeyCountCache(Arc<Inner>);

#[derive(Default)]
struct Inner {
    counts: Mutex<HashMap<(String, String), Arc<KeyCounts>>>,
    /// Bumped by every forget: a read from storage that began before a
    /// forget is not kept (it may predate the write that caused it).
    generation: AtomicU64,
}

impl KeyCountCache {
    pub(super) fn get(&self, user: &str, device: &str) -> Option<Arc<KeyCounts>> {
        self.lock().get(&(user.to_owned(), device.to_owned())).cloned()
    }

    /// The generation a read from storage starts at.
    pub(super) fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::SeqCst)
    }

    /// Keeps counts read from storage, unless something was forgotten
    /// since the read began.
    pub(super) fn keep(&self, user: &str, device: &str, counts: Arc<KeyCounts>, read_at: u64) {
        let mut map = self.lock();
        if self.generation() != read_at {
            return;
        }
        if map.len() >= MAX_DEVICES {
            map.clear();
        }
        map.insert((user.to_owned(), device.to_owned()), counts);
    }

    /// After a write to a device's keys.
    pub(super) fn forget_device(&self, user: &str, device: &str) {
        let mut map = self.lock();
        self.0.generation.fetch_add(1, Ordering::SeqCst);
        map.remove(&(user.to_owned(), device.to_owned()));
    }

    /// After a device of `user` came or went (its keys may be gone, or a
    /// device ID used again).
    pub(super) fn forget_user(&self, user: &str) {
        let mut map = self.lock();
        self.0.generation.fetch_add(1, Ordering::SeqCst);
        map.retain(|(owner, _), _| owner != user);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<KeyCounts>>> {
        self.0.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_began_before_a_forget_is_not_kept() {
        let cache = KeyCountCache::default();
        let before = cache.generation();
        cache.forget_device("@a:x", "D");
        cache.keep("@a:x", "D", Arc::new(KeyCounts::default()), before);
        assert!(cache.get("@a:x", "D").is_none());
        let now = cache.generation();
        cache.keep("@a:x", "D", Arc::new(KeyCounts::default()), now);
        assert!(cache.get("@a:x", "D").is_some());
        cache.forget_user("@a:x");
        assert!(cache.get("@a:x", "D").is_none());
    }
}
