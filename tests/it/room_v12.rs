//! Room version 12 as clients meet it: privileged creators (MSC4289),
//! room IDs that are the create event's hash (MSC4291), and the create
//! event in invite state (MSC4311). A client's mistake about creators is
//! 400 `M_BAD_JSON`, never 403: the request is malformed, not unauthorised.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer},
};

both_backends!(
    creators_in_power_levels_are_bad_json,
    malformed_additional_creators_are_bad_json,
    trusted_invitees_join_the_named_additional_creators,
    a_second_create_event_is_bad_json,
    invite_state_carries_the_whole_create_event,
);

fn state_path(room: &str, kind: &str) -> String {
    format!("/_matrix/client/v3/rooms/{room}/state/{kind}")
}

fn user(client: &TestClient) -> &str {
    client.user_id.as_deref().expect("registered")
}

async fn creators_in_power_levels_are_bad_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "room_version": "12", "preset": "public_chat" })).await;
    let levels = alice.get(&state_path(&room, "m.room.power_levels")).await.ok();
    assert_eq!(levels["users"], json!({}), "the creator's power is implicit");

    alice
        .put(&state_path(&room, "m.room.power_levels"), json!({ "users": { user(&alice): 100 } }))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({
                "room_version": "12",
                "power_level_content_override": { "users": { user(&alice): 100 } },
            }),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
    // Others may be listed, in the override as in a later change.
    let other = alice
        .create_room(json!({
            "room_version": "12",
            "invite": [user(&bob)],
            "power_level_content_override": { "users": { user(&bob): 100 } },
        }))
        .await;
    let levels = alice.get(&state_path(&other, "m.room.power_levels")).await.ok();
    assert_eq!(levels["users"], json!({ user(&bob): 100 }));

    // An additional creator is a creator too.
    let shared = alice
        .create_room(json!({
            "room_version": "12",
            "preset": "public_chat",
            "creation_content": { "additional_creators": [user(&bob)] },
        }))
        .await;
    bob.join(&shared).await.ok();
    alice
        .put(&state_path(&shared, "m.room.power_levels"), json!({ "users": { user(&bob): 100 } }))
        .await
        .assert_error(400, "M_BAD_JSON");
    bob.put(&state_path(&shared, "m.room.name"), json!({ "name": "Bob's" })).await.ok();
}

async fn malformed_additional_creators_are_bad_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    for additional in [
        json!("not-an-array"),
        json!(["@foo:example.com", 42]),
        json!(["@foo:example.com", "not-a-user-id"]),
        json!(["@invalid:dom$ain$.com"]),
    ] {
        let refused = alice
            .post(
                "/_matrix/client/v3/createRoom",
                json!({
                    "room_version": "12",
                    "preset": "public_chat",
                    "creation_content": { "additional_creators": additional },
                }),
            )
            .await;
        refused.assert_error(400, "M_BAD_JSON");
    }
    // No half-made room is left behind by a refused request.
    let joined = alice.get("/_matrix/client/v3/joined_rooms").await.ok();
    assert_eq!(joined["joined_rooms"], json!([]));

    let room = alice
        .create_room(json!({
            "room_version": "12",
            "preset": "public_chat",
            "creation_content": { "additional_creators": ["@foo:example.com", "@bar:baz.code"] },
        }))
        .await;
    let create = alice.get(&state_path(&room, "m.room.create")).await.ok();
    assert_eq!(create["additional_creators"], json!(["@foo:example.com", "@bar:baz.code"]));
}

async fn trusted_invitees_join_the_named_additional_creators(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let charlie = server.register("charlie", "pw").await;
    let room = alice
        .create_room(json!({
            "room_version": "12",
            "preset": "trusted_private_chat",
            "is_direct": true,
            "invite": [user(&bob)],
            "creation_content": { "additional_creators": [user(&charlie)] },
        }))
        .await;
    let create = alice.get(&state_path(&room, "m.room.create")).await.ok();
    let mut creators: Vec<&str> =
        create["additional_creators"].as_array().expect("a list").iter().filter_map(Value::as_str).collect();
    creators.sort_unstable();
    assert_eq!(creators, [user(&bob), user(&charlie)]);
    let levels = alice.get(&state_path(&room, "m.room.power_levels")).await.ok();
    assert_eq!(levels["users"], json!({}), "creators are not listed");
}

async fn a_second_create_event_is_bad_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    for version in ["11", "12"] {
        let room = alice.create_room(json!({ "room_version": version })).await;
        alice
            .put(&state_path(&room, "m.room.create"), json!({ "room_version": version, "entropy": 100 }))
            .await
            .assert_error(400, "M_BAD_JSON");
    }
}

async fn invite_state_carries_the_whole_create_event(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "room_version": "12", "preset": "public_chat" })).await;
    alice
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), json!({ "user_id": user(&bob) }))
        .await
        .ok();
    let sync = bob.sync(None, "").await;
    let events = sync["rooms"]["invite"][&room]["invite_state"]["events"].as_array().expect("invite_state");
    let create = events.iter().find(|e| e["type"] == "m.room.create").expect("the create event is there");
    assert!(create["origin_server_ts"].is_i64(), "{create}");
    assert!(create["hashes"]["sha256"].is_string(), "the event as signed: {create}");
    assert_eq!(create["content"]["room_version"], "12");
    // Other stripped state stays stripped.
    let join_rules = events.iter().find(|e| e["type"] == "m.room.join_rules").expect("join rules");
    assert!(join_rules.get("origin_server_ts").is_none(), "{join_rules}");
}
