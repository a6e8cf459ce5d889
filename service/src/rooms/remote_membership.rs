//! Memberships across servers besides joins (`joins`): invites both ways
//! (`/invite` v2), leaving (`make_leave` / `send_leave` v2) and knocking
//! (`make_knock` / `send_knock`), as the resident server and as the
//! server of the user; and room aliases of other servers
//! (`/query/directory`).
//!
//! A local user's membership in a room this server takes no part in (an
//! invite received, a knock sent, and their rejection or rescinding) is
//! stored out of band: the event as an outlier, with the user's
//! membership, so their sync shows it; the room's stripped state that
//! came with it is kept in the event's `unsigned`.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#inviting-to-a-room>,
//! <https://spec.matrix.org/v1.16/server-server-api/#leaving-rooms-rejecting-invites>,
//! <https://spec.matrix.org/v1.16/server-server-api/#knocking-upon-a-room>.

use std::collections::HashSet;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedRoomId,
    OwnedServerName, RoomAliasId, RoomId, RoomOrAliasId, RoomVersionId, ServerName, UserId,
    api::{
        error::ErrorKind,
        federation::membership::{RawStrippedState, create_invite},
    },
    events::TimelineEventType,
    room_version_rules::EventIdFormatVersion,
};
use serde_json::{Value, json, value::RawValue as RawJsonValue};
use tessera_core::{EventTemplate, Pdu, rules_for};
use tessera_storage::{EventStatus, StoredEvent};

use super::{
    Rooms,
    append::event_error,
    joins::{bad_gateway, raw, remote_failure},
    remote::RemoteOutcome,
};
use crate::{Error, Result, auth::Identity};

/// The state events that tell someone outside a room what it is: shown
/// with an invite or a knock (the spec's recommended stripped state).
pub(crate) const OUTSIDER_STATE: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// How many of a room's servers a leave or knock is tried through.
const MAX_CANDIDATES: usize = 10;

impl Rooms {
    /// The room's state for someone outside it, as PDUs (what an invite
    /// or a knock carries over federation), with `member`'s member event
    /// (the inviter's).
    async fn outsider_state(
        &self,
        room_id: &RoomId,
        member: Option<&UserId>,
    ) -> Result<Vec<Box<RawJsonValue>>> {
        let mut events = Vec::new();
        for kind in OUTSIDER_STATE {
            if let Some(event) = self.store.current_state_event(room_id, kind, "").await? {
                events.push(raw(&event.json)?);
            }
        }
        if let Some(member) = member
            && let Some(event) =
                self.store.current_state_event(room_id, "m.room.member", member.as_str()).await?
        {
            events.push(raw(&event.json)?);
        }
        Ok(events)
    }

    /// Stores `pdu`, a local user's membership in a room this server takes
    /// no part in, out of band (see the module's comment). `room_state`:
    /// the room's stripped state that came with it, kept in `unsigned`
    /// under the given key (`invite_room_state`, `knock_room_state`).
    async fn store_out_of_band(
        &self,
        pdu: &Pdu,
        membership: &str,
        room_state: Option<(&str, Vec<Value>)>,
    ) -> Result<()> {
        let user = pdu
            .state_key
            .as_deref()
            .and_then(|key| UserId::parse(key).ok())
            .ok_or_else(|| Error::internal("a member event without a user"))?;
        if self.store.get_event(&pdu.event_id).await?.is_some() {
            return Ok(());
        }
        let mut json = serde_json::to_value(&pdu.json).map_err(Error::internal)?;
        if let Some((key, state)) = room_state {
            json["unsigned"] = json!({ key: state });
        }
        let json = json.to_string();
        let event_type = pdu.kind.to_string();
        let position = self.streams.reserve().await?;
        self.member_changes.record(user.as_str(), position.position);
        self.room_member_changes.record(pdu.room_id.as_str(), position.position);
        let new = tessera_storage::NewEvent {
            stream_ordering: position.position,
            event_id: &pdu.event_id,
            room_id: &pdu.room_id,
            sender: &pdu.sender,
            event_type: &event_type,
            state_key: pdu.state_key.as_deref(),
            depth: i64::try_from(pdu.depth).unwrap_or(i64::MAX),
            origin_server_ts: i64::try_from(u64::from(pdu.origin_server_ts.0)).unwrap_or(i64::MAX),
            json: &json,
            prev_events: &pdu.prev_events,
            state_before: tessera_storage::state::EMPTY,
            membership: Some((user.as_str(), membership)),
            txn: None,
            redaction: None,
            relation: None,
            push_actions: &[],
            status: EventStatus::Outlier,
            current_state: None,
            destinations: &[],
            historical: false,
            after_gap: false,
        };
        self.store.append_event(new).await?;
        drop(position);
        self.notifier.user_changed(&user);
        Ok(())
    }

    /// `PUT /invite/{roomId}/{eventId}` (v2) from `origin`: an invite of a
    /// user of this server, checked as the spec lists, signed by this
    /// server and given back. Where no user of this server is in the room
    /// (so the event will not come through `/send`), it is stored out of
    /// band with the room's stripped state, and the user's sync shows it.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        version: &RoomVersionId,
        event: &RawJsonValue,
        room_state: &[RawStrippedState],
    ) -> Result<Box<RawJsonValue>> {
        let Ok(rules) = rules_for(version) else {
            return Err(Error::new(
                400,
                ErrorKind::IncompatibleRoomVersion(ruma::api::error::IncompatibleRoomVersionErrorData::new(
                    version.clone(),
                )),
                format!("Room version {version} is not supported here"),
            ));
        };
        let held = self.version_if_known(room_id).await?.is_some();
        if held {
            self.check_server_acl(room_id, origin).await?;
        }
        let invalid = |message: String| Error::invalid_param(message);
        let mut object: CanonicalJsonObject =
            serde_json::from_str(event.get()).map_err(|e| invalid(format!("not a PDU: {e}")))?;
        let pdu = crate::federation::verify_pdu(
            &self.federation.server_keys,
            object.clone(),
            Some(room_id),
            version,
        )
        .await
        .map_err(|e| invalid(format!("the invite does not verify: {e}")))?;
        let membership = pdu
            .content_as::<Value>()
            .ok()
            .and_then(|c| c.get("membership").and_then(Value::as_str).map(str::to_owned));
        let target = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok());
        if pdu.event_id != event_id {
            return Err(invalid("The event ID does not match the event".into()));
        }
        if pdu.kind != TimelineEventType::RoomMember || membership.as_deref() != Some("invite") {
            return Err(invalid("Not an invite".into()));
        }
        if pdu.sender.server_name() != origin {
            return Err(invalid("The inviter is not a user of the asking server".into()));
        }
        let Some(target) = target.filter(|t| t.server_name() == self.server_name) else {
            return Err(invalid("The invited user is not a user of this server".into()));
        };
        if self.store.get_profile(&target).await?.is_none() {
            return Err(Error::not_found("No such user"));
        }
        let mut stripped = Vec::new();
        let mut has_create = false;
        for entry in room_state {
            let Some(value) = stripped_entry(entry) else {
                return Err(invalid("An entry of invite_room_state is not an event".into()));
            };
            if value.get("room_id").is_some_and(|r| r != room_id.as_str()) {
                return Err(invalid("An entry of invite_room_state is from another room".into()));
            }
            has_create |= value["type"] == "m.room.create";
            stripped.push(strip(value));
        }
        if !has_create {
            // The spec's SHOULD from version 12 on; servers and test suites
            // still send invites without it, so they are taken.
            tracing::info!(room = %room_id, %origin, "an invite without m.room.create in its stripped state");
        }
        // Signed by this server too; the hashes (checked above) stay.
        let hashes = object.get("hashes").cloned();
        self.signing_key.hash_and_sign_event(&mut object, &rules.redaction).map_err(event_error)?;
        if object.get("hashes") != hashes.as_ref() {
            return Err(invalid("The invite's content hash is wrong".into()));
        }
        let signed = Pdu::from_remote_json(object.clone(), Some(room_id), &rules).map_err(event_error)?;
        if !(held && self.has_local_members(room_id).await?) {
            self.store_out_of_band(&signed, "invite", Some(("invite_room_state", stripped))).await?;
        }
        serde_json::value::to_raw_value(&object).map_err(Error::internal)
    }

    /// An invite of `target`, a user of another server, by `sender`: the
    /// event is built at the room's tip, signed by the target's server
    /// (`/invite` v2, with the room's stripped state), then appended with
    /// both signatures and sent to the room's servers and the target's.
    pub(super) async fn invite_remote(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        content: Value,
    ) -> Result<()> {
        let version = self.room_version(room_id).await?;
        let template = EventTemplate::state("m.room.member", target.as_str(), content);
        let invite = self.prepare(Some(room_id), &version, sender, &template).await?.pdu;
        let room_state = self.outsider_state(room_id, Some(sender)).await?;
        let request = create_invite::v2::Request::new(
            room_id.to_owned(),
            invite.event_id.clone(),
            version.clone(),
            serde_json::value::to_raw_value(&invite.json).map_err(Error::internal)?,
            room_state.into_iter().map(RawStrippedState::Pdu).collect(),
        );
        let server = target.server_name();
        let answer =
            self.federation.remote.invite(server, request).await.map_err(|e| remote_failure(server, e))?;
        // Only the invited server's signature is taken from its answer.
        let answer: CanonicalJsonObject =
            serde_json::from_str(answer.get()).map_err(|e| bad_gateway(format!("{server}: {e}")))?;
        let theirs = match answer.get("signatures") {
            Some(CanonicalJsonValue::Object(signatures)) => signatures.get(server.as_str()).cloned(),
            _ => None,
        };
        let mut signed = invite.json.clone();
        if let (Some(theirs), Some(CanonicalJsonValue::Object(signatures))) =
            (theirs, signed.get_mut("signatures"))
        {
            signatures.insert(server.to_string(), theirs);
        }
        let signed =
            crate::federation::verify_pdu(&self.federation.server_keys, signed, Some(room_id), &version)
                .await
                .map_err(|e| bad_gateway(format!("{server} signed the invite wrongly: {e}")))?;
        let destinations = self.destinations_of(&signed).await?;
        match self.append_remote(signed, &version, None, destinations).await? {
            RemoteOutcome::Stored(EventStatus::Timeline) | RemoteOutcome::Known => Ok(()),
            RemoteOutcome::Stored(_) => Err(Error::forbidden("The room's rules refuse the invite")),
            RemoteOutcome::Missing(_) => Err(Error::internal("the invite's own room events are missing")),
        }
    }

    /// `GET /make_leave/{roomId}/{userId}` from `origin`.
    pub async fn make_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<(RoomVersionId, Value)> {
        self.membership_template(origin, room_id, user_id, "leave", None).await
    }

    /// `PUT /send_leave/{roomId}/{eventId}` (v2) from `origin`.
    pub async fn send_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawJsonValue,
    ) -> Result<()> {
        self.accept_membership(origin, room_id, event_id, pdu, "leave").await.map(|_| ())
    }

    /// `GET /make_knock/{roomId}/{userId}` from `origin`.
    pub async fn make_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[RoomVersionId],
    ) -> Result<(RoomVersionId, Value)> {
        self.membership_template(origin, room_id, user_id, "knock", Some(versions)).await
    }

    /// `PUT /send_knock/{roomId}/{eventId}` from `origin`: the room's state
    /// for the knocker, as PDUs.
    pub async fn send_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawJsonValue,
    ) -> Result<Vec<RawStrippedState>> {
        self.accept_membership(origin, room_id, event_id, pdu, "knock").await?;
        Ok(self.outsider_state(room_id, None).await?.into_iter().map(RawStrippedState::Pdu).collect())
    }

    /// Whether `user`'s membership of the room is held out of band (see
    /// the module's comment): its event, if so.
    pub(super) async fn out_of_band_membership(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Option<StoredEvent>> {
        Ok(self.store.membership_event(room_id, user).await?.filter(|e| e.status == EventStatus::Outlier))
    }

    /// A PDU of a room this server takes no part in: taken only when it
    /// ends a local user's invite or knock held out of band (the inviter
    /// rescinds the invite, the knock is refused, the user is banned),
    /// and stored out of band likewise; refused otherwise.
    pub(super) async fn receive_out_of_band_membership(
        &self,
        object: CanonicalJsonObject,
        room_id: &RoomId,
    ) -> Result<ruma::OwnedEventId> {
        let not_in_room = || Error::not_found("This server is not in the room");
        let text = |key: &str| match object.get(key) {
            Some(CanonicalJsonValue::String(value)) => Some(value.clone()),
            _ => None,
        };
        let membership = match object.get("content") {
            Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
                Some(CanonicalJsonValue::String(membership)) => membership.clone(),
                _ => return Err(not_in_room()),
            },
            _ => return Err(not_in_room()),
        };
        let user = text("state_key").and_then(|key| UserId::parse(key).ok());
        let (Some(user), Some("m.room.member"), "leave" | "ban") =
            (user, text("type").as_deref(), membership.as_str())
        else {
            return Err(not_in_room());
        };
        if user.server_name() != self.server_name {
            return Err(not_in_room());
        }
        let Some(current) = self.out_of_band_membership(room_id, &user).await? else {
            return Err(not_in_room());
        };
        // Only the inviter may rescind an invite this way (this server
        // cannot check anyone else's power in the room), as on Synapse.
        let is_invite = current.content().and_then(|c| c.get("membership")).is_some_and(|m| m == "invite");
        if is_invite && text("sender").as_deref() != Some(current.sender.as_str()) {
            return Err(Error::forbidden(
                "Only the inviter may rescind an invite to a room this server is not in",
            ));
        }
        let version = out_of_band_version(&current);
        let pdu =
            crate::federation::verify_pdu(&self.federation.server_keys, object, Some(room_id), &version)
                .await
                .map_err(event_error)?;
        self.store_out_of_band(&pdu, &membership, None).await?;
        Ok(pdu.event_id)
    }

    /// A local user leaves a room this server takes no part in (rejects
    /// an invite, rescinds a knock): through the room's servers
    /// (`make_leave`, `send_leave`), the inviter's first. When none of
    /// them answers, the leave is signed here alone and kept here, so the
    /// user is rid of the invite even while the inviting server is down.
    pub(super) async fn leave_remote(
        &self,
        who: &UserId,
        room_id: &RoomId,
        current: &StoredEvent,
        reason: Option<&str>,
    ) -> Result<()> {
        let mut candidates: Vec<OwnedServerName> = Vec::new();
        if let Ok(sender) = UserId::parse(&current.sender) {
            candidates.push(sender.server_name().to_owned());
        }
        candidates.extend(room_id.server_name().map(ToOwned::to_owned));
        candidates.extend(stripped_state_of(current).iter().filter_map(|event| {
            event["sender"].as_str().and_then(|s| UserId::parse(s).ok()).map(|u| u.server_name().to_owned())
        }));
        let candidates = distinct_others(candidates, &self.server_name);
        let mut content = json!({});
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        for server in candidates.iter().take(MAX_CANDIDATES) {
            match self.leave_through(who, room_id, server, content.clone()).await {
                Ok(leave) => return self.store_out_of_band(&leave, "leave", None).await,
                Err(e @ Error::Unavailable { .. }) => return Err(e),
                Err(e) => {
                    tracing::info!(room = %room_id, %server, error = %e, "leave through this server failed")
                }
            }
        }
        let leave = self.local_leave(who, room_id, current, content)?;
        self.store_out_of_band(&leave, "leave", None).await
    }

    /// `who` leaves `room_id` through `server` (`make_leave`, `send_leave`).
    async fn leave_through(
        &self,
        who: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        content: Value,
    ) -> Result<Pdu> {
        let remote = &self.federation.remote;
        let answer = remote.make_leave(server, room_id, who).await.map_err(|e| remote_failure(server, e))?;
        let version = answer.room_version.unwrap_or(RoomVersionId::V1);
        let (leave, json) =
            self.complete_template(server, room_id, who, "leave", &version, &answer.event, content)?;
        remote
            .send_leave(server, room_id, &leave.event_id, json)
            .await
            .map_err(|e| remote_failure(server, e))?;
        Ok(leave)
    }

    /// A leave that follows `current` (the invite or knock), signed by this
    /// server alone: for when no server of the room can be reached.
    fn local_leave(
        &self,
        who: &UserId,
        room_id: &RoomId,
        current: &StoredEvent,
        mut content: Value,
    ) -> Result<Pdu> {
        let version = out_of_band_version(current);
        let rules = rules_for(&version).map_err(event_error)?;
        content["membership"] = "leave".into();
        let now = u64::from(MilliSecondsSinceUnixEpoch::now().0);
        let mut event = json!({
            "type": "m.room.member",
            "room_id": room_id,
            "sender": who,
            "state_key": who,
            "content": content,
            "origin": self.server_name,
            "origin_server_ts": now,
            "depth": current.depth.saturating_add(1),
            "prev_events": [current.event_id],
            "auth_events": [current.event_id],
        });
        if rules.event_id_format == EventIdFormatVersion::V1 {
            event["event_id"] = EventId::new_v1(&self.server_name).to_string().into();
            event["prev_events"] = json!([[current.event_id, {}]]);
            event["auth_events"] = json!([[current.event_id, {}]]);
        }
        let mut event = match CanonicalJsonValue::try_from(event) {
            Ok(CanonicalJsonValue::Object(object)) => object,
            _ => return Err(Error::internal("a leave that is not canonical JSON")),
        };
        self.signing_key.hash_and_sign_event(&mut event, &rules.redaction).map_err(event_error)?;
        Pdu::from_remote_json(event, Some(room_id), &rules).map_err(event_error)
    }

    /// `POST /knock/{roomIdOrAlias}`: a knock here when a user of this
    /// server is in the room, else through `via` and the servers the
    /// alias names (or, when there are none, the room ID's own server),
    /// trying each in turn; the knock is then held out of band with the
    /// room's stripped state. Returns the room's ID.
    pub async fn knock_anywhere(
        &self,
        who: &Identity,
        room: &RoomOrAliasId,
        via: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        let (room_id, mut candidates) = self.resolve_anywhere(room).await?;
        if self.version_if_known(&room_id).await?.is_some() && self.has_local_members(&room_id).await? {
            self.knock(who, &room_id, reason).await?;
            return Ok(room_id);
        }
        candidates.splice(0..0, via.iter().cloned());
        let mut candidates = distinct_others(candidates, &self.server_name);
        if candidates.is_empty() {
            candidates = distinct_others(
                room_id.server_name().into_iter().map(ToOwned::to_owned).collect(),
                &self.server_name,
            );
        }
        if candidates.is_empty() {
            return Err(Error::not_found("Unknown room: no server to knock through"));
        }
        let mut content = self.profile_content(&who.user_id).await?;
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let mut last = None;
        for server in candidates.iter().take(MAX_CANDIDATES) {
            match self.knock_through(&who.user_id, &room_id, server, content.clone()).await {
                Ok(()) => return Ok(room_id),
                Err(e @ Error::Unavailable { .. }) => return Err(e),
                Err(e) => {
                    tracing::info!(room = %room_id, %server, error = %e, "knock through this server failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::not_found("Unknown room")))
    }

    /// `who` knocks on `room_id` through `server` (`make_knock`,
    /// `send_knock`).
    async fn knock_through(
        &self,
        who: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        content: Value,
    ) -> Result<()> {
        let remote = &self.federation.remote;
        let supported: Vec<RoomVersionId> =
            tessera_core::room_versions::supported().into_iter().map(|(v, _)| v).collect();
        let answer = remote
            .make_knock(server, room_id, who, supported)
            .await
            .map_err(|e| remote_failure(server, e))?;
        let (knock, json) = self.complete_template(
            server,
            room_id,
            who,
            "knock",
            &answer.room_version,
            &answer.event,
            content,
        )?;
        let answer = remote
            .send_knock(server, room_id, &knock.event_id, json)
            .await
            .map_err(|e| remote_failure(server, e))?;
        let mut stripped = Vec::new();
        for entry in &answer.knock_room_state {
            if let Some(value) =
                stripped_entry(entry).filter(|v| v.get("room_id").is_none_or(|r| r == room_id.as_str()))
            {
                stripped.push(strip(value));
            }
        }
        self.store_out_of_band(&knock, "knock", Some(("knock_room_state", stripped))).await
    }

    /// A room ID, or an alias of this server or another (asked over
    /// federation): the room's ID and the servers the alias names.
    pub async fn resolve_anywhere(
        &self,
        room: &RoomOrAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        match <&RoomId>::try_from(room) {
            Ok(room_id) => Ok((room_id.to_owned(), Vec::new())),
            Err(alias) => self.get_alias(alias).await,
        }
    }

    /// An alias of another server, asked of it (`/query/directory`).
    pub(super) async fn remote_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        match self.federation.remote.query_alias(alias).await {
            Ok(answer) => Ok((answer.room_id, answer.servers)),
            Err(e) => {
                tracing::info!(%alias, error = %e, "remote alias lookup failed");
                Err(Error::not_found(format!("Room alias {alias} not found")))
            }
        }
    }
}

/// One entry of an invite's or knock's room state as JSON (a PDU, or a
/// stripped event from a server before Matrix 1.16); `None` if it is not
/// an object.
fn stripped_entry(entry: &RawStrippedState) -> Option<Value> {
    let value: Value = match entry {
        RawStrippedState::Pdu(pdu) => serde_json::from_str(pdu.get()).ok()?,
        #[allow(deprecated)] // still sent by servers before Matrix 1.16
        RawStrippedState::Stripped(stripped) => serde_json::from_str(stripped.json().get()).ok()?,
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    value.is_object().then_some(value)
}

/// The stripped state kept with an out-of-band membership.
fn stripped_state_of(event: &StoredEvent) -> Vec<Value> {
    let json: Value = serde_json::from_str(&event.json).unwrap_or_default();
    let unsigned = &json["unsigned"];
    let state = unsigned.get("invite_room_state").or_else(|| unsigned.get("knock_room_state"));
    state.and_then(Value::as_array).cloned().unwrap_or_default()
}

/// An event as a client sees it in stripped state: type, state key,
/// content and sender; `m.room.create` whole (as `sync` shows it).
fn strip(event: Value) -> Value {
    if event["type"] == "m.room.create" {
        return event;
    }
    json!({
        "type": event["type"],
        "state_key": event.get("state_key").cloned().unwrap_or_else(|| "".into()),
        "content": event.get("content").cloned().unwrap_or_else(|| json!({})),
        "sender": event["sender"],
    })
}

/// `servers` in order, each once, without this one.
fn distinct_others(servers: Vec<OwnedServerName>, this: &ServerName) -> Vec<OwnedServerName> {
    let mut seen = HashSet::new();
    servers.into_iter().filter(|s| *s != *this && seen.insert(s.clone())).collect()
}

/// The version of a room whose only event held here is a local user's
/// invite or knock: from the stripped create event that came with it
/// (version 10 when it is missing, as most rooms were).
fn out_of_band_version(current: &StoredEvent) -> RoomVersionId {
    stripped_state_of(current)
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .and_then(|create| create["content"]["room_version"].as_str().map(str::to_owned))
        .and_then(|v| RoomVersionId::try_from(v).ok())
        .filter(|v| rules_for(v).is_ok())
        .unwrap_or(RoomVersionId::V10)
}
