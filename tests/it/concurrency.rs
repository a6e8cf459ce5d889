//! Many clients sending into one room at once: the DAG stays a proper
//! chain, every event is stored once, and every member sees one order.
//! One user creating rooms at once gets distinct rooms.

use std::collections::HashSet;

use serde_json::{Value, json};
use sqlx::Row;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(concurrent_sends_into_one_room, concurrent_identical_room_creations);

const SENDERS: usize = 8;
const MESSAGES_EACH: usize = 15;

async fn concurrent_sends_into_one_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let mut clients = Vec::new();
    for i in 0..SENDERS {
        let client = server.register(&format!("sender{i}"), "pw").await;
        client.join(&room).await.ok();
        clients.push(client);
    }

    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let room = room.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..MESSAGES_EACH {
                    ids.push(client.send_text(&room, &format!("{i}:{n}")).await);
                }
                ids
            })
        })
        .collect();
    let mut sent = HashSet::new();
    for task in tasks {
        for id in task.await.expect("sender task") {
            assert!(sent.insert(id), "an event ID was returned twice");
        }
    }
    assert_eq!(sent.len(), SENDERS * MESSAGES_EACH);

    // Every member sees every message once, in the same order.
    let seen_by_alice = alice.all_messages(&room, 25).await;
    let mut sender0 = server.client();
    sender0.login("sender0", "pw").await.ok();
    let seen_by_sender = sender0.all_messages(&room, 9).await;
    let ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| e["event_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let order = ids(&seen_by_alice);
    assert_eq!(order, ids(&seen_by_sender), "members disagree on the order");
    assert_eq!(order.len(), sent.len());
    assert_eq!(order.iter().cloned().collect::<HashSet<_>>(), sent);
    // Each sender's own messages keep their send order.
    for i in 0..SENDERS {
        let mine: Vec<&str> = seen_by_alice
            .iter()
            .filter_map(|e| e["content"]["body"].as_str())
            .filter(|b| b.starts_with(&format!("{i}:")))
            .collect();
        let expected: Vec<String> = (0..MESSAGES_EACH).map(|n| format!("{i}:{n}")).collect();
        assert_eq!(mine, expected);
    }

    // The stored DAG: a single chain (appends are serialised), depth +1 per
    // event, one forward extremity, every event stored once.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url()).await.expect("connect");
    let rows =
        sqlx::query("SELECT event_id, depth, json FROM events WHERE room_id = $1 ORDER BY stream_ordering")
            .bind(&room)
            .fetch_all(&pool)
            .await
            .expect("events");
    let mut previous: Option<(String, i64)> = None;
    let mut stored = HashSet::new();
    for row in &rows {
        let (id, depth, json): (String, i64, String) =
            (row.try_get(0).expect("id"), row.try_get(1).expect("depth"), row.try_get(2).expect("json"));
        assert!(stored.insert(id.clone()), "{id} stored twice");
        let pdu: Value = serde_json::from_str(&json).expect("pdu json");
        let prev: Vec<&str> =
            pdu["prev_events"].as_array().expect("prev_events").iter().filter_map(Value::as_str).collect();
        match &previous {
            None => assert!(prev.is_empty(), "the create event has no parents"),
            Some((prev_id, prev_depth)) => {
                assert_eq!(prev, [prev_id.as_str()], "each event follows the one before it");
                assert_eq!(depth, prev_depth + 1);
            }
        }
        previous = Some((id, depth));
    }
    assert!(sent.iter().all(|id| stored.contains(id)));
    let extremities: Vec<String> = sqlx::query("SELECT event_id FROM forward_extremities WHERE room_id = $1")
        .bind(&room)
        .fetch_all(&pool)
        .await
        .expect("extremities")
        .iter()
        .map(|r| r.try_get(0).expect("id"))
        .collect();
    assert_eq!(extremities, [previous.expect("events").0]);
    pool.close().await;
}

/// Identical `createRoom` requests in the same millisecond would build the
/// same room version 12 create event (whose hash is the room ID): each must
/// still get a room of its own.
async fn concurrent_identical_room_creations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let alice = alice.clone();
            tokio::spawn(async move { alice.create_room(json!({ "preset": "public_chat" })).await })
        })
        .collect();
    let mut rooms = HashSet::new();
    for task in tasks {
        rooms.insert(task.await.expect("create task"));
    }
    assert_eq!(rooms.len(), 8, "eight requests, eight rooms");
    let joined = alice.get("/_matrix/client/v3/joined_rooms").await.ok();
    assert_eq!(joined["joined_rooms"].as_array().expect("joined_rooms").len(), 8);
}
