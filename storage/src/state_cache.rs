//! Resolved state groups kept in memory.
//!
//! A committed state group never changes, so a resolved group is valid for
//! ever: the cache needs no invalidation, only a bound. It holds at most
//! [`MAX_ENTRIES`] state entries in all; past that the least recently used
//! groups go, a tenth of the bound at a time, so eviction is amortised.
//! Only groups read back from the database enter the cache (never one
//! being written in a transaction that could still roll back).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::state::StateMap;

/// The most state entries (across all cached groups) kept in memory:
/// a few tens of MiB at worst.
const MAX_ENTRIES: usize = 100_000;

/// The cache: group ID → resolved state. Cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct StateCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<i64, Cached>,
    /// Sum of the cached groups' sizes.
    entries: usize,
    /// Advances on every access: the recency of each group.
    clock: u64,
}

struct Cached {
    state: Arc<StateMap>,
    used: u64,
}

impl StateCache {
    pub(crate) fn get(&self, group: i64) -> Option<Arc<StateMap>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        let cached = inner.groups.get_mut(&group)?;
        cached.used = now;
        Some(Arc::clone(&cached.state))
    }

    pub(crate) fn insert(&self, group: i64, state: Arc<StateMap>) {
        self.insert_bounded(group, state, MAX_ENTRIES);
    }

    fn insert_bounded(&self, group: i64, state: Arc<StateMap>, max_entries: usize) {
        let size = state.len().max(1);
        if size > max_entries {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let used = inner.clock;
        if let Some(previous) = inner.groups.insert(group, Cached { state, used }) {
            inner.entries -= previous.state.len().max(1);
        }
        inner.entries += size;
        if inner.entries > max_entries {
            inner.evict_down_to(max_entries - max_entries / 10);
        }
    }
}

impl Inner {
    /// Drops the least recently used groups until at most `target` entries
    /// remain.
    fn evict_down_to(&mut self, target: usize) {
        let mut by_age: Vec<(u64, i64, usize)> =
            self.groups.iter().map(|(id, c)| (c.used, *id, c.state.len().max(1))).collect();
        by_age.sort_unstable();
        for (_, id, size) in by_age {
            if self.entries <= target {
                break;
            }
            self.groups.remove(&id);
            self.entries -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: usize) -> Arc<StateMap> {
        Arc::new(
            (0..n).map(|i| (("m.room.member".to_owned(), format!("@u{i}:x")), format!("$e{i}"))).collect(),
        )
    }

    #[test]
    fn returns_what_was_inserted() {
        let cache = StateCache::default();
        assert!(cache.get(7).is_none());
        cache.insert(7, state(3));
        assert_eq!(cache.get(7).map(|s| s.len()), Some(3));
    }

    #[test]
    fn evicts_the_least_recently_used_past_the_bound() {
        let cache = StateCache::default();
        cache.insert_bounded(1, state(4), 10);
        cache.insert_bounded(2, state(4), 10);
        // Group 1 is used again, so group 2 is the older one.
        assert!(cache.get(1).is_some());
        cache.insert_bounded(3, state(4), 10);
        assert!(cache.get(2).is_none(), "least recently used group evicted");
        assert!(cache.get(1).is_some());
        assert!(cache.get(3).is_some());
        assert!(cache.inner.lock().unwrap().entries <= 10);
    }

    #[test]
    fn skips_a_group_larger_than_the_bound() {
        let cache = StateCache::default();
        cache.insert_bounded(1, state(11), 10);
        assert!(cache.get(1).is_none());
        assert_eq!(cache.inner.lock().unwrap().entries, 0);
    }
}
