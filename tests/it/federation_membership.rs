//! Memberships across servers besides a plain join: invites of remote
//! users (`/invite` v2), accepted and rejected (`make_leave`/`send_leave`,
//! or a leave signed locally when the inviting server is down), knocks
//! (`make_knock`/`send_knock`), remote aliases (`/query/directory`) and
//! restricted rooms joined through a server that vouches for the join.

use serde_json::{Value, json};

use crate::{
    both_backends,
    federation::two_servers,
    harness::{Backend, TestClient, encode},
};

both_backends!(
    a_remote_user_is_invited_and_joins,
    a_remote_invite_is_rejected_and_the_inviter_sees_it,
    an_invite_is_rejected_while_the_inviting_server_is_down,
    a_knock_on_a_remote_room_is_answered_with_an_invite,
    a_remote_alias_resolves_and_is_joined,
    a_restricted_room_is_joined_through_a_server_that_vouches,
    bad_invites_from_another_server_are_refused
);

/// Syncs from `since` until `want` accepts the response; returns it.
pub(crate) async fn sync_until(
    client: &TestClient,
    since: Option<&str>,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut since = since.map(str::to_owned);
    loop {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=2000&since={since}"),
            None => "/_matrix/client/v3/sync".to_owned(),
        };
        let sync = client.get(&path).await.ok();
        if want(&sync) {
            return sync;
        }
        assert!(tokio::time::Instant::now() < deadline, "the awaited change never came: {sync}");
        since = Some(sync["next_batch"].as_str().expect("token").to_owned());
    }
}

/// The membership of `user` in the room, as `client`'s server holds it.
async fn membership(client: &TestClient, room_id: &str, user: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(room_id), encode(user));
    let response = client.get(&path).await;
    if response.status != 200 {
        return Value::Null;
    }
    response.ok()["membership"].clone()
}

/// Waits until `client`'s server holds `user`'s membership as `want`.
pub(crate) async fn membership_becomes(client: &TestClient, room_id: &str, user: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if membership(client, room_id, user).await == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{user} never became {want} in {room_id}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn invite(client: &TestClient, room_id: &str, user: &str) -> crate::harness::Response {
    let path = format!("/_matrix/client/v3/rooms/{}/invite", encode(room_id));
    client.post(&path, json!({ "user_id": user })).await
}

async fn a_remote_user_is_invited_and_joins(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (alice_id, bob_id) = (alice.user_id.clone().expect("user"), bob.user_id.clone().expect("user"));
    let room_id = alice.create_room(json!({ "preset": "private_chat", "name": "Invited" })).await;
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    invite(&alice, &room_id, &bob_id).await.ok();
    assert_eq!(membership(&alice, &room_id, &bob_id).await, "invite");

    // Bob's sync shows the invite with what it said of the room.
    let sync = sync_until(&bob, Some(&since), |s| s["rooms"]["invite"][&room_id].is_object()).await;
    let state =
        sync["rooms"]["invite"][&room_id]["invite_state"]["events"].as_array().expect("state").clone();
    let find = |kind: &str| state.iter().find(|e| e["type"] == kind).cloned();
    assert_eq!(find("m.room.name").expect("name")["content"]["name"], "Invited");
    assert!(find("m.room.create").is_some(), "{state:?}");
    let own = state.iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str());
    let own = own.expect("the invite itself");
    assert_eq!(own["sender"], alice_id.as_str());
    assert_eq!(own["content"]["membership"], "invite");

    // Bob accepts, naming no server: the inviter's is used.
    bob.post(&format!("/_matrix/client/v3/join/{}", encode(&room_id)), json!({})).await.ok();
    membership_becomes(&alice, &room_id, &bob_id, "join").await;
    let sync = sync_until(&bob, None, |s| s["rooms"]["join"][&room_id].is_object()).await;
    assert!(sync["rooms"]["invite"][&room_id].is_null(), "the invite is gone: {sync}");
    bob.send_text(&room_id, "thanks for the invite").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let seen = alice.all_messages(&encode(&room_id), 20).await;
        if seen.iter().any(|m| m["content"]["body"] == "thanks for the invite") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "Bob's message never reached Alice");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // B is in the room now: Carol's invite reaches her through the room
    // (and `/invite`, once), and she joins on B.
    let carol = b.register("carol", "pw").await;
    let carol_id = carol.user_id.clone().expect("user");
    invite(&alice, &room_id, &carol_id).await.ok();
    let sync = sync_until(&carol, None, |s| s["rooms"]["invite"][&room_id].is_object()).await;
    let state =
        sync["rooms"]["invite"][&room_id]["invite_state"]["events"].as_array().expect("state").clone();
    assert!(state.iter().any(|e| e["type"] == "m.room.name"), "{state:?}");
    carol.post(&format!("/_matrix/client/v3/join/{}", encode(&room_id)), json!({})).await.ok();
    membership_becomes(&alice, &room_id, &carol_id, "join").await;
}

async fn a_remote_invite_is_rejected_and_the_inviter_sees_it(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice.create_room(json!({ "preset": "private_chat" })).await;
    invite(&alice, &room_id, &bob_id).await.ok();
    let sync = sync_until(&bob, None, |s| s["rooms"]["invite"][&room_id].is_object()).await;
    let since = sync["next_batch"].as_str().expect("token").to_owned();

    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)),
        json!({ "reason": "no thanks" }),
    )
    .await
    .ok();
    // Alice's server took the rejection through make_leave/send_leave.
    membership_becomes(&alice, &room_id, &bob_id, "leave").await;
    let state = alice.get(&format!("/_matrix/client/v3/rooms/{}/state", encode(&room_id))).await.ok();
    let leave = state.as_array().expect("state").iter().find(|e| e["state_key"] == bob_id.as_str()).cloned();
    assert_eq!(leave.expect("Bob's leave")["content"]["reason"], "no thanks");
    // Bob's sync moves the room from invite to leave.
    let sync = sync_until(&bob, Some(&since), |s| s["rooms"]["leave"][&room_id].is_object()).await;
    assert!(sync["rooms"]["invite"][&room_id].is_null(), "{sync}");
    let initial = bob.sync(None, "").await;
    assert!(initial["rooms"]["invite"][&room_id].is_null(), "no invite after rejecting: {initial}");
    // Leaving again: Bob is not in the room.
    bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

async fn an_invite_is_rejected_while_the_inviting_server_is_down(backend: Backend) {
    let (_ca, mut a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice.create_room(json!({ "preset": "private_chat" })).await;
    invite(&alice, &room_id, &bob_id).await.ok();
    let sync = sync_until(&bob, None, |s| s["rooms"]["invite"][&room_id].is_object()).await;
    let since = sync["next_batch"].as_str().expect("token").to_owned();

    a.stop().await.expect("A stops");
    // The rejection stands on B alone.
    bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), json!({})).await.ok();
    let sync = sync_until(&bob, Some(&since), |s| s["rooms"]["leave"][&room_id].is_object()).await;
    assert!(sync["rooms"]["invite"][&room_id].is_null(), "{sync}");
    // The leave signed here is what the left room shows.
    let events = sync["rooms"]["leave"][&room_id]["timeline"]["events"].as_array().expect("timeline").clone();
    assert!(
        events.iter().any(|e| e["state_key"] == bob_id.as_str() && e["content"]["membership"] == "leave"),
        "{events:?}"
    );
    let initial = bob.sync(None, "").await;
    assert!(initial["rooms"]["invite"][&room_id].is_null(), "{initial}");
}

async fn a_knock_on_a_remote_room_is_answered_with_an_invite(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice
        .create_room(json!({
            "preset": "private_chat",
            "name": "Knock here",
            "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }],
        }))
        .await;
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    // Joining is refused; knocking through A is let through.
    let join =
        format!("/_matrix/client/v3/join/{}?server_name={}", encode(&room_id), encode(a.server_name()));
    bob.post(&join, json!({})).await.assert_error(403, "M_FORBIDDEN");
    let knock = format!("/_matrix/client/v3/knock/{}?via={}", encode(&room_id), encode(a.server_name()));
    let knocked = bob.post(&knock, json!({ "reason": "let me in" })).await.ok();
    assert_eq!(knocked["room_id"], room_id.as_str());
    membership_becomes(&alice, &room_id, &bob_id, "knock").await;
    let sync = sync_until(&bob, Some(&since), |s| s["rooms"]["knock"][&room_id].is_object()).await;
    let state = sync["rooms"]["knock"][&room_id]["knock_state"]["events"].as_array().expect("state").clone();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock here"),
        "{state:?}"
    );
    assert!(
        state.iter().any(|e| e["state_key"] == bob_id.as_str() && e["content"]["membership"] == "knock"),
        "{state:?}"
    );

    // Alice lets Bob in with an invite; he joins.
    invite(&alice, &room_id, &bob_id).await.ok();
    sync_until(&bob, Some(&since), |s| s["rooms"]["invite"][&room_id].is_object()).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", encode(&room_id)), json!({})).await.ok();
    membership_becomes(&alice, &room_id, &bob_id, "join").await;
}

async fn a_remote_alias_resolves_and_is_joined(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let room_id = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "lobby" })).await;
    let alias = format!("#lobby:{}", a.server_name());

    let found = bob.get(&format!("/_matrix/client/v3/directory/room/{}", encode(&alias))).await.ok();
    assert_eq!(found["room_id"], room_id.as_str());
    assert_eq!(found["servers"], json!([a.server_name()]));
    let unknown = format!("#nowhere:{}", a.server_name());
    bob.get(&format!("/_matrix/client/v3/directory/room/{}", encode(&unknown)))
        .await
        .assert_error(404, "M_NOT_FOUND");

    let joined = bob.post(&format!("/_matrix/client/v3/join/{}", encode(&alias)), json!({})).await.ok();
    assert_eq!(joined["room_id"], room_id.as_str());
    membership_becomes(&alice, &room_id, &bob_id, "join").await;
    // A now names both servers as ways into the room.
    let found = alice.get(&format!("/_matrix/client/v3/directory/room/{}", encode(&alias))).await.ok();
    let servers = found["servers"].as_array().expect("servers").clone();
    assert!(servers.contains(&json!(b.server_name())), "{found}");
}

async fn a_restricted_room_is_joined_through_a_server_that_vouches(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let space = alice.create_room(json!({ "preset": "public_chat" })).await;
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
    let through_a = |room: &str| {
        format!("/_matrix/client/v3/join/{}?server_name={}", encode(room), encode(a.server_name()))
    };
    // Not yet in the space: refused.
    bob.post(&through_a(&restricted), json!({})).await.assert_error(403, "M_FORBIDDEN");
    bob.post(&through_a(&space), json!({})).await.ok();
    // In the space: A vouches for the join and signs it.
    bob.post(&through_a(&restricted), json!({})).await.ok();
    membership_becomes(&alice, &restricted, &bob_id, "join").await;
    let alice_id = alice.user_id.clone().expect("user");
    let path =
        format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(&restricted), encode(&bob_id));
    let content = bob.get(&path).await.ok();
    assert_eq!(content["join_authorised_via_users_server"], alice_id.as_str());
}

async fn bad_invites_from_another_server_are_refused(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let room_id = alice.create_room(json!({ "preset": "private_chat" })).await;
    // A user B does not have.
    let nobody = format!("@nobody:{}", b.server_name());
    invite(&alice, &room_id, &nobody).await.assert_error(404, "M_NOT_FOUND");
    assert_eq!(membership(&alice, &room_id, &nobody).await, Value::Null, "no invite stored");
    // A server that cannot be reached: the gateway's error, nothing stored.
    let unreachable = "@someone:unreachable.invalid";
    invite(&alice, &room_id, unreachable).await.assert_error(502, "M_UNKNOWN");
    assert_eq!(membership(&alice, &room_id, unreachable).await, Value::Null);
}
