//! Rooms across servers: a user of server B joins a room of server A
//! (`make_join`/`send_join`), and the room's events then flow both ways
//! through each server's outbox and `PUT /send`, surviving a restart of the
//! receiving side.

use serde_json::{Value, json};

use crate::{
    both_backends,
    federation::two_servers,
    harness::{Backend, TestClient, encode},
};

both_backends!(
    a_remote_room_is_joined_and_messages_flow_both_ways,
    events_sent_while_a_server_is_down_arrive_after_it_restarts,
    forged_and_unauthorised_events_are_refused,
    concurrent_state_changes_resolve_alike_on_both_servers,
    typing_and_receipts_cross_servers,
    presence_and_device_changes_cross_servers,
    a_server_the_acl_bans_is_refused,
    a_server_the_operator_denies_is_neither_answered_nor_asked,
    a_server_found_through_its_srv_record_is_reached,
    another_servers_room_directory_is_listed,
    leaving_and_kicks_reach_the_other_server,
    a_gap_in_the_dag_is_bridged_with_the_state_at_its_edge,
    history_from_before_a_late_join_is_backfilled,
    a_late_event_from_a_partition_hides_no_history,
    the_deprecated_v1_join_and_leave_are_served,
    a_join_asking_to_omit_members_gets_the_heroes_only,
    renames_missed_while_away_arrive_with_the_next_message
);

/// Syncs from `since` until the room's timeline has an event that `want`
/// accepts; returns that event and the next token.
async fn sync_until(
    client: &TestClient,
    room_id: &str,
    since: Option<&str>,
    want: impl Fn(&Value) -> bool,
) -> (Value, String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut since = since.map(str::to_owned);
    loop {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=2000&since={since}"),
            None => "/_matrix/client/v3/sync".to_owned(),
        };
        let sync = client.get(&path).await.ok();
        let next = sync["next_batch"].as_str().expect("token").to_owned();
        let events =
            sync["rooms"]["join"][room_id]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        if let Some(event) = events.into_iter().find(|e| want(e)) {
            return (event, next);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the awaited event never arrived in {room_id}: {sync}"
        );
        since = Some(next);
    }
}

/// `client` joins the room through server `a` (`?server_name=`).
async fn join_through(client: &TestClient, a: &crate::harness::TestServer, room_id: &str) -> Value {
    let path = format!("/_matrix/client/v3/join/{}?server_name={}", encode(room_id), encode(a.server_name()));
    client.post(&path, json!({})).await.ok()
}

/// The event ID of a current state event, as `client`'s server holds it.
async fn state_event_id(client: &TestClient, room_id: &str, kind: &str, key: &str) -> String {
    let state = client.get(&format!("/_matrix/client/v3/rooms/{}/state", encode(room_id))).await.ok();
    let event =
        state.as_array().expect("state").iter().find(|e| e["type"] == kind && e["state_key"] == key).cloned();
    event.expect("state event")["event_id"].as_str().expect("id").to_owned()
}

fn text(body: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e: &Value| e["type"] == "m.room.message" && e["content"]["body"] == body
}

async fn a_remote_room_is_joined_and_messages_flow_both_ways(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (alice_id, bob_id) = (alice.user_id.clone().expect("user"), bob.user_id.clone().expect("user"));
    let room_id = alice.create_room(json!({ "preset": "public_chat", "name": "Across" })).await;
    alice.send_text(&room_id, "before Bob").await;

    // Bob joins through Alice's server.
    let joined = join_through(&bob, &a, &room_id).await;
    assert_eq!(joined["room_id"], room_id.as_str());

    // Bob's server holds the room's state: its name, Alice and Bob joined.
    let state = bob.get(&format!("/_matrix/client/v3/rooms/{}/state", encode(&room_id))).await.ok();
    let state = state.as_array().expect("state");
    let find =
        |kind: &str, key: &str| state.iter().find(|e| e["type"] == kind && e["state_key"] == key).cloned();
    assert_eq!(find("m.room.name", "").expect("name")["content"]["name"], "Across");
    assert_eq!(find("m.room.member", &alice_id).expect("alice")["content"]["membership"], "join");
    assert_eq!(find("m.room.member", &bob_id).expect("bob")["content"]["membership"], "join");

    // Alice's server took the join: Bob is a member there too.
    let members =
        alice.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&room_id))).await.ok();
    assert!(members["joined"][&bob_id].is_object(), "{members}");

    // A message from each side reaches the other's sync.
    let (_, bob_since) = sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.member").await;
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    alice.send_text(&room_id, "hello from A").await;
    let (event, bob_since) = sync_until(&bob, &room_id, Some(&bob_since), text("hello from A")).await;
    assert_eq!(event["sender"], alice_id.as_str());
    let from_b = bob.send_text(&room_id, "hello from B").await;
    let (event, alice_since) = sync_until(&alice, &room_id, Some(&alice_since), text("hello from B")).await;
    assert_eq!(event["sender"], bob_id.as_str());

    // State changes travel too.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(&room_id)),
            json!({ "topic": "t" }),
        )
        .await
        .ok();
    sync_until(&bob, &room_id, Some(&bob_since), |e| e["type"] == "m.room.topic").await;
    let topic =
        bob.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(&room_id))).await.ok();
    assert_eq!(topic["topic"], "t");

    // Bob redacts his message: Alice's server redacts it too.
    let redact = format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", encode(&room_id), encode(&from_b));
    bob.put(&redact, json!({})).await.ok();
    sync_until(&alice, &room_id, Some(&alice_since), |e| e["type"] == "m.room.redaction").await;
    let seen = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", encode(&room_id), encode(&from_b)))
        .await
        .ok();
    assert_eq!(seen["content"], json!({}), "{seen}");
}

async fn events_sent_while_a_server_is_down_arrive_after_it_restarts(backend: Backend) {
    let (_ca, a, mut b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    join_through(&bob, &a, &room_id).await;
    let (_, since) = sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.member").await;

    b.stop().await.expect("B stops");
    for n in 0..3 {
        alice.send_text(&room_id, &format!("while away {n}")).await;
    }
    b.restart().await;
    let mut bob = bob.clone();
    bob.base = b.base.clone();
    sync_until(&bob, &room_id, Some(&since), text("while away 2")).await;
    let mut seen: Vec<String> = bob
        .all_messages(&encode(&room_id), 50)
        .await
        .iter()
        .filter_map(|m| m["content"]["body"].as_str())
        .filter(|b| b.starts_with("while away"))
        .map(str::to_owned)
        .collect();
    seen.sort();
    assert_eq!(seen, ["while away 0", "while away 1", "while away 2"], "each once, none lost");
}

/// A PDU built and signed with `key`, in the room on A: `sender`'s event
/// from `template`, after the event `prev`, with the auth events named;
/// the events are read from A over federation as `asker`.
async fn forge(
    a: &crate::harness::TestServer,
    asker: &tessera_core::ServerSigningKey,
    key: &tessera_core::ServerSigningKey,
    room_id: &str,
    template: tessera_core::EventTemplate,
    sender: &str,
    (prev, auth): (&str, &[String]),
) -> serde_json::Map<String, Value> {
    let fetch = |id: String| async move {
        let answer = crate::federation::signed_get(
            a,
            &format!("/_matrix/federation/v1/event/{}", encode(&id)),
            asker,
            a.server_name(),
        )
        .await
        .ok();
        let json: ruma::CanonicalJsonObject =
            serde_json::from_value(answer["pdus"][0].clone()).expect("PDU from A");
        let rules = ruma::RoomVersionId::V12.rules().expect("rules");
        tessera_core::Pdu::from_remote_json(json, None, &rules).expect("parse")
    };
    let prev = fetch(prev.to_owned()).await;
    let mut auth_events = Vec::new();
    for id in auth {
        auth_events.push(fetch(id.clone()).await);
    }
    let room = ruma::RoomId::parse(room_id).expect("room");
    let auth_refs: Vec<&tessera_core::Pdu> = auth_events.iter().collect();
    let parents =
        tessera_core::Parents { room_id: Some(&room), prev_events: &[&prev], auth_events: &auth_refs };
    let sender = ruma::UserId::parse(sender).expect("sender");
    let pdu = tessera_core::build_event(
        &template,
        &ruma::RoomVersionId::V12,
        &sender,
        &parents,
        ruma::MilliSecondsSinceUnixEpoch::now(),
        key,
    )
    .expect("build");
    serde_json::from_value(serde_json::to_value(&pdu.json).expect("json")).expect("object")
}

async fn forged_and_unauthorised_events_are_refused(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice.create_room(json!({ "preset": "public_chat", "room_version": "12" })).await;
    join_through(&bob, &a, &room_id).await;
    let b_key = crate::federation::server_key(&b);
    let levels = state_event_id(&alice, &room_id, "m.room.power_levels", "").await;
    let bob_member = state_event_id(&alice, &room_id, "m.room.member", &bob_id).await;
    let send = |txn: &'static str, pdus: Vec<Value>| {
        let (a, key) = (&a, &b_key);
        async move {
            let body = json!({ "origin": key.server_name().as_str(), "origin_server_ts": 1, "pdus": pdus, "edus": [] });
            let path = format!("/_matrix/federation/v1/send/{txn}");
            crate::federation::signed_request(
                a,
                reqwest::Method::PUT,
                &path,
                Some(body),
                key,
                a.server_name(),
            )
            .await
        }
    };
    let auth = vec![levels.clone(), bob_member.clone()];
    let message = |body: &str| {
        tessera_core::EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": body }))
    };

    // A good event first: accepted and shown.
    let good = forge(&a, &b_key, &b_key, &room_id, message("genuine"), &bob_id, (&bob_member, &auth)).await;
    let answer = send("t1", vec![Value::Object(good.clone())]).await.ok();
    let results = answer["pdus"].as_object().expect("results").clone();
    assert_eq!(results.len(), 1, "{answer}");
    assert_eq!(results.values().next(), Some(&json!({})), "{answer}");
    let good_id = results.keys().next().expect("id").clone();

    // Changed after signing: kept only in its redacted form.
    let mut tampered =
        forge(&a, &b_key, &b_key, &room_id, message("original"), &bob_id, (&good_id, &auth)).await;
    tampered.insert("content".into(), json!({ "msgtype": "m.text", "body": "changed" }));
    // Signed by a key B never published: refused.
    let stranger = tessera_core::ServerSigningKey::generate(b_key.server_name().clone()).expect("key").0;
    let unsigned =
        forge(&a, &b_key, &stranger, &room_id, message("stranger"), &bob_id, (&good_id, &auth)).await;
    // In the name of A's user, signed by B only: refused.
    let alice_id = alice.user_id.clone().expect("user");
    let impostor =
        forge(&a, &b_key, &b_key, &room_id, message("impostor"), &alice_id, (&good_id, &auth)).await;
    // Bob giving himself power he does not have: rejected by the rules.
    let grab =
        tessera_core::EventTemplate::state("m.room.power_levels", "", json!({ "users": { &bob_id: 100 } }));
    let grab = forge(&a, &b_key, &b_key, &room_id, grab, &bob_id, (&good_id, &auth)).await;
    let answer = send(
        "t2",
        vec![Value::Object(tampered), Value::Object(unsigned), Value::Object(impostor), Value::Object(grab)],
    )
    .await
    .ok();
    let errors =
        answer["pdus"].as_object().expect("results").values().filter(|r| r.get("error").is_some()).count();
    assert_eq!(errors, 3, "the stranger, the impostor and the power grab fail: {answer}");

    let bodies: Vec<Value> = alice
        .all_messages(&encode(&room_id), 50)
        .await
        .into_iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("genuine"), Value::Null], "the tampered event is shown redacted, nothing else");
    let levels = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", encode(&room_id)))
        .await
        .ok();
    assert!(levels["users"][&bob_id].is_null(), "{levels}");

    // The same transaction again: the same answer, nothing applied twice.
    let again = send("t1", vec![Value::Object(good)]).await.ok();
    assert_eq!(again["pdus"][&good_id], json!({}));
    let count = alice
        .all_messages(&encode(&room_id), 50)
        .await
        .iter()
        .filter(|e| e["content"]["body"] == "genuine")
        .count();
    assert_eq!(count, 1);
}

/// The room's topic as `client`'s server holds it now.
async fn topic_of(client: &TestClient, room_id: &str) -> Value {
    client.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(room_id))).await.body["topic"].clone()
}

async fn concurrent_state_changes_resolve_alike_on_both_servers(backend: Backend) {
    let (_ca, mut a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    join_through(&bob, &a, &room_id).await;
    let levels = json!({ "users": { &bob_id: 100 } });
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", encode(&room_id)), levels)
        .await
        .ok();
    sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.power_levels").await;

    // A is away while Bob changes the topic; back, Alice changes it before
    // Bob's change reaches her (B's outbox waits out its backoff): the
    // two changes are concurrent, each server holding its own first.
    a.stop().await.expect("A stops");
    let topic = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(&room_id));
    bob.put(&topic, json!({ "topic": "from B" })).await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    a.restart().await;
    let mut alice = alice.clone();
    alice.base = a.base.clone();
    alice.put(&topic, json!({ "topic": "from A" })).await.ok();

    // Both servers end up with the same topic, the resolution of the fork.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (on_a, on_b) = (topic_of(&alice, &room_id).await, topic_of(&bob, &room_id).await);
        let both_seen = {
            let events = alice.all_messages(&encode(&room_id), 100).await;
            let topics: Vec<&Value> = events
                .iter()
                .filter(|e| e["type"] == "m.room.topic")
                .map(|e| &e["content"]["topic"])
                .collect();
            topics.contains(&&json!("from A")) && topics.contains(&&json!("from B"))
        };
        if both_seen && on_a == on_b {
            assert!(on_a == "from A" || on_a == "from B", "{on_a}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "A holds {on_a}, B holds {on_b}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A message after the fork joins both branches, and each side shows it.
    alice.send_text(&room_id, "after the fork").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !bob
        .all_messages(&encode(&room_id), 100)
        .await
        .iter()
        .any(|e| e["content"]["body"] == "after the fork")
    {
        assert!(tokio::time::Instant::now() < deadline, "the message after the fork never reached B");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(topic_of(&alice, &room_id).await, topic_of(&bob, &room_id).await);
}

/// Syncs from `since` until the room's ephemeral events have one that
/// `want` accepts.
async fn ephemeral_until(
    client: &TestClient,
    room_id: &str,
    since: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut since = since.to_owned();
    loop {
        let sync = client.get(&format!("/_matrix/client/v3/sync?timeout=2000&since={since}")).await.ok();
        let events =
            sync["rooms"]["join"][room_id]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
        if let Some(event) = events.into_iter().find(|e| want(e)) {
            return event;
        }
        assert!(tokio::time::Instant::now() < deadline, "the awaited ephemeral event never arrived: {sync}");
        since = sync["next_batch"].as_str().expect("token").to_owned();
    }
}

async fn typing_and_receipts_cross_servers(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (alice_id, bob_id) = (alice.user_id.clone().expect("user"), bob.user_id.clone().expect("user"));
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    join_through(&bob, &a, &room_id).await;
    let (_, bob_since) = sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.member").await;
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    // Alice types: Bob's server shows it.
    let typing = format!("/_matrix/client/v3/rooms/{}/typing/{}", encode(&room_id), encode(&alice_id));
    alice.put(&typing, json!({ "typing": true, "timeout": 20000 })).await.ok();
    ephemeral_until(&bob, &room_id, &bob_since, |e| {
        e["type"] == "m.typing"
            && e["content"]["user_ids"].as_array().is_some_and(|u| u.contains(&json!(alice_id)))
    })
    .await;

    // Bob reads Alice's message: Alice's server shows his receipt.
    let message = alice.send_text(&room_id, "read me").await;
    sync_until(&bob, &room_id, Some(&bob_since), text("read me")).await;
    let receipt =
        format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", encode(&room_id), encode(&message));
    bob.post(&receipt, json!({})).await.ok();
    let event = ephemeral_until(&alice, &room_id, &alice_since, |e| {
        e["type"] == "m.receipt" && e["content"][&message]["m.read"][&bob_id].is_object()
    })
    .await;
    assert!(event["content"][&message]["m.read"][&bob_id]["ts"].is_i64(), "{event}");
}

/// Syncs from `since` until the top-level section `pick` chooses from the
/// sync has what `want` accepts; returns that sync.
async fn sync_section_until(
    client: &TestClient,
    since: &str,
    pick: impl Fn(&Value) -> Value,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut since = since.to_owned();
    loop {
        let sync = client.get(&format!("/_matrix/client/v3/sync?timeout=2000&since={since}")).await.ok();
        if want(&pick(&sync)) {
            return sync;
        }
        assert!(tokio::time::Instant::now() < deadline, "the awaited change never arrived: {sync}");
        since = sync["next_batch"].as_str().expect("token").to_owned();
    }
}

async fn presence_and_device_changes_cross_servers(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (alice_id, bob_id) = (alice.user_id.clone().expect("user"), bob.user_id.clone().expect("user"));
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    join_through(&bob, &a, &room_id).await;
    let (_, bob_since) = sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.member").await;
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    // Alice sets a status: Bob's server shows it, as Alice's server said.
    let status = format!("/_matrix/client/v3/presence/{}/status", encode(&alice_id));
    alice.put(&status, json!({ "presence": "unavailable", "status_msg": "lunch" })).await.ok();
    let presence = |sync: &Value| sync["presence"]["events"].clone();
    let sync = sync_section_until(&bob, &bob_since, presence, |events| {
        events.as_array().is_some_and(|events| {
            events.iter().any(|e| e["sender"] == alice_id && e["content"]["status_msg"] == "lunch")
        })
    })
    .await;
    let event = sync["presence"]["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["sender"] == alice_id).cloned())
        .expect("presence");
    assert_eq!(event["content"]["presence"], "unavailable", "{event}");
    let seen = bob.get(&status).await.ok();
    assert_eq!(seen["presence"], "unavailable", "{seen}");
    assert_eq!(seen["status_msg"], "lunch", "{seen}");

    // Bob uploads keys for his device: Alice's client is told his device
    // list changed, and her key query (through server B) finds them.
    let device = bob.device_id.clone().expect("device");
    let signer = crate::keys::DeviceSigner::new(&bob);
    bob.post("/_matrix/client/v3/keys/upload", json!({ "device_keys": signer.device_keys() })).await.ok();
    let changed = |sync: &Value| sync["device_lists"]["changed"].clone();
    sync_section_until(&alice, &alice_since, changed, |users| {
        users.as_array().is_some_and(|users| users.contains(&json!(bob_id)))
    })
    .await;
    let query =
        alice.post("/_matrix/client/v3/keys/query", json!({ "device_keys": { &bob_id: [] } })).await.ok();
    assert!(query["device_keys"][&bob_id][&device].is_object(), "{query}");

    // A server speaks only for its own users: B's word on Alice is dropped.
    let edu = json!({ "edu_type": "m.presence", "content": { "push": [{
        "user_id": alice_id, "presence": "online", "status_msg": "forged", "last_active_ago": 0,
    }] } });
    let body = json!({ "origin": b.server_name(), "origin_server_ts": 1, "pdus": [], "edus": [edu] });
    let b_key = crate::federation::server_key(&b);
    crate::federation::signed_request(
        &a,
        reqwest::Method::PUT,
        "/_matrix/federation/v1/send/forged-presence",
        Some(body),
        &b_key,
        a.server_name(),
    )
    .await
    .ok();
    let own = alice.get(&status).await.ok();
    assert_eq!(own["status_msg"], "lunch", "{own}");
}

async fn a_server_the_acl_bans_is_refused(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    join_through(&bob, &a, &room_id).await;
    let b_key = crate::federation::server_key(&b);
    let levels = state_event_id(&alice, &room_id, "m.room.power_levels", "").await;
    let bob_member = state_event_id(&alice, &room_id, "m.room.member", &bob_id).await;
    let auth = vec![levels, bob_member.clone()];
    let message = tessera_core::EventTemplate::message(
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "banned" }),
    );
    let pdu = forge(&a, &b_key, &b_key, &room_id, message, &bob_id, (&bob_member, &auth)).await;

    // Server names are compared without their port: every test server is
    // `localhost`, so this bans B (and A, whose own users are not affected).
    let acl = json!({ "allow": ["*"], "deny": ["localhost"], "allow_ip_literals": false });
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.server_acl/", encode(&room_id)), acl)
        .await
        .ok();
    alice.send_text(&room_id, "still speaking locally").await;

    let body = json!({ "origin": b.server_name(), "origin_server_ts": 1, "pdus": [pdu], "edus": [] });
    let answer = crate::federation::signed_request(
        &a,
        reqwest::Method::PUT,
        "/_matrix/federation/v1/send/acl1",
        Some(body),
        &b_key,
        a.server_name(),
    )
    .await
    .ok();
    let results = answer["pdus"].as_object().expect("results");
    assert!(results.values().all(|r| r["error"].is_string()), "{answer}");
    let bodies: Vec<Value> = alice
        .all_messages(&encode(&room_id), 50)
        .await
        .into_iter()
        .map(|e| e["content"]["body"].clone())
        .collect();
    assert!(!bodies.contains(&json!("banned")), "{bodies:?}");
    let path =
        format!("/_matrix/federation/v1/state_ids/{}?event_id={}", encode(&room_id), encode(&bob_member));
    crate::federation::signed_get(&a, &path, &b_key, a.server_name()).await.assert_error(403, "M_FORBIDDEN");
}

async fn a_server_the_operator_denies_is_neither_answered_nor_asked(backend: Backend) {
    let ca = crate::harness::TestCa::new();
    let b = crate::harness::TestServer::start_federating(backend, &ca).await;
    let denied = b.server_name().to_owned();
    let a = crate::harness::TestServer::start_federating_with(backend, &ca, |c| {
        c.federation_denied_servers = format!("example.org, {denied}");
    })
    .await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;

    // B's signed requests are refused as forbidden, whatever they ask.
    let b_key = crate::federation::server_key(&b);
    let path = format!("/_matrix/federation/v1/state_ids/{}?event_id=%24x", encode(&room_id));
    let answer = crate::federation::signed_get(&a, &path, &b_key, a.server_name()).await;
    answer.assert_error(403, "M_FORBIDDEN");
    let join = format!(
        "/_matrix/federation/v1/make_join/{}/{}",
        encode(&room_id),
        encode(bob.user_id.as_deref().expect("user"))
    );
    let answer = crate::federation::signed_get(&a, &join, &b_key, a.server_name()).await;
    answer.assert_error(403, "M_FORBIDDEN");

    // Bob cannot join through A, and Alice's server never asks B: her
    // join of a room on B fails without B hearing of her.
    let through_a =
        format!("/_matrix/client/v3/join/{}?server_name={}", encode(&room_id), encode(a.server_name()));
    assert!(bob.post(&through_a, json!({})).await.status >= 400);
    let b_room = bob.create_room(json!({ "preset": "public_chat" })).await;
    let through_b = format!("/_matrix/client/v3/join/{}?server_name={}", encode(&b_room), encode(&denied));
    let answer = alice.post(&through_b, json!({})).await;
    assert!(answer.status >= 400, "{}", answer.body);
    let members = bob.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&b_room))).await.ok();
    assert_eq!(members["joined"].as_object().map(|m| m.len()), Some(1), "{members}");
}

/// A nameserver on loopback that answers every SRV query with one record:
/// `localhost` on `port`. Returns its address and how many it answered.
async fn srv_nameserver(port: u16) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS");
    let addr = socket.local_addr().expect("DNS address");
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        while let Ok((read, from)) = socket.recv_from(&mut buffer).await {
            let query = &buffer[..read];
            // The question ends after its name's zero byte, type and class.
            let Some(end) = query[12..].iter().position(|b| *b == 0).map(|at| 12 + at + 5) else { continue };
            let mut answer = query[..end].to_vec();
            answer[2] = 0x81;
            answer[3] = 0x80;
            answer[6..8].copy_from_slice(&1u16.to_be_bytes());
            answer.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0x0e, 0x10]);
            let mut data = vec![0, 10, 0, 5];
            data.extend_from_slice(&port.to_be_bytes());
            data.extend_from_slice(b"\x09localhost\x00");
            answer.extend_from_slice(&(data.len() as u16).to_be_bytes());
            answer.extend_from_slice(&data);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = socket.send_to(&answer, from).await;
        }
    });
    (addr, asked)
}

async fn a_server_found_through_its_srv_record_is_reached(backend: Backend) {
    // B is named `localhost`, with no port: only its SRV record (served by
    // A's nameserver) says where its federation listener is.
    let ca = crate::harness::TestCa::new();
    let b = crate::harness::TestServer::start_federating_with(backend, &ca, |c| {
        c.server_name = "localhost".into();
    })
    .await;
    let port = b.federation_port();
    let (nameserver, asked) = srv_nameserver(port).await;
    let a = crate::harness::TestServer::start_federating_with(backend, &ca, |c| {
        c.federation_dns_server = Some(nameserver);
    })
    .await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let room_id = bob.create_room(json!({ "preset": "public_chat" })).await;
    bob.send_text(&room_id, "hello from the SRV target").await;

    let joined = join_through(&alice, &b, &room_id).await;
    assert_eq!(joined["room_id"], room_id.as_str(), "{joined}");
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the nameserver was asked");
    alice.send_text(&room_id, "hello back").await;
    sync_until(&bob, &room_id, None, text("hello back")).await;
}

async fn another_servers_room_directory_is_listed(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let listed = alice
        .create_room(json!({ "preset": "public_chat", "visibility": "public", "name": "Over there" }))
        .await;
    let path = format!("/_matrix/client/v3/publicRooms?server={}", encode(a.server_name()));
    let page = bob.get(&path).await.ok();
    assert_eq!(page["chunk"][0]["room_id"], listed.as_str(), "{page}");
    assert_eq!(page["chunk"][0]["name"], "Over there");
    let filtered = bob
        .post(
            &format!("/_matrix/client/v3/publicRooms?server={}", encode(a.server_name())),
            json!({ "filter": { "generic_search_term": "there" } }),
        )
        .await
        .ok();
    assert_eq!(filtered["chunk"][0]["room_id"], listed.as_str(), "{filtered}");
    // And Bob joins it from there.
    join_through(&bob, &a, &listed).await;
}

async fn leaving_and_kicks_reach_the_other_server(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let carol = b.register("carol", "pw").await;
    let (bob_id, carol_id) = (bob.user_id.clone().expect("user"), carol.user_id.clone().expect("user"));
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    join_through(&bob, &a, &room_id).await;
    // Taken before Carol joins, so that her join, however fast it travels,
    // comes after it.
    let alice_since = alice.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    // Carol joins through her own server, which is in the room now.
    carol.post(&format!("/_matrix/client/v3/join/{}", encode(&room_id)), json!({})).await.ok();
    let member = |who: &str| {
        let who = who.to_owned();
        move |e: &Value| e["type"] == "m.room.member" && e["state_key"] == who.as_str()
    };
    // Carol's join went from B to A; Bob leaves, and A sees both.
    sync_until(&alice, &room_id, Some(&alice_since), member(&carol_id)).await;
    bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), json!({})).await.ok();
    let (event, _) = sync_until(&alice, &room_id, Some(&alice_since), member(&bob_id)).await;
    assert_eq!(event["content"]["membership"], "leave");

    // Alice kicks Carol: B hears of it.
    let carol_since = carol.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    alice
        .post(&format!("/_matrix/client/v3/rooms/{}/kick", encode(&room_id)), json!({ "user_id": carol_id }))
        .await
        .ok();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let sync = carol.get(&format!("/_matrix/client/v3/sync?timeout=2000&since={carol_since}")).await.ok();
        if sync["rooms"]["leave"][&room_id].is_object() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "Carol's server never heard of the kick");
    }
    let members =
        alice.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&room_id))).await.ok();
    assert_eq!(members["joined"].as_object().map(|m| m.len()), Some(1), "{members}");
}

async fn a_gap_in_the_dag_is_bridged_with_the_state_at_its_edge(backend: Backend) {
    let (_ca, a, mut b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    join_through(&bob, &a, &room_id).await;
    let (_, bob_since) = sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.member").await;
    alice.send_text(&room_id, "before the gap").await;
    sync_until(&bob, &room_id, Some(&bob_since), text("before the gap")).await;

    // B is away while A sends more than one /get_missing_events brings,
    // and A's queue for B is lost: B must bridge the gap.
    b.stop().await.expect("B stops");
    for n in 0..30 {
        alice.send_text(&room_id, &format!("gap {n}")).await;
    }
    forget_outbound_queue(&a).await;
    b.restart().await;
    let mut bob = bob.clone();
    bob.base = b.base.clone();
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(&room_id)),
            json!({ "topic": "past the gap" }),
        )
        .await
        .ok();
    alice.send_text(&room_id, "after the gap").await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let bodies: Vec<Value> = bob
            .all_messages(&encode(&room_id), 100)
            .await
            .into_iter()
            .map(|e| e["content"]["body"].clone())
            .collect();
        if bodies.contains(&json!("after the gap")) {
            assert!(bodies.contains(&json!("gap 29")), "the events just before it were fetched: {bodies:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "B never took the event after the gap: {bodies:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let topic =
        bob.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(&room_id))).await.ok();
    assert_eq!(topic["topic"], "past the gap");
    // Paging back past the gap fetches what lies behind it.
    let mut expected: Vec<Value> = vec![json!("before the gap")];
    expected.extend((0..30).map(|n| json!(format!("gap {n}"))));
    expected.push(json!("after the gap"));
    let texts: Vec<Value> =
        history_backwards(&bob, &room_id).await.into_iter().filter(Value::is_string).collect();
    assert_eq!(texts, expected, "the whole history, in order");
    // A sync from before the gap starts after it, limited: what was
    // received before the gap is not shown as if it came just before.
    let filter = encode(&json!({ "room": { "timeline": { "limit": 100 } } }).to_string());
    let sync = bob.get(&format!("/_matrix/client/v3/sync?since={bob_since}&filter={filter}")).await.ok();
    let timeline = &sync["rooms"]["join"][&room_id]["timeline"];
    assert_eq!(timeline["limited"], true, "{timeline}");
    let bodies: Vec<&Value> =
        timeline["events"].as_array().expect("events").iter().map(|e| &e["content"]["body"]).collect();
    assert!(!bodies.contains(&&json!("before the gap")), "{bodies:?}");
    assert_eq!(bodies.last(), Some(&&json!("after the gap")), "{bodies:?}");
    assert!(timeline["prev_batch"].is_string(), "{timeline}");
    // And B's own events reach A again.
    bob.send_text(&room_id, "from B after the gap").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !alice
        .all_messages(&encode(&room_id), 100)
        .await
        .iter()
        .any(|e| e["content"]["body"] == "from B after the gap")
    {
        assert!(tokio::time::Instant::now() < deadline, "A never took B's event");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Empties `server`'s queue of events for other servers (a lost queue).
async fn forget_outbound_queue(server: &crate::harness::TestServer) {
    sqlx::any::install_default_drivers();
    let pool =
        sqlx::AnyPool::connect(&server.database_url()).await.expect("connect to the server's database");
    sqlx::query("DELETE FROM outbound_pdus").execute(&pool).await.expect("forget the queue");
    pool.close().await;
}

/// The bodies of the room's events as `client` pages back from its end
/// (ten at a time, as clients do), oldest first.
async fn history_backwards(client: &TestClient, room_id: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    let mut from = String::new();
    for _ in 0..1000 {
        let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10{from}", encode(room_id));
        let page = client.get(&path).await.ok();
        bodies.extend(page["chunk"].as_array().expect("chunk").iter().map(|e| e["content"]["body"].clone()));
        match page["end"].as_str() {
            Some(end) => from = format!("&from={end}"),
            None => {
                bodies.reverse();
                return bodies;
            }
        }
    }
    panic!("pagination did not end");
}

async fn history_from_before_a_late_join_is_backfilled(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "initial_state": [{
            "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "shared" },
        }] }))
        .await;
    for n in 0..30 {
        alice.send_text(&room_id, &format!("early {n}")).await;
        if n == 10 {
            let secret = alice.send_text(&room_id, "secret").await;
            let redact =
                format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", encode(&room_id), encode(&secret));
            alice.put(&redact, json!({})).await.ok();
        }
    }
    join_through(&bob, &a, &room_id).await;
    let (_, since) = sync_until(&bob, &room_id, None, |e| e["type"] == "m.room.member").await;

    // Paging back from the end, past Bob's join, reaches A's history.
    let mut bodies = Vec::new();
    let mut types = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..20 {
        let from_param = from.as_ref().map(|f| format!("&from={f}")).unwrap_or_default();
        let page = bob
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=15{from_param}",
                encode(&room_id)
            ))
            .await
            .ok();
        for event in page["chunk"].as_array().expect("chunk") {
            types.push(event["type"].as_str().unwrap_or_default().to_owned());
            if event["type"] == "m.room.message" {
                bodies.push(event["content"]["body"].as_str().unwrap_or("(redacted)").to_owned());
            }
        }
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..30)
        .rev()
        .flat_map(|n| {
            let mut these = vec![format!("early {n}")];
            if n == 10 {
                these.insert(0, "(redacted)".to_owned());
            }
            these
        })
        .collect();
    assert_eq!(bodies, expected, "all of the history, newest first, the redacted one redacted");
    assert_eq!(
        types.last().map(String::as_str),
        Some("m.room.create"),
        "back to the room's start: {types:?}"
    );

    // The backfilled history is old news: no sync delivers it.
    let sync = bob.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}")).await.ok();
    let events =
        sync["rooms"]["join"][&room_id]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    assert!(events.iter().all(|e| e["type"] != "m.room.message"), "{sync}");
    // And reading it again asks nobody: the same page.
    let again = bob.all_messages(&encode(&room_id), 100).await;
    let again: Vec<&str> = again.iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(again.len(), 30, "{again:?}");
}

async fn a_late_event_from_a_partition_hides_no_history(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice.create_room(json!({ "preset": "public_chat", "room_version": "12" })).await;
    join_through(&bob, &a, &room_id).await;
    let b_key = crate::federation::server_key(&b);
    let levels = state_event_id(&alice, &room_id, "m.room.power_levels", "").await;
    let bob_member = state_event_id(&alice, &room_id, "m.room.member", &bob_id).await;
    let mut sent = Vec::new();
    for n in 1..=4 {
        sent.push(alice.send_text(&room_id, &format!("event {n}")).await);
    }
    // Bob's server, cut off meanwhile, sends an event after his join only:
    // it arrives now, low in the DAG.
    let late = tessera_core::EventTemplate::message(
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "late" }),
    );
    let late =
        forge(&a, &b_key, &b_key, &room_id, late, &bob_id, (&bob_member, &[levels, bob_member.clone()]))
            .await;
    let body =
        json!({ "origin": b_key.server_name().as_str(), "origin_server_ts": 1, "pdus": [late], "edus": [] });
    let answer = crate::federation::signed_request(
        &a,
        reqwest::Method::PUT,
        "/_matrix/federation/v1/send/late1",
        Some(body),
        &b_key,
        a.server_name(),
    )
    .await
    .ok();
    assert!(answer["pdus"].as_object().expect("results").values().all(|r| r == &json!({})), "{answer}");
    for n in 5..=7 {
        sent.push(alice.send_text(&room_id, &format!("event {n}")).await);
    }

    // A limited sync shows what arrived last; paging back from its
    // prev_batch gives what arrived before, all of it.
    let filter = encode(r#"{"room":{"timeline":{"limit":4}}}"#);
    let sync = alice.get(&format!("/_matrix/client/v3/sync?filter={filter}")).await.ok();
    let timeline = &sync["rooms"]["join"][&room_id]["timeline"];
    let bodies: Vec<&str> = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["late", "event 5", "event 6", "event 7"], "{timeline}");
    let prev_batch = timeline["prev_batch"].as_str().expect("prev_batch");
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=4&from={}",
            encode(&room_id),
            encode(prev_batch)
        ))
        .await
        .ok();
    let ids: Vec<&str> =
        page["chunk"].as_array().expect("chunk").iter().filter_map(|e| e["event_id"].as_str()).collect();
    let want: Vec<&str> = sent[..4].iter().rev().map(String::as_str).collect();
    assert_eq!(ids, want, "events 4, 3, 2, 1: {page}");
}

/// B's signed PUT of `event` to A's `path_template` (`{room}`/`{event}`
/// filled in); returns the answer.
async fn put_membership(
    a: &crate::harness::TestServer,
    b_key: &tessera_core::ServerSigningKey,
    path_template: &str,
    room_id: &str,
    mut event: ruma::CanonicalJsonObject,
) -> crate::harness::Response {
    let rules = ruma::RoomVersionId::V12.rules().expect("rules");
    event.insert("origin_server_ts".into(), ruma::CanonicalJsonValue::Integer(ruma::Int::from(1_u32)));
    b_key.hash_and_sign_event(&mut event, &rules.redaction).expect("sign");
    let event_id = format!("${}", ruma::signatures::reference_hash(&event, &rules).expect("hash"));
    let path = path_template.replace("{room}", &encode(room_id)).replace("{event}", &encode(&event_id));
    let body = serde_json::to_value(&event).expect("json");
    crate::federation::signed_request(a, reqwest::Method::PUT, &path, Some(body), b_key, a.server_name())
        .await
}

/// The template A's `make_join`/`make_leave` gives for `user`.
async fn make_membership(
    a: &crate::harness::TestServer,
    b_key: &tessera_core::ServerSigningKey,
    kind: &str,
    room_id: &str,
    user: &str,
) -> ruma::CanonicalJsonObject {
    let path = format!("/_matrix/federation/v1/make_{kind}/{}/{}?ver=12", encode(room_id), encode(user));
    let answer = crate::federation::signed_get(a, &path, b_key, a.server_name()).await.ok();
    serde_json::from_value(answer["event"].clone()).expect("template")
}

async fn the_deprecated_v1_join_and_leave_are_served(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat", "room_version": "12" })).await;
    let b_key = crate::federation::server_key(&b);
    let dave = format!("@dave:{}", b.server_name());
    let members = format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&room_id));

    // A message is not a join, on the v1 path as on v2.
    let mut not_a_join = make_membership(&a, &b_key, "join", &room_id, &dave).await;
    not_a_join.insert("type".into(), ruma::CanonicalJsonValue::String("m.room.message".into()));
    not_a_join.remove("state_key");
    not_a_join.insert("content".into(), serde_json::from_value(json!({ "body": "hi" })).expect("content"));
    let answer =
        put_membership(&a, &b_key, "/_matrix/federation/v1/send_join/{room}/{event}", &room_id, not_a_join)
            .await;
    answer.assert_error(400, "M_BAD_JSON");

    // A join: the state comes back after the status, as v1 has it.
    let join = make_membership(&a, &b_key, "join", &room_id, &dave).await;
    let answer =
        put_membership(&a, &b_key, "/_matrix/federation/v1/send_join/{room}/{event}", &room_id, join)
            .await
            .ok();
    assert_eq!(answer[0], 200, "{answer}");
    let state = answer[1]["state"].as_array().expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{answer}");
    assert!(answer[1]["auth_chain"].is_array(), "{answer}");
    assert!(alice.get(&members).await.ok()["joined"][&dave].is_object());

    // And a leave, answered `[200, {}]`.
    let leave = make_membership(&a, &b_key, "leave", &room_id, &dave).await;
    let answer =
        put_membership(&a, &b_key, "/_matrix/federation/v1/send_leave/{room}/{event}", &room_id, leave)
            .await
            .ok();
    assert_eq!(answer, json!([200, {}]));
    assert!(alice.get(&members).await.ok()["joined"][&dave].is_null());
}

async fn a_join_asking_to_omit_members_gets_the_heroes_only(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat", "room_version": "12" })).await;
    let mut members = vec![alice.user_id.clone().expect("user")];
    for n in 0..6 {
        let user = a.register(&format!("user{n}"), "pw").await;
        user.post(&format!("/_matrix/client/v3/join/{}", encode(&room_id)), json!({})).await.ok();
        members.push(user.user_id.clone().expect("user"));
    }
    let b_key = crate::federation::server_key(&b);
    let dave = format!("@dave:{}", b.server_name());

    let join = make_membership(&a, &b_key, "join", &room_id, &dave).await;
    let path = "/_matrix/federation/v2/send_join/{room}/{event}?omit_members=true";
    let answer = put_membership(&a, &b_key, path, &room_id, join).await.ok();
    assert_eq!(answer["members_omitted"], true, "{answer}");
    assert_eq!(answer["servers_in_room"], json!([a.server_name()]), "{answer}");
    let state = answer["state"].as_array().expect("state");
    let kinds: Vec<&str> = state.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in ["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility"] {
        assert!(kinds.contains(&kind), "{kind} is kept: {kinds:?}");
    }
    // The heroes' member events only: five of the seven members.
    let kept: Vec<&str> = state
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert_eq!(kept.len(), 5, "{kept:?}");
    assert!(kept.iter().all(|m| members.iter().any(|x| x == m)), "{kept:?}");
    // Nothing twice: the auth chain leaves out what the state holds.
    let state_json: Vec<String> = state.iter().map(Value::to_string).collect();
    for event in answer["auth_chain"].as_array().expect("auth chain") {
        assert!(!state_json.contains(&event.to_string()), "in both: {event}");
    }
    // Without the flag: every member, as before.
    let join = make_membership(&a, &b_key, "join", &room_id, &format!("@erin:{}", b.server_name())).await;
    let path = "/_matrix/federation/v2/send_join/{room}/{event}";
    let answer = put_membership(&a, &b_key, path, &room_id, join).await.ok();
    assert!(answer.get("members_omitted").is_none_or(|m| m == false), "{answer}");
    let members_sent =
        answer["state"].as_array().expect("state").iter().filter(|e| e["type"] == "m.room.member").count();
    assert_eq!(members_sent, 8, "the seven and Dave: {answer}");
}

async fn renames_missed_while_away_arrive_with_the_next_message(backend: Backend) {
    let (_ca, mut a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    join_through(&bob, &a, &room_id).await;
    sync_until(&alice, &room_id, None, |e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str())
        .await;

    // A is away while Bob renames himself 60 times (each name's auth
    // events name the one before: a long auth chain), and B's queue for A
    // is lost.
    a.stop().await.expect("A stops");
    let member =
        format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(&room_id), encode(&bob_id));
    for n in 0..60 {
        bob.put(&member, json!({ "membership": "join", "displayname": format!("Bob {n}") })).await.ok();
    }
    forget_outbound_queue(&b).await;
    a.restart().await;
    let mut alice = alice.clone();
    alice.base = a.base.clone();

    // Bob's next message names his last name among its auth events: A
    // takes it, with the whole chain behind it.
    bob.send_text(&room_id, "after the renames").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let bodies: Vec<Value> = alice
            .all_messages(&encode(&room_id), 100)
            .await
            .into_iter()
            .map(|e| e["content"]["body"].clone())
            .collect();
        if bodies.contains(&json!("after the renames")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "A never took Bob's message: {bodies:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let shown = alice.get(&member).await.ok();
    assert_eq!(shown["displayname"], "Bob 59", "{shown}");
}
