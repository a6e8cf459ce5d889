//! The spec's error JSON for client mistakes, and CORS.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(client_mistakes_get_spec_errors, oversized_bodies_are_refused, cors_for_web_clients);

async fn client_mistakes_get_spec_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let anonymous = server.client();

    anonymous.get("/_matrix/client/v3/no/such/endpoint").await.assert_error(404, "M_UNRECOGNIZED");
    anonymous.get("/totally/unknown").await.assert_error(404, "M_UNRECOGNIZED");
    anonymous.delete("/_matrix/client/v3/login", json!({})).await.assert_error(405, "M_UNRECOGNIZED");
    // The server-server paths served on the client listener too.
    anonymous.get("/_matrix/federation/v1/version").await.ok();
    anonymous.put("/_matrix/federation/v1/version", json!({})).await.assert_error(405, "M_UNRECOGNIZED");
    anonymous.get("/_matrix/federation/unknown").await.assert_error(404, "M_UNRECOGNIZED");
    anonymous.post_raw("/_matrix/client/v3/login", "{not json").await.assert_error(400, "M_NOT_JSON");
    anonymous
        .post("/_matrix/client/v3/login", json!({ "type": "m.login.password", "user": 42, "password": "x" }))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice.post("/_matrix/client/v3/account/password", json!({})).await.assert_error(400, "M_MISSING_PARAM");
    anonymous.get("/_matrix/client/v3/account/whoami").await.assert_error(401, "M_MISSING_TOKEN");
    let mut forged = server.client();
    forged.token = Some("tsa_forged".into());
    let unknown = forged.get("/_matrix/client/v3/account/whoami").await;
    unknown.assert_error(401, "M_UNKNOWN_TOKEN");
    assert!(!unknown.body["soft_logout"].as_bool().unwrap_or(false), "a forged token is not a soft logout");
    // Endpoints that ignore tokens still work with a bad one (GET /login).
    forged.get("/_matrix/client/v3/login").await.ok();
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.max_request_bytes = 1024).await;
    let big = json!({ "type": "m.login.password", "user": "alice", "password": "x".repeat(4096) });
    server.client().post("/_matrix/client/v3/login", big).await.assert_error(413, "M_TOO_LARGE");
}

async fn cors_for_web_clients(backend: Backend) {
    let server = TestServer::start(backend).await;
    let http = reqwest::Client::new();
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{}/_matrix/client/v3/login", server.base))
        .header("Origin", "https://app.element.io")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .expect("ascii")
            .contains("Authorization")
    );

    let versions = server.client().get("/_matrix/client/versions").await;
    assert_eq!(versions.headers["access-control-allow-origin"], "*");
    let error = server.client().get("/_matrix/client/v3/nope").await;
    assert_eq!(error.headers["access-control-allow-origin"], "*", "errors carry CORS headers too");
}
