//! `GET /v1/rooms/{roomId}/hierarchy` for spaces.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(spaces_list_their_rooms);

async fn spaces_list_their_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let space = alice
        .create_room(
            json!({ "preset": "public_chat", "name": "Space", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let lobby = alice.create_room(json!({ "preset": "public_chat", "name": "Lobby" })).await;
    let secret = alice.create_room(json!({ "preset": "private_chat", "name": "Secret" })).await;
    let sub = alice
        .create_room(
            json!({ "preset": "public_chat", "name": "Sub", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let deep = alice.create_room(json!({ "preset": "public_chat", "name": "Deep" })).await;
    let child = |parent: &str, child: &str, content: serde_json::Value| {
        let path = format!("/_matrix/client/v3/rooms/{parent}/state/m.space.child/{child}");
        let alice = &alice;
        async move { alice.put(&path, content).await.ok() }
    };
    child(&space, &lobby, json!({ "via": ["tessera.test"], "order": "b", "suggested": true })).await;
    child(&space, &secret, json!({ "via": ["tessera.test"], "order": "a" })).await;
    child(&space, &sub, json!({ "via": ["tessera.test"], "order": "c" })).await;
    child(&sub, &deep, json!({ "via": ["tessera.test"] })).await;
    // A child without `via` has been removed.
    child(&space, "!gone:tessera.test", json!({})).await;

    let names = |body: &serde_json::Value| -> Vec<String> {
        body["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let path = format!("/_matrix/client/v1/rooms/{space}/hierarchy");
    let for_alice = alice.get(&path).await.ok();
    assert_eq!(names(&for_alice), ["Space", "Secret", "Lobby", "Sub", "Deep"], "breadth first, by order");
    assert_eq!(for_alice["rooms"][0]["room_type"], "m.space");
    assert_eq!(for_alice["rooms"][0]["children_state"].as_array().expect("children").len(), 3);
    assert_eq!(for_alice["rooms"][2]["num_joined_members"], 1);

    // Bob is in none of them: the private room is hidden from him.
    let for_bob = bob.get(&path).await.ok();
    assert_eq!(names(&for_bob), ["Space", "Lobby", "Sub", "Deep"]);
    assert_eq!(names(&bob.get(&format!("{path}?max_depth=1")).await.ok()), ["Space", "Lobby", "Sub"]);
    assert_eq!(names(&bob.get(&format!("{path}?suggested_only=true")).await.ok()), ["Space", "Lobby"]);

    let first = bob.get(&format!("{path}?limit=2")).await.ok();
    assert_eq!(names(&first), ["Space", "Lobby"]);
    let next = first["next_batch"].as_str().expect("next_batch");
    let rest = bob.get(&format!("{path}?limit=2&from={next}")).await.ok();
    assert_eq!(names(&rest), ["Sub", "Deep"]);
    bob.get(&format!("/_matrix/client/v1/rooms/{secret}/hierarchy")).await.assert_error(403, "M_FORBIDDEN");
}
