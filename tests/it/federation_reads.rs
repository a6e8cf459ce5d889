//! Room reads over federation: `/state_ids`, `/state`, `/event_auth`,
//! `/backfill`, `/get_missing_events`, `/timestamp_to_event` and the
//! public room directory (`/publicRooms`), asked of
//! server A by server B. No room has members on two servers yet, so B is
//! let in by a world-readable room, and kept out of one that is not.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tessera_core::ServerSigningKey;

use crate::{
    both_backends,
    federation::{server_key, signed_get, signed_request, two_servers},
    harness::{Backend, Response, TestCa, TestClient, TestServer, encode},
};

both_backends!(
    state_before_an_event_comes_with_its_auth_chain,
    backfill_and_missing_events_walk_prev_events,
    timestamp_to_event_answers_servers,
    servers_not_in_a_room_are_refused,
    the_public_room_directory_is_served_to_servers,
    a_space_is_shown_to_servers_as_they_may_see_it,
);

/// Server A with Alice in a room that is world-readable from its
/// creation on, and server B's key to ask A with.
struct Setup {
    _ca: TestCa,
    a: TestServer,
    _b: TestServer,
    alice: TestClient,
    room: String,
    b_key: ServerSigningKey,
}

impl Setup {
    async fn new(backend: Backend, room_version: &str) -> Self {
        let (ca, a, b) = two_servers(backend).await;
        let alice = a.register("alice", "pw").await;
        let room = alice
            .create_room(json!({ "room_version": room_version, "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "world_readable" }
            }] }))
            .await;
        let b_key = server_key(&b);
        Self { _ca: ca, a, _b: b, alice, room, b_key }
    }

    /// A GET to A signed by B.
    async fn get(&self, path: &str) -> Response {
        signed_get(&self.a, path, &self.b_key, self.a.server_name()).await
    }

    /// A POST to A signed by B.
    async fn post(&self, path: &str, body: Value) -> Response {
        signed_request(&self.a, reqwest::Method::POST, path, Some(body), &self.b_key, self.a.server_name())
            .await
    }

    /// The room's current state as Alice reads it: type → event ID.
    async fn state_ids(&self) -> Vec<(String, String)> {
        let state = self.alice.get(&format!("/_matrix/client/v3/rooms/{}/state", self.room)).await.ok();
        let events = state.as_array().expect("state").iter();
        events.map(|e| (str_of(&e["type"]), str_of(&e["event_id"]))).collect()
    }

    /// The PDU of an event, as A gives it to B.
    async fn pdu(&self, event_id: &str) -> Value {
        let answer = self.get(&format!("/_matrix/federation/v1/event/{}", encode(event_id))).await.ok();
        answer["pdus"][0].clone()
    }
}

fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("a string: {value}")).to_owned()
}

fn id_set(value: &Value) -> BTreeSet<String> {
    value.as_array().unwrap_or_else(|| panic!("a list: {value}")).iter().map(str_of).collect()
}

/// The message bodies of a list of PDUs, in order.
fn bodies(pdus: &Value) -> Vec<String> {
    let pdus = pdus.as_array().unwrap_or_else(|| panic!("a list: {pdus}"));
    pdus.iter().map(|p| p["content"]["body"].as_str().unwrap_or("(not a message)").to_owned()).collect()
}

async fn state_before_an_event_comes_with_its_auth_chain(backend: Backend) {
    // Room version 1 lists auth events as (ID, hashes) pairs; 12 leaves
    // the create event out of them.
    for version in ["1", "12"] {
        let setup = Setup::new(backend, version).await;
        let room = &setup.room;
        let message = setup.alice.send_text(room, "hello").await;
        let state = setup.state_ids().await;
        let id_of = |kind: &str| state.iter().find(|(k, _)| k == kind).expect("in the state").1.clone();
        let (create, power) = (id_of("m.room.create"), id_of("m.room.power_levels"));
        let (member, visibility) = (id_of("m.room.member"), id_of("m.room.history_visibility"));
        let expected_chain: BTreeSet<String> = [&create, &member, &power].into_iter().cloned().collect();

        // The state before the message is the room's state now; its auth
        // chain is what authorised those events.
        let path = format!("/_matrix/federation/v1/state_ids/{}?event_id={}", encode(room), encode(&message));
        let ids = setup.get(&path).await.ok();
        let all_state: BTreeSet<String> = state.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(id_set(&ids["pdu_ids"]), all_state, "v{version}: {ids}");
        assert_eq!(id_set(&ids["auth_chain_ids"]), expected_chain, "v{version}: {ids}");

        // The same as PDUs, as signed, the auth chain oldest first.
        let path = format!("/_matrix/federation/v1/state/{}?event_id={}", encode(room), encode(&message));
        let full = setup.get(&path).await.ok();
        let pdus = full["pdus"].as_array().expect("pdus");
        assert_eq!(pdus.len(), all_state.len(), "v{version}: {full}");
        assert!(pdus.iter().all(|p| p["signatures"][setup.a.server_name()].is_object()));
        let chain = full["auth_chain"].as_array().expect("auth chain");
        let chain_types: Vec<&str> = chain.iter().filter_map(|p| p["type"].as_str()).collect();
        assert_eq!(chain_types, ["m.room.create", "m.room.member", "m.room.power_levels"], "v{version}");

        // The state *before* an event: without its own change.
        let name = setup
            .alice
            .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"), json!({ "name": "Reads" }))
            .await
            .ok();
        let name = str_of(&name["event_id"]);
        let after = setup.alice.send_text(room, "named").await;
        let state_ids =
            |at: &str| format!("/_matrix/federation/v1/state_ids/{}?event_id={}", encode(room), encode(at));
        let at_name = setup.get(&state_ids(&name)).await.ok();
        assert_eq!(id_set(&at_name["pdu_ids"]), all_state, "v{version}: {at_name}");
        let at_after = id_set(&setup.get(&state_ids(&after)).await.ok()["pdu_ids"]);
        assert_eq!(at_after, all_state.iter().cloned().chain([name.clone()]).collect());
        // B sees the room's events from its turning world-readable on: the
        // event that did it is not one of them.
        setup.get(&state_ids(&visibility)).await.assert_error(403, "M_FORBIDDEN");

        // An event's own auth chain.
        let path = format!("/_matrix/federation/v1/event_auth/{}/{}", encode(room), encode(&message));
        let auth = setup.get(&path).await.ok();
        let types: Vec<&str> = auth["auth_chain"]
            .as_array()
            .expect("auth chain")
            .iter()
            .filter_map(|p| p["type"].as_str())
            .collect();
        assert_eq!(types, ["m.room.create", "m.room.member", "m.room.power_levels"], "v{version}: {auth}");
        if version == "1" {
            // Room version 1 PDUs carry their event IDs.
            assert_eq!(auth["auth_chain"][0]["event_id"], create.as_str());
        }
    }
}

async fn backfill_and_missing_events_walk_prev_events(backend: Backend) {
    let setup = Setup::new(backend, "12").await;
    let room = &setup.room;
    let mut sent = Vec::new();
    for i in 0..110 {
        sent.push(setup.alice.send_text(room, &format!("m{i}")).await);
    }
    let backfill = |from: &str, limit: u32| {
        format!("/_matrix/federation/v1/backfill/{}?v={}&limit={limit}", encode(room), encode(from))
    };
    let expected =
        |range: std::ops::RangeInclusive<usize>| -> Vec<String> { range.map(|i| format!("m{i}")).collect() };

    // From the newest event back, newest first, the given event included.
    let answer = setup.get(&backfill(&sent[109], 5)).await.ok();
    assert_eq!(answer["origin"], setup.a.server_name());
    assert!(answer["origin_server_ts"].is_u64());
    let mut newest_first = expected(105..=109);
    newest_first.reverse();
    assert_eq!(bodies(&answer["pdus"]), newest_first);
    // At most 100 however many are asked for.
    let all = setup.get(&backfill(&sent[109], 1000)).await.ok();
    let mut hundred = expected(10..=109);
    hundred.reverse();
    assert_eq!(bodies(&all["pdus"]), hundred);
    // Before the first message only events B may not see (the room was
    // not yet world-readable): left out.
    let first = setup.get(&backfill(&sent[0], 10)).await.ok();
    assert_eq!(bodies(&first["pdus"]), ["m0"], "{first}");

    // Missing events: between `earliest` and `latest`, neither included,
    // oldest first.
    let path = format!("/_matrix/federation/v1/get_missing_events/{}", encode(room));
    let missing = |earliest: &str, latest: &str, extra: Value| {
        let mut body = json!({ "earliest_events": [earliest], "latest_events": [latest] });
        body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        setup.post(&path, body)
    };
    let between = missing(&sent[2], &sent[7], json!({})).await.ok();
    assert_eq!(bodies(&between["events"]), expected(3..=6));
    // The `limit` nearest to `latest` (10 by default).
    let two = missing(&sent[2], &sent[7], json!({ "limit": 2 })).await.ok();
    assert_eq!(bodies(&two["events"]), expected(5..=6));
    let default = missing(&sent[20], &sent[50], json!({})).await.ok();
    assert_eq!(bodies(&default["events"]), expected(40..=49));
    // Nothing below `min_depth`.
    let depth = setup.pdu(&sent[4]).await["depth"].as_u64().expect("depth");
    let deep = missing(&sent[2], &sent[7], json!({ "min_depth": depth })).await.ok();
    assert_eq!(bodies(&deep["events"]), expected(4..=6));
    // Events B does not know of start nothing.
    let unknown = missing(&sent[2], "$unknown", json!({})).await.ok();
    assert_eq!(unknown["events"], json!([]));
}

async fn timestamp_to_event_answers_servers(backend: Backend) {
    let setup = Setup::new(backend, "12").await;
    let room = &setup.room;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(setup.alice.send_text(room, &format!("m{i}")).await);
    }
    let ts = setup.pdu(&sent[3]).await["origin_server_ts"].as_u64().expect("ts");
    let federation = |dir: &str, ts: u64| {
        format!("/_matrix/federation/v1/timestamp_to_event/{}?dir={dir}&ts={ts}", encode(room))
    };
    let client =
        |dir: &str, ts: u64| format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?dir={dir}&ts={ts}");

    // The last event at or before the timestamp: the one Alice's client
    // is told of too (several may share a millisecond).
    let found = setup.get(&federation("b", ts)).await.ok();
    assert_eq!(found["origin_server_ts"].as_u64(), Some(ts), "{found}");
    let for_alice = setup.alice.get(&client("b", ts)).await.ok();
    assert_eq!(found["event_id"], for_alice["event_id"]);
    assert!(sent.contains(&str_of(&found["event_id"])), "one of the messages: {found}");
    let forward = setup.get(&federation("f", ts)).await.ok();
    assert_eq!(forward["origin_server_ts"].as_u64(), Some(ts));
    // Nothing after the last event.
    let last = setup.pdu(&sent[4]).await["origin_server_ts"].as_u64().expect("ts");
    setup.get(&federation("f", last + 86_400_000)).await.assert_error(404, "M_NOT_FOUND");
    // The room's first event is from before it was world-readable: not
    // B's to see, so not found either.
    setup.get(&federation("f", 0)).await.assert_error(404, "M_NOT_FOUND");
}

async fn servers_not_in_a_room_are_refused(backend: Backend) {
    let setup = Setup::new(backend, "12").await;
    let open = &setup.room;
    let open_message = setup.alice.send_text(open, "for everyone").await;
    let closed = setup.alice.create_room(json!({})).await;
    let message = setup.alice.send_text(&closed, "for members").await;
    let reads = |room: &str, event: &str| {
        let (room, event) = (encode(room), encode(event));
        vec![
            format!("/_matrix/federation/v1/state_ids/{room}?event_id={event}"),
            format!("/_matrix/federation/v1/state/{room}?event_id={event}"),
            format!("/_matrix/federation/v1/event_auth/{room}/{event}"),
            format!("/_matrix/federation/v1/backfill/{room}?v={event}&limit=10"),
            format!("/_matrix/federation/v1/timestamp_to_event/{room}?dir=b&ts=9999999999999"),
        ]
    };
    let missing_events = |room: &str| format!("/_matrix/federation/v1/get_missing_events/{}", encode(room));
    let missing_body = |event: &str| json!({ "earliest_events": [], "latest_events": [event] });

    // A room B's users are not in and that is not world-readable: 403,
    // whether or not the event exists.
    for event in [&message, "$nothing"] {
        for path in reads(&closed, event) {
            setup.get(&path).await.assert_error(403, "M_FORBIDDEN");
        }
        setup.post(&missing_events(&closed), missing_body(event)).await.assert_error(403, "M_FORBIDDEN");
    }
    // A room A does not know: 404.
    let unknown_room = format!("!unknown:{}", setup.a.server_name());
    for path in reads(&unknown_room, &message) {
        setup.get(&path).await.assert_error(404, "M_NOT_FOUND");
    }
    setup.post(&missing_events(&unknown_room), missing_body(&message)).await.assert_error(404, "M_NOT_FOUND");
    // In a room B may read: an unknown event, or one of another room, is
    // not found.
    for event in ["$nothing", message.as_str()] {
        for path in &reads(open, event)[..3] {
            setup.get(path).await.assert_error(404, "M_NOT_FOUND");
        }
    }
    // Unsigned: 401, before anything else.
    for path in reads(open, &open_message) {
        let unsigned = reqwest::get(format!("{}{path}", setup.a.base)).await.expect("sent");
        assert_eq!(unsigned.status().as_u16(), 401, "{path}");
    }
    let unsigned = reqwest::Client::new()
        .post(format!("{}{}", setup.a.base, missing_events(open)))
        .json(&missing_body(&open_message))
        .send()
        .await
        .expect("sent");
    assert_eq!(unsigned.status().as_u16(), 401);
}

async fn the_public_room_directory_is_served_to_servers(backend: Backend) {
    let setup = Setup::new(backend, "11").await;
    let listed = setup
        .alice
        .create_room(json!({ "preset": "public_chat", "visibility": "public", "name": "Listed lounge" }))
        .await;
    let answer = setup.get("/_matrix/federation/v1/publicRooms?limit=10").await.ok();
    let chunk = answer["chunk"].as_array().unwrap_or_else(|| panic!("a chunk: {answer}"));
    assert_eq!(chunk.len(), 1, "only the published room: {answer}");
    assert_eq!(chunk[0]["room_id"], listed.as_str());
    assert_eq!(chunk[0]["name"], "Listed lounge");
    assert_eq!(chunk[0]["join_rule"], "public");
    assert_eq!(chunk[0]["num_joined_members"], 1);

    let filtered = json!({ "limit": 10, "filter": { "generic_search_term": "lounge" } });
    let answer = setup.post("/_matrix/federation/v1/publicRooms", filtered).await.ok();
    assert_eq!(answer["chunk"][0]["room_id"], listed.as_str(), "{answer}");
    let none = json!({ "filter": { "generic_search_term": "nothing like it" } });
    let answer = setup.post("/_matrix/federation/v1/publicRooms", none).await.ok();
    assert_eq!(answer["chunk"], json!([]), "{answer}");

    // Unsigned: refused.
    let unsigned = setup.a.client().get("/_matrix/federation/v1/publicRooms").await;
    unsigned.assert_error(401, "M_UNAUTHORIZED");
}

async fn a_space_is_shown_to_servers_as_they_may_see_it(backend: Backend) {
    let setup = Setup::new(backend, "11").await;
    let alice = &setup.alice;
    let space = alice
        .create_room(
            json!({ "preset": "public_chat", "name": "Space", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let open = alice.create_room(json!({ "preset": "public_chat", "name": "Open" })).await;
    let closed = alice.create_room(json!({ "preset": "private_chat", "name": "Closed" })).await;
    for child in [&open, &closed] {
        let path =
            format!("/_matrix/client/v3/rooms/{}/state/m.space.child/{}", encode(&space), encode(child));
        alice.put(&path, json!({ "via": [setup.a.server_name()] })).await.ok();
    }

    let answer = setup.get(&format!("/_matrix/federation/v1/hierarchy/{}", encode(&space))).await.ok();
    assert_eq!(answer["room"]["room_id"], space.as_str(), "{answer}");
    assert_eq!(answer["room"]["room_type"], "m.space");
    assert_eq!(answer["room"]["children_state"].as_array().map(Vec::len), Some(2), "{answer}");
    let children: Vec<&str> = answer["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|c| c["room_id"].as_str())
        .collect();
    assert_eq!(children, vec![open.as_str()], "{answer}");
    assert_eq!(answer["children"][0]["name"], "Open");
    assert_eq!(answer["inaccessible_children"], json!([closed]), "{answer}");

    // A room the server may not see is answered as one not known.
    let path = format!("/_matrix/federation/v1/hierarchy/{}", encode(&closed));
    setup.get(&path).await.assert_error(404, "M_NOT_FOUND");
}
