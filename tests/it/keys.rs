//! End-to-end encryption keys: upload, query, claim, `/keys/changes`, and
//! what `/sync` reports (`device_one_time_keys_count`, `device_lists`).

use std::collections::HashSet;

use ruma::{CanonicalJsonValue, serde::Base64, signatures::Ed25519KeyPair};
use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer},
};

both_backends!(
    uploaded_keys_are_counted_queried_and_claimed_in_upload_order,
    bad_uploads_are_refused,
    concurrent_claims_never_hand_out_a_key_twice,
    device_lists_follow_shared_rooms,
    logins_and_deletions_are_device_list_changes
);

const UPLOAD: &str = "/_matrix/client/v3/keys/upload";
const QUERY: &str = "/_matrix/client/v3/keys/query";
const CLAIM: &str = "/_matrix/client/v3/keys/claim";

/// A device's signing key, for keys that verify as a client makes them.
pub(crate) struct DeviceSigner {
    pub pair: Ed25519KeyPair,
    pub user_id: String,
    pub device_id: String,
}

impl DeviceSigner {
    pub fn new(client: &TestClient) -> Self {
        let device_id = client.device_id.clone().expect("device");
        let der = Ed25519KeyPair::generate();
        let pair = Ed25519KeyPair::from_der(&der, device_id.clone()).expect("key read");
        Self { pair, user_id: client.user_id.clone().expect("user"), device_id }
    }

    pub fn sign(&self, mut object: Value) -> Value {
        let mut canonical = match CanonicalJsonValue::try_from(object.clone()).expect("canonical") {
            CanonicalJsonValue::Object(map) => map,
            _ => unreachable!("an object"),
        };
        ruma::signatures::sign_json(&self.user_id, &self.pair, &mut canonical).expect("signed");
        object["signatures"] = serde_json::to_value(&canonical["signatures"]).expect("json");
        object
    }

    pub fn device_keys(&self) -> Value {
        let public = Base64::<ruma::serde::base64::Standard>::new(self.pair.public_key().to_vec()).encode();
        self.sign(json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", self.device_id): "Y3VydmUyNTUxOSBrZXkgb2YgdGhlIGRldmljZQ",
                format!("ed25519:{}", self.device_id): public,
            },
        }))
    }

    fn one_time_key(&self, key: &str) -> Value {
        self.sign(json!({ "key": key }))
    }
}

fn otk_count(body: &Value) -> i64 {
    body["one_time_key_counts"]["signed_curve25519"].as_i64().expect("count")
}

async fn claim(client: &TestClient, user: &str, device: &str) -> Value {
    client.post(CLAIM, json!({ "one_time_keys": { user: { device: "signed_curve25519" } } })).await.ok()
}

async fn uploaded_keys_are_counted_queried_and_claimed_in_upload_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let signer = DeviceSigner::new(&alice);
    let (user, device) = (signer.user_id.clone(), signer.device_id.clone());
    alice.put(&format!("/_matrix/client/v3/devices/{device}"), json!({ "display_name": "Phone" })).await.ok();

    let since = alice.sync(None, "").await;
    assert_eq!(since["device_one_time_keys_count"]["signed_curve25519"], 0, "always there: {since}");
    assert_eq!(since["device_unused_fallback_key_types"], json!([]));

    // Uploaded B before A: claims follow upload order, not key IDs (MSC4225).
    let key_b = json!({ "signed_curve25519:BBBB": signer.one_time_key("a2V5IGI") });
    let first =
        alice.post(UPLOAD, json!({ "device_keys": signer.device_keys(), "one_time_keys": key_b })).await;
    assert_eq!(otk_count(&first.ok()), 1);
    let key_a = json!({ "signed_curve25519:AAAA": signer.one_time_key("a2V5IGE") });
    let fallback =
        json!({ "signed_curve25519:FFFF": signer.sign(json!({ "key": "ZmFsbGJhY2s", "fallback": true })) });
    let body =
        json!({ "device_keys": signer.device_keys(), "one_time_keys": key_a, "fallback_keys": fallback });
    assert_eq!(otk_count(&alice.post(UPLOAD, body.clone()).await.ok()), 2);
    // The identical upload again changes nothing.
    assert_eq!(otk_count(&alice.post(UPLOAD, body).await.ok()), 2);

    let synced = alice.sync(None, "").await;
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 2);
    assert_eq!(synced["device_unused_fallback_key_types"], json!(["signed_curve25519"]));

    // Query: every device, or the named one, with its display name.
    let all = bob.post(QUERY, json!({ "device_keys": { user.clone(): [] } })).await.ok();
    let keys = &all["device_keys"][&user][&device];
    assert_eq!(keys["keys"], signer.device_keys()["keys"]);
    assert_eq!(keys["signatures"], signer.device_keys()["signatures"]);
    assert_eq!(keys["unsigned"]["device_display_name"], "Phone");
    let named = bob.post(QUERY, json!({ "device_keys": { user.clone(): [device.clone()] } })).await.ok();
    assert_eq!(named["device_keys"][&user][&device]["device_id"], device.as_str());
    let other = bob.post(QUERY, json!({ "device_keys": { user.clone(): ["NOSUCHDEVICE"] } })).await.ok();
    assert_eq!(other["device_keys"][&user], json!({}));
    let bob_id = bob.user_id.clone().expect("user");
    let mixed = json!({ "device_keys": { bob_id.clone(): [], "@nobody:tessera.test": [], "@carol:elsewhere.test": [] } });
    let mixed = alice.post(QUERY, mixed).await.ok();
    assert_eq!(mixed["device_keys"][&bob_id], json!({}), "a user without keys: an empty map");
    assert!(mixed["device_keys"].get("@nobody:tessera.test").is_none(), "unknown users are left out");
    assert!(mixed["failures"]["elsewhere.test"].is_object(), "remote servers fail: {mixed}");
    alice
        .post(QUERY, json!({ "device_keys": { user.clone(): { "device_id1": true } } }))
        .await
        .assert_error(400, "M_BAD_JSON");

    // Claims: B, then A (each once), then the fallback key, which stays.
    let claimed = claim(&bob, &user, &device).await;
    assert_eq!(claimed["one_time_keys"][&user][&device], key_b);
    assert_eq!(claim(&bob, &user, &device).await["one_time_keys"][&user][&device], key_a);
    for _ in 0..2 {
        assert_eq!(claim(&bob, &user, &device).await["one_time_keys"][&user][&device], fallback);
    }
    let synced = alice.sync(None, "").await;
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(synced["device_unused_fallback_key_types"], json!([]), "the fallback key was used");
    let remote = bob
        .post(CLAIM, json!({ "one_time_keys": { "@carol:elsewhere.test": { "DEV": "signed_curve25519" } } }))
        .await
        .ok();
    assert!(remote["failures"]["elsewhere.test"].is_object());

    // A new fallback key replaces the used one, unused again.
    let fallback2 = json!({ "signed_curve25519:GGGG": signer.sign(json!({ "key": "bmV3IGZhbGxiYWNr", "fallback": true })) });
    alice.post(UPLOAD, json!({ "fallback_keys": fallback2 })).await.ok();
    assert_eq!(alice.sync(None, "").await["device_unused_fallback_key_types"], json!(["signed_curve25519"]));
    assert_eq!(claim(&bob, &user, &device).await["one_time_keys"][&user][&device], fallback2);
}

async fn bad_uploads_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let signer = DeviceSigner::new(&alice);
    let bob_signer = DeviceSigner::new(&bob);

    // Keys of another user's device, or of another device.
    bob.post(UPLOAD, json!({ "device_keys": signer.device_keys() }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let mut elsewhere = signer.device_keys();
    elsewhere["device_id"] = json!("OTHERDEVICE");
    alice.post(UPLOAD, json!({ "device_keys": elsewhere })).await.assert_error(400, "M_INVALID_PARAM");
    // Missing required fields.
    let incomplete = json!({ "user_id": signer.user_id, "device_id": signer.device_id });
    alice.post(UPLOAD, json!({ "device_keys": incomplete })).await.assert_error(400, "M_BAD_JSON");
    // A self-signature that does not verify (keys changed after signing).
    let mut tampered = signer.device_keys();
    tampered["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    alice.post(UPLOAD, json!({ "device_keys": tampered })).await.assert_error(400, "M_INVALID_SIGNATURE");
    // Signed by another device's key.
    let mut foreign = signer.device_keys();
    let mut unsigned = foreign.clone();
    unsigned.as_object_mut().expect("object").remove("signatures");
    let by_bob = bob_signer.sign(unsigned);
    let bob_signature =
        &by_bob["signatures"][&bob_signer.user_id][format!("ed25519:{}", bob_signer.device_id)];
    foreign["signatures"][&signer.user_id][format!("ed25519:{}", signer.device_id)] = bob_signature.clone();
    alice.post(UPLOAD, json!({ "device_keys": foreign })).await.assert_error(400, "M_INVALID_SIGNATURE");

    // New identity keys for a device replace the old ones (as Synapse
    // does, and as Complement's TestDeviceListUpdates expects).
    alice.post(UPLOAD, json!({ "device_keys": signer.device_keys() })).await.ok();
    let replacement = DeviceSigner::new(&alice);
    alice.post(UPLOAD, json!({ "device_keys": replacement.device_keys() })).await.ok();
    let queried = bob.post(QUERY, json!({ "device_keys": { signer.user_id.clone(): [] } })).await.ok();
    let stored = &queried["device_keys"][&signer.user_id][&signer.device_id];
    assert_eq!(stored["keys"], replacement.device_keys()["keys"], "the new keys");

    // A one-time key ID reused for another key: refused, and nothing of
    // that upload is stored.
    let key = json!({ "signed_curve25519:AAAA": signer.one_time_key("b25l") });
    assert_eq!(otk_count(&alice.post(UPLOAD, json!({ "one_time_keys": key })).await.ok()), 1);
    let clash = json!({
        "signed_curve25519:AAAA": signer.one_time_key("dHdv"),
        "signed_curve25519:BBBB": signer.one_time_key("dGhyZWU"),
    });
    alice.post(UPLOAD, json!({ "one_time_keys": clash })).await.assert_error(400, "M_INVALID_PARAM");
    assert_eq!(alice.sync(None, "").await["device_one_time_keys_count"]["signed_curve25519"], 1);
    alice
        .post(UPLOAD, json!({ "one_time_keys": { "signed_curve25519:CCCC": 42 } }))
        .await
        .assert_error(400, "M_BAD_JSON");
}

async fn concurrent_claims_never_hand_out_a_key_twice(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let signer = DeviceSigner::new(&alice);
    let (user, device) = (signer.user_id.clone(), signer.device_id.clone());
    let keys: serde_json::Map<String, Value> = (0..20)
        .map(|n| (format!("signed_curve25519:K{n:02}"), signer.one_time_key(&format!("a2V5{n:02}"))))
        .collect();
    alice.post(UPLOAD, json!({ "device_keys": signer.device_keys(), "one_time_keys": keys })).await.ok();

    let mut claimers = Vec::new();
    for n in 0..4 {
        claimers.push(server.register(&format!("claimer{n}"), "pw").await);
    }
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let client = claimers[n % claimers.len()].clone();
            let (user, device) = (user.clone(), device.clone());
            tokio::spawn(async move { claim(&client, &user, &device).await })
        })
        .collect();
    let mut handed_out = Vec::new();
    for task in tasks {
        let answer = task.await.expect("task");
        if let Some(keys) = answer["one_time_keys"][&user][&device].as_object() {
            handed_out.extend(keys.keys().cloned());
        }
    }
    let distinct: HashSet<&String> = handed_out.iter().collect();
    assert_eq!(distinct.len(), handed_out.len(), "a key handed out twice: {handed_out:?}");
    assert_eq!(handed_out.len(), 20, "every key handed out once");
    assert_eq!(alice.sync(None, "").await["device_one_time_keys_count"]["signed_curve25519"], 0);
}

fn listed(sync: &Value, section: &str, user: &str) -> bool {
    sync["device_lists"][section].as_array().is_some_and(|users| users.iter().any(|u| u == user))
}

fn token(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("token").to_owned()
}

async fn key_changes(client: &TestClient, from: &str, to: &str) -> Value {
    client.get(&format!("/_matrix/client/v3/keys/changes?from={from}&to={to}")).await.ok()
}

async fn device_lists_follow_shared_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let carol_id = carol.user_id.clone().expect("user");
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let start = token(&alice.sync(None, "").await);

    // Bob joins: newly shared, so changed.
    bob.join(&room).await.ok();
    let joined = alice.sync(Some(&start), "").await;
    assert!(listed(&joined, "changed", &bob_id), "{joined}");
    let after_join = token(&joined);

    // Bob's new keys wake Alice's long-poll; Carol's (no shared room) do not
    // show.
    let waiting = {
        let alice = alice.clone();
        let since = after_join.clone();
        tokio::spawn(async move {
            alice.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=20000")).await.ok()
        })
    };
    carol.post(UPLOAD, json!({ "device_keys": DeviceSigner::new(&carol).device_keys() })).await.ok();
    bob.post(UPLOAD, json!({ "device_keys": DeviceSigner::new(&bob).device_keys() })).await.ok();
    let woken = waiting.await.expect("task");
    let changed = alice.sync(Some(&after_join), "").await;
    assert!(listed(&woken, "changed", &bob_id) || listed(&changed, "changed", &bob_id), "{woken}");
    assert!(listed(&changed, "changed", &bob_id));
    assert!(!listed(&changed, "changed", &carol_id), "Carol shares no room: {changed}");
    let after_keys = token(&changed);
    let changes = key_changes(&alice, &after_join, &after_keys).await;
    assert_eq!(changes["changed"], json!([bob_id]));
    assert_eq!(changes["left"], json!([]));

    // Bob leaves: left, on every sync from that token.
    bob.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({})).await.ok();
    for _ in 0..2 {
        let left = alice.sync(Some(&after_keys), "").await;
        assert!(listed(&left, "left", &bob_id), "{left}");
        assert!(!listed(&left, "changed", &bob_id));
    }
    let after_leave = token(&alice.sync(Some(&after_keys), "").await);
    assert_eq!(key_changes(&alice, &after_keys, &after_leave).await["left"], json!([bob_id]));

    // His keys change while he is gone (a new device): not Alice's concern.
    let mut bob_laptop = server.client();
    bob_laptop.login("bob", "pw").await.ok();
    bob_laptop
        .post(UPLOAD, json!({ "device_keys": DeviceSigner::new(&bob_laptop).device_keys() }))
        .await
        .ok();
    let quiet = alice.sync(Some(&after_leave), "").await;
    assert!(!listed(&quiet, "changed", &bob_id), "{quiet}");
    // He rejoins: changed again.
    bob.join(&room).await.ok();
    let rejoined = alice.sync(Some(&after_leave), "").await;
    assert!(listed(&rejoined, "changed", &bob_id), "{rejoined}");
    assert!(!listed(&rejoined, "left", &bob_id));
}

async fn logins_and_deletions_are_device_list_changes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let alice_id = alice.user_id.clone().expect("user");
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await.ok();
    let alice_since = token(&alice.sync(None, "").await);
    let bob_since = token(&bob.sync(None, "").await);

    // Alice signs in a second device and gives it keys.
    let mut laptop = server.client();
    laptop.login("alice", "pw").await.ok();
    let laptop_id = laptop.device_id.clone().expect("device");
    laptop.post(UPLOAD, json!({ "device_keys": DeviceSigner::new(&laptop).device_keys() })).await.ok();
    let own = alice.sync(Some(&alice_since), "").await;
    assert!(listed(&own, "changed", &alice_id), "her own new login: {own}");
    let seen = bob.sync(Some(&bob_since), "").await;
    assert!(listed(&seen, "changed", &alice_id), "{seen}");
    let query = json!({ "device_keys": { alice_id.clone(): [] } });
    assert!(bob.post(QUERY, query.clone()).await.ok()["device_keys"][&alice_id][&laptop_id].is_object());

    // Deleting the laptop deletes its keys, and is a change too.
    let bob_since = token(&seen);
    alice
        .with_password_uia(
            reqwest::Method::DELETE,
            &format!("/_matrix/client/v3/devices/{laptop_id}"),
            json!({}),
            "pw",
        )
        .await
        .ok();
    let after = bob.sync(Some(&bob_since), "").await;
    assert!(listed(&after, "changed", &alice_id), "{after}");
    assert!(bob.post(QUERY, query).await.ok()["device_keys"][&alice_id].get(&laptop_id).is_none());
    laptop.post(UPLOAD, json!({})).await.assert_error(401, "M_UNKNOWN_TOKEN");
}
