//! `GET/POST /login`, `m.login.token`, refresh tokens and soft logout,
//! `/logout` and `/logout/all`.

use std::time::Duration;

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    login_flows_and_identifiers,
    wrong_credentials_are_forbidden,
    login_token_is_single_use,
    refresh_tokens_rotate_and_expired_tokens_soft_logout,
    logout_revokes_the_token_and_device,
    logout_all_revokes_every_device,
    relogin_as_known_device_replaces_its_token,
);

async fn login_flows_and_identifiers(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", "secret-pw").await;
    let client = server.client();
    let flows = client.get("/_matrix/client/v3/login").await.ok();
    let flows = flows["flows"].as_array().expect("flows");
    assert!(flows.iter().any(|f| f["type"] == "m.login.password"));
    assert!(flows.iter().any(|f| f["type"] == "m.login.token" && f["get_login_token"] == true));

    for identifier in [
        json!({ "type": "m.id.user", "user": "alice" }),
        json!({ "type": "m.id.user", "user": "@alice:tessera.test" }),
    ] {
        let body = client
            .post(
                "/_matrix/client/v3/login",
                json!({ "type": "m.login.password", "identifier": identifier, "password": "secret-pw" }),
            )
            .await
            .ok();
        assert_eq!(body["user_id"], "@alice:tessera.test");
        assert!(body["access_token"].is_string() && body["device_id"].is_string());
    }
    // The legacy `user` field, still sent by old bots.
    let legacy = client
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "user": "alice", "password": "secret-pw" }),
        )
        .await
        .ok();
    assert_eq!(legacy["user_id"], "@alice:tessera.test");
    // r0 paths are served too.
    client
        .post(
            "/_matrix/client/r0/login",
            json!({ "type": "m.login.password", "user": "alice", "password": "secret-pw" }),
        )
        .await
        .ok();
}

async fn wrong_credentials_are_forbidden(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", "secret-pw").await;
    let mut client = server.client();
    client.login("alice", "wrong").await.assert_error(403, "M_FORBIDDEN");
    client.login("nobody", "secret-pw").await.assert_error(403, "M_FORBIDDEN");
    client.login("@alice:other.server", "secret-pw").await.assert_error(403, "M_FORBIDDEN");
    client
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" } }),
        )
        .await
        .assert_error(400, "M_MISSING_PARAM");
    client
        .post("/_matrix/client/v3/login", json!({ "type": "org.example.magic", "user": "alice" }))
        .await
        .assert_error(400, "M_UNKNOWN");
    // No `type` at all: a missing parameter (ruma's parser meant to say so
    // but panicked; the edge now checks it first).
    client.post("/_matrix/client/v3/login", json!({})).await.assert_error(400, "M_MISSING_PARAM");
    // Nor with no body at all (read as `{}`; it reached the parser).
    client.post_raw("/_matrix/client/v3/login", "").await.assert_error(400, "M_MISSING_PARAM");
}

async fn login_token_is_single_use(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let minted = alice
        .with_password_uia(
            reqwest::Method::POST,
            "/_matrix/client/v1/login/get_token",
            json!({}),
            "secret-pw",
        )
        .await
        .ok();
    let token = minted["login_token"].as_str().expect("login_token");
    assert!(minted["expires_in_ms"].as_u64().expect("expires_in_ms") > 0);

    let client = server.client();
    let login = client
        .post("/_matrix/client/v3/login", json!({ "type": "m.login.token", "token": token }))
        .await
        .ok();
    assert_eq!(login["user_id"], "@alice:tessera.test");
    client
        .post("/_matrix/client/v3/login", json!({ "type": "m.login.token", "token": token }))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

async fn refresh_tokens_rotate_and_expired_tokens_soft_logout(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.refreshable_token_lifetime_ms = 1_500).await;
    server.register("alice", "secret-pw").await;
    let client = server.client();
    let login = client
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "user": "alice", "password": "secret-pw", "refresh_token": true }),
        )
        .await
        .ok();
    assert_eq!(login["expires_in_ms"], 1_500);
    let refresh_token = login["refresh_token"].as_str().expect("refresh_token").to_owned();

    let mut session = server.client();
    session.token = login["access_token"].as_str().map(str::to_owned);
    session.get("/_matrix/client/v3/account/whoami").await.ok();

    // Wait (by deadline) for the token to expire: soft logout, not a hard one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let expired = loop {
        let response = session.get("/_matrix/client/v3/account/whoami").await;
        if response.status == 401 {
            break response;
        }
        assert!(tokio::time::Instant::now() < deadline, "token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    expired.assert_error(401, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.body["soft_logout"], true);

    // A second session, also expired, can still log out (its refresh failed).
    let other = client
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "user": "alice", "password": "secret-pw", "refresh_token": true }),
        )
        .await
        .ok();
    let mut stale = server.client();
    stale.token = other["access_token"].as_str().map(str::to_owned);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stale.get("/_matrix/client/v3/account/whoami").await.status != 401 {
        assert!(tokio::time::Instant::now() < deadline, "token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stale.post("/_matrix/client/v3/logout", json!({})).await.ok();
    let refresh = other["refresh_token"].as_str().expect("refresh token");
    client
        .post("/_matrix/client/v3/refresh", json!({ "refresh_token": refresh }))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");

    // The refresh token gets a new pair on the same device.
    let refreshed =
        client.post("/_matrix/client/v3/refresh", json!({ "refresh_token": refresh_token })).await.ok();
    let new_refresh = refreshed["refresh_token"].as_str().expect("new refresh token").to_owned();
    assert_ne!(new_refresh, refresh_token);
    session.token = refreshed["access_token"].as_str().map(str::to_owned);
    let whoami = session.get("/_matrix/client/v3/account/whoami").await.ok();
    assert_eq!(whoami["device_id"], login["device_id"]);

    // Once the new token is used, the old refresh token is revoked.
    client
        .post("/_matrix/client/v3/refresh", json!({ "refresh_token": refresh_token }))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    client.post("/_matrix/client/v3/refresh", json!({ "refresh_token": new_refresh })).await.ok();
    client
        .post("/_matrix/client/v3/refresh", json!({ "refresh_token": "garbage" }))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

async fn logout_revokes_the_token_and_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let mut phone = server.client();
    phone.login("alice", "secret-pw").await.ok();

    phone.post("/_matrix/client/v3/logout", json!({})).await.ok();
    let gone = phone.get("/_matrix/client/v3/account/whoami").await;
    gone.assert_error(401, "M_UNKNOWN_TOKEN");
    assert!(!gone.body["soft_logout"].as_bool().unwrap_or(false), "logout is a hard logout");
    // The device went with it; the other session is untouched.
    let devices = alice.get("/_matrix/client/v3/devices").await.ok();
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["device_id"].as_str())
        .collect();
    assert_eq!(ids, vec![alice.device_id.as_deref().expect("device")]);
}

async fn logout_all_revokes_every_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let mut phone = server.client();
    phone.login("alice", "secret-pw").await.ok();
    alice.post("/_matrix/client/v3/logout/all", json!({})).await.ok();
    alice.get("/_matrix/client/v3/account/whoami").await.assert_error(401, "M_UNKNOWN_TOKEN");
    phone.get("/_matrix/client/v3/account/whoami").await.assert_error(401, "M_UNKNOWN_TOKEN");
    let mut fresh = server.client();
    fresh.login("alice", "secret-pw").await.ok();
    let devices = fresh.get("/_matrix/client/v3/devices").await.ok();
    assert_eq!(devices["devices"].as_array().expect("devices").len(), 1);
}

async fn relogin_as_known_device_replaces_its_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.register("alice", "secret-pw").await;
    let device = first.device_id.clone().expect("device");
    let client = server.client();
    let second = client
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "user": "alice", "password": "secret-pw", "device_id": device }),
        )
        .await
        .ok();
    assert_eq!(second["device_id"], device.as_str());
    first.get("/_matrix/client/v3/account/whoami").await.assert_error(401, "M_UNKNOWN_TOKEN");
}
