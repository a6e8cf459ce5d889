//! Events as clients receive them: the client-server format, with
//! `unsigned` (`age`, the sender's own `transaction_id`).
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#room-event-format>.

use ruma::DeviceId;
use std::collections::HashMap;

use serde_json::{Map, Value};
use tessera_storage::StoredEvent;

use crate::{Result, now_ms};

/// An event in client format, ready to serialise.
pub type ClientEvent = Map<String, Value>;

/// Formats a stored event for the user on `viewer_device`: the keys of the
/// PDU that clients see (hashes, signatures, prev/auth events and depth are
/// federation-only), from the event's columns and its parsed content.
pub fn to_client_event(stored: &StoredEvent, viewer: Option<(&str, &DeviceId)>) -> ClientEvent {
    let parts = stored.client_parts();
    let mut event = Map::new();
    event.insert("type".into(), stored.event_type.as_str().into());
    if let Some(content) = &parts.content {
        event.insert("content".into(), content.clone());
    }
    event.insert("sender".into(), stored.sender.as_str().into());
    event.insert("origin_server_ts".into(), stored.origin_server_ts.into());
    if let Some(state_key) = &stored.state_key {
        event.insert("state_key".into(), state_key.as_str().into());
    }
    // Room version 11 moved `redacts` into content; clients still read the
    // top-level key, so both are served (as Synapse does).
    let redacts = parts.redacts.as_ref().or_else(|| {
        (stored.event_type == "m.room.redaction").then(|| parts.content.as_ref()?.get("redacts")).flatten()
    });
    if let Some(redacts) = redacts {
        event.insert("redacts".into(), redacts.clone());
    }
    event.insert("event_id".into(), stored.event_id.as_str().into());
    event.insert("room_id".into(), stored.room_id.as_str().into());

    let mut unsigned = Map::new();
    unsigned.insert("age".into(), (now_ms() - stored.origin_server_ts).max(0).into());
    if let (Some((user, device)), Some(txn_device), Some(txn_id)) =
        (viewer, &stored.txn_device_id, &stored.txn_id)
        && user == stored.sender
        && device.as_str() == txn_device
    {
        unsigned.insert("transaction_id".into(), txn_id.as_str().into());
    }
    event.insert("unsigned".into(), Value::Object(unsigned));
    event
}

impl super::Rooms {
    /// Formats a batch for the viewer: redacted events carry the redaction
    /// in `unsigned.redacted_because`; on timelines (`with_prev_content`),
    /// state events carry `prev_content`, `replaces_state` and `prev_sender`,
    /// which clients use to render changes ("Alice changed the name..."),
    /// and every event its bundled aggregations (`unsigned.m.relations`).
    pub(crate) async fn client_events(
        &self,
        events: &[StoredEvent],
        viewer: Option<(&str, &DeviceId)>,
        with_prev_content: bool,
    ) -> Result<Vec<ClientEvent>> {
        let redaction_ids: Vec<String> = events.iter().filter_map(|e| e.redacted_by.clone()).collect();
        let redactions: std::collections::HashMap<String, StoredEvent> = if redaction_ids.is_empty() {
            Default::default()
        } else {
            self.store
                .get_events(&redaction_ids)
                .await?
                .into_iter()
                .map(|e| (e.event_id.to_string(), e))
                .collect()
        };
        let aggregations = if with_prev_content {
            self.aggregations(events, viewer.map(|(user, _)| user)).await?
        } else {
            Default::default()
        };
        let mut memberships: HashMap<i64, Option<String>> = HashMap::new();
        let mut formatted = Vec::with_capacity(events.len());
        for event in events {
            let mut client = to_client_event(event, viewer);
            let mut extra = Map::new();
            if with_prev_content && let Some((user, _)) = viewer {
                // The viewer's membership when the event was sent (v1.11).
                if let std::collections::hash_map::Entry::Vacant(slot) = memberships.entry(event.state_after)
                {
                    let membership = self
                        .store
                        .state_entry_at(event.state_after, "m.room.member", user)
                        .await?
                        .and_then(|m| m.content()?.get("membership")?.as_str().map(str::to_owned));
                    slot.insert(membership);
                }
                let membership = memberships.get(&event.state_after).cloned().flatten();
                extra.insert("membership".into(), membership.unwrap_or_else(|| "leave".to_owned()).into());
            }
            if let Some(redaction) = event.redacted_by.as_ref().and_then(|id| redactions.get(id)) {
                extra.insert("redacted_because".into(), Value::Object(to_client_event(redaction, None)));
            }
            if with_prev_content
                && let Some(key) = &event.state_key
                && let Some(prev) =
                    self.store.state_entry_at(event.state_before, &event.event_type, key).await?
            {
                let prev_content = prev.content().cloned().unwrap_or_default();
                extra.insert("prev_content".into(), prev_content);
                extra.insert("replaces_state".into(), prev.event_id.as_str().into());
                extra.insert("prev_sender".into(), prev.sender.as_str().into());
            }
            if let Some(relations) = aggregations.get(event.event_id.as_str()) {
                extra.insert("m.relations".into(), relations.clone());
            }
            if let Some(Value::Object(unsigned)) = client.get_mut("unsigned") {
                unsigned.extend(extra);
            }
            formatted.push(client);
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
            id.and_then(|id| fetched.get(id)).map(|event| Value::Object(to_client_event(event, None)))
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
        let event = to_client_event(&stored("m.room.message", None, pdu), None);
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
        let own = to_client_event(&event, Some(("@alice:x", device_id!("PHONE"))));
        assert_eq!(own["state_key"], "@alice:x");
        assert_eq!(own["unsigned"]["transaction_id"], "t1");
        let other_device = to_client_event(&event, Some(("@alice:x", device_id!("LAPTOP"))));
        assert!(other_device["unsigned"].get("transaction_id").is_none());
        let other_user = to_client_event(&event, Some(("@bob:x", device_id!("PHONE"))));
        assert!(other_user["unsigned"].get("transaction_id").is_none());
    }

    #[test]
    fn redacts_at_the_top_level_in_every_room_version() {
        let v10 = json!({"type": "m.room.redaction", "redacts": "$old", "content": {"reason": "spam"}});
        assert_eq!(to_client_event(&stored("m.room.redaction", None, v10), None)["redacts"], "$old");
        let v11 = json!({"type": "m.room.redaction", "content": {"redacts": "$old"}});
        let event = to_client_event(&stored("m.room.redaction", None, v11), None);
        assert_eq!(event["redacts"], "$old");
        assert_eq!(event["content"]["redacts"], "$old");
        let message = json!({"type": "m.room.message", "content": {"redacts": "$not-a-redaction"}});
        assert!(to_client_event(&stored("m.room.message", None, message), None).get("redacts").is_none());
    }

    #[test]
    fn an_event_without_content_is_served_without_it() {
        let event = to_client_event(&stored("m.room.message", None, json!("not an object")), None);
        assert!(event.get("content").is_none());
        assert_eq!(event["type"], "m.room.message");
    }
}
