//! 3PID endpoints on a server without identity-server support.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(threepids_are_empty_and_cannot_be_added);

async fn threepids_are_empty_and_cannot_be_added(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "secret-pw").await;
    assert_eq!(alice.get("/_matrix/client/v3/account/3pid").await.ok(), json!({ "threepids": [] }));

    let email = json!({ "client_secret": "secret123", "email": "alice@example.org", "send_attempt": 1 });
    for path in [
        "/_matrix/client/v3/register/email/requestToken",
        "/_matrix/client/v3/account/3pid/email/requestToken",
        "/_matrix/client/v3/account/password/email/requestToken",
    ] {
        server.client().post(path, email.clone()).await.assert_error(403, "M_THREEPID_DENIED");
    }
    let msisdn = json!({ "client_secret": "secret123", "country": "GB", "phone_number": "07700900001", "send_attempt": 1 });
    server
        .client()
        .post("/_matrix/client/v3/register/msisdn/requestToken", msisdn)
        .await
        .assert_error(403, "M_THREEPID_DENIED");
    alice
        .post("/_matrix/client/v3/account/3pid/add", json!({ "client_secret": "secret123", "sid": "abc" }))
        .await
        .assert_error(400, "M_THREEPID_AUTH_FAILED");
    let removed = alice
        .post(
            "/_matrix/client/v3/account/3pid/delete",
            json!({ "medium": "email", "address": "alice@example.org" }),
        )
        .await
        .ok();
    assert_eq!(removed["id_server_unbind_result"], "no-support");
}
