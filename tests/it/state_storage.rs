//! The state-group store on both backends: the state at every event equals
//! a model replayed in memory, through deltas, snapshots and the chain cap.

use std::collections::BTreeMap;

use ruma::{EventId, RoomId, UserId};
use tessera_storage::{NewEvent, PoolSettings, Store, state};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(state_groups_match_a_replayed_model);

async fn append_state(store: &Store, position: i64, before: i64, key: &str) -> (i64, String) {
    let event_id = format!("$event{position}");
    let id = EventId::parse(&event_id).expect("event id");
    let room = RoomId::parse("!room:tessera.test").expect("room id");
    let sender = UserId::parse("@alice:tessera.test").expect("user id");
    let json = format!(r#"{{"type":"m.test","state_key":"{key}","content":{{}}}}"#);
    let after = store
        .append_event(NewEvent {
            stream_ordering: position,
            event_id: &id,
            room_id: &room,
            sender: &sender,
            event_type: "m.test",
            state_key: Some(key),
            depth: position,
            origin_server_ts: position,
            json: &json,
            prev_events: &[],
            state_before: before,
            membership: None,
            txn: None,
            redaction: None,
            relation: None,
            push_actions: &[],
            status: Default::default(),
            current_state: None,
            destinations: &[],
            historical: false,
            after_gap: false,
        })
        .await
        .expect("append");
    (after, event_id)
}

async fn state_groups_match_a_replayed_model(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    server.stop().await.expect("stop");
    let store =
        Store::open(&server.database_url(), PoolSettings { max_connections: 4, ..PoolSettings::default() })
            .await
            .expect("open store");

    let mut model: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut group = state::EMPTY;
    let mut checkpoints = Vec::new();
    // 300 events churning 5 keys (snapshots whenever the chain outgrows the
    // state), then 1,100 new keys (the chain reaches the 1,024 cap).
    let keys = (0..300).map(|i| format!("k{}", i % 5)).chain((0..1100).map(|i| format!("new{i}")));
    for (i, key) in keys.enumerate() {
        let position = i64::try_from(i).expect("small") + 1;
        let (after, event_id) = append_state(&store, position, group, &key).await;
        assert_eq!(after, position, "a state event creates a group named after it");
        model.insert(("m.test".into(), key.clone()), event_id);
        group = after;
        // Spread-out groups (each resolved over its chain) and a run of
        // consecutive ones (each resolved from its parent, then cached).
        if i % 97 == 0 || i == 1399 || (1000..1010).contains(&i) {
            checkpoints.push((group, model.clone()));
        }
    }
    for (group, expected) in checkpoints.iter().chain(&checkpoints) {
        assert_eq!(*store.state_at_group(*group).await.expect("state"), *expected, "state at group {group}");
    }
    let last = store.state_entry_at(group, "m.test", "k3").await.expect("entry").expect("k3 is set");
    assert_eq!(Some(&last.event_id.to_string()), model.get(&("m.test".into(), "k3".into())));
    assert!(store.state_entry_at(group, "m.test", "absent").await.expect("entry").is_none());
    store.close().await;
}
