//! To-device messages: once per device, until acknowledged.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    to_device_is_delivered_exactly_once,
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
    let (woken, waited) = waiting.await.expect("task");
    assert!(waited < Duration::from_secs(20));
    assert!(!messages(&woken).is_empty());

    let first = phone.sync(Some(&phone_since), "").await;
    let got = messages(&first);
    let numbers: Vec<i64> = got.iter().filter_map(|m| m["content"]["n"].as_i64()).collect();
    assert_eq!(numbers, [1, 2], "each message once, in order");
    assert_eq!(got[0]["sender"], "@alice:tessera.test");
    assert_eq!(got[0]["type"], "org.example.ping");
    // Not acknowledged yet: the same token gets them again.
    assert_eq!(messages(&phone.sync(Some(&phone_since), "").await).len(), 2);
    // Acknowledged by the next token: gone.
    let next = first["next_batch"].as_str().expect("token");
    assert!(messages(&phone.sync(Some(next), "").await).is_empty());

    let on_laptop = laptop.sync(Some(&laptop_since), "").await;
    let numbers: Vec<i64> = messages(&on_laptop).iter().filter_map(|m| m["content"]["n"].as_i64()).collect();
    assert_eq!(numbers, [2], "the laptop gets only the message for all devices");
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
