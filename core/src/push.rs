//! Push-rule evaluation: what one new event means for one recipient
//! (notify, highlight, the actions of the rule that matched). The one
//! place the server evaluates push rules; the notification counts in sync
//! and `GET /notifications` are built from its verdicts.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#push-rules>.

use std::{
    pin::pin,
    task::{Context, Poll, Waker},
};

use ruma::{
    OwnedRoomId, OwnedUserId, UInt, UserId,
    events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
    push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    room_version_rules::RoomVersionRules,
    serde::Raw,
    state_res::events::RoomCreateEvent,
};

use crate::Pdu;

/// The thread ID of an event in the main timeline, as threaded receipts
/// name it.
pub const MAIN_THREAD: &str = "main";

/// What the rules decided for one recipient of an event that notifies or
/// highlights (events that do neither produce no verdict).
#[derive(Clone, Debug)]
pub struct Verdict {
    pub actions: Vec<Action>,
    pub notify: bool,
    pub highlight: bool,
}

/// The room facts the push conditions consult, the same for every
/// recipient of one event.
#[derive(Clone, Debug)]
pub struct RoomFacts {
    pub room_id: OwnedRoomId,
    pub joined_members: u64,
    pub power_levels: Option<PushConditionPowerLevelsCtx>,
}

impl RoomFacts {
    /// The facts from the room's create and power levels events (power
    /// levels the spec's defaults when the room has none).
    pub fn new(
        room_id: OwnedRoomId,
        joined_members: u64,
        create: &Pdu,
        power_levels: Option<&Pdu>,
        rules: &RoomVersionRules,
    ) -> Self {
        let creators: Vec<OwnedUserId> = RoomCreateEvent::new(create)
            .creators(&rules.authorization)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let source = power_levels
            .and_then(|pdu| pdu.content_as::<RoomPowerLevelsEventContent>().ok())
            .map_or(RoomPowerLevelsSource::None, RoomPowerLevelsSource::Original);
        let levels = RoomPowerLevels::new(source, &rules.authorization, creators);
        Self { room_id, joined_members, power_levels: Some(levels.into()) }
    }
}

/// The rules spec v1.7 deprecated in favour of `m.mentions`: they apply
/// only to events without `m.mentions`.
const LEGACY_MENTION_RULES: [&str; 3] =
    [".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"];

/// A new user's rule set: the spec's predefined rules (v1.16), which are
/// ruma's defaults plus the legacy mention rules ruma no longer ships
/// (`.m.rule.contains_display_name`, `.m.rule.roomnotif`,
/// `.m.rule.contains_user_name`), each in its place.
pub fn default_ruleset(user: &UserId) -> Ruleset {
    let ruleset = Ruleset::server_default(user);
    let Ok(mut json) = serde_json::to_value(&ruleset) else { return ruleset };
    let highlight_sound = serde_json::json!(["notify", { "set_tweak": "sound", "value": "default" }, { "set_tweak": "highlight" }]);
    let display_name = serde_json::json!({
        "rule_id": ".m.rule.contains_display_name", "default": true, "enabled": true,
        "conditions": [{ "kind": "contains_display_name" }],
        "actions": highlight_sound,
    });
    let room_notif = serde_json::json!({
        "rule_id": ".m.rule.roomnotif", "default": true, "enabled": true,
        "conditions": [
            { "kind": "event_match", "key": "content.body", "pattern": "@room" },
            { "kind": "sender_notification_permission", "key": "room" },
        ],
        "actions": ["notify", { "set_tweak": "highlight" }],
    });
    let user_name = serde_json::json!({
        "rule_id": ".m.rule.contains_user_name", "default": true, "enabled": true,
        "pattern": user.localpart(),
        "actions": highlight_sound,
    });
    if let Some(rules) = json["override"].as_array_mut() {
        let after = |rules: &Vec<serde_json::Value>, id: &str| {
            rules.iter().position(|rule| rule["rule_id"] == id).map_or(rules.len(), |i| i + 1)
        };
        let at = after(rules, ".m.rule.is_user_mention");
        rules.insert(at, display_name);
        let at = after(rules, ".m.rule.is_room_mention");
        rules.insert(at, room_notif);
    }
    match json["content"].as_array_mut() {
        Some(rules) => rules.insert(0, user_name),
        None => json["content"] = serde_json::json!([user_name]),
    }
    serde_json::from_value(json).unwrap_or(ruleset)
}

/// The longest glob pattern a rule may carry (a content rule's `pattern`,
/// an `event_match` condition's). ruma compiles a pattern into a regex
/// (linear-time matching, but compiled for every evaluation) and panics
/// when the compiled form exceeds the regex crate's size limit: a few
/// thousand wildcards did. At this length the worst pattern compiles in
/// well under a millisecond.
pub const MAX_PATTERN_BYTES: usize = 255;

/// The most rules a user may define beside the spec's defaults: each is
/// evaluated for every event in every room the user is in.
pub const MAX_USER_RULES: usize = 100;

/// Whether a rule (as JSON) carries a pattern over [`MAX_PATTERN_BYTES`],
/// at its top level or in one of its conditions.
pub fn has_oversized_pattern(rule: &serde_json::Value) -> bool {
    pattern_too_long(rule)
        || rule
            .get("conditions")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|conditions| conditions.iter().any(pattern_too_long))
}

/// Whether a rule's or a condition's own `pattern` is too long.
fn pattern_too_long(value: &serde_json::Value) -> bool {
    value.get("pattern").and_then(serde_json::Value::as_str).is_some_and(|p| p.len() > MAX_PATTERN_BYTES)
}

/// Whether a rule a client asks to add carries a pattern over
/// [`MAX_PATTERN_BYTES`].
pub fn new_rule_has_oversized_pattern(rule: &ruma::push::NewPushRule) -> bool {
    use ruma::push::NewPushRule;
    let conditions = match rule {
        NewPushRule::Content(rule) => return rule.pattern.len() > MAX_PATTERN_BYTES,
        NewPushRule::Override(rule) | NewPushRule::Underride(rule) => &rule.conditions,
        _ => return false,
    };
    conditions.iter().any(|condition| match condition {
        ruma::push::PushCondition::EventMatch(data) => data.pattern.len() > MAX_PATTERN_BYTES,
        _ => false,
    })
}

/// A stored rule set (the `global` object of `m.push_rules`) as evaluation
/// may use it: rules with oversized patterns (stored before the limit, or
/// written through account data) are left out, so they can never fail or
/// slow down anyone's sends. `None` if it is not a rule set at all.
pub fn ruleset_from_stored(mut global: serde_json::Value) -> Option<(Ruleset, usize)> {
    let mut dropped = 0;
    for kind in ["override", "content", "room", "sender", "underride"] {
        if let Some(rules) = global.get_mut(kind).and_then(serde_json::Value::as_array_mut) {
            let before = rules.len();
            rules.retain(|rule| !has_oversized_pattern(rule));
            dropped += before - rules.len();
        }
    }
    serde_json::from_value(global).ok().map(|ruleset| (ruleset, dropped))
}

/// How many rules of a set the user defined (the rest are the server's).
pub fn user_rule_count(ruleset: &Ruleset) -> usize {
    ruleset.iter().filter(|rule| !rule.is_server_default()).count()
}

/// The keys of an event that push conditions can name.
#[derive(serde::Serialize)]
struct VisibleEvent<'a> {
    event_id: &'a ruma::EventId,
    #[serde(rename = "type")]
    kind: &'a ruma::events::TimelineEventType,
    content: &'a serde_json::value::RawValue,
    sender: &'a UserId,
    room_id: &'a ruma::RoomId,
    origin_server_ts: ruma::MilliSecondsSinceUnixEpoch,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a str>,
}

/// An event prepared once for evaluation against many recipients.
pub struct PushEvent {
    flattened: FlattenedJson,
    sender: OwnedUserId,
    /// Whether the content has `m.mentions` (the legacy rules then skip).
    has_mentions: bool,
    thread: String,
}

impl PushEvent {
    pub fn new(pdu: &Pdu) -> Self {
        // Conditions name keys of the event as clients see it (its ID
        // included, which the PDU of room versions 3 and later lacks): the PDU's
        // hashes, signatures and DAG references are left out (they are most
        // of its size, and flattening them was most of this function).
        let visible = VisibleEvent {
            event_id: &pdu.event_id,
            kind: &pdu.kind,
            content: &pdu.content,
            sender: &pdu.sender,
            room_id: &pdu.room_id,
            origin_server_ts: pdu.origin_server_ts,
            state_key: pdu.state_key.as_deref(),
        };
        let raw: Raw<VisibleEvent<'_>> =
            Raw::new(&visible).unwrap_or_else(|_| Raw::from_json(Box::default()));
        let content: serde_json::Value = pdu.content_as().unwrap_or_default();
        let relates_to = &content["m.relates_to"];
        let thread = match (relates_to["rel_type"].as_str(), relates_to["event_id"].as_str()) {
            (Some("m.thread"), Some(root)) => root.to_owned(),
            _ => MAIN_THREAD.to_owned(),
        };
        Self {
            flattened: FlattenedJson::from_raw(&raw),
            sender: pdu.sender.clone(),
            has_mentions: content.get("m.mentions").is_some(),
            thread,
        }
    }

    /// The thread the event belongs to for notification counts: the
    /// root's ID for an `m.thread` relation, [`MAIN_THREAD`] otherwise.
    pub fn thread(&self) -> &str {
        &self.thread
    }
}

/// The rule set's verdict on `event` for `user` (whose display name in the
/// room is `display_name`): `None` for their own events and for events no
/// rule asks to notify or highlight.
pub fn evaluate(
    ruleset: &Ruleset,
    event: &PushEvent,
    room: &RoomFacts,
    user: &UserId,
    display_name: &str,
) -> Option<Verdict> {
    if event.sender == user {
        return None;
    }
    let mut context = PushConditionRoomCtx::new(
        room.room_id.clone(),
        UInt::new_saturating(room.joined_members),
        user.to_owned(),
        display_name.to_owned(),
    );
    if let Some(levels) = &room.power_levels {
        context = context.with_power_levels(levels.clone());
    }
    for rule in ruleset {
        if event.has_mentions && LEGACY_MENTION_RULES.contains(&rule.rule_id()) {
            continue;
        }
        // ruma's conditions are async only for thread subscriptions (an
        // unstable feature we do not enable), so each check is ready at once.
        // A rule that makes ruma panic (it compiles patterns with
        // `expect`) is a rule that does not apply: one recipient's rules
        // never fail the sender's request.
        let applies = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ready(rule.applies(&event.flattened, &context))
        }));
        if applies.ok().flatten() == Some(true) {
            let actions = rule.actions().to_vec();
            let notify = actions.iter().any(Action::should_notify);
            let highlight = actions.iter().any(Action::is_highlight);
            return (notify || highlight).then_some(Verdict { actions, notify, highlight });
        }
    }
    None
}

/// Polls a future that never waits to its output (`None` if it would).
fn ready<F: Future>(future: F) -> Option<F::Output> {
    match pin!(future).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        RoomVersionId, owned_room_id,
        push::{NewPushRule, NewSimplePushRule, RuleKind, Tweak},
        user_id,
    };
    use serde_json::json;

    use super::*;
    use crate::rules_for;

    fn pdu(sender: &str, kind: &str, state_key: Option<&str>, content: serde_json::Value) -> Pdu {
        let rules = rules_for(&RoomVersionId::V11).unwrap();
        let mut json = json!({
            "room_id": "!room:tessera.test",
            "sender": sender,
            "type": kind,
            "content": content,
            "origin_server_ts": 1,
            "depth": 3,
            "prev_events": [],
            "auth_events": [],
            "hashes": { "sha256": "aaaa" },
            "signatures": {},
        });
        if let Some(key) = state_key {
            json["state_key"] = key.into();
        }
        let object = serde_json::from_value(json).unwrap();
        Pdu::from_json(ruma::owned_event_id!("$event:tessera.test"), None, object, &rules).unwrap()
    }

    fn facts(members: u64, power_levels: Option<serde_json::Value>) -> RoomFacts {
        let rules = rules_for(&RoomVersionId::V11).unwrap();
        let create = pdu("@alice:tessera.test", "m.room.create", Some(""), json!({ "room_version": "11" }));
        let levels = power_levels.map(|c| pdu("@alice:tessera.test", "m.room.power_levels", Some(""), c));
        RoomFacts::new(owned_room_id!("!room:tessera.test"), members, &create, levels.as_ref(), &rules)
    }

    fn verdict(
        ruleset: &Ruleset,
        event: &Pdu,
        room: &RoomFacts,
        user: &UserId,
        name: &str,
    ) -> Option<Verdict> {
        evaluate(ruleset, &PushEvent::new(event), room, user, name)
    }

    #[test]
    fn a_message_in_a_group_room_notifies_without_highlight() {
        let bob = user_id!("@bob:tessera.test");
        let message = pdu(
            "@alice:tessera.test",
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": "hi all" }),
        );
        let got = verdict(&default_ruleset(bob), &message, &facts(3, None), bob, "Bob").unwrap();
        assert!(got.notify);
        assert!(!got.highlight);
    }

    #[test]
    fn a_one_to_one_message_plays_a_sound() {
        let bob = user_id!("@bob:tessera.test");
        let message =
            pdu("@alice:tessera.test", "m.room.message", None, json!({ "msgtype": "m.text", "body": "hi" }));
        let got = verdict(&default_ruleset(bob), &message, &facts(2, None), bob, "Bob").unwrap();
        assert!(got.notify);
        assert!(got.actions.iter().any(|a| matches!(a, Action::SetTweak(Tweak::Sound(_)))));
    }

    #[test]
    fn the_display_name_and_a_mention_highlight() {
        let bob = user_id!("@bob:tessera.test");
        let rules = default_ruleset(bob);
        let by_name = pdu(
            "@alice:tessera.test",
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": "ping Bobby and Bob" }),
        );
        assert!(verdict(&rules, &by_name, &facts(3, None), bob, "Bob").unwrap().highlight);
        let mention = pdu(
            "@alice:tessera.test",
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": "hey", "m.mentions": { "user_ids": ["@bob:tessera.test"] } }),
        );
        assert!(verdict(&rules, &mention, &facts(3, None), bob, "Robert").unwrap().highlight);
        // Someone else's mention is an ordinary message for Bob.
        let other = pdu(
            "@alice:tessera.test",
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": "hey", "m.mentions": { "user_ids": ["@carol:tessera.test"] } }),
        );
        assert!(!verdict(&rules, &other, &facts(3, None), bob, "Robert").unwrap().highlight);
    }

    #[test]
    fn the_default_rules_keep_the_spec_order_with_the_legacy_mention_rules() {
        let rules = default_ruleset(user_id!("@bob:tessera.test"));
        let json = serde_json::to_value(&rules).unwrap();
        let ids: Vec<&str> =
            json["override"].as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap()).collect();
        let position = |id: &str| ids.iter().position(|i| *i == id).unwrap();
        assert_eq!(position(".m.rule.contains_display_name"), position(".m.rule.is_user_mention") + 1);
        assert_eq!(position(".m.rule.roomnotif"), position(".m.rule.is_room_mention") + 1);
        assert_eq!(ids[0], ".m.rule.master");
        assert_eq!(json["content"][0]["pattern"], "bob");
        assert!(rules.get(RuleKind::Underride, ".m.rule.message").is_some());
    }

    #[test]
    fn the_user_name_highlights_unless_the_event_has_mentions() {
        let bob = user_id!("@bob:tessera.test");
        let rules = default_ruleset(bob);
        let legacy = pdu(
            "@alice:tessera.test",
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": "bob: look" }),
        );
        assert!(verdict(&rules, &legacy, &facts(3, None), bob, "Robert").unwrap().highlight);
        let modern = pdu(
            "@alice:tessera.test",
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": "bob: look", "m.mentions": {} }),
        );
        assert!(!verdict(&rules, &modern, &facts(3, None), bob, "Robert").unwrap().highlight);
    }

    #[test]
    fn a_room_mention_needs_the_senders_notification_power() {
        let bob = user_id!("@bob:tessera.test");
        let rules = default_ruleset(bob);
        let everyone = |sender: &str| {
            pdu(
                sender,
                "m.room.message",
                None,
                json!({ "msgtype": "m.text", "body": "all", "m.mentions": { "room": true } }),
            )
        };
        let levels = json!({ "users": { "@alice:tessera.test": 100 }, "notifications": { "room": 50 } });
        let room = facts(3, Some(levels));
        assert!(verdict(&rules, &everyone("@alice:tessera.test"), &room, bob, "Bob").unwrap().highlight);
        assert!(!verdict(&rules, &everyone("@carol:tessera.test"), &room, bob, "Bob").unwrap().highlight);
    }

    #[test]
    fn own_events_and_silenced_rooms_produce_nothing() {
        let bob = user_id!("@bob:tessera.test");
        let message =
            pdu("@bob:tessera.test", "m.room.message", None, json!({ "msgtype": "m.text", "body": "me" }));
        assert!(verdict(&default_ruleset(bob), &message, &facts(3, None), bob, "Bob").is_none());

        let mut muted = default_ruleset(bob);
        muted
            .insert(
                NewPushRule::Room(NewSimplePushRule::new(owned_room_id!("!room:tessera.test"), vec![])),
                None,
                None,
            )
            .unwrap();
        let theirs =
            pdu("@alice:tessera.test", "m.room.message", None, json!({ "msgtype": "m.text", "body": "x" }));
        assert!(verdict(&muted, &theirs, &facts(3, None), bob, "Bob").is_none());
        assert!(muted.get(RuleKind::Room, "!room:tessera.test").is_some());
    }

    #[test]
    fn conditions_see_the_event_as_clients_do() {
        let bob = user_id!("@bob:tessera.test");
        let rule = |key: &str, pattern: &str| {
            let condition = ruma::push::PushCondition::EventMatch(ruma::push::EventMatchConditionData::new(
                key.to_owned(),
                pattern.to_owned(),
            ));
            NewPushRule::Override(ruma::push::NewConditionalPushRule::new(
                format!("only.{key}"),
                vec![condition],
                vec![
                    Action::Notify,
                    Action::SetTweak(Tweak::Highlight(ruma::push::HighlightTweakValue::Yes)),
                ],
            ))
        };
        let message =
            pdu("@alice:tessera.test", "m.room.message", None, json!({ "msgtype": "m.text", "body": "x" }));
        for (key, pattern, highlights) in [
            ("room_id", "!room:tessera.test", true),
            ("sender", "@alice:tessera.test", true),
            ("content.msgtype", "m.text", true),
            ("event_id", "$event:tessera.test", true),
            // In the PDU, never in a client's copy of the event.
            ("hashes.sha256", "aaaa", false),
        ] {
            let mut rules = default_ruleset(bob);
            rules.insert(rule(key, pattern), None, None).unwrap();
            let highlighted =
                verdict(&rules, &message, &facts(3, None), bob, "Bob").is_some_and(|v| v.highlight);
            assert_eq!(highlighted, highlights, "{key}");
        }
    }

    fn keyword(pattern: &str) -> NewPushRule {
        NewPushRule::Content(ruma::push::NewPatternedPushRule::new(
            "keyword".into(),
            pattern.into(),
            vec![Action::Notify, Action::SetTweak(Tweak::Highlight(ruma::push::HighlightTweakValue::Yes))],
        ))
    }

    #[test]
    fn the_worst_patterns_within_the_limit_evaluate() {
        let bob = user_id!("@bob:tessera.test");
        let body = format!("{} b", "a".repeat(2_000));
        let message =
            pdu("@alice:tessera.test", "m.room.message", None, json!({ "msgtype": "m.text", "body": body }));
        let half = MAX_PATTERN_BYTES / 2;
        let worst = [
            format!("{}b", "*a".repeat(half - 1)),
            "?".repeat(MAX_PATTERN_BYTES),
            format!("{}b", "?*".repeat(half - 1)),
            "a".repeat(MAX_PATTERN_BYTES),
        ];
        for pattern in worst {
            assert!(pattern.len() <= MAX_PATTERN_BYTES);
            assert!(!new_rule_has_oversized_pattern(&keyword(&pattern)));
            let mut rules = default_ruleset(bob);
            rules.insert(keyword(&pattern), None, None).unwrap();
            // Any verdict will do: it must come back, not panic.
            let _ = verdict(&rules, &message, &facts(3, None), bob, "Bob");
        }
    }

    #[test]
    fn a_rule_that_makes_ruma_panic_does_not_apply() {
        // The sweep's pattern: ruma's regex compilation panics on it.
        let bob = user_id!("@bob:tessera.test");
        let pattern = format!("{}b", "*a".repeat(25_000));
        assert!(new_rule_has_oversized_pattern(&keyword(&pattern)));
        let mut rules = default_ruleset(bob);
        rules.insert(keyword(&pattern), None, None).unwrap();
        let message =
            pdu("@alice:tessera.test", "m.room.message", None, json!({ "msgtype": "m.text", "body": "a b" }));
        let got =
            verdict(&rules, &message, &facts(3, None), bob, "Bob").expect("the other rules still apply");
        assert!(got.notify, "the group-message rule applies");
        assert!(!got.highlight, "the panicking keyword rule did not");
    }

    #[test]
    fn stored_rules_with_oversized_patterns_are_left_out() {
        let bob = user_id!("@bob:tessera.test");
        let mut rules = default_ruleset(bob);
        rules.insert(keyword(&"x".repeat(MAX_PATTERN_BYTES + 1)), None, None).unwrap();
        let stored = serde_json::to_value(&rules).unwrap();
        let (loaded, dropped) = ruleset_from_stored(stored).expect("a rule set");
        assert_eq!(dropped, 1);
        assert!(loaded.get(RuleKind::Content, "keyword").is_none());
        assert_eq!(user_rule_count(&loaded), 0);
        assert!(ruleset_from_stored(json!("not a rule set")).is_none());
    }

    #[test]
    fn membership_changes_do_not_notify_but_an_invite_for_me_does() {
        let bob = user_id!("@bob:tessera.test");
        let rules = default_ruleset(bob);
        let join = pdu(
            "@carol:tessera.test",
            "m.room.member",
            Some("@carol:tessera.test"),
            json!({ "membership": "join" }),
        );
        assert!(verdict(&rules, &join, &facts(3, None), bob, "Bob").is_none());
        let invite = pdu(
            "@alice:tessera.test",
            "m.room.member",
            Some("@bob:tessera.test"),
            json!({ "membership": "invite" }),
        );
        assert!(verdict(&rules, &invite, &facts(3, None), bob, "Bob").unwrap().notify);
    }

    #[test]
    fn thread_replies_name_their_root() {
        let reply = pdu(
            "@alice:tessera.test",
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": "r", "m.relates_to": { "rel_type": "m.thread", "event_id": "$root" } }),
        );
        assert_eq!(PushEvent::new(&reply).thread(), "$root");
        let plain =
            pdu("@alice:tessera.test", "m.room.message", None, json!({ "msgtype": "m.text", "body": "p" }));
        assert_eq!(PushEvent::new(&plain).thread(), MAIN_THREAD);
    }
}
