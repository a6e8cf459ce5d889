//! Start, stop and restart: nothing acknowledged is lost, shutdown is clean,
//! and a schema from a newer binary is refused.

use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(accounts_and_tokens_survive_a_restart, newer_schema_is_refused);

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
