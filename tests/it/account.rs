//! `/account/whoami`, `/account/password`, `/account/deactivate`.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    password_change_needs_the_old_password_and_logs_out_others,
    password_change_can_keep_other_devices,
    deactivation_is_final,
    token_in_query_parameter_is_accepted,
);

async fn password_change_needs_the_old_password_and_logs_out_others(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "old-password").await;
    let mut laptop = server.client();
    laptop.login("alice", "old-password").await.ok();

    let path = "/_matrix/client/v3/account/password";
    let challenge = alice.post(path, json!({ "new_password": "new-password" })).await;
    assert_eq!(challenge.status, 401);
    let wrong = alice
        .post(
            path,
            json!({ "new_password": "new-password", "auth": {
                "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" },
                "password": "not-it", "session": challenge.body["session"] } }),
        )
        .await;
    assert_eq!((wrong.status, wrong.body["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{}", wrong.body);

    alice
        .with_password_uia(
            reqwest::Method::POST,
            path,
            json!({ "new_password": "new-password" }),
            "old-password",
        )
        .await
        .ok();
    alice.get("/_matrix/client/v3/account/whoami").await.ok();
    laptop.get("/_matrix/client/v3/account/whoami").await.assert_error(401, "M_UNKNOWN_TOKEN");
    let mut client = server.client();
    client.login("alice", "old-password").await.assert_error(403, "M_FORBIDDEN");
    client.login("alice", "new-password").await.ok();
}

async fn password_change_can_keep_other_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "old-password").await;
    let mut laptop = server.client();
    laptop.login("alice", "old-password").await.ok();
    alice
        .with_password_uia(
            reqwest::Method::POST,
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "new-password", "logout_devices": false }),
            "old-password",
        )
        .await
        .ok();
    laptop.get("/_matrix/client/v3/account/whoami").await.ok();
}

async fn deactivation_is_final(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let bob = server.register("bob", "secret-pw").await;
    let response = alice
        .with_password_uia(
            reqwest::Method::POST,
            "/_matrix/client/v3/account/deactivate",
            json!({ "erase": true }),
            "secret-pw",
        )
        .await
        .ok();
    assert_eq!(response["id_server_unbind_result"], "no-support");

    alice.get("/_matrix/client/v3/account/whoami").await.assert_error(401, "M_UNKNOWN_TOKEN");
    // Deactivation removes the password: login fails like a wrong password.
    server.client().login("alice", "secret-pw").await.assert_error(403, "M_FORBIDDEN");
    // The ID is never handed out again.
    let client = server.client();
    client
        .get("/_matrix/client/v3/register/available?username=alice")
        .await
        .assert_error(400, "M_USER_IN_USE");
    client
        .post("/_matrix/client/v3/register", json!({ "username": "alice", "password": "pw" }))
        .await
        .assert_error(400, "M_USER_IN_USE");
    bob.get("/_matrix/client/v3/profile/@alice:tessera.test").await.assert_error(404, "M_NOT_FOUND");
}

async fn token_in_query_parameter_is_accepted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let token = alice.token.clone().expect("token");
    let anonymous = server.client();
    let whoami = anonymous.get(&format!("/_matrix/client/v3/account/whoami?access_token={token}")).await.ok();
    assert_eq!(whoami["user_id"], "@alice:tessera.test");
}
