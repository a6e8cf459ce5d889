//! Joining across servers (`make_join` / `send_join` v2), both sides.
//!
//! Resident side: `make_join` builds the join event's template at the
//! room's tip (refused when the rules would refuse the join);
//! `send_join` takes the signed join through the remote-event path, sends
//! it on to the other servers in the room, and answers with the state
//! before it and the auth chain of that state.
//!
//! Joining side: a user joins a room this server does not hold (or holds
//! without anyone joined) through a server that is in it: the template
//! is completed (content, timestamp), hashed and signed, sent, and the
//! answer's state and auth chain verified and stored as outliers; the
//! join is then appended on that state.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#joining-rooms>.

use std::collections::HashSet;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedServerName, RoomId, RoomVersionId, ServerName, UserId,
    api::{error::ErrorKind, federation::membership::create_join_event::v2::RoomState},
    events::TimelineEventType,
    room_version_rules::EventIdFormatVersion,
};
use serde_json::value::RawValue as RawJsonValue;
use tessera_core::{EventTemplate, Pdu, rules_for};
use tessera_storage::EventStatus;

use super::{Rooms, append::event_error, remote::RemoteOutcome};
use crate::{Error, Result, auth::Identity};

impl Rooms {
    /// `GET /make_join/{roomId}/{userId}` from `origin`: the room's
    /// version and the join event's template.
    pub async fn make_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[RoomVersionId],
    ) -> Result<(RoomVersionId, serde_json::Value)> {
        self.membership_template(origin, room_id, user_id, "join", Some(versions)).await
    }

    /// The template of `user_id`'s `membership` (join, leave or knock)
    /// that `origin` asked for (`make_join`, `make_leave`, `make_knock`),
    /// with the room's version. `versions`: those the asking server
    /// supports, where the request says. Built and checked as if it were
    /// local, so a change the rules refuse is refused here already.
    pub(super) async fn membership_template(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        membership: &str,
        versions: Option<&[RoomVersionId]>,
    ) -> Result<(RoomVersionId, serde_json::Value)> {
        if user_id.server_name() != origin {
            return Err(Error::forbidden("A server may only ask for its own users"));
        }
        let version = self.room_version(room_id).await?;
        self.check_server_acl(room_id, origin).await?;
        if let Some(versions) = versions
            && !versions.contains(&version)
        {
            return Err(Error::new(
                400,
                ErrorKind::IncompatibleRoomVersion(ruma::api::error::IncompatibleRoomVersionErrorData::new(
                    version.clone(),
                )),
                format!("The room's version is {version}, which the asking server does not support"),
            ));
        }
        if !self.has_local_members(room_id).await? {
            return Err(Error::not_found("This server is not in the room"));
        }
        let mut content = serde_json::json!({ "membership": membership });
        if membership == "join"
            && let Some(authoriser) = self.restricted_join_authoriser(room_id, user_id).await?
        {
            content["join_authorised_via_users_server"] = authoriser.into();
        }
        let template = EventTemplate::state("m.room.member", user_id.as_str(), content);
        let prepared = self.prepare(Some(room_id), &version, user_id, &template).await?;
        let mut event = prepared.pdu.json;
        for key in ["signatures", "hashes", "event_id", "unsigned"] {
            event.remove(key);
        }
        Ok((version, serde_json::to_value(event).map_err(Error::internal)?))
    }

    /// `PUT /send_join/{roomId}/{eventId}` (v2) from `origin`. With
    /// `omit_members` (MSC3706, the resident side of a partial-state join)
    /// the state leaves out the member events of all but the room's
    /// heroes, the auth chain leaves out what the state already holds,
    /// and the servers in the room are listed.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawJsonValue,
        omit_members: bool,
    ) -> Result<RoomState> {
        let (version, join, cosigned) =
            self.accept_membership(origin, room_id, event_id, pdu, "join").await?;
        let state = self.store.state_at_group(join.state_before).await?;
        let heroes: HashSet<String> =
            match (omit_members, UserId::parse(join.state_key.as_deref().unwrap_or_default())) {
                (true, Ok(joiner)) => {
                    self.store.room_heroes(room_id, &joiner, 5).await?.into_iter().collect()
                }
                _ => HashSet::new(),
            };
        let state_ids: Vec<String> = state
            .iter()
            .filter(|((kind, key), _)| !omit_members || kind != "m.room.member" || heroes.contains(key))
            .map(|(_, id)| id.clone())
            .collect();
        let mut state_events = Vec::with_capacity(state_ids.len());
        for chunk in state_ids.chunks(500) {
            state_events.extend(self.store.get_events(chunk).await?.into_iter().filter(|e| !e.rejected));
        }
        let mut room_state = RoomState::new();
        for event in &state_events {
            room_state.state.push(raw(&event.json)?);
        }
        if cosigned {
            room_state.event = Some(raw(&join.json)?);
        }
        let in_state: HashSet<OwnedEventId> = state_events.iter().map(|e| e.event_id.clone()).collect();
        state_events.push(join);
        for event in self.auth_chain(&version, room_id, &state_events).await? {
            if !(omit_members && in_state.contains(&event.event_id)) {
                room_state.auth_chain.push(raw(&event.json)?);
            }
        }
        if omit_members {
            room_state.members_omitted = true;
            // The servers in the room before this join: the joining server
            // only if it had a member joined already.
            let origin_members: Vec<String> = state
                .iter()
                .filter(|((kind, key), _)| {
                    kind == "m.room.member" && UserId::parse(key).is_ok_and(|u| u.server_name() == origin)
                })
                .map(|(_, id)| id.clone())
                .collect();
            let origin_was_in = self
                .store
                .get_events(&origin_members)
                .await?
                .iter()
                .any(|e| e.content().and_then(|c| c.get("membership")).is_some_and(|m| m == "join"));
            let mut servers: Vec<String> = self
                .remote_servers(room_id)
                .await?
                .iter()
                .filter(|server| origin_was_in || *server != origin)
                .map(|s| s.to_string())
                .collect();
            servers.push(self.server_name.to_string());
            servers.sort();
            servers.dedup();
            room_state.servers_in_room = Some(servers);
        }
        Ok(room_state)
    }

    /// A signed membership event of one of `origin`'s users (`send_join`,
    /// `send_leave`, `send_knock`): verified, appended to the room through
    /// the remote-event path and sent on to the room's other servers.
    /// A restricted join that names a user of this server as its
    /// authoriser is co-signed first (the rules need that server's
    /// signature). Returns the room's version, the event as stored, and
    /// whether this server signed it.
    pub(super) async fn accept_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawJsonValue,
        membership: &str,
    ) -> Result<(RoomVersionId, tessera_storage::StoredEvent, bool)> {
        let version = self.room_version(room_id).await?;
        self.check_server_acl(room_id, origin).await?;
        let mut object: CanonicalJsonObject =
            serde_json::from_str(pdu.get()).map_err(|e| Error::bad_json(format!("not a PDU: {e}")))?;
        let authoriser = match object.get("content") {
            Some(CanonicalJsonValue::Object(content)) if membership == "join" => {
                match content.get("join_authorised_via_users_server") {
                    Some(CanonicalJsonValue::String(user)) => UserId::parse(user).ok(),
                    _ => None,
                }
            }
            _ => None,
        };
        let cosign = authoriser.is_some_and(|user| user.server_name() == self.server_name);
        if cosign {
            let rules = rules_for(&version).map_err(event_error)?;
            let hashes = object.get("hashes").cloned();
            self.signing_key.hash_and_sign_event(&mut object, &rules.redaction).map_err(event_error)?;
            if object.get("hashes") != hashes.as_ref() {
                return Err(Error::bad_json("The join's content hash is wrong"));
            }
        }
        let pdu =
            crate::federation::verify_pdu(&self.federation.server_keys, object, Some(room_id), &version)
                .await
                .map_err(event_error)?;
        if pdu.event_id != event_id {
            return Err(Error::bad_json("The event ID does not match the event"));
        }
        let found = pdu
            .content_as::<serde_json::Value>()
            .ok()
            .and_then(|c| c.get("membership").and_then(|m| m.as_str()).map(str::to_owned));
        if pdu.kind != TimelineEventType::RoomMember
            || found.as_deref() != Some(membership)
            || pdu.state_key.as_deref() != Some(pdu.sender.as_str())
        {
            return Err(Error::bad_json(format!("Not a {membership} event")));
        }
        if pdu.sender.server_name() != origin {
            return Err(Error::forbidden("A server may only send its own users' memberships"));
        }
        let forward: Vec<String> = self
            .remote_servers(room_id)
            .await?
            .iter()
            .filter(|s| **s != *origin)
            .map(|s| s.to_string())
            .collect();
        let refused = || Error::forbidden(format!("The {membership} is not allowed"));
        match self.append_remote(pdu, &version, None, forward).await? {
            RemoteOutcome::Stored(EventStatus::Timeline) | RemoteOutcome::Known => {}
            RemoteOutcome::Missing(_) => {
                return Err(Error::bad_json(format!(
                    "The {membership} refers to events this server does not have"
                )));
            }
            RemoteOutcome::Stored(_) => return Err(refused()),
        }
        let stored =
            self.store.get_event(event_id).await?.ok_or_else(|| Error::internal("event not stored"))?;
        if stored.status != EventStatus::Timeline {
            return Err(refused());
        }
        Ok((version, stored, cosign))
    }

    /// Whether a user of this server is joined to the room.
    pub(super) async fn has_local_members(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self.store.room_members(room_id).await?.iter().any(|(membership, event)| {
            membership == "join"
                && event
                    .state_key
                    .as_deref()
                    .and_then(|k| UserId::parse(k).ok())
                    .is_some_and(|u| u.server_name() == self.server_name)
        }))
    }

    /// `POST /join/{roomIdOrAlias}` and `/rooms/{roomId}/join`: a local
    /// join when a user of this server is in the room, else a join
    /// through `via`, the inviter's server and the servers an alias names
    /// (or, when there are none, the room ID's own server, for versions
    /// before 12), trying each in turn. Returns the room's ID.
    pub async fn join_anywhere(
        &self,
        who: &Identity,
        room: &ruma::RoomOrAliasId,
        via: &[OwnedServerName],
        reason: Option<&str>,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<OwnedRoomId> {
        let (room_id, alias_servers) = self.resolve_anywhere(room).await?;
        let known = self.version_if_known(&room_id).await?.is_some();
        let joined_here = known && self.has_local_members(&room_id).await?;
        let invited =
            self.store.membership(&room_id, &who.user_id).await?.is_some_and(|(m, _)| m == "invite");
        let mut candidates: Vec<OwnedServerName> = via.to_vec();
        if known && (joined_here || (invited && self.remote_servers(&room_id).await?.is_empty())) {
            match self.join(who, &room_id, reason, extra.clone()).await {
                // A restricted room no user here may admit the user to:
                // a server in the room whose users may, through them.
                Err(Error::Matrix { kind: ErrorKind::UnableToAuthorizeJoin, .. }) if joined_here => {
                    candidates.extend(self.remote_servers(&room_id).await?.iter().cloned());
                }
                other => return other.map(|_| room_id),
            }
        }
        // An invite held out of band: its sender's server is in the room.
        if let Some(invite) = self.out_of_band_membership(&room_id, &who.user_id).await?
            && let Ok(inviter) = UserId::parse(&invite.sender)
        {
            candidates.push(inviter.server_name().to_owned());
        }
        candidates.extend(alias_servers);
        candidates.retain(|s| *s != self.server_name);
        // The room ID's own server (before version 12) only when nothing
        // else is named: servers the client names are the ones it trusts.
        if candidates.is_empty()
            && let Some(server) = room_id.server_name()
        {
            candidates.push(server.to_owned());
        }
        candidates.retain(|s| *s != self.server_name);
        let mut seen = HashSet::new();
        candidates.retain(|s| seen.insert(s.clone()));
        if candidates.is_empty() {
            if known {
                self.join(who, &room_id, reason, extra).await?;
                return Ok(room_id);
            }
            return Err(Error::not_found("Unknown room: no server to join it through"));
        }
        let mut last = None;
        for server in candidates.iter().take(10) {
            match self.join_through(who, &room_id, server, reason, &extra).await {
                Ok(()) => return Ok(room_id),
                Err(e @ Error::Unavailable { .. }) => return Err(e),
                Err(e) => {
                    tracing::info!(room = %room_id, %server, error = %e, "join through this server failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::not_found("Unknown room")))
    }

    /// Joins `who` to `room_id` through `server` (`make_join`, `send_join`).
    async fn join_through(
        &self,
        who: &Identity,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        let remote = &self.federation.remote;
        let supported: Vec<RoomVersionId> =
            tessera_core::room_versions::supported().into_iter().map(|(v, _)| v).collect();
        let answer = remote
            .make_join(server, room_id, &who.user_id, supported)
            .await
            .map_err(|e| remote_failure(server, e))?;
        let version = answer.room_version.unwrap_or(RoomVersionId::V1);
        let mut content = self.profile_content(&who.user_id).await?;
        if let serde_json::Value::Object(fields) = &mut content {
            for (key, value) in extra {
                if !matches!(
                    key.as_str(),
                    "membership" | "third_party_signed" | "join_authorised_via_users_server"
                ) {
                    fields.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let (join, json) =
            self.complete_template(server, room_id, &who.user_id, "join", &version, &answer.event, content)?;
        let answer = remote
            .send_join(server, room_id, &join.event_id, json)
            .await
            .map_err(|e| remote_failure(server, e))?;

        // The resident server's copy, if it co-signed the join (restricted rooms).
        let join = match &answer.event {
            Some(signed) => {
                let object: CanonicalJsonObject =
                    serde_json::from_str(signed.get()).map_err(|e| bad_gateway(e.to_string()))?;
                let signed = crate::federation::verify_pdu(
                    &self.federation.server_keys,
                    object,
                    Some(room_id),
                    &version,
                )
                .await
                .map_err(|e| bad_gateway(format!("{server} sent a bad signed join: {e}")))?;
                if signed.event_id != join.event_id {
                    return Err(bad_gateway(format!("{server} sent back another join event")));
                }
                signed
            }
            None => join,
        };
        let create = answer.state.iter().find_map(|json| {
            let event: serde_json::Value = serde_json::from_str(json.get()).ok()?;
            (event["type"] == "m.room.create" && event["state_key"] == "")
                .then(|| event["sender"].as_str().and_then(|s| UserId::parse(s).ok()))
                .flatten()
        });
        let create = create
            .ok_or_else(|| bad_gateway(format!("{server} sent a room state without its create event")))?;
        match self.store.create_room(room_id, &version, &create, false).await {
            Ok(()) | Err(tessera_storage::StorageError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Already in the room (a restricted join no user here could
        // admit): the join follows events held here, on their state.
        let given = match self.has_local_members(room_id).await?
            && self
                .store
                .get_events(&join.prev_events.iter().map(|id| id.to_string()).collect::<Vec<_>>())
                .await?
                .len()
                == join.prev_events.len()
        {
            true => None,
            false => Some(
                self.store_received_state(server, room_id, &version, &answer.state, &answer.auth_chain)
                    .await?,
            ),
        };
        match self.append_remote(join, &version, given, Vec::new()).await? {
            RemoteOutcome::Stored(EventStatus::Timeline) | RemoteOutcome::Known => Ok(()),
            RemoteOutcome::Missing(ids) => {
                Err(bad_gateway(format!("{server} did not send {} auth events of the join", ids.len())))
            }
            RemoteOutcome::Stored(_) => Err(Error::forbidden("The room's rules refuse the join")),
        }
    }

    /// Completes the template of `user`'s membership that `server` made
    /// (`make_join`, `make_leave`, `make_knock`): checked to be that
    /// user's `membership` in this room, given `content` (with, for a
    /// join, the authoriser the template names), the
    /// time, and this server's hashes and signature. Returns the event and
    /// its JSON to send.
    #[allow(clippy::too_many_arguments)] // the template's coordinates, each checked
    pub(super) fn complete_template(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        user: &UserId,
        membership: &str,
        version: &RoomVersionId,
        template: &RawJsonValue,
        mut content: serde_json::Value,
    ) -> Result<(Pdu, Box<RawJsonValue>)> {
        let rules = rules_for(version).map_err(event_error)?;
        let mut event: CanonicalJsonObject = serde_json::from_str(template.get())
            .map_err(|e| bad_gateway(format!("{server} sent a malformed template: {e}")))?;
        let text = |event: &CanonicalJsonObject, key: &str| match event.get(key) {
            Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let template_content = match event.get("content") {
            Some(CanonicalJsonValue::Object(content)) => content.clone(),
            _ => Default::default(),
        };
        let asked = matches!(
            template_content.get("membership"),
            Some(CanonicalJsonValue::String(m)) if m == membership
        );
        if text(&event, "type").as_deref() != Some("m.room.member")
            || text(&event, "sender").as_deref() != Some(user.as_str())
            || text(&event, "state_key").as_deref() != Some(user.as_str())
            || text(&event, "room_id").as_deref() != Some(room_id.as_str())
            || !asked
        {
            return Err(bad_gateway(format!("{server} sent a template for something else")));
        }
        if membership == "join"
            && let Some(CanonicalJsonValue::String(authoriser)) =
                template_content.get("join_authorised_via_users_server")
        {
            content["join_authorised_via_users_server"] = authoriser.clone().into();
        }
        content["membership"] = membership.into();
        let content = CanonicalJsonValue::try_from(content).map_err(|e| Error::bad_json(e.to_string()))?;
        event.insert("content".into(), content);
        let now = i64::try_from(u64::from(MilliSecondsSinceUnixEpoch::now().0)).unwrap_or(i64::MAX);
        event.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(now.try_into().unwrap_or_default()),
        );
        event.insert("origin".into(), CanonicalJsonValue::String(self.server_name.to_string()));
        for key in ["signatures", "hashes", "unsigned", "event_id"] {
            event.remove(key);
        }
        if rules.event_id_format == EventIdFormatVersion::V1 {
            event.insert(
                "event_id".into(),
                CanonicalJsonValue::String(EventId::new_v1(&self.server_name).to_string()),
            );
        }
        self.signing_key.hash_and_sign_event(&mut event, &rules.redaction).map_err(event_error)?;
        let pdu = Pdu::from_remote_json(event.clone(), Some(room_id), &rules).map_err(event_error)?;
        let json = serde_json::value::to_raw_value(&event).map_err(Error::internal)?;
        Ok((pdu, json))
    }
}

pub(super) fn raw(json: &str) -> Result<Box<RawJsonValue>> {
    RawJsonValue::from_string(json.to_owned()).map_err(Error::internal)
}

pub(super) fn bad_gateway(message: String) -> Error {
    Error::new(502, ErrorKind::Unknown, message)
}

/// A remote server's refusal or failure, for the client: its own error
/// where it answered one (403, 404, …), else 502.
pub(super) fn remote_failure(server: &ServerName, e: crate::federation::RemoteError) -> Error {
    use crate::federation::RemoteError;
    match e {
        RemoteError::Status { status, body, .. } if (400..500).contains(&status) => {
            let errcode: Option<String> = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("errcode").and_then(|c| c.as_str()).map(str::to_owned));
            match errcode.as_deref() {
                Some("M_FORBIDDEN") => Error::forbidden(format!("{server} refused")),
                Some("M_INCOMPATIBLE_ROOM_VERSION") | Some("M_UNSUPPORTED_ROOM_VERSION") => Error::new(
                    400,
                    ErrorKind::UnsupportedRoomVersion,
                    format!("{server} says the room's version is not supported here"),
                ),
                _ => Error::not_found(format!("{server} does not know the room")),
            }
        }
        other => bad_gateway(format!("{server} could not be asked: {other}")),
    }
}
