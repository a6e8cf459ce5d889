//! The listeners' accept loop and each connection's HTTP, for both the
//! client listener (plain TCP) and the federation listener (TLS).
//!
//! HTTP/1.1 and HTTP/2 are both served. Over TLS, ALPN picks. Over plain TCP
//! the connection's first bytes are peeked, not read: HTTP/2's preface
//! starts with `PRI`, which no HTTP/1 request does. hyper's HTTP/1 parser
//! then reads the request from its first byte into one 8 KiB buffer.
//! hyper-util's `auto` builder reads a 24-byte prefix and hands it back
//! instead, which grows that buffer to 16 KiB on every connection: that
//! was the biggest part of a waiting long-poll's memory.
//!
//! A client that sends half a request and stops is not waited for:
//! - the header read timeout bounds the TLS handshake, the first bytes,
//!   then hyper's read of each HTTP/1 request head (from the connection's
//!   opening or the previous response, so it also closes idle keep-alive
//!   connections); a request head can thus take up to twice the timeout
//!   from the connection's opening. HTTP/2 gets it for its preface
//!   ([`PrefaceDeadline`]), then hyper pings a peer silent that long and
//!   closes the connection if the ping is not answered in that time;
//! - bodies time out in `tessera_web::slow_body`, a layer on every request;
//! - past `max_connections`, new connections are refused
//!   (`connection_limit.rs`).
//!
//! On shutdown the loop stops accepting, asks every open connection to
//! finish its requests and close, and waits for them.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo, middleware::AddExtension};
use hyper::server::conn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tessera_web::slow_body::{BodyTimeouts, TimeBodies};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
    time::Sleep,
};
use tokio_rustls::TlsAcceptor;

use crate::connection_limit::{AcceptErrors, ConnectionLimit, Counted};

/// How a listener's connections arrive.
#[derive(Clone)]
pub(crate) enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

/// What a listener allows each connection (`[connections]` in the
/// configuration).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) body: BodyTimeouts,
    pub(crate) max_connections: usize,
}

/// Serves `router` on every connection `listener` accepts until `shutdown`,
/// then waits for the open connections to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    transport: Transport,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // Every connection holds a receiver: the sender says "finish", and
    // learns from its receivers' drop that all connections have.
    let (stop, _) = watch::channel(false);
    let http = Arc::new(Http::new(router, &limits));
    let limit = ConnectionLimit::new(limits.max_connections);
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_errors.note(&e);
                    // Out of descriptors or memory: give the open
                    // connections a moment to release some.
                    if !is_connection_error(&e) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(stream) = limit.admit(stream, matches!(transport, Transport::Plain)) else {
            tracing::debug!(%peer, "connection refused: too many open");
            continue;
        };
        tokio::spawn(connection(stream, peer, transport.clone(), http.clone(), stop.subscribe()));
    }
    let _ = stop.send(true);
    stop.closed().await;
}

/// How a listener serves its connections, built once and shared by them.
struct Http {
    router: Router,
    body: BodyTimeouts,
    http1: conn::http1::Builder,
    http2: conn::http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
}

impl Http {
    fn new(router: Router, limits: &Limits) -> Self {
        let mut http1 = conn::http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let mut http2 = conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            // A peer silent this long is pinged, and dropped if it does not
            // answer: HTTP/2 has no request-head timeout of its own.
            .keep_alive_interval(limits.header_read_timeout)
            .keep_alive_timeout(limits.header_read_timeout)
            // Extended CONNECT: WebSockets over HTTP/2 (RFC 8441).
            .enable_connect_protocol();
        Self { router, body: limits.body, http1, http2, header_read_timeout: limits.header_read_timeout }
    }

    /// The router as hyper calls it for one connection, with the peer's
    /// address as `ConnectInfo` and every request body timed. The layers
    /// wrap the router as a whole: `Router::layer` would wrap (and
    /// allocate) every route again.
    fn service_for(&self, peer: SocketAddr) -> ConnectionService {
        let peer_info = axum::Extension(ConnectInfo(peer));
        let router = tower::Layer::layer(&peer_info, self.router.clone());
        TowerToHyperService::new(tower::Layer::layer(&self.body, router))
    }
}

type ConnectionService = TowerToHyperService<TimeBodies<AddExtension<Router, ConnectInfo<SocketAddr>>>>;

/// One connection, from the TLS handshake (if any) to its close. The
/// common case, plain HTTP/1.1, runs inline; HTTP/2 and TLS, whose states
/// are several KiB, are boxed, so that every connection's task is not as
/// big as theirs.
///
/// This and [`until_stopped`] are plain functions that return an `async`
/// block, and [`serve_http1`] one that returns `until_stopped`'s, rather
/// than `async fn`s: an `async fn` keeps its arguments beside the locals it
/// moves them into (rust-lang/rust#62958), so the socket, the service and
/// hyper's connection state took their space two or three times over in
/// every connection's task (1,856 bytes, now 1,096).
#[allow(clippy::manual_async_fn, reason = "an async fn would keep its arguments twice")]
fn connection(
    stream: Counted,
    peer: SocketAddr,
    transport: Transport,
    http: Arc<Http>,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    async move {
        let served = match transport {
            Transport::Plain => {
                let opening = opens_with_http2_preface(stream.tcp(), http.header_read_timeout);
                let Some(http2) = unless_stopped(&mut stop, opening).await else {
                    return;
                };
                if http2 {
                    serve_http2(stream, &http, peer, stop).await
                } else {
                    serve_http1(stream, &http, peer, stop).await
                }
            }
            Transport::Tls(acceptor) => Box::pin(tls_connection(stream, peer, acceptor, &http, stop)).await,
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

async fn tls_connection(
    stream: Counted,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    http: &Http,
    mut stop: watch::Receiver<bool>,
) -> Result<(), hyper::Error> {
    let handshake = async {
        match tokio::time::timeout(http.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    };
    let Some(stream) = unless_stopped(&mut stop, handshake).await else { return Ok(()) };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_http2(stream, http, peer, stop).await
    } else {
        serve_http1(stream, http, peer, stop).await
    }
}

/// `opening`'s answer, or `None` once `stop` says to finish: a connection
/// that has not sent a request yet does not hold up shutdown.
async fn unless_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    opening: impl Future<Output = Option<T>>,
) -> Option<T> {
    tokio::select! {
        opened = opening => opened,
        _ = stop.wait_for(|stop| *stop) => None,
    }
}

/// Serves HTTP/1.1 (with upgrades, for WebSockets) on `io` until the peer
/// closes it or `stop` says to finish.
fn serve_http1<I>(
    io: I,
    http: &Http,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), hyper::Error>> + use<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http.http1.serve_connection(TokioIo::new(io), http.service_for(peer)).with_upgrades();
    until_stopped(connection, |c| Pin::new(c).graceful_shutdown(), stop)
}

/// Serves HTTP/2 on `io` until the peer closes it or `stop` says to
/// finish. Its state is boxed (see [`connection`]).
fn serve_http2<I>(
    io: I,
    http: &Http,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), hyper::Error>> + use<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(PrefaceDeadline::new(io, http.header_read_timeout));
    let connection = Box::pin(http.http2.serve_connection(io, http.service_for(peer)));
    until_stopped(connection, |c| c.as_mut().graceful_shutdown(), stop)
}

/// Runs `connection` to its end; once `stop` says so, asks it to finish
/// its in-flight requests and close. `connection` is polled where it lies
/// (hence `Unpin`), never moved into a second place in the future.
#[allow(clippy::manual_async_fn, reason = "an async fn would keep `connection` twice")]
fn until_stopped<C, E>(
    mut connection: C,
    finish: impl FnOnce(&mut C),
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), E>>
where
    C: Future<Output = Result<(), E>> + Unpin,
{
    async move {
        tokio::select! {
            result = &mut connection => return result,
            _ = stop.wait_for(|stop| *stop) => finish(&mut connection),
        }
        (&mut connection).await
    }
}

/// HTTP/2 with prior knowledge opens with this preface (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the connection opens with HTTP/2's preface, judged from its first
/// three bytes (`PRI`; no HTTP/1 method starts so). `None` if the peer
/// closes, fails or sends fewer than three bytes within `timeout`.
async fn opens_with_http2_preface(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    const DECIDES: usize = 3;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; DECIDES];
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await.ok()?.ok()?;
        match peeked {
            0 => return None,
            n if n >= DECIDES => return Some(first == HTTP2_PREFACE[..DECIDES]),
            // A peer trickling its first bytes: peek again shortly (peeking
            // at once would see the same bytes and spin).
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// An HTTP/2 connection's socket, which fails its reads once the deadline
/// has passed before the client's whole preface arrived: hyper's HTTP/2
/// handshake waits for it without a timeout, and its pings only start
/// after. The timer is dropped with the preface's last byte.
struct PrefaceDeadline<I> {
    io: I,
    deadline: Option<Pin<Box<Sleep>>>,
    preface_left: usize,
}

impl<I> PrefaceDeadline<I> {
    fn new(io: I, timeout: Duration) -> Self {
        Self { io, deadline: Some(Box::pin(tokio::time::sleep(timeout))), preface_left: HTTP2_PREFACE.len() }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = &mut this.deadline else { return read };
        match read {
            Poll::Ready(Ok(())) => {
                this.preface_left = this.preface_left.saturating_sub(buf.filled().len() - before);
                if this.preface_left == 0 {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP/2 preface not received in time",
            ))),
            other => other,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accept errors that concern one connection, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_http1_method_opens_like_the_http2_preface() {
        for method in ["GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "HEAD", "CONNECT", "TRACE"] {
            assert_ne!(&method.as_bytes()[..3.min(method.len())], &HTTP2_PREFACE[..3], "{method}");
        }
    }
}
