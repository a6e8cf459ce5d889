//! `POST /createRoom`: validate the request, then send the initial events
//! the core plans, in order, each through the ordinary append path.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, RoomVersionId};
use serde_json::{Map, Value};
use tessera_core::{
    EventTemplate,
    create_room::{CreateRoomPlan, Preset, initial_events},
    room_versions,
};
use tessera_storage::StorageError;

use super::{Rooms, append::event_error};
use crate::{Error, Result, auth::Identity};

/// A `createRoom` request, as the handler parsed it.
#[derive(Default)]
pub struct CreateRoom {
    pub preset: Option<Preset>,
    /// `visibility: public`: publish in the room directory.
    pub public: bool,
    pub room_version: Option<RoomVersionId>,
    pub creation_content: Option<Map<String, Value>>,
    pub initial_state: Vec<EventTemplate>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub power_level_content_override: Option<Map<String, Value>>,
    pub room_alias_name: Option<String>,
}

impl Rooms {
    /// Creates a room and returns its ID.
    pub async fn create_room(&self, creator: &Identity, request: CreateRoom) -> Result<OwnedRoomId> {
        let version = request.room_version.unwrap_or_else(|| self.default_version.clone());
        if !room_versions::is_supported(&version) {
            return Err(event_error(tessera_core::EventError::UnsupportedRoomVersion(version)));
        }
        let alias = match &request.room_alias_name {
            Some(name) => Some(self.new_alias(name).await?),
            None => None,
        };
        let profile = self.store.get_profile(&creator.user_id).await?.unwrap_or_default();
        let mut creator_profile = Map::new();
        if let Some(name) = profile.displayname {
            creator_profile.insert("displayname".into(), name.into());
        }
        if let Some(url) = profile.avatar_url {
            creator_profile.insert("avatar_url".into(), url.to_string().into());
        }
        let plan = CreateRoomPlan {
            creator: creator.user_id.clone(),
            room_version: version.clone(),
            preset: request.preset.unwrap_or(if request.public {
                Preset::PublicChat
            } else {
                Preset::PrivateChat
            }),
            creation_content: request.creation_content,
            creator_profile,
            power_level_content_override: request.power_level_content_override,
            canonical_alias: alias.clone(),
            initial_state: request.initial_state,
            name: request.name,
            topic: request.topic,
            invite: request.invite,
            is_direct: request.is_direct,
        };
        let mut templates = initial_events(&plan).map_err(event_error)?;
        // Invites carry the invitee's profile, as `/invite` does, so clients
        // can show who was invited.
        for template in templates.iter_mut().filter(|t| t.kind == ruma::events::TimelineEventType::RoomMember)
        {
            let Some(invitee) = template.state_key.as_deref().and_then(|k| ruma::UserId::parse(k).ok())
            else {
                continue;
            };
            if invitee == creator.user_id {
                continue;
            }
            let profile = self.profile_content(&invitee).await?;
            if let (Some(content), Some(profile)) = (template.content.as_object_mut(), profile.as_object()) {
                for (key, value) in profile {
                    content.insert(key.clone(), value.clone());
                }
            }
        }
        let (create, rest) =
            templates.split_first().ok_or_else(|| Error::internal("no create event planned"))?;

        // Room versions before 12 name rooms `!random:server`; version 12
        // derives the ID from the create event, so two identical creates in
        // the same millisecond (one user's concurrent requests) would name
        // the same room: the later one tries again a millisecond on.
        let random_ids = version
            .rules()
            .is_some_and(|r| r.room_id_format == ruma::room_version_rules::RoomIdFormatVersion::V1);
        let mut attempts = 0;
        let (prepared, _guard) = loop {
            let chosen = random_ids.then(|| RoomId::new_v1(&self.server_name));
            let prepared = self.prepare(chosen.as_deref(), &version, &creator.user_id, create).await?;
            let guard = self.room_lock(&prepared.pdu.room_id).lock_owned().await;
            match self
                .store
                .create_room(&prepared.pdu.room_id, &version, &creator.user_id, request.public)
                .await
            {
                Ok(()) => break (prepared, guard),
                Err(StorageError::Conflict(_)) if attempts < 10 => {
                    attempts += 1;
                    drop(guard);
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let room_id = prepared.pdu.room_id.clone();
        self.versions.lock().unwrap_or_else(|p| p.into_inner()).insert(room_id.clone(), version.clone());
        self.persist(&prepared, None, None).await?;
        // Invites of other servers' users need those servers' signatures
        // (`/invite`): sent once the room stands, outside its lock.
        let remote_invitee = |template: &EventTemplate| {
            template.kind == ruma::events::TimelineEventType::RoomMember
                && template.content["membership"] == "invite"
                && template
                    .state_key
                    .as_deref()
                    .and_then(|k| ruma::UserId::parse(k).ok())
                    .is_some_and(|u| u.server_name() != self.server_name)
        };
        for template in rest.iter().filter(|t| !remote_invitee(t)) {
            let prepared = self.prepare(Some(&room_id), &version, &creator.user_id, template).await?;
            self.persist(&prepared, None, None).await?;
        }
        drop(_guard);
        for template in rest.iter().filter(|t| remote_invitee(t)) {
            let Some(invitee) = template.state_key.as_deref().and_then(|k| ruma::UserId::parse(k).ok())
            else {
                continue;
            };
            // The room stands either way; the creator may invite again.
            if let Err(e) =
                self.invite_remote(&creator.user_id, &room_id, &invitee, template.content.clone()).await
            {
                tracing::info!(%room_id, %invitee, error = %e, "invite of another server's user at creation failed");
            }
        }
        if let Some(alias) = alias {
            match self.store.create_alias(alias.as_str(), &room_id, &creator.user_id).await {
                Err(StorageError::Conflict(_)) => return Err(room_in_use()),
                other => other?,
            }
        }
        tracing::info!(%room_id, %version, creator = %creator.user_id, "created room");
        Ok(room_id)
    }

    /// `#name:server` for `room_alias_name`, if it is valid and free.
    async fn new_alias(&self, name: &str) -> Result<OwnedRoomAliasId> {
        if name.contains([':', '#']) || name.is_empty() {
            return Err(Error::new(
                400,
                ruma::api::error::ErrorKind::InvalidParam,
                "Invalid room_alias_name",
            ));
        }
        let alias = RoomAliasId::parse(format!("#{name}:{}", self.server_name))
            .map_err(|e| Error::new(400, ruma::api::error::ErrorKind::InvalidParam, e.to_string()))?;
        // Identifiers are at most 255 bytes (checked here too: ruma's
        // check is off when a dependency asks for arbitrary-length IDs).
        crate::limits::check_bytes("room alias", alias.as_str(), 255)?;
        if self.store.resolve_alias(alias.as_str()).await?.is_some() {
            return Err(room_in_use());
        }
        Ok(alias)
    }
}

fn room_in_use() -> Error {
    Error::new(400, ruma::api::error::ErrorKind::RoomInUse, "Room alias already taken")
}
