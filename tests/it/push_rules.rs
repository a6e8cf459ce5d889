//! Push rules: the defaults, user rules, enabled and actions, through sync.

use serde_json::{Value, json};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(
    push_rules_start_as_the_defaults_and_change,
    one_members_rule_cannot_stop_a_room,
    concurrent_rule_changes_are_all_kept
);

fn rule<'a>(rules: &'a Value, kind: &str, id: &str) -> Option<&'a Value> {
    rules["global"][kind].as_array()?.iter().find(|r| r["rule_id"] == id)
}

async fn push_rules_start_as_the_defaults_and_change(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let base = "/_matrix/client/v3/pushrules";
    let rules = alice.get(&format!("{base}/")).await.ok();
    for (kind, id) in [
        ("override", ".m.rule.master"),
        ("override", ".m.rule.is_user_mention"),
        ("override", ".m.rule.is_room_mention"),
        ("underride", ".m.rule.message"),
        ("underride", ".m.rule.encrypted"),
    ] {
        assert!(rule(&rules, kind, id).is_some(), "default rule {id} missing");
    }
    assert_eq!(rule(&rules, "override", ".m.rule.master").expect("master")["enabled"], false);
    // The same rules reach the initial sync as m.push_rules account data.
    let initial = alice.sync(None, "").await;
    let synced = initial["account_data"]["events"].as_array().expect("account data");
    assert!(
        synced
            .iter()
            .any(|e| e["type"] == "m.push_rules"
                && rule(&e["content"], "override", ".m.rule.master").is_some())
    );
    let since = initial["next_batch"].as_str().expect("token").to_owned();

    let custom = format!("{base}/global/content/tea");
    alice
        .put(&custom, json!({ "pattern": "tea", "actions": ["notify", { "set_tweak": "highlight" }] }))
        .await
        .ok();
    let got = alice.get(&custom).await.ok();
    assert_eq!((got["pattern"].as_str(), got["enabled"].as_bool()), (Some("tea"), Some(true)));
    alice.put(&format!("{custom}/enabled"), json!({ "enabled": false })).await.ok();
    assert_eq!(alice.get(&format!("{custom}/enabled")).await.ok()["enabled"], false);
    alice.put(&format!("{custom}/actions"), json!({ "actions": ["notify"] })).await.ok();
    assert_eq!(alice.get(&format!("{custom}/actions")).await.ok()["actions"], json!(["notify"]));
    // Server-default rules can be switched, not deleted.
    alice
        .put(&format!("{base}/global/override/.m.rule.master/enabled"), json!({ "enabled": true }))
        .await
        .ok();
    alice
        .delete(&format!("{base}/global/override/.m.rule.master"), json!({}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice.get(&format!("{base}/global/content/nope")).await.assert_error(404, "M_NOT_FOUND");

    let changed = alice.sync(Some(&since), "").await;
    let events = changed["account_data"]["events"].as_array().expect("account data");
    let latest = events.iter().rev().find(|e| e["type"] == "m.push_rules").expect("updated rules");
    assert_eq!(rule(&latest["content"], "override", ".m.rule.master").expect("master")["enabled"], true);

    alice.delete(&custom, json!({})).await.ok();
    alice.get(&custom).await.assert_error(404, "M_NOT_FOUND");
}

/// Issue 23, defect 2: a content rule with a pathological pattern was
/// accepted, and from then on every message in the member's rooms
/// answered 500 for every sender (ruma panicked compiling the pattern).
async fn one_members_rule_cannot_stop_a_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let mallory = server.register("mallory", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    mallory.join(&room).await.ok();
    let base = "/_matrix/client/v3/pushrules/global/content";
    let rule = |pattern: String| json!({ "actions": ["notify"], "pattern": pattern });

    let pathological = format!("{}b", "*a".repeat(25_000));
    mallory.put(&format!("{base}/x"), rule(pathological)).await.assert_error(400, "M_INVALID_PARAM");
    mallory.put(&format!("{base}/long"), rule("a".repeat(256))).await.assert_error(400, "M_INVALID_PARAM");
    let worst_allowed = format!("{}b", "*a".repeat(127));
    mallory.put(&format!("{base}/worst"), rule(worst_allowed)).await.ok();
    for n in 0..3 {
        alice.send_text(&room, &format!("still works {n}")).await;
    }
    let page = alice.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3")).await.ok();
    assert_eq!(page["chunk"].as_array().expect("chunk").len(), 3);

    // At most MAX_USER_RULES (100) rules of one's own.
    for n in 0..100 {
        let added = mallory.put(&format!("{base}/k{n}"), rule(format!("word{n}"))).await;
        if added.status != 200 {
            added.assert_error(400, "M_INVALID_PARAM");
            assert_eq!(n, 99, "the 100th rule of one's own is the last");
            return;
        }
    }
    panic!("more than 100 rules of one's own were accepted");
}

async fn concurrent_rule_changes_are_all_kept(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let puts = (0..10).map(|n| {
        let alice = alice.clone();
        async move {
            let path = format!("/_matrix/client/v3/pushrules/global/room/!room{n}:tessera.test");
            alice.put(&path, json!({ "actions": [] })).await.ok();
        }
    });
    futures_util::future::join_all(puts).await;
    let rules = alice.get("/_matrix/client/v3/pushrules/").await.ok();
    let room_rules = rules["global"]["room"].as_array().expect("room rules");
    assert_eq!(room_rules.len(), 10, "every rule written at once is kept: {room_rules:?}");
}
