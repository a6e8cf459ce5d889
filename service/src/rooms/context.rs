//! `GET /rooms/{roomId}/context/{eventId}` and
//! `GET /v1/rooms/{roomId}/timestamp_to_event`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidcontexteventid>.

use ruma::{EventId, OwnedEventId, RoomId};
use tessera_storage::StoredEvent;

use super::{
    Rooms,
    client_event::{ClientEvent, Form},
    read::{EventFilter, PageToken, VisibilityCache},
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
    pub end: PageToken,
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
        let event = self.store.event_near_timestamp(room_id, ts, forward).await?.ok_or_else(not_found)?;
        let mut cache = VisibilityCache::default();
        if !self.is_visible(&who.user_id, current.as_deref(), &event, &mut cache).await? {
            return Err(not_found());
        }
        Ok((event.event_id, event.origin_server_ts))
    }
}
