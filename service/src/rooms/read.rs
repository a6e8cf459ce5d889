//! Reading rooms: state, members, history and single events, with the
//! spec's history visibility applied to every event a user receives.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#history-visibility>.

use std::{collections::HashMap, fmt, str::FromStr};

use ruma::{EventId, OwnedRoomId, RoomId, UserId};
use tessera_storage::StoredEvent;

use super::{
    Rooms,
    client_event::{ClientEvent, Form},
};
use crate::{Error, Result, auth::Identity};

/// Which way `/messages` pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A position in a room's topological order: `t{depth}_{stream}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageToken {
    pub depth: i64,
    pub stream: i64,
}

impl PageToken {
    /// Before every event (the start of forward pagination).
    pub const START: Self = Self { depth: 0, stream: 0 };
    /// After every event (the start of backward pagination).
    pub const END: Self = Self { depth: i64::MAX, stream: i64::MAX };

    fn of(event: &StoredEvent) -> Self {
        Self { depth: event.depth, stream: event.stream_ordering }
    }
}

impl fmt::Display for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}_{}", self.depth, self.stream)
    }
}

impl fmt::Display for RoomToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Page(page) => page.fmt(f),
            Self::After(page) => write!(f, "a{}_{}", page.depth, page.stream),
            Self::Sync(position) => {
                crate::sync::SyncToken { events: *position, typing: 0, to_device: 0 }.fmt(f)
            }
        }
    }
}

impl FromStr for PageToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::invalid_param("Invalid pagination token");
        let (depth, stream) = s.strip_prefix('t').and_then(|s| s.split_once('_')).ok_or_else(invalid)?;
        Ok(Self {
            depth: depth.parse().map_err(|_| invalid())?,
            stream: stream.parse().map_err(|_| invalid())?,
        })
    }
}

/// A position a client names in a room read (`from`, `to`, `at`): a
/// `/messages` token, or a `/sync` token (`next_batch`), which the spec
/// allows wherever a pagination token is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomToken {
    Page(PageToken),
    /// The position just after an event (`a…`, `/context`'s `end`):
    /// paging back from it reads that event too, paging on does not.
    After(PageToken),
    /// The server-wide stream position of a sync token: every event at or
    /// before it has been seen.
    Sync(i64),
}

impl FromStr for RoomToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.starts_with('s') {
            let sync: crate::sync::SyncToken =
                s.parse().map_err(|_| Error::invalid_param("Invalid pagination token"))?;
            Ok(Self::Sync(sync.events))
        } else if let Some(page) = s.strip_prefix('a') {
            format!("t{page}").parse().map(Self::After)
        } else {
            s.parse().map(Self::Page)
        }
    }
}

/// Which end of a page a token is, and which way the page goes: a sync
/// position is a cut between two events, and the side it keeps differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenUse {
    /// Where paging starts (exclusive).
    From(Direction),
    /// Where paging stops, or the point `/members?at=` reads.
    To,
}

/// Which events `/messages` returns (the room event filter's event fields).
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    /// `contains_url`: only events whose content has (`true`) or lacks
    /// (`false`) a `url` (files, images).
    pub contains_url: Option<bool>,
}

impl EventFilter {
    pub(crate) fn matches(&self, event: &StoredEvent) -> bool {
        let type_matches = |pattern: &String| glob_matches(pattern, &event.event_type);
        self.types.as_ref().is_none_or(|types| types.iter().any(type_matches))
            && !self.not_types.iter().any(type_matches)
            && self.senders.as_ref().is_none_or(|senders| senders.contains(&event.sender))
            && !self.not_senders.contains(&event.sender)
            && self.contains_url.is_none_or(|wanted| has_url(event) == wanted)
    }
}

/// Whether the event's content has a `url` key.
fn has_url(event: &StoredEvent) -> bool {
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(default)]
        content: Content,
    }
    #[derive(serde::Deserialize, Default)]
    struct Content {
        url: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Event>(&event.json).is_ok_and(|event| event.content.url.is_some())
}

/// The filter's `*` wildcard for event types.
fn glob_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// What `/messages` asks for.
pub struct HistoryQuery {
    pub from: Option<RoomToken>,
    pub to: Option<RoomToken>,
    pub direction: Direction,
    pub limit: usize,
    pub filter: EventFilter,
}

/// A page of `/messages`.
pub struct HistoryPage {
    pub chunk: Vec<ClientEvent>,
    pub start: PageToken,
    /// `None` when there is nothing more to page through.
    pub end: Option<PageToken>,
    /// The chunk's senders, each once (for lazy-loaded members).
    pub senders: Vec<String>,
}

/// History visibility is looked up per state group; one request often
/// meets the same group many times.
#[derive(Default)]
pub(crate) struct VisibilityCache {
    history: HashMap<i64, String>,
    membership: HashMap<i64, Option<String>>,
}

impl Rooms {
    /// The `/messages` position of a token. A sync position becomes the
    /// position of the room's last event at or before it: paging backwards
    /// from it includes that event, paging forwards (or stopping at it)
    /// does not go past it.
    pub(crate) async fn page_position(
        &self,
        room_id: &RoomId,
        token: RoomToken,
        used: TokenUse,
    ) -> Result<PageToken> {
        let position = match token {
            RoomToken::Page(page) => return Ok(page),
            RoomToken::After(page) if used == TokenUse::From(Direction::Backward) => {
                return Ok(PageToken { depth: page.depth, stream: page.stream.saturating_add(1) });
            }
            RoomToken::After(page) => return Ok(page),
            RoomToken::Sync(position) => position,
        };
        Ok(match self.store.last_room_event_upto(room_id, position).await? {
            None => PageToken::START,
            Some((depth, stream)) if used == TokenUse::From(Direction::Backward) => {
                PageToken { depth, stream: stream.saturating_add(1) }
            }
            Some((depth, stream)) => PageToken { depth, stream },
        })
    }

    /// A user's current membership, if any. A room the user left and
    /// forgot counts as one they were never in: its history is closed to
    /// them (unless world-readable), as the spec's `/forget` says.
    async fn membership_of(&self, room_id: &RoomId, user: &UserId) -> Result<Option<String>> {
        let memberships = self.memberships_of(user, self.streams.persisted_upto()).await?;
        Ok(memberships
            .iter()
            .find(|m| m.room_id == room_id.as_str() && !m.forgotten)
            .map(|m| m.membership.clone()))
    }

    async fn history_visibility_now(&self, room_id: &RoomId) -> Result<String> {
        Ok(self
            .store
            .current_state_event(room_id, "m.room.history_visibility", "")
            .await?
            .and_then(|e| history_visibility_of(&e))
            .unwrap_or_else(|| "shared".to_owned()))
    }

    /// 403 unless the user is or was in the room, or it is world-readable.
    pub(crate) async fn check_may_read(&self, who: &Identity, room_id: &RoomId) -> Result<Option<String>> {
        self.room_version(room_id).await?;
        let membership = self.membership_of(room_id, &who.user_id).await?;
        let was_member = matches!(membership.as_deref(), Some("join" | "leave" | "ban"));
        if was_member || self.history_visibility_now(room_id).await? == "world_readable" {
            Ok(membership)
        } else {
            Err(Error::forbidden("You are not a member of this room"))
        }
    }

    /// Whether `user` may see `event` (spec: "visibility of events").
    pub(crate) async fn is_visible(
        &self,
        user: &UserId,
        current: Option<&str>,
        event: &StoredEvent,
        cache: &mut VisibilityCache,
    ) -> Result<bool> {
        let visibility = match cache.history.get(&event.state_before) {
            Some(v) => v.clone(),
            None => {
                let v = self
                    .store
                    .state_entry_at(event.state_before, "m.room.history_visibility", "")
                    .await?
                    .and_then(|e| history_visibility_of(&e))
                    .unwrap_or_else(|| "shared".to_owned());
                cache.history.insert(event.state_before, v.clone());
                v
            }
        };
        // World-readable rooms, and a user's own membership changes (their
        // leave, kick or ban must reach them whatever the visibility).
        if visibility == "world_readable"
            || (event.event_type == "m.room.member" && event.state_key.as_deref() == Some(user.as_str()))
        {
            return Ok(true);
        }
        let membership = match cache.membership.get(&event.state_after) {
            Some(m) => m.clone(),
            None => {
                let m = self
                    .store
                    .state_entry_at(event.state_after, "m.room.member", user.as_str())
                    .await?
                    .and_then(|e| membership_of_event(&e));
                cache.membership.insert(event.state_after, m.clone());
                m
            }
        };
        Ok(match membership.as_deref() {
            Some("join") => true,
            Some("invite") if visibility == "invited" => true,
            _ => visibility == "shared" && current == Some("join"),
        })
    }

    /// The events of `events` (all from `room_id`) that `user` may see.
    pub async fn visible_to(
        &self,
        user: &UserId,
        room_id: &RoomId,
        events: Vec<StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        let current = self.membership_of(room_id, user).await?;
        let mut cache = VisibilityCache::default();
        let mut visible = Vec::with_capacity(events.len());
        for event in events {
            if self.is_visible(user, current.as_deref(), &event, &mut cache).await? {
                visible.push(event);
            }
        }
        Ok(visible)
    }

    /// `GET /rooms/{roomId}/state`: the current state, or the state when the
    /// user left.
    pub async fn state(&self, who: &Identity, room_id: &RoomId) -> Result<Vec<ClientEvent>> {
        let events = self.readable_state(who, room_id).await?;
        self.client_events(&events, Form::plain(None)).await
    }

    /// `GET /rooms/{roomId}/state/{type}/{stateKey}`: the content.
    pub async fn state_event(
        &self,
        who: &Identity,
        room_id: &RoomId,
        kind: &str,
        key: &str,
    ) -> Result<ClientEvent> {
        let events = self.readable_state(who, room_id).await?;
        let event = events
            .into_iter()
            .find(|e| e.event_type == kind && e.state_key.as_deref() == Some(key))
            .ok_or_else(|| Error::not_found("No such state event"))?;
        let mut formatted = self.client_events(std::slice::from_ref(&event), Form::plain(None)).await?;
        formatted.pop().ok_or_else(|| Error::internal("formatting lost an event"))
    }

    async fn readable_state(&self, who: &Identity, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        match self.check_may_read(who, room_id).await?.as_deref() {
            Some("leave" | "ban") => {
                // The state as it was when the user left.
                let left = self
                    .store
                    .membership_event(room_id, &who.user_id)
                    .await?
                    .ok_or_else(|| Error::internal("membership without its event"))?;
                let ids: Vec<String> =
                    self.store.state_at_group(left.state_after).await?.values().cloned().collect();
                Ok(self.store.get_events(&ids).await?)
            }
            _ => Ok(self.store.current_state(room_id).await?),
        }
    }

    /// 403 unless `user` is joined to the room (404 if unknown).
    pub async fn require_joined(&self, room_id: &RoomId, user: &UserId) -> Result<()> {
        self.room_version(room_id).await?;
        match self.membership_of(room_id, user).await?.as_deref() {
            Some("join") => Ok(()),
            _ => Err(Error::forbidden("You are not in this room")),
        }
    }

    /// `GET /joined_rooms`.
    pub async fn joined_rooms(&self, user: &UserId) -> Result<Vec<OwnedRoomId>> {
        let rooms = self.store.rooms_with_membership(user, "join").await?;
        rooms.into_iter().map(|r| RoomId::parse(r).map_err(Error::internal)).collect()
    }

    /// `GET /rooms/{roomId}/members`, filtered by membership.
    pub async fn members(
        &self,
        who: &Identity,
        room_id: &RoomId,
        at: Option<RoomToken>,
        membership: Option<&str>,
        not_membership: Option<&str>,
    ) -> Result<Vec<ClientEvent>> {
        let membership_now = self.check_may_read(who, room_id).await?;
        let at = match at {
            Some(token) => Some(self.page_position(room_id, token, TokenUse::To).await?),
            None => None,
        };
        // A user who left sees the members as they were when they left.
        let at = match (at, membership_now.as_deref()) {
            (None, Some("leave" | "ban")) => self
                .store
                .membership_event(room_id, &who.user_id)
                .await?
                .map(|left| PageToken { depth: left.depth, stream: left.stream_ordering }),
            (at, _) => at,
        };
        let members = match at {
            None => self.store.room_members(room_id).await?,
            Some(at) => self.members_at(room_id, at).await?,
        };
        let events: Vec<StoredEvent> = members
            .into_iter()
            .filter(|(m, _)| {
                membership.is_none_or(|want| m == want) && not_membership.is_none_or(|not| m != not)
            })
            .map(|(_, event)| event)
            .collect();
        self.client_events(&events, Form::plain(None)).await
    }

    /// The member events as of a `/messages` position.
    async fn members_at(&self, room_id: &RoomId, at: PageToken) -> Result<Vec<(String, StoredEvent)>> {
        // The last event at or before the token (room_events is exclusive).
        let last = self.store.room_events(room_id, (at.depth, at.stream.saturating_add(1)), true, 1).await?;
        let Some(last) = last.first() else { return Ok(Vec::new()) };
        let ids: Vec<String> = self
            .store
            .state_at_group(last.state_after)
            .await?
            .iter()
            .filter(|((kind, _), _)| kind == "m.room.member")
            .map(|(_, id)| id.clone())
            .collect();
        let mut members = Vec::new();
        for event in self.store.get_events(&ids).await? {
            if let Some(membership) = membership_of_event(&event) {
                members.push((membership, event));
            }
        }
        members.sort_by(|a, b| a.1.state_key.cmp(&b.1.state_key));
        Ok(members)
    }

    /// `GET /rooms/{roomId}/joined_members`: user → (display name, avatar).
    pub async fn joined_members(
        &self,
        who: &Identity,
        room_id: &RoomId,
    ) -> Result<Vec<(String, Option<String>, Option<String>)>> {
        // Members only (or anyone, in a world-readable room): unlike
        // history, a member list is not readable after leaving.
        let membership = self.check_may_read(who, room_id).await?;
        if membership.as_deref() != Some("join")
            && self.history_visibility_now(room_id).await? != "world_readable"
        {
            return Err(Error::forbidden("You are not in this room"));
        }
        let members = self.store.room_members(room_id).await?;
        Ok(members
            .iter()
            .filter(|(m, _)| m == "join")
            .filter_map(|(_, event)| {
                let content: serde_json::Value =
                    serde_json::from_str::<serde_json::Value>(&event.json).ok()?["content"].take();
                let text = |key: &str| content.get(key).and_then(|v| v.as_str()).map(str::to_owned);
                Some((event.state_key.clone()?, text("displayname"), text("avatar_url")))
            })
            .collect())
    }

    /// `GET /rooms/{roomId}/event/{eventId}`.
    pub async fn event(&self, who: &Identity, room_id: &RoomId, event_id: &EventId) -> Result<ClientEvent> {
        let not_found = || Error::not_found("Event not found");
        // The spec's one answer for "no such event" and "not yours to
        // see", so that neither reveals the other.
        let current = match self.check_may_read(who, room_id).await {
            Err(Error::Matrix { status: 403, .. }) => return Err(not_found()),
            other => other?,
        };
        let event =
            self.event_in_room(room_id, event_id).await?.filter(|e| !e.rejected).ok_or_else(not_found)?;
        let mut cache = VisibilityCache::default();
        if !self.is_visible(&who.user_id, current.as_deref(), &event, &mut cache).await? {
            return Err(not_found());
        }
        let viewer = Some((who.user_id.as_str(), &*who.device_id));
        let mut formatted = self.client_events(std::slice::from_ref(&event), Form::timeline(viewer)).await?;
        formatted.pop().ok_or_else(|| Error::internal("formatting lost an event"))
    }

    /// `GET /_matrix/federation/v1/event/{eventId}` by `origin`: the PDU as
    /// signed (redacted if it was), if the server may see it: the event is
    /// world-readable, or one of its users was joined (or, under `invited`,
    /// invited) when it was sent, or under `shared` one of its users is
    /// joined now. 404 otherwise, as for an event this server does not
    /// have, so that neither reveals the other.
    pub async fn event_for_server(
        &self,
        origin: &ruma::ServerName,
        event_id: &EventId,
    ) -> Result<StoredEvent> {
        let not_found = || Error::not_found("Event not found");
        let event = self.store.get_event(event_id).await?.filter(|e| !e.rejected).ok_or_else(not_found)?;
        let room_id = RoomId::parse(&event.room_id).map_err(Error::internal)?;
        if !self.server_allowed(&room_id, origin).await? {
            return Err(not_found());
        }
        let mut view = super::federation_reads::ServerView::new(origin);
        if self.server_may_see(&mut view, &event).await? { Ok(event) } else { Err(not_found()) }
    }

    /// `GET /rooms/{roomId}/messages`.
    pub async fn messages(
        &self,
        who: &Identity,
        room_id: &RoomId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage> {
        let HistoryQuery { from, to, direction, limit, filter } = query;
        let (direction, limit) = (*direction, *limit);
        // A room this server does not know is one the user is not in: the
        // spec's 403, which does not reveal whether it exists.
        let current = match self.check_may_read(who, room_id).await {
            Err(Error::Matrix { status: 404, .. }) => {
                return Err(Error::forbidden("You are not a member of this room"));
            }
            other => other?,
        };
        let from = match *from {
            Some(token) => Some(self.page_position(room_id, token, TokenUse::From(direction)).await?),
            None => None,
        };
        let to = match *to {
            Some(token) => Some(self.page_position(room_id, token, TokenUse::To).await?),
            None => None,
        };
        let backwards = direction == Direction::Backward;
        let start = from.unwrap_or(if backwards { PageToken::END } else { PageToken::START });
        // Back from a sync token: the events received up to it, in
        // topological order (see `Store::room_events_upto_stream`); on
        // from the last of them by topology.
        let mut from_stream = match query.from {
            Some(RoomToken::Sync(upto)) if backwards => Some(upto),
            _ => None,
        };
        let limit = limit.min(1000);
        let mut cache = VisibilityCache::default();
        let mut chunk: Vec<StoredEvent> = Vec::new();
        let mut position = start;
        let mut exhausted = false;
        let mut backfilled = false;
        // Read in batches until the page is full: filtered-out and invisible
        // events do not count towards the limit.
        while chunk.len() < limit && !exhausted {
            let batch_size = i64::try_from((limit - chunk.len()).max(20)).unwrap_or(100);
            let batch = match from_stream.take() {
                Some(upto) => self.store.room_events_upto_stream(room_id, upto, batch_size).await?,
                None => {
                    self.store
                        .room_events(room_id, (position.depth, position.stream), backwards, batch_size)
                        .await?
                }
            };
            exhausted = i64::try_from(batch.len()).unwrap_or(0) < batch_size;
            for event in batch {
                let token = PageToken::of(&event);
                let past_to = to.is_some_and(|to| if backwards { token <= to } else { token > to });
                if past_to {
                    exhausted = true;
                    break;
                }
                position = token;
                // Paging back past a gap in the DAG here: what lies behind
                // it is asked of the room's other servers, and read next.
                let refill = backwards
                    && self.follows_gap(room_id.as_str(), event.stream_ordering).await?
                    && match self.backfill_gap(room_id, &event).await {
                        Ok(added) => added > 0,
                        Err(e) => {
                            tracing::info!(room = %room_id, error = %e, "backfill across a gap failed");
                            false
                        }
                    };
                if filter.matches(&event)
                    && self.is_visible(&who.user_id, current.as_deref(), &event, &mut cache).await?
                {
                    chunk.push(event);
                }
                if refill {
                    exhausted = false;
                    break;
                }
                if chunk.len() == limit {
                    break;
                }
            }
            // Past the oldest event held: older history may be had from
            // another server in the room (once per request).
            if exhausted && backwards && chunk.len() < limit && !backfilled && to.is_none() {
                backfilled = true;
                match self.backfill(room_id).await {
                    Ok(0) => {}
                    Ok(_) => exhausted = false,
                    Err(e) => tracing::info!(room = %room_id, error = %e, "backfill failed"),
                }
            }
        }
        // Omitted only when nothing is left at all: a page that reached the
        // room's start still says where it stopped (as Synapse; clients and
        // Complement read a missing `end` on a full page as an error), and
        // the next request answers an empty chunk without one.
        let end = (!chunk.is_empty() || !exhausted).then_some(position);
        let mut senders: Vec<String> = chunk.iter().map(|e| e.sender.clone()).collect();
        senders.sort_unstable();
        senders.dedup();
        let chunk =
            self.client_events(&chunk, Form::timeline(Some((who.user_id.as_str(), &who.device_id)))).await?;
        Ok(HistoryPage { chunk, start, end, senders })
    }
}

fn history_visibility_of(event: &StoredEvent) -> Option<String> {
    event.content()?.get("history_visibility")?.as_str().map(str::to_owned)
}

fn membership_of_event(event: &StoredEvent) -> Option<String> {
    event.content()?.get("membership")?.as_str().map(str::to_owned)
}
