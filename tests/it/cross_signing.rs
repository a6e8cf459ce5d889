//! Cross-signing: uploading master, self-signing and user-signing keys
//! (UIA only when replacing them), signing devices and other users'
//! master keys, what `/keys/query` shows whom, and the device-list changes
//! other users see.

use ruma::{CanonicalJsonValue, serde::Base64, signatures::Ed25519KeyPair};
use serde_json::{Value, json};

use crate::{
    both_backends,
    federation::{server_key, signed_get, two_servers},
    harness::{Backend, TestClient, TestServer, encode},
    keys::DeviceSigner,
};

both_backends!(
    cross_signing_keys_are_uploaded_once_without_uia_and_replaced_with_it,
    bad_cross_signing_keys_are_refused,
    signatures_are_verified_and_shown_to_whom_they_concern,
    cross_signing_changes_reach_device_lists,
    other_servers_users_keys_are_queried_and_claimed_over_federation
);

const SIGNING_UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";
const SIGNATURES_UPLOAD: &str = "/_matrix/client/v3/keys/signatures/upload";
const QUERY: &str = "/_matrix/client/v3/keys/query";
const KEYS_UPLOAD: &str = "/_matrix/client/v3/keys/upload";

/// One cross-signing key pair, named by its public key as the spec asks.
struct SigningKey {
    pair: Ed25519KeyPair,
    public: String,
}

impl SigningKey {
    fn generate() -> Self {
        let der = Ed25519KeyPair::generate();
        let probe = Ed25519KeyPair::from_der(&der, "probe".into()).expect("key read");
        let public = Base64::<ruma::serde::base64::Standard>::new(probe.public_key().to_vec()).encode();
        let pair = Ed25519KeyPair::from_der(&der, public.clone()).expect("key read");
        Self { pair, public }
    }

    fn key_id(&self) -> String {
        format!("ed25519:{}", self.public)
    }

    /// Signs the object as `user` (adding to its signatures).
    fn sign(&self, user: &str, mut object: Value) -> Value {
        let mut canonical = match CanonicalJsonValue::try_from(object.clone()).expect("canonical") {
            CanonicalJsonValue::Object(map) => map,
            _ => unreachable!("an object"),
        };
        ruma::signatures::sign_json(user, &self.pair, &mut canonical).expect("signed");
        object["signatures"] = serde_json::to_value(&canonical["signatures"]).expect("json");
        object
    }

    /// This key as a cross-signing key of `usage`, signed by `master`
    /// (itself for the master key).
    fn as_cross_signing_key(&self, user: &str, usage: &str, master: Option<&SigningKey>) -> Value {
        let key = json!({ "user_id": user, "usage": [usage], "keys": { self.key_id(): self.public } });
        match master {
            Some(master) => master.sign(user, key),
            None => key,
        }
    }
}

/// A user's three cross-signing keys.
struct CrossSigning {
    user: String,
    master: SigningKey,
    self_signing: SigningKey,
    user_signing: SigningKey,
}

impl CrossSigning {
    fn generate(client: &TestClient) -> Self {
        Self {
            user: client.user_id.clone().expect("user"),
            master: SigningKey::generate(),
            self_signing: SigningKey::generate(),
            user_signing: SigningKey::generate(),
        }
    }

    fn master_key(&self) -> Value {
        self.master.as_cross_signing_key(&self.user, "master", None)
    }

    fn upload_body(&self) -> Value {
        json!({
            "master_key": self.master_key(),
            "self_signing_key": self.self_signing.as_cross_signing_key(&self.user, "self_signing", Some(&self.master)),
            "user_signing_key": self.user_signing.as_cross_signing_key(&self.user, "user_signing", Some(&self.master)),
        })
    }
}

/// A device with identity keys uploaded, and its user's cross-signing keys.
async fn set_up(client: &TestClient) -> (DeviceSigner, CrossSigning) {
    let device = DeviceSigner::new(client);
    client.post(KEYS_UPLOAD, json!({ "device_keys": device.device_keys() })).await.ok();
    let cross_signing = CrossSigning::generate(client);
    client.post(SIGNING_UPLOAD, cross_signing.upload_body()).await.ok();
    (device, cross_signing)
}

fn signature(key: &Value, user: &str, key_id: &str) -> Value {
    key["signatures"][user][key_id].clone()
}

async fn cross_signing_keys_are_uploaded_once_without_uia_and_replaced_with_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    let bob = server.register("bob", "pw").await;
    let keys = CrossSigning::generate(&alice);
    let user = keys.user.clone();

    // The first upload needs no UIA; the identical upload again neither.
    alice.post(SIGNING_UPLOAD, keys.upload_body()).await.ok();
    alice.post(SIGNING_UPLOAD, keys.upload_body()).await.ok();
    alice.post(SIGNING_UPLOAD, json!({ "master_key": keys.master_key() })).await.ok();

    // Everyone sees the master and self-signing keys; only Alice sees her
    // user-signing key.
    let by_bob = bob.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    assert_eq!(by_bob["master_keys"][&user]["keys"], keys.master_key()["keys"], "{by_bob}");
    assert_eq!(by_bob["master_keys"][&user]["usage"], json!(["master"]));
    let self_signing = &by_bob["self_signing_keys"][&user];
    assert_eq!(self_signing["keys"][keys.self_signing.key_id()], keys.self_signing.public);
    assert!(signature(self_signing, &user, &keys.master.key_id()).is_string(), "signed by the master key");
    assert!(by_bob.get("user_signing_keys").is_none_or(|k| k.get(&user).is_none()), "{by_bob}");
    let by_alice = alice.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    assert_eq!(
        by_alice["user_signing_keys"][&user]["keys"][keys.user_signing.key_id()],
        keys.user_signing.public
    );

    // Replacing a key needs the password, and then takes effect.
    let new_self_signing = SigningKey::generate();
    let replacement = json!({ "self_signing_key": new_self_signing.as_cross_signing_key(&user, "self_signing", Some(&keys.master)) });
    let challenge = alice.post(SIGNING_UPLOAD, replacement.clone()).await;
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    assert_eq!(challenge.body["flows"][0]["stages"][0], "m.login.password");
    let unchanged = bob.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    assert_eq!(unchanged["self_signing_keys"][&user]["keys"], by_bob["self_signing_keys"][&user]["keys"]);
    alice.with_password_uia(reqwest::Method::POST, SIGNING_UPLOAD, replacement, "secret-pw").await.ok();
    let replaced = bob.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    assert_eq!(
        replaced["self_signing_keys"][&user]["keys"][new_self_signing.key_id()],
        new_self_signing.public
    );

    // A whole new identity (a reset) needs it too.
    let reset = CrossSigning::generate(&alice);
    alice
        .with_password_uia(reqwest::Method::POST, SIGNING_UPLOAD, reset.upload_body(), "secret-pw")
        .await
        .ok();
    let after_reset = bob.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    assert_eq!(after_reset["master_keys"][&user]["keys"], reset.master_key()["keys"]);
}

async fn bad_cross_signing_keys_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let keys = CrossSigning::generate(&alice);
    let user = keys.user.clone();

    // A self-signing key before any master key.
    let lone = json!({ "self_signing_key": keys.upload_body()["self_signing_key"] });
    alice.post(SIGNING_UPLOAD, lone).await.assert_error(400, "M_MISSING_PARAM");
    // Keys of another user.
    let bobs = CrossSigning::generate(&bob);
    alice.post(SIGNING_UPLOAD, bobs.upload_body()).await.assert_error(400, "M_INVALID_PARAM");
    // The wrong usage.
    let mut wrong_usage = keys.upload_body();
    wrong_usage["master_key"]["usage"] = json!(["self_signing"]);
    alice.post(SIGNING_UPLOAD, wrong_usage).await.assert_error(400, "M_INVALID_PARAM");
    // Two keys in one.
    let mut two = keys.upload_body();
    two["master_key"]["keys"]["ed25519:b3RoZXI"] = json!("b3RoZXI");
    alice.post(SIGNING_UPLOAD, two).await.assert_error(400, "M_INVALID_PARAM");
    // A key ID that is not its public key.
    let mut misnamed = keys.upload_body();
    misnamed["master_key"]["keys"] = json!({ "ed25519:NAME": keys.master.public });
    alice.post(SIGNING_UPLOAD, misnamed).await.assert_error(400, "M_INVALID_PARAM");
    // A self-signing key the master key did not sign, or signed by another.
    let mut unsigned = keys.upload_body();
    unsigned["self_signing_key"].as_object_mut().expect("object").remove("signatures");
    alice.post(SIGNING_UPLOAD, unsigned).await.assert_error(400, "M_INVALID_SIGNATURE");
    let mut forged = keys.upload_body();
    forged["self_signing_key"] = keys.self_signing.as_cross_signing_key(&user, "self_signing", None);
    let forged_signature = SigningKey::generate().sign(&user, forged["self_signing_key"].clone());
    let forged_signature =
        forged_signature["signatures"][&user].as_object().expect("signed").values().next().cloned();
    forged["self_signing_key"]["signatures"] = json!({ &user: { keys.master.key_id(): forged_signature } });
    alice.post(SIGNING_UPLOAD, forged).await.assert_error(400, "M_INVALID_SIGNATURE");
    alice.post(SIGNING_UPLOAD, json!({ "master_key": 7 })).await.assert_error(400, "M_BAD_JSON");
    // A key whose public key is one of the user's device IDs (the spec's 403).
    let taken = SigningKey::generate();
    let phone = server.client();
    phone
        .post(
            "/_matrix/client/v3/login",
            json!({
                "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" },
                "password": "pw", "device_id": taken.public,
            }),
        )
        .await
        .ok();
    let clash = json!({ "master_key": taken.as_cross_signing_key(&user, "master", None) });
    alice.post(SIGNING_UPLOAD, clash).await.assert_error(403, "M_FORBIDDEN");

    // None of it was stored.
    let queried = bob.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    assert!(queried.get("master_keys").is_none_or(|k| k.get(&user).is_none()), "{queried}");
}

async fn signatures_are_verified_and_shown_to_whom_they_concern(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (device, alices) = set_up(&alice).await;
    let (_, bobs) = set_up(&bob).await;
    let (user, bob_id) = (alices.user.clone(), bobs.user.clone());
    let device_id = device.device_id.clone();

    // Alice signs her device with her self-signing key, and her master key
    // with her device.
    let signed_device = alices.self_signing.sign(&user, device.device_keys());
    let signed_master = device.sign(alices.master_key());
    let body = json!({ &user: { &device_id: signed_device, &alices.master.public: signed_master } });
    let answer = alice.post(SIGNATURES_UPLOAD, body).await.ok();
    assert!(answer.get("failures").is_none_or(|f| f == &json!({})), "{answer}");

    // Bob signs Alice's master key with his user-signing key.
    let bob_signed = bobs.user_signing.sign(&bob_id, alices.master_key());
    let answer =
        bob.post(SIGNATURES_UPLOAD, json!({ &user: { &alices.master.public: bob_signed } })).await.ok();
    assert!(answer.get("failures").is_none_or(|f| f == &json!({})), "{answer}");

    let device_key_id = format!("ed25519:{device_id}");
    let by_bob = bob.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    let queried_device = &by_bob["device_keys"][&user][&device_id];
    assert!(signature(queried_device, &user, &alices.self_signing.key_id()).is_string(), "{queried_device}");
    assert!(signature(queried_device, &user, &device_key_id).is_string(), "the device's own signature stays");
    let master = &by_bob["master_keys"][&user];
    assert!(signature(master, &user, &device_key_id).is_string(), "{master}");
    assert!(signature(master, &bob_id, &bobs.user_signing.key_id()).is_string(), "Bob sees his signature");
    let by_alice = alice.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    assert!(
        signature(&by_alice["master_keys"][&user], &bob_id, &bobs.user_signing.key_id()).is_null(),
        "Bob's user-signing signatures are his alone: {by_alice}"
    );

    // Refused per key, with the reason; the rest of the upload is kept.
    let carol = server.register("carol", "pw").await;
    let carol_device = DeviceSigner::new(&carol);
    carol.post(KEYS_UPLOAD, json!({ "device_keys": carol_device.device_keys() })).await.ok();
    let carols = CrossSigning::generate(&carol);
    carol.post(SIGNING_UPLOAD, carols.upload_body()).await.ok();
    let carol_id = carols.user.clone();
    let mut bad_signature = carols.self_signing.sign(&carol_id, carol_device.device_keys());
    bad_signature["signatures"][&carol_id][carols.self_signing.key_id()] = json!("c2lnbmF0dXJl");
    let not_stored = carols.self_signing.sign(&carol_id, json!({ "user_id": carol_id, "device_id": "NOPE" }));
    let changed_keys = {
        let mut keys = carol_device.device_keys();
        keys["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
        carols.self_signing.sign(&carol_id, keys)
    };
    let by_device = carol_device.sign(carols.master_key());
    let body = json!({
        &carol_id: {
            &carol_device.device_id: bad_signature,
            "NOPE": not_stored,
            &carols.master.public: by_device,
        },
        &user: { &device_id: carols.self_signing.sign(&carol_id, device.device_keys()) },
    });
    let answer = carol.post(SIGNATURES_UPLOAD, body).await.ok();
    let failures = &answer["failures"];
    assert_eq!(failures[&carol_id][&carol_device.device_id]["errcode"], "M_INVALID_SIGNATURE", "{answer}");
    assert_eq!(failures[&carol_id]["NOPE"]["errcode"], "M_NOT_FOUND");
    assert_eq!(failures[&user][&device_id]["errcode"], "M_NOT_FOUND", "only master keys of others: {answer}");
    assert!(failures[&carol_id].get(&carols.master.public).is_none(), "the good one is kept: {answer}");
    // Signed keys that are not the device's stored keys.
    let body = json!({ &carol_id: { &carol_device.device_id: changed_keys } });
    let answer = carol.post(SIGNATURES_UPLOAD, body).await.ok();
    assert_eq!(
        answer["failures"][&carol_id][&carol_device.device_id]["errcode"], "M_INVALID_PARAM",
        "{answer}"
    );
    let queried = alice.post(QUERY, json!({ "device_keys": { carol_id.clone(): [] } })).await.ok();
    let carol_master = &queried["master_keys"][&carol_id];
    assert!(signature(carol_master, &carol_id, &format!("ed25519:{}", carol_device.device_id)).is_string());
    assert!(
        signature(
            &queried["device_keys"][&carol_id][&carol_device.device_id],
            &carol_id,
            &carols.self_signing.key_id()
        )
        .is_null(),
        "a signature that did not verify is not stored"
    );
}

async fn cross_signing_changes_reach_device_lists(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let mut bob_phone = server.client();
    bob_phone.login("bob", "pw").await.ok();
    let carol = server.register("carol", "pw").await;
    let user = alice.user_id.clone().expect("user");
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();

    let bob_since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let (device, alices) = set_up(&alice).await;
    let bob_sync = bob.sync(Some(&bob_since), "").await;
    assert!(changed_users(&bob_sync).contains(&user), "Bob shares a room with Alice: {bob_sync}");

    // Alice signing her device is a change of her device list too.
    let bob_since = bob_sync["next_batch"].as_str().expect("token").to_owned();
    let signed_device = alices.self_signing.sign(&user, device.device_keys());
    alice.post(SIGNATURES_UPLOAD, json!({ &user: { &device.device_id: signed_device } })).await.ok();
    let bob_sync = bob.sync(Some(&bob_since), "").await;
    assert!(changed_users(&bob_sync).contains(&user), "{bob_sync}");

    // Carol, sharing no room with Alice, signs her master key: only Carol
    // is told (her other devices re-query), nobody else.
    let (_, carols) = set_up(&carol).await;
    let carol_since = carol.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let bob_since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let carol_id = carols.user.clone();
    let carol_signed = carols.user_signing.sign(&carol_id, alices.master_key());
    carol.post(SIGNATURES_UPLOAD, json!({ &user: { &alices.master.public: carol_signed } })).await.ok();
    let carol_sync = carol.sync(Some(&carol_since), "").await;
    assert!(changed_users(&carol_sync).contains(&user), "{carol_sync}");
    let bob_sync = bob.sync(Some(&bob_since), "").await;
    assert!(!changed_users(&bob_sync).contains(&user), "{bob_sync}");

    // And a waiting sync of Bob's other device wakes for Alice's new keys.
    let phone_since = bob_phone.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let phone = bob_phone.clone();
    let waiting = tokio::spawn(async move {
        phone.get(&format!("/_matrix/client/v3/sync?timeout=10000&since={phone_since}")).await.ok()
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let other_master = SigningKey::generate();
    alice
        .with_password_uia(
            reqwest::Method::POST,
            SIGNING_UPLOAD,
            json!({ "master_key": other_master.as_cross_signing_key(&user, "master", None) }),
            "pw",
        )
        .await
        .ok();
    let woken = waiting.await.expect("sync");
    assert!(changed_users(&woken).contains(&user), "{woken}");
}

fn changed_users(sync: &Value) -> Vec<String> {
    sync["device_lists"]["changed"]
        .as_array()
        .map(|users| users.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn other_servers_users_keys_are_queried_and_claimed_over_federation(backend: Backend) {
    let (_ca, a, mut b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let (device, bobs) = set_up(&bob).await;
    let bob_id = bobs.user.clone();
    let otk = json!({ "signed_curve25519:AAAA": device.sign(json!({ "key": "b25lIHRpbWU" })) });
    bob.post(KEYS_UPLOAD, json!({ "one_time_keys": otk })).await.ok();
    bob.put(
        &format!("/_matrix/client/v3/devices/{}", device.device_id),
        json!({ "display_name": "Bob's phone" }),
    )
    .await
    .ok();

    // Alice's server asks Bob's: his device and cross-signing keys, not
    // his user-signing key.
    let queried = alice.post(QUERY, json!({ "device_keys": { bob_id.clone(): [] } })).await.ok();
    assert!(queried.get("failures").is_none_or(|f| f == &json!({})), "{queried}");
    let bobs_device = &queried["device_keys"][&bob_id][&device.device_id];
    assert_eq!(bobs_device["keys"], device.device_keys()["keys"], "{queried}");
    assert_eq!(bobs_device["unsigned"]["device_display_name"], "Bob's phone");
    assert_eq!(queried["master_keys"][&bob_id]["keys"], bobs.master_key()["keys"]);
    assert!(queried["self_signing_keys"][&bob_id].is_object());
    assert!(queried.get("user_signing_keys").is_none_or(|k| k.get(&bob_id).is_none()));

    // And claims his one-time key, once.
    let claim =
        json!({ "one_time_keys": { bob_id.clone(): { device.device_id.clone(): "signed_curve25519" } } });
    let claimed = alice.post("/_matrix/client/v3/keys/claim", claim.clone()).await.ok();
    assert_eq!(claimed["one_time_keys"][&bob_id][&device.device_id], otk, "{claimed}");
    let again = alice.post("/_matrix/client/v3/keys/claim", claim.clone()).await.ok();
    assert!(again["one_time_keys"].get(&bob_id).is_none(), "{again}");

    // Bob's device list as his server gives it to another server.
    let a_key = server_key(&a);
    let path = format!("/_matrix/federation/v1/user/devices/{}", encode(&bob_id));
    let devices = signed_get(&b, &path, &a_key, b.server_name()).await;
    assert_eq!(devices.status, 200, "{}", devices.body);
    assert_eq!(devices.body["devices"][0]["device_id"], device.device_id.as_str());
    assert_eq!(devices.body["devices"][0]["device_display_name"], "Bob's phone");
    assert!(devices.body["stream_id"].as_u64().is_some_and(|id| id > 0));
    assert_eq!(devices.body["master_key"]["keys"], bobs.master_key()["keys"]);

    // Bob's server away: listed in failures, the rest still answered.
    let b_name = b.server_name().to_owned();
    b.stop().await.expect("B stops");
    let alice_id = alice.user_id.clone().expect("user");
    let body = json!({ "device_keys": { bob_id.clone(): [], alice_id.clone(): [] } });
    let partial = alice.post(QUERY, body).await.ok();
    assert!(partial["failures"][&b_name].is_object(), "{partial}");
    assert!(partial["device_keys"][&alice_id].is_object());
    let failed = alice.post("/_matrix/client/v3/keys/claim", claim).await.ok();
    assert!(failed["failures"][&b_name].is_object(), "{failed}");
}
