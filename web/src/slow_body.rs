//! Request bodies that stall or trickle fail instead of holding their
//! connection, and what they have buffered, for ever.
//!
//! [`BodyTimeouts`] is a tower layer: the listener (`src/connections.rs`)
//! wraps every request's body in a [`TimedBody`] before routing. A body
//! fails with [`BodyTimedOut`] when
//! - no bytes arrive for `idle` (a client that stopped sending), or
//! - after its first `idle`, it averages less than `min_bytes_per_second`
//!   (a client that sends a byte just often enough to never be idle).
//!
//! Together: a body always has at least `idle` to start, every byte earns
//! it `1 / min_bytes_per_second` more, and it may never pause for longer
//! than `idle`. A stall is cut `idle` after the last byte, whatever was
//! received before it; a trickle is cut once it falls behind the rate.
//!
//! The clock starts when the body is first read, not when the request
//! arrived: time the server spends before reading (authentication, rate
//! limits) is not the client's. The timer is allocated only once a read has
//! to wait, so a body that arrives with its headers costs nothing.
//!
//! Long-polls and WebSockets are not affected: a `/sync` has read its
//! (empty) body before it waits, and an upgrade's connection is handed over
//! outside any body (HTTP/2's extended CONNECT too: hyper gives it an empty
//! body and the stream as the upgrade).
//!
//! The request extractor finds [`BodyTimedOut`] in the source chain of the
//! error reading the body fails with ([`BodyTimedOut::caused`]).

use std::{
    error::Error as StdError,
    fmt,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Buf;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A request body took too long to arrive (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyTimedOut;

impl fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body was not received in time")
    }
}

impl StdError for BodyTimedOut {}

impl BodyTimedOut {
    /// Whether `error`, or any error in its source chain, is a body timeout.
    /// Reading a body through axum wraps the body's error twice.
    pub fn caused(error: &(dyn StdError + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(error) = current {
            if error.is::<BodyTimedOut>() {
                return true;
            }
            current = error.source();
        }
        false
    }
}

/// How long a request body may take; a tower layer that applies it to
/// every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// The longest a body may go without a byte arriving; also the time a
    /// body has before `min_bytes_per_second` applies.
    pub idle: Duration,
    /// The slowest average rate a body may arrive at after its first
    /// `idle`; 0 turns the rate check off.
    pub min_bytes_per_second: u64,
}

impl<S> Layer<S> for BodyTimeouts {
    type Service = TimeBodies<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeBodies { inner, timeouts: *self }
    }
}

/// The service [`BodyTimeouts`] makes: the inner one, given each request
/// with its body wrapped in a [`TimedBody`]. It adds nothing to the
/// response future, which a long-poll holds for as long as it waits.
#[derive(Clone, Debug)]
pub struct TimeBodies<S> {
    inner: S,
    timeouts: BodyTimeouts,
}

impl<S, B> Service<Request<B>> for TimeBodies<S>
where
    S: Service<Request<TimedBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let timeouts = self.timeouts;
        self.inner.call(request.map(|body| TimedBody::new(body, timeouts)))
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyTimedOut`] when it stalls or
    /// trickles (see the module docs).
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        timeouts: BodyTimeouts,
        // Set when the body is first read.
        progress: Option<Progress>,
        // Allocated the first time a read has to wait.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

#[derive(Clone, Copy, Debug)]
struct Progress {
    started: Instant,
    last_frame: Instant,
    received: u64,
}

impl Progress {
    /// When the body fails unless more of it arrives.
    fn deadline(&self, timeouts: BodyTimeouts) -> Instant {
        let stalled = self.last_frame + timeouts.idle;
        if timeouts.min_bytes_per_second == 0 {
            return stalled;
        }
        let earned_ms = self.received.saturating_mul(1000) / timeouts.min_bytes_per_second;
        let too_slow = self.started + timeouts.idle + Duration::from_millis(earned_ms);
        stalled.min(too_slow)
    }
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeouts: BodyTimeouts) -> Self {
        Self { inner, timeouts, progress: None, timer: None }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        let now = Instant::now();
        let progress = this.progress.get_or_insert(Progress { started: now, last_frame: now, received: 0 });
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                progress.last_frame = now;
                if let Some(data) = frame.data_ref() {
                    let len = u64::try_from(data.remaining()).unwrap_or(u64::MAX);
                    progress.received = progress.received.saturating_add(len);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                *this.timer = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = progress.deadline(*this.timeouts);
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body as AxumBody;
    use bytes::Bytes;
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    use super::*;

    const TIMEOUTS: BodyTimeouts = BodyTimeouts { idle: Duration::from_secs(30), min_bytes_per_second: 100 };

    /// A body fed by the test, read as the extractor reads it.
    fn fed_body() -> (mpsc::Sender<Bytes>, tokio::task::JoinHandle<Result<Bytes, axum::Error>>, Instant) {
        let (feed, chunks) = mpsc::channel::<Bytes>(16);
        let stream = tokio_stream(chunks).map(Ok::<_, std::io::Error>);
        let body = TimedBody::new(AxumBody::from_stream(stream), TIMEOUTS);
        let started = Instant::now();
        let read = tokio::spawn(axum::body::to_bytes(AxumBody::new(body), usize::MAX));
        (feed, read, started)
    }

    fn tokio_stream(mut chunks: mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> + Send {
        futures_util::stream::poll_fn(move |cx| chunks.poll_recv(cx))
    }

    fn timed_out(read: Result<Bytes, axum::Error>) -> bool {
        read.as_ref().err().is_some_and(|e| BodyTimedOut::caused(e))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_once_idle_has_passed_since_its_last_bytes() {
        let (feed, read, started) = fed_body();
        tokio::time::sleep(Duration::from_secs(20)).await;
        // Enough for the rate (4,000 bytes earn 40 s), then nothing.
        feed.send(Bytes::from(vec![b' '; 4000])).await.expect("reader alive");
        let read = read.await.expect("reader");
        assert!(timed_out(read), "a stalled body must time out");
        // Paused time: the last bytes plus `idle` (to the timer's millisecond).
        let elapsed = started.elapsed();
        assert!(
            (Duration::from_secs(50)..Duration::from_secs(51)).contains(&elapsed),
            "cut after {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_trickles_below_the_rate_fails_even_though_it_never_stalls() {
        let (feed, read, started) = fed_body();
        let trickle = tokio::spawn(async move {
            // 10 bytes every 10 s: never idle for 30 s, but 1 B/s.
            while feed.send(Bytes::from_static(b"0123456789")).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        let read = read.await.expect("reader");
        assert!(timed_out(read), "a trickling body must time out");
        // 30 s of grace, and the 30 bytes sent by then earn 0.3 s at 100 B/s.
        let elapsed = started.elapsed();
        assert!(
            (Duration::from_millis(30_300)..Duration::from_secs(31)).contains(&elapsed),
            "cut after {elapsed:?}"
        );
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_body_at_the_rate_is_read_whole() {
        let (feed, read, _) = fed_body();
        for _ in 0..20 {
            // 2,000 bytes every 10 s: 200 B/s, twice the minimum.
            feed.send(Bytes::from(vec![b'x'; 2000])).await.expect("reader alive");
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        drop(feed);
        let read = read.await.expect("reader").expect("the whole body");
        assert_eq!(read.len(), 40_000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_error_reading_the_body_names_the_timeout() {
        let (_feed, read, _) = fed_body();
        let error = read.await.expect("reader").expect_err("stalled");
        assert!(BodyTimedOut::caused(&error));
        assert!(!BodyTimedOut::caused(&std::io::Error::other("reset")));
    }
}
