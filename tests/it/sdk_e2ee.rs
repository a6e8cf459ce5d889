//! End-to-end encryption with a real encrypting client (matrix-sdk with
//! its crypto, as in Element X): two users in an encrypted room read each
//! other's messages; a device logged in later reads the history through
//! recovery and key backup and is cross-signed; a user verifies another;
//! users of two servers read each other's messages (keys queried and
//! claimed, room keys sent as to-device messages, all over federation).
//! The server only ever holds ciphertext.

use std::time::Duration;

use matrix_sdk::{
    Room,
    room::MessagesOptions,
    ruma::{
        OwnedRoomId, OwnedUserId,
        api::client::room::create_room,
        events::{InitialStateEvent, room::encryption::RoomEncryptionEventContent},
    },
};
use serde_json::Value;
use tokio::time::{sleep, timeout};

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer, encode},
    sdk_client::{SdkClient, Seen, send_text},
};

both_backends!(
    two_users_read_each_others_encrypted_messages,
    users_on_two_servers_read_each_others_encrypted_messages,
    a_later_device_reads_history_through_key_backup_and_is_cross_signed,
    a_user_verifies_another_with_cross_signing
);

/// An encrypted room created by `creator` with `invite` invited.
async fn encrypted_room(creator: &SdkClient, invite: Vec<OwnedUserId>) -> Room {
    let mut request = create_room::v3::Request::new();
    request.invite = invite;
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults())
            .to_raw_any(),
    ];
    creator.client.create_room(request).await.expect("SDK creates an encrypted room")
}

/// The same account over plain HTTP, to look at what the server stores.
async fn raw_client(server: &TestServer, name: &str) -> TestClient {
    let mut client = server.client();
    client.login(name, "sdk-password").await.ok();
    client
}

/// The event as the server hands it out.
async fn stored_event(client: &TestClient, room: &OwnedRoomId, event_id: &str) -> Value {
    client
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", encode(room.as_str()), encode(event_id)))
        .await
        .ok()
}

async fn two_users_read_each_others_encrypted_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = SdkClient::login(&server, "alice").await;
    let mut bob = SdkClient::login(&server, "bob").await;
    let alice_room = encrypted_room(&alice, vec![bob.user_id()]).await;
    let bob_room = bob.client.join_room_by_id(alice_room.room_id()).await.expect("invited SDK client joins");

    let hello = send_text(&alice_room, "a secret hello").await;
    let from_alice = alice.user_id();
    let body = bob
        .wait_for("alice's encrypted message, decrypted", |seen| match seen {
            Seen::Message { sender, body, event_id } if sender == from_alice && event_id == hello => {
                Some(body)
            }
            _ => None,
        })
        .await;
    assert_eq!(body, "a secret hello");
    let reply = send_text(&bob_room, "a secret reply").await;
    let from_bob = bob.user_id();
    let body = alice
        .wait_for("bob's encrypted reply, decrypted", |seen| match seen {
            Seen::Message { sender, body, event_id } if sender == from_bob && event_id == reply => Some(body),
            _ => None,
        })
        .await;
    assert_eq!(body, "a secret reply");

    // What the server holds is Megolm ciphertext, never the text.
    let raw_bob = raw_client(&server, "bob").await;
    let stored = stored_event(&raw_bob, &alice_room.room_id().to_owned(), hello.as_str()).await;
    assert_eq!(stored["type"], "m.room.encrypted", "{stored}");
    assert_eq!(stored["content"]["algorithm"], "m.megolm.v1.aes-sha2");
    assert!(!stored.to_string().contains("secret hello"), "{stored}");
}

async fn users_on_two_servers_read_each_others_encrypted_messages(backend: Backend) {
    let (_ca, a, b) = crate::federation::two_servers(backend).await;
    let mut alice = SdkClient::login(&a, "alice").await;
    let mut bob = SdkClient::login(&b, "bob").await;
    // Alice invites Bob, of the other server, to her encrypted room.
    let alice_room = encrypted_room(&alice, vec![bob.user_id()]).await;
    let room_id = alice_room.room_id().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while bob.client.get_room(&room_id).is_none_or(|room| room.state() != matrix_sdk::RoomState::Invited) {
        assert!(tokio::time::Instant::now() < deadline, "Bob's sync never showed the invite");
        sleep(Duration::from_millis(200)).await;
    }
    let bob_room = bob.client.join_room_by_id(&room_id).await.expect("Bob joins through Alice's server");
    // Alice's server has Bob's join before she encrypts for him.
    let raw_alice = raw_client(&a, "alice").await;
    let members = format!("/_matrix/client/v3/rooms/{}/joined_members", encode(room_id.as_str()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !raw_alice.get(&members).await.ok()["joined"][bob.user_id().as_str()].is_object() {
        assert!(tokio::time::Instant::now() < deadline, "Bob's join never reached Alice's server");
        sleep(Duration::from_millis(200)).await;
    }

    let hello = send_text(&alice_room, "a secret across servers").await;
    let from_alice = alice.user_id();
    let body = bob
        .wait_for("alice's encrypted message from the other server, decrypted", |seen| match seen {
            Seen::Message { sender, body, event_id } if sender == from_alice && event_id == hello => {
                Some(body)
            }
            _ => None,
        })
        .await;
    assert_eq!(body, "a secret across servers");
    let reply = send_text(&bob_room, "a secret reply across servers").await;
    let from_bob = bob.user_id();
    let body = alice
        .wait_for("bob's encrypted reply from the other server, decrypted", |seen| match seen {
            Seen::Message { sender, body, event_id } if sender == from_bob && event_id == reply => Some(body),
            _ => None,
        })
        .await;
    assert_eq!(body, "a secret reply across servers");
    // Bob's server holds only ciphertext too.
    let raw_bob = raw_client(&b, "bob").await;
    let stored = stored_event(&raw_bob, &room_id, hello.as_str()).await;
    assert_eq!(stored["type"], "m.room.encrypted", "{stored}");
    assert!(!stored.to_string().contains("secret across"), "{stored}");
}

async fn a_later_device_reads_history_through_key_backup_and_is_cross_signed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = SdkClient::login(&server, "alice").await;
    // What Element does at first sign-in: cross-signing, secret storage and
    // a key backup, behind one recovery key.
    let recovery_key = alice.client.encryption().recovery().enable().await.expect("recovery is set up");
    let room = encrypted_room(&alice, Vec::new()).await;
    let room_id = room.room_id().to_owned();
    let history = send_text(&room, "said before the phone existed").await;
    alice.client.encryption().backups().wait_for_steady_state().await.expect("room keys backed up");
    let raw_alice = raw_client(&server, "alice").await;
    let version = raw_alice.get("/_matrix/client/v3/room_keys/version").await.ok();
    assert!(
        version["count"].as_u64().is_some_and(|count| count >= 1),
        "the room key is in the backup: {version}"
    );

    // A new device: recovery gives it the cross-signing keys (it signs
    // itself) and the backup key (it downloads the room keys).
    let phone = SdkClient::new_device(&server, "alice").await;
    phone.client.encryption().recovery().recover(&recovery_key).await.expect("recovered with the key");
    let phone_room = phone.client.get_room(&room_id).expect("the phone knows the room");
    let body = timeout(Duration::from_secs(30), async {
        loop {
            let page = phone_room.messages(MessagesOptions::backward()).await.expect("history");
            let decrypted = page.chunk.iter().find_map(|event| {
                let raw = event.raw();
                let is_history =
                    raw.get_field::<String>("event_id").ok().flatten().as_deref() == Some(history.as_str());
                let is_text =
                    raw.get_field::<String>("type").ok().flatten().as_deref() == Some("m.room.message");
                let content = raw.get_field::<Value>("content").ok().flatten()?;
                (is_history && is_text).then(|| content["body"].as_str().map(str::to_owned)).flatten()
            });
            if let Some(body) = decrypted {
                return body;
            }
            sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the phone decrypts the history with the backed-up room key");
    assert_eq!(body, "said before the phone existed");

    // The first device sees the phone signed by Alice's self-signing key,
    // and so verified.
    let alice_id = alice.user_id();
    let phone_id = phone.client.device_id().expect("device").to_owned();
    let verified = timeout(Duration::from_secs(20), async {
        loop {
            let device =
                alice.client.encryption().get_device(&alice_id, &phone_id).await.expect("device store");
            if let Some(device) = device.filter(|d| d.is_cross_signed_by_owner()) {
                return device.is_verified();
            }
            sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the phone's cross-signature reaches the first device");
    assert!(verified, "signed by the self-signing key of a verified identity");
}

async fn a_user_verifies_another_with_cross_signing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = SdkClient::login(&server, "alice").await;
    let bob = SdkClient::login(&server, "bob").await;
    let room = encrypted_room(&alice, vec![bob.user_id()]).await;
    bob.client.join_room_by_id(room.room_id()).await.expect("joins");
    let encryption = bob.client.encryption();
    encryption.wait_for_e2ee_initialization_tasks().await;
    let alice_id = alice.user_id();
    alice.client.encryption().wait_for_e2ee_initialization_tasks().await;

    // Bob sees Alice's identity (her cross-signing keys), not yet verified;
    // he verifies it, signing her master key with his user-signing key.
    let identity = timeout(Duration::from_secs(20), async {
        loop {
            if let Some(identity) = encryption.request_user_identity(&alice_id).await.expect("keys query") {
                return identity;
            }
            sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("Alice's cross-signing keys are published");
    assert!(!identity.is_verified());
    identity.verify().await.expect("Bob signs Alice's master key");
    let again = encryption.request_user_identity(&alice_id).await.expect("keys query").expect("identity");
    assert!(again.is_verified(), "the signature comes back from the server and verifies");

    // Bob's signature is in what the server gives Bob, not Alice.
    let raw_bob = raw_client(&server, "bob").await;
    let query = serde_json::json!({ "device_keys": { alice_id.as_str(): [] } });
    let seen_by_bob = raw_bob.post("/_matrix/client/v3/keys/query", query.clone()).await.ok();
    let bob_id = bob.user_id();
    assert!(
        seen_by_bob["master_keys"][alice_id.as_str()]["signatures"][bob_id.as_str()].is_object(),
        "{seen_by_bob}"
    );
    let raw_alice = raw_client(&server, "alice").await;
    let seen_by_alice = raw_alice.post("/_matrix/client/v3/keys/query", query).await.ok();
    assert!(seen_by_alice["master_keys"][alice_id.as_str()]["signatures"][bob_id.as_str()].is_null());
}
