//! Whole rooms built with the core alone, in every supported room version:
//! the `createRoom` events pass the authorization rules when built with the
//! right parents, signatures verify, event and room IDs have each
//! version's format, and the rules refuse what they should.

use std::collections::{BTreeMap, HashMap};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, UInt, UserId,
    events::{StateEventType, TimelineEventType},
    server_name,
    signatures::{Verified, verify_event},
    user_id,
};
use serde_json::json;

use crate::{
    EventError, EventTemplate, Parents, Pdu, ServerSigningKey, auth, build_event,
    create_room::{CreateRoomPlan, Preset, initial_events},
    room_versions, rules_for,
};

/// A room being built in memory, the way the service layer will build one
/// on top of storage: one extremity, state as a map.
struct Room {
    version: RoomVersionId,
    room_id: Option<OwnedRoomId>,
    events: HashMap<OwnedEventId, Pdu>,
    state: BTreeMap<(StateEventType, String), OwnedEventId>,
    last: Option<OwnedEventId>,
    clock: u64,
}

impl Room {
    fn new(version: RoomVersionId) -> Self {
        Self {
            version,
            room_id: None,
            events: HashMap::new(),
            state: BTreeMap::new(),
            last: None,
            clock: 1_700_000_000_000,
        }
    }

    fn state_event(&self, kind: &StateEventType, key: &str) -> Option<&Pdu> {
        self.state.get(&(kind.clone(), key.to_owned())).and_then(|id| self.events.get(id))
    }

    /// Builds, checks (against auth events and current state) and appends.
    fn send(
        &mut self,
        key: &ServerSigningKey,
        sender: &UserId,
        template: &EventTemplate,
    ) -> Result<Pdu, EventError> {
        let rules = rules_for(&self.version)?;
        let content = serde_json::value::to_raw_value(&template.content).expect("content");
        let types =
            auth::auth_types(&template.kind, sender, template.state_key.as_deref(), &content, &rules)?;
        if self.room_id.is_none() && rules.room_id_format == ruma::room_version_rules::RoomIdFormatVersion::V1
        {
            self.room_id = Some(RoomId::new_v1(key.server_name()));
        }
        self.clock += 1;
        let auth_events: Vec<&Pdu> = types.iter().filter_map(|(k, s)| self.state_event(k, s)).collect();
        let prev: Vec<&Pdu> = self.last.iter().filter_map(|id| self.events.get(id)).collect();
        let parents =
            Parents { room_id: self.room_id.as_deref(), prev_events: &prev, auth_events: &auth_events };
        let ts = MilliSecondsSinceUnixEpoch(UInt::new(self.clock).expect("small"));
        let pdu = build_event(template, &self.version, sender, &parents, ts, key)?;
        let create = self.state_event(&StateEventType::RoomCreate, "");
        auth::check_creators_content(&pdu, &rules, create)?;
        auth::check_against_auth_events(&pdu, &rules, &auth_events, create)?;
        auth::check_against_state(&pdu, &rules, |k, s| self.state_event(k, s))?;
        self.room_id.get_or_insert_with(|| pdu.room_id.clone());
        if let Some(state_key) = &pdu.state_key {
            self.state.insert((pdu.kind.to_string().into(), state_key.clone()), pdu.event_id.clone());
        }
        self.last = Some(pdu.event_id.clone());
        self.events.insert(pdu.event_id.clone(), pdu.clone());
        Ok(pdu)
    }
}

fn plan(version: RoomVersionId, preset: Preset) -> CreateRoomPlan {
    CreateRoomPlan {
        creator: user_id!("@alice:example.org").to_owned(),
        room_version: version,
        preset,
        creation_content: None,
        creator_profile: json!({ "displayname": "Alice" }).as_object().cloned().expect("object"),
        power_level_content_override: None,
        canonical_alias: None,
        initial_state: Vec::new(),
        name: Some("Tea party".into()),
        topic: Some("Why is a raven like a writing desk?".into()),
        invite: vec![user_id!("@bob:example.org").to_owned()],
        is_direct: false,
    }
}

fn new_room(version: &RoomVersionId, key: &ServerSigningKey) -> Room {
    let mut room = Room::new(version.clone());
    for template in initial_events(&plan(version.clone(), Preset::PrivateChat)).expect("plan") {
        room.send(key, user_id!("@alice:example.org"), &template)
            .unwrap_or_else(|e| panic!("{version}: initial {} refused: {e}", template.kind));
    }
    room
}

#[test]
fn create_room_events_pass_auth_in_every_version() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    for (version, _) in room_versions::supported() {
        let room = new_room(&version, &key);
        assert_eq!(
            room.events.len(),
            9,
            "{version}: create, join, PL, join rules, history, guest, name, topic, invite"
        );
        let member = room.state_event(&StateEventType::RoomMember, "@bob:example.org").expect("bob invited");
        assert_eq!(member.content_as::<serde_json::Value>().expect("json")["membership"], "invite");
    }
}

#[test]
fn ids_follow_each_version_format() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    for (version, _) in room_versions::supported() {
        let room = new_room(&version, &key);
        let rules = rules_for(&version).expect("rules");
        let room_id = room.room_id.as_ref().expect("room id");
        for id in room.events.keys() {
            match rules.event_id_format {
                ruma::room_version_rules::EventIdFormatVersion::V1 => {
                    assert!(id.as_str().ends_with(":example.org"))
                }
                ruma::room_version_rules::EventIdFormatVersion::V2 => {
                    assert_eq!(id.as_str().len(), 44, "{id}")
                }
                _ => assert!(!id.as_str().contains(['+', '/', ':']), "{version}: {id} is not URL-safe"),
            }
        }
        if version == RoomVersionId::V12 {
            let create = room.state_event(&StateEventType::RoomCreate, "").expect("create");
            assert_eq!(
                room_id.as_str()[1..],
                create.event_id.as_str()[1..],
                "v12 room ID is the create hash"
            );
        } else {
            assert!(room_id.as_str().ends_with(":example.org"));
        }
    }
}

#[test]
fn signatures_and_hashes_verify() {
    let (key, _) = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key");
    let public_keys = BTreeMap::from([(
        "example.org".to_owned(),
        BTreeMap::from([(key.key_id().to_string(), key.public_key())]),
    )]);
    for version in [RoomVersionId::V1, RoomVersionId::V6, RoomVersionId::V11, RoomVersionId::V12] {
        let room = new_room(&version, &key);
        let rules = rules_for(&version).expect("rules");
        for pdu in room.events.values() {
            let mut json = pdu.json.clone();
            if version == RoomVersionId::V12 && pdu.kind == TimelineEventType::RoomCreate {
                // verify_event takes the room ID from the JSON otherwise.
                json.remove("room_id");
            }
            assert_eq!(
                verify_event(&public_keys, &json, &rules).expect("verifies"),
                Verified::All,
                "{version}"
            );
        }
    }
}

#[test]
fn auth_rules_refuse_what_they_should() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    let bob = user_id!("@bob:example.org");
    let mallory = user_id!("@mallory:example.org");
    for (version, _) in room_versions::supported() {
        let mut room = new_room(&version, &key);
        let say = EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": "hi" }));
        room.send(&key, user_id!("@alice:example.org"), &say).expect("a member may talk");
        // Invited is not joined.
        let refused = room.send(&key, bob, &say).expect_err("invited users cannot talk");
        assert!(matches!(refused, EventError::AuthRejected(_)), "{version}: {refused}");
        // A stranger cannot join an invite-only room.
        let join = |who: &UserId| {
            EventTemplate::state("m.room.member", who.as_str(), json!({ "membership": "join" }))
        };
        assert!(
            matches!(room.send(&key, mallory, &join(mallory)), Err(EventError::AuthRejected(_))),
            "{version}"
        );
        // The invitee can, and may then talk, but not rename the room.
        room.send(&key, bob, &join(bob)).expect("invited user joins");
        room.send(&key, bob, &say).expect("joined user talks");
        let rename = EventTemplate::state("m.room.name", "", json!({ "name": "Bob's room" }));
        assert!(
            matches!(room.send(&key, bob, &rename), Err(EventError::AuthRejected(_))),
            "{version}: PL 0 < 50"
        );
        room.send(&key, user_id!("@alice:example.org"), &rename).expect("the creator may rename");
    }
}

#[test]
fn public_rooms_admit_anyone_and_versions_differ_in_creators() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    for version in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
        let mut room = Room::new(version.clone());
        let mut public = plan(version.clone(), Preset::PublicChat);
        public.invite.clear();
        for template in initial_events(&public).expect("plan") {
            room.send(&key, user_id!("@alice:example.org"), &template).expect("initial events");
        }
        let carol = user_id!("@carol:example.org");
        room.send(
            &key,
            carol,
            &EventTemplate::state("m.room.member", carol.as_str(), json!({ "membership": "join" })),
        )
        .expect("anyone joins a public room");
        let pl = room.state_event(&StateEventType::RoomPowerLevels, "").expect("power levels");
        let users = pl.content_as::<serde_json::Value>().expect("json")["users"].clone();
        let create = room.state_event(&StateEventType::RoomCreate, "").expect("create");
        let create = create.content_as::<serde_json::Value>().expect("json");
        assert_eq!(create["room_version"], version.as_str());
        match version {
            RoomVersionId::V10 => assert_eq!(create["creator"], "@alice:example.org"),
            _ => assert!(create.get("creator").is_none(), "v11+ derive the creator from the sender"),
        }
        if version == RoomVersionId::V12 {
            assert!(users.get("@alice:example.org").is_none(), "v12 creators are implicit");
        } else {
            assert_eq!(users["@alice:example.org"], 100);
        }
    }
}

/// MSC4289 (room version 12): a malformed `additional_creators`, and
/// power levels that list a creator, are the sender's mistake (invalid),
/// not a question of power (forbidden).
#[test]
fn creators_content_mistakes_are_invalid_in_version_12() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    let alice = user_id!("@alice:example.org");
    for additional in [
        json!("not-an-array"),
        json!(["@foo:example.com", 42]),
        json!(["@foo:example.com", "not-a-user-id"]),
        json!(["@invalid:dom$ain$.com"]),
    ] {
        let mut room = Room::new(RoomVersionId::V12);
        let create = EventTemplate::state(
            "m.room.create",
            "",
            json!({ "room_version": "12", "additional_creators": additional }),
        );
        let refused = room.send(&key, alice, &create);
        assert!(matches!(refused, Err(EventError::Invalid(_))), "{additional}: {refused:?}");
    }

    let mut room = Room::new(RoomVersionId::V12);
    let create = EventTemplate::state(
        "m.room.create",
        "",
        json!({ "room_version": "12", "additional_creators": ["@bob:example.org"] }),
    );
    room.send(&key, alice, &create).expect("well-formed additional creators");
    room.send(
        &key,
        alice,
        &EventTemplate::state("m.room.member", alice.as_str(), json!({ "membership": "join" })),
    )
    .expect("creator joins");
    for listed in ["@alice:example.org", "@bob:example.org"] {
        let levels = EventTemplate::state("m.room.power_levels", "", json!({ "users": { listed: 100 } }));
        let refused = room.send(&key, alice, &levels);
        assert!(matches!(refused, Err(EventError::Invalid(_))), "{listed}: {refused:?}");
    }
    let levels =
        EventTemplate::state("m.room.power_levels", "", json!({ "users": { "@carol:example.org": 100 } }));
    room.send(&key, alice, &levels).expect("others may be listed");
}

#[test]
fn oversized_events_are_refused() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    let mut room = new_room(&RoomVersionId::V11, &key);
    let big =
        EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": "x".repeat(70_000) }));
    assert!(matches!(
        room.send(&key, user_id!("@alice:example.org"), &big),
        Err(EventError::TooLarge("event"))
    ));
}

#[test]
fn event_types_and_state_keys_stay_within_255_bytes() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    let mut room = new_room(&RoomVersionId::V11, &key);
    let alice = user_id!("@alice:example.org");
    let long = "x".repeat(256);
    let at_limit = "x".repeat(255);
    let long_type = EventTemplate::message(long.as_str(), json!({}));
    assert!(matches!(room.send(&key, alice, &long_type), Err(EventError::TooLarge("type"))));
    let empty_type = EventTemplate::message("", json!({}));
    assert!(matches!(room.send(&key, alice, &empty_type), Err(EventError::Invalid(_))));
    let long_key = EventTemplate::state("org.example.state", long.as_str(), json!({}));
    assert!(matches!(room.send(&key, alice, &long_key), Err(EventError::TooLarge("state_key"))));
    let fits = EventTemplate::state(at_limit.as_str(), at_limit.as_str(), json!({}));
    assert!(room.send(&key, alice, &fits).is_ok(), "255 bytes are allowed");
}

#[test]
fn remote_state_keys_are_limited_in_code_points() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    let mut room = new_room(&RoomVersionId::V11, &key);
    let alice = user_id!("@alice:example.org");
    let event =
        room.send(&key, alice, &EventTemplate::state("org.example.state", "k", json!({}))).expect("send");
    let rules = RoomVersionId::V11.rules().expect("rules");
    let with_key = |state_key: String| {
        let mut json = event.json.clone();
        json.insert("state_key".into(), ruma::CanonicalJsonValue::String(state_key));
        Pdu::from_remote_json(json, None, &rules)
    };
    // 70 code points, 280 bytes: as Synapse takes it (older rooms hold such events).
    assert!(with_key("💥".repeat(70)).is_ok());
    assert!(matches!(with_key("x".repeat(256)), Err(EventError::TooLarge("state_key"))));
}

#[test]
fn redaction_permission_and_algorithm() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    let alice = user_id!("@alice:example.org");
    let bob = user_id!("@bob:example.org");
    for version in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
        let mut room = new_room(&version, &key);
        room.send(
            &key,
            bob,
            &EventTemplate::state("m.room.member", bob.as_str(), json!({ "membership": "join" })),
        )
        .expect("bob joins");
        let said = room
            .send(
                &key,
                bob,
                &EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": "oops" })),
            )
            .expect("bob talks");
        let by_alice = room
            .send(
                &key,
                alice,
                &EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": "hi" })),
            )
            .expect("alice talks");
        let create = room.state_event(&StateEventType::RoomCreate, "").expect("create").clone();
        let levels = room.state_event(&StateEventType::RoomPowerLevels, "").cloned();
        let rules = rules_for(&version).expect("rules");
        assert!(crate::power::may_redact(bob, Some(bob), &create, levels.as_ref(), &rules), "own events");
        assert!(
            crate::power::may_redact(alice, Some(bob), &create, levels.as_ref(), &rules),
            "the creator moderates"
        );
        assert!(
            !crate::power::may_redact(bob, Some(&by_alice.sender), &create, levels.as_ref(), &rules),
            "PL 0 < 50"
        );

        let redacted = said.redacted_json(&rules).expect("redact");
        let content = redacted.get("content").expect("content");
        assert_eq!(
            content,
            &ruma::CanonicalJsonValue::Object(Default::default()),
            "message content is stripped"
        );
        assert!(redacted.contains_key("signatures") && redacted.contains_key("hashes"));
    }
}

/// A fork: two events built on the same parent, each giving its own state.
fn fork(room: &Room, key: &ServerSigningKey, sender: &UserId, template: &EventTemplate, clock: u64) -> Pdu {
    let rules = rules_for(&room.version).expect("rules");
    let content = serde_json::value::to_raw_value(&template.content).expect("content");
    let types = auth::auth_types(&template.kind, sender, template.state_key.as_deref(), &content, &rules)
        .expect("types");
    let auth_events: Vec<&Pdu> = types.iter().filter_map(|(k, s)| room.state_event(k, s)).collect();
    let prev: Vec<&Pdu> = room.last.iter().filter_map(|id| room.events.get(id)).collect();
    let parents = Parents { room_id: room.room_id.as_deref(), prev_events: &prev, auth_events: &auth_events };
    let ts = MilliSecondsSinceUnixEpoch(UInt::new(clock).expect("small"));
    build_event(template, &room.version, sender, &parents, ts, key).expect("build")
}

fn state_with(room: &Room, extra: &Pdu) -> crate::state_res::StateMap {
    let mut state: crate::state_res::StateMap =
        room.state.iter().map(|((kind, key), id)| ((kind.clone(), key.clone()), id.clone())).collect();
    state.insert(
        (extra.kind.to_string().into(), extra.state_key.clone().expect("state")),
        extra.event_id.clone(),
    );
    state
}

#[test]
fn forks_resolve_by_the_room_versions_algorithm() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    let alice = user_id!("@alice:example.org");
    let bob = user_id!("@bob:example.org");
    for version in [RoomVersionId::V2, RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
        let mut room = new_room(&version, &key);
        room.send(
            &key,
            bob,
            &EventTemplate::state("m.room.member", bob.as_str(), json!({ "membership": "join" })),
        )
        .expect("bob joins");
        let name = |n: &str| EventTemplate::state("m.room.name", "", json!({ "name": n }));
        // Two concurrent renames by the same admin: the later one wins.
        let first = fork(&room, &key, alice, &name("One"), 2_000_000_000_000);
        let second = fork(&room, &key, alice, &name("Two"), 2_000_000_000_001);
        // A rename by bob (power level 0) that the auth rules must drop,
        // however late it is.
        let forged = fork(&room, &key, bob, &name("Bob's"), 2_000_000_000_009);
        let mut all = room.events.clone();
        for pdu in [&first, &second, &forged] {
            all.insert(pdu.event_id.clone(), pdu.clone());
        }
        let rules = rules_for(&version).expect("rules");
        let states = [state_with(&room, &first), state_with(&room, &second), state_with(&room, &forged)];
        let resolved =
            crate::state_res::resolve_states(&rules, &states, |id| all.get(id).cloned()).expect("resolves");
        let winner = &resolved[&(StateEventType::RoomName, String::new())];
        assert_eq!(winner, &second.event_id, "{version}: the later authorised rename wins");
        assert_eq!(
            resolved[&(StateEventType::RoomMember, bob.to_string())],
            room.state[&(StateEventType::RoomMember, bob.to_string())]
        );
    }
}

#[test]
fn version_one_forks_are_refused_not_misresolved() {
    let key = ServerSigningKey::generate(server_name!("example.org").to_owned()).expect("key").0;
    let room = new_room(&RoomVersionId::V1, &key);
    let rules = rules_for(&RoomVersionId::V1).expect("rules");
    let state: crate::state_res::StateMap = room.state.clone().into_iter().collect();
    assert!(
        crate::state_res::resolve_states(&rules, &[state.clone(), state], |id| room.events.get(id).cloned())
            .is_err()
    );
}
