//! Receipts and read markers, through sync.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(receipts_reach_members_and_private_ones_stay_private, read_markers_and_errors);

fn receipts(sync: &Value, room: &str) -> Value {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["type"] == "m.receipt"))
        .map(|e| e["content"].clone())
        .unwrap_or(Value::Null)
}

async fn receipts_reach_members_and_private_ones_stay_private(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let message = bob.send_text(&room, "read me").await;
    let bob_since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    let receipt = |kind: &str| format!("/_matrix/client/v3/rooms/{room}/receipt/{kind}/{message}");
    alice.post(&receipt("m.read"), json!({})).await.ok();
    alice.post(&receipt("m.read.private"), json!({ "thread_id": "main" })).await.ok();

    let seen_by_bob = receipts(&bob.sync(Some(&bob_since), "").await, &room);
    assert!(seen_by_bob[&message]["m.read"]["@alice:tessera.test"]["ts"].as_u64().is_some(), "{seen_by_bob}");
    assert!(seen_by_bob[&message].get("m.read.private").is_none(), "private receipts are private");
    let seen_by_alice = receipts(&alice.sync(Some(&alice_since), "").await, &room);
    assert_eq!(seen_by_alice[&message]["m.read.private"]["@alice:tessera.test"]["thread_id"], "main");

    // An initial sync carries the room's latest receipts too.
    let initial = receipts(&bob.sync(None, "").await, &room);
    assert!(initial[&message]["m.read"]["@alice:tessera.test"].is_object());

    // A threaded receipt for the same event does not hide the unthreaded
    // one (MSC4102): clients see the unthreaded receipt.
    alice.post(&receipt("m.read"), json!({ "thread_id": "main" })).await.ok();
    let initial = receipts(&bob.sync(None, "").await, &room);
    let shown = &initial[&message]["m.read"]["@alice:tessera.test"];
    assert!(shown.is_object() && shown.get("thread_id").is_none(), "{initial}");
}

async fn read_markers_and_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({})).await;
    let message = alice.send_text(&room, "marker").await;
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/read_markers"),
            json!({ "m.fully_read": message, "m.read": message }),
        )
        .await
        .ok();
    let marker = alice
        .get(&format!("/_matrix/client/v3/user/@alice:tessera.test/rooms/{room}/account_data/m.fully_read"))
        .await
        .ok();
    assert_eq!(marker["event_id"], message.as_str());
    let synced = alice.sync(None, "").await;
    assert!(receipts(&synced, &room)[&message]["m.read"]["@alice:tessera.test"].is_object());

    let path = |kind: &str, event: &str| format!("/_matrix/client/v3/rooms/{room}/receipt/{kind}/{event}");
    alice.post(&path("m.read", "$missing"), json!({})).await.assert_error(404, "M_NOT_FOUND");
    alice
        .post(&path("m.read", &message), json!({ "thread_id": "$nope" }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice.post(&path("org.example.seen", &message), json!({})).await.assert_error(400, "M_INVALID_PARAM");
    carol.post(&path("m.read", &message), json!({})).await.assert_error(403, "M_FORBIDDEN");
}
