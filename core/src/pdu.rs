//! PDUs: the signed events that make up a room's DAG.
//!
//! A [`Pdu`] keeps the event exactly as signed (its canonical JSON) next to
//! the fields the server indexes and checks. It implements ruma-state-res's
//! [`Event`] trait, so the same value goes through the authorization rules
//! and state resolution whether it was built here or received over
//! federation. Spec: <https://spec.matrix.org/v1.16/server-server-api/#pdus>.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, RoomVersionId, UInt, UserId,
    events::TimelineEventType,
    room_version_rules::{EventsReferenceFormatVersion, RoomVersionRules},
    serde::Raw,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::EventError;

/// A room event as stored and exchanged between servers.
#[derive(Clone, Debug)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    pub content: Box<RawJsonValue>,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub depth: u64,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    /// Failed the authorization rules: kept in the DAG, never in state.
    pub rejected: bool,
    /// Whether the JSON carries `room_id` (room version 12 create events do
    /// not: their room ID is derived from their own hash).
    room_id_in_json: bool,
    /// The event exactly as signed (without `event_id` from room version 3
    /// on, where the ID is the reference hash).
    pub json: CanonicalJsonObject,
}

impl Pdu {
    /// Parses a PDU from its signed JSON. `event_id` is given because from
    /// room version 3 on it is not part of the JSON. `room_id` is required
    /// for events whose JSON does not carry it (room version 12 creates).
    pub fn from_json(
        event_id: OwnedEventId,
        room_id: Option<&RoomId>,
        json: CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<Self, EventError> {
        let string = |key: &str| match json.get(key) {
            Some(CanonicalJsonValue::String(s)) => Ok(s.clone()),
            _ => Err(EventError::Invalid(format!("`{key}` must be a string"))),
        };
        let room_id_in_json = json.contains_key("room_id");
        let room_id = match (room_id_in_json, room_id) {
            (true, _) => RoomId::parse(string("room_id")?).map_err(invalid("room_id"))?,
            (false, Some(room_id)) => room_id.to_owned(),
            (false, None) => return Err(EventError::Invalid("`room_id` is missing".into())),
        };
        let sender = UserId::parse(string("sender")?).map_err(invalid("sender"))?;
        let kind = TimelineEventType::from(string("type")?);
        let state_key = match json.get("state_key") {
            None => None,
            Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
            Some(_) => return Err(EventError::Invalid("`state_key` must be a string".into())),
        };
        let content = match json.get("content") {
            Some(content @ CanonicalJsonValue::Object(_)) => {
                serde_json::value::to_raw_value(content).map_err(|e| EventError::Invalid(e.to_string()))?
            }
            _ => return Err(EventError::Invalid("`content` must be an object".into())),
        };
        let origin_server_ts = match json.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) => MilliSecondsSinceUnixEpoch(
                UInt::try_from(i64::from(*ts)).map_err(invalid("origin_server_ts"))?,
            ),
            _ => return Err(EventError::Invalid("`origin_server_ts` must be an integer".into())),
        };
        let depth = match json.get("depth") {
            Some(CanonicalJsonValue::Integer(d)) => {
                u64::try_from(i64::from(*d)).map_err(|_| EventError::Invalid("`depth` is negative".into()))?
            }
            _ => return Err(EventError::Invalid("`depth` must be an integer".into())),
        };
        let prev_events = references(&json, "prev_events", rules)?;
        let auth_events = references(&json, "auth_events", rules)?;
        // From room version 11 a redaction names its target in `content`.
        let redacts = match json.get("redacts") {
            Some(CanonicalJsonValue::String(id)) => {
                Some(EventId::parse(id.as_str()).map_err(invalid("redacts"))?)
            }
            _ => match json.get("content") {
                Some(CanonicalJsonValue::Object(c)) if kind == TimelineEventType::RoomRedaction => {
                    match c.get("redacts") {
                        Some(CanonicalJsonValue::String(id)) => {
                            Some(EventId::parse(id.as_str()).map_err(invalid("content.redacts"))?)
                        }
                        _ => None,
                    }
                }
                _ => None,
            },
        };
        Ok(Self {
            event_id,
            room_id,
            sender,
            kind,
            state_key,
            content,
            origin_server_ts,
            depth,
            prev_events,
            auth_events,
            redacts,
            rejected: false,
            room_id_in_json,
            json,
        })
    }

    /// Parses a PDU another server sent: the spec's size limits checked,
    /// `unsigned` (the sender's annotations, not part of the signed event)
    /// dropped, and the event ID computed as the room version says (read
    /// from the JSON in versions 1 and 2, the reference hash from 3 on).
    /// Signatures and hashes are the caller's to verify.
    pub fn from_remote_json(
        mut json: CanonicalJsonObject,
        room_id: Option<&RoomId>,
        rules: &RoomVersionRules,
    ) -> Result<Self, EventError> {
        use ruma::room_version_rules::EventIdFormatVersion;
        json.remove("unsigned");
        let size = serde_json::to_string(&json).map_err(|e| EventError::Invalid(e.to_string()))?.len();
        if size > crate::build::MAX_PDU_BYTES {
            return Err(EventError::TooLarge("event"));
        }
        // Counted in code points, not bytes, for events from other
        // servers: Synapse has always counted so, and rooms hold events
        // whose keys are longer than 255 bytes but not 255 code points
        // (an event refused here would break them). Local events keep
        // the spec's bytes (`build`).
        let too_long = |key: &str, limit: usize| matches!(json.get(key), Some(CanonicalJsonValue::String(s)) if s.chars().count() > limit);
        if too_long("type", crate::build::MAX_TYPE_BYTES) {
            return Err(EventError::TooLarge("type"));
        }
        if too_long("state_key", crate::build::MAX_STATE_KEY_BYTES) {
            return Err(EventError::TooLarge("state_key"));
        }
        let event_id = match rules.event_id_format {
            EventIdFormatVersion::V1 => match json.get("event_id") {
                Some(CanonicalJsonValue::String(id)) => {
                    EventId::parse(id.as_str()).map_err(invalid("event_id"))?
                }
                _ => return Err(EventError::Invalid("`event_id` is missing".into())),
            },
            _ => {
                let hash = ruma::signatures::reference_hash(&json, rules)
                    .map_err(|e| EventError::Invalid(e.to_string()))?;
                EventId::new_v2_or_v3(&hash).map_err(|e| EventError::Invalid(e.to_string()))?
            }
        };
        // Room version 12: a create event's room ID is its own hash.
        let derived = match json.contains_key("room_id") {
            true => None,
            false => Some(
                RoomId::new_v2(event_id.as_str().trim_start_matches('$'))
                    .map_err(|e| EventError::Invalid(e.to_string()))?,
            ),
        };
        let pdu = Self::from_json(event_id, derived.as_deref(), json, rules)?;
        if room_id.is_some_and(|expected| pdu.room_id != expected) {
            return Err(EventError::Invalid("the event belongs to another room".into()));
        }
        Ok(pdu)
    }

    /// Whether this is a state event.
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The event as a client receives it (client-server format): the signed
    /// JSON without federation-only keys, with `event_id` and `room_id`.
    pub fn to_client_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut object = serde_json::Map::new();
        for key in ["type", "content", "sender", "origin_server_ts", "state_key", "redacts", "unsigned"] {
            if let Some(value) = self.json.get(key) {
                object.insert(key.to_owned(), value.clone().into());
            }
        }
        object.insert("event_id".into(), self.event_id.as_str().into());
        object.insert("room_id".into(), self.room_id.as_str().into());
        object
    }

    /// The event's JSON with the room version's redaction algorithm applied
    /// (hashes and signatures are kept, so it still verifies).
    pub fn redacted_json(&self, rules: &RoomVersionRules) -> Result<CanonicalJsonObject, EventError> {
        ruma::canonical_json::redact(self.json.clone(), &rules.redaction, None)
            .map_err(|e| EventError::Invalid(format!("cannot redact: {e}")))
    }

    /// The content deserialised as `T` (lazily, as ruma's `Raw` does).
    pub fn content_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        Raw::<T>::from_json(self.content.clone()).deserialize()
    }
}

fn invalid<E: std::fmt::Display>(field: &'static str) -> impl Fn(E) -> EventError {
    move |e| EventError::Invalid(format!("`{field}`: {e}"))
}

/// Reads `prev_events`/`auth_events`: plain IDs from room version 3 on,
/// `[id, hashes]` pairs before.
fn references(
    json: &CanonicalJsonObject,
    key: &str,
    rules: &RoomVersionRules,
) -> Result<Vec<OwnedEventId>, EventError> {
    let Some(CanonicalJsonValue::Array(items)) = json.get(key) else {
        return Err(EventError::Invalid(format!("`{key}` must be an array")));
    };
    items
        .iter()
        .map(|item| {
            let id = match (&rules.events_reference_format, item) {
                (EventsReferenceFormatVersion::V2, CanonicalJsonValue::String(id)) => id,
                (EventsReferenceFormatVersion::V1, CanonicalJsonValue::Array(pair)) => match pair.first() {
                    Some(CanonicalJsonValue::String(id)) => id,
                    _ => return Err(EventError::Invalid(format!("malformed `{key}` entry"))),
                },
                _ => return Err(EventError::Invalid(format!("malformed `{key}` entry"))),
            };
            EventId::parse(id.as_str()).map_err(|e| EventError::Invalid(format!("`{key}`: {e}")))
        })
        .collect()
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id_in_json.then_some(&*self.room_id)
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawJsonValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// The rules of a room version this server supports.
pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules, EventError> {
    if !crate::room_versions::is_supported(version) {
        return Err(EventError::UnsupportedRoomVersion(version.clone()));
    }
    version.rules().ok_or_else(|| EventError::UnsupportedRoomVersion(version.clone()))
}
