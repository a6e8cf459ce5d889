//! `/sync`: initial and incremental, long-poll, gaps, memberships, filters.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestServer, encode},
};

both_backends!(
    initial_then_incremental,
    long_poll_wakes_on_a_send,
    gaps_are_limited_with_prev_batch,
    invites_joins_and_leaves,
    filters_are_stored_and_applied,
    filters_select_ephemeral_account_data_and_presence,
    bad_tokens_are_rejected,
    lazy_loaded_members,
    lazy_loaded_members_reach_each_device_once,
    nothing_is_lost_across_a_restart,
    shutdown_does_not_wait_for_long_polls,
    positions_continue_above_every_stream_after_a_restart,
    positions_dropped_before_a_restart_are_not_reused,
    state_after_runs_to_the_timeline_end,
    event_fields_trim_events,
    timelines_always_say_whether_they_are_limited,
    a_room_joined_since_the_token_comes_as_in_an_initial_sync,
    new_room_companions_bring_their_presence,
    a_zero_timeline_limit_sends_no_events,
);

fn timeline<'a>(sync: &'a Value, room: &str) -> &'a Vec<Value> {
    sync["rooms"]["join"][room]["timeline"]["events"].as_array().expect("timeline")
}

fn bodies(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["content"]["body"].as_str()).collect()
}

async fn initial_then_incremental(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({ "name": "Tea" })).await;
    let sent = alice.send_text(&room, "hello").await;

    let initial = alice.sync(None, "").await;
    let next = initial["next_batch"].as_str().expect("next_batch").to_owned();
    let events = timeline(&initial, &room);
    assert_eq!(events.last().expect("event")["event_id"], sent.as_str());
    assert!(events.iter().all(|e| e.get("room_id").is_none()), "sync events carry no room_id");
    // Absent when empty (here everything fits in the timeline).
    let state = initial["rooms"]["join"][&room]["state"]["events"].as_array().cloned().unwrap_or_default();
    let in_timeline: Vec<&Value> = events.iter().filter(|e| e.get("state_key").is_some()).collect();
    // State before the timeline plus state in it covers the room's state.
    let mut types: Vec<&str> = state.iter().chain(in_timeline).filter_map(|e| e["type"].as_str()).collect();
    types.sort_unstable();
    types.dedup();
    for needed in ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"] {
        assert!(types.contains(&needed), "{needed} missing from initial sync");
    }
    assert_eq!(initial["rooms"]["join"][&room]["summary"]["m.joined_member_count"], 1);

    // Nothing new: an empty answer (timeout 0) with the same position.
    let quiet = alice.sync(Some(&next), "").await;
    assert!(quiet["rooms"]["join"].as_object().is_none_or(|j| j.is_empty()), "{quiet}");
    let second = alice.send_text(&room, "again").await;
    let incremental = alice.sync(Some(&next), "").await;
    let events = timeline(&incremental, &room);
    assert_eq!(events.len(), 1, "only what is new");
    assert_eq!(events[0]["event_id"], second.as_str());
    assert!(
        events[0]["unsigned"]["transaction_id"].is_string(),
        "the sender's device sees its transaction ID"
    );
    assert!(!incremental["rooms"]["join"][&room]["timeline"]["limited"].as_bool().unwrap_or(false));
    assert!(
        incremental["rooms"]["join"][&room]
            .get("summary")
            .is_none_or(|s| s.as_object().is_some_and(|s| s.is_empty())),
        "no membership changed: the summary is left out"
    );
}

async fn long_poll_wakes_on_a_send(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    let waiting = {
        let bob = bob.clone();
        let since = since.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let body = bob.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=20000")).await.ok();
            (body, started.elapsed())
        })
    };
    // A request about someone else's room does not wake bob.
    let other = alice.create_room(json!({})).await;
    alice.send_text(&other, "not for bob").await;
    let sent = alice.send_text(&room, "wake up").await;
    let (body, waited) = waiting.await.expect("sync task");
    assert!(waited < Duration::from_secs(20), "the long-poll returned on the send, not the timeout");
    let events = timeline(&body, &room);
    assert_eq!(events.last().expect("event")["event_id"], sent.as_str());
    assert!(body["rooms"]["join"].get(&other).is_none());
}

async fn gaps_are_limited_with_prev_batch(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let mut sent = Vec::new();
    for i in 0..15 {
        sent.push(alice.send_text(&room, &format!("m{i}")).await);
    }
    let filter = encode(r#"{"room":{"timeline":{"limit":5}}}"#)
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22");
    let body = alice.sync(Some(&since), &format!("&filter={filter}")).await;
    let section = &body["rooms"]["join"][&room];
    assert_eq!(section["timeline"]["limited"], true);
    let events = timeline(&body, &room);
    assert_eq!(bodies(events), ["m10", "m11", "m12", "m13", "m14"]);
    // /messages from prev_batch fills the gap back to where the client was.
    let prev = section["timeline"]["prev_batch"].as_str().expect("prev_batch");
    let older =
        alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10&from={prev}")).await.ok();
    let mut gap = bodies(older["chunk"].as_array().expect("chunk"));
    gap.reverse();
    assert_eq!(gap, ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"]);
}

async fn invites_joins_and_leaves(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let room = alice.create_room(json!({ "name": "Party", "invite": ["@bob:tessera.test"] })).await;

    let invited = bob.sync(Some(&since), "").await;
    let invite_state =
        invited["rooms"]["invite"][&room]["invite_state"]["events"].as_array().expect("invite");
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Party"));
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == "@bob:tessera.test"
        && e["content"]["membership"] == "invite"));
    let since = invited["next_batch"].as_str().expect("token").to_owned();

    bob.join(&room).await.ok();
    let joined = bob.sync(Some(&since), "").await;
    let section = &joined["rooms"]["join"][&room];
    // A newly joined room comes as in an initial sync: its newest events
    // (here all of them, the create event too) and the state before them.
    let state = section["state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(
        state.iter().chain(timeline(&joined, &room).iter()).any(|e| e["type"] == "m.room.create"),
        "a newly joined room comes with its full state"
    );
    assert_eq!(section["timeline"]["limited"], false, "all of its history fits");
    assert!(timeline(&joined, &room).iter().any(|e| e["state_key"] == "@bob:tessera.test"));
    let since = joined["next_batch"].as_str().expect("token").to_owned();

    bob.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({})).await.ok();
    alice.send_text(&room, "after bob left").await;
    let left = bob.sync(Some(&since), "").await;
    let leave = left["rooms"]["leave"][&room]["timeline"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("left room: {left}"));
    let last = leave.last().expect("leave event");
    assert_eq!(
        (last["type"].as_str(), last["content"]["membership"].as_str()),
        (Some("m.room.member"), Some("leave"))
    );
    assert!(!bodies(leave).contains(&"after bob left"), "nothing after the leave");
    assert!(left["rooms"]["join"].get(&room).is_none());
}

async fn filters_are_stored_and_applied(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let path = "/_matrix/client/v3/user/@alice:tessera.test/filter";
    let definition = json!({ "room": { "timeline": { "limit": 2, "not_types": ["m.room.member"] } } });
    let created = alice.post(path, definition.clone()).await.ok();
    let id = created["filter_id"].as_str().expect("filter_id");
    assert_eq!(alice.post(path, definition).await.ok()["filter_id"], id, "the same filter, the same ID");
    let stored = alice.get(&format!("{path}/{id}")).await.ok();
    assert_eq!(stored["room"]["timeline"]["limit"], 2);
    alice.get(&format!("{path}/nope")).await.assert_error(404, "M_NOT_FOUND");
    bob.get(&format!("{path}/{id}")).await.assert_error(403, "M_FORBIDDEN");

    let room = alice.create_room(json!({})).await;
    for i in 0..3 {
        alice.send_text(&room, &format!("m{i}")).await;
    }
    let body = alice.sync(None, &format!("&filter={id}")).await;
    let events = timeline(&body, &room);
    assert_eq!(bodies(events), ["m1", "m2"]);
    // Named again (the server remembers it now), the filter still applies.
    alice.send_text(&room, "m3").await;
    let body = alice.sync(None, &format!("&filter={id}")).await;
    assert_eq!(bodies(timeline(&body, &room)), ["m2", "m3"]);
    // Bob's ID for the same definition would be the same, but he never
    // stored it: alice's filter is not his.
    bob.get(&format!("/_matrix/client/v3/sync?filter={id}")).await.assert_error(404, "M_NOT_FOUND");
}

/// The types of the events in a section (`{"events": [...]}`), sorted.
fn section_types(section: &Value) -> Vec<String> {
    let events = section["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut types: Vec<String> =
        events.iter().filter_map(|e| e["type"].as_str().map(str::to_owned)).collect();
    types.sort();
    types
}

async fn filters_select_ephemeral_account_data_and_presence(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    let message = bob.send_text(&room, "hi").await;
    bob.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{message}"), json!({})).await.ok();
    bob.put(
        &format!("/_matrix/client/v3/rooms/{room}/typing/@bob:tessera.test"),
        json!({ "typing": true, "timeout": 30000 }),
    )
    .await
    .ok();
    bob.put("/_matrix/client/v3/presence/@bob:tessera.test/status", json!({ "presence": "online" }))
        .await
        .ok();
    let user = "/_matrix/client/v3/user/@alice:tessera.test";
    alice.put(&format!("{user}/account_data/org.example.global"), json!({ "a": 1 })).await.ok();
    for kind in ["org.example.kept", "org.example.dropped"] {
        alice.put(&format!("{user}/rooms/{room}/account_data/{kind}"), json!({ "b": 2 })).await.ok();
    }

    let everything = alice.sync(Some(&since), "").await;
    let joined = &everything["rooms"]["join"][&room];
    let ephemeral = section_types(&joined["ephemeral"]);
    assert!(ephemeral.contains(&"m.typing".to_owned()) && ephemeral.contains(&"m.receipt".to_owned()));
    assert_eq!(section_types(&joined["account_data"]), ["org.example.dropped", "org.example.kept"]);
    assert!(section_types(&everything["account_data"]).contains(&"org.example.global".to_owned()));
    assert!(section_types(&everything["presence"]).contains(&"m.presence".to_owned()));

    let filter = encode(
        &json!({
            "room": {
                "ephemeral": { "not_types": ["m.typing", "org.tessera.*"] },
                "account_data": { "types": ["org.example.k*"] },
            },
            "account_data": { "not_types": ["*"] },
            "presence": { "senders": ["@carol:tessera.test"] },
        })
        .to_string(),
    );
    let filtered = alice.sync(Some(&since), &format!("&filter={filter}")).await;
    let joined = &filtered["rooms"]["join"][&room];
    assert_eq!(section_types(&joined["ephemeral"]), ["m.receipt"]);
    assert_eq!(section_types(&joined["account_data"]), ["org.example.kept"]);
    assert_eq!(section_types(&filtered["account_data"]), Vec::<String>::new());
    assert_eq!(section_types(&filtered["presence"]), Vec::<String>::new());
    assert_eq!(bodies(timeline(&filtered, &room)), ["hi"], "the timeline is not affected");

    // Leaving out every change a room has leaves the room out, even for a
    // lazy-loading client (no member events come without a timeline).
    let nothing = encode(
        r#"{"room":{"timeline":{"not_types":["*"]},"ephemeral":{"not_types":["*"]},"state":{"lazy_load_members":true}}}"#,
    );
    let since = everything["next_batch"].as_str().expect("token").to_owned();
    bob.put(&format!("/_matrix/client/v3/rooms/{room}/typing/@bob:tessera.test"), json!({ "typing": false }))
        .await
        .ok();
    bob.send_text(&room, "unseen").await;
    let quiet = alice.sync(Some(&since), &format!("&filter={nothing}")).await;
    assert!(quiet["rooms"]["join"].get(&room).is_none(), "{quiet}");
    let seen = alice.sync(Some(&since), "").await;
    assert_eq!(bodies(timeline(&seen, &room)), ["unseen"], "without the filter the room is there");
}

async fn bad_tokens_are_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    alice.get("/_matrix/client/v3/sync?since=garbage").await.assert_error(400, "M_INVALID_PARAM");
    alice.get("/_matrix/client/v3/sync?since=s999999999").await.assert_error(400, "M_INVALID_PARAM");
    server.client().get("/_matrix/client/v3/sync").await.assert_error(401, "M_MISSING_TOKEN");
}

async fn lazy_loaded_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    carol.join(&room).await.ok();
    for i in 0..5 {
        bob.send_text(&room, &format!("b{i}")).await;
    }
    let filter = r#"{"room":{"timeline":{"limit":3},"state":{"lazy_load_members":true}}}"#;
    let filter = filter
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
        .replace(':', "%3A")
        .replace(',', "%2C");
    let body = alice.sync(None, &format!("&filter={filter}")).await;
    let state = body["rooms"]["join"][&room]["state"]["events"].as_array().expect("state");
    let members: Vec<&str> = state
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert!(members.contains(&"@bob:tessera.test"), "the sender's member event is loaded");
    assert!(!members.contains(&"@carol:tessera.test"), "carol sent nothing in the timeline: {members:?}");
    assert_eq!(body["rooms"]["join"][&room]["summary"]["m.joined_member_count"], 3);

    // Carol joined before the token but speaks only now: the incremental
    // sync must bring her member event, which the client never got.
    let since = body["next_batch"].as_str().expect("token").to_owned();
    carol.send_text(&room, "first words").await;
    let body = alice.sync(Some(&since), &format!("&filter={filter}")).await;
    let state = body["rooms"]["join"][&room]["state"]["events"].as_array().expect("state");
    let carol_member = state
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@carol:tessera.test")
        .expect("the new sender's member event is loaded");
    assert_eq!(carol_member["content"]["membership"], "join");
    assert!(
        body["rooms"]["join"][&room]
            .get("summary")
            .is_none_or(|s| s.as_object().is_some_and(|s| s.is_empty())),
        "a resent member event is no membership change: no summary"
    );

    // A membership change does bring the summary.
    let since = body["next_batch"].as_str().expect("token").to_owned();
    carol.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({})).await.ok();
    let body = alice.sync(Some(&since), &format!("&filter={filter}")).await;
    assert_eq!(body["rooms"]["join"][&room]["summary"]["m.joined_member_count"], 2, "{body}");

    // Even when the timeline filter hides the membership event.
    let messages_only = r#"{"room":{"timeline":{"types":["m.room.message"]}}}"#
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
        .replace(':', "%3A")
        .replace('[', "%5B")
        .replace(']', "%5D");
    let since = body["next_batch"].as_str().expect("token").to_owned();
    bob.send_text(&room, "before carol is back").await;
    carol.join(&room).await.ok();
    let body = alice.sync(Some(&since), &format!("&filter={messages_only}")).await;
    let timeline = body["rooms"]["join"][&room]["timeline"]["events"].as_array().expect("timeline");
    assert!(timeline.iter().all(|e| e["type"] == "m.room.message"), "{body}");
    assert_eq!(body["rooms"]["join"][&room]["summary"]["m.joined_member_count"], 3, "{body}");
}

/// The member events (user ID → event ID) in a room's `state` section.
fn state_members(sync: &Value, room: &str) -> Vec<(String, String)> {
    let state = sync["rooms"]["join"][room]["state"]["events"].as_array().cloned().unwrap_or_default();
    state
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| {
            (
                e["state_key"].as_str().unwrap_or("").to_owned(),
                e["event_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn lazy_loaded_members_reach_each_device_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let lazy = encode(r#"{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":true}}}"#);
    let lazy = format!("&filter={lazy}");
    let start = alice.sync(None, &lazy).await;
    let start = start["next_batch"].as_str().expect("token").to_owned();

    // Bob's first words bring his member event...
    bob.send_text(&room, "one").await;
    let first = alice.sync(Some(&start), &lazy).await;
    assert_eq!(bodies(timeline(&first, &room)), ["one"]);
    let bob_member = state_members(&first, &room)
        .into_iter()
        .find(|(user, _)| user == "@bob:tessera.test")
        .expect("bob's member event comes with his first message");
    let after_first = first["next_batch"].as_str().expect("token").to_owned();

    // ...which this device then has: the next batch leaves it out.
    bob.send_text(&room, "two").await;
    let second = alice.sync(Some(&after_first), &lazy).await;
    assert_eq!(bodies(timeline(&second, &room)), ["two"]);
    assert_eq!(state_members(&second, &room), Vec::<(String, String)>::new(), "{second}");

    // A client that retries from the older token (the answer was lost)
    // gets it again.
    let retried = alice.sync(Some(&start), &lazy).await;
    assert_eq!(bodies(timeline(&retried, &room)), ["one", "two"]);
    assert!(state_members(&retried, &room).contains(&bob_member), "{retried}");

    // So does a client that asks for redundant members, and another device.
    let redundant =
        encode(r#"{"room":{"state":{"lazy_load_members":true,"include_redundant_members":true}}}"#);
    let again = alice.sync(Some(&after_first), &format!("&filter={redundant}")).await;
    assert!(state_members(&again, &room).contains(&bob_member), "{again}");
    let mut laptop = server.client();
    let login = laptop.login("alice", "pw").await.ok();
    assert!(login["access_token"].is_string(), "{login}");
    let last_only = encode(r#"{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}"#);
    let fresh = laptop.sync(None, &format!("&filter={last_only}")).await;
    assert_eq!(bodies(timeline(&fresh, &room)), ["two"]);
    assert!(state_members(&fresh, &room).contains(&bob_member), "the other device's first sync: {fresh}");

    // A new member event is news: bob's rename comes in the timeline, and
    // his next message brings the new member event in the state section
    // of a client that asked without the timeline's state events.
    let messages_only =
        encode(r#"{"room":{"timeline":{"types":["m.room.message"]},"state":{"lazy_load_members":true}}}"#);
    let messages_only = format!("&filter={messages_only}");
    let after_second = second["next_batch"].as_str().expect("token").to_owned();
    bob.put(
        &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@bob:tessera.test"),
        json!({ "membership": "join", "displayname": "Robert" }),
    )
    .await
    .ok();
    bob.send_text(&room, "three").await;
    let renamed = alice.sync(Some(&after_second), &messages_only).await;
    assert_eq!(bodies(timeline(&renamed, &room)), ["three"]);
    let members = state_members(&renamed, &room);
    assert!(members.iter().any(|(user, id)| user == "@bob:tessera.test" && *id != bob_member.1), "{renamed}");
}

async fn nothing_is_lost_across_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let sent = alice.send_text(&room, "acknowledged before the restart").await;
    server.restart().await;
    alice.base = server.base.clone();
    let after = alice.sync(Some(&since), "").await;
    assert_eq!(timeline(&after, &room).last().expect("event")["event_id"], sent.as_str());
}

async fn shutdown_does_not_wait_for_long_polls(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let waiting = {
        let alice = alice.clone();
        tokio::spawn(async move {
            alice.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=60000")).await
        })
    };
    // The request must be parked in its wait before the stop. Nothing
    // outside the server can observe that, so it gets a moment; if it came
    // too late, the status check below fails loudly rather than passing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the long-poll must still be waiting");
    let started = Instant::now();
    server.stop().await.expect("clean stop");
    assert!(started.elapsed() < Duration::from_secs(30), "shutdown waited for the 60 s long-poll");
    let answered = waiting.await.expect("task");
    assert_eq!(answered.status, 200, "the long-poll was answered, not cut off");
}

async fn positions_continue_above_every_stream_after_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    // Account data takes the newest position; the client's token covers it.
    alice
        .put("/_matrix/client/v3/user/@alice:tessera.test/account_data/org.example.a", json!({ "n": 1 }))
        .await
        .ok();
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    server.restart().await;
    alice.base = server.base.clone();
    let sent = alice.send_text(&room, "after the restart").await;
    let after = alice.sync(Some(&since), "").await;
    assert_eq!(
        timeline(&after, &room).last().expect("the new event reaches the client")["event_id"],
        sent.as_str()
    );
}

/// A repeated transaction ID reserves a position that nothing stores, and
/// the next token covers it. Handed out again after a restart, it would
/// carry the next message to a position that token has already passed.
async fn positions_dropped_before_a_restart_are_not_reused(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/once");
    let content = json!({ "msgtype": "m.text", "body": "once" });
    let first = alice.put(&path, content.clone()).await.ok();
    let retried = alice.put(&path, content).await.ok();
    assert_eq!(first["event_id"], retried["event_id"]);
    // Offline: a presence write would store a position above the retry's.
    let offline = "&set_presence=offline";
    let since = alice.sync(None, offline).await["next_batch"].as_str().expect("token").to_owned();
    server.restart().await;
    alice.base = server.base.clone();
    let sync = |since: String| {
        let alice = alice.clone();
        async move { alice.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}{offline}")).await }
    };
    let before = sync(since.clone()).await;
    assert_eq!(before.status, 200, "a token from before the restart is valid: {}", before.body);
    let sent = alice.send_text(&room, "after the restart").await;
    let after = sync(since).await.ok();
    assert_eq!(bodies(timeline(&after, &room)), ["after the restart"]);
    assert_eq!(timeline(&after, &room)[0]["event_id"], sent.as_str());
}

/// `use_state_after` (spec v1.16): `state_after` holds the state at the
/// timeline's end, state events of the timeline included; without it,
/// `state` stops at the timeline's start.
async fn state_after_runs_to_the_timeline_end(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let state = |kind: &str| format!("/_matrix/client/v3/rooms/{room}/state/{kind}/");
    alice.put(&state("m.room.name"), json!({ "name": "One" })).await.ok();
    alice.send_text(&room, "between").await;
    alice.put(&state("m.room.topic"), json!({ "topic": "last" })).await.ok();
    let filter =
        r#"{"room":{"timeline":{"limit":1}}}"#.replace('{', "%7B").replace('}', "%7D").replace('"', "%22");
    let contents = |section: &Value, key: &str| -> Vec<(String, Value)> {
        section[key]["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .map(|e| (e["type"].as_str().unwrap_or_default().to_owned(), e["content"].clone()))
                    .collect()
            })
            .unwrap_or_default()
    };

    let before = alice.sync(Some(&since), &format!("&filter={filter}")).await;
    let section = &before["rooms"]["join"][&room];
    assert!(section.get("state_after").is_none());
    assert_eq!(contents(section, "state"), [("m.room.name".to_owned(), json!({ "name": "One" }))]);

    let after = alice.sync(Some(&since), &format!("&filter={filter}&use_state_after=true")).await;
    let section = &after["rooms"]["join"][&room];
    assert!(section.get("state").is_none());
    let mut state_after = contents(section, "state_after");
    state_after.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        state_after,
        [
            ("m.room.name".to_owned(), json!({ "name": "One" })),
            ("m.room.topic".to_owned(), json!({ "topic": "last" })),
        ]
    );
    assert_eq!(timeline(&after, &room).len(), 1);
}

/// A filter's `event_fields` keeps only the listed paths of each event.
async fn event_fields_trim_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    alice.send_text(&room, "trimmed").await;
    let filter = r#"{"event_fields":["type","content.body"]}"#
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
        .replace('[', "%5B")
        .replace(']', "%5D");
    let body = alice.sync(Some(&since), &format!("&filter={filter}")).await;
    assert_eq!(
        *timeline(&body, &room),
        [json!({ "type": "m.room.message", "content": { "body": "trimmed" } })]
    );
}

/// `timeline.limited` is sent even when false (clients and Complement read
/// it; ruma would leave it out).
async fn timelines_always_say_whether_they_are_limited(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let initial = alice.sync(None, "").await;
    assert_eq!(initial["rooms"]["join"][&room]["timeline"]["limited"], false);
    let since = initial["next_batch"].as_str().expect("token").to_owned();
    alice.send_text(&room, "one").await;
    let next = alice.sync(Some(&since), "").await;
    assert_eq!(next["rooms"]["join"][&room]["timeline"]["limited"], false);
    assert_eq!(bodies(timeline(&next, &room)), ["one"]);
}

/// A room joined since the token gets its newest events, not only those
/// since the token, and is limited when older ones were left out; a
/// member event of someone already joined (a new display name) is not a
/// new join.
async fn a_room_joined_since_the_token_comes_as_in_an_initial_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    for i in 0..4 {
        alice.send_text(&room, &format!("before-{i}")).await;
    }
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    for i in 0..4 {
        alice.send_text(&room, &format!("after-{i}")).await;
    }
    bob.join(&room).await.ok();
    let filter = encode(r#"{"room":{"timeline":{"limit":5}}}"#);
    let joined = bob.sync(Some(&since), &format!("&filter={filter}")).await;
    let section = &joined["rooms"]["join"][&room];
    assert_eq!(section["timeline"]["limited"], true, "{section}");
    assert_eq!(bodies(timeline(&joined, &room)), ["after-0", "after-1", "after-2", "after-3"]);
    let state = section["state"]["events"].as_array().expect("state before the timeline");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));
    let since = joined["next_batch"].as_str().expect("token").to_owned();

    // Bob renames himself: the next sync is incremental, not a new join.
    bob.put("/_matrix/client/v3/profile/@bob:tessera.test/displayname", json!({ "displayname": "Bobby" }))
        .await
        .ok();
    let renamed = bob.sync(Some(&since), "").await;
    let events = timeline(&renamed, &room);
    assert_eq!(events.len(), 1, "only the new member event: {events:?}");
    assert_eq!(events[0]["content"]["displayname"], "Bobby");
    assert_eq!(renamed["rooms"]["join"][&room]["timeline"]["limited"], false);
    assert!(renamed["rooms"]["join"][&room].get("state").is_none());
}

/// Sharing a room with someone new brings their presence in the next
/// incremental sync, however old it is, once.
async fn new_room_companions_bring_their_presence(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    alice.sync(None, "").await;
    bob.sync(None, "").await;
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let bob_since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    bob.join(&room).await.ok();

    let senders = |sync: &Value| -> Vec<String> {
        sync["presence"]["events"]
            .as_array()
            .map(|events| events.iter().filter_map(|e| e["sender"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    // Alice sees bob (who joined); bob sees alice (who was there).
    let alice_sync = alice.sync(Some(&alice_since), "").await;
    assert!(senders(&alice_sync).contains(&"@bob:tessera.test".to_owned()), "{alice_sync}");
    let bob_sync = bob.sync(Some(&bob_since), "").await;
    assert!(senders(&bob_sync).contains(&"@alice:tessera.test".to_owned()), "{bob_sync}");
    // Once: the next sync has nothing new from them.
    let since = alice_sync["next_batch"].as_str().expect("token").to_owned();
    alice.send_text(&room, "hello").await;
    let after = alice.sync(Some(&since), "").await;
    assert!(!senders(&after).contains(&"@bob:tessera.test".to_owned()), "{after}");
}

/// `timeline.limit: 0` sends no events (left rooms included), only
/// whether there were some.
async fn a_zero_timeline_limit_sends_no_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    alice.send_text(&room, "hello").await;
    let left = alice.create_room(json!({})).await;
    alice.send_text(&left, "bye").await;
    alice.post(&format!("/_matrix/client/v3/rooms/{left}/leave"), json!({})).await.ok();
    let filter = encode(r#"{"room":{"include_leave":true,"timeline":{"limit":0}}}"#);
    let sync = alice.sync(None, &format!("&filter={filter}")).await;
    for section in [&sync["rooms"]["join"][&room], &sync["rooms"]["leave"][&left]] {
        assert_eq!(section["timeline"]["events"], json!([]), "{sync}");
        assert_eq!(section["timeline"]["limited"], true);
    }
}
