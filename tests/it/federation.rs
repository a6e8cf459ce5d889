//! Federation: the HTTPS listener; two servers on loopback (a test CA,
//! names `localhost:<port>`) fetching, verifying and vouching for each
//! other's keys, asking each other for profiles over signed requests; and
//! the refusal of requests that are not signed by their origin.

use std::{net::SocketAddr, sync::Arc};

use serde_json::{Value, json};
use tessera_core::ServerSigningKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsConnector,
    rustls::{self, RootCertStore, pki_types::ServerName},
};

use crate::{
    both_backends,
    harness::{Backend, Response, TestCa, TestClient, TestServer, encode},
};

both_backends!(
    federation_listener_speaks_https,
    servers_fetch_and_vouch_for_each_others_keys,
    profiles_of_other_servers_users_are_asked_of_their_server,
    federation_requests_must_be_signed_by_their_origin,
    to_device_messages_cross_servers_once_and_survive_restarts,
    transactions_are_applied_once_and_speak_only_for_their_origin,
    events_are_given_only_to_servers_that_may_see_them,
    keys_of_a_server_that_is_away_come_from_a_trusted_notary
);

/// A GET over TLS to `addr`, trusting only `ca_pem`; returns status and body.
async fn https_get(addr: SocketAddr, ca_pem: &str, host: &str, path: &str) -> (u16, Value) {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(host.to_owned()).expect("server name");
    let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, serde_json::from_str(body.trim()).unwrap_or(Value::Null))
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).map(|c| c.expect("PEM cert")).collect()
}

async fn federation_listener_speaks_https(backend: Backend) {
    let cert = rcgen::generate_simple_self_signed(vec!["tessera.test".to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");

    let server = TestServer::start_with(backend, |c| {
        c.federation_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.tls_certificate = Some(cert_path.clone());
        c.tls_private_key = Some(key_path.clone());
    })
    .await;
    let addr = server.federation_addr.expect("federation listener");
    let ca = cert.cert.pem();

    let (status, version) = https_get(addr, &ca, "tessera.test", "/_matrix/federation/v1/version").await;
    assert_eq!(status, 200);
    assert_eq!(version["server"]["name"], "Tessera");
    let (status, keys) = https_get(addr, &ca, "tessera.test", "/_matrix/key/v2/server").await;
    assert_eq!(status, 200);
    assert_eq!(keys["server_name"], "tessera.test");
    // The same key is published on both listeners.
    let client_keys = server.client().get("/_matrix/key/v2/server").await.ok();
    assert_eq!(client_keys["verify_keys"], keys["verify_keys"]);
    let (status, unknown) = https_get(addr, &ca, "tessera.test", "/_matrix/federation/v1/nope").await;
    assert_eq!((status, unknown["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")));
}

/// Two servers that trust one CA and may reach each other on loopback.
pub(crate) async fn two_servers(backend: Backend) -> (TestCa, TestServer, TestServer) {
    let ca = TestCa::new();
    let a = TestServer::start_federating(backend, &ca).await;
    let b = TestServer::start_federating(backend, &ca).await;
    (ca, a, b)
}

async fn servers_fetch_and_vouch_for_each_others_keys(backend: Backend) {
    let (_ca, a, mut b) = two_servers(backend).await;
    let b_name = b.server_name().to_owned();
    let published = b.client().get("/_matrix/key/v2/server").await.ok();
    let a_name = a.server_name().to_owned();

    // A, asked as a notary, fetches B's keys over federation, checks them
    // and serves them signed by B and by itself.
    let one = a.client().get(&format!("/_matrix/key/v2/query/{}", encode(&b_name))).await.ok();
    let keys = one["server_keys"].as_array().expect("server_keys");
    assert_eq!(keys.len(), 1, "{one}");
    assert_eq!(keys[0]["server_name"], b_name.as_str());
    assert_eq!(keys[0]["verify_keys"], published["verify_keys"]);
    assert!(keys[0]["signatures"][&b_name].is_object(), "B's own signature: {one}");
    assert!(keys[0]["signatures"][&a_name].is_object(), "the notary's signature: {one}");
    let batch = json!({ "server_keys": { b_name.clone(): {} } });
    let batch = a.client().post("/_matrix/key/v2/query", batch).await.ok();
    assert_eq!(batch["server_keys"][0]["verify_keys"], published["verify_keys"]);

    // A server that cannot be reached has no keys to give.
    let nobody = a.client().get("/_matrix/key/v2/query/localhost:1").await.ok();
    assert_eq!(nobody["server_keys"], json!([]));
    // Nor may a private address be contacted unless allowed (A allows
    // only 127.0.0.0/8): no keys. (That no connection is attempted, for
    // every spelling of an address, is `discovery`'s unit test.)
    let private = a.client().get("/_matrix/key/v2/query/10.0.0.1:8448").await.ok();
    assert_eq!(private["server_keys"], json!([]));

    // B away: A still vouches for what it fetched, while it is valid.
    b.stop().await.expect("B stops");
    let cached = a.client().get(&format!("/_matrix/key/v2/query/{}", encode(&b_name))).await.ok();
    assert_eq!(cached["server_keys"][0]["verify_keys"], published["verify_keys"], "{cached}");
    // But not past its validity.
    let far = "minimum_valid_until_ts=99999999999999";
    let later = a.client().get(&format!("/_matrix/key/v2/query/{}?{far}", encode(&b_name))).await.ok();
    assert_eq!(later["server_keys"], json!([]));
}

async fn profiles_of_other_servers_users_are_asked_of_their_server(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    bob.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", encode(&bob_id)),
        json!({ "displayname": "Bob B" }),
    )
    .await
    .ok();

    let profile = alice.get(&format!("/_matrix/client/v3/profile/{}", encode(&bob_id))).await.ok();
    assert_eq!(profile["displayname"], "Bob B", "{profile}");
    let name = alice.get(&format!("/_matrix/client/v3/profile/{}/displayname", encode(&bob_id))).await.ok();
    assert_eq!(name["displayname"], "Bob B");
    let nobody = format!("@nobody:{}", b.server_name());
    alice
        .get(&format!("/_matrix/client/v3/profile/{}", encode(&nobody)))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let unreachable = "@carol:localhost:1";
    let answer = alice.get(&format!("/_matrix/client/v3/profile/{}", encode(unreachable))).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
}

/// A federation GET to `server`, signed with `key` for `destination`.
pub(crate) async fn signed_get(
    server: &TestServer,
    path: &str,
    key: &ServerSigningKey,
    destination: &str,
) -> Response {
    signed_request(server, reqwest::Method::GET, path, None, key, destination).await
}

/// A federation request to `server`, signed with `key` (as its server)
/// for `destination`.
pub(crate) async fn signed_request(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    key: &ServerSigningKey,
    destination: &str,
) -> Response {
    let bytes = body.as_ref().map(|b| serde_json::to_vec(b).expect("json")).unwrap_or_default();
    let request =
        http::Request::builder().method(method.as_str()).uri(path).body(bytes.clone()).expect("request");
    let destination = ruma::ServerName::parse(destination).expect("server name");
    let auth = key.sign_request(&request, &destination).expect("signed");
    let value = http::HeaderValue::from(&auth);
    let mut builder = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base))
        .header("authorization", value.to_str().expect("header"));
    if body.is_some() {
        builder = builder.header("content-type", "application/json").body(bytes);
    }
    let response = builder.send().await.expect("request sent");
    let status = response.status().as_u16();
    Response {
        status,
        headers: response.headers().clone(),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

/// The server's signing key, read from its data directory.
pub(crate) fn server_key(server: &TestServer) -> ServerSigningKey {
    let name = ruma::OwnedServerName::try_from(server.server_name()).expect("server name");
    let text = std::fs::read_to_string(server.data_dir().join("signing.key")).expect("signing key");
    ServerSigningKey::parse(name, &text).expect("key")
}

async fn federation_requests_must_be_signed_by_their_origin(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", encode(&bob_id));
    let a_key = server_key(&a);
    let a_name = ruma::OwnedServerName::try_from(a.server_name()).expect("server name");

    // Signed by A for B: answered.
    let answer = signed_get(&b, &path, &a_key, b.server_name()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["displayname"], "bob");

    // Unsigned, signed for another destination, or with a key A does not
    // have (B fetches A's keys and does not find it): 401.
    let unsigned = reqwest::get(format!("{}{path}", b.base)).await.expect("sent");
    assert_eq!(unsigned.status().as_u16(), 401);
    let body: Value = unsigned.json().await.expect("json");
    assert_eq!(body["errcode"], "M_UNAUTHORIZED");
    signed_get(&b, &path, &a_key, "elsewhere.test").await.assert_error(401, "M_UNAUTHORIZED");
    let (forged, _) = ServerSigningKey::generate(a_name).expect("key");
    signed_get(&b, &path, &forged, b.server_name()).await.assert_error(401, "M_UNAUTHORIZED");
    // A request that claims to come from B itself.
    let b_text = std::fs::read_to_string(b.data_dir().join("signing.key")).expect("B's key");
    let b_name = ruma::OwnedServerName::try_from(b.server_name()).expect("server name");
    let b_key = ServerSigningKey::parse(b_name, &b_text).expect("key");
    signed_get(&b, &path, &b_key, b.server_name()).await.assert_error(401, "M_UNAUTHORIZED");
}

/// Syncs `client` from `since` until to-device messages arrive (bounded);
/// returns them and the next token.
async fn to_device_until_some(client: &TestClient, since: &str) -> (Vec<Value>, String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut since = since.to_owned();
    loop {
        let sync = client.get(&format!("/_matrix/client/v3/sync?timeout=2000&since={since}")).await.ok();
        let events = sync["to_device"]["events"].as_array().cloned().unwrap_or_default();
        let next = sync["next_batch"].as_str().expect("token").to_owned();
        if !events.is_empty() {
            return (events, next);
        }
        assert!(tokio::time::Instant::now() < deadline, "no to-device message arrived");
        since = next;
    }
}

async fn to_device_messages_cross_servers_once_and_survive_restarts(backend: Backend) {
    let (_ca, mut a, mut b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let mut laptop = b.client();
    laptop.login("bob", "pw").await.ok();
    let (alice_id, bob_id) = (alice.user_id.clone().expect("user"), bob.user_id.clone().expect("user"));
    let bob_device = bob.device_id.clone().expect("device");
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let laptop_since = laptop.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();

    // To Bob's phone by name, and to all his devices: the phone gets its
    // own message, the laptop the one for all.
    let send = |txn: &str| format!("/_matrix/client/v3/sendToDevice/m.room_key_request/{txn}");
    let body = json!({ "messages": { &bob_id: { &bob_device: { "n": 1 }, "*": { "n": 2 } } } });
    alice.put(&send("t1"), body.clone()).await.ok();
    alice.put(&send("t1"), body).await.ok(); // a retry: sent once
    let (events, since) = to_device_until_some(&bob, &since).await;
    let numbers: Vec<i64> = events.iter().filter_map(|e| e["content"]["n"].as_i64()).collect();
    assert_eq!(numbers, [1], "{events:?}");
    assert_eq!(events[0]["sender"], alice_id.as_str());
    assert_eq!(events[0]["type"], "m.room_key_request");
    let (on_laptop, _) = to_device_until_some(&laptop, &laptop_since).await;
    let numbers: Vec<i64> = on_laptop.iter().filter_map(|e| e["content"]["n"].as_i64()).collect();
    assert_eq!(numbers, [2], "{on_laptop:?}");
    let quiet = bob.sync(Some(&since), "").await;
    assert!(quiet["to_device"]["events"].as_array().is_none_or(|e| e.is_empty()), "no duplicate: {quiet}");

    // Bob's server down, Alice's restarted while the message waits: it
    // arrives once both are back.
    b.stop().await.expect("B stops");
    let body = json!({ "messages": { &bob_id: { "*": { "n": 3 } } } });
    alice.put(&send("t2"), body).await.ok();
    a.restart().await;
    b.restart().await;
    // The client API listens on a new port after the restart.
    let mut bob = bob.clone();
    bob.base = b.base.clone();
    let (events, _) = to_device_until_some(&bob, &since).await;
    let numbers: Vec<i64> = events.iter().filter_map(|e| e["content"]["n"].as_i64()).collect();
    assert_eq!(numbers, [3], "{events:?}");
}

async fn transactions_are_applied_once_and_speak_only_for_their_origin(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let bob = b.register("bob", "pw").await;
    let bob_id = bob.user_id.clone().expect("user");
    let since = bob.sync(None, "").await["next_batch"].as_str().expect("token").to_owned();
    let a_key = server_key(&a);
    let edu = |sender: &str, id: &str| {
        json!({ "edu_type": "m.direct_to_device", "content": {
            "sender": sender, "type": "m.secret.request", "message_id": id,
            "messages": { &bob_id: { "*": { "name": "m.megolm_backup.v1", "action": "request" } } },
        } })
    };
    let transaction = |edus: Vec<Value>| json!({ "origin": a.server_name(), "origin_server_ts": 1, "pdus": [], "edus": edus });
    let b = &b;
    let put = |txn: &str, body: Value| {
        let key = &a_key;
        let path = format!("/_matrix/federation/v1/send/{txn}");
        let destination = b.server_name().to_owned();
        async move { signed_request(b, reqwest::Method::PUT, &path, Some(body), key, &destination).await }
    };

    // A message from A's user, and one claiming to be from a user of
    // another server: only the first is delivered.
    let alice = format!("@alice:{}", a.server_name());
    let body = transaction(vec![edu(&alice, "m1"), edu("@mallory:elsewhere.test", "m2")]);
    let answer = put("txn1", body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["pdus"], json!({}));
    // The same transaction again, and the same message in another one:
    // nothing new.
    assert_eq!(put("txn1", body).await.status, 200);
    assert_eq!(put("txn2", transaction(vec![edu(&alice, "m1")])).await.status, 200);
    let sync = bob.sync(Some(&since), "").await;
    let events = sync["to_device"]["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["sender"], alice.as_str());

    // A body naming another origin than the signer: refused.
    let mut forged = transaction(vec![]);
    forged["origin"] = json!("elsewhere.test");
    put("txn3", forged).await.assert_error(403, "M_FORBIDDEN");
    // Too many EDUs for one transaction.
    let many = transaction((0..101).map(|i| edu(&alice, &format!("x{i}"))).collect());
    assert_eq!(put("txn4", many).await.status, 400);
}

async fn events_are_given_only_to_servers_that_may_see_them(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let bob = b.register("bob", "pw").await;
    let open = bob
        .create_room(json!({ "initial_state": [{
            "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "world_readable" }
        }] }))
        .await;
    let public = bob.send_text(&open, "for everyone").await;
    let closed = bob.create_room(json!({})).await;
    let private = bob.send_text(&closed, "for members").await;
    let a_key = server_key(&a);
    let get = |id: &str| format!("/_matrix/federation/v1/event/{}", encode(id));

    // World-readable: the PDU as signed (no event ID in it from room
    // version 3 on), with B as origin.
    let answer = signed_get(&b, &get(&public), &a_key, b.server_name()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["origin"], b.server_name());
    let pdu = &answer.body["pdus"][0];
    assert_eq!(pdu["content"]["body"], "for everyone", "{}", answer.body);
    assert_eq!(pdu["room_id"], open.as_str());
    assert!(pdu["signatures"][b.server_name()].is_object());
    assert!(pdu["hashes"]["sha256"].is_string());

    // A room A's users are not in: as if it did not exist.
    signed_get(&b, &get(&private), &a_key, b.server_name()).await.assert_error(404, "M_NOT_FOUND");
    signed_get(&b, &get("$nothing"), &a_key, b.server_name()).await.assert_error(404, "M_NOT_FOUND");
    let unsigned = reqwest::get(format!("{}{}", b.base, get(&public))).await.expect("sent");
    assert_eq!(unsigned.status().as_u16(), 401);
}

async fn keys_of_a_server_that_is_away_come_from_a_trusted_notary(backend: Backend) {
    let ca = TestCa::new();
    let notary = TestServer::start_federating(backend, &ca).await;
    let mut away = TestServer::start_federating(backend, &ca).await;
    let notary_name = notary.server_name().to_owned();
    let asker =
        TestServer::start_federating_with(backend, &ca, |c| c.trusted_key_servers = notary_name).await;
    let user = asker.register("carol", "pw").await;
    let carol = user.user_id.clone().expect("user");
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", encode(&carol));

    // The notary has fetched the keys of the server that then goes away.
    let fetched =
        notary.client().get(&format!("/_matrix/key/v2/query/{}", encode(away.server_name()))).await.ok();
    assert_eq!(fetched["server_keys"].as_array().map(Vec::len), Some(1));
    let away_key = server_key(&away);
    let away_name = away.server_name().to_owned();
    away.stop().await.expect("stops");

    // A request signed by the server that is away: its key comes from the
    // notary, and the request is accepted.
    let answer = signed_get(&asker, &path, &away_key, asker.server_name()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A key the notary does not have either is still refused.
    let (other, _) = ServerSigningKey::generate(away_name.as_str().try_into().expect("name")).expect("key");
    signed_get(&asker, &path, &other, asker.server_name()).await.assert_error(401, "M_UNAUTHORIZED");
}
