//! Transactions from other servers (`PUT /send/{txnId}`): each applied
//! once per origin and transaction ID (a repeat gets the first answer),
//! its EDUs applied with the spec's origin checks (a server speaks only
//! for its own users).
//!
//! Not yet here: PDUs (this server joins no other server's rooms yet, so
//! any PDU is for a room it is not in; they are ignored and answered with
//! no result), and the EDUs about rooms and users shared across servers
//! (typing, receipts, presence, device-list and signing-key updates),
//! which wait for rooms with members on several servers.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#transactions>.

use ruma::{ServerName, api::federation::transactions::edu::Edu, serde::Raw};
use serde_json::value::RawValue as RawJsonValue;
use tessera_storage::Store;

use crate::{Error, Result, now_ms, to_device::ToDevice};

/// PDUs per transaction at most (the spec's limit).
pub const MAX_PDUS: usize = 50;
/// EDUs per transaction at most (the spec's limit).
pub const MAX_EDUS: usize = 100;

/// The transaction receiver. Cheap to clone.
#[derive(Clone)]
pub struct Transactions {
    store: Store,
    to_device: ToDevice,
}

impl Transactions {
    pub fn new(store: Store, to_device: ToDevice) -> Self {
        Self { store, to_device }
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
        if !pdus.is_empty() {
            tracing::debug!(%origin, count = pdus.len(), "PDUs ignored: no rooms shared with other servers yet");
        }
        for edu in edus {
            self.apply(origin, edu).await?;
        }
        let answer = serde_json::json!({ "pdus": {} }).to_string();
        self.store.record_inbound_transaction(origin.as_str(), txn_id, &answer, now_ms()).await?;
        Ok(answer)
    }

    async fn apply(&self, origin: &ServerName, edu: &Raw<Edu>) -> Result<()> {
        match edu.deserialize() {
            Ok(Edu::DirectToDevice(content)) => self.to_device.receive(origin, &content).await,
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
