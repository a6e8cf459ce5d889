//! `429 M_LIMIT_EXCEEDED` with `retry_after_ms` from the configured limits.

use std::time::Duration;

use serde_json::{Value, json};
use tessera_service::rate_limit::Limit;

use crate::{
    both_backends,
    harness::{Backend, Response, TestServer},
};

both_backends!(
    login_attempts_are_limited_per_ip,
    correct_logins_do_not_use_up_the_ips_allowance,
    failed_logins_are_limited_per_account_from_any_ip,
    general_limit_applies_per_user,
    registration_limit_counts_created_accounts,
    forwarded_for_uses_the_proxys_entry
);

async fn login_attempts_are_limited_per_ip(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.rate_limits.login = Limit::new(0.01, 3)).await;
    let client = server.client();
    let attempt = || {
        client.post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "user": "x", "password": "y" }),
        )
    };
    for _ in 0..3 {
        attempt().await.assert_error(403, "M_FORBIDDEN");
    }
    let limited = attempt().await;
    limited.assert_error(429, "M_LIMIT_EXCEEDED");
    let retry_after_ms = limited.body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry_after_ms > 0 && retry_after_ms <= 100_000, "{retry_after_ms}");
    assert!(limited.headers.contains_key("retry-after"));
}

async fn general_limit_applies_per_user(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.rate_limits.general = Limit::new(0.01, 4)).await;
    // Two registrations (each a 401 challenge and a 200) use up the IP's
    // four anonymous requests...
    let alice = server.register("alice", "secret-pw").await;
    let bob = server.register("bob", "secret-pw").await;
    server
        .client()
        .post("/_matrix/client/v3/register", json!({ "username": "carol" }))
        .await
        .assert_error(429, "M_LIMIT_EXCEEDED");
    // ...while each user has a bucket of their own. whoami is rate limited
    // per the spec's metadata.
    for _ in 0..4 {
        alice.get("/_matrix/client/v3/account/whoami").await.ok();
    }
    alice.get("/_matrix/client/v3/account/whoami").await.assert_error(429, "M_LIMIT_EXCEEDED");
    // Bob has his own bucket.
    bob.get("/_matrix/client/v3/account/whoami").await.ok();
}

async fn registration_limit_counts_created_accounts(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.rate_limits.registration = Limit::new(0.01, 2)).await;
    let client = server.client();
    // Probing and the UIA round trips of a sign-up are not registrations.
    for _ in 0..5 {
        client.get("/_matrix/client/v3/register/available?username=somebody").await.ok();
        assert_eq!(client.post("/_matrix/client/v3/register", json!({ "username": "x" })).await.status, 401);
    }
    server.register("alice", "pw").await;
    server.register("bob", "pw").await;
    client
        .register_with(json!({ "username": "carol", "password": "pw" }))
        .await
        .assert_error(429, "M_LIMIT_EXCEEDED");
}

async fn forwarded_for_uses_the_proxys_entry(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.trust_forwarded_for = true;
        c.rate_limits.login = Limit::new(0.01, 1);
    })
    .await;
    let http = reqwest::Client::new();
    let login = |forwarded: &'static str| {
        http.post(format!("{}/_matrix/client/v3/login", server.base))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "type": "m.login.password", "user": "x", "password": "y" }))
            .send()
    };
    assert_eq!(login("1.1.1.1, 203.0.113.7").await.expect("send").status(), 403);
    // A client cannot escape its limit by forging the entries before the
    // one the proxy appended.
    assert_eq!(login("9.9.9.9, 203.0.113.7").await.expect("send").status(), 429);
    assert_eq!(login("203.0.113.8").await.expect("send").status(), 403);
}

async fn correct_logins_do_not_use_up_the_ips_allowance(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.rate_limits.login = Limit::new(0.01, 2)).await;
    server.register("alice", "right-pw").await;
    let client = server.client();
    // Everyone behind one address (a proxy, a NAT) logging in correctly.
    for _ in 0..5 {
        client.clone().login("alice", "right-pw").await.ok();
    }
    // Failures are what the address is allowed only so many of.
    for _ in 0..2 {
        client.clone().login("alice", "wrong").await.assert_error(403, "M_FORBIDDEN");
    }
    client.clone().login("alice", "right-pw").await.assert_error(429, "M_LIMIT_EXCEEDED");
}

async fn failed_logins_are_limited_per_account_from_any_ip(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.trust_forwarded_for = true;
        // Each guess below comes from an address of its own.
        c.rate_limits.login = Limit::new(0.01, 1);
        c.rate_limits.failed_login = Limit::new(0.2, 3);
    })
    .await;
    let alice = server.register("alice", "right-pw").await;
    server.register("bob", "bobs-pw").await;
    let http = reqwest::Client::new();
    let login_from = |address: String, user: &'static str, password: &'static str| {
        let request = http
            .post(format!("{}/_matrix/client/v3/login", server.base))
            .header("X-Forwarded-For", address)
            .json(&json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user },
                "password": password,
            }));
        async move {
            let response = request.send().await.expect("request reaches the server");
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            Response { status, headers, body: response.json::<Value>().await.expect("JSON") }
        }
    };

    // Guesses at Alice's password from many addresses: the first three are
    // judged; then her account is limited, from any address, and even the
    // right password gets the 429 (a 200 would tell the guesser).
    for i in 0..3 {
        login_from(format!("198.51.100.{i}"), "alice", "guess").await.assert_error(403, "M_FORBIDDEN");
    }
    let limited = login_from("203.0.113.1".into(), "alice", "guess").await;
    limited.assert_error(429, "M_LIMIT_EXCEEDED");
    assert!(limited.body["retry_after_ms"].as_u64().expect("retry_after_ms") > 0);
    login_from("203.0.113.2".into(), "@Alice:tessera.test", "right-pw")
        .await
        .assert_error(429, "M_LIMIT_EXCEEDED");

    // Alice's signed-in client is not locked out: it works, and signs in a
    // new device with a login token.
    alice.get("/_matrix/client/v3/account/whoami").await.ok();
    let minted = alice
        .with_password_uia(reqwest::Method::POST, "/_matrix/client/v1/login/get_token", json!({}), "right-pw")
        .await
        .ok();
    server
        .client()
        .post("/_matrix/client/v3/login", json!({ "type": "m.login.token", "token": minted["login_token"] }))
        .await
        .ok();

    // Bob's account is not Alice's.
    login_from("203.0.113.3".into(), "bob", "bobs-pw").await.ok();

    // Once her account's bucket has refilled, the right password works.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        let response = login_from(format!("192.0.2.{i}"), "alice", "right-pw").await;
        if response.status == 200 {
            break;
        }
        response.assert_error(429, "M_LIMIT_EXCEEDED");
        assert!(tokio::time::Instant::now() < deadline, "still limited: {}", response.body);
        let wait = response.body["retry_after_ms"].as_u64().expect("retry_after_ms");
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}
