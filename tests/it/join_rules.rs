//! Who may join: guest access and restricted join rules.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    guests_join_only_where_guest_access_allows,
    restricted_rooms_admit_members_of_allowed_rooms,
    knocking_asks_and_an_invite_answers,
    world_readable_rooms_are_readable_by_anyone
);

async fn guests_join_only_where_guest_access_allows(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.allow_guests = true).await;
    let alice = server.register("alice", "pw").await;
    let open = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.guest_access", "content": { "guest_access": "can_join" } }],
        }))
        .await;
    let closed = alice.create_room(json!({ "preset": "public_chat" })).await;
    let registered = server.client().post("/_matrix/client/v3/register?kind=guest", json!({})).await.ok();
    let mut guest = server.client();
    guest.token = registered["access_token"].as_str().map(str::to_owned);
    guest.join(&open).await.ok();
    guest.join(&closed).await.assert_error(403, "M_FORBIDDEN");
}

async fn restricted_rooms_admit_members_of_allowed_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let space = alice.create_room(json!({ "preset": "public_chat" })).await;
    let restricted = alice
        .create_room(json!({
            "room_version": "10",
            "initial_state": [{ "type": "m.room.join_rules", "content": {
                "join_rule": "restricted",
                "allow": [{ "type": "m.room_membership", "room_id": space }],
            } }],
        }))
        .await;
    carol.join(&restricted).await.assert_error(403, "M_FORBIDDEN");
    bob.join(&space).await.ok();
    bob.join(&restricted).await.ok();
    let member = bob
        .get(&format!("/_matrix/client/v3/rooms/{restricted}/state/m.room.member/@bob:tessera.test"))
        .await
        .ok();
    assert_eq!(member["membership"], "join");
    assert_eq!(member["join_authorised_via_users_server"], "@alice:tessera.test");

    // A join -> join with a meaningless authoriser (a new display name) is
    // accepted; the bad value is ignored.
    let own = format!("/_matrix/client/v3/rooms/{restricted}/state/m.room.member/@bob:tessera.test");
    bob.put(
        &own,
        json!({ "membership": "join", "displayname": "Bobby", "join_authorised_via_users_server": "unused" }),
    )
    .await
    .ok();
    let member = bob.get(&own).await.ok();
    assert_eq!(member["displayname"], "Bobby");
    assert!(member.get("join_authorised_via_users_server").is_none(), "{member}");

    // Mangled `allow` entries are accepted as sent, and admit nobody.
    bob.post(&format!("/_matrix/client/v3/rooms/{restricted}/leave"), json!({})).await.ok();
    let rules = format!("/_matrix/client/v3/rooms/{restricted}/state/m.room.join_rules");
    alice.put(&rules, json!({ "join_rule": "restricted", "allow": ["invalid"] })).await.ok();
    assert_eq!(alice.get(&rules).await.ok()["allow"], json!(["invalid"]));
    bob.join(&restricted).await.assert_error(403, "M_FORBIDDEN");
    alice.put(&rules, json!({ "join_rule": "restricted", "allow": "invalid" })).await.ok();
    assert_eq!(alice.get(&rules).await.ok()["allow"], "invalid");
    bob.join(&restricted).await.assert_error(403, "M_FORBIDDEN");
}

async fn knocking_asks_and_an_invite_answers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice
        .create_room(json!({ "initial_state": [{ "type": "m.room.join_rules", "content": { "join_rule": "knock" } }] }))
        .await;
    carol.join(&room).await.assert_error(403, "M_FORBIDDEN");
    let since = carol.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let knocked =
        carol.post(&format!("/_matrix/client/v3/knock/{room}"), json!({ "reason": "let me in" })).await.ok();
    assert_eq!(knocked["room_id"], room.as_str());
    let member = alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@carol:tessera.test"))
        .await
        .ok();
    assert_eq!(
        (member["membership"].as_str(), member["reason"].as_str()),
        (Some("knock"), Some("let me in"))
    );
    // Carol's sync shows the knock with the room's stripped state.
    let sync = carol.sync(Some(&since), "").await;
    let knock_state =
        sync["rooms"]["knock"][&room]["knock_state"]["events"].as_array().expect("knocked room");
    let join_rule = knock_state.iter().find(|e| e["type"] == "m.room.join_rules").expect("join rules");
    assert_eq!(join_rule["content"]["join_rule"], "knock");
    let own = knock_state
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@carol:tessera.test")
        .expect("own knock");
    assert_eq!(own["content"]["membership"], "knock");
    assert_eq!(knock_state.iter().filter(|e| e["type"] == "m.room.member").count(), 1);
    let since = sync["next_batch"].as_str().expect("token").to_owned();
    alice
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), json!({ "user_id": "@carol:tessera.test" }))
        .await
        .ok();
    // The answer moves the room from knock to invite.
    let sync = carol.sync(Some(&since), "").await;
    assert!(sync["rooms"]["invite"][&room].is_object());
    assert!(sync["rooms"]["knock"].get(&room).is_none());
    carol.join(&room).await.ok();
}

async fn world_readable_rooms_are_readable_by_anyone(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let dave = server.register("dave", "pw").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.history_visibility", "content": { "history_visibility": "world_readable" } }],
        }))
        .await;
    alice.send_text(&room, "for everyone").await;
    // Dave never joined, yet may read.
    let seen = dave.all_messages(&room, 10).await;
    assert!(seen.iter().any(|e| e["content"]["body"] == "for everyone"));
    dave.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // ...but not send.
    dave.put(
        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/w"),
        json!({ "msgtype": "m.text", "body": "x" }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
}
