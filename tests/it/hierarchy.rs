//! `GET /v1/rooms/{roomId}/hierarchy` for spaces.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    spaces_list_their_rooms,
    only_spaces_have_children_and_pages_go_depth_first,
    restricted_rooms_show_to_those_who_may_join,
);

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
    assert_eq!(names(&for_alice), ["Space", "Secret", "Lobby", "Sub", "Deep"], "depth first, by order");
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

/// Complement's `TestClientSpacesSummary` tree:
///
/// ```text
///        Root
///   ______|______
///   R1   SS1    R2 ── R5 (R2 is no space: not followed)
///         |
///        SS2
///       __|__
///       R3  R4 (bob's, world-readable)
/// ```
async fn only_spaces_have_children_and_pages_go_depth_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let space = |name: &str| json!({ "preset": "public_chat", "name": name, "creation_content": { "type": "m.space" } });
    let room = |name: &str| json!({ "preset": "public_chat", "name": name });
    let root = alice.create_room(space("Root")).await;
    let r1 = alice.create_room(room("R1")).await;
    let ss1 = alice.create_room(space("SS1")).await;
    let r2 = alice.create_room(room("R2")).await;
    let ss2 = alice.create_room(space("SS2")).await;
    let r3 = alice.create_room(room("R3")).await;
    let r4 = bob
        .create_room(json!({
            "preset": "public_chat",
            "name": "R4",
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "world_readable" },
            }],
        }))
        .await;
    let r5 = bob.create_room(room("R5")).await;
    let link = |parent: &str, child: &str, content: serde_json::Value| {
        let path = format!("/_matrix/client/v3/rooms/{parent}/state/m.space.child/{child}");
        let alice = &alice;
        async move { alice.put(&path, content).await.ok() }
    };
    let via = json!({ "via": ["tessera.test"] });
    link(&root, &r1, json!({ "via": ["tessera.test"], "suggested": true })).await;
    link(&root, &ss1, via.clone()).await;
    link(&root, &r2, json!({ "via": ["tessera.test"], "suggested": true })).await;
    link(&r2, &r5, via.clone()).await;
    link(&ss1, &ss2, via.clone()).await;
    link(&ss2, &r3, via.clone()).await;
    link(&ss2, &r4, via.clone()).await;

    let path = format!("/_matrix/client/v1/rooms/{root}/hierarchy");
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| r["room_id"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let whole = alice.get(&path).await.ok();
    assert_eq!(
        ids(&whole),
        [root.as_str(), r1.as_str(), ss1.as_str(), ss2.as_str(), r3.as_str(), r4.as_str(), r2.as_str()]
    );
    let r2_entry =
        whole["rooms"].as_array().expect("rooms").iter().find(|r| r["room_id"] == r2.as_str()).expect("R2");
    assert_eq!(r2_entry["children_state"], json!([]), "a room that is no space lists no children");
    let ss2_entry = &whole["rooms"][3];
    assert_eq!(ss2_entry["children_state"].as_array().expect("children").len(), 2);

    let first = alice.get(&format!("{path}?limit=4")).await.ok();
    assert_eq!(ids(&first), [root.as_str(), r1.as_str(), ss1.as_str(), ss2.as_str()]);
    let next = first["next_batch"].as_str().expect("next_batch");
    let rest = alice.get(&format!("{path}?limit=4&from={next}")).await.ok();
    assert_eq!(ids(&rest), [r3.as_str(), r4.as_str(), r2.as_str()]);
    assert!(rest.get("next_batch").is_none(), "{rest}");

    assert_eq!(
        ids(&alice.get(&format!("{path}?max_depth=1")).await.ok()),
        [root.as_str(), r1.as_str(), ss1.as_str(), r2.as_str()]
    );
    assert_eq!(
        ids(&alice.get(&format!("{path}?suggested_only=true")).await.ok()),
        [root.as_str(), r1.as_str(), r2.as_str()]
    );
}

/// Complement's `TestRestrictedRoomsSpacesSummaryLocal`: a room restricted
/// to the space's members shows in the space's hierarchy to them only.
async fn restricted_rooms_show_to_those_who_may_join(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let space = alice
        .create_room(json!({
            "preset": "public_chat",
            "name": "Space",
            "creation_content": { "type": "m.space" },
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "world_readable" },
            }],
        }))
        .await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "name": "Room",
            "room_version": "8",
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{ "type": "m.room_membership", "room_id": space, "via": ["tessera.test"] }],
                },
            }],
        }))
        .await;
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{room}"),
            json!({ "via": ["tessera.test"] }),
        )
        .await
        .ok();
    let path = format!("/_matrix/client/v1/rooms/{space}/hierarchy");
    let ids = |body: serde_json::Value| -> Vec<String> {
        body["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| r["room_id"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    assert_eq!(ids(bob.get(&path).await.ok()), [space.as_str()], "bob is in no room the rule admits");
    bob.join(&space).await.ok();
    assert_eq!(ids(bob.get(&path).await.ok()), [space.as_str(), room.as_str()]);
}
