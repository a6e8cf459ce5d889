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
//! On shutdown the loop stops accepting, asks every open connection to
//! finish its requests and close, and waits for them.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use axum::{Router, extract::ConnectInfo, middleware::AddExtension};
use hyper::server::conn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;

/// How a listener's connections arrive.
#[derive(Clone)]
pub(crate) enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

/// Serves `router` on every connection `listener` accepts until `shutdown`,
/// then waits for the open connections to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    transport: Transport,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    // Every connection holds a receiver: the sender says "finish", and
    // learns from its receivers' drop that all connections have.
    let (stop, _) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
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
        let service = service_for(&router, peer);
        tokio::spawn(connection(stream, peer, transport.clone(), service, stop.subscribe()));
    }
    let _ = stop.send(true);
    stop.closed().await;
}

/// The router as hyper calls it for one connection, with the peer's
/// address as `ConnectInfo`. The layer wraps the router as a whole:
/// `Router::layer` would wrap (and allocate) every route again.
fn service_for(router: &Router, peer: SocketAddr) -> ConnectionService {
    let peer_info = axum::Extension(ConnectInfo(peer));
    TowerToHyperService::new(tower::Layer::layer(&peer_info, router.clone()))
}

type ConnectionService = TowerToHyperService<AddExtension<Router, ConnectInfo<SocketAddr>>>;

/// One connection, from the TLS handshake (if any) to its close. The
/// common case, plain HTTP/1.1, runs inline; HTTP/2 and TLS, whose states
/// are several KiB, are boxed, so that every connection's task is not as
/// big as theirs.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    service: ConnectionService,
    mut stop: watch::Receiver<bool>,
) {
    let served = match transport {
        Transport::Plain => {
            let Some(http2) = unless_stopped(&mut stop, opens_with_http2_preface(&stream)).await else {
                return;
            };
            serve_http(TokioIo::new(stream), http2, service, stop).await
        }
        Transport::Tls(acceptor) => Box::pin(tls_connection(stream, peer, acceptor, service, stop)).await,
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    service: ConnectionService,
    mut stop: watch::Receiver<bool>,
) -> Result<(), hyper::Error> {
    let handshake = async {
        acceptor
            .accept(stream)
            .await
            .inspect_err(|e| tracing::debug!(%peer, error = %e, "TLS handshake failed"))
            .ok()
    };
    let Some(stream) = unless_stopped(&mut stop, handshake).await else { return Ok(()) };
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    serve_http(TokioIo::new(stream), http2, service, stop).await
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

/// Serves HTTP/1.1 (with upgrades, for WebSockets) or HTTP/2 on `io` until
/// the peer closes it or `stop` says to finish.
async fn serve_http<I>(
    io: I,
    http2: bool,
    service: ConnectionService,
    stop: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if http2 {
        let connection = {
            let mut builder = conn::http2::Builder::new(TokioExecutor::new());
            // Extended CONNECT: WebSockets over HTTP/2 (RFC 8441).
            builder.enable_connect_protocol();
            builder.serve_connection(io, service)
        };
        Box::pin(until_stopped(connection, |c| c.graceful_shutdown(), stop)).await
    } else {
        let connection = conn::http1::Builder::new().serve_connection(io, service).with_upgrades();
        until_stopped(connection, |c| c.graceful_shutdown(), stop).await
    }
}

/// Runs `connection` to its end; once `stop` says so, asks it to finish
/// its in-flight requests and close.
async fn until_stopped<C, E>(
    connection: C,
    finish: impl FnOnce(Pin<&mut C>),
    mut stop: watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        _ = stop.wait_for(|stop| *stop) => finish(connection.as_mut()),
    }
    connection.await
}

/// HTTP/2 with prior knowledge opens with this preface (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the connection opens with HTTP/2's preface, judged from its first
/// three bytes (`PRI`; no HTTP/1 method starts so). `None` if the peer
/// closes, fails or sends fewer than three bytes within ten seconds.
async fn opens_with_http2_preface(stream: &TcpStream) -> Option<bool> {
    const DECIDES: usize = 3;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
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
