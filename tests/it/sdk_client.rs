//! A real client: two matrix-sdk clients (the SDK Element X is built on)
//! chat through the server with their own sync loops, typing and receipts.
//! [`SdkClient`] is also the encrypting client of `sdk_e2ee`.

use std::time::Duration;

use matrix_sdk::{
    Client, Room,
    config::SyncSettings,
    encryption::{BackupDownloadStrategy, EncryptionSettings},
    ruma::{
        OwnedEventId, OwnedUserId,
        api::client::{receipt::create_receipt::v3::ReceiptType, room::create_room},
        events::{
            receipt::{ReceiptThread, SyncReceiptEvent},
            room::message::{MessageType, OriginalSyncRoomMessageEvent, RoomMessageEventContent},
            typing::SyncTypingEvent,
        },
    },
};
use tokio::{sync::mpsc, task::JoinHandle, time::timeout};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(two_sdk_clients_chat_with_typing_and_receipts);

/// What a client's sync loop saw, as its event handlers report it.
#[derive(Debug)]
pub(crate) enum Seen {
    Message { sender: OwnedUserId, body: String, event_id: OwnedEventId },
    Typing(Vec<OwnedUserId>),
    Read { reader: OwnedUserId, event_id: OwnedEventId },
}

/// A logged-in SDK client with its sync loop running. Encryption is on as
/// in Element X: cross-signing set up at the first login, room keys
/// downloaded from the backup once recovery gives the backup key.
pub(crate) struct SdkClient {
    pub client: Client,
    seen: mpsc::UnboundedReceiver<Seen>,
    sync: JoinHandle<()>,
}

const PASSWORD: &str = "sdk-password";

impl SdkClient {
    /// Registers `name` and logs in.
    pub async fn login(server: &TestServer, name: &str) -> Self {
        server.register(name, PASSWORD).await;
        Self::new_device(server, name).await
    }

    /// Logs in to an existing account as a new device.
    pub async fn new_device(server: &TestServer, name: &str) -> Self {
        let encryption = EncryptionSettings {
            auto_enable_cross_signing: true,
            backup_download_strategy: BackupDownloadStrategy::OneShot,
            ..Default::default()
        };
        let client = Client::builder()
            .homeserver_url(&server.base)
            .with_encryption_settings(encryption)
            .build()
            .await
            .expect("SDK client builds");
        client.matrix_auth().login_username(name, PASSWORD).await.expect("SDK logs in");
        let (tx, seen) = mpsc::unbounded_channel();
        let messages = tx.clone();
        client.add_event_handler(move |event: OriginalSyncRoomMessageEvent| {
            let tx = messages.clone();
            async move {
                if let MessageType::Text(text) = event.content.msgtype {
                    let _ = tx.send(Seen::Message {
                        sender: event.sender,
                        body: text.body,
                        event_id: event.event_id,
                    });
                }
            }
        });
        let typing = tx.clone();
        client.add_event_handler(move |event: SyncTypingEvent| {
            let tx = typing.clone();
            async move {
                let _ = tx.send(Seen::Typing(event.content.user_ids));
            }
        });
        client.add_event_handler(move |event: SyncReceiptEvent| {
            let tx = tx.clone();
            async move {
                for (event_id, receipts) in event.content.0 {
                    for (kind, readers) in receipts {
                        if kind == matrix_sdk::ruma::events::receipt::ReceiptType::Read {
                            for reader in readers.into_keys() {
                                let _ = tx.send(Seen::Read { reader, event_id: event_id.clone() });
                            }
                        }
                    }
                }
            }
        });
        // Skip whatever happened before this point, then sync forever.
        client.sync_once(SyncSettings::default()).await.expect("first sync");
        let looping = client.clone();
        let sync = tokio::spawn(async move {
            let settings = SyncSettings::default().timeout(Duration::from_secs(5));
            looping.sync(settings).await.expect("sync loop");
        });
        Self { client, seen, sync }
    }

    /// Waits (bounded) for the first report that `wanted` accepts.
    pub async fn wait_for<T>(&mut self, what: &str, mut wanted: impl FnMut(Seen) -> Option<T>) -> T {
        timeout(Duration::from_secs(20), async {
            loop {
                let seen = self.seen.recv().await.expect("sync loop alive");
                if let Some(found) = wanted(seen) {
                    return found;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what} never reached the client's sync loop"))
    }

    pub fn user_id(&self) -> OwnedUserId {
        self.client.user_id().expect("logged in").to_owned()
    }
}

impl Drop for SdkClient {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

pub(crate) async fn send_text(room: &Room, body: &str) -> OwnedEventId {
    room.send(RoomMessageEventContent::text_plain(body)).await.expect("SDK sends").response.event_id
}

async fn two_sdk_clients_chat_with_typing_and_receipts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = SdkClient::login(&server, "alice").await;
    let mut bob = SdkClient::login(&server, "bob").await;

    let mut request = create_room::v3::Request::new();
    request.name = Some("SDK room".into());
    request.invite = vec![bob.user_id()];
    let alice_room = alice.client.create_room(request).await.expect("SDK creates a room");
    let bob_room = bob.client.join_room_by_id(alice_room.room_id()).await.expect("invited SDK client joins");

    // Messages both ways, each seen by the other's sync loop.
    let hello = send_text(&alice_room, "hello from alice").await;
    let from_alice = alice.user_id();
    bob.wait_for("alice's message", |seen| match seen {
        Seen::Message { sender, body, event_id } if sender == from_alice && event_id == hello => Some(body),
        _ => None,
    })
    .await;
    let reply = send_text(&bob_room, "hi alice").await;
    let from_bob = bob.user_id();
    let body = alice
        .wait_for("bob's reply", |seen| match seen {
            Seen::Message { sender, body, event_id } if sender == from_bob && event_id == reply => Some(body),
            _ => None,
        })
        .await;
    assert_eq!(body, "hi alice");

    // Typing starts and stops.
    alice_room.typing_notice(true).await.expect("typing notice");
    bob.wait_for("alice typing", |seen| {
        matches!(seen, Seen::Typing(users) if users == [from_alice.clone()]).then_some(())
    })
    .await;
    alice_room.typing_notice(false).await.expect("typing stop");
    bob.wait_for("alice stopped typing", |seen| {
        matches!(seen, Seen::Typing(users) if users.is_empty()).then_some(())
    })
    .await;

    // Bob's read receipt on alice's message reaches alice.
    bob_room
        .send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, hello.clone())
        .await
        .expect("receipt");
    alice
        .wait_for("bob's read receipt", |seen| match seen {
            Seen::Read { reader, event_id } if reader == from_bob && event_id == hello => Some(()),
            _ => None,
        })
        .await;
}
