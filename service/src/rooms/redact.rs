//! `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: the redaction event and
//! the redacted target, stored together.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#redactions>.

use ruma::{EventId, OwnedEventId, RoomId, events::TimelineEventType};
use serde_json::json;
use tessera_core::{EventTemplate, power::may_redact, rules_for};
use tessera_storage::TxnKey;

use super::{
    Rooms,
    append::{event_error, pdu_from_stored},
};
use crate::{Error, Result, auth::Identity};

impl Rooms {
    /// Redacts `target` as `who`, idempotently per device, target and transaction.
    pub async fn redact(
        &self,
        who: &Identity,
        room_id: &RoomId,
        target: &EventId,
        reason: Option<&str>,
        txn_id: &str,
    ) -> Result<OwnedEventId> {
        let scope = format!("redact {room_id} {target}");
        let txn = TxnKey { user_id: &who.user_id, device_id: &who.device_id, scope: &scope, txn_id };
        if let Some(existing) = self.store.get_txn_event(txn).await? {
            return Ok(existing);
        }
        let version = self.room_version(room_id).await?;
        let rules = rules_for(&version).map_err(event_error)?;
        let lock = self.room_lock(room_id);
        let _guard = lock.lock().await;
        if let Some(existing) = self.store.get_txn_event(txn).await? {
            return Ok(existing);
        }
        // An event not held here (another server's, not received yet) may
        // be redacted too, by those who may redact others' events; the
        // redaction applies when it arrives.
        let target_pdu = match self.event_in_room(room_id, target).await? {
            Some(stored) => Some(pdu_from_stored(&stored, &version)?),
            None => None,
        };
        let create = self
            .store
            .current_state_event(room_id, "m.room.create", "")
            .await?
            .ok_or_else(|| Error::internal("room without a create event"))?;
        let create = pdu_from_stored(&create, &version)?;
        let levels = match self.store.current_state_event(room_id, "m.room.power_levels", "").await? {
            Some(stored) => Some(pdu_from_stored(&stored, &version)?),
            None => None,
        };
        let target_sender = target_pdu.as_ref().map(|pdu| &*pdu.sender);
        if !may_redact(&who.user_id, target_sender, &create, levels.as_ref(), &rules) {
            return Err(Error::forbidden("You may not redact this event"));
        }
        let mut content = json!({});
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let template = EventTemplate {
            kind: TimelineEventType::RoomRedaction,
            state_key: None,
            content,
            redacts: Some(target.to_owned()),
        };
        let prepared = self.prepare(Some(room_id), &version, &who.user_id, &template).await?;
        let redacted = match &target_pdu {
            Some(pdu) => Some(
                serde_json::to_string(&pdu.redacted_json(&rules).map_err(event_error)?)
                    .map_err(Error::internal)?,
            ),
            None => None,
        };
        self.persist(&prepared, Some(txn), redacted.as_deref().map(|json| (target, json))).await?;
        Ok(prepared.pdu.event_id)
    }
}
