//! `POST /rooms/{roomId}/upgrade`.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer, encode},
};

both_backends!(
    upgrading_replaces_the_room,
    creators_keep_their_power_across_versions,
    upgrading_carries_local_members_room_push_rules,
);

fn state(room: &str, kind: &str) -> String {
    format!("/_matrix/client/v3/rooms/{room}/state/{kind}")
}

fn user(client: &TestClient) -> &str {
    client.user_id.as_deref().expect("registered")
}

/// Upgrades `room` as `who`; returns the replacement.
async fn upgrade(who: &TestClient, room: &str, body: Value) -> String {
    let upgraded = who.post(&format!("/_matrix/client/v3/rooms/{room}/upgrade"), body).await.ok();
    upgraded["replacement_room"].as_str().expect("replacement_room").to_owned()
}

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

/// Room version 12 gives creators implicit, unlimited power; earlier
/// versions only what `users` says. An upgrade either way keeps the
/// creators in charge of the new room (and able to upgrade it again).
async fn creators_keep_their_power_across_versions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let v12 =
        alice.create_room(json!({ "preset": "public_chat", "room_version": "12", "name": "Chain" })).await;
    bob.join(&v12).await.ok();
    let mut levels = alice.get(&state(&v12, "m.room.power_levels")).await.ok();
    levels["users"] = json!({ user(&bob): 50 });
    alice.put(&state(&v12, "m.room.power_levels"), levels).await.ok();

    // 12 → 11: alice's implicit power is written out, at the highest level
    // the room names (the tombstone's 150), so she can upgrade again.
    let v11 = upgrade(&alice, &v12, json!({ "new_version": "11" })).await;
    let levels = alice.get(&state(&v11, "m.room.power_levels")).await.ok();
    assert_eq!(levels["users"], json!({ user(&alice): 150, user(&bob): 50 }));
    assert_eq!(alice.get(&state(&v11, "m.room.guest_access")).await.ok()["guest_access"], "can_join");
    alice.put(&state(&v11, "m.room.name"), json!({ "name": "Chain 11" })).await.ok();

    // 11 → 12 with bob as an additional creator: both leave `users`.
    let v12b =
        upgrade(&alice, &v11, json!({ "new_version": "12", "additional_creators": [user(&bob)] })).await;
    let create = alice.get(&state(&v12b, "m.room.create")).await.ok();
    assert_eq!(create["additional_creators"], json!([user(&bob)]));
    assert_eq!(create["predecessor"]["room_id"], v11.as_str());
    assert_eq!(alice.get(&state(&v12b, "m.room.power_levels")).await.ok()["users"], json!({}));
    assert_eq!(alice.get(&state(&v12b, "m.room.name")).await.ok()["name"], "Chain 11");

    // 12 → 12 by the additional creator: the new room is his alone.
    bob.join(&v12b).await.ok();
    let v12c = upgrade(&bob, &v12b, json!({ "new_version": "12" })).await;
    let create = bob.get(&state(&v12c, "m.room.create")).await.ok();
    assert!(create.get("additional_creators").is_none(), "{create}");
    assert_eq!(bob.get(&state(&v12c, "m.room.power_levels")).await.ok()["users"], json!({}));
    bob.put(&state(&v12c, "m.room.topic"), json!({ "topic": "Bob's now" })).await.ok();

    // 10 → 12: the upgrader leaves `users`, the others stay.
    let v10 = alice.create_room(json!({ "preset": "public_chat", "room_version": "10" })).await;
    bob.join(&v10).await.ok();
    let mut levels = alice.get(&state(&v10, "m.room.power_levels")).await.ok();
    levels["users"][user(&bob)] = 50.into();
    alice.put(&state(&v10, "m.room.power_levels"), levels).await.ok();
    let from_v10 = upgrade(&alice, &v10, json!({ "new_version": "12" })).await;
    let levels = alice.get(&state(&from_v10, "m.room.power_levels")).await.ok();
    assert_eq!(levels["users"], json!({ user(&bob): 50 }));
}

/// A room's push rules (a muted room, here) follow it to its replacement
/// for every local member, whether `/upgrade` made it or the tombstone was
/// sent by hand after creating the new room.
async fn upgrading_carries_local_members_room_push_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let alice2 = server.register("alice2", "pw").await;
    let rule = |room: &str| format!("/_matrix/client/v3/pushrules/global/room/{}", encode(room));
    let old = alice.create_room(json!({ "preset": "public_chat", "room_version": "10" })).await;
    alice2.join(&old).await.ok();
    for member in [&alice, &alice2] {
        member.put(&rule(&old), json!({ "actions": ["dont_notify"] })).await.ok();
    }

    let new = upgrade(&alice, &old, json!({ "new_version": "11" })).await;
    for member in [&alice, &alice2] {
        let copied = member.get(&rule(&new)).await.ok();
        assert_eq!(copied["actions"], json!(["dont_notify"]), "{}", user(member));
        assert_eq!(
            member.get(&rule(&old)).await.ok()["actions"],
            json!(["dont_notify"]),
            "kept for the old room"
        );
    }

    alice2.join(&new).await.ok();
    let by_hand = alice
        .create_room(json!({
            "preset": "public_chat",
            "room_version": "11",
            "creation_content": { "predecessor": { "room_id": new } },
        }))
        .await;
    alice
        .put(&state(&new, "m.room.tombstone"), json!({ "body": "Moved", "replacement_room": by_hand }))
        .await
        .ok();
    for member in [&alice, &alice2] {
        let copied = member.get(&rule(&by_hand)).await.ok();
        assert_eq!(copied["actions"], json!(["dont_notify"]), "{}", user(member));
    }
    // The change reaches clients through sync's account data.
    let sync = alice2.sync(None, "").await;
    let rules = sync["account_data"]["events"]
        .as_array()
        .expect("account data")
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .expect("push rules in sync")
        .clone();
    let rooms: Vec<&str> = rules["content"]["global"]["room"]
        .as_array()
        .expect("room rules")
        .iter()
        .filter_map(|r| r["rule_id"].as_str())
        .collect();
    assert!(rooms.contains(&by_hand.as_str()) && rooms.contains(&old.as_str()), "{rooms:?}");
}
