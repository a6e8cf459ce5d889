//! Presence: shared with users who share a room, timing out, switchable off.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer},
};

both_backends!(presence_is_shared_with_room_members, presence_times_out, presence_can_be_switched_off);

fn presence_of(sync: &Value, user: &str) -> Option<Value> {
    sync["presence"]["events"].as_array()?.iter().find(|e| e["sender"] == user).map(|e| e["content"].clone())
}

async fn status(client: &TestClient, user: &str) -> Value {
    client.get(&format!("/_matrix/client/v3/presence/{user}/status")).await.ok()
}

async fn presence_is_shared_with_room_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let path = "/_matrix/client/v3/presence/@alice:tessera.test/status";
    alice.put(path, json!({ "presence": "online", "status_msg": "having tea" })).await.ok();
    let seen = status(&bob, "@alice:tessera.test").await;
    assert_eq!(
        (seen["presence"].as_str(), seen["status_msg"].as_str()),
        (Some("online"), Some("having tea"))
    );
    assert_eq!(seen["currently_active"], true);
    assert!(seen["last_active_ago"].as_u64().is_some());
    carol.get(path).await.assert_error(403, "M_FORBIDDEN");
    bob.put(path, json!({ "presence": "offline" })).await.assert_error(403, "M_FORBIDDEN");

    let initial = bob.sync(None, "").await;
    assert_eq!(presence_of(&initial, "@alice:tessera.test").expect("alice's presence")["presence"], "online");
    assert!(
        presence_of(&carol.sync(None, "").await, "@alice:tessera.test").is_none(),
        "no shared room, no presence"
    );
    let since = initial["next_batch"].as_str().expect("token").to_owned();
    alice.put(path, json!({ "presence": "unavailable" })).await.ok();
    let changed = bob.sync(Some(&since), "").await;
    assert_eq!(presence_of(&changed, "@alice:tessera.test").expect("the change")["presence"], "unavailable");
}

async fn presence_times_out(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.presence.idle_timeout_ms = 300;
        c.presence.offline_timeout_ms = 1_500;
    })
    .await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    alice.sync(None, "").await; // online, by syncing
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    let mut since = since;
    while !seen.contains(&"offline".to_owned()) {
        assert!(Instant::now() < deadline, "alice never timed out: {seen:?}");
        let body = bob
            .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=1000&set_presence=offline"))
            .await
            .ok();
        since = body["next_batch"].as_str().expect("token").to_owned();
        if let Some(content) = presence_of(&body, "@alice:tessera.test") {
            seen.push(content["presence"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("unavailable"), "idle first, then gone: {seen:?}");
    assert_eq!(status(&bob, "@alice:tessera.test").await["presence"], "offline");
}

async fn presence_can_be_switched_off(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.presence.enabled = false).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    alice
        .put("/_matrix/client/v3/presence/@alice:tessera.test/status", json!({ "presence": "online" }))
        .await
        .ok();
    assert_eq!(status(&bob, "@alice:tessera.test").await["presence"], "offline");
    assert!(presence_of(&bob.sync(None, "").await, "@alice:tessera.test").is_none());
}
