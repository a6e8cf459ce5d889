//! `/versions`, well-known, `/capabilities`, `/health`, the key server.

use std::collections::BTreeMap;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    versions_lists_spec_versions,
    well_known_documents,
    capabilities_are_truthful,
    key_server_publishes_a_signed_key,
    the_default_room_version_is_configurable,
    no_bridges_and_no_turn_server_answer_empty,
);

async fn versions_lists_spec_versions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let body = server.client().get("/_matrix/client/versions").await.ok();
    let versions: Vec<&str> =
        body["versions"].as_array().expect("versions").iter().filter_map(|v| v.as_str()).collect();
    assert!(versions.contains(&"v1.1") && versions.contains(&"v1.12"), "{versions:?}");
    // Only what is implemented is claimed: the WebSocket sync channel.
    assert_eq!(body["unstable_features"], serde_json::json!({ "org.tessera.sync": true }));
    let health = reqwest::get(format!("{}/health", server.base)).await.expect("health");
    assert_eq!(health.status(), 200);
}

async fn well_known_documents(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client().get("/.well-known/matrix/client").await.ok();
    assert_eq!(client["m.homeserver"]["base_url"], server.base.as_str());
    server.client().get("/.well-known/matrix/server").await.assert_error(404, "M_NOT_FOUND");

    let configured = TestServer::start_with(backend, |c| {
        c.well_known.client = Some("https://matrix.example.org".into());
        c.well_known.server = Some("matrix.example.org:443".into());
    })
    .await;
    let client = configured.client().get("/.well-known/matrix/client").await.ok();
    assert_eq!(client["m.homeserver"]["base_url"], "https://matrix.example.org");
    let server_doc = configured.client().get("/.well-known/matrix/server").await.ok();
    assert_eq!(server_doc["m.server"], "matrix.example.org:443");
}

async fn capabilities_are_truthful(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.client().get("/_matrix/client/v3/capabilities").await.assert_error(401, "M_MISSING_TOKEN");
    let alice = server.register("alice", "password1").await;
    let caps = alice.get("/_matrix/client/v3/capabilities").await.ok();
    let caps = &caps["capabilities"];
    // Spelled out, though enabled is the spec's default: clients look for it.
    assert_eq!(caps["m.change_password"]["enabled"], true);
    assert_eq!(caps["m.set_displayname"]["enabled"], true);
    assert_eq!(caps["m.set_avatar_url"]["enabled"], true);
    assert_eq!(caps["m.3pid_changes"]["enabled"], false);
    assert_eq!(caps["m.get_login_token"]["enabled"], true);
    assert_eq!(caps["m.room_versions"]["default"], "12");
    let available = caps["m.room_versions"]["available"].as_object().expect("available");
    assert_eq!(available.len(), 12);
    assert!(available.values().all(|s| s == "stable"));
}

async fn key_server_publishes_a_signed_key(backend: Backend) {
    let server = TestServer::start(backend).await;
    let keys = server.client().get("/_matrix/key/v2/server").await.ok();
    assert_eq!(keys["server_name"], "tessera.test");
    assert!(keys["valid_until_ts"].as_u64().expect("valid_until_ts") > 0);
    let verify_keys = keys["verify_keys"].as_object().expect("verify_keys");
    assert_eq!(verify_keys.len(), 1);
    let (key_id, key) = verify_keys.iter().next().expect("one key");
    assert!(key_id.starts_with("ed25519:"));
    let public = ruma::serde::Base64::parse(key["key"].as_str().expect("key")).expect("base64 key");
    let object: ruma::CanonicalJsonObject = serde_json::from_value(keys.clone()).expect("canonical json");
    let public_keys =
        BTreeMap::from([("tessera.test".to_owned(), BTreeMap::from([(key_id.clone(), public)]))]);
    ruma::signatures::verify_json(&public_keys, &object).expect("the key server's response is self-signed");

    // The same key survives a restart (it is persisted in the data dir).
    let mut server = server;
    server.restart().await;
    let again = server.client().get("/_matrix/key/v2/server").await.ok();
    assert_eq!(again["verify_keys"], keys["verify_keys"]);
}

async fn the_default_room_version_is_configurable(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.default_room_version = "11".into()).await;
    let alice = server.register("alice", "password1").await;
    let caps = alice.get("/_matrix/client/v3/capabilities").await.ok();
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "11");
    let room = alice.create_room(serde_json::json!({})).await;
    let create = alice.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.create")).await.ok();
    assert_eq!(create["room_version"], "11");
}

/// Element polls `/thirdparty/protocols` and asks for a TURN server: a
/// server with neither answers empty, not 404.
async fn no_bridges_and_no_turn_server_answer_empty(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "password1").await;
    assert_eq!(alice.get("/_matrix/client/v3/thirdparty/protocols").await.ok(), serde_json::json!({}));
    assert_eq!(alice.get("/_matrix/client/v3/voip/turnServer").await.ok(), serde_json::json!({}));
    alice.get("/_matrix/client/v3/thirdparty/protocol/irc").await.assert_error(404, "M_NOT_FOUND");
    alice.get("/_matrix/client/v3/thirdparty/user/irc").await.assert_error(404, "M_NOT_FOUND");
    alice
        .get("/_matrix/client/v3/thirdparty/location?alias=%23a%3Atessera.test")
        .await
        .assert_error(404, "M_NOT_FOUND");
    // Both need an access token, like the rest of the client API.
    server.client().get("/_matrix/client/v3/thirdparty/protocols").await.assert_error(401, "M_MISSING_TOKEN");
    server.client().get("/_matrix/client/v3/voip/turnServer").await.assert_error(401, "M_MISSING_TOKEN");
}
