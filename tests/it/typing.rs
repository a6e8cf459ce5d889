//! Typing notifications: in sync's `ephemeral`, expiring, never history.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer},
};

both_backends!(
    typing_reaches_members_and_expires,
    typing_errors,
    typing_after_a_restart_reaches_older_tokens
);

fn typing_users(sync: &Value, room: &str) -> Option<Vec<String>> {
    let events = sync["rooms"]["join"][room]["ephemeral"]["events"].as_array()?;
    let typing = events.iter().find(|e| e["type"] == "m.typing")?;
    Some(
        typing["content"]["user_ids"]
            .as_array()?
            .iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Long-polls until the room's typing list changes; returns it and the token.
async fn next_typing(client: &TestClient, since: &str, room: &str) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut since = since.to_owned();
    loop {
        assert!(Instant::now() < deadline, "no typing update arrived");
        let body = client.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=5000")).await.ok();
        since = body["next_batch"].as_str().expect("token").to_owned();
        if let Some(users) = typing_users(&body, room) {
            return (users, since);
        }
    }
}

async fn typing_reaches_members_and_expires(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/@alice:tessera.test");

    alice.put(&typing, json!({ "typing": true, "timeout": 30000 })).await.ok();
    let (users, since) = next_typing(&bob, &since, &room).await;
    assert_eq!(users, ["@alice:tessera.test"]);
    alice.put(&typing, json!({ "typing": false })).await.ok();
    let (users, since) = next_typing(&bob, &since, &room).await;
    assert!(users.is_empty());

    // The server ends a notice that is not renewed.
    alice.put(&typing, json!({ "typing": true, "timeout": 300 })).await.ok();
    let (users, since) = next_typing(&bob, &since, &room).await;
    assert_eq!(users, ["@alice:tessera.test"]);
    let (users, _) = next_typing(&bob, &since, &room).await;
    assert!(users.is_empty(), "the notice expired");

    // Never history.
    let messages = bob.all_messages(&room, 50).await;
    assert!(messages.iter().all(|e| e["type"] != "m.typing"));
}

async fn typing_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({})).await;
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/@bob:tessera.test"),
            json!({ "typing": true, "timeout": 1000 }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.put(
        &format!("/_matrix/client/v3/rooms/{room}/typing/@bob:tessera.test"),
        json!({ "typing": true, "timeout": 1000 }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
}

/// The typing serial lives in memory and starts again with the server: a
/// token's serial from before a restart must not hide this run's changes
/// once this run's serial has passed it.
async fn typing_after_a_restart_reaches_older_tokens(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "pw").await;
    let mut bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/@alice:tessera.test");
    for on in [true, false, true, false] {
        alice.put(&typing, json!({ "typing": on, "timeout": 30000 })).await.ok();
    }
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    server.restart().await;
    alice.base = server.base.clone();
    bob.base = server.base.clone();
    // One change, then renewals: this run's serial passes the old token's.
    for _ in 0..8 {
        alice.put(&typing, json!({ "typing": true, "timeout": 30000 })).await.ok();
    }
    let after = bob.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}")).await.ok();
    assert_eq!(typing_users(&after, &room), Some(vec!["@alice:tessera.test".to_owned()]), "{after}");
}
