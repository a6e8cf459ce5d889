//! `POST /rooms/{roomId}/upgrade`: a new room of another version that
//! carries the old room's state (power levels adjusted to each version's
//! view of creators, see `tessera_core::upgrade`), a tombstone in the old
//! room pointing at it, the old room's power levels raised so that it
//! falls quiet, and local members' push rules for it copied to the new one
//! (also when a client sends the tombstone itself).
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#server-behaviour-19>.

use ruma::{
    OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, events::TimelineEventType,
    state_res::events::RoomCreateEvent,
};
use serde_json::{Map, Value, json};
use tessera_core::{
    EventTemplate,
    create_room::Preset,
    room_versions, rules_for,
    upgrade::{Creators, upgraded_power_levels},
};

use super::{
    Rooms,
    append::{event_error, pdu_from_stored},
    create::CreateRoom,
};
use crate::{Error, Result, auth::Identity};

/// State copied into the new room (the spec's list, as Synapse copies it).
const COPIED_STATE: [&str; 8] = [
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
];

impl Rooms {
    /// Upgrades `room_id` to `new_version`; returns the replacement room.
    pub async fn upgrade(
        &self,
        who: &Identity,
        room_id: &RoomId,
        new_version: RoomVersionId,
        mut additional_creators: Vec<OwnedUserId>,
    ) -> Result<OwnedRoomId> {
        if !room_versions::is_supported(&new_version) {
            return Err(event_error(tessera_core::EventError::UnsupportedRoomVersion(new_version)));
        }
        let old_version = self.room_version(room_id).await?;
        // May this user tombstone the room at all? Build one without storing it.
        let probe = tombstone(room_id);
        self.prepare(Some(room_id), &old_version, &who.user_id, &probe).await?;

        let content = |event: &tessera_storage::StoredEvent| -> Result<Value> {
            let pdu: Value = serde_json::from_str(&event.json).map_err(Error::internal)?;
            Ok(pdu["content"].clone())
        };
        let mut initial_state = Vec::new();
        for kind in COPIED_STATE {
            if let Some(event) = self.store.current_state_event(room_id, kind, "").await? {
                initial_state.push(EventTemplate::state(kind, "", content(&event)?));
            }
        }
        let old_create = self
            .store
            .current_state_event(room_id, "m.room.create", "")
            .await?
            .ok_or_else(|| Error::internal("room without a create event"))?;
        let mut creation_content: Map<String, Value> = match content(&old_create)? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        for server_decides in ["creator", "room_version", "predecessor", "additional_creators"] {
            creation_content.remove(server_decides);
        }
        let mut predecessor = json!({ "room_id": room_id });
        if new_version != RoomVersionId::V12
            && let Some(last) = self.store.forward_extremities(room_id).await?.last()
        {
            predecessor["event_id"] = last.event_id.as_str().into();
        }
        creation_content.insert("predecessor".into(), predecessor);
        let old_rules = rules_for(&old_version).map_err(event_error)?;
        let new_rules = rules_for(&new_version).map_err(event_error)?;
        // The upgrader creates the new room; whom they name beside them
        // counts only where the version knows additional creators.
        if new_rules.authorization.additional_room_creators {
            additional_creators.retain(|u| *u != who.user_id);
            if !additional_creators.is_empty() {
                let listed: Vec<Value> = additional_creators.iter().map(|u| u.as_str().into()).collect();
                creation_content.insert("additional_creators".into(), listed.into());
            }
        } else {
            additional_creators.clear();
        }
        let old_creators = RoomCreateEvent::new(pdu_from_stored(&old_create, &old_version)?)
            .creators(&old_rules.authorization)
            .map_err(Error::internal)?;
        let old_creators: Vec<&ruma::UserId> = old_creators.iter().map(|u| &**u).collect();
        let new_creators: Vec<&ruma::UserId> =
            std::iter::once(&*who.user_id).chain(additional_creators.iter().map(|u| &**u)).collect();
        let power_levels = match self.store.current_state_event(room_id, "m.room.power_levels", "").await? {
            Some(event) => match content(&event)? {
                Value::Object(map) => Some(upgraded_power_levels(
                    map,
                    &Creators {
                        users: &old_creators,
                        implicit: old_rules.authorization.explicitly_privilege_room_creators,
                    },
                    &Creators {
                        users: &new_creators,
                        implicit: new_rules.authorization.explicitly_privilege_room_creators,
                    },
                )),
                _ => None,
            },
            None => None,
        };
        let replacement = self
            .create_room(
                who,
                CreateRoom {
                    preset: Some(Preset::PrivateChat),
                    room_version: Some(new_version),
                    creation_content: Some(creation_content),
                    initial_state,
                    power_level_content_override: power_levels,
                    ..CreateRoom::default()
                },
            )
            .await?;

        let mut tombstone = tombstone(room_id);
        tombstone.content["replacement_room"] = replacement.as_str().into();
        self.send(room_id, &who.user_id, &tombstone, None).await?;
        self.carry_push_rules(room_id, &replacement).await;
        self.quieten(who, room_id).await;
        tracing::info!(old = %room_id, new = %replacement, "upgraded room");
        Ok(replacement)
    }

    /// After a tombstone in `old` naming `new` (from `/upgrade`, or sent
    /// by hand after creating the new room): each local member's push
    /// rules for the old room are copied for the new one, so that a room
    /// they muted stays muted. Best effort: the tombstone stands either way.
    pub(crate) async fn carry_push_rules(&self, old: &RoomId, new: &RoomId) {
        let members = match self.store.room_members(old).await {
            Ok(members) => members,
            Err(e) => {
                tracing::warn!(%old, error = %e, "could not read members to copy push rules");
                return;
            }
        };
        let local = members
            .iter()
            .filter(|(membership, _)| membership == "join")
            .filter_map(|(_, event)| ruma::UserId::parse(event.state_key.as_deref()?).ok())
            .filter(|user| user.server_name() == self.server_name);
        for user in local {
            if let Err(e) = self.push_rules.copy_room_rules(&user, old, new).await {
                tracing::warn!(%user, %old, %new, error = %e, "could not copy push rules to the upgraded room");
            }
        }
    }

    /// Raises the old room's `events_default` and `invite` to 50 (at least
    /// above the default user level), as the spec suggests. Best effort: the
    /// upgrader may lack the power to change power levels.
    async fn quieten(&self, who: &Identity, room_id: &RoomId) {
        let Ok(Some(event)) = self.store.current_state_event(room_id, "m.room.power_levels", "").await else {
            return;
        };
        let Ok(pdu) = serde_json::from_str::<Value>(&event.json) else { return };
        let mut content = pdu["content"].clone();
        let floor = content["users_default"].as_i64().unwrap_or(0).saturating_add(1).max(50);
        for field in ["events_default", "invite"] {
            if content[field].as_i64().unwrap_or(0) < floor {
                content[field] = floor.into();
            }
        }
        let template = EventTemplate::state(TimelineEventType::RoomPowerLevels, "", content);
        if let Err(e) = self.send(room_id, &who.user_id, &template, None).await {
            tracing::info!(%room_id, error = %e, "could not restrict the upgraded room's power levels");
        }
    }
}

fn tombstone(room_id: &RoomId) -> EventTemplate {
    EventTemplate::state(
        TimelineEventType::RoomTombstone,
        "",
        json!({ "body": "This room has been replaced", "replacement_room": room_id }),
    )
}
