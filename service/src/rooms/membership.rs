//! Membership: join, invite, leave, kick, ban, unban, knock, forget. Each is
//! an `m.room.member` event through the ordinary append path; the room
//! version's authorization rules decide who may do what.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#room-membership>.

use ruma::{OwnedRoomId, RoomId, RoomOrAliasId, UserId};
use serde_json::{Value, json};
use tessera_core::EventTemplate;

use super::Rooms;
use crate::{Error, Result, auth::Identity};

/// A membership change one user makes to another (or to themselves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Invite,
    Leave,
    Kick,
    Ban,
    Unban,
}

impl Rooms {
    /// Resolves a room ID or alias to a room this server knows.
    pub async fn resolve_room(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId> {
        let room_id = match <&RoomId>::try_from(room) {
            Ok(room_id) => room_id.to_owned(),
            Err(alias) => {
                let id = self
                    .store
                    .resolve_alias(alias.as_str())
                    .await?
                    .ok_or_else(|| Error::not_found("Unknown room alias"))?;
                RoomId::parse(id).map_err(Error::internal)?
            }
        };
        // Joining remote rooms needs federation (a later issue).
        self.room_version(&room_id).await?;
        Ok(room_id)
    }

    /// `POST /join/{roomIdOrAlias}` and `/rooms/{roomId}/join`.
    pub async fn join(&self, who: &Identity, room_id: &RoomId, reason: Option<&str>) -> Result<()> {
        if let Some((membership, _)) = self.store.membership(room_id, &who.user_id).await?
            && membership == "join"
        {
            // Already joined: nothing to change (clients retry joins).
            return Ok(());
        }
        let mut content = self.profile_content(&who.user_id).await?;
        content["membership"] = "join".into();
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        self.send_member(room_id, &who.user_id, &who.user_id, content).await
    }

    /// `POST /knock/{roomIdOrAlias}`.
    pub async fn knock(&self, who: &Identity, room_id: &RoomId, reason: Option<&str>) -> Result<()> {
        let mut content = self.profile_content(&who.user_id).await?;
        content["membership"] = "knock".into();
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        self.send_member(room_id, &who.user_id, &who.user_id, content).await
    }

    /// Invite, leave (self), kick, ban and unban.
    pub async fn change_membership(
        &self,
        who: &Identity,
        room_id: &RoomId,
        change: Change,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.room_version(room_id).await?;
        let mut content = match change {
            Change::Invite => {
                if self.store.get_profile(target).await?.is_none() && target.server_name() == self.server_name
                {
                    return Err(Error::not_found("No such user"));
                }
                let mut content = self.profile_content(target).await?;
                content["membership"] = "invite".into();
                content
            }
            Change::Leave | Change::Kick | Change::Unban => json!({ "membership": "leave" }),
            Change::Ban => json!({ "membership": "ban" }),
        };
        if change == Change::Leave
            && self.store.membership(room_id, target).await?.is_none_or(|(m, _)| m == "leave" || m == "ban")
        {
            // Not in the room (or already out): the spec's 403.
            return Err(Error::forbidden("You are not in this room"));
        }
        if change == Change::Unban
            && self.store.membership(room_id, target).await?.is_none_or(|(m, _)| m != "ban")
        {
            return Err(Error::forbidden("That user is not banned"));
        }
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        self.send_member(room_id, &who.user_id, target, content).await
    }

    /// `POST /rooms/{roomId}/forget`: only after leaving.
    pub async fn forget(&self, who: &Identity, room_id: &RoomId) -> Result<()> {
        match self.store.membership(room_id, &who.user_id).await? {
            Some((membership, _))
                if membership == "join" || membership == "invite" || membership == "knock" =>
            {
                Err(Error::new(
                    400,
                    ruma::api::error::ErrorKind::Unknown,
                    "Leave the room before forgetting it",
                ))
            }
            Some(_) => Ok(self.store.forget_room(room_id, &who.user_id).await?),
            None => Err(Error::not_found("You have never been in this room")),
        }
    }

    async fn send_member(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        content: Value,
    ) -> Result<()> {
        let template = EventTemplate::state("m.room.member", target.as_str(), content);
        self.send(room_id, sender, &template, None).await?;
        Ok(())
    }

    /// `displayname`/`avatar_url` for a member event of `user`.
    pub(crate) async fn profile_content(&self, user: &UserId) -> Result<Value> {
        let profile = self.store.get_profile(user).await?.unwrap_or_default();
        let mut content = json!({});
        if let Some(name) = profile.displayname {
            content["displayname"] = name.into();
        }
        if let Some(url) = profile.avatar_url {
            content["avatar_url"] = url.to_string().into();
        }
        Ok(content)
    }
}
