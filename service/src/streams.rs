//! Stream positions: the server-wide order in which events are accepted.
//!
//! Positions are handed out in memory so that appends to different rooms
//! can commit in parallel. Readers must not skip a position that is still
//! being written, so the allocator also tracks which positions are in
//! flight: [`StreamAllocator::persisted_upto`] is the highest position
//! below which every allocated position has committed or been abandoned.
//!
//! No position is handed out twice, restarts included. One that is
//! abandoned (a repeated transaction ID, a failed auth check, an error)
//! is stored nowhere, yet the next sync token covers it; handed out again
//! after a restart, it would carry an event that client never reads. So
//! the allocator hands out positions only up to a bound stored in the
//! database, raising it by [`BLOCK`] (and awaiting the write) before it
//! goes past, and a start resumes above the stored bound. Only that rare
//! raise makes [`StreamAllocator::reserve`] wait; otherwise it is an
//! in-memory increment.
//!
//! Each run of the server starts at a position of its own
//! ([`StreamAllocator::started_at`]): every token it issues is at or above
//! it, every token an earlier run issued is below it. That is how sync
//! tells a token's in-memory serials (typing) of an earlier run from this
//! run's.

use std::{
    collections::BTreeSet,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use tessera_storage::Store;

use crate::Result;

/// How far the stored bound is raised at a time: one database write per
/// this many positions, and at most this many positions skipped by a
/// restart.
pub const BLOCK: i64 = 1_000;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the allocator keeps its bound: the [`Store`] in the server.
pub trait PositionStore: Send + Sync + 'static {
    /// The highest position handed out so far as far as the database
    /// knows: the streams' maximum and the stored bound.
    fn highest_position(&self) -> BoxFuture<'_, Result<i64>>;
    /// Raises the stored bound to `to` (never lowers it), durably once the
    /// future resolves.
    fn raise_bound(&self, to: i64) -> BoxFuture<'_, Result<()>>;
}

impl PositionStore for Store {
    fn highest_position(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move { Ok(self.highest_stream_position().await?) })
    }

    fn raise_bound(&self, to: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(self.raise_stream_position_bound(to).await?) })
    }
}

struct Inner {
    last: i64,
    /// Positions up to here may be handed out: the stored bound is at
    /// least this high.
    bound: i64,
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
    store: Arc<dyn PositionStore>,
    /// One raise of the bound at a time: reservers that ran out wait for
    /// it instead of each writing.
    raising: Arc<tokio::sync::Mutex<()>>,
    started_at: i64,
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
    /// Starts a run above every position the database knows of (stored
    /// in a stream or below the stored bound): the next one is this run's
    /// start, stored as the bound (with a block to hand out) before any
    /// token can carry it.
    pub async fn start(store: Arc<dyn PositionStore>) -> Result<Self> {
        let started_at = store.highest_position().await? + 1;
        let bound = started_at + BLOCK;
        store.raise_bound(bound).await?;
        Ok(Self::resume(store, started_at, bound))
    }

    fn resume(store: Arc<dyn PositionStore>, started_at: i64, bound: i64) -> Self {
        let (settled, _) = tokio::sync::watch::channel(started_at);
        let inner = Inner { last: started_at, bound, in_flight: BTreeSet::new(), settled };
        Self { inner: Arc::new(Mutex::new(inner)), store, raising: Arc::default(), started_at }
    }

    /// The next position, released when the returned guard drops. Waits
    /// only when the stored bound must be raised first; fails if that
    /// write does.
    pub async fn reserve(&self) -> Result<Reserved> {
        loop {
            if let Some(reserved) = self.try_reserve() {
                return Ok(reserved);
            }
            self.raise_bound().await?;
        }
    }

    fn try_reserve(&self) -> Option<Reserved> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.last >= inner.bound {
            return None;
        }
        inner.last += 1;
        let position = inner.last;
        inner.in_flight.insert(position);
        Some(Reserved { position, inner: self.inner.clone() })
    }

    /// Raises the stored bound by a block, unless another reserver did
    /// while this one waited. The in-memory bound moves only once the
    /// write returned, so a cancelled or failed raise hands out nothing
    /// beyond what is stored (the next reserver writes again).
    async fn raise_bound(&self) -> Result<()> {
        let _one_at_a_time = self.raising.lock().await;
        let to = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.last < inner.bound {
                return Ok(());
            }
            inner.bound + BLOCK
        };
        self.store.raise_bound(to).await?;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.bound = inner.bound.max(to);
        Ok(())
    }

    /// This run's first position: every token issued since the start is
    /// at or above it, every token of an earlier run below it.
    pub fn started_at(&self) -> i64 {
        self.started_at
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
pub(crate) mod testing {
    //! A [`PositionStore`] in memory, for tests.

    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };

    use super::{BoxFuture, PositionStore, StreamAllocator};
    use crate::{Error, Result};

    /// What a database would hold: the highest position stored by a
    /// stream and the allocator's bound.
    #[derive(Default)]
    pub(crate) struct MemoryPositions {
        pub(crate) stored: Mutex<i64>,
        pub(crate) bound: Mutex<i64>,
        pub(crate) raises: AtomicUsize,
        pub(crate) failing: AtomicBool,
    }

    impl PositionStore for MemoryPositions {
        fn highest_position(&self) -> BoxFuture<'_, Result<i64>> {
            let highest = (*self.stored.lock().expect("lock")).max(*self.bound.lock().expect("lock"));
            Box::pin(async move { Ok(highest) })
        }

        fn raise_bound(&self, to: i64) -> BoxFuture<'_, Result<()>> {
            Box::pin(async move {
                // A write takes a moment: reservers racing for it must wait.
                tokio::task::yield_now().await;
                if self.failing.load(Ordering::SeqCst) {
                    return Err(Error::internal("database unavailable"));
                }
                self.raises.fetch_add(1, Ordering::SeqCst);
                let mut bound = self.bound.lock().expect("lock");
                *bound = (*bound).max(to);
                Ok(())
            })
        }
    }

    impl StreamAllocator {
        /// An allocator whose run starts at `last`, its bound in memory.
        pub(crate) fn in_memory(last: i64) -> Self {
            Self::resume(Arc::new(MemoryPositions::default()), last, last)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::{testing::MemoryPositions, *};

    #[tokio::test]
    async fn positions_increase_and_readers_wait_for_the_slowest_writer() {
        let streams = StreamAllocator::in_memory(10);
        let a = streams.reserve().await.expect("reserved");
        let b = streams.reserve().await.expect("reserved");
        assert_eq!((a.position, b.position), (11, 12));
        assert_eq!(streams.persisted_upto(), 10);
        drop(b);
        assert_eq!(streams.persisted_upto(), 10, "11 is still being written");
        drop(a);
        assert_eq!(streams.persisted_upto(), 12);
    }

    #[tokio::test]
    async fn a_reader_can_wait_for_a_hidden_position_to_settle() {
        let streams = StreamAllocator::in_memory(10);
        let slow = streams.reserve().await.expect("reserved");
        let fast = streams.reserve().await.expect("reserved");
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

    #[tokio::test]
    async fn nothing_is_handed_out_beyond_the_stored_bound() {
        let store = Arc::new(MemoryPositions::default());
        let streams = StreamAllocator::start(store.clone()).await.expect("started");
        assert_eq!(streams.started_at(), 1);
        for _ in 0..(3 * BLOCK) {
            let reserved = streams.reserve().await.expect("reserved");
            assert!(
                reserved.position <= *store.bound.lock().expect("lock"),
                "{} not stored",
                reserved.position
            );
        }
        assert_eq!(
            store.raises.load(Ordering::SeqCst),
            3,
            "one write at the start and one per further block"
        );
    }

    #[tokio::test]
    async fn a_restart_resumes_above_every_position_handed_out() {
        let store = Arc::new(MemoryPositions::default());
        *store.stored.lock().expect("lock") = 41;
        let first = StreamAllocator::start(store.clone()).await.expect("started");
        assert_eq!(first.started_at(), 42, "above the streams' maximum");
        let stored = first.reserve().await.expect("reserved");
        *store.stored.lock().expect("lock") = stored.position;
        drop(stored);
        // Abandoned: a repeated transaction ID. A token now covers it.
        drop(first.reserve().await.expect("reserved"));
        let token = first.persisted_upto();
        assert_eq!(token, 44);
        drop(first);

        let second = StreamAllocator::start(store.clone()).await.expect("restarted");
        assert!(second.started_at() > token, "{} is not above {token}", second.started_at());
        let next = second.reserve().await.expect("reserved");
        assert!(next.position > token);
        assert!(second.persisted_upto() >= second.started_at(), "tokens of this run start at its start");
    }

    #[tokio::test]
    async fn reservers_that_run_out_together_raise_the_bound_once() {
        let store = Arc::new(MemoryPositions::default());
        let streams = StreamAllocator::resume(store.clone(), 0, 0);
        let reservers: Vec<_> = (0..8)
            .map(|_| {
                let streams = streams.clone();
                tokio::spawn(async move { streams.reserve().await.map(|r| r.position) })
            })
            .collect();
        let mut positions = Vec::new();
        for reserver in reservers {
            positions.push(reserver.await.expect("task").expect("reserved"));
        }
        positions.sort_unstable();
        assert_eq!(positions, (1..=8).collect::<Vec<_>>());
        assert_eq!(store.raises.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_raise_hands_out_nothing_and_the_next_reserve_retries() {
        let store = Arc::new(MemoryPositions::default());
        let streams = StreamAllocator::resume(store.clone(), 0, 1);
        let only = streams.reserve().await.expect("within the bound");
        assert_eq!(only.position, 1);
        store.failing.store(true, Ordering::SeqCst);
        assert!(streams.reserve().await.is_err(), "past the bound, the failed write fails the reserve");
        assert_eq!(streams.last_reserved(), 1, "nothing handed out past the stored bound");
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(streams.reserve().await.expect("reserved").position, 2);
    }
}
