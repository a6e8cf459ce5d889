//! `GET /profile/{userId}`, `GET/PUT /profile/{userId}/displayname|avatar_url`.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(profiles_are_set_and_read, profile_errors);

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
            "/_matrix/client/v3/profile/@alice:tessera.test/avatar_url",
            json!({ "avatar_url": "https://example.org/a.png" }),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
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
