//! Server-side key backups: versions, keys at the three levels, the
//! spec's replacement rules, uploads to an old version, etags and counts,
//! and one user's backup out of another's reach.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer},
};

both_backends!(
    versions_are_created_read_updated_and_deleted,
    keys_are_stored_read_and_deleted_at_every_level,
    uploaded_keys_are_checked,
    a_stored_key_is_replaced_only_by_a_better_one,
    concurrent_uploads_keep_the_best_key,
    concurrent_creations_get_numbers_of_their_own,
    complement_replace_room_key_rules,
    uploads_go_to_the_current_version_only,
    etag_and_count_follow_the_keys,
    backups_are_per_user
);

const VERSION: &str = "/_matrix/client/v3/room_keys/version";
const KEYS: &str = "/_matrix/client/v3/room_keys/keys";
const MEGOLM: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!room:tessera.test";
const OTHER_ROOM: &str = "!other:tessera.test";

fn auth_data(public_key: &str) -> Value {
    json!({ "public_key": public_key, "signatures": { "@alice:tessera.test": { "ed25519:DEV": "sig" } } })
}

/// A key as a client uploads it; `tag` goes into `session_data` so that
/// which upload was kept can be told apart.
fn key(is_verified: bool, first_message_index: u64, forwarded_count: u64, tag: &str) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": { "ephemeral": "eph", "ciphertext": tag, "mac": "mac" },
    })
}

async fn create_version(client: &TestClient, public_key: &str) -> String {
    let created =
        client.post(VERSION, json!({ "algorithm": MEGOLM, "auth_data": auth_data(public_key) })).await;
    created.ok()["version"].as_str().expect("version is a string").to_owned()
}

fn session_path(version: &str, room: &str, session: &str) -> String {
    format!("{KEYS}/{room}/{session}?version={version}")
}

async fn versions_are_created_read_updated_and_deleted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;

    // What Element asks at sign-in, before any backup exists.
    alice.get(VERSION).await.assert_error(404, "M_NOT_FOUND");

    let first = create_version(&alice, "key1").await;
    assert_eq!(first, "1");
    let current = alice.get(VERSION).await.ok();
    assert_eq!(
        current,
        json!({ "algorithm": MEGOLM, "auth_data": auth_data("key1"), "count": 0, "etag": current["etag"], "version": "1" })
    );
    assert!(current["etag"].is_string(), "{current}");
    assert_eq!(alice.get(&format!("{VERSION}/1")).await.ok(), current);

    // A new version becomes the current one; the old one stays readable.
    let second = create_version(&alice, "key2").await;
    assert_eq!(second, "2");
    assert_eq!(alice.get(VERSION).await.ok()["version"], "2");
    assert_eq!(alice.get(&format!("{VERSION}/1")).await.ok()["auth_data"], auth_data("key1"));
    for unknown in ["3", "0", "01", "abc", "99999999999999999999"] {
        alice.get(&format!("{VERSION}/{unknown}")).await.assert_error(404, "M_NOT_FOUND");
    }

    // Only auth_data changes; the algorithm must match, and a version in the
    // body must be the path's.
    let update = json!({ "algorithm": MEGOLM, "auth_data": auth_data("key2b") });
    assert_eq!(alice.put(&format!("{VERSION}/2"), update.clone()).await.ok(), json!({}));
    assert_eq!(alice.get(&format!("{VERSION}/2")).await.ok()["auth_data"], auth_data("key2b"));
    let with_version = json!({ "algorithm": MEGOLM, "auth_data": auth_data("key2c"), "version": "2" });
    alice.put(&format!("{VERSION}/2"), with_version).await.ok();
    assert_eq!(alice.get(VERSION).await.ok()["auth_data"], auth_data("key2c"));
    let wrong_version = json!({ "algorithm": MEGOLM, "auth_data": auth_data("x"), "version": "1" });
    alice.put(&format!("{VERSION}/2"), wrong_version).await.assert_error(400, "M_INVALID_PARAM");
    let other_algorithm = json!({ "algorithm": "org.example.other", "auth_data": {} });
    alice.put(&format!("{VERSION}/2"), other_algorithm).await.assert_error(400, "M_INVALID_PARAM");
    alice.put(&format!("{VERSION}/7"), update.clone()).await.assert_error(404, "M_NOT_FOUND");
    assert_eq!(alice.get(VERSION).await.ok()["auth_data"], auth_data("key2c"));

    // Deleting the current version makes the previous one current again;
    // deleting it twice succeeds, deleting one that never was does not.
    alice.delete(&format!("{VERSION}/2"), json!({})).await.ok();
    assert_eq!(alice.get(VERSION).await.ok()["version"], "1");
    alice.get(&format!("{VERSION}/2")).await.assert_error(404, "M_NOT_FOUND");
    alice.put(&format!("{VERSION}/2"), update).await.assert_error(404, "M_NOT_FOUND");
    assert_eq!(alice.delete(&format!("{VERSION}/2"), json!({})).await.ok(), json!({}));
    alice.delete(&format!("{VERSION}/7"), json!({})).await.assert_error(404, "M_NOT_FOUND");

    // A deleted version's number is not handed out again.
    assert_eq!(create_version(&alice, "key3").await, "3");
    alice.delete(&format!("{VERSION}/3"), json!({})).await.ok();
    alice.delete(&format!("{VERSION}/1"), json!({})).await.ok();
    alice.get(VERSION).await.assert_error(404, "M_NOT_FOUND");

    // Any algorithm is kept as sent (Complement uses m.megolm_backup.v1).
    let custom = json!({ "algorithm": "m.megolm_backup.v1", "auth_data": { "foo": "bar" } });
    let version = alice.post(VERSION, custom).await.ok()["version"].clone();
    assert_eq!(version, "4");
    let current = alice.get(VERSION).await.ok();
    assert_eq!(
        (&current["algorithm"], &current["auth_data"]),
        (&json!("m.megolm_backup.v1"), &json!({ "foo": "bar" }))
    );

    // Malformed versions.
    alice.post(VERSION, json!({ "algorithm": MEGOLM })).await.assert_error(400, "M_MISSING_PARAM");
    alice
        .post(VERSION, json!({ "algorithm": MEGOLM, "auth_data": "x" }))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice.post(VERSION, json!({ "algorithm": 1, "auth_data": {} })).await.assert_error(400, "M_BAD_JSON");
    alice.post_raw(VERSION, "{not json").await.assert_error(400, "M_NOT_JSON");

    // Every endpoint wants an access token.
    let anonymous = server.client();
    anonymous.get(VERSION).await.assert_error(401, "M_MISSING_TOKEN");
    anonymous.get(&format!("{KEYS}?version=4")).await.assert_error(401, "M_MISSING_TOKEN");
}

async fn keys_are_stored_read_and_deleted_at_every_level(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let v = create_version(&alice, "key").await;

    // One session, one room, several rooms.
    let stored = alice.put(&session_path(&v, ROOM, "s1"), key(false, 0, 0, "s1")).await.ok();
    assert_eq!(stored["count"], 1, "{stored}");
    assert!(stored["etag"].is_string(), "{stored}");
    let room_upload = json!({ "sessions": { "s2": key(true, 1, 0, "s2"), "s3": key(false, 2, 1, "s3") } });
    assert_eq!(alice.put(&format!("{KEYS}/{ROOM}?version={v}"), room_upload).await.ok()["count"], 3);
    let all_upload = json!({ "rooms": {
        ROOM: { "sessions": { "s4": key(false, 3, 0, "s4") } },
        OTHER_ROOM: { "sessions": { "s1": key(true, 0, 0, "other s1") } },
    } });
    assert_eq!(alice.put(&format!("{KEYS}?version={v}"), all_upload).await.ok()["count"], 5);

    // Read back as stored, at each level.
    let all = alice.get(&format!("{KEYS}?version={v}")).await.ok();
    assert_eq!(all["rooms"][ROOM]["sessions"].as_object().map(|s| s.len()), Some(4), "{all}");
    assert_eq!(all["rooms"][ROOM]["sessions"]["s2"], key(true, 1, 0, "s2"));
    assert_eq!(all["rooms"][OTHER_ROOM]["sessions"], json!({ "s1": key(true, 0, 0, "other s1") }));
    let room = alice.get(&format!("{KEYS}/{ROOM}?version={v}")).await.ok();
    assert_eq!(room["sessions"], all["rooms"][ROOM]["sessions"]);
    assert_eq!(alice.get(&session_path(&v, ROOM, "s3")).await.ok(), key(false, 2, 1, "s3"));
    assert_eq!(alice.get(&session_path(&v, OTHER_ROOM, "s1")).await.ok(), key(true, 0, 0, "other s1"));

    // session_data comes back as sent, escapes and all, whatever its shape.
    let tricky = json!({
        "first_message_index": 9_007_199_254_740_991_u64,
        "forwarded_count": 0,
        "is_verified": false,
        "session_data": { "ciphertext": "quote \" backslash \\ é \u{2028} 😀 \\u0000", "nested": [1, { "a": null }] },
    });
    alice.put(&session_path(&v, OTHER_ROOM, "tricky"), tricky.clone()).await.ok();
    assert_eq!(alice.get(&session_path(&v, OTHER_ROOM, "tricky")).await.ok(), tricky);
    alice.delete(&session_path(&v, OTHER_ROOM, "tricky"), json!({})).await.ok();

    // Absent: a session is 404, a room has no sessions (the spec's
    // `{"sessions": {}}`).
    alice.get(&session_path(&v, ROOM, "nope")).await.assert_error(404, "M_NOT_FOUND");
    let empty_room = alice.get(&format!("{KEYS}/!empty:tessera.test?version={v}")).await.ok();
    assert_eq!(empty_room, json!({ "sessions": {} }));

    // Deletions, narrowest first.
    let deleted = alice.delete(&session_path(&v, ROOM, "s1"), json!({})).await.ok();
    assert_eq!(deleted["count"], 4, "{deleted}");
    alice.get(&session_path(&v, ROOM, "s1")).await.assert_error(404, "M_NOT_FOUND");
    assert_eq!(alice.delete(&format!("{KEYS}/{ROOM}?version={v}"), json!({})).await.ok()["count"], 1);
    assert_eq!(alice.get(&format!("{KEYS}/{ROOM}?version={v}")).await.ok(), json!({ "sessions": {} }));
    assert_eq!(alice.get(&session_path(&v, OTHER_ROOM, "s1")).await.ok(), key(true, 0, 0, "other s1"));
    assert_eq!(alice.delete(&format!("{KEYS}?version={v}"), json!({})).await.ok()["count"], 0);
    assert_eq!(alice.get(&format!("{KEYS}?version={v}")).await.ok(), json!({ "rooms": {} }));

    // Deleting a version deletes its keys; its number is not reused, so
    // they cannot come back.
    alice.put(&session_path(&v, ROOM, "s1"), key(false, 0, 0, "s1")).await.ok();
    alice.delete(&format!("{VERSION}/{v}"), json!({})).await.ok();
    alice.get(&format!("{KEYS}?version={v}")).await.assert_error(404, "M_NOT_FOUND");
    let next = create_version(&alice, "key").await;
    assert_ne!(next, v);
    assert_eq!(alice.get(&format!("{KEYS}?version={next}")).await.ok(), json!({ "rooms": {} }));

    // Unknown versions, at every level and for every method.
    for path in [
        format!("{KEYS}?version=99"),
        format!("{KEYS}/{ROOM}?version=99"),
        session_path("99", ROOM, "s1"),
        format!("{KEYS}?version=abc"),
    ] {
        alice.get(&path).await.assert_error(404, "M_NOT_FOUND");
        alice.delete(&path, json!({})).await.assert_error(404, "M_NOT_FOUND");
    }
    alice.put(&session_path("99", ROOM, "s1"), key(false, 0, 0, "x")).await.assert_error(404, "M_NOT_FOUND");
    alice.get(&format!("{KEYS}/{ROOM}/s1")).await.assert_error(400, "M_MISSING_PARAM");
}

async fn uploaded_keys_are_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let v = create_version(&alice, "key").await;
    let path = session_path(&v, ROOM, "s1");

    let no_verified = json!({ "first_message_index": 0, "forwarded_count": 0, "session_data": {} });
    alice.put(&path, no_verified).await.assert_error(400, "M_MISSING_PARAM");
    for bad in [
        json!({ "first_message_index": -1, "forwarded_count": 0, "is_verified": false, "session_data": {} }),
        json!({ "first_message_index": 0, "forwarded_count": 0.5, "is_verified": false, "session_data": {} }),
        json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": "yes", "session_data": {} }),
        json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": "abc" }),
        json!([]),
    ] {
        alice.put(&path, bad.clone()).await.assert_error(400, "M_BAD_JSON");
    }
    // One bad key fails the whole upload.
    let mixed = json!({ "sessions": { "good": key(false, 0, 0, "g"), "bad": { "is_verified": 1 } } });
    assert_eq!(alice.put(&format!("{KEYS}/{ROOM}?version={v}"), mixed).await.status, 400);
    let bad_room = json!({ "rooms": { "not a room": { "sessions": {} } } });
    alice.put(&format!("{KEYS}?version={v}"), bad_room).await.assert_error(400, "M_BAD_JSON");
    let long_session = json!({ "sessions": { "s".repeat(256): key(false, 0, 0, "x") } });
    let refused = alice.put(&format!("{KEYS}/{ROOM}?version={v}"), long_session).await;
    refused.assert_error(400, "M_INVALID_PARAM");
    alice.put(&format!("{KEYS}/{ROOM}/s1"), key(false, 0, 0, "x")).await.assert_error(400, "M_MISSING_PARAM");

    assert_eq!(alice.get(&format!("{KEYS}?version={v}")).await.ok(), json!({ "rooms": {} }));
    assert_eq!(alice.get(VERSION).await.ok()["count"], 0);
}

async fn a_stored_key_is_replaced_only_by_a_better_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let v = create_version(&alice, "key").await;
    let path = session_path(&v, ROOM, "s");

    // Unverified (index 10, forwarded 5): worse keys leave it (Complement's
    // TestE2EKeyBackupReplaceRoomKeyRules, first case).
    alice.put(&path, key(false, 10, 5, "original")).await.ok();
    for worse in
        [key(false, 11, 5, "w1"), key(false, 10, 6, "w2"), key(false, 11, 6, "w3"), key(false, 10, 5, "tie")]
    {
        alice.put(&path, worse).await.ok();
        assert_eq!(alice.get(&path).await.ok(), key(false, 10, 5, "original"));
    }
    // Same verification and index: the lower forwarded count wins.
    alice.put(&path, key(false, 10, 4, "fewer forwards")).await.ok();
    assert_eq!(alice.get(&path).await.ok(), key(false, 10, 4, "fewer forwards"));
    // Same verification: the lower index wins whatever the forwards.
    alice.put(&path, key(false, 9, 50, "lower index")).await.ok();
    assert_eq!(alice.get(&path).await.ok(), key(false, 9, 50, "lower index"));
    // A verified key beats an unverified one whatever its index...
    alice.put(&path, key(true, 20, 60, "verified")).await.ok();
    assert_eq!(alice.get(&path).await.ok(), key(true, 20, 60, "verified"));
    // ...and an unverified one never replaces it, however good otherwise.
    alice.put(&path, key(false, 0, 0, "unverified")).await.ok();
    assert_eq!(alice.get(&path).await.ok(), key(true, 20, 60, "verified"));
    // Among verified keys, the same order again (the second case).
    for worse in [key(true, 21, 60, "w1"), key(true, 20, 61, "w2"), key(true, 21, 61, "w3")] {
        alice.put(&path, worse).await.ok();
        assert_eq!(alice.get(&path).await.ok(), key(true, 20, 60, "verified"));
    }
    alice.put(&path, key(true, 20, 59, "v2")).await.ok();
    assert_eq!(alice.get(&path).await.ok(), key(true, 20, 59, "v2"));
    alice.put(&path, key(true, 19, 99, "v3")).await.ok();
    assert_eq!(alice.get(&path).await.ok(), key(true, 19, 99, "v3"));

    // The rules apply to room and bulk uploads too, key by key.
    let bulk = json!({ "rooms": { ROOM: { "sessions": {
        "s": key(true, 25, 0, "worse"),
        "t": key(false, 1, 1, "new"),
    } } } });
    assert_eq!(alice.put(&format!("{KEYS}?version={v}"), bulk).await.ok()["count"], 2);
    let room = alice.get(&format!("{KEYS}/{ROOM}?version={v}")).await.ok();
    assert_eq!(room["sessions"], json!({ "s": key(true, 19, 99, "v3"), "t": key(false, 1, 1, "new") }));
}

async fn concurrent_uploads_keep_the_best_key(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let v = create_version(&alice, "key").await;

    // Each upload writes the shared session "s" and a session of its own;
    // whatever the interleaving, "s" ends with the best key and the count
    // with every session.
    let uploads: Vec<_> = (0..12_u64)
        .map(|i| {
            let alice = alice.clone();
            let path = format!("{KEYS}/{ROOM}?version={v}");
            tokio::spawn(async move {
                let body = json!({ "sessions": {
                    "s": key(false, 20 - i, 0, &format!("upload {i}")),
                    format!("own {i}"): key(false, 0, 0, "own"),
                } });
                alice.put(&path, body).await.ok()
            })
        })
        .collect();
    for upload in uploads {
        upload.await.expect("upload task");
    }
    assert_eq!(alice.get(&session_path(&v, ROOM, "s")).await.ok(), key(false, 9, 0, "upload 11"));
    assert_eq!(alice.get(VERSION).await.ok()["count"], 13);
}

async fn concurrent_creations_get_numbers_of_their_own(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    create_version(&alice, "first").await;
    let creations: Vec<_> = (0..8)
        .map(|i| {
            let alice = alice.clone();
            tokio::spawn(async move { create_version(&alice, &format!("key {i}")).await })
        })
        .collect();
    let mut versions = Vec::new();
    for creation in creations {
        versions.push(creation.await.expect("creation task").parse::<u64>().expect("a number"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..10).collect::<Vec<u64>>());
    assert_eq!(alice.get(VERSION).await.ok()["version"], "9");
}

/// Complement's TestE2EKeyBackupReplaceRoomKeyRules as it runs: a
/// non-spec algorithm, `session_data` of `{"a": "b"}`, a room that does not
/// exist, and its two cases side by side.
async fn complement_replace_room_key_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let created =
        alice.post(VERSION, json!({ "algorithm": "m.megolm_backup.v1", "auth_data": { "foo": "bar" } }));
    let version = created.await.ok()["version"].as_str().expect("version").to_owned();
    let key = |(is_verified, first_message_index, forwarded_count): (bool, u64, u64)| {
        json!({
            "first_message_index": first_message_index,
            "forwarded_count": forwarded_count,
            "is_verified": is_verified,
            "session_data": { "a": "b" },
        })
    };
    let unverified = [(false, 11, 5), (false, 10, 6), (false, 11, 6)];
    let cases = [
        ("a", (false, 10, 5), unverified.to_vec()),
        (
            "b",
            (true, 10, 5),
            [unverified.as_slice(), &[(true, 11, 5), (true, 10, 6), (true, 11, 6)]].concat(),
        ),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(session, input, worse)| {
            let alice = alice.clone();
            let path = session_path(&version, "!foo:hs1", session);
            tokio::spawn(async move {
                alice.put(&path, key(input)).await.ok();
                for other in worse {
                    alice.put(&path, key(other)).await.ok();
                    assert_eq!(alice.get(&path).await.ok(), key(input), "after {other:?}");
                }
            })
        })
        .collect();
    for run in runs {
        run.await.expect("case");
    }
}

async fn uploads_go_to_the_current_version_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;

    // No backup at all: nothing to upload to.
    alice.put(&session_path("1", ROOM, "s"), key(false, 0, 0, "x")).await.assert_error(404, "M_NOT_FOUND");

    let old = create_version(&alice, "old").await;
    alice.put(&session_path(&old, ROOM, "s"), key(false, 0, 0, "old")).await.ok();
    let new = create_version(&alice, "new").await;

    // The old version is still there but closed to uploads, at every level;
    // the error names the current version.
    let uploads = [
        (session_path(&old, ROOM, "t"), key(false, 0, 0, "x")),
        (format!("{KEYS}/{ROOM}?version={old}"), json!({ "sessions": { "t": key(false, 0, 0, "x") } })),
        (
            format!("{KEYS}?version={old}"),
            json!({ "rooms": { ROOM: { "sessions": { "t": key(false, 0, 0, "x") } } } }),
        ),
    ];
    for (path, body) in &uploads {
        let refused = alice.put(path, body.clone()).await;
        refused.assert_error(403, "M_WRONG_ROOM_KEYS_VERSION");
        assert_eq!(refused.body["current_version"], json!(new), "{}", refused.body);
    }
    // Unknown versions are 404, not 403.
    alice.put(&session_path("99", ROOM, "t"), key(false, 0, 0, "x")).await.assert_error(404, "M_NOT_FOUND");

    // The old version's keys can still be read and deleted.
    assert_eq!(alice.get(&session_path(&old, ROOM, "s")).await.ok(), key(false, 0, 0, "old"));
    assert_eq!(alice.get(&format!("{VERSION}/{old}")).await.ok()["count"], 1);
    assert_eq!(alice.delete(&session_path(&old, ROOM, "s"), json!({})).await.ok()["count"], 0);

    // A deleted version takes no uploads; the one before it is current again.
    alice.delete(&format!("{VERSION}/{new}"), json!({})).await.ok();
    alice.put(&session_path(&new, ROOM, "t"), key(false, 0, 0, "x")).await.assert_error(404, "M_NOT_FOUND");
    assert_eq!(alice.put(&session_path(&old, ROOM, "t"), key(false, 0, 0, "x")).await.ok()["count"], 1);
}

async fn etag_and_count_follow_the_keys(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let v = create_version(&alice, "key").await;
    let info = || async { alice.get(VERSION).await.ok() };
    let etag_and_count =
        |body: &Value| (body["etag"].as_str().expect("etag").to_owned(), body["count"].clone());

    let (created, count) = etag_and_count(&info().await);
    assert_eq!(count, 0);

    // A new key: a new etag, reported alike by the upload and the version.
    let first = etag_and_count(&alice.put(&session_path(&v, ROOM, "a"), key(false, 5, 0, "a")).await.ok());
    assert_ne!(first.0, created);
    assert_eq!(first.1, 1);
    assert_eq!(etag_and_count(&info().await), first);

    // A key that is not kept changes nothing.
    let unchanged =
        etag_and_count(&alice.put(&session_path(&v, ROOM, "a"), key(false, 6, 0, "b")).await.ok());
    assert_eq!(unchanged, first);

    // A replacement: a new etag, the same count.
    let replaced = etag_and_count(&alice.put(&session_path(&v, ROOM, "a"), key(false, 4, 0, "c")).await.ok());
    assert_ne!(replaced.0, first.0);
    assert_eq!(replaced.1, 1);

    // Another key: a new etag, one more.
    let second = etag_and_count(&alice.put(&session_path(&v, ROOM, "b"), key(false, 0, 0, "d")).await.ok());
    assert_ne!(second.0, replaced.0);
    assert_eq!(second.1, 2);

    // Deleting nothing changes nothing; deleting a key is a change.
    let nothing = etag_and_count(&alice.delete(&session_path(&v, ROOM, "zzz"), json!({})).await.ok());
    assert_eq!(nothing, second);
    let deleted = etag_and_count(&alice.delete(&session_path(&v, ROOM, "a"), json!({})).await.ok());
    assert_ne!(deleted.0, second.0);
    assert_eq!(deleted.1, 1);
    assert_eq!(etag_and_count(&info().await), deleted);

    // Updating auth_data is not a change to the keys.
    let update = json!({ "algorithm": MEGOLM, "auth_data": auth_data("other") });
    alice.put(&format!("{VERSION}/{v}"), update).await.ok();
    assert_eq!(etag_and_count(&info().await), deleted);
}

async fn backups_are_per_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let v = create_version(&alice, "alice's").await;
    alice.put(&session_path(&v, ROOM, "s"), key(true, 0, 0, "alice's key")).await.ok();

    // Bob sees none of Alice's backup and cannot touch it.
    bob.get(VERSION).await.assert_error(404, "M_NOT_FOUND");
    bob.get(&format!("{VERSION}/{v}")).await.assert_error(404, "M_NOT_FOUND");
    bob.get(&format!("{KEYS}?version={v}")).await.assert_error(404, "M_NOT_FOUND");
    bob.get(&session_path(&v, ROOM, "s")).await.assert_error(404, "M_NOT_FOUND");
    let update = json!({ "algorithm": MEGOLM, "auth_data": auth_data("bob's") });
    bob.put(&format!("{VERSION}/{v}"), update).await.assert_error(404, "M_NOT_FOUND");
    bob.put(&session_path(&v, ROOM, "s"), key(true, 0, 0, "bob's")).await.assert_error(404, "M_NOT_FOUND");
    bob.delete(&session_path(&v, ROOM, "s"), json!({})).await.assert_error(404, "M_NOT_FOUND");
    bob.delete(&format!("{VERSION}/{v}"), json!({})).await.assert_error(404, "M_NOT_FOUND");

    // Bob's own backup is numbered from 1 too, and is his alone.
    let bobs = create_version(&bob, "bob's").await;
    assert_eq!(bobs, v);
    assert_eq!(bob.get(&format!("{KEYS}?version={bobs}")).await.ok(), json!({ "rooms": {} }));
    bob.put(&session_path(&bobs, ROOM, "s"), key(false, 5, 5, "bob's key")).await.ok();
    bob.delete(&format!("{VERSION}/{bobs}"), json!({})).await.ok();

    assert_eq!(alice.get(VERSION).await.ok()["auth_data"], auth_data("alice's"));
    assert_eq!(alice.get(&session_path(&v, ROOM, "s")).await.ok(), key(true, 0, 0, "alice's key"));
    assert_eq!(alice.get(VERSION).await.ok()["count"], 1);
}
