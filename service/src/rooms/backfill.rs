//! Backfill: a room's history from before the oldest event this server
//! holds of it (it joined late), fetched from another server in the room
//! (`/backfill`) when a client pages back past that event (`/messages`).
//!
//! Backfilled events are checked as received events are (signatures and
//! hash, their auth events, the state before them) and stored in the
//! timeline at negative stream positions, below every other event: they
//! sort by depth in `/messages`, never reach a sync as news, and change
//! no forward extremity, current state or membership. The state before
//! the oldest of a batch is asked of the same server (`/state`) when its
//! previous events are not held. An event already held as an outlier (the
//! state a join received) joins the timeline in its place.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#backfilling-and-retrieving-missing-events>.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use ruma::{OwnedEventId, RoomId, RoomVersionId, ServerName};
use serde_json::value::RawValue as RawJsonValue;
use tessera_core::{Pdu, auth, rules_for};
use tessera_storage::{EventStatus, NewEvent, StoredEvent, state::StateMap};

use super::{
    Rooms,
    append::{event_error, pdu_from_stored, relation_of},
};
use crate::{Error, Result};

/// The most events one backfill asks for.
const BACKFILL_LIMIT: u32 = 100;
/// How many of the room's servers are asked in turn.
const MAX_SERVERS: usize = 5;
/// How many events' backfills are remembered (then forgotten at once: an
/// event asked about again costs a request, nothing else).
const MAX_ASKED: usize = 100_000;

/// What backfilling remembers between requests.
#[derive(Default)]
pub(super) struct BackfillState {
    /// The next stream position below every event (taken on first use).
    next_position: tokio::sync::Mutex<Option<i64>>,
    /// The events whose history was asked for (see `backfill_before`).
    asked: Mutex<HashSet<OwnedEventId>>,
    /// One backfill at a time.
    running: tokio::sync::Mutex<()>,
}

/// A shared handle (`Rooms` is cloned per request).
pub(super) type SharedBackfill = Arc<BackfillState>;

impl Rooms {
    /// Fetches the room's history from before the oldest event held in its
    /// timeline, from the room's other servers in turn; returns how many
    /// events joined the timeline (0: nothing older to be had).
    pub(super) async fn backfill(&self, room_id: &RoomId) -> Result<usize> {
        let _one = self.backfill.running.lock().await;
        let Some(oldest) = self.store.room_events(room_id, (i64::MIN, i64::MIN), false, 1).await?.pop()
        else {
            return Ok(0);
        };
        if oldest.event_type == "m.room.create" {
            return Ok(0);
        }
        self.backfill_before(room_id, &oldest).await
    }

    /// Fetches what lies behind a gap in the room's timeline here: the
    /// history before `after_gap`, the first event after it (see `gaps`).
    /// Where that history is longer than one backfill brings, the oldest
    /// event brought is the next gap.
    pub(super) async fn backfill_gap(&self, room_id: &RoomId, after_gap: &StoredEvent) -> Result<usize> {
        let _one = self.backfill.running.lock().await;
        self.backfill_before(room_id, after_gap).await
    }

    /// Backfills the history before `event` (under `running`); an event
    /// is asked about once: none is asked again, whether anything came
    /// (it is then not the oldest, or its gap is filled) or not (no server
    /// had more; until a restart).
    async fn backfill_before(&self, room_id: &RoomId, event: &StoredEvent) -> Result<usize> {
        let asked = |rooms: &Self| {
            rooms.backfill.asked.lock().unwrap_or_else(|p| p.into_inner()).contains(&event.event_id)
        };
        if asked(self) {
            return Ok(0);
        }
        let version = self.room_version(room_id).await?;
        let pdu = pdu_from_stored(event, &version)?;
        let wanted = self.not_in_timeline(&pdu.prev_events).await?;
        let mut added = 0;
        if !wanted.is_empty() {
            for server in self.remote_servers(room_id).await?.iter().take(MAX_SERVERS) {
                let answer = match self
                    .federation
                    .remote
                    .backfill(server, room_id, wanted.clone(), BACKFILL_LIMIT)
                    .await
                {
                    Ok(answer) => answer,
                    Err(e) => {
                        tracing::info!(room = %room_id, %server, error = %e, "backfill not answered");
                        continue;
                    }
                };
                let (stored, oldest) = self.store_backfilled(server, room_id, &version, &answer.pdus).await?;
                if stored > 0 {
                    tracing::info!(room = %room_id, %server, added = stored, "history backfilled");
                    added = stored;
                    if let Some(oldest) = oldest {
                        self.note_gap_behind(room_id, &oldest).await?;
                    }
                    break;
                }
            }
        }
        let mut asked = self.backfill.asked.lock().unwrap_or_else(|p| p.into_inner());
        if asked.len() >= MAX_ASKED {
            asked.clear();
        }
        asked.insert(event.event_id.clone());
        Ok(added)
    }

    /// Of `ids`, those not in the room's timeline here (not held, or held
    /// only as outliers).
    async fn not_in_timeline(&self, ids: &[OwnedEventId]) -> Result<Vec<OwnedEventId>> {
        let keys: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let in_timeline: Vec<OwnedEventId> = self
            .store
            .get_events(&keys)
            .await?
            .into_iter()
            .filter(|e| e.status != EventStatus::Outlier)
            .map(|e| e.event_id)
            .collect();
        Ok(ids.iter().filter(|id| !in_timeline.contains(id)).cloned().collect())
    }

    /// Notes a gap before the backfilled event `oldest` when its previous
    /// events are not all in the timeline (the history behind it was longer
    /// than one backfill): `/messages` backfills again on passing it.
    async fn note_gap_behind(&self, room_id: &RoomId, oldest: &Pdu) -> Result<()> {
        if oldest.kind == ruma::events::TimelineEventType::RoomCreate
            || self.not_in_timeline(&oldest.prev_events).await?.is_empty()
        {
            return Ok(());
        }
        if let Some(stored) = self.store.get_event(&oldest.event_id).await? {
            self.store.add_timeline_gap(room_id, stored.stream_ordering).await?;
            self.gaps.note(room_id.as_str(), stored.stream_ordering);
        }
        Ok(())
    }

    /// Verifies a backfill answer's PDUs and stores those not yet in the
    /// timeline, oldest first; returns how many joined it, and the oldest
    /// of them.
    pub(super) async fn store_backfilled(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        version: &RoomVersionId,
        pdus: &[Box<RawJsonValue>],
    ) -> Result<(usize, Option<Pdu>)> {
        let mut verified = Vec::new();
        for json in pdus.iter().take(BACKFILL_LIMIT as usize) {
            if let Some(pdu) = self.verified(json, room_id, version).await {
                verified.push(pdu);
            }
        }
        verified.sort_by_key(|e| e.depth);
        let mut added = 0;
        let mut oldest = None;
        for pdu in verified {
            if self.store.get_event(&pdu.event_id).await?.is_some_and(|e| e.status != EventStatus::Outlier) {
                continue;
            }
            self.fetch_missing_auth_events(server, &pdu, version).await?;
            if self.append_historical(server, pdu.clone(), version).await? {
                added += 1;
                oldest.get_or_insert(pdu);
            }
        }
        if added > 0 {
            // Cached timelines and bundled relations may have changed.
            self.recent.forget(room_id);
            self.note_relations_changed();
        }
        Ok((added, oldest))
    }

    /// Stores one backfilled event below the timeline (see the module's
    /// comment); whether it passed the rules.
    async fn append_historical(
        &self,
        server: &ServerName,
        pdu: Pdu,
        version: &RoomVersionId,
    ) -> Result<bool> {
        let rules = rules_for(version).map_err(event_error)?;
        let ids: Vec<String> = pdu.auth_events.iter().map(|id| id.to_string()).collect();
        let auth_stored = self.store.get_events(&ids).await?;
        if auth_stored.len() < ids.len() {
            tracing::info!(event = %pdu.event_id, "backfilled event without its auth events: left out");
            return Ok(false);
        }
        let auth_events =
            auth_stored.iter().map(|e| pdu_from_stored(e, version)).collect::<Result<Vec<_>>>()?;
        let create = match auth_events.iter().find(|e| e.kind == ruma::events::TimelineEventType::RoomCreate)
        {
            Some(create) => Some(create.clone()),
            None if pdu.kind == ruma::events::TimelineEventType::RoomCreate => None,
            None => self.room_create_event(&pdu.room_id, version).await?,
        };
        let auth_refs: Vec<&Pdu> = auth_events.iter().collect();
        let mut passes = !auth_events.iter().any(|e| e.rejected)
            && auth::check_against_auth_events(&pdu, &rules, &auth_refs, create.as_ref()).is_ok();
        let (state_before, before): (i64, Arc<StateMap>) = match self
            .state_before_remote(&pdu, &rules)
            .await?
        {
            Ok(found) => found,
            Err(_) => match self.fetch_state_at(server, &pdu.room_id, &pdu.event_id, version).await? {
                Ok(given) => (given.group, given.state),
                Err(e) => {
                    tracing::info!(%server, event = %pdu.event_id, error = %e, "state before backfilled event not had");
                    return Ok(false);
                }
            },
        };
        passes = passes && self.passes_state(&pdu, &rules, &before, version).await?;
        let status = if passes { EventStatus::Timeline } else { EventStatus::Rejected };
        // A redaction of an older event held here applies to it.
        let redaction = match &pdu.redacts {
            Some(target) if passes => {
                self.remote_redaction(&pdu, target, &before, create.as_ref(), version).await?
            }
            _ => None,
        };
        let json = serde_json::to_string(&pdu.json).map_err(Error::internal)?;
        let content: serde_json::Value = pdu.content_as().unwrap_or_default();
        let event_type = pdu.kind.to_string();
        let position = self.next_backfill_position().await?;
        let new = NewEvent {
            stream_ordering: position,
            event_id: &pdu.event_id,
            room_id: &pdu.room_id,
            sender: &pdu.sender,
            event_type: &event_type,
            state_key: pdu.state_key.as_deref(),
            depth: i64::try_from(pdu.depth).unwrap_or(i64::MAX),
            origin_server_ts: i64::try_from(u64::from(pdu.origin_server_ts.0)).unwrap_or(i64::MAX),
            json: &json,
            prev_events: &pdu.prev_events,
            state_before,
            membership: None,
            txn: None,
            redaction: redaction.as_ref().map(|(target, json)| (&**target, json.as_str())),
            relation: relation_of(&content).filter(|_| passes),
            push_actions: &[],
            status,
            current_state: None,
            destinations: &[],
            historical: true,
            after_gap: false,
        };
        self.store.append_event(new).await?;
        Ok(passes)
    }

    /// The next stream position below every event.
    async fn next_backfill_position(&self) -> Result<i64> {
        let mut next = self.backfill.next_position.lock().await;
        let position = match *next {
            Some(position) => position,
            None => self.store.lowest_stream_ordering().await? - 1,
        };
        *next = Some(position - 1);
        Ok(position)
    }
}
