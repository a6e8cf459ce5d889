//! The outbox: EDUs for other servers, stored first (`outbound_edus`, in
//! the transaction of the change they carry), then sent by one task per
//! destination, in order, up to 100 per transaction, one transaction in
//! flight. A transaction the destination accepted is deleted; a failure is
//! retried after a backoff that doubles from one second to ten minutes,
//! with the same transaction ID while the batch is the same. A restart
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

use super::Remote;

/// EDUs per transaction at most (the spec's limit).
pub const MAX_EDUS: i64 = 100;
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
        for destination in outbox.inner.store.edu_destinations().await? {
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

    /// New EDUs for `destination` are stored: its sender sends them.
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
            let batch = match self.inner.store.outbound_edus(destination.as_str(), MAX_EDUS).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(%destination, error = %e, "outbox unreadable");
                    wait_or_stop!(tokio::time::sleep(STORAGE_RETRY));
                    continue;
                }
            };
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                wait_or_stop!(notify.notified());
                continue;
            };
            let (first, last) = (first.seq, last.seq);
            let edus: Vec<Raw<Edu>> = batch
                .iter()
                .filter_map(|edu| serde_json::value::RawValue::from_string(edu.edu_json.clone()).ok())
                .map(Raw::from_json)
                .collect();
            let txn_id = format!("{first}-{last}");
            match self.inner.remote.send_transaction(&destination, &txn_id, edus).await {
                Ok(()) => {
                    backoff = Duration::ZERO;
                    if let Err(e) = self.inner.store.delete_edus_upto(destination.as_str(), last).await {
                        // Sent again later: the destination dedupes by ID.
                        tracing::warn!(%destination, error = %e, "sent EDUs not forgotten");
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
