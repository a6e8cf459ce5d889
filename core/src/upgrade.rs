//! What a room upgrade carries into the new room's `m.room.power_levels`:
//! the old room's levels, with the creators' power made explicit or
//! implicit as each room version wants it.
//!
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#server-behaviour-19>
//! and room version 12 (MSC4289): from that version the room's creators
//! (the create event's sender and its `additional_creators`) have unlimited
//! power and must not be listed in `users`; before it, power is only what
//! `users` says.

use ruma::UserId;
use serde_json::{Map, Value};

/// The room version rule an upgrade needs on each side: whether creators
/// have implicit, unlimited power (`explicitly_privilege_room_creators`),
/// and who the creators are.
pub struct Creators<'a> {
    pub users: &'a [&'a UserId],
    pub implicit: bool,
}

/// The new room's power levels from the old room's `content`.
///
/// - Old creators with implicit power moving to a version without it are
///   listed in `users` at the highest level the content names (at least
///   100), so that they keep every power they had, the next upgrade's
///   tombstone included. Otherwise the upgrader, a creator whose power was
///   implicit, could not even send the new room's initial state.
/// - New creators in a version with implicit power are taken out of
///   `users`, where the rules forbid them.
pub fn upgraded_power_levels(
    mut content: Map<String, Value>,
    old: &Creators<'_>,
    new: &Creators<'_>,
) -> Map<String, Value> {
    let top = highest_level(&content).max(100);
    let mut users = match content.remove("users") {
        Some(Value::Object(users)) => users,
        _ => Map::new(),
    };
    if old.implicit && !new.implicit {
        for creator in old.users {
            users.insert(creator.to_string(), top.into());
        }
    }
    if new.implicit {
        for creator in new.users {
            users.remove(creator.as_str());
        }
    }
    content.insert("users".into(), Value::Object(users));
    content
}

/// The highest power level anywhere in power levels content: a user's, an
/// event type's, a notification's or one of the thresholds. Room versions
/// before 10 allow integers written as strings.
fn highest_level(content: &Map<String, Value>) -> i64 {
    let level = |value: &Value| match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    content
        .values()
        .flat_map(|value| match value {
            Value::Object(map) => map.values().filter_map(level).collect::<Vec<_>>(),
            other => level(other).into_iter().collect(),
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::user_id;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn implicit_creators_are_listed_at_the_top_level_in_older_versions() {
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:example.org");
        let content = object(json!({
            "users": { "@mod:example.org": 50 },
            "events": { "m.room.tombstone": 150 },
            "state_default": 50,
        }));
        let upgraded = upgraded_power_levels(
            content,
            &Creators { users: &[alice, bob], implicit: true },
            &Creators { users: &[alice], implicit: false },
        );
        assert_eq!(
            upgraded["users"],
            json!({ "@mod:example.org": 50, "@alice:example.org": 150, "@bob:example.org": 150 })
        );
    }

    #[test]
    fn new_creators_leave_users_when_their_power_is_implicit() {
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:example.org");
        let content = object(
            json!({ "users": { "@alice:example.org": 100, "@bob:example.org": "100", "@carol:example.org": 50 } }),
        );
        let upgraded = upgraded_power_levels(
            content,
            &Creators { users: &[alice], implicit: false },
            &Creators { users: &[alice, bob], implicit: true },
        );
        assert_eq!(upgraded["users"], json!({ "@carol:example.org": 50 }));
    }

    #[test]
    fn explicit_to_explicit_copies_levels_as_they_are() {
        let alice = user_id!("@alice:example.org");
        let content = object(json!({ "users": { "@bob:example.org": 100 } }));
        let upgraded = upgraded_power_levels(
            content.clone(),
            &Creators { users: &[alice], implicit: false },
            &Creators { users: &[alice], implicit: false },
        );
        assert_eq!(upgraded, content);
    }
}
