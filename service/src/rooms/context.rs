//! `GET /rooms/{roomId}/context/{eventId}` and
//! `GET /v1/rooms/{roomId}/timestamp_to_event`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidcontexteventid>.

use ruma::{EventId, OwnedEventId, RoomId};
use tessera_storage::{EventStatus, StoredEvent};

use super::{
    Rooms,
    client_event::{ClientEvent, Form},
    read::{EventFilter, PageToken, RoomToken, VisibilityCache},
};
use crate::{Error, Result, auth::Identity};

/// An event with what surrounds it.
pub struct Context {
    pub events_before: Vec<ClientEvent>,
    pub event: ClientEvent,
    pub events_after: Vec<ClientEvent>,
    /// The room state at the last event returned (only the senders' member
    /// events when members are lazy-loaded).
    pub state: Vec<ClientEvent>,
    pub start: PageToken,
    /// Just after the last event looked at: paging back from it reads
    /// that event too (as from Synapse's), paging on does not.
    pub end: RoomToken,
}

impl Rooms {
    /// `limit` events around `event_id` (half before, half after) that the
    /// user may see and that match `filter`.
    pub async fn context(
        &self,
        who: &Identity,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
        filter: &EventFilter,
        lazy_load_members: bool,
    ) -> Result<Context> {
        let current = self.check_may_read(who, room_id).await?;
        let mut cache = VisibilityCache::default();
        let not_found = || Error::not_found("Event not found");
        let event =
            self.event_in_room(room_id, event_id).await?.filter(|e| !e.rejected).ok_or_else(not_found)?;
        if !self.is_visible(&who.user_id, current.as_deref(), &event, &mut cache).await? {
            return Err(not_found());
        }
        let limit = limit.min(100);
        let position = (event.depth, event.stream_ordering);
        let mut sides = Vec::with_capacity(2);
        for (backwards, wanted) in [(true, limit / 2), (false, limit - limit / 2)] {
            let mut kept = Vec::new();
            let mut edge = position;
            for candidate in self
                .store
                .room_events(room_id, position, backwards, i64::try_from(wanted * 2 + 10).unwrap_or(210))
                .await?
            {
                if kept.len() == wanted {
                    break;
                }
                // The token marks the last event looked at, so paging on
                // from it neither repeats nor skips anything.
                edge = (candidate.depth, candidate.stream_ordering);
                if filter.matches(&candidate)
                    && self.is_visible(&who.user_id, current.as_deref(), &candidate, &mut cache).await?
                {
                    kept.push(candidate);
                }
            }
            sides.push((kept, PageToken { depth: edge.0, stream: edge.1 }));
        }
        let (after, end) = sides.pop().ok_or_else(|| Error::internal("context sides"))?;
        let end = RoomToken::After(end);
        let (before, start) = sides.pop().ok_or_else(|| Error::internal("context sides"))?;

        let last = after.last().unwrap_or(&event);
        let state = self.state_for_context(last, &before, &event, &after, lazy_load_members).await?;
        let viewer = Some((who.user_id.as_str(), &*who.device_id));
        let mut center = self.client_events(std::slice::from_ref(&event), Form::timeline(viewer)).await?;
        Ok(Context {
            events_before: self.client_events(&before, Form::timeline(viewer)).await?,
            event: center.pop().ok_or_else(|| Error::internal("formatting lost an event"))?,
            events_after: self.client_events(&after, Form::timeline(viewer)).await?,
            state: self.client_events(&state, Form::plain(None)).await?,
            start,
            end,
        })
    }

    async fn state_for_context(
        &self,
        at: &StoredEvent,
        before: &[StoredEvent],
        event: &StoredEvent,
        after: &[StoredEvent],
        lazy_load_members: bool,
    ) -> Result<Vec<StoredEvent>> {
        let state = self.store.state_at_group(at.state_after).await?;
        let senders: std::collections::HashSet<&str> =
            before.iter().chain(std::iter::once(event)).chain(after).map(|e| e.sender.as_str()).collect();
        let ids: Vec<String> = state
            .iter()
            .filter(|((kind, key), _)| {
                !lazy_load_members || kind != "m.room.member" || senders.contains(key.as_str())
            })
            .map(|(_, id)| id.clone())
            .collect();
        Ok(self.store.get_events(&ids).await?)
    }

    /// The event closest to `ts` in the given direction that the user may
    /// see, with its timestamp.
    pub async fn event_at_timestamp(
        &self,
        who: &Identity,
        room_id: &RoomId,
        ts: i64,
        forward: bool,
    ) -> Result<(OwnedEventId, i64)> {
        let current = self.check_may_read(who, room_id).await?;
        let not_found = || Error::not_found("No event found in that direction");
        let mut event = self.store.event_near_timestamp(room_id, ts, forward).await?;
        // Nothing here, or only the event after a gap (a late join):
        // another server in the room may hold history nearer `ts`.
        let ask = match &event {
            None => true,
            Some(local) => self.follows_gap(room_id.as_str(), local.stream_ordering).await?,
        };
        if ask {
            match self.remote_event_near(room_id, ts, forward, event.as_ref()).await {
                Ok(Some(nearer)) => event = Some(nearer),
                Ok(None) => {}
                Err(e) => tracing::info!(room = %room_id, error = %e, "remote timestamp lookup failed"),
            }
        }
        let event = event.ok_or_else(not_found)?;
        let mut cache = VisibilityCache::default();
        if !self.is_visible(&who.user_id, current.as_deref(), &event, &mut cache).await? {
            return Err(not_found());
        }
        Ok((event.event_id, event.origin_server_ts))
    }

    /// The event another server in the room holds nearest `ts` in the
    /// given direction (`/timestamp_to_event`), when nearer than `local`:
    /// fetched and stored as history (as backfill stores it), so that
    /// clients can read around it (`/context`, `/messages`).
    async fn remote_event_near(
        &self,
        room_id: &RoomId,
        ts: i64,
        forward: bool,
        local: Option<&StoredEvent>,
    ) -> Result<Option<StoredEvent>> {
        let remote = &self.federation.remote;
        for server in self.remote_servers(room_id).await?.iter().take(3) {
            let (event_id, at) = match remote.timestamp_to_event(server, room_id, ts, forward).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::info!(room = %room_id, %server, error = %e, "timestamp_to_event not answered");
                    continue;
                }
            };
            let nearer = local.is_none_or(|local| {
                if forward { at < local.origin_server_ts } else { at > local.origin_server_ts }
            });
            if !nearer {
                return Ok(None);
            }
            let held = self.store.get_event(&event_id).await?.filter(|e| e.room_id == room_id.as_str());
            if let Some(held) = held.filter(|e| e.status == EventStatus::Timeline) {
                return Ok(Some(held));
            }
            let json = match remote.get_event(server, &event_id).await {
                Ok(json) => json,
                Err(e) => {
                    tracing::info!(room = %room_id, %server, error = %e, "event near a timestamp not fetched");
                    continue;
                }
            };
            let version = self.room_version(room_id).await?;
            self.store_backfilled(server, room_id, &version, &[json]).await?;
            let stored = self.store.get_event(&event_id).await?;
            return Ok(stored.filter(|e| e.status == EventStatus::Timeline && e.room_id == room_id.as_str()));
        }
        Ok(None)
    }
}
