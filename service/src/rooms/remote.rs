//! Events from other servers into a room's DAG: the same authorization
//! code and storage path as local appends, with the two things only
//! remote events bring: forks (several forward extremities, whose states
//! are resolved with the room version's state resolution) and the three
//! checks of the spec in order: against the event's auth events (failing:
//! rejected), against the state before it (rejected), against the room's
//! current state (soft-failed: kept in the DAG, not shown, not an
//! extremity). The caller has verified signatures and hashes
//! (`federation::verify_pdu`).
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#checks-performed-on-receipt-of-a-pdu>.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, UserId, events::TimelineEventType,
    room_version_rules::RoomVersionRules,
};
use tessera_core::{Pdu, auth, rules_for, state_res};
use tessera_storage::{EventStatus, StoredEvent, state::StateEntry, state::StateMap};

use super::{
    Rooms,
    append::{Prepared, Resolved, event_error, pdu_from_stored},
};
use crate::{Error, Result};

/// What became of a remote event.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// Stored with this status.
    Stored(EventStatus),
    /// Already held.
    Known,
    /// Its auth events, or all its previous events, are not held: these.
    Missing(Vec<OwnedEventId>),
}

/// The state before a remote event when its predecessors are not held:
/// the state a join through another server received, as a group.
pub(crate) struct GivenState {
    pub group: i64,
    pub state: Arc<StateMap>,
}

impl Rooms {
    /// The other servers with members joined to the room (cached until a
    /// membership changes).
    pub async fn remote_servers(&self, room_id: &RoomId) -> Result<Arc<Vec<OwnedServerName>>> {
        if let Some(servers) = self.servers.lock().unwrap_or_else(|p| p.into_inner()).get(room_id) {
            return Ok(servers.clone());
        }
        let mut servers = BTreeSet::new();
        for (membership, event) in self.store.room_members(room_id).await? {
            if membership == "join"
                && let Some(user) = event.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
                && user.server_name() != self.server_name
            {
                servers.insert(user.server_name().to_owned());
            }
        }
        let servers = Arc::new(servers.into_iter().collect::<Vec<_>>());
        crate::remember(
            &mut self.servers.lock().unwrap_or_else(|p| p.into_inner()),
            room_id.to_owned(),
            servers.clone(),
        );
        Ok(servers)
    }

    /// Where a local event goes: every other server in the room, and for
    /// a membership event the target's server too (a kicked or banned
    /// user's server hears of it).
    pub(super) async fn destinations_of(&self, pdu: &Pdu) -> Result<Vec<String>> {
        let mut destinations: Vec<String> =
            self.remote_servers(&pdu.room_id).await?.iter().map(|s| s.to_string()).collect();
        if pdu.kind == TimelineEventType::RoomMember
            && let Some(target) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
            && target.server_name() != self.server_name
            && !destinations.iter().any(|d| d == target.server_name().as_str())
        {
            destinations.push(target.server_name().to_string());
        }
        Ok(destinations)
    }

    /// Appends a verified event from another server. `given`: the state
    /// before it, when its predecessors are not held (a join); `forward`:
    /// other servers to send it on to (a join this server let in).
    pub(crate) async fn append_remote(
        &self,
        pdu: Pdu,
        version: &RoomVersionId,
        given: Option<GivenState>,
        forward: Vec<String>,
    ) -> Result<RemoteOutcome> {
        let rules = rules_for(version).map_err(event_error)?;
        let room_id = pdu.room_id.clone();
        let lock = self.room_lock(&room_id);
        let _guard = lock.lock().await;
        if self.store.get_event(&pdu.event_id).await?.is_some() {
            return Ok(RemoteOutcome::Known);
        }

        // 1. Against its auth events, which must all be held.
        let auth_ids: Vec<String> = pdu.auth_events.iter().map(|id| id.to_string()).collect();
        let auth_stored = self.store.get_events(&auth_ids).await?;
        let missing: Vec<OwnedEventId> = pdu
            .auth_events
            .iter()
            .filter(|id| !auth_stored.iter().any(|e| e.event_id == **id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Ok(RemoteOutcome::Missing(missing));
        }
        let auth_events =
            auth_stored.iter().map(|e| pdu_from_stored(e, version)).collect::<Result<Vec<_>>>()?;
        let create = match auth_events.iter().find(|e| e.kind == TimelineEventType::RoomCreate) {
            Some(create) => Some(create.clone()),
            None if pdu.kind == TimelineEventType::RoomCreate => None,
            // Room version 12 leaves it out of `auth_events`.
            None => self.room_create_event(&room_id, version).await?,
        };
        let auth_refs: Vec<&Pdu> = auth_events.iter().collect();
        let mut status = EventStatus::Timeline;
        let against_auth = match auth_events.iter().any(|e| e.rejected) {
            true => Err(tessera_core::EventError::AuthRejected("an auth event was rejected".into())),
            false => auth::check_against_auth_events(&pdu, &rules, &auth_refs, create.as_ref()),
        };
        if let Err(e) = against_auth {
            tracing::info!(event = %pdu.event_id, error = %e, "remote event rejected by its auth events");
            status = EventStatus::Rejected;
        }

        // 2. Against the state before it.
        let old_extremities = self.store.forward_extremities(&room_id).await?;
        let after_gap = given.is_some();
        let (state_before, before) = match given {
            Some(given) => (given.group, given.state),
            None => match self.state_before_remote(&pdu, &rules).await? {
                Ok(found) => found,
                Err(missing) => return Ok(RemoteOutcome::Missing(missing)),
            },
        };
        if status == EventStatus::Timeline && !self.passes_state(&pdu, &rules, &before, version).await? {
            tracing::info!(event = %pdu.event_id, "remote event rejected by the state before it");
            status = EventStatus::Rejected;
        }

        // 3. Against the current state (unless it is the room's state
        // already: it extends the only extremity).
        let extends_tip = old_extremities.len() == 1 && old_extremities[0].state_after == state_before;
        let forks = status == EventStatus::Timeline && !extends_tip && !old_extremities.is_empty();
        // The room's state now: after its only extremity (a cached group),
        // or as resolved into `current_state` for a fork.
        let room_now = match &old_extremities[..] {
            _ if !forks => None,
            [only] => Some(self.store.state_at_group(only.state_after).await?),
            _ => Some(Arc::new(self.current_state_map(&room_id).await?)),
        };
        if let Some(current) = &room_now
            && !self.passes_state(&pdu, &rules, current, version).await?
        {
            tracing::info!(event = %pdu.event_id, "remote event soft-failed by the current state");
            status = EventStatus::SoftFailed;
        }

        // The room's extremities and current state after it.
        let mut resolved = None;
        if status == EventStatus::Timeline && !extends_tip {
            let mut after = StateMap::clone(&before);
            if let Some(key) = &pdu.state_key {
                after.insert((pdu.kind.to_string(), key.clone()), pdu.event_id.to_string());
            }
            let others: Vec<&StoredEvent> =
                old_extremities.iter().filter(|e| !pdu.prev_events.contains(&e.event_id)).collect();
            let mut states = vec![after];
            for other in &others {
                states.push(StateMap::clone(&*self.store.state_at_group(other.state_after).await?));
            }
            let current = self.resolve(&states, &rules, version, Some(&pdu)).await?;
            let mut extremities = vec![pdu.clone()];
            for other in others {
                extremities.push(pdu_from_stored(other, version)?);
            }
            // A message on one side of a fork whose sides' states agree (the
            // common case: both servers chatting at once) changes no state:
            // no new group, and the room's current state stays.
            let unchanged = pdu.state_key.is_none() && current == *before;
            resolved = Some(if unchanged {
                let kept = room_now.as_deref() == Some(&current);
                Resolved {
                    current_state: match kept {
                        true => None,
                        false => {
                            Some(self.state_entries(&current, Some(&prepared_pdu_membership(&pdu))).await?)
                        }
                    },
                    extremities,
                    group: state_before,
                }
            } else {
                let reserved = self.streams.reserve().await?;
                let group =
                    self.store.create_state_snapshot(room_id.as_str(), reserved.position, &current).await?;
                drop(reserved);
                Resolved {
                    current_state: Some(
                        self.state_entries(&current, Some(&prepared_pdu_membership(&pdu))).await?,
                    ),
                    extremities,
                    group,
                }
            });
        }
        let prepared = Prepared {
            pdu,
            version: version.clone(),
            state_before,
            status,
            resolved,
            destinations: Some(forward),
            after_gap,
        };
        if status == EventStatus::Timeline {
            let redaction = match &prepared.pdu.redacts {
                Some(target) => {
                    self.remote_redaction(&prepared.pdu, target, &before, create.as_ref(), version).await?
                }
                None => None,
            };
            let redaction = redaction.as_ref().map(|(target, json)| (&**target, json.as_str()));
            self.persist(&prepared, None, redaction).await?;
            // A room upgraded on another server: local members' push
            // rules follow it, as for an upgrade here.
            if prepared.pdu.kind == TimelineEventType::RoomTombstone
                && prepared.pdu.state_key.as_deref() == Some("")
            {
                let content: serde_json::Value = prepared.pdu.content_as().unwrap_or_default();
                if let Some(replacement) =
                    content.get("replacement_room").and_then(|r| RoomId::parse(r.as_str()?).ok())
                {
                    self.carry_push_rules(&room_id, &replacement).await;
                }
            }
        } else {
            let destinations: Vec<&str> =
                prepared.destinations.iter().flatten().map(String::as_str).collect();
            self.persist_out_of_timeline(&prepared, &destinations).await?;
        }
        Ok(RemoteOutcome::Stored(status))
    }

    /// What a remote redaction does to its target: the target's redacted
    /// JSON, if the target is held (in this room) and the redaction's
    /// sender may redact it — its own event, one of its server's users'
    /// (the spec lets a server redact its own users' events), or with the
    /// `redact` level in the state before the redaction. Otherwise the
    /// redaction is kept and the target left as it is (it may arrive later:
    /// not yet applied then).
    pub(super) async fn remote_redaction(
        &self,
        redaction: &Pdu,
        target: &EventId,
        before: &StateMap,
        create: Option<&Pdu>,
        version: &RoomVersionId,
    ) -> Result<Option<(OwnedEventId, String)>> {
        let rules = rules_for(version).map_err(event_error)?;
        let Some(stored) =
            self.store.get_event(target).await?.filter(|e| e.room_id == redaction.room_id.as_str())
        else {
            return Ok(None);
        };
        if stored.redacted_by.is_some() {
            return Ok(None);
        }
        let target_pdu = pdu_from_stored(&stored, version)?;
        let allowed = target_pdu.sender.server_name() == redaction.sender.server_name() || {
            let levels = match before.get(&("m.room.power_levels".to_owned(), String::new())) {
                Some(id) => {
                    match self.store.get_event(&EventId::parse(id.as_str()).map_err(Error::internal)?).await?
                    {
                        Some(stored) => Some(pdu_from_stored(&stored, version)?),
                        None => None,
                    }
                }
                None => None,
            };
            create.is_some_and(|create| {
                tessera_core::power::may_redact(
                    &redaction.sender,
                    Some(&target_pdu.sender),
                    create,
                    levels.as_ref(),
                    &rules,
                )
            })
        };
        if !allowed {
            return Ok(None);
        }
        let redacted = target_pdu.redacted_json(&rules).map_err(event_error)?;
        Ok(Some((target.to_owned(), serde_json::to_string(&redacted).map_err(Error::internal)?)))
    }

    /// The room's current state as a map (from `current_state`).
    pub(super) async fn current_state_map(&self, room_id: &RoomId) -> Result<StateMap> {
        Ok(self
            .store
            .current_state(room_id)
            .await?
            .into_iter()
            .filter_map(|e| Some(((e.event_type, e.state_key?), e.event_id.to_string())))
            .collect())
    }

    /// The room's create event, if held: found by its ID where the room
    /// ID is derived from it (version 12), else in the current state.
    pub(super) async fn room_create_event(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
    ) -> Result<Option<Pdu>> {
        let stored = match room_id.server_name() {
            None => {
                let id = format!("${}", room_id.as_str().trim_start_matches('!'));
                match EventId::parse(&id) {
                    Ok(id) => self.store.get_event(&id).await?,
                    Err(_) => None,
                }
            }
            Some(_) => self.store.current_state_event(room_id, "m.room.create", "").await?,
        };
        stored.map(|stored| pdu_from_stored(&stored, version)).transpose()
    }

    /// The state before a remote event: the state after its previous
    /// events that are held in the timeline, resolved if they differ.
    /// Previous events not held are passed over (a gap); if none is held,
    /// they are what is missing.
    pub(super) async fn state_before_remote(
        &self,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> Result<std::result::Result<(i64, Arc<StateMap>), Vec<OwnedEventId>>> {
        let version = self.room_version(&pdu.room_id).await?;
        let ids: Vec<String> = pdu.prev_events.iter().map(|id| id.to_string()).collect();
        let prevs: Vec<StoredEvent> = self
            .store
            .get_events(&ids)
            .await?
            .into_iter()
            // Events held without a state (outliers, and those rejected
            // as outliers) do not count.
            .filter(|e| {
                e.room_id == pdu.room_id.as_str()
                    && e.status != EventStatus::Outlier
                    && !(e.status == EventStatus::Rejected && e.state_after == tessera_storage::state::EMPTY)
            })
            .collect();
        if prevs.is_empty() {
            if pdu.kind == TimelineEventType::RoomCreate {
                return Ok(Ok((tessera_storage::state::EMPTY, Arc::default())));
            }
            return Ok(Err(pdu.prev_events.clone()));
        }
        let mut groups: Vec<i64> = prevs.iter().map(|e| e.state_after).collect();
        groups.sort_unstable();
        groups.dedup();
        if let [group] = groups[..] {
            return Ok(Ok((group, self.store.state_at_group(group).await?)));
        }
        let mut states = Vec::with_capacity(groups.len());
        for group in &groups {
            states.push(self.store.state_at_group(*group).await?);
        }
        // Different groups standing for the same state (each side of a
        // fork of messages gets its own): no resolution, no new group.
        if states.windows(2).all(|pair| pair[0] == pair[1]) {
            return Ok(Ok((groups[0], states.swap_remove(0))));
        }
        let states: Vec<StateMap> = states.iter().map(|state| StateMap::clone(state)).collect();
        let resolved = self.resolve(&states, rules, &version, None).await?;
        let reserved = self.streams.reserve().await?;
        let group =
            self.store.create_state_snapshot(pdu.room_id.as_str(), reserved.position, &resolved).await?;
        drop(reserved);
        Ok(Ok((group, Arc::new(resolved))))
    }

    /// Whether `pdu` passes the rules against `state`.
    pub(super) async fn passes_state(
        &self,
        pdu: &Pdu,
        rules: &RoomVersionRules,
        state: &StateMap,
        version: &RoomVersionId,
    ) -> Result<bool> {
        let Ok(types) =
            auth::auth_types(&pdu.kind, &pdu.sender, pdu.state_key.as_deref(), &pdu.content, rules)
        else {
            return Ok(false);
        };
        let mut ids: Vec<String> = types
            .iter()
            .filter_map(|(kind, key)| state.get(&(kind.to_string(), key.clone())).cloned())
            .collect();
        if let Some(create) = state.get(&("m.room.create".to_owned(), String::new())) {
            ids.push(create.clone());
        }
        let events = self.store.get_events(&ids).await?;
        let events = events.iter().map(|e| pdu_from_stored(e, version)).collect::<Result<Vec<_>>>()?;
        let verdict = auth::check_against_state(pdu, rules, |kind, key| {
            events
                .iter()
                .find(|e| e.kind.to_string() == kind.to_string() && e.state_key.as_deref() == Some(key))
        });
        if let Err(e) = &verdict {
            tracing::debug!(event = %pdu.event_id, error = %e, state = state.len(), "refused by a state");
        }
        Ok(verdict.is_ok())
    }

    /// Resolves room states with the room version's algorithm; every event
    /// of their auth chains must be held.
    /// `pending`: an event of the states not stored yet (the one being
    /// appended).
    async fn resolve(
        &self,
        states: &[StateMap],
        rules: &RoomVersionRules,
        version: &RoomVersionId,
        pending: Option<&Pdu>,
    ) -> Result<StateMap> {
        if states.windows(2).all(|pair| pair[0] == pair[1]) {
            return Ok(states.first().cloned().unwrap_or_default());
        }
        // Load every event the resolution may look at: the states' events
        // and their auth chains.
        let mut known: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut todo: Vec<String> = states.iter().flat_map(|s| s.values().cloned()).collect();
        if let Some(pdu) = pending {
            todo.extend(pdu.auth_events.iter().map(|id| id.to_string()));
            known.insert(pdu.event_id.clone(), pdu.clone());
        }
        while !todo.is_empty() {
            todo.retain(|id| EventId::parse(id.as_str()).is_ok_and(|id| !known.contains_key(&id)));
            todo.sort();
            todo.dedup();
            let batch: Vec<String> = todo.drain(..todo.len().min(500)).collect();
            if batch.is_empty() {
                break;
            }
            for stored in self.store.get_events(&batch).await? {
                let pdu = pdu_from_stored(&stored, version)?;
                todo.extend(
                    pdu.auth_events.iter().filter(|id| !known.contains_key(*id)).map(|id| id.to_string()),
                );
                known.insert(pdu.event_id.clone(), pdu);
            }
            if known.len() > 200_000 {
                return Err(Error::internal("state resolution over more than 200,000 events"));
            }
        }
        let maps: Vec<state_res::StateMap> = states
            .iter()
            .map(|state| {
                state
                    .iter()
                    .filter_map(|((kind, key), id)| {
                        Some(((kind.as_str().into(), key.clone()), EventId::parse(id.as_str()).ok()?))
                    })
                    .collect()
            })
            .collect();
        let resolved =
            state_res::resolve_states(rules, &maps, |id| known.get(id).cloned()).map_err(event_error)?;
        Ok(resolved.into_iter().map(|((kind, key), id)| ((kind.to_string(), key), id.to_string())).collect())
    }

    /// A state as storage rows, with each member event's membership.
    /// `pending`: an event not stored yet (the one being appended), with
    /// its membership.
    pub(super) async fn state_entries(
        &self,
        state: &StateMap,
        pending: Option<&(String, Option<String>)>,
    ) -> Result<Vec<StateEntry>> {
        let member_ids: Vec<String> =
            state.iter().filter(|((kind, _), _)| kind == "m.room.member").map(|(_, id)| id.clone()).collect();
        let mut memberships = HashMap::new();
        if let Some((id, membership)) = pending {
            memberships.insert(id.clone(), membership.clone());
        }
        for chunk in member_ids.chunks(500) {
            for event in self.store.get_events(chunk).await? {
                let membership = event
                    .content()
                    .and_then(|c| c.get("membership"))
                    .and_then(|m| m.as_str())
                    .map(str::to_owned);
                memberships.insert(event.event_id.to_string(), membership);
            }
        }
        Ok(state
            .iter()
            .map(|((kind, key), id)| StateEntry {
                event_type: kind.clone(),
                state_key: key.clone(),
                event_id: id.clone(),
                membership: memberships.get(id).cloned().flatten(),
            })
            .collect())
    }

    /// Stores an event outside the timeline (rejected, soft-failed or an
    /// outlier): the row and its edges, nothing a client sees.
    pub(super) async fn persist_out_of_timeline(
        &self,
        prepared: &Prepared,
        destinations: &[&str],
    ) -> Result<i64> {
        let pdu = &prepared.pdu;
        let json = serde_json::to_string(&pdu.json).map_err(Error::internal)?;
        let event_type = pdu.kind.to_string();
        let position = self.streams.reserve().await?;
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
            state_before: prepared.state_before,
            membership: None,
            txn: None,
            redaction: None,
            relation: None,
            push_actions: &[],
            status: prepared.status,
            current_state: None,
            destinations,
            historical: false,
            after_gap: false,
        };
        self.store.append_event(new).await?;
        Ok(position.position)
    }

    /// Stores events another server sent as context (a join's state and
    /// auth chain), oldest first, each checked against its auth events
    /// (rejected if it fails): outliers, outside the timeline.
    pub(crate) async fn store_outliers(&self, events: Vec<Pdu>, version: &RoomVersionId) -> Result<()> {
        let rules = rules_for(version).map_err(event_error)?;
        let events = auth_order(events);
        let mut held: HashMap<OwnedEventId, Pdu> = HashMap::new();
        for mut pdu in events {
            if held.contains_key(&pdu.event_id) {
                continue;
            }
            if let Some(stored) = self.store.get_event(&pdu.event_id).await? {
                held.insert(pdu.event_id.clone(), pdu_from_stored(&stored, version)?);
                continue;
            }
            let mut auth_events = Vec::new();
            for id in &pdu.auth_events {
                match held.get(id) {
                    Some(event) => auth_events.push(event.clone()),
                    None => {
                        if let Some(stored) = self.store.get_event(id).await? {
                            auth_events.push(pdu_from_stored(&stored, version)?);
                        }
                    }
                }
            }
            let create =
                auth_events.iter().find(|e| e.kind == TimelineEventType::RoomCreate).cloned().or_else(|| {
                    held.values()
                        .find(|e| e.kind == TimelineEventType::RoomCreate && e.room_id == pdu.room_id)
                        .cloned()
                });
            // Room version 12 leaves the create event out of `auth_events`:
            // it may be held from before this batch.
            let create = match create {
                Some(create) => Some(create),
                None if pdu.kind == TimelineEventType::RoomCreate => None,
                None => self.room_create_event(&pdu.room_id, version).await?,
            };
            let refs: Vec<&Pdu> = auth_events.iter().collect();
            let verdict = if auth_events.len() != pdu.auth_events.len() {
                let missing: Vec<&OwnedEventId> = pdu
                    .auth_events
                    .iter()
                    .filter(|id| !auth_events.iter().any(|e| e.event_id == **id))
                    .collect();
                Err(format!("auth events missing: {missing:?}"))
            } else if auth_events.iter().any(|e| e.rejected) {
                Err("an auth event was rejected".to_owned())
            } else {
                auth::check_against_auth_events(&pdu, &rules, &refs, create.as_ref())
                    .map_err(|e| e.to_string())
            };
            let status = match verdict {
                Ok(()) => EventStatus::Outlier,
                Err(reason) => {
                    tracing::info!(event = %pdu.event_id, %reason, "outlier rejected");
                    EventStatus::Rejected
                }
            };
            pdu.rejected = status == EventStatus::Rejected;
            let prepared = Prepared {
                pdu,
                version: version.clone(),
                state_before: tessera_storage::state::EMPTY,
                status,
                resolved: None,
                destinations: Some(Vec::new()),
                after_gap: false,
            };
            self.persist_out_of_timeline(&prepared, &[]).await?;
            held.insert(prepared.pdu.event_id.clone(), prepared.pdu);
        }
        Ok(())
    }
}

/// An event's ID and, for a member event, its membership.
fn prepared_pdu_membership(pdu: &Pdu) -> (String, Option<String>) {
    let membership = (pdu.kind == TimelineEventType::RoomMember)
        .then(|| pdu.content_as::<serde_json::Value>().ok())
        .flatten()
        .and_then(|c| c.get("membership").and_then(|m| m.as_str()).map(str::to_owned));
    (pdu.event_id.to_string(), membership)
}

/// How many events one `get_missing_events` asks for.
const MISSING_EVENTS_LIMIT: u32 = 20;
/// How many events of a state not held are fetched one by one at most
/// (more: the whole state is asked for).
const MAX_FETCHED_STATE_EVENTS: usize = 100;
/// How many missing auth events are fetched one by one at most.
const MAX_FETCHED_AUTH_EVENTS: usize = 50;
/// How many events of an `/event_auth` answer are taken at most.
const MAX_EVENT_AUTH_CHAIN: usize = 10_000;

impl Rooms {
    /// The room's version, if this server holds the room.
    pub async fn version_if_known(&self, room_id: &RoomId) -> Result<Option<RoomVersionId>> {
        match self.room_version(room_id).await {
            Ok(version) => Ok(Some(version)),
            Err(Error::Matrix { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A PDU received from `origin` (`PUT /send`): verified, its missing
    /// predecessors fetched from `origin` (`/get_missing_events`) and its
    /// missing auth events too (`/event`), then appended. An error is
    /// this PDU's alone (the transaction goes on).
    pub async fn receive_pdu(
        &self,
        origin: &ruma::ServerName,
        json: &serde_json::value::RawValue,
    ) -> Result<OwnedEventId> {
        let object: ruma::CanonicalJsonObject =
            serde_json::from_str(json.get()).map_err(|e| Error::bad_json(format!("not a PDU: {e}")))?;
        let room_id = match object.get("room_id") {
            Some(ruma::CanonicalJsonValue::String(id)) => {
                RoomId::parse(id.as_str()).map_err(|e| Error::bad_json(e.to_string()))?
            }
            _ => return Err(Error::bad_json("the PDU has no room ID")),
        };
        let Some(version) = self.version_if_known(&room_id).await? else {
            // Not in the room: only the end of a local user's invite or
            // knock held out of band (a rescinded invite) is taken.
            return self.receive_out_of_band_membership(object, &room_id).await;
        };
        self.check_server_acl(&room_id, origin).await?;
        let pdu =
            crate::federation::verify_pdu(&self.federation.server_keys, object, Some(&room_id), &version)
                .await
                .map_err(event_error)?;
        let event_id = pdu.event_id.clone();
        match self.append_remote(pdu.clone(), &version, None, Vec::new()).await? {
            RemoteOutcome::Missing(_) => {}
            RemoteOutcome::Stored(EventStatus::Rejected) => {
                return Err(Error::forbidden("The event was rejected"));
            }
            _ => return Ok(event_id),
        }
        // Fetch what is missing once, then try again.
        self.fetch_missing(origin, &pdu, &version).await?;
        let outcome = match self.append_remote(pdu.clone(), &version, None, Vec::new()).await? {
            RemoteOutcome::Missing(_) => self.append_across_gap(origin, pdu, &version).await?,
            outcome => outcome,
        };
        match outcome {
            RemoteOutcome::Missing(ids) => Err(Error::new(
                400,
                ruma::api::error::ErrorKind::Unknown,
                format!("{} events it depends on could not be fetched", ids.len()),
            )),
            RemoteOutcome::Stored(EventStatus::Rejected) => Err(Error::forbidden("The event was rejected")),
            _ => Ok(event_id),
        }
    }

    /// Fetches from `origin` the previous events of `pdu` this server lacks
    /// (between its forward extremities and `pdu`), appending them oldest
    /// first, and the auth events it lacks, as outliers.
    async fn fetch_missing(
        &self,
        origin: &ruma::ServerName,
        pdu: &Pdu,
        version: &RoomVersionId,
    ) -> Result<()> {
        let remote = &self.federation.remote;
        let ids: Vec<String> = pdu.prev_events.iter().map(|id| id.to_string()).collect();
        let held = self.store.get_events(&ids).await?;
        if held.len() < ids.len() {
            let earliest: Vec<OwnedEventId> =
                self.store.forward_extremities(&pdu.room_id).await?.into_iter().map(|e| e.event_id).collect();
            match remote
                .get_missing_events(
                    origin,
                    &pdu.room_id,
                    earliest,
                    vec![pdu.event_id.clone()],
                    MISSING_EVENTS_LIMIT,
                )
                .await
            {
                Ok(events) => {
                    let mut verified = Vec::new();
                    for json in events.iter().take(MISSING_EVENTS_LIMIT as usize) {
                        let Ok(object) = serde_json::from_str::<ruma::CanonicalJsonObject>(json.get()) else {
                            continue;
                        };
                        match crate::federation::verify_pdu(
                            &self.federation.server_keys,
                            object,
                            Some(&pdu.room_id),
                            version,
                        )
                        .await
                        {
                            Ok(event) => verified.push(event),
                            Err(e) => tracing::info!(%origin, error = %e, "missing event refused"),
                        }
                    }
                    verified.sort_by_key(|e| e.depth);
                    for event in verified {
                        let mut outcome =
                            self.append_remote(event.clone(), version, None, Vec::new()).await?;
                        // Missing auth events are fetched (as outliers);
                        // missing previous events are a gap.
                        if let RemoteOutcome::Missing(ids) = &outcome {
                            let auth: Vec<OwnedEventId> =
                                ids.iter().filter(|id| event.auth_events.contains(id)).cloned().collect();
                            if !auth.is_empty() {
                                self.fetch_auth_events(origin, &auth, version).await?;
                                outcome =
                                    self.append_remote(event.clone(), version, None, Vec::new()).await?;
                            }
                        }
                        if let RemoteOutcome::Missing(_) = outcome {
                            self.append_across_gap(origin, event, version).await?;
                        }
                    }
                }
                Err(e) => tracing::info!(%origin, error = %e, "missing events not fetched"),
            }
        }
        self.fetch_missing_auth_events(origin, pdu, version).await
    }

    /// Fetches from `origin` the auth events of `pdu` this server lacks
    /// (and theirs), as outliers.
    pub(super) async fn fetch_missing_auth_events(
        &self,
        origin: &ruma::ServerName,
        pdu: &Pdu,
        version: &RoomVersionId,
    ) -> Result<()> {
        let ids: Vec<String> = pdu.auth_events.iter().map(|id| id.to_string()).collect();
        let held = self.store.get_events(&ids).await?;
        let missing: Vec<OwnedEventId> =
            pdu.auth_events.iter().filter(|id| !held.iter().any(|e| e.event_id == **id)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        // The whole chain in one request (`/event_auth`), as Synapse asks:
        // a long chain (a member changing their name many times) is more
        // than fetching one by one may bring, and a partial one is rejected.
        match self.federation.remote.event_auth(origin, &pdu.room_id, &pdu.event_id).await {
            Ok(chain) => {
                let mut events = Vec::with_capacity(chain.len());
                for json in chain.iter().take(MAX_EVENT_AUTH_CHAIN) {
                    if let Some(event) = self.verified(json, &pdu.room_id, version).await {
                        events.push(event);
                    }
                }
                self.store_outliers(events, version).await?;
            }
            Err(e) => tracing::info!(%origin, event = %pdu.event_id, error = %e, "auth chain not fetched"),
        }
        let held = self.store.get_events(&ids).await?;
        let missing: Vec<OwnedEventId> =
            pdu.auth_events.iter().filter(|id| !held.iter().any(|e| e.event_id == **id)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.fetch_auth_events(origin, &missing, version).await
    }

    /// Fetches events (and, transitively, their own missing auth events)
    /// from `origin` and stores them as outliers.
    async fn fetch_auth_events(
        &self,
        origin: &ruma::ServerName,
        ids: &[OwnedEventId],
        version: &RoomVersionId,
    ) -> Result<()> {
        let mut todo: Vec<OwnedEventId> = ids.to_vec();
        let mut fetched: Vec<Pdu> = Vec::new();
        while let Some(id) = todo.pop() {
            if fetched.len() >= MAX_FETCHED_AUTH_EVENTS {
                break;
            }
            if fetched.iter().any(|e| e.event_id == id) || self.store.get_event(&id).await?.is_some() {
                continue;
            }
            let json = match self.federation.remote.get_event(origin, &id).await {
                Ok(json) => json,
                Err(e) => {
                    tracing::info!(%origin, event = %id, error = %e, "auth event not fetched");
                    continue;
                }
            };
            let Ok(object) = serde_json::from_str::<ruma::CanonicalJsonObject>(json.get()) else { continue };
            match crate::federation::verify_pdu(&self.federation.server_keys, object, None, version).await {
                Ok(event) if event.event_id == id => {
                    todo.extend(event.auth_events.iter().cloned());
                    fetched.push(event);
                }
                Ok(_) => tracing::info!(%origin, event = %id, "fetched event has another ID"),
                Err(e) => tracing::info!(%origin, event = %id, error = %e, "fetched auth event refused"),
            }
        }
        self.store_outliers(fetched, version).await
    }
}

impl Rooms {
    /// Queues an EDU about the room (typing, a receipt) for every other
    /// server with a member joined, and wakes their senders.
    pub(crate) async fn send_edu_to_room(&self, room_id: &RoomId, edu: &serde_json::Value) -> Result<()> {
        let servers = self.remote_servers(room_id).await?;
        self.send_edu(&servers, edu).await
    }

    /// The other servers with a user who shares a joined room with `user`:
    /// where news of the user's presence and devices goes.
    pub async fn servers_sharing_with(&self, user: &UserId) -> Result<Vec<OwnedServerName>> {
        let mut servers = BTreeSet::new();
        for other in self.store.users_sharing_rooms(user).await? {
            if let Ok(other) = UserId::parse(&other)
                && other.server_name() != self.server_name
            {
                servers.insert(other.server_name().to_owned());
            }
        }
        Ok(servers.into_iter().collect())
    }

    /// Queues an EDU for each of `servers` and wakes their senders.
    pub(crate) async fn send_edu(&self, servers: &[OwnedServerName], edu: &serde_json::Value) -> Result<()> {
        if servers.is_empty() {
            return Ok(());
        }
        let json = edu.to_string();
        let rows: Vec<(&str, &str)> = servers.iter().map(|s| (s.as_str(), json.as_str())).collect();
        self.store.queue_edus(&rows).await?;
        for server in servers {
            self.federation.outbox.wake(server);
        }
        Ok(())
    }
}

impl Rooms {
    /// Whether the room's `m.room.server_acl` (current state) lets `server`
    /// take part: no ACL lets everyone; an unreadable one nobody but this
    /// server.
    pub async fn server_allowed(&self, room_id: &RoomId, server: &ruma::ServerName) -> Result<bool> {
        let Some(acl) = self.store.current_state_event(room_id, "m.room.server_acl", "").await? else {
            return Ok(true);
        };
        let content = acl.content().cloned().and_then(|c| {
            serde_json::from_value::<ruma::events::room::server_acl::RoomServerAclEventContent>(c).ok()
        });
        Ok(match content {
            Some(content) => content.is_allowed(server),
            None => server == self.server_name,
        })
    }

    /// 403 unless the room's server ACL lets `server` take part.
    pub(crate) async fn check_server_acl(&self, room_id: &RoomId, server: &ruma::ServerName) -> Result<()> {
        match self.server_allowed(room_id, server).await? {
            true => Ok(()),
            false => Err(Error::forbidden("The room's server ACL bans this server")),
        }
    }

    /// A room state another server sent (a join's answer, `/state` for a
    /// gap): its events and auth chain verified and stored as outliers,
    /// and the state (the events held, not rejected) written as a
    /// snapshot group.
    pub(super) async fn store_received_state(
        &self,
        server: &ruma::ServerName,
        room_id: &RoomId,
        version: &RoomVersionId,
        state: &[Box<serde_json::value::RawValue>],
        auth_chain: &[Box<serde_json::value::RawValue>],
    ) -> Result<GivenState> {
        let mut state_events = Vec::new();
        for json in state {
            if let Some(pdu) = self.verified(json, room_id, version).await {
                state_events.push(pdu);
            }
        }
        let mut context = state_events.clone();
        for json in auth_chain {
            if let Some(pdu) = self.verified(json, room_id, version).await {
                context.push(pdu);
            }
        }
        // Auth events the answer left out (its auth chain incomplete) are
        // asked of the same server first: an outlier without its auth
        // events is rejected.
        let given: HashSet<&OwnedEventId> = context.iter().map(|e| &e.event_id).collect();
        let referenced: BTreeSet<OwnedEventId> = context
            .iter()
            .flat_map(|e| e.auth_events.iter())
            .filter(|id| !given.contains(id))
            .cloned()
            .collect();
        let referenced: Vec<OwnedEventId> = referenced.into_iter().collect();
        let keys: Vec<String> = referenced.iter().map(|id| id.to_string()).collect();
        let held: HashSet<OwnedEventId> =
            self.store.get_events(&keys).await?.into_iter().map(|e| e.event_id).collect();
        let missing: Vec<OwnedEventId> = referenced.into_iter().filter(|id| !held.contains(id)).collect();
        if !missing.is_empty() {
            self.fetch_auth_events(server, &missing, version).await?;
        }
        self.store_outliers(context, version).await?;
        let ids: Vec<String> = state_events.iter().map(|e| e.event_id.to_string()).collect();
        let mut state = StateMap::new();
        for chunk in ids.chunks(500) {
            for event in self.store.get_events(chunk).await? {
                if !event.rejected
                    && let Some(key) = event.state_key.clone()
                {
                    state.insert((event.event_type.clone(), key), event.event_id.to_string());
                }
            }
        }
        let reserved = self.streams.reserve().await?;
        let group = self.store.create_state_snapshot(room_id.as_str(), reserved.position, &state).await?;
        drop(reserved);
        Ok(GivenState { group, state: Arc::new(state) })
    }

    /// The state before `event_id` as `server` has it, stored (see
    /// [`Rooms::store_received_state`]). Its IDs are asked first
    /// (`/state_ids`) and the events not held fetched one by one (`/event`)
    /// when they are few, as Synapse does; else, or when a state event
    /// cannot be had, the whole state (`/state`).
    pub(super) async fn fetch_state_at(
        &self,
        server: &ruma::ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        version: &RoomVersionId,
    ) -> Result<std::result::Result<GivenState, crate::federation::RemoteError>> {
        let remote = &self.federation.remote;
        if let Ok(ids) = remote.room_state_ids(server, room_id, event_id).await {
            let wanted: Vec<String> =
                ids.pdu_ids.iter().chain(&ids.auth_chain_ids).map(|id| id.to_string()).collect();
            let mut jsons: HashMap<String, Box<serde_json::value::RawValue>> = HashMap::new();
            for chunk in wanted.chunks(500) {
                for event in self.store.get_events(chunk).await? {
                    if let Ok(json) = serde_json::value::RawValue::from_string(event.json.to_string()) {
                        jsons.insert(event.event_id.to_string(), json);
                    }
                }
            }
            let missing: Vec<&String> = wanted.iter().filter(|id| !jsons.contains_key(*id)).collect();
            if missing.len() <= MAX_FETCHED_STATE_EVENTS {
                for id in missing {
                    let Ok(event_id) = EventId::parse(id) else { continue };
                    match remote.get_event(server, &event_id).await {
                        Ok(json) => {
                            jsons.insert(id.clone(), json);
                        }
                        Err(e) => tracing::info!(%server, event = %id, error = %e, "state event not fetched"),
                    }
                }
                // The state itself is needed whole; an auth chain event
                // that cannot be had leaves the events that need it
                // rejected, as the rules say, not the whole state unread.
                if ids.pdu_ids.iter().all(|id| jsons.contains_key(id.as_str())) {
                    let pick = |ids: &[OwnedEventId]| -> Vec<Box<serde_json::value::RawValue>> {
                        ids.iter().filter_map(|id| jsons.get(id.as_str()).cloned()).collect()
                    };
                    let (state, auth_chain) = (pick(&ids.pdu_ids), pick(&ids.auth_chain_ids));
                    return Ok(Ok(self
                        .store_received_state(server, room_id, version, &state, &auth_chain)
                        .await?));
                }
            }
        }
        match remote.room_state(server, room_id, event_id).await {
            Ok(answer) => Ok(Ok(self
                .store_received_state(server, room_id, version, &answer.pdus, &answer.auth_chain)
                .await?)),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Appends `pdu`, whose previous events cannot be had, on the state
    /// before it as `origin` gives it: a gap in the DAG here. As Synapse
    /// does, the state after each missing previous event is asked for
    /// (`/state_ids` at it, plus the event itself) and the states are
    /// resolved; when that fails, the state before `pdu` itself.
    async fn append_across_gap(
        &self,
        origin: &ruma::ServerName,
        pdu: Pdu,
        version: &RoomVersionId,
    ) -> Result<RemoteOutcome> {
        let given = match self.state_after_missing_prevs(origin, &pdu, version).await? {
            Some(given) => given,
            None => match self.fetch_state_at(origin, &pdu.room_id, &pdu.event_id, version).await? {
                Ok(given) => given,
                Err(e) => {
                    tracing::info!(%origin, event = %pdu.event_id, error = %e, "state across a gap not fetched");
                    return Ok(RemoteOutcome::Missing(pdu.prev_events.clone()));
                }
            },
        };
        tracing::info!(%origin, event = %pdu.event_id, state = given.state.len(), "appended across a gap in the DAG");
        self.append_remote(pdu, version, Some(given), Vec::new()).await
    }

    /// The state before `pdu` from the states after its previous events:
    /// those held in the timeline as held, the others as `origin` gives
    /// them (the state before each, and the event itself, stored as
    /// outliers); resolved when they differ. `None` when one cannot be had.
    async fn state_after_missing_prevs(
        &self,
        origin: &ruma::ServerName,
        pdu: &Pdu,
        version: &RoomVersionId,
    ) -> Result<Option<GivenState>> {
        const MAX_PREVS: usize = 10;
        if pdu.prev_events.len() > MAX_PREVS {
            return Ok(None);
        }
        let rules = rules_for(version).map_err(event_error)?;
        let ids: Vec<String> = pdu.prev_events.iter().map(|id| id.to_string()).collect();
        let held: HashMap<OwnedEventId, StoredEvent> = self
            .store
            .get_events(&ids)
            .await?
            .into_iter()
            .filter(|e| e.room_id == pdu.room_id.as_str() && e.status == EventStatus::Timeline)
            .map(|e| (e.event_id.clone(), e))
            .collect();
        let mut states: Vec<StateMap> = Vec::new();
        for prev in &pdu.prev_events {
            if let Some(event) = held.get(prev) {
                states.push(StateMap::clone(&*self.store.state_at_group(event.state_after).await?));
                continue;
            }
            let Ok(before) = self.fetch_state_at(origin, &pdu.room_id, prev, version).await? else {
                return Ok(None);
            };
            let event = match self.federation.remote.get_event(origin, prev).await {
                Ok(json) => self.verified(&json, &pdu.room_id, version).await,
                Err(e) => {
                    tracing::info!(%origin, event = %prev, error = %e, "event before a gap not fetched");
                    None
                }
            };
            let Some(event) = event.filter(|e| e.event_id == *prev) else { return Ok(None) };
            let mut after = StateMap::clone(&before.state);
            if let Some(key) = &event.state_key {
                after.insert((event.kind.to_string(), key.clone()), event.event_id.to_string());
            }
            self.store_outliers(vec![event], version).await?;
            states.push(after);
        }
        let state = self.resolve(&states, &rules, version, Some(pdu)).await?;
        let reserved = self.streams.reserve().await?;
        let group = self.store.create_state_snapshot(pdu.room_id.as_str(), reserved.position, &state).await?;
        drop(reserved);
        Ok(Some(GivenState { group, state: Arc::new(state) }))
    }

    /// A PDU of the room from a state answer (`send_join`, `/state`), verified; `None` (and
    /// logged) if it is not.
    pub(super) async fn verified(
        &self,
        json: &serde_json::value::RawValue,
        room_id: &RoomId,
        version: &RoomVersionId,
    ) -> Option<Pdu> {
        let object: ruma::CanonicalJsonObject = serde_json::from_str(json.get()).ok()?;
        match crate::federation::verify_pdu(&self.federation.server_keys, object, Some(room_id), version)
            .await
        {
            Ok(pdu) => Some(pdu),
            Err(e) => {
                tracing::info!(room = %room_id, error = %e, "event of a join's state refused");
                None
            }
        }
    }
}

/// A batch of events ordered so that each comes after those of its auth
/// events that are in the batch (the depth an event claims is no proof),
/// in depth order among those ready; events in a cycle go last, by depth.
fn auth_order(mut events: Vec<Pdu>) -> Vec<Pdu> {
    use std::{cmp::Reverse, collections::BinaryHeap};
    events.sort_by_key(|e| e.depth);
    let count = events.len();
    let index: HashMap<&OwnedEventId, usize> =
        events.iter().enumerate().map(|(i, e)| (&e.event_id, i)).collect();
    let mut waiting_on = vec![0usize; count];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, event) in events.iter().enumerate() {
        for id in &event.auth_events {
            if let Some(&j) = index.get(id)
                && j != i
            {
                waiting_on[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..count).filter(|&i| waiting_on[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(count);
    let mut placed = vec![false; count];
    while let Some(Reverse(i)) = ready.pop() {
        placed[i] = true;
        order.push(i);
        for &k in &dependents[i] {
            waiting_on[k] -= 1;
            if waiting_on[k] == 0 {
                ready.push(Reverse(k));
            }
        }
    }
    order.extend((0..count).filter(|&i| !placed[i]));
    let mut slots: Vec<Option<Pdu>> = events.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}
