//! The events `POST /createRoom` sends, in the spec's order, from the
//! request: create, the creator's join, power levels, canonical alias, the
//! preset's join rules / history visibility / guest access, `initial_state`,
//! name, topic, then invites.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3createroom>.

use ruma::{
    OwnedRoomAliasId, OwnedUserId, RoomVersionId,
    events::{TimelineEventType, room::topic::RoomTopicEventContent},
};
use serde_json::{Map, Value, json};

use crate::{EventError, EventTemplate, pdu::rules_for};

/// `createRoom`'s presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

/// Everything from the request that shapes the initial events.
#[derive(Clone, Debug)]
pub struct CreateRoomPlan {
    pub creator: OwnedUserId,
    pub room_version: RoomVersionId,
    pub preset: Preset,
    /// Extra keys for `m.room.create`'s content.
    pub creation_content: Option<Map<String, Value>>,
    /// `displayname`/`avatar_url` for the creator's member event.
    pub creator_profile: Map<String, Value>,
    /// Keys that replace the default power levels.
    pub power_level_content_override: Option<Map<String, Value>>,
    pub canonical_alias: Option<OwnedRoomAliasId>,
    pub initial_state: Vec<EventTemplate>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
}

/// The initial events, in order. The first is always `m.room.create`.
pub fn initial_events(plan: &CreateRoomPlan) -> Result<Vec<EventTemplate>, EventError> {
    let rules = rules_for(&plan.room_version)?;
    let creator = plan.creator.as_str();
    let trusted_invitees =
        if plan.preset == Preset::TrustedPrivateChat { plan.invite.as_slice() } else { &[] };

    let mut create = plan.creation_content.clone().unwrap_or_default();
    // The server decides these, whatever the client put in creation_content.
    create.insert("room_version".into(), plan.room_version.as_str().into());
    if rules.authorization.use_room_create_sender {
        create.remove("creator");
    } else {
        create.insert("creator".into(), creator.into());
    }
    if rules.authorization.additional_room_creators && !trusted_invitees.is_empty() {
        // Room version 12: trusted invitees become creators rather than
        // being listed in power levels, beside those the client named. A
        // malformed list is left as it is, for the create event's checks
        // to refuse.
        let additional = create.entry("additional_creators").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(additional) = additional {
            for invitee in trusted_invitees {
                if !additional.iter().any(|a| a.as_str() == Some(invitee.as_str())) {
                    additional.push(invitee.as_str().into());
                }
            }
        }
    }
    let additional = create.get("additional_creators").and_then(Value::as_array).into_iter().flatten();
    let creators: Vec<String> =
        std::iter::once(creator).chain(additional.filter_map(Value::as_str)).map(str::to_owned).collect();
    let mut events = vec![EventTemplate::state(TimelineEventType::RoomCreate, "", Value::Object(create))];

    let mut join = plan.creator_profile.clone();
    join.insert("membership".into(), "join".into());
    events.push(EventTemplate::state(TimelineEventType::RoomMember, creator, Value::Object(join)));

    let creators_are_implicit = rules.authorization.explicitly_privilege_room_creators;
    let power_levels = power_levels(plan, creators_are_implicit, trusted_invitees);
    // Checked here, before anything is stored, so that a refused request
    // leaves no half-made room behind (the append path checks it again).
    if creators_are_implicit
        && let Some(Value::Object(users)) = power_levels.get("users")
        && let Some(listed) = creators.iter().find(|c| users.contains_key(c.as_str()))
    {
        return Err(EventError::Invalid(format!(
            "{listed} is a creator of the room: creators have unlimited power and must not be \
             listed in power_level_content_override's `users`"
        )));
    }
    events.push(EventTemplate::state(TimelineEventType::RoomPowerLevels, "", Value::Object(power_levels)));

    if let Some(alias) = &plan.canonical_alias {
        events.push(EventTemplate::state(
            TimelineEventType::RoomCanonicalAlias,
            "",
            json!({ "alias": alias }),
        ));
    }

    let (join_rule, guest_access) = match plan.preset {
        Preset::PublicChat => ("public", None),
        Preset::PrivateChat | Preset::TrustedPrivateChat => ("invite", Some("can_join")),
    };
    let mut preset_events = vec![
        EventTemplate::state(TimelineEventType::RoomJoinRules, "", json!({ "join_rule": join_rule })),
        EventTemplate::state(
            TimelineEventType::RoomHistoryVisibility,
            "",
            json!({ "history_visibility": "shared" }),
        ),
    ];
    if let Some(guest_access) = guest_access {
        preset_events.push(EventTemplate::state(
            TimelineEventType::RoomGuestAccess,
            "",
            json!({ "guest_access": guest_access }),
        ));
    }
    // initial_state takes precedence over the preset's events.
    preset_events
        .retain(|p| !plan.initial_state.iter().any(|s| s.kind == p.kind && s.state_key == p.state_key));
    events.extend(preset_events);
    for state in &plan.initial_state {
        // Name and topic keys override initial_state; the create event and
        // power levels have their own request fields.
        let overridden = (state.kind == TimelineEventType::RoomName && plan.name.is_some())
            || (state.kind == TimelineEventType::RoomTopic && plan.topic.is_some())
            || state.kind == TimelineEventType::RoomCreate
            || state.kind == TimelineEventType::RoomPowerLevels;
        if !overridden {
            events.push(state.clone());
        }
    }
    if let Some(name) = &plan.name {
        events.push(EventTemplate::state(TimelineEventType::RoomName, "", json!({ "name": name })));
    }
    if let Some(topic) = &plan.topic {
        // The plain topic, and the same as a rich `m.topic` block (v1.15;
        // Complement checks it).
        let content = serde_json::to_value(RoomTopicEventContent::new(topic.clone()))
            .map_err(|e| EventError::Invalid(e.to_string()))?;
        events.push(EventTemplate::state(TimelineEventType::RoomTopic, "", content));
    }
    for invitee in &plan.invite {
        let mut content = json!({ "membership": "invite" });
        if plan.is_direct {
            content["is_direct"] = true.into();
        }
        events.push(EventTemplate::state(TimelineEventType::RoomMember, invitee.as_str(), content));
    }
    Ok(events)
}

/// The default power levels (those Synapse and Element use), the preset's
/// adjustments, then the client's override.
fn power_levels(
    plan: &CreateRoomPlan,
    creators_are_implicit: bool,
    trusted: &[OwnedUserId],
) -> Map<String, Value> {
    let mut users = Map::new();
    if !creators_are_implicit {
        users.insert(plan.creator.to_string(), 100.into());
        for invitee in trusted {
            users.insert(invitee.to_string(), 100.into());
        }
    }
    let mut content = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        // As Synapse has it: anyone in a private chat may invite; in a
        // public one, moderators.
        "invite": if plan.preset == Preset::PublicChat { 50 } else { 0 },
    });
    if creators_are_implicit {
        // Room version 12 reserves 150 for tombstones (upgrades), above any
        // ordinary admin, as Synapse does.
        content["events"]["m.room.tombstone"] = 150.into();
    }
    let mut content = match content {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    };
    if let Some(overrides) = &plan.power_level_content_override {
        for (key, value) in overrides {
            content.insert(key.clone(), value.clone());
        }
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::user_id;

    fn base() -> CreateRoomPlan {
        CreateRoomPlan {
            creator: user_id!("@alice:example.org").to_owned(),
            room_version: RoomVersionId::V11,
            preset: Preset::PrivateChat,
            creation_content: None,
            creator_profile: Map::new(),
            power_level_content_override: None,
            canonical_alias: None,
            initial_state: Vec::new(),
            name: None,
            topic: None,
            invite: Vec::new(),
            is_direct: false,
        }
    }

    fn kinds(events: &[EventTemplate]) -> Vec<String> {
        events.iter().map(|e| e.kind.to_string()).collect()
    }

    #[test]
    fn events_follow_the_spec_order() {
        let mut plan = base();
        plan.canonical_alias = Some("#tea:example.org".try_into().expect("alias"));
        plan.name = Some("Tea".into());
        plan.topic = Some("Party".into());
        plan.invite = vec![user_id!("@bob:example.org").to_owned()];
        plan.is_direct = true;
        let events = initial_events(&plan).expect("plan");
        assert_eq!(
            kinds(&events),
            [
                "m.room.create",
                "m.room.member",
                "m.room.power_levels",
                "m.room.canonical_alias",
                "m.room.join_rules",
                "m.room.history_visibility",
                "m.room.guest_access",
                "m.room.name",
                "m.room.topic",
                "m.room.member"
            ]
        );
        assert_eq!(events[9].content, json!({ "membership": "invite", "is_direct": true }));
    }

    #[test]
    fn presets_set_join_rules_and_trusted_power() {
        let mut plan = base();
        plan.preset = Preset::PublicChat;
        let events = initial_events(&plan).expect("plan");
        let join_rules =
            events.iter().find(|e| e.kind == TimelineEventType::RoomJoinRules).expect("join rules");
        assert_eq!(join_rules.content["join_rule"], "public");
        assert!(!events.iter().any(|e| e.kind == TimelineEventType::RoomGuestAccess));

        plan.preset = Preset::TrustedPrivateChat;
        plan.invite = vec![user_id!("@bob:example.org").to_owned()];
        let events = initial_events(&plan).expect("plan");
        let pl = events.iter().find(|e| e.kind == TimelineEventType::RoomPowerLevels).expect("pl");
        assert_eq!(pl.content["users"]["@bob:example.org"], 100);

        plan.room_version = RoomVersionId::V12;
        let events = initial_events(&plan).expect("plan");
        assert_eq!(events[0].content["additional_creators"], json!(["@bob:example.org"]));

        // Those named in creation_content stay creators beside the invitees.
        plan.creation_content = json!({ "additional_creators": ["@carol:example.org"] }).as_object().cloned();
        let events = initial_events(&plan).expect("plan");
        assert_eq!(
            events[0].content["additional_creators"],
            json!(["@carol:example.org", "@bob:example.org"])
        );
    }

    #[test]
    fn version_12_overrides_may_not_list_creators() {
        let mut plan = base();
        plan.room_version = RoomVersionId::V12;
        plan.creation_content = json!({ "additional_creators": ["@carol:example.org"] }).as_object().cloned();
        for creator in ["@alice:example.org", "@carol:example.org"] {
            plan.power_level_content_override = json!({ "users": { creator: 100 } }).as_object().cloned();
            assert!(matches!(initial_events(&plan), Err(EventError::Invalid(_))), "{creator}");
        }
        plan.power_level_content_override =
            json!({ "users": { "@bob:example.org": 100 } }).as_object().cloned();
        let events = initial_events(&plan).expect("others may be listed");
        assert_eq!(events[2].content["users"], json!({ "@bob:example.org": 100 }));
    }

    #[test]
    fn topic_is_also_a_rich_text_block() {
        let mut plan = base();
        plan.topic = Some("Party".into());
        let events = initial_events(&plan).expect("plan");
        let topic = events.iter().find(|e| e.kind == TimelineEventType::RoomTopic).expect("topic");
        // ruma leaves out the mimetype of plain text, its default.
        assert_eq!(
            topic.content,
            json!({ "topic": "Party", "m.topic": { "m.text": [{ "body": "Party" }] } })
        );
    }

    #[test]
    fn initial_state_overrides_the_preset_and_name_overrides_initial_state() {
        let mut plan = base();
        plan.initial_state = vec![
            EventTemplate::state("m.room.history_visibility", "", json!({ "history_visibility": "joined" })),
            EventTemplate::state("m.room.name", "", json!({ "name": "from initial_state" })),
        ];
        plan.name = Some("from name".into());
        let events = initial_events(&plan).expect("plan");
        let history: Vec<_> =
            events.iter().filter(|e| e.kind == TimelineEventType::RoomHistoryVisibility).collect();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].content["history_visibility"], "joined");
        let names: Vec<_> = events.iter().filter(|e| e.kind == TimelineEventType::RoomName).collect();
        assert_eq!(names.len(), 1);
        assert_eq!(names[0].content["name"], "from name");
    }

    #[test]
    fn power_level_override_and_creation_content_are_applied() {
        let mut plan = base();
        plan.power_level_content_override =
            json!({ "events_default": 50, "invite": 100 }).as_object().cloned();
        plan.creation_content = json!({ "m.federate": false, "room_version": "1" }).as_object().cloned();
        let events = initial_events(&plan).expect("plan");
        assert_eq!(events[0].content["m.federate"], false);
        assert_eq!(events[0].content["room_version"], "11", "the server decides the version");
        assert_eq!(events[2].content["events_default"], 50);
        assert_eq!(events[2].content["invite"], 100);
        assert_eq!(events[2].content["kick"], 50);
    }
}
