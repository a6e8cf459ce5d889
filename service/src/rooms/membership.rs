//! Membership: join, invite, leave, kick, ban, unban, knock, forget. Each is
//! an `m.room.member` event through the ordinary append path; the room
//! version's authorization rules decide who may do what.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#room-membership>.

use ruma::{RoomId, UserId};
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
    /// `POST /join/{roomIdOrAlias}` and `/rooms/{roomId}/join`. `extra` is
    /// the rest of the request body, kept in the member event's content as
    /// Synapse does (a display name for this room, custom keys); the
    /// membership and server-set keys are ours.
    pub async fn join(
        &self,
        who: &Identity,
        room_id: &RoomId,
        reason: Option<&str>,
        extra: serde_json::Map<String, Value>,
    ) -> Result<()> {
        if let Some((membership, _)) = self.store.membership(room_id, &who.user_id).await?
            && membership == "join"
        {
            // Already joined: nothing to change (clients retry joins).
            return Ok(());
        }
        let mut content = self.profile_content(&who.user_id).await?;
        if let Value::Object(fields) = &mut content {
            for (key, value) in extra {
                if !matches!(
                    key.as_str(),
                    "membership" | "third_party_signed" | "join_authorised_via_users_server"
                ) {
                    fields.insert(key, value);
                }
            }
        }
        content["membership"] = "join".into();
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        if who.is_guest
            && self.state_content(room_id, "m.room.guest_access").await?["guest_access"] != "can_join"
        {
            return Err(Error::forbidden("Guests may not join this room"));
        }
        if let Some(authoriser) = self.restricted_join_authoriser(room_id, &who.user_id).await? {
            content["join_authorised_via_users_server"] = authoriser.into();
        }
        self.send_member(room_id, &who.user_id, &who.user_id, content).await
    }

    /// For a room with a `restricted` join rule, checks the user is in one
    /// of the allowed rooms and picks a local member who may invite to
    /// vouch for the join (the v8+ auth rules require one). `None` when the
    /// join needs no authorising (other join rules, or already invited).
    pub(super) async fn restricted_join_authoriser(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Option<String>> {
        let join_rules = self.state_content(room_id, "m.room.join_rules").await?;
        let rule = join_rules["join_rule"].as_str().unwrap_or_default();
        if rule != "restricted" && rule != "knock_restricted" {
            return Ok(None);
        }
        if self.store.membership(room_id, user).await?.is_some_and(|(m, _)| m == "invite" || m == "join") {
            return Ok(None);
        }
        if !self.in_an_allowed_room(&join_rules, user).await? {
            // For another server's user: a server still in an allowed
            // room may know better than this one.
            if user.server_name() != self.server_name && !self.in_any_allowed_room_here(&join_rules).await? {
                return Err(Error::new(
                    400,
                    ruma::api::error::ErrorKind::UnableToAuthorizeJoin,
                    "This server is in none of the rooms this room admits members of",
                ));
            }
            return Err(Error::forbidden("You are not in any of the rooms this room admits members of"));
        }
        let version = self.room_version(room_id).await?;
        let rules = tessera_core::rules_for(&version).map_err(super::append::event_error)?;
        let stored = |kind: &'static str| self.store.current_state_event(room_id, kind, "");
        let create =
            stored("m.room.create").await?.ok_or_else(|| Error::internal("room without a create event"))?;
        let create = super::append::pdu_from_stored(&create, &version)?;
        let levels = match stored("m.room.power_levels").await? {
            Some(levels) => Some(super::append::pdu_from_stored(&levels, &version)?),
            None => None,
        };
        for (membership, event) in self.store.room_members(room_id).await? {
            let Some(member) = event.state_key.as_deref().and_then(|k| UserId::parse(k).ok()) else {
                continue;
            };
            if membership == "join"
                && member.server_name() == self.server_name
                && tessera_core::power::may_invite(&member, &create, levels.as_ref(), &rules)
            {
                return Ok(Some(member.to_string()));
            }
        }
        Err(Error::new(
            400,
            ruma::api::error::ErrorKind::UnableToAuthorizeJoin,
            "No member here may authorise the join",
        ))
    }

    /// Whether `user` is joined to one of the rooms that a `restricted` or
    /// `knock_restricted` join rule (`join_rules`, its content) admits the
    /// members of, as far as this server knows: only rooms it is still in
    /// count (in one it left, what it holds of others' memberships is
    /// stale).
    pub(crate) async fn in_an_allowed_room(&self, join_rules: &Value, user: &UserId) -> Result<bool> {
        for other in allowed_rooms(join_rules) {
            if self.store.membership(&other, user).await?.is_some_and(|(m, _)| m == "join")
                && self.has_local_members(&other).await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether this server is in any of the rooms a restricted join rule
    /// admits the members of (so may tell whether a user is); also when
    /// it admits from no room at all (nobody may tell).
    async fn in_any_allowed_room_here(&self, join_rules: &Value) -> Result<bool> {
        let mut none = true;
        for other in allowed_rooms(join_rules) {
            none = false;
            if self.has_local_members(&other).await? {
                return Ok(true);
            }
        }
        Ok(none)
    }

    /// The content of a current state event (`{}` when unset).
    async fn state_content(&self, room_id: &RoomId, kind: &str) -> Result<Value> {
        let Some(event) = self.store.current_state_event(room_id, kind, "").await? else {
            return Ok(json!({}));
        };
        let pdu: Value = serde_json::from_str(&event.json).map_err(Error::internal)?;
        Ok(pdu["content"].clone())
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
        if change == Change::Leave
            && let Some(current) = self.out_of_band_membership(room_id, target).await?
        {
            // An invite or knock of a room this server takes no part in.
            let pending = current.content().and_then(|c| c["membership"].as_str()).map(str::to_owned);
            if !matches!(pending.as_deref(), Some("invite" | "knock")) {
                return Err(Error::forbidden("You are not in this room"));
            }
            return self.leave_remote(target, room_id, &current, reason).await;
        }
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
        if change == Change::Kick
            && self
                .store
                .membership(room_id, target)
                .await?
                .is_none_or(|(m, _)| !matches!(m.as_str(), "join" | "invite" | "knock"))
        {
            // The auth rules would let a moderator "kick" someone already
            // out; Synapse and the spec's tests refuse it.
            return Err(Error::forbidden("The target user is not in the room"));
        }
        if change == Change::Unban
            && self.store.membership(room_id, target).await?.is_none_or(|(m, _)| m != "ban")
        {
            return Err(Error::forbidden("That user is not banned"));
        }
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        if change == Change::Invite && target.server_name() != self.server_name {
            return self.invite_remote(&who.user_id, room_id, target, content).await;
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
            Some(_) => {
                // Forgetting takes no stream position (none of its own is
                // stored, and a token must never run ahead of what a restart
                // finds); it is noted as a change after everything settled,
                // before (in case the request is cancelled mid-write) and
                // after (for a cache filled while it was being written).
                let user = who.user_id.as_str();
                self.member_changes.record(user, self.streams.persisted_upto() + 1);
                self.store.forget_room(room_id, &who.user_id).await?;
                self.member_changes.record(user, self.streams.persisted_upto() + 1);
                Ok(())
            }
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

    /// Carries a change of one field of `user`'s global profile
    /// (`displayname` or `avatar_url`, from `old` to `new`) into their
    /// `m.room.member` event in every room they are joined to, as Synapse
    /// does and clients expect (they show names from member events). A room
    /// where the member event has a value of its own (a per-room name, set
    /// with a state event or at join) keeps it. A room whose rules refuse
    /// the new event keeps the old one; the others are still updated.
    pub async fn propagate_profile(
        &self,
        user: &UserId,
        field: &str,
        old: Option<&str>,
        new: Option<&str>,
    ) -> Result<()> {
        for room in self.store.rooms_with_membership(user, "join").await? {
            let Ok(room_id) = RoomId::parse(&room) else { continue };
            let Some(current) = self.store.membership_event(&room_id, user).await? else { continue };
            let Some(Value::Object(existing)) = current.content() else { continue };
            let shown = existing.get(field).and_then(Value::as_str);
            if shown == new || (shown.is_some() && shown != old) {
                continue;
            }
            let mut content = existing.clone();
            // A join's one-off keys do not belong to the profile update.
            for key in ["reason", "join_authorised_via_users_server"] {
                content.remove(key);
            }
            match new {
                Some(value) => content.insert(field.to_owned(), value.into()),
                None => content.remove(field),
            };
            if let Err(e) = self.send_member(&room_id, user, user, Value::Object(content)).await {
                if matches!(e, Error::Unavailable { .. }) {
                    return Err(e);
                }
                tracing::info!(room = %room_id, user = %user, error = %e, "profile change not carried into the room");
            }
        }
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

/// The rooms whose members a restricted join rule's `allow` admits.
pub(super) fn allowed_rooms(join_rules: &Value) -> impl Iterator<Item = ruma::OwnedRoomId> + '_ {
    join_rules.get("allow").and_then(Value::as_array).into_iter().flatten().filter_map(|entry| {
        (entry.get("type").and_then(Value::as_str) == Some("m.room_membership"))
            .then(|| entry.get("room_id").and_then(Value::as_str).and_then(|r| RoomId::parse(r).ok()))
            .flatten()
    })
}
