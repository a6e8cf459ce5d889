//! `POST /rooms/{roomId}/upgrade`.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(upgrading_replaces_the_room);

async fn upgrading_replaces_the_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let old = alice
        .create_room(json!({ "preset": "public_chat", "room_version": "10", "name": "Old", "topic": "t" }))
        .await;
    bob.join(&old).await.ok();
    let upgrade = format!("/_matrix/client/v3/rooms/{old}/upgrade");
    bob.post(&upgrade, json!({ "new_version": "12" })).await.assert_error(403, "M_FORBIDDEN");
    alice
        .post(&upgrade, json!({ "new_version": "999" }))
        .await
        .assert_error(400, "M_UNSUPPORTED_ROOM_VERSION");

    let upgraded = alice.post(&upgrade, json!({ "new_version": "12" })).await.ok();
    let new = upgraded["replacement_room"].as_str().expect("replacement_room");
    let state = |room: &str, kind: &str| format!("/_matrix/client/v3/rooms/{room}/state/{kind}");
    let tombstone = alice.get(&state(&old, "m.room.tombstone")).await.ok();
    assert_eq!(tombstone["replacement_room"], new);
    let create = alice.get(&state(new, "m.room.create")).await.ok();
    assert_eq!(create["room_version"], "12");
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    assert_eq!(alice.get(&state(new, "m.room.name")).await.ok()["name"], "Old");
    assert_eq!(alice.get(&state(new, "m.room.join_rules")).await.ok()["join_rule"], "public");
    // The old room falls quiet; the new one is open to bob.
    bob.put(
        &format!("/_matrix/client/v3/rooms/{old}/send/m.room.message/q"),
        json!({ "msgtype": "m.text", "body": "x" }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
    bob.join(new).await.ok();
    bob.send_text(new, "hello in the new room").await;
}
