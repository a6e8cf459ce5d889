//! Rooms across servers: a user of server B joins a room of server A
//! (`make_join`/`send_join`), and the room's events then flow both ways
//! through each server's outbox and `PUT /send`, surviving a restart of the
//! receiving side.

use serde_json::{Value, json};

use crate::{
    both_backends,
    federation::two_servers,
    harness::{Backend, TestClient, encode},
};

both_backends!(
    a_remote_room_is_joined_and_messages_flow_both_ways,
    events_sent_while_a_server_is_down_arrive_after_it_restarts
);

/// Syncs from `since` until the room's timeline has an event that `want`
/// accepts; returns that event and the next token.
async fn sync_until(
    client: &TestClient,
    room_id: &str,
    since: Option<&str>,
    want: impl Fn(&Value) -> bool,
) -> (Value, String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut since = since.map(str::to_owned);
    loop {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=2000&since={since}"),
            None => "/_matrix/client/v3/sync".to_owned(),
        };
        let sync = client.get(&path).await.ok();
        let next = sync["next_batch"].as_str().expect("token").to_owned();
        let events =
            sync["rooms"]["join"][room_id]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        if let Some(event) = events.into_iter().find(|e| want(e)) {
            return (event, next);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the awaited event never arrived in {room_id}: {sync}"
        );
        since = Some(next);
    }
}

fn text(body: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e: &Value| e["type"] == "m.room.message" && e["content"]["body"] == body
}

async fn a_remote_room_is_joined_and_messages_flow_both_ways(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (alice_id, bob_id) = (alice.user_id.clone().expect("user"), bob.user_id.clone().expect("user"));
    let room_id = alice.create_room(json!({ "preset": "public_chat", "name": "Across" })).await;
    alice.send_text(&room_id, "before Bob").await;

    // Bob joins through Alice's server.
    let joined = bob
        .post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", encode(&room_id), encode(a.server_name())),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(joined["room_id"], room_id.as_str());

    // Bob's server holds the room's state: its name, Alice and Bob joined.
    let state = bob.get(&format!("/_matrix/client/v3/rooms/{}/state", encode(&room_id))).await.ok();
    let state = state.as_array().expect("state");
    let find =
        |kind: &str, key: &str| state.iter().find(|e| e["type"] == kind && e["state_key"] == key).cloned();
    assert_eq!(find("m.room.name", "").expect("name")["content"]["name"], "Across");
    assert_eq!(find("m.room.member", &alice_id).expect("alice")["content"]["membership"], "join");
    assert_eq!(find("m.room.member", &bob_id).expect("bob")["content"]["membership"], "join");

    // Alice's server took the join: Bob is a member there too.
    let members =
        alice.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&room_id))).await.ok();
    assert!(members["joined"][&bob_id].is_object(), "{members}");

    // A message from each side reaches the other's sync.
    let (_, bob_since) = sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.member").await;
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    alice.send_text(&room_id, "hello from A").await;
    let (event, bob_since) = sync_until(&bob, &room_id, Some(&bob_since), text("hello from A")).await;
    assert_eq!(event["sender"], alice_id.as_str());
    bob.send_text(&room_id, "hello from B").await;
    let (event, _) = sync_until(&alice, &room_id, Some(&alice_since), text("hello from B")).await;
    assert_eq!(event["sender"], bob_id.as_str());

    // State changes travel too.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(&room_id)),
            json!({ "topic": "t" }),
        )
        .await
        .ok();
    sync_until(&bob, &room_id, Some(&bob_since), |e| e["type"] == "m.room.topic").await;
    let topic =
        bob.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(&room_id))).await.ok();
    assert_eq!(topic["topic"], "t");
}

async fn events_sent_while_a_server_is_down_arrive_after_it_restarts(backend: Backend) {
    let (_ca, a, mut b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.post(
        &format!("/_matrix/client/v3/join/{}?server_name={}", encode(&room_id), encode(a.server_name())),
        json!({}),
    )
    .await
    .ok();
    let (_, since) = sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.member").await;

    b.stop().await.expect("B stops");
    for n in 0..3 {
        alice.send_text(&room_id, &format!("while away {n}")).await;
    }
    b.restart().await;
    let mut bob = bob.clone();
    bob.base = b.base.clone();
    sync_until(&bob, &room_id, Some(&since), text("while away 2")).await;
    let mut seen: Vec<String> = bob
        .all_messages(&encode(&room_id), 50)
        .await
        .iter()
        .filter_map(|m| m["content"]["body"].as_str())
        .filter(|b| b.starts_with("while away"))
        .map(str::to_owned)
        .collect();
    seen.sort();
    assert_eq!(seen, ["while away 0", "while away 1", "while away 2"], "each once, none lost");
}
