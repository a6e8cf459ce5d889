//! Building a local event: the PDU fields for the room version, content
//! hash, signature and event ID, all through ruma's canonical JSON and
//! signing functions. The caller chooses `prev_events` (the forward
//! extremities) and `auth_events` (see [`crate::auth::auth_types`]) and has
//! serialised appends to the room, so depth and order are consistent.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#pdus> and each
//! room version's "event format" section.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId,
    RoomVersionId, UserId,
    events::TimelineEventType,
    room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomIdFormatVersion},
    signatures::reference_hash,
};

use crate::{EventError, Pdu, ServerSigningKey, pdu::rules_for};

/// The largest PDU the spec allows, in bytes of canonical JSON.
pub const MAX_PDU_BYTES: usize = 65_536;

/// The longest event type and state key, in bytes (spec: "Size limits").
pub const MAX_TYPE_BYTES: usize = 255;
pub const MAX_STATE_KEY_BYTES: usize = 255;

/// The spec's limits on an event's parts, checked before anything is
/// built or signed.
fn check_sizes(template: &EventTemplate) -> Result<(), EventError> {
    let kind = template.kind.to_string();
    if kind.is_empty() {
        return Err(EventError::Invalid("the event type is empty".into()));
    }
    if kind.len() > MAX_TYPE_BYTES {
        return Err(EventError::TooLarge("type"));
    }
    if template.state_key.as_ref().is_some_and(|key| key.len() > MAX_STATE_KEY_BYTES) {
        return Err(EventError::TooLarge("state_key"));
    }
    Ok(())
}

/// What the sender asks for: everything but the DAG and crypto fields.
#[derive(Clone, Debug)]
pub struct EventTemplate {
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    /// Must be a JSON object.
    pub content: serde_json::Value,
    /// The redacted event, for `m.room.redaction` (placed where the room
    /// version wants it: top level before v11, in `content` from v11).
    pub redacts: Option<OwnedEventId>,
}

impl EventTemplate {
    pub fn state(
        kind: impl Into<TimelineEventType>,
        state_key: impl Into<String>,
        content: serde_json::Value,
    ) -> Self {
        Self { kind: kind.into(), state_key: Some(state_key.into()), content, redacts: None }
    }
    pub fn message(kind: impl Into<TimelineEventType>, content: serde_json::Value) -> Self {
        Self { kind: kind.into(), state_key: None, content, redacts: None }
    }
}

/// Where in the DAG the new event goes.
pub struct Parents<'a> {
    /// The room; `None` only for a room version 12 `m.room.create`, whose
    /// room ID is derived from its own hash.
    pub room_id: Option<&'a RoomId>,
    pub prev_events: &'a [&'a Pdu],
    pub auth_events: &'a [&'a Pdu],
}

/// Builds, hashes and signs a new event.
pub fn build_event(
    template: &EventTemplate,
    room_version: &RoomVersionId,
    sender: &UserId,
    parents: &Parents<'_>,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    key: &ServerSigningKey,
) -> Result<Pdu, EventError> {
    check_sizes(template)?;
    let rules = rules_for(room_version)?;
    let mut object = CanonicalJsonObject::new();
    let json = |value: serde_json::Value| {
        CanonicalJsonValue::try_from(value).map_err(|e| EventError::Invalid(e.to_string()))
    };
    let mut content = match json(template.content.clone())? {
        CanonicalJsonValue::Object(content) => content,
        _ => return Err(EventError::Invalid("content must be a JSON object".into())),
    };
    if let Some(redacts) = &template.redacts {
        if rules.redaction.content_field_redacts {
            content.insert("redacts".into(), CanonicalJsonValue::String(redacts.to_string()));
        } else {
            object.insert("redacts".into(), CanonicalJsonValue::String(redacts.to_string()));
        }
    }
    object.insert("type".into(), CanonicalJsonValue::String(template.kind.to_string()));
    object.insert("content".into(), CanonicalJsonValue::Object(content));
    object.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
    if let Some(state_key) = &template.state_key {
        object.insert("state_key".into(), CanonicalJsonValue::String(state_key.clone()));
    }
    let ts =
        i64::try_from(u64::from(origin_server_ts.0)).map_err(|_| EventError::Invalid("timestamp".into()))?;
    object.insert("origin_server_ts".into(), json(ts.into())?);
    // Depth: one more than the deepest parent, capped as the spec requires.
    let depth = parents.prev_events.iter().map(|p| p.depth).max().map_or(1, |d| d.saturating_add(1));
    let depth = depth.min(i64::MAX as u64);
    object.insert("depth".into(), json(depth.into())?);
    object.insert("prev_events".into(), references(parents.prev_events, &rules.events_reference_format)?);
    object.insert("auth_events".into(), references(parents.auth_events, &rules.events_reference_format)?);
    match parents.room_id {
        Some(room_id) => {
            object.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
        }
        None if template.kind == TimelineEventType::RoomCreate
            && rules.room_id_format == RoomIdFormatVersion::V2 => {}
        None => return Err(EventError::Invalid("room_id is required".into())),
    }
    let v1_event_id =
        (rules.event_id_format == EventIdFormatVersion::V1).then(|| EventId::new_v1(key.server_name()));
    if let Some(event_id) = &v1_event_id {
        object.insert("event_id".into(), CanonicalJsonValue::String(event_id.to_string()));
    }

    key.hash_and_sign_event(&mut object, &rules.redaction)?;
    // A BTreeMap of canonical values serialises compactly with sorted keys: canonical JSON.
    let size = serde_json::to_string(&object).map_err(|e| EventError::Invalid(e.to_string()))?.len();
    if size > MAX_PDU_BYTES {
        return Err(EventError::TooLarge("event"));
    }

    let event_id = match v1_event_id {
        Some(event_id) => event_id,
        None => {
            let hash = reference_hash(&object, &rules).map_err(|e| EventError::Invalid(e.to_string()))?;
            EventId::new_v2_or_v3(&hash).map_err(|e| EventError::Invalid(e.to_string()))?
        }
    };
    let room_id = match parents.room_id {
        Some(room_id) => room_id.to_owned(),
        None => {
            // Room version 12: the room ID is the create event's reference hash.
            let hash = event_id.as_str().trim_start_matches('$');
            RoomId::new_v2(hash).map_err(|e| EventError::Invalid(e.to_string()))?
        }
    };
    Pdu::from_json(event_id, Some(&room_id), object, &rules)
}

fn references(
    events: &[&Pdu],
    format: &EventsReferenceFormatVersion,
) -> Result<CanonicalJsonValue, EventError> {
    let items = events
        .iter()
        .map(|pdu| match format {
            EventsReferenceFormatVersion::V2 => Ok(CanonicalJsonValue::String(pdu.event_id.to_string())),
            EventsReferenceFormatVersion::V1 => {
                let hashes = pdu
                    .json
                    .get("hashes")
                    .cloned()
                    .ok_or_else(|| EventError::Invalid("parent has no hashes".into()))?;
                Ok(CanonicalJsonValue::Array(vec![
                    CanonicalJsonValue::String(pdu.event_id.to_string()),
                    hashes,
                ]))
            }
            _ => Err(EventError::Invalid("unknown event reference format".into())),
        })
        .collect::<Result<Vec<_>, EventError>>()?;
    Ok(CanonicalJsonValue::Array(items))
}
