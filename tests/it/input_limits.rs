//! What a client may send: the edge's checks on every JSON body (depth,
//! integers, surrogates, NUL), path and query parameters, and the size
//! limits of stored strings. The same answer on both databases: before
//! these checks PostgreSQL answered 500 where SQLite stored the value.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#size-limits>.

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    both_backends,
    harness::{Backend, Response, TestServer, encode, next_txn},
};

both_backends!(
    nul_is_refused_alike_on_both_databases,
    identifiers_and_stored_strings_have_size_limits,
    bodies_stay_within_canonical_json,
    malformed_requests_get_spec_errors,
);

#[track_caller]
fn assert_400(response: &Response, what: &str) {
    assert_eq!(response.status, 400, "{what}: {}", response.body);
    assert!(
        response.body["errcode"].is_string() && response.body["error"].is_string(),
        "{what}: {}",
        response.body
    );
}

async fn nul_is_refused_alike_on_both_databases(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = encode(&alice.create_room(json!({})).await);
    let me = "@alice:tessera.test";
    let text = json!({ "msgtype": "m.text", "body": "hi" });
    let v3 = "/_matrix/client/v3";

    for (what, path) in [
        ("event type", format!("{v3}/rooms/{room}/send/m.room%00message/t1")),
        ("transaction ID", format!("{v3}/rooms/{room}/send/m.room.message/t%00x")),
        ("state key", format!("{v3}/rooms/{room}/state/org.example/a%00b")),
        ("account data type", format!("{v3}/user/{me}/account_data/org.a%00b")),
        ("room tag", format!("{v3}/user/{me}/rooms/{room}/tags/u.a%00b")),
    ] {
        assert_400(&alice.put(&path, text.clone()).await, what);
    }
    assert_400(&alice.get(&format!("{v3}/user/{me}/filter/a%00b")).await, "filter ID");
    assert_400(&alice.get(&format!("{v3}/sync?timeout=0&filter=a%00b")).await, "sync filter ID");
    assert_400(&alice.get(&format!("{v3}/rooms/{room}/messages?from=a%00b")).await, "pagination token");

    for (what, method, path, body) in [
        (
            "display name",
            Method::PUT,
            format!("{v3}/profile/{me}/displayname"),
            json!({ "displayname": "a\u{0}b" }),
        ),
        (
            "status message",
            Method::PUT,
            format!("{v3}/presence/{me}/status"),
            json!({ "presence": "online", "status_msg": "a\u{0}" }),
        ),
        (
            "message body",
            Method::PUT,
            format!("{v3}/rooms/{room}/send/m.room.message/t{}", next_txn()),
            json!({ "msgtype": "m.text", "body": "a\u{0}b" }),
        ),
        (
            "object key",
            Method::PUT,
            format!("{v3}/user/{me}/account_data/org.example"),
            json!({ "a\u{0}": 1 }),
        ),
        (
            "device ID",
            Method::POST,
            format!("{v3}/login"),
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw", "device_id": "A\u{0}" }),
        ),
    ] {
        let refused = alice.request(method, &path, Some(body)).await;
        assert_eq!((refused.status, refused.body["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{what}");
    }
    // Nothing was stored on either database.
    let profile = alice.get(&format!("{v3}/profile/{me}")).await.ok();
    assert!(profile.get("displayname").is_none_or(|name| name == "alice"), "{profile}");
}

async fn identifiers_and_stored_strings_have_size_limits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "pw").await;
    let room_id = alice.create_room(json!({})).await;
    let room = encode(&room_id);
    let me = "@alice:tessera.test";
    let v3 = "/_matrix/client/v3";
    let long = "x".repeat(256);
    let at_limit = "x".repeat(255);

    // Event types and state keys: 255 bytes (the spec).
    let too_long_type = alice.put(&format!("{v3}/rooms/{room}/send/{long}/t1"), json!({})).await;
    assert_400(&too_long_type, "event type of 256 bytes");
    alice.put(&format!("{v3}/rooms/{room}/send/{at_limit}/t2"), json!({})).await.ok();
    assert_400(
        &alice.put(&format!("{v3}/rooms/{room}/state/org.example/{long}"), json!({})).await,
        "state key",
    );
    alice.put(&format!("{v3}/rooms/{room}/state/org.example/{at_limit}"), json!({})).await.ok();
    alice.put(&format!("{v3}/rooms/{room}/send//t3"), json!({})).await.assert_error(400, "M_BAD_JSON");
    alice.put(&format!("{v3}/rooms/{room}/state//"), json!({})).await.assert_error(400, "M_BAD_JSON");
    // In a body, past the edge's path check: the event builder's limit.
    let initial_state = json!({ "initial_state": [{ "type": long, "state_key": "", "content": {} }] });
    alice.post(&format!("{v3}/createRoom"), initial_state).await.assert_error(413, "M_TOO_LARGE");

    // Strings stored outside events.
    let cases = [
        (Method::PUT, format!("{v3}/profile/{me}/displayname"), json!({ "displayname": "n".repeat(300) })),
        (
            Method::PUT,
            format!("{v3}/profile/{me}/avatar_url"),
            json!({ "avatar_url": format!("mxc://tessera.test/{}", "a".repeat(1_000)) }),
        ),
        (
            Method::PUT,
            format!("{v3}/presence/{me}/status"),
            json!({ "presence": "online", "status_msg": "s".repeat(1_025) }),
        ),
        (
            Method::PUT,
            format!("{v3}/devices/{}", alice.device_id.clone().expect("device")),
            json!({ "display_name": "d".repeat(101) }),
        ),
        (
            Method::POST,
            format!("{v3}/login"),
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw", "device_id": "D".repeat(256) }),
        ),
        (
            Method::POST,
            format!("{v3}/login"),
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw", "initial_device_display_name": "d".repeat(101) }),
        ),
    ];
    for (method, path, body) in cases {
        let refused = alice.request(method, &path, Some(body.clone())).await;
        assert_400(&refused, &format!("{path} {}", &body.to_string()[..60]));
    }
    let registered = server
        .client()
        .register_with(
            json!({ "username": "bob", "password": "pw", "initial_device_display_name": "d".repeat(101) }),
        )
        .await;
    assert_400(&registered, "registration with a long device name");
    // A 1,000,000-character device ID was stored on SQLite and a 500 on
    // PostgreSQL; a long password is never hashed, and never matches.
    let huge_device = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw", "device_id": "D".repeat(1_000_000) });
    assert_400(&alice.post(&format!("{v3}/login"), huge_device).await, "a 1,000,000-character device ID");
    alice.login("alice", &"p".repeat(600)).await.assert_error(403, "M_FORBIDDEN");

    // What fits is stored.
    alice
        .put(
            &format!("{v3}/presence/{me}/status"),
            json!({ "presence": "online", "status_msg": "s".repeat(1_024) }),
        )
        .await
        .ok();
    alice
        .put(&format!("{v3}/profile/{me}/displayname"), json!({ "displayname": "n".repeat(256) }))
        .await
        .ok();
    let device = alice.device_id.clone().expect("device");
    alice.put(&format!("{v3}/devices/{device}"), json!({ "display_name": "é".repeat(100) })).await.ok();
    let named = alice.get(&format!("{v3}/devices/{device}")).await.ok();
    assert_eq!(named["display_name"], "é".repeat(100));
}

async fn bodies_stay_within_canonical_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = encode(&alice.create_room(json!({})).await);
    let send = || format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t{}", next_txn());
    let nested = |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));

    // 126 levels answered 500 (a panic flattening it for push rules).
    for body in [nested(126), nested(65)] {
        alice.send_raw(Method::PUT, &send(), body).await.assert_error(400, "M_BAD_JSON");
    }
    for body in [r#"{"n":9007199254740992}"#, r#"{"n":-9007199254740992}"#, r#"{"n":1.5}"#] {
        alice.send_raw(Method::PUT, &send(), body).await.assert_error(400, "M_BAD_JSON");
    }
    for body in [r#"{"body":"\udc00"}"#, r#"{"body":"\ud800"}"#, r#"{"n":1e400}"#] {
        alice.send_raw(Method::PUT, &send(), body).await.assert_error(400, "M_NOT_JSON");
    }
    // Within the limits: stored, and read back by everyone's sync.
    let fine = alice.send_raw(Method::PUT, &send(), nested(64)).await.ok();
    let big = alice
        .send_raw(Method::PUT, &send(), r#"{"n":9007199254740991,"m":-9007199254740991,"s":"\ud83d\ude00"}"#)
        .await
        .ok();
    let sync = alice.sync(None, "").await;
    let timeline: Vec<&Value> = sync["rooms"]["join"]
        .as_object()
        .expect("rooms")
        .values()
        .flat_map(|r| r["timeline"]["events"].as_array().expect("events"))
        .collect();
    let ids: Vec<&str> = timeline.iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert!(
        ids.contains(&fine["event_id"].as_str().expect("id"))
            && ids.contains(&big["event_id"].as_str().expect("id")),
        "{sync}"
    );
    let stored = timeline.iter().find(|e| e["event_id"] == big["event_id"]).expect("the event");
    assert_eq!(stored["content"]["n"], 9_007_199_254_740_991_i64);
    assert_eq!(stored["content"]["s"], "😀");
}

async fn malformed_requests_get_spec_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = encode(&alice.create_room(json!({})).await);
    let v3 = "/_matrix/client/v3";

    // An inline filter that is not JSON, or not a filter, answered 404
    // "Unknown filter".
    alice.get(&format!("{v3}/sync?timeout=0&filter=%7Bbad")).await.assert_error(400, "M_NOT_JSON");
    alice
        .get(&format!("{v3}/sync?timeout=0&filter=%7B%22room%22%3A5%7D"))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice.get(&format!("{v3}/sync?timeout=0&filter=nosuchid")).await.assert_error(404, "M_NOT_FOUND");

    // An explicit limit=0 asks for no events.
    alice.send_text(&room, "one").await;
    let page = alice.get(&format!("{v3}/rooms/{room}/messages?dir=b&limit=0")).await.ok();
    assert_eq!(page["chunk"], json!([]), "{page}");
    let page = alice.get(&format!("{v3}/rooms/{room}/messages?dir=b")).await.ok();
    assert!(!page["chunk"].as_array().expect("chunk").is_empty(), "the default limit still applies");

    // ruma's login parser panicked on a body without `type`.
    let anonymous = server.client();
    anonymous
        .post(&format!("{v3}/login"), json!({ "user": "alice", "password": "pw" }))
        .await
        .assert_error(400, "M_MISSING_PARAM");
    anonymous
        .post(&format!("{v3}/login"), json!({ "type": 5, "password": "pw" }))
        .await
        .assert_error(400, "M_BAD_JSON");

    // The key server answered a wrong method with an empty 405.
    anonymous.delete("/_matrix/key/v2/server", json!({})).await.assert_error(405, "M_UNRECOGNIZED");

    // A chunked body with an invalid chunk size is the client's mistake
    // (it was 413).
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let request = "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: tessera.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
