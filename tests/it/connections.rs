//! The client listener's connections: HTTP/1.1, HTTP/2 with prior
//! knowledge, a client that sends its first bytes slowly, a silent
//! connection at shutdown, and slow clients: half-sent heads and stalled
//! or trickling bodies are cut at their timeouts, and past
//! `max_connections` new connections are refused until some close.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    http1_and_http2_prior_knowledge_are_both_served,
    a_request_trickling_in_is_answered,
    a_silent_connection_does_not_hold_up_shutdown,
    half_sent_request_heads_are_closed_after_the_header_timeout,
    a_stalled_or_trickling_body_is_cut_after_the_body_timeout,
    past_max_connections_new_ones_are_refused_until_some_close,
    a_websocket_keeps_its_place_under_the_connection_limit
);

/// Long enough for any of these scenarios' waits to end; not a speed check.
const DEADLINE: Duration = Duration::from_secs(20);

const VERSIONS: &[u8] = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: tessera.test\r\n\r\n";

async fn http1_and_http2_prior_knowledge_are_both_served(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let token = alice.token.clone().expect("token");
    let whoami = format!("{}/_matrix/client/v3/account/whoami", server.base);
    for (client, version) in [
        (reqwest::Client::builder().http1_only().build(), reqwest::Version::HTTP_11),
        (reqwest::Client::builder().http2_prior_knowledge().build(), reqwest::Version::HTTP_2),
    ] {
        let client = client.expect("client");
        let response = client.get(&whoami).bearer_auth(&token).send().await.expect("whoami");
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body["user_id"], "@alice:tessera.test", "{version:?}");
        // And without a token, the spec's error, on either version.
        let response = client.get(&whoami).send().await.expect("whoami");
        assert_eq!((response.version(), response.status().as_u16()), (version, 401));
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body["errcode"], "M_MISSING_TOKEN");
    }
}

async fn a_request_trickling_in_is_answered(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut tcp = TcpStream::connect(server.base.trim_start_matches("http://")).await.expect("connect");
    // One byte, then the rest: the listener cannot tell HTTP/1 from
    // HTTP/2 by the first byte alone.
    tcp.write_all(b"G").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    tcp.write_all(b"ET /_matrix/client/versions HTTP/1.1\r\nHost: tessera.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"versions\""), "{response}");
}

async fn a_silent_connection_does_not_hold_up_shutdown(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let _silent = TcpStream::connect(server.base.trim_start_matches("http://")).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    server.stop().await.expect("clean stop");
    // A connection that never sent a byte is given up at once, not after
    // the header read timeout it would be given to send its first request.
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited {:?}", started.elapsed());
}

async fn half_sent_request_heads_are_closed_after_the_header_timeout(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| config.connections.header_read_timeout_ms = 300).await;
    let addr = server.base.trim_start_matches("http://");
    // Nothing at all; half a request line; a request line and half the
    // headers; half of HTTP/2's preface.
    let openings: [&[u8]; 4] = [
        b"",
        b"GET /_matrix/client/vers",
        b"GET /_matrix/client/versions HTTP/1.1\r\nHost: tess",
        b"PRI * HTTP/2.0\r\n",
    ];
    for opening in openings {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(opening).await.expect("write");
        // Closed without an HTTP answer (HTTP/2 sends its settings first).
        let answer = String::from_utf8_lossy(&read_until_closed(&mut tcp).await).into_owned();
        assert!(!answer.contains("HTTP/1.1"), "{:?}: answered {answer}", String::from_utf8_lossy(opening));
    }
    // A keep-alive connection idle after its answer is closed too.
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(VERSIONS).await.expect("write");
    let (status, _) = read_response(&mut tcp).await.expect("an answer");
    assert_eq!(status, 200);
    assert!(read_until_closed(&mut tcp).await.is_empty());
    // And a whole request is still answered.
    assert_eq!(server.client().get("/_matrix/client/versions").await.status, 200);
}

async fn a_stalled_or_trickling_body_is_cut_after_the_body_timeout(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.connections.body_read_timeout_ms = 300;
        config.connections.body_min_bytes_per_second = 1000;
    })
    .await;
    let addr = server.base.trim_start_matches("http://");
    let head = b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: tessera.test\r\n\
        Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";

    // 100 of the 1,000 bytes announced, then nothing.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled.write_all(head).await.expect("write");
    stalled.write_all(&[b' '; 100]).await.expect("write");
    assert_cut(read_until_closed(&mut stalled).await);

    // A byte every 50 ms: never idle for 300 ms, but 20 B/s.
    let mut trickling = TcpStream::connect(addr).await.expect("connect");
    trickling.write_all(head).await.expect("write");
    let (mut reader, mut writer) = trickling.split();
    let trickle = async {
        for _ in 0..1000 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let read = async {
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        answer
    };
    tokio::pin!(read);
    let answer = tokio::select! {
        answer = &mut read => answer,
        () = trickle => tokio::time::timeout(DEADLINE, read).await.expect("the server closes"),
    };
    assert_cut(answer);
}

/// A body cut by its timeout: answered 408 `M_UNKNOWN` (it was a 413
/// before the extractor told a timeout from a body over the size limit),
/// then the connection is closed.
#[track_caller]
fn assert_cut(answer: Vec<u8>) {
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("M_UNKNOWN"), "{answer}");
}

async fn past_max_connections_new_ones_are_refused_until_some_close(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.connections.max_connections = Some(3)).await;
    let addr = server.base.trim_start_matches("http://");
    // Three keep-alive connections, each answered, so each is counted. One
    // may be refused while the harness's start-up check is still closing.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(admitted(addr).await);
    }
    // The fourth is answered at once, and closed.
    let refused = tokio::time::timeout(DEADLINE, async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.write_all(VERSIONS).await;
        let answer = read_response(&mut tcp).await.expect("a refusal");
        (answer, read_until_closed(&mut tcp).await)
    });
    let ((status, body), rest) = refused.await.expect("refused promptly");
    assert_eq!((status, body["errcode"].as_str()), (503, Some("M_UNKNOWN")), "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(rest.is_empty());
    // The held ones still work.
    held[0].write_all(VERSIONS).await.expect("write");
    assert_eq!(read_response(&mut held[0]).await.expect("an answer").0, 200);
    // Once one closes, a new client gets in.
    held.truncate(2);
    admitted(addr).await;
}

async fn a_websocket_keeps_its_place_under_the_connection_limit(backend: Backend) {
    // Registered before the limit: registration's own connections could
    // otherwise still hold the one place when the test starts.
    let mut server = TestServer::start(backend).await;
    let token = server.register("alice", "secret-pw").await.token.expect("token");
    server.config.connections.max_connections = Some(1);
    server.restart().await;
    let addr = server.base.trim_start_matches("http://");
    // The only place, once the registration's connection has closed: the
    // upgraded socket leaves hyper's connection task, but not the count.
    let url = format!("ws://{addr}/_matrix/client/unstable/org.tessera.sync/ws?access_token={token}");
    let started = tokio::time::Instant::now();
    let mut socket = loop {
        match tokio_tungstenite::connect_async(url.as_str().into_client_request().expect("request")).await {
            Ok((socket, _)) => break socket,
            Err(e) => assert!(started.elapsed() < DEADLINE, "never admitted: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.write_all(VERSIONS).await;
    assert_eq!(read_response(&mut tcp).await.expect("a refusal").0, 503);
    socket.send(Message::Close(None)).await.expect("close");
    drop(socket);
    admitted(addr).await;
}

/// A connection the server has taken under its limit, proven by a 200 on
/// it. Retries on a refusal until `DEADLINE`, while earlier connections
/// finish closing.
async fn admitted(addr: &str) -> TcpStream {
    let started = tokio::time::Instant::now();
    loop {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(VERSIONS).await.expect("write");
        match read_response(&mut tcp).await {
            Some((200, _)) => return tcp,
            answer => assert!(started.elapsed() < DEADLINE, "never admitted: {answer:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything the server sends until it closes the connection (a reset
/// counts as closing), within `DEADLINE`.
async fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "still open after {DEADLINE:?}; read {answer:?}");
    answer
}

/// One HTTP/1.1 response's status and JSON body (by `Content-Length`), or
/// `None` if the connection closes first.
async fn read_response(tcp: &mut TcpStream) -> Option<(u16, Value)> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned)
                    })
                    .map_or(0, |n| n.trim().parse::<usize>().expect("length"));
                if received.len() >= end + 4 + length {
                    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
                    let body =
                        serde_json::from_slice(&received[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                    return Some((status, body));
                }
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.expect("an answer or a close within the deadline")
}
