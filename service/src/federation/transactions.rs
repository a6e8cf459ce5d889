//! Transactions from other servers (`PUT /send/{txnId}`): each applied
//! once per origin and transaction ID (a repeat gets the first answer),
//! its EDUs applied with the spec's origin checks (a server speaks only
//! for its own users).
//!
//! PDUs go to their rooms (`Rooms::receive_pdu`), rooms in parallel and
//! each room's PDUs in order, each with its own result; one that fails
//! never fails the transaction.
//!
//! EDUs applied: to-device messages, typing, public read receipts,
//! presence, and device-list and signing-key updates (noted as device-list
//! changes of the origin's user; see `keys::federated`).
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#transactions>.

use std::collections::HashMap;

use ruma::{ServerName, api::federation::transactions::edu::Edu, serde::Raw};
use serde_json::value::RawValue as RawJsonValue;
use tessera_storage::Store;

use crate::{
    Error, Result, keys::DeviceLists, now_ms, presence::Presence, receipts::Receipts, rooms::Rooms,
    to_device::ToDevice, typing::Typing,
};

/// A PDU's event ID for the transaction's answer, where it can be told:
/// room version 1 and 2 events carry it; later ones are named by their
/// reference hash, computed with the rules of any version from 3 on
/// (the hash does not depend on which).
fn event_id_of(pdu: &RawJsonValue) -> Option<String> {
    let object: ruma::CanonicalJsonObject = serde_json::from_str(pdu.get()).ok()?;
    if let Some(ruma::CanonicalJsonValue::String(id)) = object.get("event_id") {
        return Some(id.clone());
    }
    let rules = ruma::RoomVersionId::V11.rules()?;
    let hash = ruma::signatures::reference_hash(&object, &rules).ok()?;
    Some(format!("${hash}"))
}

/// A PDU's `room_id`, where it can be read.
fn room_of(pdu: &RawJsonValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct RoomOf {
        room_id: String,
    }
    serde_json::from_str::<RoomOf>(pdu.get()).ok().map(|pdu| pdu.room_id)
}

/// PDUs per transaction at most (the spec's limit).
pub const MAX_PDUS: usize = 50;
/// EDUs per transaction at most (the spec's limit).
pub const MAX_EDUS: usize = 100;

/// The services that apply EDUs.
#[derive(Clone)]
pub struct EduReceivers {
    pub to_device: ToDevice,
    pub typing: Typing,
    pub receipts: Receipts,
    pub presence: Presence,
    pub device_lists: DeviceLists,
}

/// The transaction receiver. Cheap to clone.
#[derive(Clone)]
pub struct Transactions {
    store: Store,
    rooms: Rooms,
    edus: EduReceivers,
}

impl Transactions {
    pub fn new(store: Store, rooms: Rooms, edus: EduReceivers) -> Self {
        Self { store, rooms, edus }
    }

    /// Applies a transaction from `origin`; returns the answer's JSON.
    pub async fn receive(
        &self,
        origin: &ServerName,
        txn_id: &str,
        pdus: &[Box<RawJsonValue>],
        edus: &[Raw<Edu>],
    ) -> Result<String> {
        if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
            return Err(Error::new(
                400,
                ruma::api::error::ErrorKind::TooLarge,
                format!("at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction"),
            ));
        }
        if let Some(answer) = self.store.inbound_transaction(origin.as_str(), txn_id).await? {
            return Ok(answer);
        }
        // Rooms in parallel, each room's PDUs one after another in the
        // order sent (a later one may build on an earlier one).
        let mut rooms: HashMap<Option<String>, Vec<&RawJsonValue>> = HashMap::new();
        for pdu in pdus {
            rooms.entry(room_of(pdu)).or_default().push(pdu);
        }
        let outcomes = futures_util::future::join_all(rooms.into_values().map(|pdus| async move {
            let mut outcomes = Vec::with_capacity(pdus.len());
            for pdu in pdus {
                outcomes.push((pdu, self.rooms.receive_pdu(origin, pdu).await));
            }
            outcomes
        }))
        .await;
        let mut results = serde_json::Map::new();
        for (pdu, outcome) in outcomes.into_iter().flatten() {
            match outcome {
                Ok(event_id) => {
                    results.insert(event_id.to_string(), serde_json::json!({}));
                }
                Err(e @ Error::Unavailable { .. }) => return Err(e),
                Err(e) => {
                    let id = event_id_of(pdu);
                    tracing::info!(%origin, event = id, error = %e, "PDU not accepted");
                    if let Some(id) = id {
                        results.insert(id, serde_json::json!({ "error": e.to_string() }));
                    }
                }
            }
        }
        for edu in edus {
            self.apply(origin, edu).await?;
        }
        let answer = serde_json::json!({ "pdus": results }).to_string();
        self.store.record_inbound_transaction(origin.as_str(), txn_id, &answer, now_ms()).await?;
        Ok(answer)
    }

    async fn apply(&self, origin: &ServerName, edu: &Raw<Edu>) -> Result<()> {
        let edus = &self.edus;
        match edu.deserialize() {
            Ok(Edu::DirectToDevice(content)) => edus.to_device.receive(origin, &content).await,
            Ok(Edu::Typing(content)) => {
                edus.typing.receive(origin, &content.room_id, &content.user_id, content.typing).await
            }
            Ok(Edu::Receipt(content)) => edus.receipts.receive(origin, &content).await,
            Ok(Edu::Presence(content)) => edus.presence.receive(origin, &content).await,
            Ok(Edu::DeviceListUpdate(content)) => {
                edus.device_lists.receive_remote_change(origin, &content.user_id).await
            }
            Ok(Edu::SigningKeyUpdate(content)) => {
                edus.device_lists.receive_remote_change(origin, &content.user_id).await
            }
            Ok(other) => {
                tracing::debug!(%origin, edu = ?std::mem::discriminant(&other), "EDU not applied yet");
                Ok(())
            }
            // One malformed EDU never fails the transaction.
            Err(e) => {
                tracing::info!(%origin, error = %e, "malformed EDU dropped");
                Ok(())
            }
        }
    }
}
