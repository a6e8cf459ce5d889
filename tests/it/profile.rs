//! `GET /profile/{userId}`, `GET/PUT /profile/{userId}/displayname|avatar_url`,
//! and the user directory (`POST /user_directory/search`).

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    profiles_are_set_and_read,
    profile_errors,
    profile_changes_reach_member_events,
    the_user_directory_finds_users_in_shared_and_public_rooms
);

async fn profiles_are_set_and_read(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let me = "/_matrix/client/v3/profile/@alice:tessera.test";
    // New accounts start with their localpart as display name, as on Synapse.
    assert_eq!(alice.get(&format!("{me}/displayname")).await.ok()["displayname"], "alice");

    alice.put(&format!("{me}/displayname"), json!({ "displayname": "Alice Liddell" })).await.ok();
    alice.put(&format!("{me}/avatar_url"), json!({ "avatar_url": "mxc://tessera.test/abc123" })).await.ok();

    // Profiles are public: no token needed to read them.
    let anonymous = server.client();
    let profile = anonymous.get(me).await.ok();
    assert_eq!(profile, json!({ "displayname": "Alice Liddell", "avatar_url": "mxc://tessera.test/abc123" }));
    assert_eq!(
        anonymous.get(&format!("{me}/avatar_url")).await.ok()["avatar_url"],
        "mxc://tessera.test/abc123"
    );

    // Values that are not mxc:// URIs are kept as given (Synapse does too).
    alice.put(&format!("{me}/avatar_url"), json!({ "avatar_url": "https://example.org/a.png" })).await.ok();
    assert_eq!(anonymous.get(me).await.ok()["avatar_url"], "https://example.org/a.png");

    // Element Web clears the avatar with an empty string.
    alice.put(&format!("{me}/avatar_url"), json!({ "avatar_url": "" })).await.ok();
    assert!(anonymous.get(me).await.ok().get("avatar_url").is_none());
}

async fn profile_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    server.register("bob", "secret-pw").await;
    alice
        .put("/_matrix/client/v3/profile/@bob:tessera.test/displayname", json!({ "displayname": "Not Bob" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice.get("/_matrix/client/v3/profile/@nobody:tessera.test").await.assert_error(404, "M_NOT_FOUND");
    alice.get("/_matrix/client/v3/profile/not-a-user-id").await.assert_error(400, "M_INVALID_PARAM");
    alice
        .put(
            "/_matrix/client/v3/profile/@alice:tessera.test/displayname",
            json!({ "displayname": "x".repeat(300) }),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
    server
        .client()
        .put("/_matrix/client/v3/profile/@alice:tessera.test/displayname", json!({ "displayname": "anon" }))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

/// A new display name or avatar reaches the user's member event in every
/// room they are joined to (and none they have left), over sync.
async fn profile_changes_reach_member_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let bob = server.register("bob", "secret-pw").await;
    let me = "/_matrix/client/v3/profile/@alice:tessera.test";
    let first = alice.create_room(json!({ "preset": "public_chat" })).await;
    let second = bob.create_room(json!({ "preset": "public_chat" })).await;
    let left = bob.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&first).await.ok();
    alice.join(&second).await.ok();
    alice.join(&left).await.ok();
    alice.post(&format!("/_matrix/client/v3/rooms/{left}/leave"), json!({})).await.ok();
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("next_batch").to_owned();

    alice.put(&format!("{me}/displayname"), json!({ "displayname": "Alice Liddell" })).await.ok();
    alice.put(&format!("{me}/avatar_url"), json!({ "avatar_url": "mxc://tessera.test/rabbit" })).await.ok();

    let member = |room: String| {
        let bob = &bob;
        async move {
            bob.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@alice:tessera.test"))
                .await
                .ok()
        }
    };
    for room in [&first, &second] {
        let content = member(room.clone()).await;
        assert_eq!(content["membership"], "join");
        assert_eq!(content["displayname"], "Alice Liddell", "in {room}");
        assert_eq!(content["avatar_url"], "mxc://tessera.test/rabbit", "in {room}");
    }
    let content = member(left.clone()).await;
    assert_eq!(content["membership"], "leave", "a room alice left gets no new member event");
    assert_ne!(content["displayname"], "Alice Liddell");

    // Bob sees the change in his incremental sync, as a timeline state event.
    let synced = bob.sync(Some(&since), "").await;
    let timeline =
        synced["rooms"]["join"][&second]["timeline"]["events"].as_array().expect("timeline").clone();
    assert!(
        timeline.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == "@alice:tessera.test"
            && e["content"]["displayname"] == "Alice Liddell"),
        "{timeline:?}"
    );
    // A per-room name survives the next global change; the other rooms
    // follow it.
    let own = format!("/_matrix/client/v3/rooms/{second}/state/m.room.member/@alice:tessera.test");
    alice.put(&own, json!({ "membership": "join", "displayname": "Private Alice" })).await.ok();
    alice.put(&format!("{me}/displayname"), json!({ "displayname": "Alice L." })).await.ok();
    assert_eq!(member(second.clone()).await["displayname"], "Private Alice");
    assert_eq!(member(first.clone()).await["displayname"], "Alice L.");

    // Setting the same name again changes nothing in the rooms.
    let before = member(first.clone()).await;
    let events_before = alice.all_messages(&first, 100).await.len();
    alice.put(&format!("{me}/displayname"), json!({ "displayname": "Alice L." })).await.ok();
    assert_eq!(member(first.clone()).await, before);
    assert_eq!(alice.all_messages(&first, 100).await.len(), events_before);
}

async fn the_user_directory_finds_users_in_shared_and_public_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let bob = server.register("bob", "secret-pw").await;
    let carol = server.register("carol", "secret-pw").await;
    let dave = server.register("dave", "secret-pw").await;
    let search = |term: &str, limit: Option<u64>| {
        let mut body = json!({ "search_term": term });
        if let Some(limit) = limit {
            body["limit"] = limit.into();
        }
        body
    };
    let ids = |found: &serde_json::Value| -> Vec<String> {
        found["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|u| u["user_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = "/_matrix/client/v3/user_directory/search";
    alice
        .put(
            "/_matrix/client/v3/profile/@alice:tessera.test/displayname",
            json!({ "displayname": "Alice Cooper" }),
        )
        .await
        .ok();
    // Alice is in a published room; Carol and Dave share a private one,
    // where Dave goes by a name of that room only.
    let public = alice.create_room(json!({ "visibility": "public", "preset": "public_chat" })).await;
    let private =
        carol.create_room(json!({ "preset": "private_chat", "invite": ["@dave:tessera.test"] })).await;
    dave.join(&private).await.ok();
    let member = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/@dave:tessera.test",
        crate::harness::encode(&private)
    );
    dave.put(&member, json!({ "membership": "join", "displayname": "Secret Dave" })).await.ok();

    // Anyone finds Alice, by her name or her user ID, any case.
    let found = bob.post(path, search("alice cooper", None)).await.ok();
    assert_eq!(
        found["results"],
        json!([{ "user_id": "@alice:tessera.test", "display_name": "Alice Cooper" }])
    );
    assert_eq!(found["limited"], false);
    assert_eq!(ids(&bob.post(path, search("@ALI", None)).await.ok()), ["@alice:tessera.test"]);
    // Dave only by those who share a room with him, and not by the
    // room's own name for him.
    assert!(ids(&bob.post(path, search("dave", None)).await.ok()).is_empty());
    assert_eq!(ids(&carol.post(path, search("dave", None)).await.ok()), ["@dave:tessera.test"]);
    assert!(ids(&carol.post(path, search("secret", None)).await.ok()).is_empty());
    // Patterns are text, not wildcards.
    assert!(ids(&bob.post(path, search("%", None)).await.ok()).is_empty());
    // The limit, and whether there were more.
    bob.join(&public).await.ok();
    carol.join(&public).await.ok();
    let found = dave.post(path, search("tessera.test", Some(2))).await.ok();
    assert_eq!(ids(&found), ["@alice:tessera.test", "@bob:tessera.test"]);
    assert_eq!(found["limited"], true);
    // Never oneself.
    let found = alice.post(path, search("tessera.test", None)).await.ok();
    assert_eq!(ids(&found), ["@bob:tessera.test", "@carol:tessera.test"]);
    // A request without a term is the client's mistake.
    bob.post(path, json!({})).await.assert_error(400, "M_MISSING_PARAM");
    server.client().post(path, search("alice", None)).await.assert_error(401, "M_MISSING_TOKEN");
}
