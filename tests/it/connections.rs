//! The client listener's connections: HTTP/1.1, HTTP/2 with prior
//! knowledge, a client that sends its first bytes slowly, and a silent
//! connection at shutdown.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    http1_and_http2_prior_knowledge_are_both_served,
    a_request_trickling_in_is_answered,
    a_silent_connection_does_not_hold_up_shutdown
);

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
    // the ten seconds it would be given to send its first request.
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited {:?}", started.elapsed());
}
