//! `POST/GET /register`, `/register/available`, registration tokens, guests.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    registration_is_closed_by_default,
    dummy_flow_registers_and_logs_in,
    usernames_are_checked,
    inhibit_login_and_device_options,
    registration_tokens_gate_registration,
    guests_register_only_when_allowed,
    unknown_uia_session_is_rejected,
    many_sign_ups_from_one_address_keep_their_sessions,
);

async fn registration_is_closed_by_default(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.allow_registration = false).await;
    let client = server.client();
    client
        .post("/_matrix/client/v3/register", json!({ "username": "alice", "password": "pw" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    client.get("/_matrix/client/v3/register").await.assert_error(403, "M_FORBIDDEN");
}

async fn dummy_flow_registers_and_logs_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let flows = client.get("/_matrix/client/v3/register").await.ok();
    assert_eq!(flows["flows"][0]["stages"], json!(["m.login.dummy"]));

    let challenge =
        client.post("/_matrix/client/v3/register", json!({ "username": "alice", "password": "pw1" })).await;
    assert_eq!(challenge.status, 401);
    assert_eq!(challenge.body["flows"][0]["stages"], json!(["m.login.dummy"]));
    let session = challenge.body["session"].as_str().expect("a UIA session");
    let registered = client
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "alice", "password": "pw1", "auth": { "type": "m.login.dummy", "session": session } }),
        )
        .await
        .ok();
    assert_eq!(registered["user_id"], "@alice:tessera.test");
    let token = registered["access_token"].as_str().expect("access token");
    assert!(token.len() >= 32, "tokens carry at least 128 bits");

    let mut alice = server.client();
    alice.token = Some(token.to_owned());
    let whoami = alice.get("/_matrix/client/v3/account/whoami").await.ok();
    assert_eq!(whoami["user_id"], "@alice:tessera.test");
    assert_eq!(whoami["device_id"], registered["device_id"]);
    assert!(!whoami["is_guest"].as_bool().unwrap_or(false));

    // The password works for a fresh login.
    let mut again = server.client();
    again.login("alice", "pw1").await.ok();
    assert_ne!(again.device_id, alice.device_id);

    // A client that sends the dummy stage without first asking also succeeds
    // (matrix-nio does this).
    client
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "bob", "password": "pw", "auth": { "type": "m.login.dummy" } }),
        )
        .await
        .ok();
}

async fn usernames_are_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let available = client.get("/_matrix/client/v3/register/available?username=carol").await.ok();
    assert_eq!(available["available"], true);
    server.register("carol", "pw").await;
    client
        .get("/_matrix/client/v3/register/available?username=carol")
        .await
        .assert_error(400, "M_USER_IN_USE");
    client
        .get("/_matrix/client/v3/register/available?username=Not%20Valid")
        .await
        .assert_error(400, "M_INVALID_USERNAME");
    client.get("/_matrix/client/v3/register/available").await.assert_error(400, "M_MISSING_PARAM");

    // A body that is not JSON is 400 before any UIA (not a 401 challenge).
    client.post_raw("/_matrix/client/v3/register", "{not json").await.assert_error(400, "M_NOT_JSON");
    // Taken and invalid names are refused before the UIA dance.
    client
        .post("/_matrix/client/v3/register", json!({ "username": "carol", "password": "pw" }))
        .await
        .assert_error(400, "M_USER_IN_USE");
    client
        .post("/_matrix/client/v3/register", json!({ "username": "UPPER case", "password": "pw" }))
        .await
        .assert_error(400, "M_INVALID_USERNAME");
    // Capitals alone are lowered, not refused (and then taken like any name).
    let upper = client.register_with(json!({ "username": "user-UPPER", "password": "pw" })).await.ok();
    assert_eq!(upper["user_id"], "@user-upper:tessera.test");
    client
        .post("/_matrix/client/v3/register", json!({ "username": "User-Upper", "password": "pw" }))
        .await
        .assert_error(400, "M_USER_IN_USE");

    // No username: the server picks one.
    let generated = client.register_with(json!({ "password": "pw" })).await.ok();
    assert!(generated["user_id"].as_str().expect("user_id").ends_with(":tessera.test"));
}

async fn inhibit_login_and_device_options(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let inhibited = client
        .register_with(json!({ "username": "dave", "password": "pw", "inhibit_login": true }))
        .await
        .ok();
    assert_eq!(inhibited["user_id"], "@dave:tessera.test");
    assert!(inhibited.get("access_token").is_none(), "{inhibited}");

    let eve = client
        .register_with(json!({
            "username": "eve", "password": "pw",
            "device_id": "EVEPHONE", "initial_device_display_name": "Eve's phone",
        }))
        .await
        .ok();
    assert_eq!(eve["device_id"], "EVEPHONE");
    let mut eve_client = server.client();
    eve_client.token = eve["access_token"].as_str().map(str::to_owned);
    let device = eve_client.get("/_matrix/client/v3/devices/EVEPHONE").await.ok();
    assert_eq!(device["display_name"], "Eve's phone");
}

async fn registration_tokens_gate_registration(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.allow_registration = false;
        c.registration_requires_token = true;
    })
    .await;
    let store = tessera::open_store(&server.config).await.expect("store");
    store.create_registration_token("once", Some(1), None).await.expect("create token");
    store.close().await;

    let client = server.client();
    let flows = client.get("/_matrix/client/v3/register").await.ok();
    assert_eq!(flows["flows"][0]["stages"], json!(["m.login.registration_token"]));
    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity";
    assert_eq!(client.get(&format!("{validity}?token=once")).await.ok()["valid"], true);
    assert_eq!(client.get(&format!("{validity}?token=nope")).await.ok()["valid"], false);

    let register = |name: &'static str, token: &'static str| {
        let client = server.client();
        async move {
            let challenge = client
                .post("/_matrix/client/v3/register", json!({ "username": name, "password": "pw" }))
                .await;
            assert_eq!(challenge.status, 401);
            client
                .post(
                    "/_matrix/client/v3/register",
                    json!({ "username": name, "password": "pw",
                            "auth": { "type": "m.login.registration_token", "token": token, "session": challenge.body["session"] } }),
                )
                .await
        }
    };
    let wrong = register("frank", "nope").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["errcode"], "M_FORBIDDEN", "a failed stage is reported inside the challenge");
    register("frank", "once").await.ok();
    // The token allowed one use, and it is spent.
    assert_eq!(client.get(&format!("{validity}?token=once")).await.ok()["valid"], false);
    assert_eq!(register("grace", "once").await.status, 401);
}

async fn guests_register_only_when_allowed(backend: Backend) {
    let closed = TestServer::start(backend).await;
    closed
        .client()
        .post("/_matrix/client/v3/register?kind=guest", json!({}))
        .await
        .assert_error(403, "M_GUEST_ACCESS_FORBIDDEN");

    let server = TestServer::start_with(backend, |c| c.allow_guests = true).await;
    // The spec: a guest's device_id (and everything but the display name) is ignored.
    let registered = server
        .client()
        .post(
            "/_matrix/client/v3/register?kind=guest",
            json!({ "device_id": "CHOSEN", "initial_device_display_name": "Guest phone" }),
        )
        .await
        .ok();
    assert_ne!(registered["device_id"], "CHOSEN");
    let mut guest = server.client();
    guest.token = registered["access_token"].as_str().map(str::to_owned);
    let whoami = guest.get("/_matrix/client/v3/account/whoami").await.ok();
    assert_eq!(whoami["is_guest"], true);
    assert_eq!(whoami["user_id"], registered["user_id"]);
    // Guests may set a display name but not touch account security.
    guest.get("/_matrix/client/v3/account/3pid").await.assert_error(403, "M_GUEST_ACCESS_FORBIDDEN");
    guest
        .post("/_matrix/client/v3/account/password", json!({ "new_password": "x" }))
        .await
        .assert_error(403, "M_GUEST_ACCESS_FORBIDDEN");
    let path = format!("/_matrix/client/v3/profile/{}/displayname", whoami["user_id"].as_str().expect("id"));
    guest.put(&path, json!({ "displayname": "Visitor" })).await.ok();
}

async fn unknown_uia_session_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .client()
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "heidi", "password": "pw", "auth": { "type": "m.login.dummy", "session": "made-up" } }),
        )
        .await
        .assert_error(400, "M_UNKNOWN");
}

/// Fifty people behind one address start signing up at once: every UIA
/// session stays valid until its owner completes it (none is evicted for
/// another's).
async fn many_sign_ups_from_one_address_keep_their_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let mut sessions = Vec::new();
    for i in 0..50 {
        let body = json!({ "username": format!("crowd{i}"), "password": "pw" });
        let challenge = client.post("/_matrix/client/v3/register", body).await;
        assert_eq!(challenge.status, 401);
        sessions.push(challenge.body["session"].as_str().expect("a UIA session").to_owned());
    }
    let registrations = sessions.iter().enumerate().map(|(i, session)| {
        let client = &client;
        async move {
            let body = json!({
                "username": format!("crowd{i}"), "password": "pw",
                "auth": { "type": "m.login.dummy", "session": session },
            });
            client.post("/_matrix/client/v3/register", body).await.ok()
        }
    });
    let registered = futures_util::future::join_all(registrations).await;
    for (i, account) in registered.iter().enumerate() {
        assert_eq!(account["user_id"], format!("@crowd{i}:tessera.test"));
    }
}
