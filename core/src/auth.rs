//! Authorization: which state events authorise a new event, and the spec's
//! checks, through ruma-state-res.
//!
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#checks-performed-on-receipt-of-a-pdu>.
//! An event is checked (1) against its auth events, (2) against the state
//! before it and (3) against the current state. For a local event appended
//! to a room with a single forward extremity, (2) and (3) are the same
//! state; federation will call the same functions with different states.

use std::collections::HashMap;

use ruma::{
    EventId, UserId,
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res::{
        self,
        events::{RoomCreateEvent, RoomPowerLevelsEvent},
    },
};
use serde_json::value::RawValue as RawJsonValue;

use crate::{EventError, Pdu};

/// The `(type, state_key)` pairs of the current state that must be the new
/// event's `auth_events`.
pub fn auth_types(
    kind: &TimelineEventType,
    sender: &UserId,
    state_key: Option<&str>,
    content: &RawJsonValue,
    rules: &RoomVersionRules,
) -> Result<Vec<(StateEventType, String)>, EventError> {
    state_res::auth_types_for_event(kind, sender, state_key, content, &rules.authorization)
        .map_err(EventError::Invalid)
}

/// Check (1): the rules that depend only on the event and its auth events.
/// From room version 12 the create event is not among the auth events but
/// is found through the room ID, so the caller passes it separately.
pub fn check_against_auth_events(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    auth_events: &[&Pdu],
    room_create: Option<&Pdu>,
) -> Result<(), EventError> {
    let known: HashMap<&EventId, &Pdu> =
        auth_events.iter().copied().chain(room_create).map(|e| (&*e.event_id, e)).collect();
    state_res::check_state_independent_auth_rules(&rules.authorization, pdu, |id: &EventId| {
        known.get(id).copied()
    })
    .map_err(EventError::AuthRejected)?;
    // The state-dependent rules, with the auth events standing in for state.
    let by_key: HashMap<(StateEventType, &str), &Pdu> = known
        .values()
        .filter_map(|e| Some(((e.kind.to_string().into(), e.state_key.as_deref()?), *e)))
        .collect();
    check_against_state(pdu, rules, |kind, key| by_key.get(&(kind.clone(), key)).copied())
}

/// Checks (2) and (3): the rules that depend on a room state.
pub fn check_against_state<'a>(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    state: impl Fn(&StateEventType, &str) -> Option<&'a Pdu>,
) -> Result<(), EventError> {
    state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, state)
        .map_err(EventError::AuthRejected)
}

/// What room version 12 (MSC4289) asks of a local event's content about
/// the room's creators, checked before the authorization rules: a create
/// event's `additional_creators` must be a list of user IDs, and power
/// levels must not list a creator in `users` (creators' power is implicit).
/// The rules refuse both too, but as forbidden; from a client they are a
/// malformed request (400), as Synapse answers. Remote events go through
/// the rules alone, so they are rejected, not dropped.
pub fn check_creators_content(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    room_create: Option<&Pdu>,
) -> Result<(), EventError> {
    let auth = &rules.authorization;
    if pdu.kind == TimelineEventType::RoomCreate && auth.additional_room_creators {
        RoomCreateEvent::new(pdu).creators(auth).map_err(EventError::Invalid)?;
    }
    if pdu.kind == TimelineEventType::RoomPowerLevels
        && auth.explicitly_privilege_room_creators
        && let Some(create) = room_create
    {
        let creators = RoomCreateEvent::new(create).creators(auth).map_err(EventError::Invalid)?;
        let levels = RoomPowerLevelsEvent::new(pdu);
        // A malformed `users` is the rules' to refuse.
        if let Ok(Some(users)) = levels.users(auth)
            && let Some(creator) = creators.iter().find(|c| users.contains_key(*c))
        {
            return Err(EventError::Invalid(format!(
                "{creator} is a creator of the room: creators have unlimited power and must not \
                 be listed in `users`"
            )));
        }
    }
    Ok(())
}
