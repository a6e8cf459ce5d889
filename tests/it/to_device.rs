//! To-device messages: once per device, until acknowledged.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestServer, next_txn},
};

both_backends!(
    to_device_is_delivered_exactly_once,
    key_and_secret_requests_reach_the_users_other_devices,
    unreadable_content_never_breaks_the_recipients_sync,
    a_retried_send_does_not_hide_the_next_message_after_a_restart
);

fn messages(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"].as_array().cloned().unwrap_or_default()
}

async fn to_device_is_delivered_exactly_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let phone = server.register("bob", "pw").await;
    let mut laptop = server.client();
    laptop.login("bob", "pw").await.ok();
    let phone_id = phone.device_id.clone().expect("device");
    let phone_since = phone.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let laptop_since = laptop.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    // A long-poll on the phone wakes for its message.
    let waiting = {
        let phone = phone.clone();
        let since = phone_since.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (
                phone.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=20000")).await.ok(),
                started.elapsed(),
            )
        })
    };
    let send = |txn: &str| format!("/_matrix/client/v3/sendToDevice/org.example.ping/{txn}");
    let to_phone = json!({ "messages": { "@bob:tessera.test": { phone_id.clone(): { "n": 1 } } } });
    alice.put(&send("t1"), to_phone.clone()).await.ok();
    alice.put(&send("t1"), to_phone).await.ok(); // a retry changes nothing
    alice.put(&send("t2"), json!({ "messages": { "@bob:tessera.test": { "*": { "n": 2 } } } })).await.ok();
    // Named and `*` in one request: the named device gets its own message
    // (once), the others the one for all.
    let both =
        json!({ "messages": { "@bob:tessera.test": { phone_id.clone(): { "n": 3 }, "*": { "n": 4 } } } });
    alice.put(&send("t3"), both).await.ok();
    let (woken, waited) = waiting.await.expect("task");
    assert!(waited < Duration::from_secs(20));
    assert!(!messages(&woken).is_empty());

    let first = phone.sync(Some(&phone_since), "").await;
    let got = messages(&first);
    let numbers: Vec<i64> = got.iter().filter_map(|m| m["content"]["n"].as_i64()).collect();
    assert_eq!(numbers, [1, 2, 3], "each message once, in order");
    assert_eq!(got[0]["sender"], "@alice:tessera.test");
    assert_eq!(got[0]["type"], "org.example.ping");
    // Not acknowledged yet: the same token gets them again.
    assert_eq!(messages(&phone.sync(Some(&phone_since), "").await).len(), 3);
    // Acknowledged by the next token: gone.
    let next = first["next_batch"].as_str().expect("token");
    assert!(messages(&phone.sync(Some(next), "").await).is_empty());

    let on_laptop = laptop.sync(Some(&laptop_since), "").await;
    let numbers: Vec<i64> = messages(&on_laptop).iter().filter_map(|m| m["content"]["n"].as_i64()).collect();
    assert_eq!(numbers, [2, 4], "the laptop gets only the messages for all devices");
}

/// What a new device does to get keys and secrets from the user's other
/// devices: `m.room_key_request` and `m.secret.request` to all of them
/// (`*`), and the answer (`m.secret.send`, Olm-encrypted as
/// `m.room.encrypted`) to the asking device alone.
async fn key_and_secret_requests_reach_the_users_other_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let phone = server.register("bob", "pw").await;
    let mut laptop = server.client();
    laptop.login("bob", "pw").await.ok();
    let laptop_id = laptop.device_id.clone().expect("device");
    let phone_since = phone.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let laptop_since = laptop.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    let key_request = json!({
        "action": "request",
        "requesting_device_id": laptop_id,
        "request_id": "req1",
        "body": { "algorithm": "m.megolm.v1.aes-sha2", "room_id": "!room:tessera.test", "session_id": "s1",
                  "sender_key": "c2VuZGVy" },
    });
    let secret_request = json!({ "action": "request", "name": "m.megolm_backup.v1", "requesting_device_id": laptop_id, "request_id": "req2" });
    for (kind, content) in [("m.room_key_request", key_request), ("m.secret.request", secret_request)] {
        let body = json!({ "messages": { "@bob:tessera.test": { "*": content } } });
        laptop.put(&format!("/_matrix/client/v3/sendToDevice/{kind}/{}", next_txn()), body).await.ok();
    }
    let on_phone = messages(&phone.sync(Some(&phone_since), "").await);
    let kinds: Vec<&str> = on_phone.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(kinds, ["m.room_key_request", "m.secret.request"], "{on_phone:?}");
    assert_eq!(on_phone[1]["content"]["name"], "m.megolm_backup.v1");
    assert_eq!(on_phone[1]["sender"], "@bob:tessera.test");

    let answer = json!({ "algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "cGhvbmU",
                         "ciphertext": { "bGFwdG9w": { "type": 0, "body": "c2VjcmV0IHNlbmQ" } } });
    let body = json!({ "messages": { "@bob:tessera.test": { laptop_id.clone(): answer.clone() } } });
    phone.put(&format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/{}", next_txn()), body).await.ok();
    let on_laptop = messages(&laptop.sync(Some(&laptop_since), "").await);
    let answers: Vec<&Value> = on_laptop.iter().filter(|m| m["type"] == "m.room.encrypted").collect();
    assert_eq!(answers.len(), 1, "{on_laptop:?}");
    assert_eq!(answers[0]["content"], answer);
    assert!(
        messages(&phone.sync(Some(&phone_since), "").await).iter().all(|m| m["type"] != "m.room.encrypted"),
        "the answer went to the laptop alone"
    );
}

/// Issue 23, defect 1: content `/sync` could not read back (lone
/// surrogates, numbers out of range, nesting past serde_json's limit) was
/// accepted and then failed every sync of the recipient's device for ever.
async fn unreadable_content_never_breaks_the_recipients_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let bob_device = bob.device_id.clone().expect("device");
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let deep = format!("{}1{}", "[".repeat(127), "]".repeat(127));
    for content in
        [r#"{"s":"\udc00"}"#, r#"{"s":"\ud800"}"#, r#"{"n":1e400}"#, r#"{"n":9007199254740992}"#, &deep]
    {
        let body = format!(r#"{{"messages":{{"@bob:tessera.test":{{"{bob_device}":{content}}}}}}}"#);
        let path = format!("/_matrix/client/v3/sendToDevice/org.example.bad/t{}", next_txn());
        let refused = alice.send_raw(reqwest::Method::PUT, &path, body).await;
        assert_eq!(refused.status, 400, "{content}: {}", refused.body);
        assert!(
            matches!(refused.body["errcode"].as_str(), Some("M_NOT_JSON" | "M_BAD_JSON")),
            "{}",
            refused.body
        );
    }
    let fine = json!({ "messages": { "@bob:tessera.test": { bob_device.clone(): { "n": 1 } } } });
    alice.put("/_matrix/client/v3/sendToDevice/org.example.ok/t-ok", fine).await.ok();
    let got = messages(&bob.sync(Some(&since), "").await);
    assert_eq!(got.len(), 1, "only the readable message: {got:?}");
    assert_eq!(got[0]["content"]["n"], 1);

    // A row stored before the edge checked bodies: skipped, not a 500, on
    // an initial sync and after a restart alike.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url()).await.expect("connect");
    sqlx::query(
        "INSERT INTO to_device_messages (user_id, device_id, stream_ordering, sender, event_type, content)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind("@bob:tessera.test")
    .bind(bob_device.as_str())
    .bind(1_i64)
    .bind("@alice:tessera.test")
    .bind("org.example.old")
    .bind(r#"{"s":"\udc00"}"#)
    .execute(&pool)
    .await
    .expect("insert an unreadable row");
    pool.close().await;
    let initial = bob.sync(None, "").await;
    assert!(messages(&initial).iter().all(|m| m["type"] != "org.example.old"), "{initial}");
}

/// A retried `PUT /sendToDevice` reserves a position that nothing stores,
/// and the next token covers (and acknowledges up to) it: after a restart,
/// the next message must not be given that position again.
async fn a_retried_send_does_not_hide_the_next_message_after_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "pw").await;
    let mut bob = server.register("bob", "pw").await;
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let send = |txn: &str| format!("/_matrix/client/v3/sendToDevice/org.example.ping/{txn}");
    let to_bob = |n: i64| json!({ "messages": { "@bob:tessera.test": { "*": { "n": n } } } });
    alice.put(&send("t1"), to_bob(1)).await.ok();
    alice.put(&send("t1"), to_bob(1)).await.ok(); // the retry
    let first = bob.sync(Some(&since), "").await;
    let numbers = |sync: &Value| -> Vec<i64> {
        messages(sync).iter().filter_map(|m| m["content"]["n"].as_i64()).collect()
    };
    assert_eq!(numbers(&first), [1]);
    let since = first["next_batch"].as_str().expect("token").to_owned();
    server.restart().await;
    alice.base = server.base.clone();
    bob.base = server.base.clone();
    alice.put(&send("t2"), to_bob(2)).await.ok();
    let after = bob.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}")).await.ok();
    assert_eq!(numbers(&after), [2], "the message sent after the restart, once: {after}");
}
