//! To-device messages: `PUT /sendToDevice/{eventType}/{txnId}`, delivered
//! once to each target device in its sync and deleted when the device
//! acknowledges them by syncing with a later token.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#send-to-device-messaging>.

use std::collections::BTreeMap;

use ruma::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde_json::{Value, json};
use tessera_storage::{Store, ToDeviceTarget};

use crate::{Result, auth::Identity, changes::ChangeLog, notifier::Notifier, streams::StreamAllocator};

/// Messages delivered per sync at most; the rest follow in the next.
const BATCH: i64 = 100;

/// A target: one device, or every device of the user (`*`).
pub enum Devices {
    One(OwnedDeviceId),
    All,
}

/// The to-device service.
#[derive(Clone)]
pub struct ToDevice {
    store: Store,
    streams: StreamAllocator,
    notifier: Notifier,
    server_name: OwnedServerName,
    /// Per recipient user, the position of their last queued message.
    changes: ChangeLog,
}

impl ToDevice {
    pub fn new(
        store: Store,
        streams: StreamAllocator,
        notifier: Notifier,
        server_name: OwnedServerName,
    ) -> Self {
        let changes = ChangeLog::new(&streams);
        Self { store, streams, notifier, server_name, changes }
    }

    /// Queues `messages` (JSON content per user and device) from `who`.
    /// A repeated transaction ID changes nothing.
    pub async fn send(
        &self,
        who: &Identity,
        event_type: &str,
        txn_id: &str,
        messages: BTreeMap<OwnedUserId, Vec<(Devices, String)>>,
    ) -> Result<()> {
        let mut targets: Vec<(OwnedUserId, OwnedDeviceId, String)> = Vec::new();
        for (user, devices) in messages {
            if user.server_name() != self.server_name {
                // Remote users need federation (a later issue).
                tracing::debug!(%user, "to-device message for a remote user dropped");
                continue;
            }
            let known: Vec<OwnedDeviceId> =
                self.store.list_devices(&user).await?.into_iter().map(|d| d.device_id).collect();
            for (devices, content) in devices {
                match devices {
                    Devices::All => {
                        targets.extend(known.iter().map(|d| (user.clone(), d.clone(), content.clone())))
                    }
                    Devices::One(device) if known.contains(&device) => {
                        targets.push((user.clone(), device, content))
                    }
                    Devices::One(_) => {}
                }
            }
        }
        let rows: Vec<ToDeviceTarget<'_>> = targets
            .iter()
            .map(|(user, device, content)| ToDeviceTarget { user_id: user, device_id: device, content })
            .collect();
        let position = self.streams.reserve().await?;
        // Recorded before writing (see `ChangeLog`).
        for user in targets.iter().map(|(user, _, _)| user) {
            self.changes.record(user.as_str(), position.position);
        }
        let sent = self
            .store
            .queue_to_device((&who.user_id, &who.device_id, txn_id), event_type, &rows, position.position)
            .await?;
        drop(position);
        if sent {
            for user in targets.iter().map(|(user, _, _)| user) {
                self.notifier.user_changed(user);
            }
        }
        Ok(())
    }

    /// Whether a message for `user` may have been queued after `after`.
    pub fn changed_after(&self, user: &UserId, after: i64) -> bool {
        self.changes.changed_after(user.as_str(), after)
    }

    /// The messages waiting for a device after it acknowledged `acked`, and
    /// the position the next token may acknowledge.
    pub(crate) async fn for_device(
        &self,
        user: &UserId,
        device: &DeviceId,
        acked: i64,
        upto: i64,
    ) -> Result<(Vec<Value>, i64)> {
        if !self.changes.changed_after(user.as_str(), acked) {
            // Nothing queued since: no read, and no delete (what the device
            // acknowledged goes with the next message's acknowledgement).
            return Ok((Vec::new(), upto));
        }
        let rows = self.store.take_to_device(user, device, acked, upto, BATCH).await?;
        // With a full batch, more may wait: acknowledge only what was sent.
        let next = match rows.last() {
            Some(last) if i64::try_from(rows.len()).unwrap_or(0) == BATCH => last.stream_ordering,
            _ => upto,
        };
        // A row that cannot be read back (stored before the edge checked
        // bodies) is skipped, never the whole sync: it is deleted with the
        // rest of the batch once the device acknowledges it.
        let events = rows
            .into_iter()
            .filter_map(|row| match serde_json::from_str::<Value>(&row.content) {
                Ok(content) => Some(json!({ "sender": row.sender, "type": row.event_type, "content": content })),
                Err(e) => {
                    tracing::warn!(%user, %device, position = row.stream_ordering, error = %e, "unreadable to-device message skipped");
                    None
                }
            })
            .collect();
        Ok((events, next))
    }
}
