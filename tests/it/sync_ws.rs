//! The WebSocket sync channel (docs/websocket-sync.md).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer},
};

both_backends!(frames_are_pushed_and_resume_after_a_drop, errors_come_before_the_upgrade);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(client: &TestClient, query: &str, token_in_header: bool) -> Socket {
    let ws_base = client.base.replacen("http://", "ws://", 1);
    let token = client.token.clone().expect("logged in");
    let url = if token_in_header {
        format!("{ws_base}/_matrix/client/unstable/org.tessera.sync/ws?{query}")
    } else {
        format!("{ws_base}/_matrix/client/unstable/org.tessera.sync/ws?access_token={token}&{query}")
    };
    let mut request = url.into_client_request().expect("request");
    if token_in_header {
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().expect("header"));
    }
    tokio_tungstenite::connect_async(request).await.expect("upgrade").0
}

/// The next sync frame (pings are skipped), within a deadline.
async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame arrives")
            .expect("socket open")
            .expect("frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("a /sync body"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn bodies(frame: &Value, room: &str) -> Vec<String> {
    frame["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

async fn frames_are_pushed_and_resume_after_a_drop(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();

    // The first frame is the initial sync.
    let mut socket = connect(&bob, "", true).await;
    let first = next_frame(&mut socket).await;
    assert!(first["rooms"]["join"].get(&room).is_some());
    assert!(first["next_batch"].as_str().is_some_and(|t| !t.is_empty()));

    // New messages are pushed without the client asking.
    alice.send_text(&room, "pushed").await;
    let pushed = next_frame(&mut socket).await;
    assert_eq!(bodies(&pushed, &room), ["pushed"]);
    let since = pushed["next_batch"].as_str().expect("next_batch").to_owned();

    // Drop; a message arrives meanwhile; reconnect from the last token.
    socket.close(None).await.expect("close");
    drop(socket);
    alice.send_text(&room, "while away").await;
    let mut socket = connect(&bob, &format!("since={since}"), false).await;
    let resumed = next_frame(&mut socket).await;
    assert_eq!(bodies(&resumed, &room), ["while away"], "exactly what was missed, nothing twice");
    alice.send_text(&room, "after resume").await;
    assert_eq!(bodies(&next_frame(&mut socket).await, &room), ["after resume"]);
    socket.send(Message::Close(None)).await.expect("close");
}

async fn errors_come_before_the_upgrade(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let path = "/_matrix/client/unstable/org.tessera.sync/ws";
    server.client().get(path).await.assert_error(401, "M_MISSING_TOKEN");
    alice.get(&format!("{path}?since=garbage")).await.assert_error(400, "M_INVALID_PARAM");
    // A plain GET (no upgrade) is refused with JSON too.
    alice.get(path).await.assert_error(400, "M_INVALID_PARAM");
}
