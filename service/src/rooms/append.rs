//! The append path: build a local event at the room's tip, authorise it
//! against its auth events and the current state, and store it with a new
//! stream position. Callers hold the room's lock across prepare and persist.

use std::sync::Arc;

use ruma::{
    CanonicalJsonObject, DeviceId, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, RoomVersionId,
    UserId, events::TimelineEventType,
};
use tessera_core::{EventError, EventTemplate, Parents, Pdu, auth, build_event, rules_for};
use tessera_storage::{
    EventStatus, NewEvent, NewRelation, StorageError, StoredEvent, TxnKey, state::StateEntry,
};

use super::Rooms;
use crate::{Error, Result};

/// State event types whose content the server interprets, so a malformed
/// one is refused with 400 `M_BAD_JSON` rather than stored.
const SCHEMA_CHECKED_STATE: [&str; 9] = [
    "m.room.member",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.encryption",
    "m.room.server_acl",
];

/// Maps the core's verdicts to the spec's errors.
pub(crate) fn event_error(e: EventError) -> Error {
    match e {
        EventError::Invalid(message) => Error::bad_json(message),
        EventError::AuthRejected(reason) => Error::forbidden(reason),
        EventError::UnsupportedRoomVersion(version) => Error::new(
            400,
            ruma::api::error::ErrorKind::UnsupportedRoomVersion,
            format!("Room version {version} is not supported"),
        ),
        EventError::TooLarge("event") => Error::too_large("Event is larger than 65536 bytes"),
        EventError::TooLarge(part) => {
            Error::too_large(format!("The event's {part} is longer than 255 bytes"))
        }
    }
}

/// Parses a stored event into a PDU for the room's version.
/// An event's relation to another, from its content's `m.relates_to`.
pub(super) fn relation_of(content: &serde_json::Value) -> Option<NewRelation<'_>> {
    let relates_to = content.get("m.relates_to")?;
    Some(NewRelation {
        relates_to: relates_to.get("event_id")?.as_str()?,
        rel_type: relates_to.get("rel_type")?.as_str()?,
        aggregation_key: relates_to.get("key").and_then(|k| k.as_str()),
    })
}

pub(crate) fn pdu_from_stored(stored: &StoredEvent, version: &RoomVersionId) -> Result<Pdu> {
    let rules = rules_for(version).map_err(event_error)?;
    let json: CanonicalJsonObject =
        serde_json::from_str(&stored.json).map_err(|e| Error::internal(format!("stored event JSON: {e}")))?;
    let room_id = RoomId::parse(&stored.room_id).map_err(Error::internal)?;
    let mut pdu = Pdu::from_json(stored.event_id.clone(), Some(&room_id), json, &rules)
        .map_err(|e| Error::internal(format!("stored event {}: {e}", stored.event_id)))?;
    pdu.rejected = stored.rejected;
    Ok(pdu)
}

/// A room's forward extremities (the next local event's `prev_events`)
/// and the state group after them.
pub(crate) struct Tip {
    extremities: Vec<Pdu>,
    pub(super) state_after: i64,
}

/// A built and authorised event, not yet stored.
pub(crate) struct Prepared {
    pub pdu: Pdu,
    pub(super) version: RoomVersionId,
    pub(super) state_before: i64,
    /// Where it stands ([`EventStatus::Timeline`] for every local event).
    pub(super) status: EventStatus,
    /// For a remote event that leaves the room's state other than the
    /// state after it (a fork resolved, a join through another server):
    /// the room's whole current state, the forward extremities and the
    /// state group standing for that state.
    pub(super) resolved: Option<Resolved>,
    /// Other servers to send it to; `None`: every other server in the
    /// room (a local event).
    pub(super) destinations: Option<Vec<String>>,
    /// Appended without its previous events (see `gaps`).
    pub(super) after_gap: bool,
}

/// See [`Prepared::resolved`].
pub(crate) struct Resolved {
    /// The room's whole current state, or `None` when it stays as it was
    /// (a message on one side of a fork whose states agree).
    pub current_state: Option<Vec<StateEntry>>,
    pub extremities: Vec<Pdu>,
    pub group: i64,
}

impl Rooms {
    /// Builds `template` as the next event of the room (or the first, for a
    /// create event with `room_id` `None` in room version 12) and runs the
    /// authorization rules on it.
    pub(crate) async fn prepare(
        &self,
        room_id: Option<&RoomId>,
        version: &RoomVersionId,
        sender: &UserId,
        template: &EventTemplate,
    ) -> Result<Prepared> {
        let rules = rules_for(version).map_err(event_error)?;
        let tip = match room_id {
            Some(room_id) => self.tip(room_id, version).await?,
            None => Arc::new(Tip { extremities: Vec::new(), state_after: tessera_storage::state::EMPTY }),
        };
        let (extremities, state_before) = (&tip.extremities, tip.state_after);
        // Local appends are serialised, so a room has one extremity until
        // federation brings forks (then: state resolution).
        let single_extremity = extremities.len() == 1;
        if extremities.is_empty() && template.kind != TimelineEventType::RoomCreate {
            return Err(Error::not_found("Unknown room"));
        }
        // The rules would refuse a second create event as forbidden; it is
        // the client's mistake (MSC4291: a create event names its room).
        if !extremities.is_empty() && template.kind == TimelineEventType::RoomCreate {
            return Err(Error::bad_json("A room has exactly one m.room.create event, sent at its creation"));
        }

        let content =
            serde_json::value::to_raw_value(&template.content).map_err(|e| Error::bad_json(e.to_string()))?;
        let types = auth::auth_types(&template.kind, sender, template.state_key.as_deref(), &content, &rules)
            .map_err(event_error)?;
        // The state the rules consult: the auth types, plus the create event
        // (which room version 12 leaves out of auth_events).
        let mut state: Vec<Pdu> = Vec::with_capacity(types.len() + 1);
        if let Some(room_id) = room_id {
            let mut keys: Vec<(String, String)> = Vec::with_capacity(types.len() + 1);
            for (kind, key) in types
                .iter()
                .chain(std::iter::once(&(ruma::events::StateEventType::RoomCreate, String::new())))
            {
                let key = (kind.to_string(), key.clone());
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            if single_extremity {
                // The state the event is built on, from the state cache:
                // with one extremity it is the room's current state.
                let at = self.store.state_at_group(state_before).await?;
                let ids: Vec<String> = keys.iter().filter_map(|key| at.get(key).cloned()).collect();
                for stored in self.store.get_events(&ids).await? {
                    state.push(pdu_from_stored(&stored, version)?);
                }
            } else {
                for (kind, key) in &keys {
                    if let Some(stored) = self.store.current_state_event(room_id, kind, key).await? {
                        state.push(pdu_from_stored(&stored, version)?);
                    }
                }
            }
        }
        let is_auth_type = |p: &Pdu| {
            types
                .iter()
                .any(|(k, s)| k.to_string() == p.kind.to_string() && p.state_key.as_deref() == Some(s))
        };
        let auth_events: Vec<&Pdu> = state.iter().filter(|p| is_auth_type(p)).collect();
        let create = state.iter().find(|p| p.kind == TimelineEventType::RoomCreate);
        let prev: Vec<&Pdu> = extremities.iter().collect();
        let parents = Parents { room_id, prev_events: &prev, auth_events: &auth_events };

        let pdu = build_event(
            template,
            version,
            sender,
            &parents,
            MilliSecondsSinceUnixEpoch::now(),
            &self.signing_key,
        )
        .map_err(event_error)?;
        auth::check_creators_content(&pdu, &rules, create).map_err(event_error)?;
        auth::check_against_auth_events(&pdu, &rules, &auth_events, create).map_err(event_error)?;
        auth::check_against_state(&pdu, &rules, |kind, key| {
            state
                .iter()
                .find(|p| p.kind.to_string() == kind.to_string() && p.state_key.as_deref() == Some(key))
        })
        .map_err(event_error)?;
        Ok(Prepared {
            pdu,
            version: version.clone(),
            state_before,
            status: EventStatus::Timeline,
            resolved: None,
            destinations: None,
            after_gap: false,
        })
    }

    /// Stores a prepared event at a new stream position. Nothing is
    /// acknowledged before this commits.
    pub(crate) async fn persist(
        &self,
        prepared: &Prepared,
        txn: Option<TxnKey<'_>>,
        redaction: Option<(&EventId, &str)>,
    ) -> Result<i64> {
        let pdu = &prepared.pdu;
        let destinations = match &prepared.destinations {
            Some(destinations) => destinations.clone(),
            None => self.destinations_of(pdu).await?,
        };
        let destinations: Vec<&str> = destinations.iter().map(String::as_str).collect();
        if prepared.status != EventStatus::Timeline {
            return self.persist_out_of_timeline(prepared, &destinations).await;
        }
        // The servers in the room may change with a membership (or many,
        // when a fork is resolved): read again after this event.
        let state_replaced = prepared.resolved.as_ref().is_some_and(|r| r.current_state.is_some());
        let _servers_unsettled = (pdu.kind == TimelineEventType::RoomMember || state_replaced)
            .then(|| ForgetServersOnDrop { rooms: self, room: &pdu.room_id });
        let membership = match pdu.kind {
            TimelineEventType::RoomMember => {
                let content: serde_json::Value =
                    pdu.content_as().map_err(|e| Error::bad_json(e.to_string()))?;
                content.get("membership").and_then(|m| m.as_str()).map(str::to_owned)
            }
            _ => None,
        };
        let json = serde_json::to_string(&pdu.json).map_err(Error::internal)?;
        let content: serde_json::Value = pdu.content_as().map_err(|e| Error::bad_json(e.to_string()))?;
        let relation = relation_of(&content);
        let has_relation = relation.is_some();
        let push_actions = self.push_actions(pdu, &prepared.version).await?;
        let position = self.streams.reserve().await?;
        // Everything that must follow the commit is noted before it: a
        // request cancelled (client gone) while the commit is under way
        // must not leave a committed event the change logs, the push
        // audience or the notifier's member sets never heard of. Noting a
        // change that then fails costs one extra read.
        self.changes.record(pdu.room_id.as_str(), position.position);
        if let Some(target) = pdu.state_key.as_deref().filter(|_| membership.is_some()) {
            self.member_changes.record(target, position.position);
            self.room_member_changes.record(pdu.room_id.as_str(), position.position);
        }
        if pdu.state_key.is_some() {
            self.forget_audience(&pdu.room_id);
        }
        let mut members_unsettled = membership
            .is_some()
            .then(|| ForgetMembersOnDrop { notifier: &self.notifier, room: &pdu.room_id });
        // Declared after `position`, so dropped (the room's caches
        // forgotten) before the position is released.
        let mut caches_unsettled = Some(ForgetRoomCachesOnDrop { rooms: self, room: &pdu.room_id });
        let event_type = pdu.kind.to_string();
        let depth = i64::try_from(pdu.depth).unwrap_or(i64::MAX);
        let origin_server_ts = i64::try_from(u64::from(pdu.origin_server_ts.0)).unwrap_or(i64::MAX);
        let new = NewEvent {
            stream_ordering: position.position,
            event_id: &pdu.event_id,
            room_id: &pdu.room_id,
            sender: &pdu.sender,
            event_type: &event_type,
            state_key: pdu.state_key.as_deref(),
            depth,
            origin_server_ts,
            json: &json,
            prev_events: &pdu.prev_events,
            state_before: prepared.state_before,
            membership: pdu.state_key.as_deref().zip(membership.as_deref()),
            txn,
            redaction,
            relation,
            push_actions: &push_actions,
            status: EventStatus::Timeline,
            current_state: prepared.resolved.as_ref().and_then(|r| r.current_state.as_deref()),
            destinations: &destinations,
            historical: false,
            after_gap: prepared.after_gap,
        };
        if prepared.after_gap {
            self.gaps.note(pdu.room_id.as_str(), position.position);
        }
        let appended = self.store.append_event(new).await;
        if prepared.after_gap && appended.is_err() {
            self.gaps.forget(pdu.room_id.as_str(), position.position);
        }
        match appended {
            Ok(state_after) => {
                let stream = position.position;
                // A remote event may arrive after events relating to it.
                let remote = pdu.sender.server_name() != self.server_name;
                let related_before = remote
                    && self
                        .store
                        .aggregation_relations(&[pdu.event_id.to_string()])
                        .await
                        .map_or(true, |relations| !relations.is_empty());
                if has_relation || redaction.is_some() || related_before {
                    self.note_relations_changed();
                }
                let stored = StoredEvent {
                    stream_ordering: stream,
                    event_id: pdu.event_id.clone(),
                    room_id: pdu.room_id.to_string(),
                    sender: pdu.sender.to_string(),
                    event_type,
                    state_key: pdu.state_key.clone(),
                    depth,
                    origin_server_ts,
                    json: json.into(),
                    redacted_by: None,
                    rejected: false,
                    status: EventStatus::Timeline,
                    state_before: prepared.state_before,
                    state_after,
                    txn_device_id: txn.map(|t| t.device_id.to_string()),
                    txn_id: txn.map(|t| t.txn_id.to_owned()),
                    parsed: Default::default(),
                };
                self.recent.push(&pdu.room_id, stored, redaction);
                // A local event followed every extremity (`prepare`), so it
                // is now the room's only one; a remote one says.
                let tip = match &prepared.resolved {
                    Some(resolved) => {
                        if state_replaced {
                            // Many memberships may have changed at once.
                            self.notifier.forget_members(&pdu.room_id);
                        }
                        Tip { extremities: resolved.extremities.clone(), state_after: resolved.group }
                    }
                    None => Tip { extremities: vec![pdu.clone()], state_after },
                };
                crate::remember(
                    &mut self.tips.lock().unwrap_or_else(|p| p.into_inner()),
                    pdu.room_id.clone(),
                    Arc::new(tip),
                );
                self.unread.appended(pdu.room_id.as_str(), stream, &push_actions);
                std::mem::forget(caches_unsettled.take());
                // Settle the position before waking readers: they read up to
                // `persisted_upto`, which now includes this event.
                drop(position);
                let change =
                    pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok()).zip(membership.as_deref());
                match self.notifier.room_changed(&pdu.room_id, change.as_ref().map(|(u, m)| (&**u, *m))).await
                {
                    // The member set is up to date: nothing to forget.
                    Ok(()) => std::mem::forget(members_unsettled.take()),
                    // The event is stored; a missed wake-up only delays delivery
                    // until the waiting request's timeout.
                    Err(e) => tracing::warn!(error = %e, "could not notify the room's members"),
                }
                for destination in &destinations {
                    if let Ok(destination) = <&ruma::ServerName>::try_from(*destination) {
                        self.federation.outbox.wake(destination);
                    }
                }
                Ok(stream)
            }
            Err(StorageError::Conflict(_)) => Err(Error::new(
                409,
                ruma::api::error::ErrorKind::Unknown,
                "This transaction ID was used for another event",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The room's forward extremities and the state after them: from
    /// memory once an append has set them, else from storage (not kept:
    /// a probe may read without the room's lock, and only an append under
    /// it knows the tip cannot move meanwhile).
    pub(super) async fn tip(&self, room_id: &RoomId, version: &RoomVersionId) -> Result<Arc<Tip>> {
        if let Some(tip) = self.tips.lock().unwrap_or_else(|p| p.into_inner()).get(room_id) {
            return Ok(tip.clone());
        }
        let stored = self.store.forward_extremities(room_id).await?;
        let state_after = match &stored[..] {
            [] => tessera_storage::state::EMPTY,
            [only] => only.state_after,
            // A fork: the state after it is the room's current state (its
            // extremities' states resolved when the fork arrived), which
            // gets a group of its own.
            _ => {
                let current = self.current_state_map(room_id).await?;
                let reserved = self.streams.reserve().await?;
                self.store.create_state_snapshot(room_id.as_str(), reserved.position, &current).await?
            }
        };
        let extremities = stored.iter().map(|e| pdu_from_stored(e, version)).collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Tip { extremities, state_after }))
    }

    /// Sends one event into an existing room as `sender`, idempotently per
    /// device, room, event type and transaction ID. Returns the event ID.
    pub async fn send(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        template: &EventTemplate,
        txn: Option<(&DeviceId, &str)>,
    ) -> Result<OwnedEventId> {
        let version = self.room_version(room_id).await?;
        let lock = self.room_lock(room_id);
        let _guard = lock.lock().await;
        let scope = format!("send {room_id} {}", template.kind);
        let txn = txn.map(|(device_id, txn_id)| TxnKey { user_id: sender, device_id, scope: &scope, txn_id });
        let sent = async {
            let prepared = self.prepare(Some(room_id), &version, sender, template).await?;
            self.persist(&prepared, txn, None).await?;
            Ok(prepared.pdu.event_id)
        };
        match sent.await {
            Ok(event_id) => Ok(event_id),
            // A retry: its transaction ID is taken (the insert fails), or
            // the sender may no longer send at all, and either way the
            // original's event ID is the answer. Looked up only on failure,
            // so a first send costs no read for it, and not when the database
            // is unreachable (the lookup would wait for it a second time).
            Err(e @ Error::Unavailable { .. }) => Err(e),
            Err(e) => match txn {
                Some(txn) => match self.store.get_txn_event(txn).await? {
                    Some(existing) => Ok(existing),
                    None => Err(e),
                },
                None => Err(e),
            },
        }
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`: content of the
    /// spec's state event types must have their schema (400 `M_BAD_JSON`).
    /// A tombstone sent this way (an upgrade by hand) carries local members'
    /// push rules to the replacement room, as `/upgrade` does.
    pub async fn send_state(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        mut template: EventTemplate,
    ) -> Result<OwnedEventId> {
        use ruma::events::{AnyStateEventContent, EventContentFromType};
        // Before the schema check: a malformed alias is M_INVALID_PARAM there.
        if template.kind == TimelineEventType::RoomCanonicalAlias {
            self.check_canonical_alias(room_id, &template.content).await?;
        }
        if template.kind == TimelineEventType::RoomMember
            && template.state_key.as_deref().is_none_or(|key| UserId::parse(key).is_err())
        {
            return Err(Error::bad_json("The state key of m.room.member must be a user ID"));
        }
        // A `join_authorised_via_users_server` that names no user means
        // nothing (it matters only on a restricted join, which the server
        // fills in itself): ignored, as the spec's auth rules would.
        if template.kind == TimelineEventType::RoomMember
            && let Some(content) = template.content.as_object_mut()
            && content
                .get("join_authorised_via_users_server")
                .is_some_and(|v| v.as_str().is_none_or(|id| UserId::parse(id).is_err()))
        {
            content.remove("join_authorised_via_users_server");
        }
        // The schema is checked on the content without the join rule's
        // `allow` entries that are not objects (or an `allow` that is not a
        // list): such values are kept as sent and admit nobody (Synapse
        // accepts them the same way).
        let mut checked = template.content.clone();
        if template.kind == TimelineEventType::RoomJoinRules
            && let Some(rules) = checked.as_object_mut()
        {
            match rules.get_mut("allow") {
                Some(serde_json::Value::Array(allow)) => allow.retain(|entry| entry.is_object()),
                Some(_) => {
                    rules.remove("allow");
                }
                None => {}
            }
        }
        let raw = serde_json::value::to_raw_value(&checked).map_err(|e| Error::bad_json(e.to_string()))?;
        // Only the types the server itself reads are held to their schema:
        // others (`m.space.child` with `{}` removes a child, say) are valid
        // in forms ruma's strict types reject.
        if SCHEMA_CHECKED_STATE.contains(&template.kind.to_string().as_str()) {
            AnyStateEventContent::from_parts(&template.kind.to_string(), &raw)
                .map_err(|e| Error::bad_json(format!("Invalid {} content: {e}", template.kind)))?;
        }
        // The same state again from the same sender changes nothing: the
        // current event's ID is the answer, and no new event is made (as
        // Synapse does; clients re-send state when they retry).
        if let Some(key) = template.state_key.as_deref()
            && let Some(current) =
                self.store.current_state_event(room_id, &template.kind.to_string(), key).await?
            && current.sender == sender.as_str()
            && current.content() == Some(&template.content)
        {
            return Ok(current.event_id);
        }
        let event_id = self.send(room_id, sender, &template, None).await?;
        if template.kind == TimelineEventType::RoomTombstone
            && let Some(replacement) =
                template.content.get("replacement_room").and_then(|r| RoomId::parse(r.as_str()?).ok())
        {
            self.carry_push_rules(room_id, &replacement).await;
        }
        Ok(event_id)
    }

    /// The stored event, if it belongs to `room_id`.
    pub(crate) async fn event_in_room(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Option<StoredEvent>> {
        Ok(self.store.get_event(event_id).await?.filter(|e| e.room_id == room_id.as_str()))
    }
}

/// Drops the notifier's member set of a room unless defused with
/// `std::mem::forget`: a membership event whose request ended before the
/// set was updated (an error, or the client went away mid-commit) leaves
/// the set to be reloaded from storage.
struct ForgetMembersOnDrop<'a> {
    notifier: &'a crate::notifier::Notifier,
    room: &'a ruma::RoomId,
}

impl Drop for ForgetMembersOnDrop<'_> {
    fn drop(&mut self) {
        self.notifier.forget_members(self.room);
    }
}

/// Drops the room's cached server list when the append ends (however it
/// ended): it is read again from the memberships after the event.
struct ForgetServersOnDrop<'a> {
    rooms: &'a Rooms,
    room: &'a RoomId,
}

impl Drop for ForgetServersOnDrop<'_> {
    fn drop(&mut self) {
        self.rooms.servers.lock().unwrap_or_else(|p| p.into_inner()).remove(self.room);
    }
}

/// Unless the append brought them up to date: drops the room's recent
/// events and unread counts, and notes that relations may have changed.
struct ForgetRoomCachesOnDrop<'a> {
    rooms: &'a Rooms,
    room: &'a RoomId,
}

impl Drop for ForgetRoomCachesOnDrop<'_> {
    fn drop(&mut self) {
        self.rooms.recent.forget(self.room);
        // The commit may or may not have happened: read the tip again.
        self.rooms.tips.lock().unwrap_or_else(|p| p.into_inner()).remove(self.room);
        self.rooms.unread.forget_room(self.room.as_str());
        self.rooms.note_relations_changed();
    }
}
