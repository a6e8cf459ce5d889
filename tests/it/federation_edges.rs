//! Federation where a server is not (or no longer) a plain member of the
//! room: an invite rescinded, a restricted room admitted through the one
//! server that may, a space whose rooms live on another server, history
//! found by time on another server, a room upgraded elsewhere, and the
//! devices of a user joining a new server's room.

use serde_json::{Value, json};

use crate::{
    both_backends,
    federation::{server_key, signed_get, two_servers},
    federation_membership::{membership_becomes, sync_until},
    harness::{Backend, encode},
};

both_backends!(
    an_invite_rescinded_by_a_kick_reaches_the_invitee,
    a_server_no_longer_in_the_allowed_room_cannot_vouch,
    a_local_join_no_one_here_may_admit_goes_through_the_server_that_may,
    a_space_shows_rooms_held_by_another_server,
    an_event_found_by_time_on_another_server_is_fetched,
    push_rules_follow_a_room_upgraded_on_another_server,
    joining_a_room_with_new_people_lists_the_joiner_too
);

fn join_via(room: &str, server: &str) -> String {
    format!("/_matrix/client/v3/join/{}?server_name={}", encode(room), encode(server))
}

fn set_levels(room: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", encode(room))
}

async fn an_invite_rescinded_by_a_kick_reaches_the_invitee(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (alice_id, bob_id) = (alice.user_id.clone().expect("user"), bob.user_id.clone().expect("user"));
    let room_id = alice.create_room(json!({ "preset": "private_chat", "invite": [bob_id] })).await;
    let sync = sync_until(&bob, None, |s| s["rooms"]["invite"][&room_id].is_object()).await;
    let since = sync["next_batch"].as_str().expect("token").to_owned();

    // B is in no room with A: the kick reaches it as the end of Bob's invite.
    alice
        .post(&format!("/_matrix/client/v3/rooms/{}/kick", encode(&room_id)), json!({ "user_id": bob_id }))
        .await
        .ok();
    let sync = sync_until(&bob, Some(&since), |s| s["rooms"]["leave"][&room_id].is_object()).await;
    let events = sync["rooms"]["leave"][&room_id]["timeline"]["events"].as_array().expect("timeline").clone();
    assert!(
        events.iter().any(|e| e["state_key"] == bob_id.as_str()
            && e["sender"] == alice_id.as_str()
            && e["content"]["membership"] == "leave"),
        "{events:?}"
    );
    let initial = bob.sync(None, "").await;
    assert!(initial["rooms"]["invite"][&room_id].is_null(), "{initial}");
}

async fn a_server_no_longer_in_the_allowed_room_cannot_vouch(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let space = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.post(&join_via(&space, a.server_name()), json!({})).await.ok();
    let restricted = alice
        .create_room(json!({
            "preset": "private_chat",
            "room_version": "10",
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] },
            }],
        }))
        .await;
    // A leaves the space: what it holds of Bob's membership there is stale.
    alice.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&space)), json!({})).await.ok();

    let path = format!("/_matrix/federation/v1/make_join/{}/{}?ver=10", encode(&restricted), encode(&bob_id));
    signed_get(&a, &path, &server_key(&b), a.server_name())
        .await
        .assert_error(400, "M_UNABLE_TO_AUTHORISE_JOIN");
    let refused = bob.post(&join_via(&restricted, a.server_name()), json!({})).await;
    assert!(refused.status >= 400, "{}", refused.body);
}

async fn a_local_join_no_one_here_may_admit_goes_through_the_server_that_may(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let carol = a.register("carol", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (alice_id, bob_id, carol_id) = (
        alice.user_id.clone().expect("user"),
        bob.user_id.clone().expect("user"),
        carol.user_id.clone().expect("user"),
    );
    let space = alice.create_room(json!({ "preset": "public_chat", "room_version": "10" })).await;
    bob.post(&join_via(&space, a.server_name()), json!({})).await.ok();
    carol.post(&format!("/_matrix/client/v3/join/{}", encode(&space)), json!({})).await.ok();
    let restricted = alice
        .create_room(json!({
            "preset": "private_chat",
            "room_version": "10",
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] },
            }],
            "power_level_content_override": { "users": { &alice_id: 100, &bob_id: 100 } },
        }))
        .await;
    bob.post(&join_via(&restricted, a.server_name()), json!({})).await.ok();
    membership_becomes(&alice, &restricted, &bob_id, "join").await;
    // Alice gives up her power: nobody on A may admit anyone now.
    alice
        .put(&set_levels(&restricted), json!({ "users": { &alice_id: 0, &bob_id: 100 }, "invite": 50 }))
        .await
        .ok();
    // B must have the new levels before it is asked.
    let levels_path = format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", encode(&restricted));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while bob.get(&levels_path).await.body["users"][&alice_id] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "B never took the new levels");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Carol joins on A, where the room is: B vouches for her.
    carol.post(&format!("/_matrix/client/v3/join/{}", encode(&restricted)), json!({})).await.ok();
    membership_becomes(&bob, &restricted, &carol_id, "join").await;
    let path =
        format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(&restricted), encode(&carol_id));
    assert_eq!(alice.get(&path).await.ok()["join_authorised_via_users_server"], bob_id.as_str());
}

async fn a_space_shows_rooms_held_by_another_server(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let space = alice
        .create_room(
            json!({ "preset": "public_chat", "name": "Space", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let over_there = bob.create_room(json!({ "preset": "public_chat", "name": "Over there" })).await;
    let private = bob.create_room(json!({ "preset": "private_chat", "name": "Private" })).await;
    for child in [&over_there, &private] {
        let path =
            format!("/_matrix/client/v3/rooms/{}/state/m.space.child/{}", encode(&space), encode(child));
        alice.put(&path, json!({ "via": [b.server_name()] })).await.ok();
    }

    let page = alice.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", encode(&space))).await.ok();
    let rooms = page["rooms"].as_array().expect("rooms");
    let names: Vec<&Value> = rooms.iter().map(|r| &r["name"]).collect();
    assert_eq!(names, [&json!("Space"), &json!("Over there")], "{page}");
    assert_eq!(rooms[1]["room_id"], over_there.as_str());
    assert_eq!(rooms[1]["num_joined_members"], 1);
}

async fn an_event_found_by_time_on_another_server_is_fetched(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let early = alice.send_text(&room_id, "early").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    bob.post(&join_via(&room_id, a.server_name()), json!({})).await.ok();

    // B holds nothing from before Bob's join: A is asked, and the event
    // fetched, so that Bob can read around it.
    let path = format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?dir=f&ts={before}", encode(&room_id));
    let found = bob.get(&path).await.ok();
    assert_eq!(found["event_id"], early.as_str(), "{found}");
    let context = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/context/{}?limit=0", encode(&room_id), encode(&early)))
        .await
        .ok();
    assert_eq!(context["event"]["content"]["body"], "early", "{context}");
    // Paging back from just after it (`end`) reads it too.
    let end = context["end"].as_str().expect("end");
    let page = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10&from={end}", encode(&room_id)))
        .await
        .ok();
    let ids: Vec<&Value> = page["chunk"].as_array().expect("chunk").iter().map(|e| &e["event_id"]).collect();
    assert_eq!(ids.first(), Some(&&json!(early)), "{page}");
}

async fn push_rules_follow_a_room_upgraded_on_another_server(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat", "room_version": "10" })).await;
    bob.post(&join_via(&room_id, a.server_name()), json!({})).await.ok();
    let rule = format!("/_matrix/client/v3/pushrules/global/room/{}", encode(&room_id));
    bob.put(&rule, json!({ "actions": ["dont_notify"] })).await.ok();

    let upgraded = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/upgrade", encode(&room_id)),
            json!({ "new_version": "11" }),
        )
        .await
        .ok();
    let new_room = upgraded["replacement_room"].as_str().expect("new room").to_owned();
    let copied = format!("/_matrix/client/v3/pushrules/global/room/{}", encode(&new_room));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = bob.get(&copied).await;
        if response.status == 200 {
            assert_eq!(response.body["actions"], json!(["dont_notify"]), "{}", response.body);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Bob's rule never followed the room: {}",
            response.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn joining_a_room_with_new_people_lists_the_joiner_too(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (alice_id, bob_id) = (alice.user_id.clone().expect("user"), bob.user_id.clone().expect("user"));
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    bob.post(&join_via(&room_id, a.server_name()), json!({})).await.ok();
    // Bob's other devices now share a room with new people: his own list
    // is news to them, as Alice's is.
    let sync = sync_until(&bob, Some(&since), |s| {
        s["device_lists"]["changed"].as_array().is_some_and(|c| c.contains(&json!(alice_id)))
    })
    .await;
    let changed = sync["device_lists"]["changed"].as_array().expect("changed").clone();
    assert!(changed.contains(&json!(bob_id)), "{sync}");
}
