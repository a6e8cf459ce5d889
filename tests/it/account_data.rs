//! Account data, room tags and the ignore list, directly and through sync.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    account_data_round_trips,
    tags_are_set_and_removed,
    changes_reach_sync,
    ignored_users_are_filtered
);

async fn account_data_round_trips(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let path = "/_matrix/client/v3/user/@alice:tessera.test/account_data";
    alice.get(&format!("{path}/org.example.settings")).await.assert_error(404, "M_NOT_FOUND");
    alice.put(&format!("{path}/org.example.settings"), json!({ "theme": "dark" })).await.ok();
    assert_eq!(alice.get(&format!("{path}/org.example.settings")).await.ok(), json!({ "theme": "dark" }));
    alice.put(&format!("{path}/org.example.settings"), json!({ "theme": "light" })).await.ok();
    assert_eq!(alice.get(&format!("{path}/org.example.settings")).await.ok()["theme"], "light");
    bob.get(&format!("{path}/org.example.settings")).await.assert_error(403, "M_FORBIDDEN");
    alice
        .put(&format!("{path}/m.fully_read"), json!({ "event_id": "$x" }))
        .await
        .assert_error(405, "M_BAD_JSON");

    let room = alice.create_room(json!({})).await;
    let room_path =
        format!("/_matrix/client/v3/user/@alice:tessera.test/rooms/{room}/account_data/org.example.pin");
    alice.put(&room_path, json!({ "pinned": true })).await.ok();
    assert_eq!(alice.get(&room_path).await.ok()["pinned"], true);
    alice.get(&format!("{path}/org.example.pin")).await.assert_error(404, "M_NOT_FOUND");
}

async fn tags_are_set_and_removed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let tags = format!("/_matrix/client/v3/user/@alice:tessera.test/rooms/{room}/tags");
    assert_eq!(alice.get(&tags).await.ok(), json!({ "tags": {} }));
    alice.put(&format!("{tags}/m.favourite"), json!({ "order": 0.25 })).await.ok();
    alice.put(&format!("{tags}/u.work"), json!({})).await.ok();
    let listed = alice.get(&tags).await.ok();
    assert_eq!(listed["tags"]["m.favourite"]["order"], 0.25);
    assert!(listed["tags"]["u.work"].is_object());
    alice.delete(&format!("{tags}/u.work"), json!({})).await.ok();
    assert!(alice.get(&tags).await.ok()["tags"].get("u.work").is_none());
}

async fn changes_reach_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    // A long-poll wakes on an account data change.
    let waiting = {
        let alice = alice.clone();
        let since = since.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (
                alice.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=20000")).await.ok(),
                started.elapsed(),
            )
        })
    };
    alice
        .put(
            "/_matrix/client/v3/user/@alice:tessera.test/account_data/m.direct",
            json!({ "@bob:tessera.test": [room] }),
        )
        .await
        .ok();
    let (body, waited) = waiting.await.expect("task");
    assert!(waited < Duration::from_secs(20));
    let global = body["account_data"]["events"].as_array().expect("account_data");
    assert!(
        global
            .iter()
            .any(|e| e["type"] == "m.direct" && e["content"]["@bob:tessera.test"][0] == room.as_str())
    );

    let since = body["next_batch"].as_str().expect("token").to_owned();
    alice
        .put(
            &format!("/_matrix/client/v3/user/@alice:tessera.test/rooms/{room}/tags/m.lowpriority"),
            json!({}),
        )
        .await
        .ok();
    let tagged = alice.sync(Some(&since), "").await;
    let room_data =
        tagged["rooms"]["join"][&room]["account_data"]["events"].as_array().expect("room account data");
    assert!(
        room_data.iter().any(|e| e["type"] == "m.tag" && e["content"]["tags"]["m.lowpriority"].is_object())
    );
    assert!(tagged["account_data"]["events"].as_array().is_none_or(|e| e.is_empty()), "only what changed");
}

async fn ignored_users_are_filtered(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    carol.join(&room).await.ok();
    alice
        .put(
            "/_matrix/client/v3/user/@alice:tessera.test/account_data/m.ignored_user_list",
            json!({ "ignored_users": { "@bob:tessera.test": {} } }),
        )
        .await
        .ok();
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    bob.send_text(&room, "from bob").await;
    carol.send_text(&room, "from carol").await;
    let body = alice.sync(Some(&since), "").await;
    let events = body["rooms"]["join"][&room]["timeline"]["events"].as_array().expect("timeline");
    let bodies: Vec<&str> = events.iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, ["from carol"]);

    // Nor do invites from ignored users show up.
    let bobs_room = bob.create_room(json!({ "invite": ["@alice:tessera.test"] })).await;
    let next = body["next_batch"].as_str().expect("token");
    let invites = alice.sync(Some(next), "").await;
    assert!(invites["rooms"]["invite"].get(&bobs_room).is_none());
}
