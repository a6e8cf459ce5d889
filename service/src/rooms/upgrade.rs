//! `POST /rooms/{roomId}/upgrade`: a new room of another version that
//! carries the old room's state, a tombstone in the old room pointing at
//! it, and the old room's power levels raised so that it falls quiet.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#server-behaviour-19>.

use ruma::{OwnedRoomId, RoomId, RoomVersionId, events::TimelineEventType};
use serde_json::{Map, Value, json};
use tessera_core::{EventTemplate, create_room::Preset, room_versions};

use super::{Rooms, append::event_error, create::CreateRoom};
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
        let power_levels = match self.store.current_state_event(room_id, "m.room.power_levels", "").await? {
            Some(event) => match content(&event)? {
                Value::Object(mut map) => {
                    if new_version.rules().is_some_and(|r| r.authorization.explicitly_privilege_room_creators)
                        && let Some(Value::Object(users)) = map.get_mut("users")
                    {
                        // Creators have implicit power from room version 12.
                        users.remove(who.user_id.as_str());
                    }
                    Some(map)
                }
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
        self.quieten(who, room_id).await;
        tracing::info!(old = %room_id, new = %replacement, "upgraded room");
        Ok(replacement)
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
