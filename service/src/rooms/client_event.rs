//! Events as clients receive them: the client-server format, with
//! `unsigned` (`age`, the sender's own `transaction_id`).
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#room-event-format>.

use ruma::DeviceId;
use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value, value::RawValue};
use tessera_storage::StoredEvent;

use crate::{Error, Result, now_ms};

/// An event in client format, serialised: each recipient's copy is
/// written straight from the stored event's columns and its `content` as
/// stored, without building a JSON tree first.
#[derive(Clone, Debug)]
pub struct ClientEvent(Box<RawValue>);

impl ClientEvent {
    /// The event's JSON.
    pub fn json(&self) -> &RawValue {
        &self.0
    }

    pub fn into_json(self) -> Box<RawValue> {
        self.0
    }

    /// The event as a JSON object, for the few readers that look inside.
    pub fn to_object(&self) -> Map<String, Value> {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }

    /// An event rebuilt from an object (a filter's `event_fields` choice).
    pub fn from_object(object: &Map<String, Value>) -> Result<Self> {
        serde_json::value::to_raw_value(object).map(Self).map_err(Error::internal)
    }
}

impl Serialize for ClientEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// What a client sees of an event: the PDU's keys without the
/// federation-only ones (hashes, signatures, prev/auth events, depth).
#[derive(Serialize)]
struct Shape<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a RawValue>,
    sender: &'a str,
    origin_server_ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacts: Option<&'a Value>,
    event_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a str>,
    unsigned: Unsigned<'a>,
}

/// `unsigned`: what the server adds for this viewer.
#[derive(Default, Serialize)]
struct Unsigned<'a> {
    age: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<&'a str>,
    /// The viewer's membership when the event was sent (v1.11).
    #[serde(skip_serializing_if = "Option::is_none")]
    membership: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacted_because: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_content: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaces_state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_sender: Option<&'a str>,
    #[serde(rename = "m.relations", skip_serializing_if = "Option::is_none")]
    relations: Option<&'a Value>,
}

/// How an event is shown.
#[derive(Clone, Copy)]
pub(crate) struct Form<'a> {
    /// The user and device asking: the sender's own device sees its
    /// `transaction_id`.
    pub viewer: Option<(&'a str, &'a DeviceId)>,
    /// Timelines: state events carry their previous content, events their
    /// bundled relations and the viewer's membership.
    pub timeline: bool,
    /// Sync leaves out `room_id` (the room is the key).
    pub room_id: bool,
}

impl<'a> Form<'a> {
    /// Outside timelines: state, a single event, notifications.
    pub fn plain(viewer: Option<(&'a str, &'a DeviceId)>) -> Self {
        Self { viewer, timeline: false, room_id: true }
    }

    pub fn timeline(viewer: Option<(&'a str, &'a DeviceId)>) -> Self {
        Self { viewer, timeline: true, room_id: true }
    }
}

/// Formats a stored event for the user on `viewer_device`: the keys of the
/// PDU that clients see, from the event's columns and its stored content.
fn to_client_event(stored: &StoredEvent, viewer: Option<(&str, &DeviceId)>) -> ClientEvent {
    write(stored, viewer, true, Unsigned::default())
}

fn write<'a>(
    stored: &'a StoredEvent,
    viewer: Option<(&str, &DeviceId)>,
    with_room_id: bool,
    mut unsigned: Unsigned<'a>,
) -> ClientEvent {
    let parts = stored.client_parts();
    // Room version 11 moved `redacts` into content; clients still read the
    // top-level key, so both are served (as Synapse does).
    let redacts = parts.redacts.as_ref().or_else(|| {
        (stored.event_type == "m.room.redaction").then(|| stored.content()?.get("redacts")).flatten()
    });
    unsigned.age = (now_ms() - stored.origin_server_ts).max(0);
    if let (Some((user, device)), Some(txn_device), Some(txn_id)) =
        (viewer, &stored.txn_device_id, &stored.txn_id)
        && user == stored.sender
        && device.as_str() == txn_device
    {
        unsigned.transaction_id = Some(txn_id.as_str());
    }
    let shape = Shape {
        event_type: &stored.event_type,
        content: stored.content_json(),
        sender: &stored.sender,
        origin_server_ts: stored.origin_server_ts,
        state_key: stored.state_key.as_deref(),
        redacts,
        event_id: stored.event_id.as_str(),
        room_id: with_room_id.then_some(stored.room_id.as_str()),
        unsigned,
    };
    // Serialising borrowed strings, numbers and JSON text cannot fail.
    ClientEvent(serde_json::value::to_raw_value(&shape).expect("client event serialises"))
}

/// `prev_content` of a state event whose predecessor has none.
fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".to_owned()).expect("{} is JSON"))
}

impl super::Rooms {
    /// Formats a batch for the viewer: redacted events carry the redaction
    /// in `unsigned.redacted_because`; on timelines (`form.timeline`),
    /// state events carry `prev_content`, `replaces_state` and `prev_sender`,
    /// which clients use to render changes ("Alice changed the name..."),
    /// and every event its bundled aggregations (`unsigned.m.relations`).
    pub(crate) async fn client_events(
        &self,
        events: &[StoredEvent],
        form: Form<'_>,
    ) -> Result<Vec<ClientEvent>> {
        let viewer = form.viewer;
        let redaction_ids: Vec<String> = events.iter().filter_map(|e| e.redacted_by.clone()).collect();
        let redactions: HashMap<String, ClientEvent> = if redaction_ids.is_empty() {
            Default::default()
        } else {
            self.store
                .get_events(&redaction_ids)
                .await?
                .into_iter()
                .map(|e| (e.event_id.to_string(), to_client_event(&e, None)))
                .collect()
        };
        let aggregations = if form.timeline {
            self.aggregations(events, viewer.map(|(user, _)| user)).await?
        } else {
            Default::default()
        };
        let mut memberships: HashMap<i64, Option<String>> = HashMap::new();
        let mut formatted = Vec::with_capacity(events.len());
        for event in events {
            if form.timeline
                && let Some((user, _)) = viewer
                && let std::collections::hash_map::Entry::Vacant(slot) = memberships.entry(event.state_after)
            {
                let membership = self
                    .store
                    .state_entry_at(event.state_after, "m.room.member", user)
                    .await?
                    .and_then(|m| m.content()?.get("membership")?.as_str().map(str::to_owned));
                slot.insert(membership);
            }
            let prev = match &event.state_key {
                Some(key) if form.timeline => {
                    self.store.state_entry_at(event.state_before, &event.event_type, key).await?
                }
                _ => None,
            };
            let mut unsigned = Unsigned::default();
            if form.timeline && viewer.is_some() {
                let membership = memberships.get(&event.state_after).and_then(Option::as_deref);
                unsigned.membership = Some(membership.unwrap_or("leave"));
            }
            unsigned.redacted_because =
                event.redacted_by.as_ref().and_then(|id| redactions.get(id)).map(ClientEvent::json);
            if let Some(prev) = &prev {
                unsigned.prev_content = Some(prev.content_json().unwrap_or(empty_object()));
                unsigned.replaces_state = Some(prev.event_id.as_str());
                unsigned.prev_sender = Some(prev.sender.as_str());
            }
            unsigned.relations = aggregations.get(event.event_id.as_str());
            formatted.push(write(event, viewer, form.room_id, unsigned));
        }
        Ok(formatted)
    }
}

impl super::Rooms {
    /// Notes (before the writer's position is released) that relations
    /// which bundle into events may have changed: a relation or redaction
    /// was stored, or a remote event arrived that others already relate
    /// to. It is noted at the highest position reserved so far, so that
    /// an event reserved before a relation to it committed is covered too.
    pub(crate) fn note_relations_changed(&self) {
        self.relation_changes.record("", self.streams.last_reserved());
    }

    /// Whether any event at or after `position` may have bundled
    /// relations: a local event cannot be related to before it exists, so
    /// relations to it come with a later note.
    fn relations_changed_since(&self, position: i64) -> bool {
        self.relation_changes.changed_after("", position - 1)
    }

    /// Bundled aggregations per event ID: the latest edit by the original
    /// sender (`m.replace`), thread summaries (`m.thread`) and references.
    /// Spec: <https://spec.matrix.org/v1.16/client-server-api/#aggregations-of-child-events>.
    async fn aggregations(
        &self,
        events: &[StoredEvent],
        viewer: Option<&str>,
    ) -> Result<HashMap<String, Value>> {
        let oldest = events.iter().map(|e| e.stream_ordering).min();
        if oldest.is_none_or(|oldest| !self.relations_changed_since(oldest)) {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
        let relations = self.store.aggregation_relations(&ids).await?;
        if relations.is_empty() {
            return Ok(HashMap::new());
        }
        let mut by_target: HashMap<&str, Vec<&tessera_storage::Relation>> = HashMap::new();
        for relation in &relations {
            by_target.entry(relation.relates_to.as_str()).or_default().push(relation);
        }
        // The latest edit and latest thread reply of each event, fetched in one go.
        let mut wanted: Vec<String> = Vec::new();
        let mut picks: HashMap<&str, (Option<&str>, Option<&str>)> = HashMap::new();
        for event in events {
            let Some(related) = by_target.get(event.event_id.as_str()) else { continue };
            let edit = related
                .iter()
                .filter(|r| {
                    r.rel_type == "m.replace" && r.sender == event.sender && r.event_type == event.event_type
                })
                .max_by_key(|r| r.stream_ordering)
                .map(|r| r.event_id.as_str());
            let latest_reply = related
                .iter()
                .filter(|r| r.rel_type == "m.thread")
                .max_by_key(|r| r.stream_ordering)
                .map(|r| r.event_id.as_str());
            wanted.extend(edit.iter().chain(latest_reply.iter()).map(|id| (*id).to_owned()));
            picks.insert(event.event_id.as_str(), (edit, latest_reply));
        }
        let fetched: HashMap<String, StoredEvent> =
            self.store.get_events(&wanted).await?.into_iter().map(|e| (e.event_id.to_string(), e)).collect();
        let formatted = |id: Option<&str>| -> Option<Value> {
            id.and_then(|id| fetched.get(id))
                .map(|event| Value::Object(to_client_event(event, None).to_object()))
        };

        let mut out = HashMap::new();
        for event in events {
            let Some(related) = by_target.get(event.event_id.as_str()) else { continue };
            let (edit, latest_reply) = picks.get(event.event_id.as_str()).copied().unwrap_or_default();
            let mut bundle = Map::new();
            if let Some(edit) = formatted(edit) {
                bundle.insert("m.replace".into(), edit);
            }
            let replies: Vec<_> = related.iter().filter(|r| r.rel_type == "m.thread").collect();
            if let Some(latest) = formatted(latest_reply) {
                let participated =
                    viewer.is_some_and(|me| event.sender == me || replies.iter().any(|r| r.sender == me));
                bundle.insert(
                    "m.thread".into(),
                    serde_json::json!({
                        "latest_event": latest,
                        "count": replies.len(),
                        "current_user_participated": participated,
                    }),
                );
            }
            let references: Vec<Value> = related
                .iter()
                .filter(|r| r.rel_type == "m.reference")
                .map(|r| serde_json::json!({ "event_id": r.event_id }))
                .collect();
            if !references.is_empty() {
                bundle.insert("m.reference".into(), serde_json::json!({ "chunk": references }));
            }
            if !bundle.is_empty() {
                out.insert(event.event_id.to_string(), Value::Object(bundle));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ruma::{EventId, device_id};
    use serde_json::json;

    use super::*;

    fn client(stored: &StoredEvent, viewer: Option<(&str, &DeviceId)>) -> Map<String, Value> {
        to_client_event(stored, viewer).to_object()
    }

    fn stored(event_type: &str, state_key: Option<&str>, pdu: Value) -> StoredEvent {
        StoredEvent {
            stream_ordering: 7,
            event_id: EventId::parse("$abc").unwrap(),
            room_id: "!room:x".into(),
            sender: "@alice:x".into(),
            event_type: event_type.into(),
            state_key: state_key.map(Into::into),
            depth: 3,
            origin_server_ts: 1_000,
            json: pdu.to_string().into(),
            redacted_by: None,
            rejected: false,
            status: Default::default(),
            state_before: 1,
            state_after: 2,
            txn_device_id: Some("PHONE".into()),
            txn_id: Some("t1".into()),
            parsed: Arc::default(),
        }
    }

    #[test]
    fn keeps_what_clients_see_and_drops_federation_keys() {
        let pdu = json!({
            "type": "m.room.message", "sender": "@alice:x", "room_id": "!room:x",
            "origin_server_ts": 1_000, "content": {"body": "hi", "msgtype": "m.text"},
            "depth": 3, "prev_events": ["$p"], "auth_events": ["$a"],
            "hashes": {"sha256": "h"}, "signatures": {"x": {"ed25519:a": "s"}},
        });
        let event = client(&stored("m.room.message", None, pdu), None);
        let mut keys: Vec<&str> = event.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["content", "event_id", "origin_server_ts", "room_id", "sender", "type", "unsigned"]
        );
        assert_eq!(event["content"], json!({"body": "hi", "msgtype": "m.text"}));
        assert_eq!(event["event_id"], "$abc");
        assert_eq!(event["origin_server_ts"], 1_000);
        assert!(event["unsigned"]["age"].as_i64().unwrap() > 0);
        assert!(event["unsigned"].get("transaction_id").is_none());
    }

    #[test]
    fn state_key_and_the_senders_own_transaction_id() {
        let pdu =
            json!({"type": "m.room.member", "state_key": "@alice:x", "content": {"membership": "join"}});
        let event = stored("m.room.member", Some("@alice:x"), pdu);
        let own = client(&event, Some(("@alice:x", device_id!("PHONE"))));
        assert_eq!(own["state_key"], "@alice:x");
        assert_eq!(own["unsigned"]["transaction_id"], "t1");
        let other_device = client(&event, Some(("@alice:x", device_id!("LAPTOP"))));
        assert!(other_device["unsigned"].get("transaction_id").is_none());
        let other_user = client(&event, Some(("@bob:x", device_id!("PHONE"))));
        assert!(other_user["unsigned"].get("transaction_id").is_none());
    }

    #[test]
    fn redacts_at_the_top_level_in_every_room_version() {
        let v10 = json!({"type": "m.room.redaction", "redacts": "$old", "content": {"reason": "spam"}});
        assert_eq!(client(&stored("m.room.redaction", None, v10), None)["redacts"], "$old");
        let v11 = json!({"type": "m.room.redaction", "content": {"redacts": "$old"}});
        let event = client(&stored("m.room.redaction", None, v11), None);
        assert_eq!(event["redacts"], "$old");
        assert_eq!(event["content"]["redacts"], "$old");
        let message = json!({"type": "m.room.message", "content": {"redacts": "$not-a-redaction"}});
        assert!(client(&stored("m.room.message", None, message), None).get("redacts").is_none());
    }

    #[test]
    fn content_is_written_as_stored_and_sync_leaves_out_the_room() {
        let pdu = r#"{"type":"m.room.message","content":{"msgtype":"m.text","body":"caf\u00e9","n":1.50}}"#;
        let mut event = stored("m.room.message", None, json!({}));
        event.replace_json(pdu);
        let in_room = to_client_event(&event, None);
        assert!(
            in_room.json().get().contains(r#""content":{"msgtype":"m.text","body":"caf\u00e9","n":1.50}"#)
        );
        assert_eq!(in_room.to_object()["room_id"], "!room:x");
        let in_sync = write(&event, None, false, Unsigned::default()).to_object();
        assert!(in_sync.get("room_id").is_none());
        assert_eq!(in_sync["content"]["body"], "café");
        assert_eq!(in_sync["event_id"], "$abc");
    }

    #[test]
    fn an_event_without_content_is_served_without_it() {
        let event = client(&stored("m.room.message", None, json!("not an object")), None);
        assert!(event.get("content").is_none());
        assert_eq!(event["type"], "m.room.message");
    }
}
