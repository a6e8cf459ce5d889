//! Transactions from other servers (`PUT /send/{txnId}`): each applied
//! once per origin and transaction ID (a repeat gets the first answer),
//! its EDUs applied with the spec's origin checks (a server speaks only
//! for its own users).
//!
//! PDUs go to their rooms one after another (`Rooms::receive_pdu`), each
//! with its own result; one that fails never fails the transaction.
//!
//! EDUs applied: to-device messages, typing and public read receipts.
//! Not yet: presence, device-list and signing-key updates.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#transactions>.

use ruma::{ServerName, api::federation::transactions::edu::Edu, serde::Raw};
use serde_json::value::RawValue as RawJsonValue;
use tessera_storage::Store;

use crate::{Error, Result, now_ms, receipts::Receipts, rooms::Rooms, to_device::ToDevice, typing::Typing};

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

/// PDUs per transaction at most (the spec's limit).
pub const MAX_PDUS: usize = 50;
/// EDUs per transaction at most (the spec's limit).
pub const MAX_EDUS: usize = 100;

/// The transaction receiver. Cheap to clone.
#[derive(Clone)]
pub struct Transactions {
    store: Store,
    to_device: ToDevice,
    rooms: Rooms,
    typing: Typing,
    receipts: Receipts,
}

impl Transactions {
    pub fn new(store: Store, to_device: ToDevice, rooms: Rooms, typing: Typing, receipts: Receipts) -> Self {
        Self { store, to_device, rooms, typing, receipts }
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
        let mut results = serde_json::Map::new();
        for pdu in pdus {
            match self.rooms.receive_pdu(origin, pdu).await {
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
        match edu.deserialize() {
            Ok(Edu::DirectToDevice(content)) => self.to_device.receive(origin, &content).await,
            Ok(Edu::Typing(content)) => {
                self.typing.receive(origin, &content.room_id, &content.user_id, content.typing).await
            }
            Ok(Edu::Receipt(content)) => self.receipts.receive(origin, &content).await,
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
