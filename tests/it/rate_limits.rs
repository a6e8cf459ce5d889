//! `429 M_LIMIT_EXCEEDED` with `retry_after_ms` from the configured limits.

use serde_json::json;
use tessera_service::rate_limit::Limit;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(login_attempts_are_limited_per_ip, general_limit_applies_per_user);

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
