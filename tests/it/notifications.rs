//! Notification counts in sync and `GET /notifications`, from the push
//! rules evaluated for each member as events arrive.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer, encode},
};

both_backends!(
    unread_counts_follow_messages_mentions_and_receipts,
    thread_counts_are_apart_when_the_filter_asks,
    notifications_page_newest_first_with_highlights_and_read_flags
);

/// `(notification_count, highlight_count)` of a joined room in a sync.
fn counts(sync: &Value, room: &str) -> (u64, u64) {
    let unread = &sync["rooms"]["join"][room]["unread_notifications"];
    (
        unread["notification_count"].as_u64().expect("notification_count"),
        unread["highlight_count"].as_u64().expect("highlight_count"),
    )
}

async fn send(client: &TestClient, room: &str, txn: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    client.put(&path, content).await.ok()["event_id"].as_str().expect("event_id").to_owned()
}

async fn receipt(client: &TestClient, room: &str, kind: &str, event: &str, body: Value) {
    client.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/{kind}/{event}"), body).await.ok();
}

/// Alice sends "one", a message mentioning Bob (by `m.mentions` only),
/// and "three"; their event IDs.
async fn message_mention_message(alice: &TestClient, room: &str) -> (String, String, String) {
    let first = alice.send_text(room, "one").await;
    let mention = send(
        alice,
        room,
        "m1",
        json!({ "msgtype": "m.text", "body": "hey", "m.mentions": { "user_ids": ["@bob:tessera.test"] } }),
    )
    .await;
    let last = alice.send_text(room, "three").await;
    (first, mention, last)
}

/// Alice's room with Bob joined (and Carol, so that it is not one-to-one).
async fn group(server: &TestServer) -> (TestClient, TestClient, String) {
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    carol.join(&room).await.ok();
    (alice, bob, room)
}

async fn unread_counts_follow_messages_mentions_and_receipts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, room) = group(&server).await;
    let (first, mention, last) = message_mention_message(&alice, &room).await;

    let initial = bob.sync(None, "").await;
    assert_eq!(counts(&initial, &room), (3, 1), "two messages and a mention");
    // Her own messages never count for the sender.
    assert_eq!(counts(&alice.sync(None, "").await, &room), (0, 0));

    // Reading up to the first leaves the mention and the last.
    let since = initial["next_batch"].as_str().expect("next_batch").to_owned();
    receipt(&bob, &room, "m.read", &first, json!({})).await;
    let after_first = bob.sync(Some(&since), "").await;
    assert_eq!(counts(&after_first, &room), (2, 1), "{after_first}");

    // A private receipt resets the counts as well, and the reset reaches
    // an incremental sync.
    let since = after_first["next_batch"].as_str().expect("next_batch").to_owned();
    receipt(&bob, &room, "m.read.private", &last, json!({})).await;
    assert_eq!(counts(&bob.sync(Some(&since), "").await, &room), (0, 0));
    // An older public receipt does not bring them back.
    receipt(&bob, &room, "m.read", &mention, json!({})).await;
    assert_eq!(counts(&bob.sync(None, "").await, &room), (0, 0));

    // A legacy client's body naming Bob's display name highlights; a muted
    // room stops counting.
    alice.send_text(&room, "bob, are you there?").await;
    assert_eq!(counts(&bob.sync(None, "").await, &room), (1, 1));
    bob.put(&format!("/_matrix/client/v3/pushrules/global/room/{}", encode(&room)), json!({ "actions": [] }))
        .await
        .ok();
    alice.send_text(&room, "muted").await;
    assert_eq!(counts(&bob.sync(None, "").await, &room), (1, 1), "a muted room's messages do not count");
}

async fn thread_counts_are_apart_when_the_filter_asks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, room) = group(&server).await;
    let root = alice.send_text(&room, "root").await;
    receipt(&bob, &room, "m.read", &root, json!({})).await;
    let in_thread = |n: u32| {
        json!({ "msgtype": "m.text", "body": format!("reply {n}"),
                "m.relates_to": { "rel_type": "m.thread", "event_id": root } })
    };
    send(&alice, &room, "t1", in_thread(1)).await;
    let second = send(&alice, &room, "t2", in_thread(2)).await;
    alice.send_text(&room, "main again").await;

    // Without the filter flag, threads count in the room's total.
    assert_eq!(counts(&bob.sync(None, "").await, &room), (3, 0));
    let threaded =
        format!("&filter={}", encode(r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#));
    let sync = bob.sync(None, &threaded).await;
    assert_eq!(counts(&sync, &room), (1, 0), "the main timeline alone");
    let thread = &sync["rooms"]["join"][&room]["unread_thread_notifications"][&root];
    assert_eq!(thread["notification_count"], 2, "{sync}");

    // A threaded receipt clears that thread only.
    receipt(&bob, &room, "m.read", &second, json!({ "thread_id": root })).await;
    let sync = bob.sync(None, &threaded).await;
    assert_eq!(counts(&sync, &room), (1, 0));
    assert!(sync["rooms"]["join"][&room]["unread_thread_notifications"].get(&root).is_none(), "{sync}");
}

async fn notifications_page_newest_first_with_highlights_and_read_flags(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, room) = group(&server).await;
    let (first, mention, last) = message_mention_message(&alice, &room).await;
    receipt(&bob, &room, "m.read", &first, json!({})).await;

    let all = bob.get("/_matrix/client/v3/notifications").await.ok();
    let ids: Vec<&str> = all["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| n["event"]["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(ids, [last.as_str(), mention.as_str(), first.as_str()], "newest first");
    let entries = all["notifications"].as_array().expect("notifications");
    assert_eq!(entries[0]["room_id"], room.as_str());
    assert_eq!(entries[0]["read"], false);
    assert_eq!(entries[2]["read"], true, "the receipt covers the first");
    assert_eq!(entries[0]["event"]["content"]["body"], "three");
    assert!(entries[0]["ts"].as_u64().is_some());
    assert!(entries[1]["actions"].as_array().expect("actions").iter().any(|a| a["set_tweak"] == "highlight"));
    assert!(all.get("next_token").is_none(), "one page holds them all");

    // Pages of two: the token continues where the first page ended.
    let page = bob.get("/_matrix/client/v3/notifications?limit=2").await.ok();
    assert_eq!(page["notifications"].as_array().expect("page").len(), 2);
    let next = page["next_token"].as_str().expect("next_token");
    let rest = bob.get(&format!("/_matrix/client/v3/notifications?limit=2&from={next}")).await.ok();
    let rest = rest["notifications"].as_array().expect("rest");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["event"]["event_id"], first.as_str());

    let highlights = bob.get("/_matrix/client/v3/notifications?only=highlight").await.ok();
    let highlights = highlights["notifications"].as_array().expect("highlights");
    assert_eq!(highlights.len(), 1);
    assert_eq!(highlights[0]["event"]["event_id"], mention.as_str());

    bob.get("/_matrix/client/v3/notifications?from=nonsense").await.assert_error(400, "M_INVALID_PARAM");
    let nothing = alice.get("/_matrix/client/v3/notifications").await.ok();
    assert_eq!(nothing["notifications"], json!([]), "no one notifies you of your own messages");
}
