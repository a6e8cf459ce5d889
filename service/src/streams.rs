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
    /// Announces `persisted_upto` whenever it advances.
    settled: tokio::sync::watch::Sender<i64>,
}

impl Inner {
    fn persisted_upto(&self) -> i64 {
        self.in_flight.first().map_or(self.last, |first| first - 1)
    }
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
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.in_flight.remove(&self.position);
        let upto = inner.persisted_upto();
        inner.settled.send_if_modified(|announced| {
            let advanced = *announced < upto;
            *announced = upto;
            advanced
        });
    }
}

impl StreamAllocator {
    /// Starts after `last`, the highest position already in the database.
    pub fn new(last: i64) -> Self {
        let (settled, _) = tokio::sync::watch::channel(last);
        Self { inner: Arc::new(Mutex::new(Inner { last, in_flight: BTreeSet::new(), settled })) }
    }

    pub fn reserve(&self) -> Reserved {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.last += 1;
        let position = inner.last;
        inner.in_flight.insert(position);
        Reserved { position, inner: self.inner.clone() }
    }

    /// The highest position reserved so far (settled or not).
    pub fn last_reserved(&self) -> i64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).last
    }

    /// Every position up to this one is settled (committed or abandoned).
    pub fn persisted_upto(&self) -> i64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).persisted_upto()
    }

    /// Returns once `persisted_upto` is past `upto`: for a reader that
    /// knows of a change above its snapshot still hidden behind a slower
    /// writer's position (the change's own wake-up came too early for it).
    pub async fn settled_past(&self, upto: i64) {
        let mut settled = self.inner.lock().unwrap_or_else(|p| p.into_inner()).settled.subscribe();
        let _ = settled.wait_for(|persisted| *persisted > upto).await;
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

    #[tokio::test]
    async fn a_reader_can_wait_for_a_hidden_position_to_settle() {
        let streams = StreamAllocator::new(10);
        let slow = streams.reserve();
        let fast = streams.reserve();
        drop(fast); // 12 committed, hidden behind 11
        let waiting = tokio::spawn({
            let streams = streams.clone();
            async move { streams.settled_past(10).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "11 is still being written");
        drop(slow);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken when 11 settled")
            .expect("task");
        assert_eq!(streams.persisted_upto(), 12);
    }
}
