//! Stream positions: the server-wide order in which events are accepted.
//!
//! Positions are handed out in memory (seeded from the database at start)
//! so that appends to different rooms can commit in parallel. Readers must
//! not skip a position that is still being written, so the allocator also
//! tracks which positions are in flight: [`StreamAllocator::persisted_upto`]
//! is the highest position below which every allocated position has
//! committed or been abandoned.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

struct Inner {
    last: i64,
    in_flight: BTreeSet<i64>,
}

/// Allocates stream orderings. Cheap to clone.
#[derive(Clone)]
pub struct StreamAllocator {
    inner: Arc<Mutex<Inner>>,
}

/// A reserved position; release it (commit or abort) by dropping it.
pub struct Reserved {
    pub position: i64,
    inner: Arc<Mutex<Inner>>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).in_flight.remove(&self.position);
    }
}

impl StreamAllocator {
    /// Starts after `last`, the highest position already in the database.
    pub fn new(last: i64) -> Self {
        Self { inner: Arc::new(Mutex::new(Inner { last, in_flight: BTreeSet::new() })) }
    }

    pub fn reserve(&self) -> Reserved {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.last += 1;
        let position = inner.last;
        inner.in_flight.insert(position);
        Reserved { position, inner: self.inner.clone() }
    }

    /// Every position up to this one is settled (committed or abandoned).
    pub fn persisted_upto(&self) -> i64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.in_flight.first().map_or(inner.last, |first| first - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_increase_and_readers_wait_for_the_slowest_writer() {
        let streams = StreamAllocator::new(10);
        let a = streams.reserve();
        let b = streams.reserve();
        assert_eq!((a.position, b.position), (11, 12));
        assert_eq!(streams.persisted_upto(), 10);
        drop(b);
        assert_eq!(streams.persisted_upto(), 10, "11 is still being written");
        drop(a);
        assert_eq!(streams.persisted_upto(), 12);
    }
}
