//! Synapse's shared-secret registration, `/_synapse/admin/v1/register`.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer},
};

both_backends!(shared_secret_registration_creates_accounts, shared_secret_registration_is_guarded);

fn mac(secret: &str, nonce: &str, user: &str, password: &str, admin: bool) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    let admin = if admin { "admin" } else { "notadmin" };
    mac.update(format!("{nonce}\0{user}\0{password}\0{admin}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn nonce(client: &TestClient) -> String {
    client.get("/_synapse/admin/v1/register").await.ok()["nonce"].as_str().expect("nonce").to_owned()
}

async fn shared_secret_registration_creates_accounts(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.allow_registration = false;
        c.registration_shared_secret = Some("complement".into());
    })
    .await;
    let client = server.client();
    let nonce = nonce(&client).await;
    let body = json!({
        "nonce": nonce, "username": "admin", "password": "pw", "displayname": "The Admin", "admin": true,
        "mac": mac("complement", &nonce, "admin", "pw", true),
    });
    let registered = client.post("/_synapse/admin/v1/register", body).await.ok();
    assert_eq!(registered["user_id"], "@admin:tessera.test");
    assert_eq!(registered["home_server"], "tessera.test");
    let mut admin = server.client();
    admin.token = registered["access_token"].as_str().map(str::to_owned);
    assert_eq!(admin.get("/_matrix/client/v3/account/whoami").await.ok()["user_id"], "@admin:tessera.test");
    let name = client.get("/_matrix/client/v3/profile/@admin:tessera.test/displayname").await.ok();
    assert_eq!(name["displayname"], "The Admin");

    // Capitals are lowered, as on the client API (the MAC covers the name
    // as sent).
    let nonce = self::nonce(&client).await;
    let body = json!({
        "nonce": nonce, "username": "Shared-SECRET", "password": "pw", "admin": false,
        "mac": mac("complement", &nonce, "Shared-SECRET", "pw", false),
    });
    let registered = client.post("/_synapse/admin/v1/register", body).await.ok();
    assert_eq!(registered["user_id"], "@shared-secret:tessera.test");
}

async fn shared_secret_registration_is_guarded(backend: Backend) {
    let disabled = TestServer::start(backend).await;
    disabled.client().get("/_synapse/admin/v1/register").await.assert_error(400, "M_UNKNOWN");

    let server =
        TestServer::start_with(backend, |c| c.registration_shared_secret = Some("s3cret".into())).await;
    let client = server.client();
    let nonce_value = nonce(&client).await;
    let body = |nonce: &str, mac: String| -> Value {
        json!({ "nonce": nonce, "username": "mallory", "password": "pw", "admin": true, "mac": mac })
    };
    client
        .post(
            "/_synapse/admin/v1/register",
            body(&nonce_value, mac("wrong", &nonce_value, "mallory", "pw", true)),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    // The nonce was consumed by the failed attempt.
    client
        .post(
            "/_synapse/admin/v1/register",
            body(&nonce_value, mac("s3cret", &nonce_value, "mallory", "pw", true)),
        )
        .await
        .assert_error(400, "M_UNKNOWN");
    client
        .post(
            "/_synapse/admin/v1/register",
            body("never-issued", mac("s3cret", "never-issued", "mallory", "pw", true)),
        )
        .await
        .assert_error(400, "M_UNKNOWN");
    client
        .post("/_synapse/admin/v1/register", json!({ "nonce": "x" }))
        .await
        .assert_error(400, "M_MISSING_PARAM");
    client.post_raw("/_synapse/admin/v1/register", "nope").await.assert_error(400, "M_NOT_JSON");
}
