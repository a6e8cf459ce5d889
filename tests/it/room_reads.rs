//! `/context`, `timestamp_to_event` and `/members?at=`.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer, encode},
};

both_backends!(
    context_surrounds_an_event,
    timestamp_to_event_finds_the_nearest,
    members_at_a_past_point,
    sync_tokens_are_pagination_tokens,
);

async fn context_surrounds_an_event(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(alice.send_text(&room, &format!("m{i}")).await);
    }
    let context =
        alice.get(&format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=4", ids[4])).await.ok();
    assert_eq!(context["event"]["event_id"], ids[4].as_str());
    let ids_of = |key: &str| -> Vec<String> {
        context[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["event_id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids_of("events_before"), [ids[3].clone(), ids[2].clone()], "nearest first");
    assert_eq!(ids_of("events_after"), [ids[5].clone(), ids[6].clone()]);
    assert!(context["state"].as_array().expect("state").iter().any(|e| e["type"] == "m.room.create"));

    // The tokens continue exactly where the context ended.
    let end = context["end"].as_str().expect("end");
    let after = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&from={end}")).await.ok();
    let next: Vec<&str> =
        after["chunk"].as_array().expect("chunk").iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(next, [ids[7].as_str(), ids[8].as_str()]);
    let start = context["start"].as_str().expect("start");
    let before =
        alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=2&from={start}")).await.ok();
    assert_eq!(before["chunk"][0]["event_id"], ids[1].as_str());
    alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/context/$missing"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

async fn timestamp_to_event_finds_the_nearest(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let first = alice.send_text(&room, "first").await;
    let event = alice.get(&format!("/_matrix/client/v3/rooms/{room}/event/{first}")).await.ok();
    let ts = event["origin_server_ts"].as_u64().expect("ts");
    let path =
        |dir: &str, ts: u64| format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?dir={dir}&ts={ts}");
    let found = alice.get(&path("b", ts)).await.ok();
    assert_eq!(found["origin_server_ts"].as_u64(), Some(ts));
    let later = alice.get(&path("f", ts + 60_000)).await;
    later.assert_error(404, "M_NOT_FOUND");
    let earliest = alice.get(&path("f", 0)).await.ok();
    let create =
        alice.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.create?format=event")).await.ok();
    assert_eq!(earliest["event_id"], create["event_id"], "the first event is the create event");
}

async fn members_at_a_past_point(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    alice.send_text(&room, "before bob").await;
    let page = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1")).await.ok();
    let before_bob = page["end"].as_str().expect("token").to_owned();
    bob.join(&room).await.ok();

    let members = |query: String| {
        let alice = &alice;
        let room = room.clone();
        async move {
            let body = alice.get(&format!("/_matrix/client/v3/rooms/{room}/members{query}")).await.ok();
            body["chunk"]
                .as_array()
                .expect("chunk")
                .iter()
                .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(members(String::new()).await, ["@alice:tessera.test", "@bob:tessera.test"]);
    assert_eq!(members(format!("?at={before_bob}")).await, ["@alice:tessera.test"]);

    // Bob leaves; carol joins after. Bob sees the members as he left them.
    bob.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({})).await.ok();
    let carol = server.register("carol", "pw").await;
    carol.join(&room).await.ok();
    let seen_by_bob = bob.get(&format!("/_matrix/client/v3/rooms/{room}/members")).await.ok();
    let ids: Vec<&str> = seen_by_bob["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert_eq!(ids, ["@alice:tessera.test", "@bob:tessera.test"]);
}

/// The spec lets a client page `/messages`, `/relations` and `/members?at=`
/// from a `/sync` token (`next_batch`); Element, nio and Complement do.
async fn sync_tokens_are_pagination_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let root = alice.send_text(&room, "root").await;
    alice.send_text(&room, "before-1").await;
    alice.send_text(&room, "before-2").await;
    let relate = |body: &str| json!({ "msgtype": "m.text", "body": body, "m.relates_to": { "rel_type": "m.thread", "event_id": root } });
    let send = |n: u64| format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/tok{n}");
    alice.put(&send(1), relate("thread-before")).await.ok();
    let synced = alice.sync(None, "").await;
    let next_batch = synced["next_batch"].as_str().expect("next_batch").to_owned();
    bob.join(&room).await.ok();
    alice.send_text(&room, "after-1").await;
    alice.put(&send(2), relate("thread-after")).await.ok();

    let bodies = |page: &serde_json::Value| -> Vec<String> {
        page["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect()
    };
    let messages = |query: String| {
        let alice = &alice;
        let room = &room;
        async move { alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?{query}")).await.ok() }
    };
    let back = messages(format!("dir=b&limit=3&from={next_batch}")).await;
    assert_eq!(bodies(&back), ["thread-before", "before-2", "before-1"], "backwards: what the sync covered");
    let forward = messages(format!("dir=f&from={next_batch}")).await;
    assert_eq!(bodies(&forward), ["after-1", "thread-after"], "forwards: what came after it");
    // `to` as a sync token: backwards from the end, stopping at the sync.
    let newer = messages(format!("dir=b&to={next_batch}")).await;
    assert_eq!(bodies(&newer), ["thread-after", "after-1"]);
    // prev_batch of a limited timeline pages on from before its first
    // event; of a whole one, from its end (as Synapse: the timeline again).
    let limited_sync =
        alice.sync(None, &format!("&filter={}", encode(r#"{"room":{"timeline":{"limit":2}}}"#))).await;
    let timeline = &limited_sync["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true);
    let first = timeline["events"][0]["event_id"].as_str().expect("first event");
    let prev_batch = timeline["prev_batch"].as_str().expect("prev_batch");
    let older = messages(format!("dir=b&from={prev_batch}")).await;
    assert!(older["chunk"].as_array().expect("chunk").iter().all(|e| e["event_id"] != first));
    let whole =
        alice.sync(None, &format!("&filter={}", encode(r#"{"room":{"timeline":{"limit":50}}}"#))).await;
    let timeline = &whole["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], false);
    let prev_batch = timeline["prev_batch"].as_str().expect("prev_batch");
    let again = messages(format!("dir=b&limit=50&from={prev_batch}")).await;
    assert_eq!(
        again["chunk"].as_array().expect("chunk").len(),
        timeline["events"].as_array().expect("events").len()
    );
    // /members?at= that token: the members as of the timeline's end.
    let members = alice.get(&format!("/_matrix/client/v3/rooms/{room}/members?at={prev_batch}")).await.ok();
    let joined: Vec<&str> = members["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["content"]["membership"] == "join")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert_eq!(joined.len(), 2, "alice and bob: {members}");

    let relations = |query: String| {
        let alice = &alice;
        let (room, root) = (&room, &root);
        async move { alice.get(&format!("/_matrix/client/v1/rooms/{room}/relations/{root}?{query}")).await.ok() }
    };
    assert_eq!(bodies(&relations(format!("dir=b&from={next_batch}")).await), ["thread-before"]);
    assert_eq!(bodies(&relations(format!("dir=f&from={next_batch}")).await), ["thread-after"]);
    assert_eq!(bodies(&relations(format!("dir=b&to={next_batch}")).await), ["thread-after"]);

    // The members as of the sync: bob had not joined yet.
    let members_at = |query: String| {
        let alice = &alice;
        let room = &room;
        async move {
            let members = alice.get(&format!("/_matrix/client/v3/rooms/{room}/members?{query}")).await.ok();
            let mut joined: Vec<String> = members["chunk"]
                .as_array()
                .expect("chunk")
                .iter()
                .filter(|e| e["content"]["membership"] == "join")
                .map(|e| e["state_key"].as_str().expect("state key").to_owned())
                .collect();
            joined.sort();
            joined
        }
    };
    assert_eq!(members_at(format!("at={next_batch}&not_membership=leave")).await, ["@alice:tessera.test"]);
    assert_eq!(members_at(String::new()).await, ["@alice:tessera.test", "@bob:tessera.test"]);
    // A token that is neither kind is still refused.
    alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from=x1"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}
