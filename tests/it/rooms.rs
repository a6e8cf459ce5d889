//! Rooms: `createRoom` presets, membership, sending, state, history and
//! their errors, on both databases.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestServer, encode},
};

both_backends!(
    presets_shape_the_room,
    invite_join_and_chat,
    sends_are_idempotent_per_device_and_txn,
    permission_and_input_errors,
    history_visibility_is_enforced,
    leave_kick_ban_unban_forget,
    state_endpoints,
    members_and_joined_members,
    unreadable_rooms_and_events_answer_as_the_spec_says,
    joins_keep_the_content_sent_with_them,
    paging_covers_every_event_in_order,
    aliases_resolve_for_join,
    redactions_strip_content_and_need_permission,
    timeline_state_events_carry_prev_content,
    lazy_loaded_members_come_with_a_page_of_messages,
    create_room_topic_is_plain_and_rich,
);

fn bodies(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["content"]["body"].as_str()).collect()
}

async fn presets_shape_the_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;

    let private =
        alice.create_room(json!({ "preset": "private_chat", "name": "Secret", "topic": "shh" })).await;
    let state = |room: String, kind: &'static str| {
        let alice = &alice;
        async move { alice.get(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}")).await.ok() }
    };
    assert_eq!(state(private.clone(), "m.room.name").await["name"], "Secret");
    assert_eq!(state(private.clone(), "m.room.topic").await["topic"], "shh");
    assert_eq!(state(private.clone(), "m.room.join_rules").await["join_rule"], "invite");
    assert_eq!(state(private.clone(), "m.room.guest_access").await["guest_access"], "can_join");
    let create = state(private.clone(), "m.room.create").await;
    assert_eq!(create["room_version"], "12", "the default room version");
    bob.join(&private).await.assert_error(403, "M_FORBIDDEN");

    let public = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(state(public.clone(), "m.room.join_rules").await["join_rule"], "public");
    bob.join(&public).await.ok();

    let trusted =
        alice.create_room(json!({ "preset": "trusted_private_chat", "room_version": "11", "invite": ["@bob:tessera.test"] })).await;
    let pl = state(trusted.clone(), "m.room.power_levels").await;
    assert_eq!(pl["users"]["@bob:tessera.test"], 100);

    let joined = alice.get("/_matrix/client/v3/joined_rooms").await.ok();
    let joined: Vec<&str> =
        joined["joined_rooms"].as_array().expect("rooms").iter().filter_map(Value::as_str).collect();
    assert_eq!(joined.len(), 3);
    for room in [&private, &public, &trusted] {
        assert!(joined.contains(&room.as_str()));
    }
}

async fn invite_join_and_chat(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "invite": ["@bob:tessera.test"], "is_direct": true })).await;
    let invite = alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@bob:tessera.test"))
        .await
        .ok();
    assert_eq!(invite, json!({ "membership": "invite", "displayname": "bob", "is_direct": true }));

    bob.join(&room).await.ok();
    let hello = alice.send_text(&room, "hello bob").await;
    let hi = bob.send_text(&room, "hi alice").await;
    for client in [&alice, &bob] {
        let page = client.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=2")).await.ok();
        let chunk = page["chunk"].as_array().expect("chunk");
        assert_eq!(chunk[0]["event_id"], hi.as_str(), "newest first");
        assert_eq!(chunk[1]["event_id"], hello.as_str());
        assert_eq!(chunk[0]["sender"], "@bob:tessera.test");
        assert!(chunk[0]["unsigned"]["age"].as_u64().is_some());
    }
    // The sender's own device sees its transaction ID; others do not.
    let mine = bob.get(&format!("/_matrix/client/v3/rooms/{room}/event/{hi}")).await.ok();
    assert!(mine["unsigned"]["transaction_id"].is_string(), "{mine}");
    assert_eq!(mine["unsigned"]["membership"], "join", "the viewer's membership at the event");
    let theirs = alice.get(&format!("/_matrix/client/v3/rooms/{room}/event/{hi}")).await.ok();
    assert!(theirs["unsigned"].get("transaction_id").is_none());
    assert_eq!(theirs["content"]["body"], "hi alice");
}

async fn sends_are_idempotent_per_device_and_txn(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/retry-1");
    let body = json!({ "msgtype": "m.text", "body": "once" });
    let first = alice.put(&path, body.clone()).await.ok();
    let again = alice.put(&path, body.clone()).await.ok();
    assert_eq!(first["event_id"], again["event_id"]);
    // Another device with the same transaction ID is a different send.
    let mut laptop = server.client();
    laptop.login("alice", "pw").await.ok();
    let other = laptop.put(&path, body).await.ok();
    assert_ne!(first["event_id"], other["event_id"]);
    let events = alice.all_messages(&room, 50).await;
    assert_eq!(bodies(&events), ["once", "once"], "one timeline entry per device");

    // The same transaction ID in another room, or for another event type,
    // is another request: each makes its own event (and a retry of each
    // still answers its own).
    let second_room = alice.create_room(json!({})).await;
    let elsewhere = format!("/_matrix/client/v3/rooms/{second_room}/send/m.room.message/retry-1");
    let body = json!({ "msgtype": "m.text", "body": "elsewhere" });
    let there = alice.put(&elsewhere, body.clone()).await.ok();
    assert_ne!(there["event_id"], first["event_id"]);
    assert_eq!(alice.put(&elsewhere, body).await.ok()["event_id"], there["event_id"]);
    assert_eq!(bodies(&alice.all_messages(&second_room, 50).await), ["elsewhere"]);
    let custom = format!("/_matrix/client/v3/rooms/{room}/send/org.example.custom/retry-1");
    let custom_event = alice.put(&custom, json!({ "body": "custom" })).await.ok();
    assert_ne!(custom_event["event_id"], first["event_id"]);
    let events = alice.all_messages(&room, 50).await;
    assert_eq!(bodies(&events), ["once", "once", "custom"]);
    // A redaction's ID is scoped to its target: two redactions, one ID.
    let redact = |event: &Value| {
        let event = event["event_id"].as_str().unwrap().to_owned();
        format!("/_matrix/client/v3/rooms/{room}/redact/{event}/retry-1")
    };
    let first_redaction = alice.put(&redact(&first), json!({})).await.ok();
    let custom_redaction = alice.put(&redact(&custom_event), json!({})).await.ok();
    assert_ne!(first_redaction["event_id"], custom_redaction["event_id"]);
    assert_ne!(
        first_redaction["event_id"], first["event_id"],
        "a redaction is not the send it shares an ID with"
    );
    assert_eq!(alice.put(&redact(&first), json!({})).await.ok()["event_id"], first_redaction["event_id"]);
}

async fn permission_and_input_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "tea" })).await;

    // Not joined: no sending, no reading.
    let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1");
    bob.put(&send, json!({ "msgtype": "m.text", "body": "x" })).await.assert_error(403, "M_FORBIDDEN");
    bob.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Joined with power level 0: no renaming.
    bob.join(&room).await.ok();
    let rename = format!("/_matrix/client/v3/rooms/{room}/state/m.room.name");
    bob.put(&rename, json!({ "name": "mine" })).await.assert_error(403, "M_FORBIDDEN");
    alice.put(&rename, json!({ "name": 5 })).await.assert_error(400, "M_BAD_JSON");
    let bad_member = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/not-a-user");
    alice.put(&bad_member, json!({ "membership": "join" })).await.assert_error(400, "M_BAD_JSON");
    alice.put(&send, json!([1, 2])).await.assert_error(400, "M_BAD_JSON");
    let huge = json!({ "msgtype": "m.text", "body": "x".repeat(70_000) });
    let big_server = TestServer::start_with(backend, |c| c.max_request_bytes = 1 << 20).await;
    let carol = big_server.register("carol", "pw").await;
    let big_room = carol.create_room(json!({})).await;
    carol
        .put(&format!("/_matrix/client/v3/rooms/{big_room}/send/m.room.message/big"), huge)
        .await
        .assert_error(413, "M_TOO_LARGE");

    let unknown = "!nowhere:tessera.test";
    alice
        .put(&format!("/_matrix/client/v3/rooms/{unknown}/send/m.room.message/t2"), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice.join(unknown).await.assert_error(404, "M_NOT_FOUND");
    alice
        .post("/_matrix/client/v3/createRoom", json!({ "room_version": "999" }))
        .await
        .assert_error(400, "M_UNSUPPORTED_ROOM_VERSION");
    alice
        .post("/_matrix/client/v3/createRoom", json!({ "room_alias_name": "tea" }))
        .await
        .assert_error(400, "M_ROOM_IN_USE");
    alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/$missing"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from=garbage"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

async fn history_visibility_is_enforced(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    for (visibility, bob_sees_before) in [("joined", false), ("shared", true), ("invited", false)] {
        let room = alice
            .create_room(json!({
                "preset": "public_chat",
                "initial_state": [{ "type": "m.room.history_visibility", "content": { "history_visibility": visibility } }],
            }))
            .await;
        alice.send_text(&room, "before").await;
        bob.join(&room).await.ok();
        alice.send_text(&room, "after").await;
        let seen = bob.all_messages(&room, 10).await;
        let expected: &[&str] = if bob_sees_before { &["before", "after"] } else { &["after"] };
        assert_eq!(bodies(&seen), expected, "history_visibility {visibility}");
    }
}

async fn leave_kick_ban_unban_forget(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let rooms = |path: &str| format!("/_matrix/client/v3/rooms/{room}/{path}");
    bob.join(&room).await.ok();
    bob.send_text(&room, "bye").await;
    bob.post(&rooms("forget"), json!({})).await.assert_error(400, "M_UNKNOWN");
    bob.post(&rooms("leave"), json!({})).await.ok();
    bob.post(&rooms("leave"), json!({})).await.assert_error(403, "M_FORBIDDEN");
    bob.put(&rooms("send/m.room.message/x1"), json!({ "msgtype": "m.text", "body": "x" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A left user still reads history up to leaving.
    assert!(bodies(&bob.all_messages(&room, 10).await).contains(&"bye"));
    bob.post(&rooms("forget"), json!({})).await.ok();

    bob.join(&room).await.ok();
    alice.post(&rooms("kick"), json!({ "user_id": "@bob:tessera.test", "reason": "out" })).await.ok();
    let kicked = alice.get(&rooms("state/m.room.member/@bob:tessera.test")).await.ok();
    assert_eq!((kicked["membership"].as_str(), kicked["reason"].as_str()), (Some("leave"), Some("out")));
    // Someone already out (or never in) cannot be kicked: nothing is sent.
    alice
        .post(&rooms("kick"), json!({ "user_id": "@bob:tessera.test" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .post(&rooms("kick"), json!({ "user_id": "@nobody:tessera.test" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let still = alice.get(&rooms("state/m.room.member/@bob:tessera.test")).await.ok();
    assert_eq!(still["reason"], "out", "the first kick's event is still the latest");
    bob.join(&room).await.ok();
    bob.post(&rooms("kick"), json!({ "user_id": "@alice:tessera.test" }))
        .await
        .assert_error(403, "M_FORBIDDEN");

    alice.post(&rooms("ban"), json!({ "user_id": "@bob:tessera.test" })).await.ok();
    bob.join(&room).await.assert_error(403, "M_FORBIDDEN");
    alice.post(&rooms("unban"), json!({ "user_id": "@bob:tessera.test" })).await.ok();
    alice
        .post(&rooms("unban"), json!({ "user_id": "@bob:tessera.test" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.join(&room).await.ok();
    alice
        .post(&rooms("invite"), json!({ "user_id": "@nobody:tessera.test" }))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

async fn state_endpoints(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let state = |suffix: &str| format!("/_matrix/client/v3/rooms/{room}/state{suffix}");
    // The empty state key: with and without the trailing slash.
    let set = alice.put(&state("/m.room.topic/"), json!({ "topic": "one" })).await.ok();
    assert!(set["event_id"].as_str().expect("event_id").starts_with('$'));
    let two = alice.put(&state("/m.room.topic"), json!({ "topic": "two" })).await.ok();
    assert_eq!(alice.get(&state("/m.room.topic/")).await.ok()["topic"], "two");
    // The same state again is the same event: nothing new in the room.
    let events_before = alice.all_messages(&room, 100).await.len();
    let again = alice.put(&state("/m.room.topic"), json!({ "topic": "two" })).await.ok();
    assert_eq!(again["event_id"], two["event_id"]);
    assert_eq!(alice.all_messages(&room, 100).await.len(), events_before);
    let event = alice.get(&state("/m.room.topic?format=event")).await.ok();
    assert_eq!((event["type"].as_str(), event["state_key"].as_str()), (Some("m.room.topic"), Some("")));
    alice.put(&state("/org.example.custom/key"), json!({ "anything": [1] })).await.ok();
    assert_eq!(alice.get(&state("/org.example.custom/key")).await.ok()["anything"], json!([1]));
    alice.get(&state("/m.room.avatar")).await.assert_error(404, "M_NOT_FOUND");

    let all = alice.get(&state("")).await.ok();
    let all = all.as_array().expect("state list");
    let topics: Vec<&Value> = all.iter().filter(|e| e["type"] == "m.room.topic").collect();
    assert_eq!(topics.len(), 1, "current state holds one event per key");
    assert_eq!(topics[0]["content"]["topic"], "two");
    assert!(all.iter().any(|e| e["type"] == "m.room.create"));
}

async fn members_and_joined_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "invite": ["@carol:tessera.test"] })).await;
    bob.join(&room).await.ok();
    let members = alice.get(&format!("/_matrix/client/v3/rooms/{room}/members")).await.ok();
    assert_eq!(members["chunk"].as_array().expect("chunk").len(), 3);
    let joined_only =
        alice.get(&format!("/_matrix/client/v3/rooms/{room}/members?membership=join")).await.ok();
    let joined_ids: Vec<&str> = joined_only["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert_eq!(joined_ids, ["@alice:tessera.test", "@bob:tessera.test"]);
    let not_joined =
        alice.get(&format!("/_matrix/client/v3/rooms/{room}/members?not_membership=join")).await.ok();
    assert_eq!(not_joined["chunk"][0]["content"]["membership"], "invite");

    let joined = bob.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members")).await.ok();
    assert_eq!(joined["joined"]["@alice:tessera.test"]["display_name"], "alice");
    assert_eq!(joined["joined"].as_object().expect("joined").len(), 2);
    // An unset avatar is null, not left out.
    let alice_entry = joined["joined"]["@alice:tessera.test"].as_object().expect("alice").clone();
    assert_eq!(alice_entry.get("avatar_url"), Some(&Value::Null));

    // After leaving, the member list is closed (history is not).
    bob.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({})).await.ok();
    bob.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b")).await.ok();
}

async fn paging_covers_every_event_in_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let sent: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..45 {
            ids.push(alice.send_text(&room, &format!("m{i}")).await);
        }
        ids
    };
    let forward = alice.all_messages(&room, 7).await;
    let messages: Vec<&str> = forward
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(messages, sent.iter().map(String::as_str).collect::<Vec<_>>());

    // Backwards from the end, with a type filter, in pages of 10.
    let filter = encode(r#"{"types":["m.room.message"]}"#)
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
        .replace('[', "%5B")
        .replace(']', "%5D");
    let mut from = String::new();
    let mut backwards = Vec::new();
    loop {
        let page = alice
            .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10&filter={filter}{from}"))
            .await
            .ok();
        backwards.extend(
            page["chunk"]
                .as_array()
                .expect("chunk")
                .iter()
                .map(|e| e["event_id"].as_str().expect("id").to_owned()),
        );
        match page["end"].as_str() {
            Some(end) => from = format!("&from={end}"),
            None => break,
        }
    }
    backwards.reverse();
    assert_eq!(backwards, sent);
}

async fn aliases_resolve_for_join(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "lobby" })).await;
    let canonical =
        alice.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias")).await.ok();
    assert_eq!(canonical["alias"], "#lobby:tessera.test");
    let joined = bob.join("#lobby:tessera.test").await.ok();
    assert_eq!(joined["room_id"], room.as_str());
    bob.join("#nope:tessera.test").await.assert_error(404, "M_NOT_FOUND");
    // matrix-nio joins with no body at all.
    let carol = server.register("carol", "pw").await;
    let joined =
        carol.post_raw(&format!("/_matrix/client/v3/join/{}", encode("#lobby:tessera.test")), "").await;
    assert_eq!(
        (joined.status, joined.body["room_id"].as_str()),
        (200, Some(room.as_str())),
        "{}",
        joined.body
    );
}

async fn redactions_strip_content_and_need_permission(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let from_alice = alice.send_text(&room, "secret").await;
    let from_bob = bob.send_text(&room, "oops").await;
    let redact = |event: &str, txn: &str| format!("/_matrix/client/v3/rooms/{room}/redact/{event}/{txn}");

    bob.put(&redact(&from_alice, "r1"), json!({})).await.assert_error(403, "M_FORBIDDEN");
    let first = bob.put(&redact(&from_bob, "r2"), json!({ "reason": "typo" })).await.ok();
    let again = bob.put(&redact(&from_bob, "r2"), json!({ "reason": "typo" })).await.ok();
    assert_eq!(first["event_id"], again["event_id"], "redactions are idempotent per transaction");
    // The room's creator moderates.
    alice.put(&redact(&from_bob, "r3"), json!({})).await.ok();
    // An event the server does not hold (another server's, not arrived):
    // a moderator's redaction stands, waiting for it; others may not.
    alice.put(&redact("$nothing", "r4"), json!({})).await.ok();
    bob.put(&redact("$nothing", "r5"), json!({})).await.assert_error(403, "M_FORBIDDEN");

    let served = alice.get(&format!("/_matrix/client/v3/rooms/{room}/event/{from_bob}")).await.ok();
    assert_eq!(served["content"], json!({}), "redacted content is gone");
    assert_eq!(served["unsigned"]["redacted_because"]["event_id"], first["event_id"]);
    assert_eq!(served["unsigned"]["redacted_because"]["content"]["reason"], "typo");
    let timeline = bob.all_messages(&room, 10).await;
    let redaction =
        timeline.iter().find(|e| e["type"] == "m.room.redaction").expect("redaction in the timeline");
    assert_eq!(redaction["redacts"], from_bob.as_str(), "clients read the top-level redacts");
    let original = timeline.iter().find(|e| e["event_id"] == from_bob.as_str()).expect("original stays");
    assert!(original["content"].get("body").is_none());
}

async fn timeline_state_events_carry_prev_content(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({ "name": "First" })).await;
    alice
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"), json!({ "name": "Second" }))
        .await
        .ok();
    let page = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1")).await.ok();
    let rename = &page["chunk"][0];
    assert_eq!(rename["content"]["name"], "Second");
    assert_eq!(rename["unsigned"]["prev_content"]["name"], "First");
    assert_eq!(rename["unsigned"]["prev_sender"], "@alice:tessera.test");
}

async fn lazy_loaded_members_come_with_a_page_of_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    carol.join(&room).await.ok();
    bob.send_text(&room, "from bob").await;
    alice.send_text(&room, "from alice").await;
    bob.send_text(&room, "bob again").await;

    // The last three events: two senders, each member event once; carol
    // sent nothing on this page.
    let filter = "%7B%22lazy_load_members%22%3Atrue%7D";
    let page = alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3&filter={filter}"))
        .await
        .ok();
    assert_eq!(page["chunk"].as_array().map(Vec::len), Some(3));
    let mut members: Vec<&str> = page["state"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["@alice:tessera.test", "@bob:tessera.test"]);

    // Without lazy loading, no member state comes with the page.
    let plain = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3")).await.ok();
    assert!(plain["state"].as_array().is_none_or(Vec::is_empty), "{plain}");
}

/// `createRoom`'s `topic` is written both ways (Matrix 1.15): the plain
/// `topic` and the `m.topic` text block; an `initial_state` topic is taken
/// as the client wrote it.
async fn create_room_topic_is_plain_and_rich(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let topic = |room: String| {
        let alice = &alice;
        async move { alice.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic")).await.ok() }
    };
    let room = alice.create_room(json!({ "preset": "public_chat", "topic": "Test Room" })).await;
    let content = topic(room).await;
    assert_eq!(content["topic"], "Test Room");
    let text = content["m.topic"]["m.text"].as_array().expect("m.topic's m.text");
    assert_eq!(text.len(), 1);
    assert_eq!(text[0]["body"], "Test Room");
    assert!(text[0].get("mimetype").is_none_or(|m| m == "text/plain"), "{text:?}");

    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.topic", "state_key": "", "content": { "topic": "Test Room" } }],
        }))
        .await;
    let content = topic(room).await;
    assert_eq!(content, json!({ "topic": "Test Room" }));
}

/// The status codes clients and Complement rely on: an event the user may
/// not see is 404 (like one that does not exist), history of an unknown
/// room is 403 (like one the user is not in), a forgotten room's history
/// is closed, and `/messages` without `dir` pages forwards.
async fn unreadable_rooms_and_events_answer_as_the_spec_says(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let event = alice.send_text(&room, "hello").await;
    bob.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event}")).await.assert_error(404, "M_NOT_FOUND");
    alice
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b", encode("!does-not-exist:tessera.test")))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // No `dir`: forwards from the start.
    let page = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages")).await.ok();
    assert_eq!(page["chunk"][0]["type"], "m.room.create", "{page}");

    bob.join(&room).await.ok();
    alice.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({})).await.ok();
    alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages")).await.ok();
    alice.post(&format!("/_matrix/client/v3/rooms/{room}/forget"), json!({})).await.ok();
    alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages")).await.assert_error(403, "M_FORBIDDEN");
    alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{event}"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

/// `/join` keeps what the client sent in the member event (custom keys, a
/// reason), under both paths; the membership is the server's.
async fn joins_keep_the_content_sent_with_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "custom" })).await;
    bob.post(&format!("/_matrix/client/v3/join/{room}"), json!({ "foo": "bar", "membership": "leave" }))
        .await
        .ok();
    carol
        .post(
            &format!("/_matrix/client/v3/join/{}", encode("#custom:tessera.test")),
            json!({ "foo": "baz", "reason": "hi" }),
        )
        .await
        .ok();
    let member = |user: &'static str| {
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}");
        let alice = &alice;
        async move { alice.get(&path).await }
    };
    let bobs = member("@bob:tessera.test").await.ok();
    assert_eq!((bobs["membership"].as_str(), bobs["foo"].as_str()), (Some("join"), Some("bar")));
    assert_eq!(bobs["displayname"], "bob", "the profile is still filled in");
    let carols = member("@carol:tessera.test").await.ok();
    assert_eq!((carols["foo"].as_str(), carols["reason"].as_str()), (Some("baz"), Some("hi")));
}
