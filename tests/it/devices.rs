//! `GET /devices`, `GET/PUT/DELETE /devices/{deviceId}`, `POST /delete_devices`.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    devices_are_listed_and_renamed,
    unused_devices_are_listed_with_a_last_seen_time,
    deleting_devices_needs_uia_and_revokes_tokens
);

async fn devices_are_listed_and_renamed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let device = alice.device_id.clone().expect("device");

    let listed = alice.get("/_matrix/client/v3/devices").await.ok();
    let devices = listed["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["device_id"], device.as_str());
    // Authenticated requests record where the device was last seen.
    assert_eq!(devices[0]["last_seen_ip"], "127.0.0.1");
    assert!(devices[0]["last_seen_ts"].as_u64().is_some());

    let path = format!("/_matrix/client/v3/devices/{device}");
    alice.put(&path, json!({ "display_name": "Alice's laptop" })).await.ok();
    assert_eq!(alice.get(&path).await.ok()["display_name"], "Alice's laptop");
    // Without display_name the name is unchanged.
    alice.put(&path, json!({})).await.ok();
    assert_eq!(alice.get(&path).await.ok()["display_name"], "Alice's laptop");

    alice.get("/_matrix/client/v3/devices/NOSUCHDEVICE").await.assert_error(404, "M_NOT_FOUND");
    alice
        .put("/_matrix/client/v3/devices/NOSUCHDEVICE", json!({ "display_name": "x" }))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // Another user's device is invisible.
    let bob = server.register("bob", "secret-pw").await;
    bob.get(&path).await.assert_error(404, "M_NOT_FOUND");
}

/// matrix-nio requires `last_seen_ts` on every device in `GET /devices`; a
/// device that has not made a request yet must still carry one.
async fn unused_devices_are_listed_with_a_last_seen_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    let registered = server.register("alice", "secret-pw").await;
    let mut phone = server.client();
    phone.login("alice", "secret-pw").await.ok();
    let listed = phone.get("/_matrix/client/v3/devices").await.ok();
    let devices = listed["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2);
    for device in devices {
        assert!(device["last_seen_ts"].as_u64().is_some(), "no last_seen_ts: {device}");
        assert!(device.get("last_seen_ip").is_some(), "no last_seen_ip key: {device}");
    }
    assert!(devices.iter().any(|d| d["device_id"] == registered.device_id.as_deref().expect("device")));
}

async fn deleting_devices_needs_uia_and_revokes_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let mut phone = server.client();
    phone.login("alice", "secret-pw").await.ok();
    let mut tablet = server.client();
    tablet.login("alice", "secret-pw").await.ok();

    let phone_path = format!("/_matrix/client/v3/devices/{}", phone.device_id.as_deref().expect("device"));
    // Another user's password (however right for them) is refused
    // outright, and the device stays.
    server.register("bob", "bobs-pw").await;
    let bobs_auth = json!({ "auth": {
        "type": "m.login.password", "password": "bobs-pw",
        "identifier": { "type": "m.id.user", "user": "@bob:tessera.test" },
    }});
    alice.delete(&phone_path, bobs_auth).await.assert_error(403, "M_FORBIDDEN");
    alice.get(&phone_path).await.ok();
    // Deleting a device that is not there succeeds (after UIA), per the spec.
    alice
        .with_password_uia(
            reqwest::Method::DELETE,
            "/_matrix/client/v3/devices/NOSUCHDEVICE",
            json!({}),
            "secret-pw",
        )
        .await
        .ok();
    alice.with_password_uia(reqwest::Method::DELETE, &phone_path, json!({}), "secret-pw").await.ok();
    phone.get("/_matrix/client/v3/account/whoami").await.assert_error(401, "M_UNKNOWN_TOKEN");
    alice.get(&phone_path).await.assert_error(404, "M_NOT_FOUND");

    let devices = json!({ "devices": [tablet.device_id.clone().expect("device"), "UNKNOWN"] });
    alice
        .with_password_uia(reqwest::Method::POST, "/_matrix/client/v3/delete_devices", devices, "secret-pw")
        .await
        .ok();
    tablet.get("/_matrix/client/v3/account/whoami").await.assert_error(401, "M_UNKNOWN_TOKEN");
    let left = alice.get("/_matrix/client/v3/devices").await.ok();
    assert_eq!(left["devices"].as_array().expect("devices").len(), 1);
}
