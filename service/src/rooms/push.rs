//! Who a new event notifies: each local joined member's push rules,
//! evaluated by the core (`tessera_core::push`), before the event is
//! stored so that the verdicts commit with it. The room's members, display
//! names and power levels are cached per room and dropped whenever the
//! room's state changes; appends hold the room lock, so the cache is the
//! state before the event.

use std::sync::Arc;

use ruma::{OwnedUserId, RoomId, RoomVersionId, UserId, events::TimelineEventType};
use tessera_core::{
    Pdu,
    push::{PushEvent, RoomFacts, evaluate},
    rules_for,
};
use tessera_storage::NewPushAction;

use super::{Rooms, append::event_error, append::pdu_from_stored};
use crate::{Error, Result};

/// The local joined members of a room and the facts push conditions read.
pub(crate) struct Audience {
    facts: RoomFacts,
    /// Local joined members with their display names in the room.
    members: Vec<(OwnedUserId, String)>,
}

impl Rooms {
    /// The verdicts of the local members `pdu` notifies or highlights
    /// (and of a local user it invites).
    pub(crate) async fn push_actions(
        &self,
        pdu: &Pdu,
        version: &RoomVersionId,
    ) -> Result<Vec<NewPushAction>> {
        let Some(audience) = self.audience(&pdu.room_id, version).await? else {
            return Ok(Vec::new());
        };
        let event = PushEvent::new(pdu);
        let mut recipients: Vec<(&UserId, &str)> =
            audience.members.iter().map(|(user, name)| (&**user, name.as_str())).collect();
        let invited = self.invited_local_user(pdu);
        if let Some((user, name)) = &invited
            && !recipients.iter().any(|(member, _)| member == user)
        {
            recipients.push((user, name));
        }
        let mut verdicts = Vec::new();
        for (user, name) in recipients {
            let ruleset = self.push_rules.cached_ruleset(user).await?;
            if let Some(verdict) = evaluate(&ruleset, &event, &audience.facts, user, name) {
                verdicts.push(NewPushAction {
                    user_id: user.to_string(),
                    thread_id: event.thread().to_owned(),
                    actions: serde_json::to_string(&verdict.actions).map_err(Error::internal)?,
                    notify: verdict.notify,
                    highlight: verdict.highlight,
                });
            }
        }
        Ok(verdicts)
    }

    /// The local target of an invite, with the display name it carries.
    fn invited_local_user(&self, pdu: &Pdu) -> Option<(OwnedUserId, String)> {
        if pdu.kind != TimelineEventType::RoomMember {
            return None;
        }
        let content: serde_json::Value = pdu.content_as().ok()?;
        if content["membership"] != "invite" {
            return None;
        }
        let target = UserId::parse(pdu.state_key.as_deref()?).ok()?;
        if target.server_name() != self.server_name {
            return None;
        }
        let name = content["displayname"].as_str().unwrap_or_default().to_owned();
        Some((target, name))
    }

    /// The room's cached audience, loaded from current state when missing;
    /// `None` before the room has a create event.
    async fn audience(&self, room_id: &RoomId, version: &RoomVersionId) -> Result<Option<Arc<Audience>>> {
        if let Some(audience) = self.audiences.lock().unwrap_or_else(|p| p.into_inner()).get(room_id) {
            return Ok(Some(audience.clone()));
        }
        let Some(create) = self.store.current_state_event(room_id, "m.room.create", "").await? else {
            return Ok(None);
        };
        let create = pdu_from_stored(&create, version)?;
        let power_levels = match self.store.current_state_event(room_id, "m.room.power_levels", "").await? {
            Some(stored) => Some(pdu_from_stored(&stored, version)?),
            None => None,
        };
        let members: Vec<(OwnedUserId, String)> = self
            .store
            .room_members(room_id)
            .await?
            .into_iter()
            .filter(|(membership, _)| membership == "join")
            .filter_map(|(_, event)| {
                let user = UserId::parse(event.state_key.as_deref()?).ok()?;
                let json: serde_json::Value = serde_json::from_str(&event.json).ok()?;
                let name = json["content"]["displayname"].as_str().unwrap_or_default().to_owned();
                Some((user, name))
            })
            .collect();
        let joined = u64::try_from(members.len()).unwrap_or(u64::MAX);
        let local = members.into_iter().filter(|(user, _)| user.server_name() == self.server_name).collect();
        let rules = rules_for(version).map_err(event_error)?;
        let facts = RoomFacts::new(room_id.to_owned(), joined, &create, power_levels.as_ref(), &rules);
        let audience = Arc::new(Audience { facts, members: local });
        self.audiences.lock().unwrap_or_else(|p| p.into_inner()).insert(room_id.to_owned(), audience.clone());
        Ok(Some(audience))
    }

    /// Drops the room's cached audience (its state changed).
    pub(crate) fn forget_audience(&self, room_id: &RoomId) {
        self.audiences.lock().unwrap_or_else(|p| p.into_inner()).remove(room_id);
    }
}
