//! The outbox: room events (PDUs) and EDUs for other servers, stored first
//! (`outbound_pdus`, `outbound_edus`, in the transaction of the change they
//! carry), then sent by one task per destination, in order, up to 50 PDUs
//! and 100 EDUs (and 1 MiB of EDUs) per transaction, one transaction in
//! flight. What a destination accepted is deleted; a
//! lasting refusal (a 4xx other than 408 and 429) drops them; any other
//! failure is retried after a backoff that doubles from one second to ten
//! minutes. A transaction's ID is a hash of its EDUs' queue positions, so
//! the same batch retried keeps its ID and two batches never share one
//! (receivers drop a repeated ID). A restart
//! resumes from what is stored. One slow or dead destination holds up
//! only its own task. Woken by [`Outbox::wake`] after a write, never by
//! polling.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#transactions>.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{OwnedServerName, api::federation::transactions::edu::Edu, serde::Raw};
use tessera_storage::Store;
use tokio::sync::Notify;

use super::{Remote, RemoteError};

/// EDUs per transaction at most (the spec's limit).
pub const MAX_EDUS: i64 = 100;
/// PDUs per transaction at most (the spec's limit).
pub const MAX_PDUS: i64 = 50;
/// Bytes of EDUs per transaction at most (a single larger EDU goes alone).
const MAX_BYTES: usize = 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// How long a failing read of the queue waits before trying again.
const STORAGE_RETRY: Duration = Duration::from_secs(5);

/// The outbox. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    remote: Arc<dyn Remote>,
    /// Each destination's sender task, woken through its `Notify`.
    senders: Mutex<HashMap<OwnedServerName, Arc<Notify>>>,
    /// Set when the server shuts down: the senders stop.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Outbox {
    /// The outbox, with a sender for every destination that has EDUs
    /// waiting from before a restart.
    pub async fn start(store: Store, remote: Arc<dyn Remote>) -> crate::Result<Self> {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let outbox = Self { inner: Arc::new(Inner { store, remote, senders: Mutex::default(), shutdown }) };
        let mut destinations = outbox.inner.store.edu_destinations().await?;
        destinations.extend(outbox.inner.store.pdu_destinations().await?);
        destinations.sort();
        destinations.dedup();
        for destination in destinations {
            match OwnedServerName::try_from(destination.as_str()) {
                Ok(destination) => outbox.wake(&destination),
                Err(e) => tracing::warn!(destination, error = %e, "queued EDUs for a malformed server name"),
            }
        }
        Ok(outbox)
    }

    /// Stops every sender (the server is shutting down); what is queued
    /// stays for the next start.
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// New PDUs or EDUs for `destination` are stored: its sender sends them.
    pub fn wake(&self, destination: &ruma::ServerName) {
        let mut senders = self.inner.senders.lock().expect("outbox senders");
        if let Some(notify) = senders.get(destination) {
            notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        senders.insert(destination.to_owned(), notify.clone());
        tokio::spawn(self.clone().send_loop(destination.to_owned(), notify));
    }

    async fn send_loop(self, destination: OwnedServerName, notify: Arc<Notify>) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut backoff = Duration::ZERO;
        // Waits for `wait`, unless the server shuts down first.
        macro_rules! wait_or_stop {
            ($wait:expr) => {
                tokio::select! {
                    _ = $wait => {}
                    _ = shutdown.wait_for(|stopped| *stopped) => return,
                }
            };
        }
        loop {
            if *shutdown.borrow() {
                return;
            }
            let store = &self.inner.store;
            let read = async {
                Ok::<_, tessera_storage::StorageError>((
                    store.outbound_pdus(destination.as_str(), MAX_PDUS).await?,
                    store.outbound_edus(destination.as_str(), MAX_EDUS).await?,
                ))
            };
            let (pdus, batch) = match read.await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(%destination, error = %e, "outbox unreadable");
                    wait_or_stop!(tokio::time::sleep(STORAGE_RETRY));
                    continue;
                }
            };
            if batch.is_empty() && pdus.is_empty() {
                wait_or_stop!(notify.notified());
                continue;
            }
            // Up to MAX_BYTES of EDUs (at least one).
            let mut size = 0;
            let batch: Vec<_> = batch
                .into_iter()
                .take_while(|edu| {
                    size += edu.edu_json.len();
                    size == edu.edu_json.len() || size <= MAX_BYTES
                })
                .collect();
            let seqs: Vec<i64> = batch.iter().map(|edu| edu.seq).collect();
            let pdu_seqs: Vec<i64> = pdus.iter().map(|pdu| pdu.seq).collect();
            let edus: Vec<Raw<Edu>> = batch
                .iter()
                .filter_map(|edu| serde_json::value::RawValue::from_string(edu.edu_json.clone()).ok())
                .map(Raw::from_json)
                .collect();
            let pdus: Vec<Box<serde_json::value::RawValue>> = pdus
                .into_iter()
                .filter_map(|pdu| serde_json::value::RawValue::from_string(pdu.json).ok())
                .collect();
            let txn_id = transaction_id(&pdu_seqs, &seqs);
            let forget = || async {
                store.delete_pdus(destination.as_str(), &pdu_seqs).await?;
                store.delete_edus(destination.as_str(), &seqs).await
            };
            match self.inner.remote.send_transaction(&destination, &txn_id, pdus, edus).await {
                Ok(()) => {
                    backoff = Duration::ZERO;
                    if let Err(e) = forget().await {
                        // Sent again later: the receiver deduplicates both.
                        tracing::warn!(%destination, error = %e, "sent PDUs and EDUs not forgotten");
                    }
                }
                // Refused for good (not a rate limit or a timeout): retrying
                // would hold up everything behind it for ever.
                Err(RemoteError::Status { status, ref body, .. })
                    if (400..500).contains(&status) && status != 408 && status != 429 =>
                {
                    tracing::warn!(%destination, status, body, pdus = pdu_seqs.len(), edus = seqs.len(), "transaction refused: dropped");
                    if let Err(e) = forget().await {
                        tracing::warn!(%destination, error = %e, "refused PDUs and EDUs not forgotten");
                    }
                }
                // Not to be contacted (the operator's server list, or no
                // public address): nothing queued for it will ever go.
                Err(RemoteError::NotAllowed { ref reason, .. }) => {
                    tracing::warn!(%destination, reason, pdus = pdu_seqs.len(), edus = seqs.len(), "destination not allowed: transaction dropped");
                    if let Err(e) = forget().await {
                        tracing::warn!(%destination, error = %e, "dropped PDUs and EDUs not forgotten");
                    }
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    tracing::info!(%destination, error = %e, retry_in = ?backoff, "transaction not delivered");
                    wait_or_stop!(tokio::time::sleep(backoff));
                }
            }
        }
    }
}

/// The ID of the transaction carrying the PDUs and EDUs queued at
/// `pdu_seqs` and `edu_seqs`.
fn transaction_id(pdu_seqs: &[i64], edu_seqs: &[i64]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for seq in pdu_seqs {
        hash.update(seq.to_be_bytes());
    }
    hash.update(b"/");
    for seq in edu_seqs {
        hash.update(seq.to_be_bytes());
    }
    let first = pdu_seqs.first().or(edu_seqs.first()).copied().unwrap_or_default();
    format!("{first}-{}", hex::encode(&hash.finalize()[..8]))
}
