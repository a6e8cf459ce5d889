//! Room directory: aliases (`/directory/room/{roomAlias}`,
//! `/rooms/{roomId}/aliases`), visibility (`/directory/list/room/{roomId}`),
//! `/publicRooms`, and the check of `m.room.canonical_alias` content, on
//! both databases.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer, encode},
};

both_backends!(
    aliases_are_created_resolved_and_listed,
    aliases_are_deleted_by_their_creator_moderators_and_admins,
    deleting_an_advertised_alias_updates_canonical_alias,
    visibility_in_the_directory,
    public_rooms_show_published_rooms,
    public_rooms_filter_by_search_term_and_type,
    public_rooms_page_both_ways,
    canonical_alias_content_is_checked,
    public_rooms_name_every_join_rule,
);

const SECRET: &str = "directory-secret";

/// A server with shared-secret registration, for making an admin.
async fn start(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| c.registration_shared_secret = Some(SECRET.into())).await
}

/// Registers a server admin through Synapse's shared-secret API.
async fn register_admin(server: &TestServer, name: &str) -> TestClient {
    let mut client = server.client();
    let nonce =
        client.get("/_synapse/admin/v1/register").await.ok()["nonce"].as_str().expect("nonce").to_owned();
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{nonce}\0{name}\0pw\0admin").as_bytes());
    let body = json!({
        "nonce": nonce, "username": name, "password": "pw", "admin": true,
        "mac": hex::encode(mac.finalize().into_bytes()),
    });
    let registered = client.post("/_synapse/admin/v1/register", body).await.ok();
    client.token = registered["access_token"].as_str().map(str::to_owned);
    client
}

fn alias_path(alias: &str) -> String {
    format!("/_matrix/client/v3/directory/room/{}", encode(alias))
}

fn canonical_path(room: &str) -> String {
    format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias")
}

fn visibility_path(room: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{room}")
}

fn room_ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|entry| entry["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

async fn aliases_are_created_resolved_and_listed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;

    alice.put(&alias_path("#lobby:tessera.test"), json!({ "room_id": room })).await.ok();
    // Resolving needs no access token.
    let resolved = server.client().get(&alias_path("#lobby:tessera.test")).await.ok();
    assert_eq!(resolved, json!({ "room_id": room, "servers": ["tessera.test"] }));
    assert_eq!(bob.join("#lobby:tessera.test").await.ok()["room_id"], room.as_str());

    // The spec's 409 M_UNKNOWN for a taken alias, whoever asks.
    alice
        .put(&alias_path("#lobby:tessera.test"), json!({ "room_id": room }))
        .await
        .assert_error(409, "M_UNKNOWN");
    alice
        .put(&alias_path("#lobby:elsewhere.test"), json!({ "room_id": room }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice.put(&alias_path("lobby"), json!({ "room_id": room })).await.assert_error(400, "M_INVALID_PARAM");
    alice
        .put(&alias_path("#void:tessera.test"), json!({ "room_id": "!nowhere:tessera.test" }))
        .await
        .assert_error(404, "M_NOT_FOUND");
    carol
        .put(&alias_path("#carols:tessera.test"), json!({ "room_id": room }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Any member may add one, power level 0 or not.
    bob.put(&alias_path("#bobs:tessera.test"), json!({ "room_id": room })).await.ok();

    server.client().get(&alias_path("#nope:tessera.test")).await.assert_error(404, "M_NOT_FOUND");
    server.client().get(&alias_path("#far:elsewhere.test")).await.assert_error(404, "M_NOT_FOUND");

    let listed = bob.get(&format!("/_matrix/client/v3/rooms/{room}/aliases")).await.ok();
    assert_eq!(listed, json!({ "aliases": ["#bobs:tessera.test", "#lobby:tessera.test"] }));
    carol.get(&format!("/_matrix/client/v3/rooms/{room}/aliases")).await.assert_error(403, "M_FORBIDDEN");
    carol
        .get("/_matrix/client/v3/rooms/!nowhere:tessera.test/aliases")
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A left member is no longer "in the room".
    bob.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({})).await.ok();
    bob.get(&format!("/_matrix/client/v3/rooms/{room}/aliases")).await.assert_error(403, "M_FORBIDDEN");
    // World-readable rooms list their aliases to anyone.
    let open = alice
        .create_room(json!({
            "room_alias_name": "open",
            "initial_state": [{ "type": "m.room.history_visibility", "content": { "history_visibility": "world_readable" } }],
        }))
        .await;
    let listed = carol.get(&format!("/_matrix/client/v3/rooms/{open}/aliases")).await.ok();
    assert_eq!(listed, json!({ "aliases": ["#open:tessera.test"] }));
}

async fn aliases_are_deleted_by_their_creator_moderators_and_admins(backend: Backend) {
    let server = start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let admin = register_admin(&server, "root").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "lobby" })).await;
    bob.join(&room).await.ok();
    bob.put(&alias_path("#bobs:tessera.test"), json!({ "room_id": room })).await.ok();
    bob.put(&alias_path("#bobs2:tessera.test"), json!({ "room_id": room })).await.ok();
    alice.put(&alias_path("#alices:tessera.test"), json!({ "room_id": room })).await.ok();

    // Neither the alias's creator nor able to send m.room.canonical_alias.
    bob.delete(&alias_path("#lobby:tessera.test"), json!({})).await.assert_error(403, "M_FORBIDDEN");
    carol.delete(&alias_path("#bobs:tessera.test"), json!({})).await.assert_error(403, "M_FORBIDDEN");
    // The creator, even at power level 0.
    bob.delete(&alias_path("#bobs:tessera.test"), json!({})).await.ok();
    // A user with power over m.room.canonical_alias, for anyone's alias.
    alice.delete(&alias_path("#bobs2:tessera.test"), json!({})).await.ok();
    // A server admin, outside the room.
    admin.delete(&alias_path("#alices:tessera.test"), json!({})).await.ok();

    for gone in ["#bobs:tessera.test", "#bobs2:tessera.test", "#alices:tessera.test"] {
        server.client().get(&alias_path(gone)).await.assert_error(404, "M_NOT_FOUND");
        alice.delete(&alias_path(gone), json!({})).await.assert_error(404, "M_NOT_FOUND");
    }
    let listed = alice.get(&format!("/_matrix/client/v3/rooms/{room}/aliases")).await.ok();
    assert_eq!(listed, json!({ "aliases": ["#lobby:tessera.test"] }));
    alice.delete(&alias_path("#lobby:tessera.test"), json!({})).await.ok();
    carol.join("#lobby:tessera.test").await.assert_error(404, "M_NOT_FOUND");
    // A deleted alias can be taken again.
    alice.put(&alias_path("#lobby:tessera.test"), json!({ "room_id": room })).await.ok();
}

async fn deleting_an_advertised_alias_updates_canonical_alias(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "main" })).await;
    bob.join(&room).await.ok();
    alice.put(&alias_path("#alt:tessera.test"), json!({ "room_id": room })).await.ok();
    bob.put(&alias_path("#bobs:tessera.test"), json!({ "room_id": room })).await.ok();
    let advertised = json!({
        "alias": "#main:tessera.test",
        "alt_aliases": ["#alt:tessera.test", "#bobs:tessera.test"],
    });
    alice.put(&canonical_path(&room), advertised.clone()).await.ok();

    // Bob may delete his alias but not change m.room.canonical_alias: the
    // deletion succeeds and the event stays as it was.
    bob.delete(&alias_path("#bobs:tessera.test"), json!({})).await.ok();
    assert_eq!(alice.get(&canonical_path(&room)).await.ok(), advertised);

    alice.delete(&alias_path("#alt:tessera.test"), json!({})).await.ok();
    let canonical = alice.get(&canonical_path(&room)).await.ok();
    assert_eq!(canonical, json!({ "alias": "#main:tessera.test", "alt_aliases": ["#bobs:tessera.test"] }));
    let page = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1")).await.ok();
    assert_eq!(page["chunk"][0]["type"], "m.room.canonical_alias");
    assert_eq!(page["chunk"][0]["sender"], "@alice:tessera.test", "sent as the deleting user");

    alice.delete(&alias_path("#main:tessera.test"), json!({})).await.ok();
    let canonical = alice.get(&canonical_path(&room)).await.ok();
    assert_eq!(canonical, json!({ "alt_aliases": ["#bobs:tessera.test"] }));

    // An alias that is not advertised leaves the event alone.
    alice.put(&alias_path("#quiet:tessera.test"), json!({ "room_id": room })).await.ok();
    let before = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1")).await.ok();
    alice.delete(&alias_path("#quiet:tessera.test"), json!({})).await.ok();
    let after = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1")).await.ok();
    assert_eq!(before["chunk"][0]["event_id"], after["chunk"][0]["event_id"]);
}

async fn visibility_in_the_directory(backend: Backend) {
    let server = start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let admin = register_admin(&server, "root").await;
    let anonymous = server.client();
    let published = alice.create_room(json!({ "visibility": "public", "preset": "public_chat" })).await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(anonymous.get(&visibility_path(&published)).await.ok(), json!({ "visibility": "public" }));
    assert_eq!(anonymous.get(&visibility_path(&room)).await.ok(), json!({ "visibility": "private" }));

    let publish = json!({ "visibility": "public" });
    bob.put(&visibility_path(&room), publish.clone()).await.assert_error(403, "M_FORBIDDEN");
    bob.join(&room).await.ok();
    bob.put(&visibility_path(&room), publish.clone()).await.assert_error(403, "M_FORBIDDEN");
    alice.put(&visibility_path(&room), publish.clone()).await.ok();
    assert_eq!(anonymous.get(&visibility_path(&room)).await.ok(), json!({ "visibility": "public" }));
    // Setting what is already set is fine.
    alice.put(&visibility_path(&room), publish.clone()).await.ok();
    admin.put(&visibility_path(&room), json!({ "visibility": "private" })).await.ok();
    assert_eq!(anonymous.get(&visibility_path(&room)).await.ok(), json!({ "visibility": "private" }));

    // Power over m.room.canonical_alias is what counts.
    let levels = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels");
    let mut power = alice.get(&levels).await.ok();
    power["events"]["m.room.canonical_alias"] = json!(0);
    alice.put(&levels, power).await.ok();
    bob.put(&visibility_path(&room), publish.clone()).await.ok();

    let unknown = "!nowhere:tessera.test";
    anonymous.get(&visibility_path(unknown)).await.assert_error(404, "M_NOT_FOUND");
    alice.put(&visibility_path(unknown), publish).await.assert_error(404, "M_NOT_FOUND");
    alice
        .put(&visibility_path(&room), json!({ "visibility": "secret" }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    anonymous
        .put(&visibility_path(&room), json!({ "visibility": "public" }))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

async fn public_rooms_show_published_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let tea = alice
        .create_room(json!({
            "visibility": "public", "preset": "public_chat", "room_alias_name": "tea",
            "name": "Tea Room", "topic": "Green and black",
        }))
        .await;
    bob.join(&tea).await.ok();
    let space = alice
        .create_room(json!({
            "visibility": "public", "preset": "private_chat", "name": "Space",
            "creation_content": { "type": "m.space" },
        }))
        .await;
    let open = alice
        .create_room(json!({
            "visibility": "public", "preset": "public_chat",
            "initial_state": [
                { "type": "m.room.history_visibility", "content": { "history_visibility": "world_readable" } },
                { "type": "m.room.guest_access", "content": { "guest_access": "can_join" } },
                { "type": "m.room.avatar", "content": { "url": "mxc://tessera.test/avatar" } },
                { "type": "m.room.topic", "content": { "topic": "", "m.topic": { "m.text": [
                    { "mimetype": "text/html", "body": "<b>rich</b>" }, { "body": "plain words" },
                ] } } },
            ],
        }))
        .await;
    let unlisted = alice.create_room(json!({ "preset": "public_chat", "name": "Hidden" })).await;

    // No access token needed.
    let page = server.client().get("/_matrix/client/v3/publicRooms").await.ok();
    // Most joined members first; ties in room ID order, which is the
    // database's collation, so only the set is asserted here.
    let listed = room_ids(&page);
    assert_eq!(listed.first(), Some(&tea), "the room with two members leads");
    let mut rest = listed[1..].to_vec();
    rest.sort();
    let mut quiet = vec![space.clone(), open.clone()];
    quiet.sort();
    assert_eq!(rest, quiet);
    assert!(!room_ids(&page).contains(&unlisted));
    assert_eq!(page["total_room_count_estimate"], 3);
    assert!(page.get("next_batch").is_none() && page.get("prev_batch").is_none(), "{page}");
    let entry =
        |id: &str| page["chunk"].as_array().expect("chunk").iter().find(|e| e["room_id"] == id).cloned();
    assert_eq!(
        entry(&tea).expect("tea listed"),
        json!({
            "room_id": tea, "name": "Tea Room", "topic": "Green and black", "canonical_alias": "#tea:tessera.test",
            "num_joined_members": 2, "world_readable": false, "guest_can_join": false, "join_rule": "public",
        }),
        "join_rule is named even when public, its default"
    );
    let space_entry = entry(&space).expect("space listed");
    assert_eq!(space_entry["room_type"], "m.space");
    assert_eq!(space_entry["join_rule"], "invite");
    let open_entry = entry(&open).expect("open listed");
    assert_eq!(open_entry["world_readable"], true);
    assert_eq!(open_entry["guest_can_join"], true);
    assert_eq!(open_entry["avatar_url"], "mxc://tessera.test/avatar");
    assert_eq!(open_entry["topic"], "plain words", "the text/plain representation of m.topic");

    // Withdrawn rooms leave the list.
    alice.put(&visibility_path(&tea), json!({ "visibility": "private" })).await.ok();
    let page = alice.post("/_matrix/client/v3/publicRooms", json!({})).await.ok();
    assert!(!room_ids(&page).contains(&tea));
    assert_eq!(page["total_room_count_estimate"], 2);

    // Our own name is us; another server's directory is asked of it (404
    // when it cannot be asked; the spec needs no token for GET).
    let ours = server.client().get("/_matrix/client/v3/publicRooms?server=tessera.test").await.ok();
    assert_eq!(room_ids(&ours).len(), 2);
    let theirs = server.client().get("/_matrix/client/v3/publicRooms?server=elsewhere.test").await;
    theirs.assert_error(404, "M_NOT_FOUND");
    let bridged =
        alice.post("/_matrix/client/v3/publicRooms", json!({ "third_party_instance_id": "irc" })).await.ok();
    assert_eq!(bridged["chunk"], json!([]));
    server
        .client()
        .post("/_matrix/client/v3/publicRooms", json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

async fn public_rooms_filter_by_search_term_and_type(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let tea = alice
        .create_room(json!({ "visibility": "public", "name": "Tea Room", "topic": "Green and black" }))
        .await;
    let coffee = alice
        .create_room(json!({ "visibility": "public", "room_alias_name": "espresso", "topic": "Beans" }))
        .await;
    let space = alice
        .create_room(
            json!({ "visibility": "public", "name": "Drinks", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let search = |filter: Value| {
        let alice = &alice;
        async move {
            let mut ids = room_ids(
                &alice.post("/_matrix/client/v3/publicRooms", json!({ "filter": filter })).await.ok(),
            );
            ids.sort();
            ids
        }
    };
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    assert_eq!(search(json!({ "generic_search_term": "tEA" })).await, [tea.as_str()], "name, any case");
    assert_eq!(search(json!({ "generic_search_term": "BLACK" })).await, [tea.as_str()], "topic");
    assert_eq!(search(json!({ "generic_search_term": "presso:tessera" })).await, [coffee.as_str()], "alias");
    assert_eq!(search(json!({ "generic_search_term": "nothing like it" })).await, Vec::<String>::new());
    assert_eq!(search(json!({ "room_types": ["m.space"] })).await, [space.as_str()]);
    assert_eq!(search(json!({ "room_types": [null] })).await, sorted(vec![tea.clone(), coffee.clone()]));
    // Both conditions hold.
    assert_eq!(
        search(json!({ "room_types": ["m.space"], "generic_search_term": "tea" })).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search(json!({ "room_types": [null, "m.space"], "generic_search_term": "DRINK" })).await,
        [space]
    );
}

async fn public_rooms_page_both_ways(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let mut rooms = Vec::new();
    for i in 0..7 {
        let room = alice
            .create_room(
                json!({ "visibility": "public", "preset": "public_chat", "name": format!("room {i}") }),
            )
            .await;
        if i < 2 {
            bob.join(&room).await.ok();
        }
        rooms.push(room);
    }
    let all = room_ids(&alice.post("/_matrix/client/v3/publicRooms", json!({})).await.ok());
    assert_eq!(all.len(), 7);
    let mut busy = all[..2].to_vec();
    busy.sort();
    let mut expected = [rooms[0].clone(), rooms[1].clone()];
    expected.sort();
    assert_eq!(busy, expected, "the two rooms with two members lead");

    // Forwards three at a time, by GET and by POST alike.
    let mut pages: Vec<Value> = Vec::new();
    let mut since: Option<String> = None;
    for round in 0..10 {
        let page = if round % 2 == 0 {
            let since = since.as_ref().map(|s| format!("&since={}", encode(s))).unwrap_or_default();
            server.client().get(&format!("/_matrix/client/v3/publicRooms?limit=3{since}")).await.ok()
        } else {
            alice.post("/_matrix/client/v3/publicRooms", json!({ "limit": 3, "since": since })).await.ok()
        };
        assert_eq!(page["total_room_count_estimate"], 7);
        since = page["next_batch"].as_str().map(str::to_owned);
        pages.push(page);
        if since.is_none() {
            break;
        }
    }
    let sizes: Vec<usize> = pages.iter().map(|p| room_ids(p).len()).collect();
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(pages.iter().flat_map(room_ids).collect::<Vec<_>>(), all, "every room once, in order");
    assert!(pages[0].get("prev_batch").is_none(), "nothing before the first page");
    assert!(pages[2].get("next_batch").is_none(), "nothing after the last page");

    // Backwards from the last page gives the same pages.
    let back = |token: &Value| {
        let alice = &alice;
        let token = token.as_str().expect("prev_batch").to_owned();
        async move {
            alice.post("/_matrix/client/v3/publicRooms", json!({ "limit": 3, "since": token })).await.ok()
        }
    };
    let second = back(&pages[2]["prev_batch"]).await;
    assert_eq!(room_ids(&second), room_ids(&pages[1]));
    let first = back(&second["prev_batch"]).await;
    assert_eq!(room_ids(&first), room_ids(&pages[0]));
    assert!(first.get("prev_batch").is_none(), "back at the start: {first}");
    assert_eq!(first["next_batch"], pages[0]["next_batch"]);

    alice
        .post("/_matrix/client/v3/publicRooms", json!({ "since": "garbage" }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    server.client().get("/_matrix/client/v3/publicRooms?since=n1").await.assert_error(400, "M_INVALID_PARAM");
}

/// Spec: `PUT /rooms/{roomId}/state/m.room.canonical_alias` answers 400
/// `M_BAD_ALIAS` for a local alias that does not point at the room and 400
/// `M_INVALID_PARAM` for a malformed one.
///
/// HOOK-DEPENDENT: the assertions marked `[hook]` pass only once
/// `Rooms::send_state` (service/src/rooms/append.rs) calls
/// `check_canonical_alias` before its schema check; the others hold either
/// way.
async fn canonical_alias_content_is_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "mine" })).await;
    alice.create_room(json!({ "room_alias_name": "other" })).await;
    let set = |content: Value| {
        let alice = &alice;
        let path = canonical_path(&room);
        async move { alice.put(&path, content).await }
    };

    // Valid: local aliases of this room, remote aliases (unverifiable
    // without federation), nothing at all.
    alice.put(&alias_path("#second:tessera.test"), json!({ "room_id": room })).await.ok();
    set(json!({ "alias": "#mine:tessera.test", "alt_aliases": ["#second:tessera.test", "#far:elsewhere.test"] }))
        .await
        .ok();
    set(json!({})).await.ok();

    // [hook] A local alias that does not exist, or points elsewhere.
    set(json!({ "alias": "#missing:tessera.test" })).await.assert_error(400, "M_BAD_ALIAS");
    set(json!({ "alias": "#other:tessera.test" })).await.assert_error(400, "M_BAD_ALIAS");
    set(json!({ "alt_aliases": ["#mine:tessera.test", "#other:tessera.test"] }))
        .await
        .assert_error(400, "M_BAD_ALIAS");
    // [hook] Malformed aliases (ruma's schema check alone says M_BAD_JSON).
    set(json!({ "alias": "no-hash:tessera.test" })).await.assert_error(400, "M_INVALID_PARAM");
    set(json!({ "alt_aliases": ["#ok:tessera.test", "#"] })).await.assert_error(400, "M_INVALID_PARAM");
    set(json!({ "alt_aliases": "#mine:tessera.test" })).await.assert_error(400, "M_INVALID_PARAM");
    let current = alice.get(&canonical_path(&room)).await.ok();
    assert_eq!(current, json!({}), "[hook] nothing rejected was stored");

    // An alias advertised earlier and deleted since (by a creator who could
    // not update the event) does not block edits that keep it.
    bob.join(&room).await.ok();
    bob.put(&alias_path("#bobs:tessera.test"), json!({ "room_id": room })).await.ok();
    set(json!({ "alt_aliases": ["#bobs:tessera.test"] })).await.ok();
    bob.delete(&alias_path("#bobs:tessera.test"), json!({})).await.ok();
    set(json!({ "alias": "#mine:tessera.test", "alt_aliases": ["#bobs:tessera.test"] })).await.ok();
    // [hook] ...but adding it anew does.
    set(json!({ "alias": "#bobs:tessera.test", "alt_aliases": ["#bobs:tessera.test"] }))
        .await
        .assert_error(400, "M_BAD_ALIAS");
}

/// Complement's `TestKnockRoomsInPublicRoomsDirectory`: a published knock
/// room says `knock`, and a public one says `public` (never left out).
async fn public_rooms_name_every_join_rule(backend: Backend) {
    let server = start(backend).await;
    let alice = server.register("alice", "pw").await;
    let knock = alice.create_room(json!({ "preset": "private_chat", "room_version": "7" })).await;
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{knock}/state/m.room.join_rules"),
            json!({ "join_rule": "knock" }),
        )
        .await
        .ok();
    let public = alice.create_room(json!({ "preset": "public_chat", "room_version": "7" })).await;
    for room in [&knock, &public] {
        alice.put(&visibility_path(room), json!({ "visibility": "public" })).await.ok();
    }
    for page in [
        alice.get("/_matrix/client/v3/publicRooms").await.ok(),
        alice.post("/_matrix/client/v3/publicRooms", json!({})).await.ok(),
    ] {
        let rule = |id: &str| {
            page["chunk"].as_array().expect("chunk").iter().find(|e| e["room_id"] == id).expect("listed")["join_rule"]
                .clone()
        };
        assert_eq!(rule(&knock), "knock");
        assert_eq!(rule(&public), "public");
    }
}
