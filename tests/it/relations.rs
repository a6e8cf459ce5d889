//! Relations: edits, reactions and threads, with bundled aggregations.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer},
};

both_backends!(
    edits_are_bundled,
    reactions_are_listed_and_paged,
    threads_are_summarised,
    relations_stay_in_their_room
);

async fn send(client: &TestClient, room: &str, kind: &str, txn: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}");
    client.put(&path, content).await.ok()["event_id"].as_str().expect("event_id").to_owned()
}

fn edit(target: &str, body: &str) -> Value {
    json!({
        "msgtype": "m.text", "body": format!("* {body}"),
        "m.new_content": { "msgtype": "m.text", "body": body },
        "m.relates_to": { "rel_type": "m.replace", "event_id": target },
    })
}

async fn edits_are_bundled(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let original = alice.send_text(&room, "helo").await;
    send(&alice, &room, "m.room.message", "e1", edit(&original, "hello")).await;
    let latest = send(&alice, &room, "m.room.message", "e2", edit(&original, "hello!")).await;
    // Someone else's "edit" is not an edit of alice's message.
    send(&bob, &room, "m.room.message", "e3", edit(&original, "hacked")).await;

    let event = bob.get(&format!("/_matrix/client/v3/rooms/{room}/event/{original}")).await.ok();
    let replace = &event["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replace["event_id"], latest.as_str());
    assert_eq!(replace["content"]["m.new_content"]["body"], "hello!");
    // The same bundle in /messages.
    let page = bob.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10")).await.ok();
    let in_page = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|e| e["event_id"] == original.as_str())
        .expect("original");
    assert_eq!(in_page["unsigned"]["m.relations"]["m.replace"]["event_id"], latest.as_str());
    // And in a sync's timeline.
    let filter = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A50%7D%7D%7D";
    let synced = bob.get(&format!("/_matrix/client/v3/sync?filter={filter}")).await.ok();
    let timeline = synced["rooms"]["join"][&room]["timeline"]["events"].as_array().expect("timeline").clone();
    let in_sync = timeline.iter().find(|e| e["event_id"] == original.as_str()).expect("original");
    assert_eq!(in_sync["unsigned"]["m.relations"]["m.replace"]["event_id"], latest.as_str());
}

async fn reactions_are_listed_and_paged(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let message = alice.send_text(&room, "vote").await;
    let react = |key: &'static str| json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": message, "key": key } });
    let thumbs = send(&bob, &room, "m.reaction", "r1", react("👍")).await;
    let heart = send(&alice, &room, "m.reaction", "r2", react("❤️")).await;
    send(&alice, &room, "m.room.message", "x", json!({ "msgtype": "m.text", "body": "unrelated" })).await;

    let base = format!("/_matrix/client/v1/rooms/{room}/relations/{message}");
    let all = bob.get(&base).await.ok();
    let ids: Vec<&str> =
        all["chunk"].as_array().expect("chunk").iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(ids, [heart.as_str(), thumbs.as_str()], "newest first by default");
    let typed = bob.get(&format!("{base}/m.annotation/m.reaction?dir=f")).await.ok();
    assert_eq!(typed["chunk"][0]["event_id"], thumbs.as_str());
    assert_eq!(typed["chunk"][0]["content"]["m.relates_to"]["key"], "👍");
    assert_eq!(bob.get(&format!("{base}/m.replace")).await.ok()["chunk"], json!([]));

    let first = bob.get(&format!("{base}?limit=1")).await.ok();
    assert_eq!(first["chunk"].as_array().expect("chunk").len(), 1);
    let next = first["next_batch"].as_str().expect("next_batch");
    let second = bob.get(&format!("{base}?limit=1&from={next}")).await.ok();
    assert_eq!(second["chunk"][0]["event_id"], thumbs.as_str());
    assert!(second.get("next_batch").is_none_or(Value::is_null));

    // A redacted reaction no longer counts.
    bob.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{thumbs}/rr"), json!({})).await.ok();
    let after = bob.get(&base).await.ok();
    assert_eq!(after["chunk"].as_array().expect("chunk").len(), 1);
    bob.get(&format!("/_matrix/client/v1/rooms/{room}/relations/$unknown"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

async fn threads_are_summarised(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    carol.join(&room).await.ok();
    let root = alice.send_text(&room, "thread root").await;
    let reply = |n: u32| {
        json!({ "msgtype": "m.text", "body": format!("reply {n}"),
                "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                                  "m.in_reply_to": { "event_id": root } } })
    };
    send(&bob, &room, "m.room.message", "t1", reply(1)).await;
    let last = send(&bob, &room, "m.room.message", "t2", reply(2)).await;
    alice.send_text(&room, "not in a thread").await;

    let threads = bob.get(&format!("/_matrix/client/v1/rooms/{room}/threads")).await.ok();
    let chunk = threads["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.len(), 1);
    assert_eq!(chunk[0]["event_id"], root.as_str());
    let summary = &chunk[0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["latest_event"]["event_id"], last.as_str());
    assert_eq!(summary["current_user_participated"], true);

    let for_carol = carol.get(&format!("/_matrix/client/v3/rooms/{room}/event/{root}")).await.ok();
    assert_eq!(for_carol["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], false);
    let carols =
        carol.get(&format!("/_matrix/client/v1/rooms/{room}/threads?include=participated")).await.ok();
    assert_eq!(carols["chunk"], json!([]));
    let alices =
        alice.get(&format!("/_matrix/client/v1/rooms/{room}/threads?include=participated")).await.ok();
    assert_eq!(alices["chunk"][0]["event_id"], root.as_str(), "the root's sender participates");
}

/// The spec relates events of one room only: Bob, in his own room, points
/// a thread reply, a reaction and a reference at an event of Alice's
/// private room. None of them may reach Alice's room, and Bob's room must
/// not list her event as a thread root.
async fn relations_stay_in_their_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let private = alice.create_room(json!({ "preset": "private_chat" })).await;
    let secret = alice.send_text(&private, "secret").await;
    let bobs = bob.create_room(json!({ "preset": "public_chat" })).await;
    // Alice joins Bob's room, so that she would see her event listed there.
    alice.join(&bobs).await.ok();
    let thread = |body: &str, root: &str| {
        json!({ "msgtype": "m.text", "body": body,
                "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                                  "m.in_reply_to": { "event_id": root } } })
    };
    send(&bob, &bobs, "m.room.message", "x1", thread("from elsewhere", &secret)).await;
    let reaction = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": secret, "key": "👀" } });
    send(&bob, &bobs, "m.reaction", "x2", reaction).await;
    let reference = json!({ "msgtype": "m.text", "body": "see",
                            "m.relates_to": { "rel_type": "m.reference", "event_id": secret } });
    send(&bob, &bobs, "m.room.message", "x3", reference).await;
    // A relation within the room still counts.
    let reply = send(&alice, &private, "m.room.message", "t1", thread("in the room", &secret)).await;

    let event = alice.get(&format!("/_matrix/client/v3/rooms/{private}/event/{secret}")).await.ok();
    let bundle = &event["unsigned"]["m.relations"];
    assert_eq!(bundle["m.thread"]["count"], 1, "{bundle}");
    assert_eq!(bundle["m.thread"]["latest_event"]["event_id"], reply.as_str());
    assert!(bundle.get("m.reference").is_none(), "{bundle}");

    let related = alice.get(&format!("/_matrix/client/v1/rooms/{private}/relations/{secret}")).await.ok();
    let ids: Vec<&str> =
        related["chunk"].as_array().expect("chunk").iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(ids, [reply.as_str()]);
    let recursed =
        alice.get(&format!("/_matrix/client/v1/rooms/{private}/relations/{secret}?recurse=true")).await.ok();
    assert_eq!(recursed["chunk"].as_array().expect("chunk").len(), 1, "{recursed}");

    let threads = alice.get(&format!("/_matrix/client/v1/rooms/{private}/threads")).await.ok();
    let chunk = threads["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.len(), 1);
    assert_eq!(chunk[0]["event_id"], secret.as_str());
    assert_eq!(chunk[0]["unsigned"]["m.relations"]["m.thread"]["count"], 1);
    let elsewhere = alice.get(&format!("/_matrix/client/v1/rooms/{bobs}/threads")).await.ok();
    assert_eq!(elsewhere["chunk"], json!([]), "her event is no thread of Bob's room");
}
