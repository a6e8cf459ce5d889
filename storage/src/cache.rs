//! Bounded in-memory caches of what the database holds.
//!
//! A [`Cache`] keeps values by key up to a total weight (a state group
//! weighs its entry count, an event one), dropping the least recently used
//! tenth of the bound when full, so eviction is amortised. Values that can
//! change in the database are invalidated by [`Cache::remove`] after the
//! change commits; a reader that read before that must not put its stale
//! copy back, so readers take a [`Cache::generation`] before reading and
//! insert with it ([`Cache::insert_read_at`]): any removal in between
//! makes the insert a no-op.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

pub(crate) struct Cache<K, V> {
    inner: Mutex<Inner<K, V>>,
    max_weight: usize,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Sum of the cached entries' weights.
    weight: usize,
    /// Advances on every access: the recency of each entry.
    clock: u64,
    /// Advances on every removal (see the module documentation).
    generation: u64,
}

struct Entry<V> {
    value: Arc<V>,
    weight: usize,
    used: u64,
}

impl<K: Hash + Eq + Clone, V> Cache<K, V> {
    pub(crate) fn new(max_weight: usize) -> Self {
        let inner = Inner { entries: HashMap::new(), weight: 0, clock: 0, generation: 0 };
        Self { inner: Mutex::new(inner), max_weight }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(key)?;
        entry.used = now;
        Some(Arc::clone(&entry.value))
    }

    /// Take before reading what will be inserted.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Inserts a value that cannot change (no generation needed).
    pub(crate) fn insert(&self, key: K, value: Arc<V>, weight: usize) {
        let generation = self.generation();
        self.insert_read_at(generation, key, value, weight);
    }

    /// Inserts a value read after [`Cache::generation`] returned
    /// `generation`, unless something was removed since.
    pub(crate) fn insert_read_at(&self, generation: u64, key: K, value: Arc<V>, weight: usize) {
        let weight = weight.max(1);
        if weight > self.max_weight {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        inner.clock += 1;
        let used = inner.clock;
        if let Some(previous) = inner.entries.insert(key, Entry { value, weight, used }) {
            inner.weight -= previous.weight;
        }
        inner.weight += weight;
        if inner.weight > self.max_weight {
            inner.evict_down_to(self.max_weight - self.max_weight / 10);
        }
    }

    /// Drops everything (after a change that may affect many entries).
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
        inner.weight = 0;
    }

    /// Clears the cache when the guard drops. Taken before a write that may
    /// change what the cache holds, it clears after the commit, on an
    /// error, and also when the write's future is dropped mid-commit (the
    /// client went away), which code after the commit would miss.
    pub(crate) fn clear_on_drop(&self) -> ClearOnDrop<'_, K, V> {
        ClearOnDrop { cache: self, key: None }
    }

    /// [`Cache::clear_on_drop`] for one key.
    pub(crate) fn remove_on_drop(&self, key: K) -> ClearOnDrop<'_, K, V> {
        ClearOnDrop { cache: self, key: Some(key) }
    }

    /// Drops `key` after its value changed in the database.
    pub(crate) fn remove(&self, key: &K) {
        let mut inner = self.lock();
        inner.generation += 1;
        if let Some(entry) = inner.entries.remove(key) {
            inner.weight -= entry.weight;
        }
    }
}

/// See [`Cache::clear_on_drop`].
pub(crate) struct ClearOnDrop<'a, K: Hash + Eq + Clone, V> {
    cache: &'a Cache<K, V>,
    /// One key, or (`None`) everything.
    key: Option<K>,
}

impl<K: Hash + Eq + Clone, V> Drop for ClearOnDrop<'_, K, V> {
    fn drop(&mut self) {
        match &self.key {
            Some(key) => self.cache.remove(key),
            None => self.cache.clear(),
        }
    }
}

impl<K: Hash + Eq + Clone, V> Inner<K, V> {
    /// Drops the least recently used entries until at most `target` weight
    /// remains.
    fn evict_down_to(&mut self, target: usize) {
        let mut by_age: Vec<(u64, K, usize)> =
            self.entries.iter().map(|(key, e)| (e.used, key.clone(), e.weight)).collect();
        by_age.sort_unstable_by_key(|(used, _, _)| *used);
        for (_, key, weight) in by_age {
            if self.weight <= target {
                break;
            }
            self.entries.remove(&key);
            self.weight -= weight;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_what_was_inserted() {
        let cache = Cache::new(10);
        assert!(cache.get(&7).is_none());
        cache.insert(7, Arc::new("seven"), 3);
        assert_eq!(cache.get(&7).as_deref(), Some(&"seven"));
    }

    #[test]
    fn evicts_the_least_recently_used_past_the_bound() {
        let cache = Cache::new(10);
        cache.insert(1, Arc::new(()), 4);
        cache.insert(2, Arc::new(()), 4);
        // 1 is used again, so 2 is the older one.
        assert!(cache.get(&1).is_some());
        cache.insert(3, Arc::new(()), 4);
        assert!(cache.get(&2).is_none(), "least recently used entry evicted");
        assert!(cache.get(&1).is_some());
        assert!(cache.get(&3).is_some());
        assert!(cache.lock().weight <= 10);
    }

    #[test]
    fn skips_a_value_heavier_than_the_bound() {
        let cache = Cache::new(10);
        cache.insert(1, Arc::new(()), 11);
        assert!(cache.get(&1).is_none());
        assert_eq!(cache.lock().weight, 0);
    }

    #[test]
    fn guards_invalidate_when_dropped_even_early() {
        let cache = Cache::new(10);
        cache.insert(1, Arc::new(()), 1);
        cache.insert(2, Arc::new(()), 1);
        {
            let _one = cache.remove_on_drop(1);
            assert!(cache.get(&1).is_some(), "nothing happens before the write ends");
        }
        assert!(cache.get(&1).is_none());
        assert!(cache.get(&2).is_some());
        // A write cancelled part-way (its future dropped) still clears.
        let cancelled = async {
            let _all = cache.clear_on_drop();
            std::future::pending::<()>().await;
        };
        drop(Box::pin(cancelled));
        assert!(cache.get(&2).is_some(), "a future never polled ran nothing");
        let mut started = Box::pin(async {
            let _all = cache.clear_on_drop();
            std::future::pending::<()>().await;
        });
        let waker = std::task::Waker::noop();
        assert!(started.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_pending());
        drop(started);
        assert!(cache.get(&2).is_none(), "dropping a started write cleared the cache");
    }

    #[test]
    fn a_read_from_before_a_removal_is_not_put_back() {
        let cache = Cache::new(10);
        cache.insert("$e", Arc::new("original"), 1);
        let before = cache.generation();
        // A redaction commits and invalidates while a reader holds the
        // original it read earlier.
        cache.remove(&"$e");
        cache.insert_read_at(before, "$e", Arc::new("original"), 1);
        assert!(cache.get(&"$e").is_none(), "the stale copy stays out");
        let after = cache.generation();
        cache.insert_read_at(after, "$e", Arc::new("redacted"), 1);
        assert_eq!(cache.get(&"$e").as_deref(), Some(&"redacted"));
    }
}
