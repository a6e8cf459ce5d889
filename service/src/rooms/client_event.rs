//! Events as clients receive them: the client-server format, with
//! `unsigned` (`age`, the sender's own `transaction_id`).
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#room-event-format>.

use ruma::DeviceId;
use serde_json::{Map, Value};
use tessera_storage::StoredEvent;

use crate::{Error, Result, now_ms};

/// An event in client format, ready to serialise.
pub type ClientEvent = Map<String, Value>;

/// Keys of a PDU that clients see; the rest (hashes, signatures,
/// prev/auth events, depth) are federation-only.
const CLIENT_KEYS: [&str; 6] = ["type", "content", "sender", "origin_server_ts", "state_key", "redacts"];

/// Formats a stored event for the user on `viewer_device`.
pub fn to_client_event(stored: &StoredEvent, viewer: Option<(&str, &DeviceId)>) -> Result<ClientEvent> {
    let pdu: Map<String, Value> =
        serde_json::from_str(&stored.json).map_err(|e| Error::internal(format!("stored event JSON: {e}")))?;
    let mut event = Map::new();
    for key in CLIENT_KEYS {
        if let Some(value) = pdu.get(key) {
            event.insert(key.to_owned(), value.clone());
        }
    }
    // Room version 11 moved `redacts` into content; clients still read the
    // top-level key, so both are served (as Synapse does).
    if stored.event_type == "m.room.redaction"
        && !event.contains_key("redacts")
        && let Some(redacts) = pdu.get("content").and_then(|c| c.get("redacts"))
    {
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
    Ok(event)
}

impl super::Rooms {
    /// Formats a batch for the viewer: redacted events carry the redaction
    /// in `unsigned.redacted_because`; on timelines (`with_prev_content`),
    /// state events carry `prev_content`, `replaces_state` and `prev_sender`,
    /// which clients use to render changes ("Alice changed the name...").
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
        let mut formatted = Vec::with_capacity(events.len());
        for event in events {
            let mut client = to_client_event(event, viewer)?;
            let mut extra = Map::new();
            if let Some(redaction) = event.redacted_by.as_ref().and_then(|id| redactions.get(id)) {
                extra.insert("redacted_because".into(), Value::Object(to_client_event(redaction, None)?));
            }
            if with_prev_content
                && let Some(key) = &event.state_key
                && let Some(prev) =
                    self.store.state_entry_at(event.state_before, &event.event_type, key).await?
            {
                let prev_json: Value = serde_json::from_str(&prev.json).map_err(Error::internal)?;
                extra.insert("prev_content".into(), prev_json["content"].clone());
                extra.insert("replaces_state".into(), prev.event_id.as_str().into());
                extra.insert("prev_sender".into(), prev.sender.as_str().into());
            }
            if let Some(Value::Object(unsigned)) = client.get_mut("unsigned") {
                unsigned.extend(extra);
            }
            formatted.push(client);
        }
        Ok(formatted)
    }
}
