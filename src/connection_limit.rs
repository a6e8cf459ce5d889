//! How many connections a listener holds open, and what happens to the
//! rest: the accept loop (`connections.rs`) takes a permit per connection
//! and answers the ones over the limit with a short canned 503.
//!
//! A permit travels with the socket ([`Counted`]), not with the task that
//! serves HTTP on it: a WebSocket upgrade hands the socket to another task,
//! and it stays counted until it closes.
//!
//! Refusing, rather than not accepting, keeps the server responsive: a
//! listener that stops accepting leaves new clients, including the ones
//! that would have come back after the crowd left, in a full accept queue
//! until they time out. The limit is kept below the file-descriptor limit
//! (see [`default_max_connections`]) so there is always a descriptor left
//! to accept and refuse with; [`AcceptErrors`] covers the case where there
//! is not anyway.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// The default per listener never exceeds this: about 1 GiB of waiting
/// long-polls (docs/ARCHITECTURE.md, "Listeners").
const DEFAULT_CAP: u64 = 65_536;

/// The default for `connections.max_connections`: three quarters of the
/// file-descriptor limit, shared out between `listeners`. The other quarter
/// is for the database's connections and files, refusals in progress and
/// headroom.
pub(crate) fn default_max_connections(fd_limit: u64, listeners: u64) -> u64 {
    (fd_limit / 4 * 3 / listeners.max(1)).clamp(1, DEFAULT_CAP)
}

/// Raises the soft limit on open files to the hard limit, as servers that
/// hold a descriptor per client do (systemd and Docker set a high hard limit
/// but leave the soft one at 1,024 for old `select` users). Returns the
/// limit in force afterwards.
#[cfg(unix)]
pub(crate) fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return FALLBACK_FD_LIMIT;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(from = limit.rlim_cur, to = limit.rlim_max, "raised the open-file limit");
            limit.rlim_cur = limit.rlim_max;
        } else {
            // macOS refuses RLIM_INFINITY; the old limit stands.
            tracing::debug!(error = %io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
    // rlim_t is u32 on some targets.
    #[allow(clippy::useless_conversion)]
    u64::from(limit.rlim_cur)
}

#[cfg(not(unix))]
pub(crate) fn raise_fd_limit() -> u64 {
    FALLBACK_FD_LIMIT
}

/// What the limit is taken to be when the system does not say.
const FALLBACK_FD_LIMIT: u64 = 1024;

/// A listener's connection count and its refusals.
pub(crate) struct ConnectionLimit {
    open: Arc<Semaphore>,
    lingering: Arc<Semaphore>,
}

/// Refusals that wait for the client's request before closing, at once.
/// Past this (a flood), the rest are closed right after the answer.
const LINGERING_REFUSALS: usize = 64;

/// How long a refusal waits for the client to finish sending and close.
const LINGER: Duration = Duration::from_secs(1);

/// The answer over the limit: the spec's error JSON, and the connection
/// closes.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
content-length: 76\r\n\
connection: close\r\n\
\r\n\
{\"errcode\":\"M_UNKNOWN\",\"error\":\"Too many open connections; try again later\"}";

impl ConnectionLimit {
    pub(crate) fn new(max_connections: usize) -> Self {
        Self {
            open: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
            lingering: Arc::new(Semaphore::new(LINGERING_REFUSALS)),
        }
    }

    /// The stream, counted until it closes; or `None` once it has been
    /// refused (over plain TCP with a 503; TLS clients are closed without
    /// an answer, which would cost a handshake).
    pub(crate) fn admit(&self, stream: TcpStream, answer_refusal: bool) -> Option<Counted> {
        match self.open.clone().try_acquire_owned() {
            Ok(permit) => Some(Counted { stream, _permit: permit }),
            Err(_) => {
                if answer_refusal {
                    self.refuse(stream);
                }
                None
            }
        }
    }

    fn refuse(&self, stream: TcpStream) {
        // A new connection's send buffer is empty: the answer fits.
        if stream.try_write(REFUSAL).is_err() {
            return;
        }
        if let Ok(permit) = self.lingering.clone().try_acquire_owned() {
            tokio::spawn(linger(stream, permit));
        }
    }
}

/// Closes a refused connection gracefully: our side first, then reading
/// (and dropping) the client's request until it closes too. Closing with
/// its request unread would send a reset, which can discard the 503 before
/// the client reads it.
async fn linger(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let drain = async {
        std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await?;
        let mut scratch = [0u8; 1024];
        loop {
            stream.readable().await?;
            match stream.try_read(&mut scratch) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    };
    let _: Result<io::Result<()>, _> = tokio::time::timeout(LINGER, drain).await;
}

/// A connection's socket and its place under the limit, given back when
/// the socket closes.
pub(crate) struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Counted {
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.stream
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Logs failed accepts at most once per [`AcceptErrors::EVERY`], with how
/// many were left out: out of descriptors, every accept fails, and a line
/// per failure would flood the log.
#[derive(Default)]
pub(crate) struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    const EVERY: Duration = Duration::from_secs(10);

    pub(crate) fn note(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self.last_logged.is_some_and(|last| now < last + Self::EVERY) {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(%error, unlogged_since_last = self.unlogged, "accept failed");
        self.last_logged = Some(now);
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_the_specs_error_json_with_its_length() {
        let text = std::str::from_utf8(REFUSAL).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["errcode"], "M_UNKNOWN");
        assert!(body["error"].is_string());
    }

    #[test]
    fn the_default_leaves_a_quarter_of_the_descriptors_and_is_shared_out() {
        assert_eq!(default_max_connections(1024, 1), 768);
        assert_eq!(default_max_connections(1024, 2), 384);
        assert_eq!(default_max_connections(1 << 20, 1), DEFAULT_CAP);
        assert_eq!(default_max_connections(2, 1), 1);
    }
}
