//! Valid bodies for the routes whose handlers check their body before they
//! look further, and the in-context variants built from them.
//!
//! The spec's schemas name no fields for free-form bodies (an event's
//! content, a profile field), and a route refuses a malformed body before
//! its path or query values reach storage. So requests that vary the path or
//! query carry the route's valid body, and each string, number and key
//! inside it is varied in turn with the rest left valid: an event ID with
//! a NUL inside `m.relates_to`, say, reaches the relations table.

use serde_json::{Value, json};

use super::Ids;

pub const BOB: &str = "@sweep_b:tessera.test";

/// A body the route accepts (or refuses only for reasons past parsing,
/// such as a missing UIA stage), if it needs one beyond `{}`. None for
/// routes whose success would spoil the rest of the sweep (room upgrade).
pub fn valid_body(method: &str, path: &str, ids: &Ids) -> Option<Value> {
    let ends = |suffix: &str| path.ends_with(suffix);
    let body = match method {
        "PUT" if ends("/send/{eventType}/{txnId}") => json!({
            "msgtype": "m.text", "body": "sweep",
            "m.relates_to": { "rel_type": "m.thread", "event_id": ids.event },
        }),
        "PUT" if ends("/state/{eventType}/{stateKey}") => json!({ "topic": "sweep" }),
        "PUT" if ends("/profile/{userId}/{keyName}") => json!({ "displayname": "sweep" }),
        "PUT" if ends("/typing/{userId}") => json!({ "typing": true, "timeout": 1000 }),
        "PUT" if ends("/presence/{userId}/status") => json!({ "presence": "online", "status_msg": "sweep" }),
        "PUT" if ends("/tags/{tag}") => json!({ "order": 0.5 }),
        "PUT" if ends("/pushrules/global/{kind}/{ruleId}") => {
            json!({ "pattern": "sweep", "actions": ["notify"] })
        }
        "PUT" if ends("/enabled") => json!({ "enabled": true }),
        "PUT" if ends("/actions") => json!({ "actions": ["notify"] }),
        "PUT" if ends("/account_data/{type}") => json!({ "sweep": "value" }),
        "PUT" if ends("/redact/{eventId}/{txnId}") => json!({ "reason": "sweep" }),
        "PUT" if ends("/directory/room/{roomAlias}") => json!({ "room_id": ids.room }),
        "PUT" if ends("/directory/list/room/{roomId}") => json!({ "visibility": "public" }),
        "PUT" if ends("/devices/{deviceId}") => json!({ "display_name": "sweep" }),
        "PUT" if ends("/sendToDevice/{eventType}/{txnId}") => {
            // To B, whom the sweep never syncs as until its read-back.
            json!({ "messages": { BOB: { ids.bob_device.as_str(): { "body": "sweep" } } } })
        }
        "POST" if ends("/read_markers") => json!({ "m.fully_read": ids.event, "m.read": ids.event }),
        "POST" if ends("/receipt/{receiptType}/{eventId}") => json!({ "thread_id": "main" }),
        "POST" if ends("/invite") || ends("/kick") || ends("/ban") || ends("/unban") => {
            json!({ "user_id": BOB, "reason": "sweep" })
        }
        "POST" if ends("/join") || ends("/join/{roomIdOrAlias}") => json!({ "reason": "sweep" }),
        "POST" if ends("/filter") => {
            json!({ "room": { "timeline": { "limit": 10, "types": ["m.room.message"] } } })
        }
        "POST" if ends("/createRoom") => json!({ "name": "sweep", "topic": "sweep", "invite": [BOB] }),
        "POST" if ends("/publicRooms") => {
            json!({ "limit": 10, "filter": { "generic_search_term": "sweep" } })
        }
        "POST" if ends("/login") => json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": "sweep_b" },
            "password": "not the password",
        }),
        "POST" if ends("/v3/register") => json!({ "username": "sweep_new", "password": "sweep-password" }),
        "POST" if ends("/account/password") => json!({ "new_password": "sweep", "logout_devices": false }),
        "POST" if ends("/delete_devices") => json!({ "devices": [ids.device] }),
        "POST" if ends("/refresh") => json!({ "refresh_token": "sweep" }),
        "POST" if ends("/admin/v1/register") => {
            json!({ "nonce": "sweep", "username": "sweep_admin", "password": "sweep", "mac": "00" })
        }
        _ => return None,
    };
    Some(body)
}

/// Raw JSON text put where a placeholder string was serialised.
const PLACEHOLDER: &str = "\u{1}sweep\u{1}";

/// `body` with each string, number and object key varied in turn, the
/// rest left valid; named by the JSON pointer of what changed.
pub fn in_context_variants(body: &Value) -> Vec<(String, String)> {
    let mut leaves = Vec::new();
    collect(body, String::new(), &mut leaves);
    let placeholder_json = serde_json::to_string(PLACEHOLDER).expect("a string serialises");
    let mut variants = Vec::new();
    for (pointer, leaf) in leaves {
        let replacements: Vec<(&str, String)> = match leaf {
            Value::String(text) => {
                // After the first character, so a sigil stays in front.
                let split = text.chars().next().map_or(0, char::len_utf8);
                let (head, tail) = text.split_at(split);
                vec![
                    ("NUL inside", json_string(&format!("{head}\u{0}{tail}"))),
                    ("over 255 bytes", json_string(&format!("{head}{}{tail}", "a".repeat(300)))),
                    ("100,000 characters", json_string(&"x".repeat(100_000))),
                    ("lone surrogate appended", lone_surrogate_appended(&text)),
                ]
            }
            Value::Number(_) => vec![
                ("-1", "-1".into()),
                ("2^53", "9007199254740992".into()),
                ("2^63", "9223372036854775808".into()),
                ("2^64", "18446744073709551616".into()),
                ("1e400", "1e400".into()),
            ],
            Value::Object(_) => {
                let mut renamed = body.clone();
                if let Some(Value::Object(map)) = renamed.pointer_mut(&pointer)
                    && let Some(key) = map.keys().next().cloned()
                {
                    let value = map.remove(&key).expect("the key was just read");
                    let split = key.chars().next().map_or(0, char::len_utf8);
                    map.insert(format!("{}\u{0}{}", &key[..split], &key[split..]), value);
                }
                let text = serde_json::to_string(&renamed).expect("a value serialises");
                variants.push((format!("valid body, `{pointer}/`: key with NUL inside"), text));
                continue;
            }
            _ => continue,
        };
        for (name, raw) in replacements {
            let mut varied = body.clone();
            if let Some(slot) = varied.pointer_mut(&pointer) {
                *slot = Value::String(PLACEHOLDER.into());
            }
            let text =
                serde_json::to_string(&varied).expect("a value serialises").replace(&placeholder_json, &raw);
            variants.push((format!("valid body, `{pointer}`: {name}"), text));
        }
    }
    variants
}

/// `text` as a JSON string with `\udc00` before the closing quote.
fn lone_surrogate_appended(text: &str) -> String {
    let quoted = json_string(text);
    format!("{}\\udc00\"", quoted.strip_suffix('"').expect("a JSON string ends in a quote"))
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// Every string, number and non-empty object under `value`, with its JSON
/// pointer.
fn collect(value: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            if !map.is_empty() {
                out.push((pointer.clone(), Value::Object(serde_json::Map::new())));
            }
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                collect(child, format!("{pointer}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect(child, format!("{pointer}/{i}"), out);
            }
        }
        Value::String(_) | Value::Number(_) => out.push((pointer, value.clone())),
        _ => {}
    }
}
