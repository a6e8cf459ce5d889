//! Delivery status (`org.tessera.delivered`, docs/delivery-status.md).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    senders_learn_what_each_member_received,
    senders_hear_only_of_their_own_events,
    deliveries_outlive_a_restart
);

fn delivered(sync: &Value, room: &str) -> Option<Value> {
    let events = sync["rooms"]["join"][room]["ephemeral"]["events"].as_array()?;
    events.iter().find(|e| e["type"] == "org.tessera.delivered").map(|e| e["content"].clone())
}

/// Syncs from `since` until a delivery update for `room` arrives (they
/// are recorded a moment after the acknowledging sync); returns it and the
/// next token.
async fn next_delivery(user: &crate::harness::TestClient, since: &str, room: &str) -> (Value, String) {
    let mut since = since.to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "no delivery update reached {:?}", user.user_id);
        let body = user.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=5000")).await.ok();
        since = body["next_batch"].as_str().expect("token").to_owned();
        if let Some(content) = delivered(&body, room) {
            return (content, since);
        }
    }
}

async fn senders_learn_what_each_member_received(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    carol.join(&room).await.ok();
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let hello = alice.send_text(&room, "did you get this?").await;

    // Alice waits; bob's device receives the message, then asks for more.
    let waiting = {
        let alice = alice.clone();
        let since = alice_since.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (
                alice.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=20000")).await.ok(),
                started.elapsed(),
            )
        })
    };
    let bob_first = bob.sync(None, "").await;
    assert!(
        bob_first["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .expect("timeline")
            .iter()
            .any(|e| e["event_id"] == hello.as_str())
    );
    let bob_token = bob_first["next_batch"].as_str().expect("token").to_owned();
    bob.sync(Some(&bob_token), "").await; // acknowledges what the first sync carried

    // The long-poll returns at once for the message itself; keep syncing
    // until bob's delivery shows up.
    let (first, _) = waiting.await.expect("task");
    let (content, since) = next_delivery(&alice, first["next_batch"].as_str().expect("token"), &room).await;
    assert_eq!(content["@bob:tessera.test"]["event_id"], hello.as_str());
    assert!(content["@bob:tessera.test"]["ts"].as_u64().is_some());
    assert!(content.get("@carol:tessera.test").is_none(), "carol has not synced");
    assert!(content.get("@alice:tessera.test").is_none(), "the viewer's own deliveries are not listed");

    // Carol's device receives it too: one small update, listing carol.
    let carol_token = carol.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    carol.sync(Some(&carol_token), "").await;
    let (content, _) = next_delivery(&alice, &since, &room).await;
    assert!(content.get("@bob:tessera.test").is_none(), "only what changed: bob's delivery was sent before");
    assert_eq!(content["@carol:tessera.test"]["event_id"], hello.as_str());
}

/// Syncs `user` from `since` until `event` is in the room's timeline, then
/// once more from there (acknowledging it); returns the last token.
async fn receive(user: &crate::harness::TestClient, since: &str, room: &str, event: &str) -> String {
    let mut since = since.to_owned();
    loop {
        let body = user.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=5000")).await.ok();
        since = body["next_batch"].as_str().expect("token").to_owned();
        let timeline = &body["rooms"]["join"][room]["timeline"]["events"];
        if timeline.as_array().is_some_and(|events| events.iter().any(|e| e["event_id"] == event)) {
            break;
        }
    }
    user.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0")).await.ok()["next_batch"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// A member's progress reaches the senders of what the member newly
/// received, and no one else: in a busy room each sync carries the ticks
/// of its own messages, not every member's progress.
async fn senders_hear_only_of_their_own_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    carol.join(&room).await.ok();
    let carol_since = carol.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let hello = alice.send_text(&room, "from alice").await;
    let carol_since = receive(&carol, &carol_since, &room, &hello).await;
    let (content, alice_since) = next_delivery(&alice, &alice_since, &room).await;
    assert_eq!(content["@carol:tessera.test"]["event_id"], hello.as_str());

    // Carol receives bob's message: bob hears of it, alice does not (none
    // of her events was in what carol newly received).
    let bob_since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let reply = bob.send_text(&room, "from bob").await;
    receive(&carol, &carol_since, &room, &reply).await;
    let (content, _) = next_delivery(&bob, &bob_since, &room).await;
    assert_eq!(content["@carol:tessera.test"]["event_id"], reply.as_str());
    let alice_sync = alice.get(&format!("/_matrix/client/v3/sync?since={alice_since}&timeout=0")).await.ok();
    let to_alice = delivered(&alice_sync, &room).unwrap_or_default();
    assert!(to_alice.get("@carol:tessera.test").is_none(), "carol passed none of alice's events: {to_alice}");

    // A fresh device of alice's sees every member's latest delivery.
    let initial = alice.sync(None, "").await;
    let all = delivered(&initial, &room).expect("deliveries in the initial sync");
    assert_eq!(all["@carol:tessera.test"]["event_id"], reply.as_str());
}

/// Notices are kept in memory; a sync from a token older than the server's
/// memory (here: from before a restart) gets the recorded deliveries.
async fn deliveries_outlive_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    carol.join(&room).await.ok();
    let carol_since = carol.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let hello = alice.send_text(&room, "before the restart").await;
    receive(&carol, &carol_since, &room, &hello).await;
    // Shutting down records the acknowledgements still pending.
    server.restart().await;
    alice.base = server.base.clone();
    let (content, _) = next_delivery(&alice, &alice_since, &room).await;
    assert_eq!(content["@carol:tessera.test"]["event_id"], hello.as_str());
}
