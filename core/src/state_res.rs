//! State resolution: one room state from several (the states at the ends
//! of a forked DAG), with the room version's algorithm through
//! ruma-state-res. Spec: <https://spec.matrix.org/v1.16/rooms/v2/#state-resolution>
//! and room version 12's v2.1 (the conflicted state subgraph).
//!
//! Local appends never fork a room (they are serialised), so this runs
//! when federation brings concurrent events. Room version 1's algorithm
//! (v1) is not implemented by ruma; resolving a fork in a version 1 room
//! is refused rather than done wrongly.

use std::collections::{HashMap, HashSet};

use ruma::{
    EventId, OwnedEventId,
    events::StateEventType,
    room_version_rules::{RoomVersionRules, StateResolutionVersion},
    state_res::{self, utils::event_id_set::EventIdSet},
};

use crate::{EventError, Pdu};

/// A room state: `(type, state_key)` → event ID.
pub type StateMap = HashMap<(StateEventType, String), OwnedEventId>;

/// Resolves `states` into one. `fetch` must know every event in their auth
/// chains.
pub fn resolve_states(
    rules: &RoomVersionRules,
    states: &[StateMap],
    fetch: impl Fn(&EventId) -> Option<Pdu>,
) -> Result<StateMap, EventError> {
    let StateResolutionVersion::V2(v2) = &rules.state_res else {
        return Err(EventError::Invalid("state resolution v1 (room version 1) is not supported".into()));
    };
    let auth_chains: Vec<EventIdSet<OwnedEventId>> =
        states.iter().map(|state| auth_chain(state.values(), &fetch).into_iter().collect()).collect();
    state_res::resolve(
        &rules.authorization,
        v2,
        states.iter(),
        auth_chains,
        |id| fetch(id),
        |conflicted| Some(conflicted_subgraph(conflicted.values().flatten(), &fetch).into_iter().collect()),
    )
    .map_err(|e| EventError::Invalid(format!("state resolution failed: {e}")))
}

/// Every event reachable from `events` through `auth_events`.
fn auth_chain<'a>(
    events: impl IntoIterator<Item = &'a OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<Pdu>,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut todo: Vec<OwnedEventId> =
        events.into_iter().filter_map(|id| fetch(id)).flat_map(|pdu| pdu.auth_events).collect();
    while let Some(id) = todo.pop() {
        if chain.insert(id.clone())
            && let Some(pdu) = fetch(&id)
        {
            todo.extend(pdu.auth_events);
        }
    }
    chain
}

/// Room version 12's conflicted state subgraph: the events that lie on an
/// auth-event path from one conflicted event to another.
fn conflicted_subgraph<'a>(
    conflicted: impl IntoIterator<Item = &'a OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<Pdu>,
) -> HashSet<OwnedEventId> {
    let conflicted: HashSet<OwnedEventId> = conflicted.into_iter().cloned().collect();
    // Candidates: the conflicted events and their ancestors.
    let candidates: HashSet<OwnedEventId> =
        conflicted.iter().cloned().chain(auth_chain(conflicted.iter(), fetch)).collect();
    candidates
        .into_iter()
        .filter(|candidate| {
            // A descendant of some conflicted event (or one itself)...
            let ancestors = auth_chain(std::iter::once(candidate), fetch);
            let below_conflicted =
                conflicted.contains(candidate) || conflicted.iter().any(|c| ancestors.contains(c));
            // ...and an ancestor of some conflicted event (or one itself).
            let above_conflicted = conflicted.contains(candidate)
                || conflicted.iter().any(|c| auth_chain(std::iter::once(c), fetch).contains(candidate));
            below_conflicted && above_conflicted
        })
        .collect()
}
