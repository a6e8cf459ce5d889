//! Room reads for other servers: the state and auth chain at an event,
//! an event's auth chain, history by `prev_events` (backfill and missing
//! events) and the event nearest a timestamp.
//!
//! Who may read: the room must exist (404), and the asking server must
//! have a user joined to it now or the room be world-readable now; for
//! the state or auth chain at one event, being allowed to see that event
//! (`Rooms::event_for_server`'s rule) is enough. Otherwise 403
//! `M_FORBIDDEN`, as Synapse answers (`assert_host_in_room`). Events found
//! by walking the DAG are each given only if the server may see them, and
//! rejected events never. Walks are iterative, fetch a whole frontier at a
//! time and stop at a bound: a remote chooses where they start.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#retrieving-events>.

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet},
};

use ruma::{EventId, OwnedEventId, RoomId, RoomVersionId, ServerName, UserId, events::TimelineEventType};
use serde_json::value::RawValue;
use tessera_core::rules_for;
use tessera_storage::StoredEvent;

use super::{
    Rooms,
    append::{event_error, pdu_from_stored},
};
use crate::{Error, Result};

/// The most events an auth chain walk reads. An auth chain is the room's
/// power, join-rule and member events behind one event, so a bigger one
/// means a room beyond what this server can answer for in one request.
const MAX_AUTH_CHAIN: usize = 100_000;

/// The most events one backfill or missing-events answer carries (Synapse's
/// cap too).
const MAX_EVENTS: usize = 100;

/// The most events one `prev_events` walk reads: rejected events are
/// walked through without counting towards the answer, so a run of them
/// must not keep it going.
const MAX_WALK: usize = 1_000;

/// The state before an event and the auth chain behind that state, as
/// event IDs or as PDUs.
pub struct StateAt<T> {
    pub state: Vec<T>,
    pub auth_chain: Vec<T>,
}

/// A PDU as signed (redacted if it was), for sending as it stands.
pub type RawPdu = Box<RawValue>;

/// What decides whether a server may see events, read once per request:
/// rooms' history visibility per state group, and whether one of the
/// server's users is joined (or invited) in the state after an event.
pub(crate) struct ServerView<'a> {
    origin: &'a ServerName,
    joined_now: Option<bool>,
    visibility: HashMap<i64, String>,
    /// Per state group: (a user of the server joined, one invited).
    members: HashMap<i64, (bool, bool)>,
}

impl<'a> ServerView<'a> {
    pub(crate) fn new(origin: &'a ServerName) -> Self {
        Self { origin, joined_now: None, visibility: HashMap::new(), members: HashMap::new() }
    }

    fn of_origin(&self, user: &str) -> bool {
        UserId::parse(user).is_ok_and(|user| user.server_name() == self.origin)
    }
}

impl Rooms {
    /// `GET /state_ids/{roomId}`: see [`Rooms::state_for_server`].
    pub async fn state_ids_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StateAt<OwnedEventId>> {
        let at = self.state_before_for_server(origin, room_id, event_id).await?;
        let ids = |events: Vec<StoredEvent>| events.into_iter().map(|e| e.event_id).collect();
        Ok(StateAt { state: ids(at.state), auth_chain: ids(at.auth_chain) })
    }

    /// `GET /state/{roomId}`: the state before `event_id` (what Synapse
    /// answers, the spec's "state at" an event being the state its auth
    /// was checked against) and every event reachable from it through
    /// `auth_events`, oldest first.
    pub async fn state_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StateAt<RawPdu>> {
        let at = self.state_before_for_server(origin, room_id, event_id).await?;
        Ok(StateAt { state: raw_pdus(&at.state)?, auth_chain: raw_pdus(&at.auth_chain)? })
    }

    async fn state_before_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StateAt<StoredEvent>> {
        let version = self.room_version(room_id).await?;
        let event = self.event_readable_by_server(origin, room_id, event_id).await?;
        let ids: Vec<String> =
            self.store.state_at_group(event.state_before).await?.values().cloned().collect();
        let mut state: Vec<StoredEvent> =
            self.store.get_events(&ids).await?.into_iter().filter(|e| !e.rejected).collect();
        state.sort_by_key(|e| (e.depth, e.stream_ordering));
        let auth_chain = self.auth_chain(&version, room_id, &state).await?;
        Ok(StateAt { state, auth_chain })
    }

    /// `GET /event_auth/{roomId}/{eventId}`: the event's auth chain, oldest
    /// first (the event itself is not part of it).
    pub async fn event_auth_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<RawPdu>> {
        let version = self.room_version(room_id).await?;
        let event = self.event_readable_by_server(origin, room_id, event_id).await?;
        raw_pdus(&self.auth_chain(&version, room_id, std::slice::from_ref(&event)).await?)
    }

    /// `GET /backfill/{roomId}`: `from` and the events before them, walking
    /// `prev_events` breadth-first, newest first, at most `limit` (100).
    pub async fn backfill_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<RawPdu>> {
        let version = self.room_version(room_id).await?;
        let mut view = ServerView::new(origin);
        self.check_server_in_room(&mut view, room_id).await?;
        let limit = limit.min(MAX_EVENTS);
        let mut seen: HashSet<OwnedEventId> = from.iter().cloned().collect();
        let front: Vec<String> = seen.iter().map(|id| id.as_str().to_owned()).collect();
        let mut found = self.walk_prev_events(&version, room_id, front, &mut seen, limit, 0).await?;
        found.sort_by_key(|e| Reverse((e.depth, e.stream_ordering)));
        raw_pdus(&self.keep_visible(&mut view, found, limit).await?)
    }

    /// `POST /get_missing_events/{roomId}`: the events before `latest`
    /// (not included) back to `earliest` (not included either), breadth
    /// first, none below `min_depth`, at most `limit` (100): the newest of
    /// those found, returned oldest first.
    pub async fn missing_events_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
        min_depth: i64,
    ) -> Result<Vec<RawPdu>> {
        let version = self.room_version(room_id).await?;
        let mut view = ServerView::new(origin);
        self.check_server_in_room(&mut view, room_id).await?;
        let limit = limit.min(MAX_EVENTS);
        let mut seen: HashSet<OwnedEventId> = earliest.iter().chain(latest).cloned().collect();
        let latest: Vec<String> = latest.iter().map(|id| id.as_str().to_owned()).collect();
        let mut front = Vec::new();
        for event in self.store.get_events(&latest).await? {
            if event.room_id == room_id.as_str() {
                let pdu = pdu_from_stored(&event, &version)?;
                front.extend(
                    pdu.prev_events.into_iter().filter(|id| seen.insert(id.clone())).map(String::from),
                );
            }
        }
        let mut found = self.walk_prev_events(&version, room_id, front, &mut seen, limit, min_depth).await?;
        found.sort_by_key(|e| Reverse((e.depth, e.stream_ordering)));
        let mut events = self.keep_visible(&mut view, found, limit).await?;
        events.reverse();
        raw_pdus(&events)
    }

    /// `GET /timestamp_to_event/{roomId}`: the event nearest `ts` in the
    /// given direction, if the server may see it (404 otherwise, as for
    /// none), with its timestamp.
    pub async fn event_at_timestamp_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        ts: i64,
        forward: bool,
    ) -> Result<(OwnedEventId, i64)> {
        let mut view = ServerView::new(origin);
        self.check_server_in_room(&mut view, room_id).await?;
        let not_found = || Error::not_found("No event found in that direction");
        let event = self.store.event_near_timestamp(room_id, ts, forward).await?.ok_or_else(not_found)?;
        if event.rejected || !self.server_may_see(&mut view, &event).await? {
            return Err(not_found());
        }
        Ok((event.event_id, event.origin_server_ts))
    }

    /// 404 for an unknown room, 403 unless one of the server's users is
    /// joined to it or it is world-readable now.
    async fn check_server_in_room(&self, view: &mut ServerView<'_>, room_id: &RoomId) -> Result<()> {
        self.room_version(room_id).await?;
        self.check_server_acl(room_id, view.origin).await?;
        if self.server_joined_now(view, room_id).await? {
            return Ok(());
        }
        let visibility = self.store.current_state_event(room_id, "m.room.history_visibility", "").await?;
        if visibility.as_ref().and_then(history_visibility_of).as_deref() == Some("world_readable") {
            return Ok(());
        }
        Err(Error::forbidden("Server is not in the room"))
    }

    /// The event, if the server may read the state and auth chain at it:
    /// it is joined to the room now or may see the event. A server that
    /// may not read the room learns nothing of which events it has (403
    /// for an unknown event too); one that may gets 404 for an event that
    /// is unknown, rejected or of another room.
    async fn event_readable_by_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StoredEvent> {
        let mut view = ServerView::new(origin);
        if self.version_if_known(room_id).await?.is_some() {
            self.check_server_acl(room_id, origin).await?;
        }
        let event = self.event_in_room(room_id, event_id).await?.filter(|e| !e.rejected);
        match event {
            Some(event) => {
                if self.server_joined_now(&mut view, room_id).await?
                    || self.server_may_see(&mut view, &event).await?
                {
                    Ok(event)
                } else {
                    Err(Error::forbidden("Server is not in the room"))
                }
            }
            None => {
                self.check_server_in_room(&mut view, room_id).await?;
                Err(Error::not_found("Event not found"))
            }
        }
    }

    async fn server_joined_now(&self, view: &mut ServerView<'_>, room_id: &RoomId) -> Result<bool> {
        if let Some(joined) = view.joined_now {
            return Ok(joined);
        }
        let joined = self.store.joined_user_ids(room_id).await?.iter().any(|user| view.of_origin(user));
        view.joined_now = Some(joined);
        Ok(joined)
    }

    /// Whether the server may see `event` (the spec's history visibility
    /// for servers): it is world-readable, or a user of the server was
    /// joined (or, under `invited`, invited) in the state after it, or,
    /// under `shared`, one is joined now.
    pub(crate) async fn server_may_see(
        &self,
        view: &mut ServerView<'_>,
        event: &StoredEvent,
    ) -> Result<bool> {
        let visibility = match view.visibility.get(&event.state_before) {
            Some(visibility) => visibility.clone(),
            None => {
                let visibility = self
                    .store
                    .state_entry_at(event.state_before, "m.room.history_visibility", "")
                    .await?
                    .as_ref()
                    .and_then(history_visibility_of)
                    .unwrap_or_else(|| "shared".to_owned());
                view.visibility.insert(event.state_before, visibility.clone());
                visibility
            }
        };
        if visibility == "world_readable" {
            return Ok(true);
        }
        let (joined, invited) = match view.members.get(&event.state_after) {
            Some(members) => *members,
            None => {
                let state = self.store.state_at_group(event.state_after).await?;
                let ids: Vec<String> = state
                    .iter()
                    .filter(|((kind, key), _)| kind == "m.room.member" && view.of_origin(key))
                    .map(|(_, id)| id.clone())
                    .collect();
                let (mut joined, mut invited) = (false, false);
                for member in self.store.get_events(&ids).await? {
                    let membership = member.content().and_then(|c| c.get("membership")?.as_str());
                    joined |= membership == Some("join");
                    invited |= membership == Some("invite");
                }
                view.members.insert(event.state_after, (joined, invited));
                (joined, invited)
            }
        };
        Ok(match visibility.as_str() {
            _ if joined => true,
            "invited" => invited,
            "shared" => {
                let room_id = RoomId::parse(&event.room_id).map_err(Error::internal)?;
                self.server_joined_now(view, &room_id).await?
            }
            _ => false,
        })
    }

    /// The first `limit` of `events` the server may see (rejected ones
    /// never).
    async fn keep_visible(
        &self,
        view: &mut ServerView<'_>,
        events: Vec<StoredEvent>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let mut kept = Vec::with_capacity(limit.min(events.len()));
        for event in events {
            if kept.len() == limit {
                break;
            }
            if !event.rejected && self.server_may_see(view, &event).await? {
                kept.push(event);
            }
        }
        Ok(kept)
    }

    /// Walks `prev_events` breadth-first from `front` (included), a whole
    /// frontier per read, until `limit` events are found, the DAG ends or
    /// [`MAX_WALK`] events were read; the last frontier may overshoot
    /// `limit`. Events of other rooms and
    /// below `min_depth` are neither returned nor walked through; rejected
    /// ones are walked through (their ancestors are the room's) but not
    /// counted.
    async fn walk_prev_events(
        &self,
        version: &RoomVersionId,
        room_id: &RoomId,
        mut front: Vec<String>,
        seen: &mut HashSet<OwnedEventId>,
        limit: usize,
        min_depth: i64,
    ) -> Result<Vec<StoredEvent>> {
        let mut found = Vec::new();
        let mut read = 0;
        while !front.is_empty() && found.len() < limit && read < MAX_WALK {
            read += front.len();
            let mut next = Vec::new();
            for event in self.store.get_events(&front).await? {
                if event.room_id != room_id.as_str() || event.depth < min_depth {
                    continue;
                }
                let pdu = pdu_from_stored(&event, version)?;
                next.extend(
                    pdu.prev_events.into_iter().filter(|id| seen.insert(id.clone())).map(String::from),
                );
                if !event.rejected {
                    found.push(event);
                }
            }
            front = next;
        }
        Ok(found)
    }

    /// Every event reachable from `from` through `auth_events` (the events
    /// of `from` only if reachable from another), oldest first. From room
    /// version 12 on, the create event is every other event's implicit
    /// auth event (its ID is the room's): it is part of the chain as
    /// Synapse serves it, and a server joining through the chain needs it.
    /// Errors past [`MAX_AUTH_CHAIN`] events rather than give a partial
    /// chain, which the asking server would take for the whole one.
    pub(super) async fn auth_chain(
        &self,
        version: &RoomVersionId,
        room_id: &RoomId,
        from: &[StoredEvent],
    ) -> Result<Vec<StoredEvent>> {
        let rules = rules_for(version).map_err(event_error)?;
        let implicit_create = match rules.authorization.room_create_event_id_as_room_id {
            true => Some(create_event_id(room_id)?),
            false => None,
        };
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        let mut front = Vec::new();
        let mut chain = Vec::new();
        let next_of = |event: &StoredEvent, seen: &mut HashSet<OwnedEventId>| -> Result<Vec<String>> {
            let pdu = pdu_from_stored(event, version)?;
            let is_create = pdu.kind == TimelineEventType::RoomCreate && pdu.state_key.as_deref() == Some("");
            let implicit = implicit_create.iter().filter(|_| !is_create).cloned();
            Ok(pdu
                .auth_events
                .into_iter()
                .chain(implicit)
                .filter(|id| seen.insert(id.clone()))
                .map(String::from)
                .collect())
        };
        for event in from {
            front.extend(next_of(event, &mut seen)?);
        }
        while !front.is_empty() {
            if seen.len() > MAX_AUTH_CHAIN {
                return Err(Error::internal(format!(
                    "the auth chain in {room_id} is over {MAX_AUTH_CHAIN} events"
                )));
            }
            let mut next = Vec::new();
            for event in self.store.get_events(&front).await? {
                if event.room_id != room_id.as_str() || event.rejected {
                    continue;
                }
                next.extend(next_of(&event, &mut seen)?);
                chain.push(event);
            }
            front = next;
        }
        chain.sort_by_key(|e| (e.depth, e.stream_ordering));
        Ok(chain)
    }
}

/// The ID of a room's create event in room versions where the room ID is
/// derived from it (`!hash` for `$hash`).
fn create_event_id(room_id: &RoomId) -> Result<OwnedEventId> {
    let hash = room_id.as_str().strip_prefix('!').ok_or_else(|| Error::internal("room ID without `!`"))?;
    EventId::parse(format!("${hash}")).map_err(Error::internal)
}

fn raw_pdus(events: &[StoredEvent]) -> Result<Vec<RawPdu>> {
    events
        .iter()
        .map(|event| RawValue::from_string(event.json.to_string()).map_err(Error::internal))
        .collect()
}

fn history_visibility_of(event: &StoredEvent) -> Option<String> {
    event.content()?.get("history_visibility")?.as_str().map(str::to_owned)
}
