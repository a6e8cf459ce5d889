//! Start, stop and restart: nothing acknowledged is lost, shutdown is clean,
//! and a schema from a newer binary is refused.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    accounts_and_tokens_survive_a_restart,
    newer_schema_is_refused,
    a_sync_token_from_before_kill_9_misses_nothing
);

async fn accounts_and_tokens_survive_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "secret-pw").await;
    let me = "/_matrix/client/v3/profile/@alice:tessera.test/displayname";
    alice.put(me, json!({ "displayname": "Alice" })).await.ok();

    server.stop().await.expect("graceful shutdown ends cleanly");
    if backend == Backend::Sqlite {
        // A clean close checkpoints the write-ahead log into the database.
        let wal = server.data_dir().join("tessera.db-wal");
        assert!(!wal.exists() || std::fs::metadata(&wal).expect("wal").len() == 0, "WAL left behind");
    }
    server.restart_result().await.expect("restart");

    alice.base = server.base.clone();
    assert_eq!(alice.get("/_matrix/client/v3/account/whoami").await.ok()["user_id"], "@alice:tessera.test");
    assert_eq!(alice.get(me).await.ok()["displayname"], "Alice");
    server.client().login("alice", "secret-pw").await.ok();
}

async fn newer_schema_is_refused(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let url = server.database_url();
    server.stop().await.expect("stop");
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
        sqlx::query("INSERT INTO tessera_schema (version, name, applied_ts) VALUES (9999, 'future', 0)")
            .execute(&pool)
            .await
            .expect("pretend a newer tessera migrated");
        pool.close().await;
    }
    let error = server.restart_result().await.expect_err("a newer schema must be refused");
    let message = error.to_string();
    assert!(message.contains("9999") && message.contains("newer"), "unclear message: {message}");
}

/// Issue 23, defect 4, with the process killed: a retried send leaves a
/// position that the next token covers and no event uses; the server
/// killed with SIGKILL and started again must neither refuse that token
/// nor hand the position to the next message (which the token's holder
/// would then never receive).
async fn a_sync_token_from_before_kill_9_misses_nothing(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    server.stop().await.expect("stop the in-process server; the binary takes over its database");

    let (mut child, base) = server.spawn_binary().await;
    alice.base = base;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/once");
    let content = json!({ "msgtype": "m.text", "body": "once" });
    let first = alice.put(&path, content.clone()).await.ok();
    assert_eq!(alice.put(&path, content).await.ok()["event_id"], first["event_id"]);
    // Offline: a presence write would store a position above the retry's.
    let offline = "&set_presence=offline";
    let since = alice.sync(None, offline).await["next_batch"].as_str().expect("token").to_owned();
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("killed");

    let (_child, base) = server.spawn_binary().await;
    alice.base = base;
    let old_token = format!("/_matrix/client/v3/sync?timeout=0&since={since}{offline}");
    let before = alice.get(&old_token).await;
    assert_eq!(before.status, 200, "a token from before the kill is valid: {}", before.body);
    let sent = alice.send_text(&room, "after the kill").await;
    let after = alice.get(&old_token).await.ok();
    let events: Vec<&Value> = after["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .map(|events| events.iter().filter(|e| e["type"] == "m.room.message").collect())
        .unwrap_or_default();
    assert_eq!(events.len(), 1, "{after}");
    assert_eq!(events[0]["event_id"], sent.as_str());
}
