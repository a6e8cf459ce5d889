//! To-device messages: `PUT /sendToDevice/{eventType}/{txnId}`, delivered
//! once to each target device in its sync and deleted when the device
//! acknowledges them by syncing with a later token. Messages for other
//! servers' users leave through the federation outbox as
//! `m.direct_to_device` EDUs; theirs arrive through [`ToDevice::receive`].
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#send-to-device-messaging>.

use std::collections::BTreeMap;

use ruma::{
    DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UserId,
    api::federation::transactions::edu::DirectDeviceContent, to_device::DeviceIdOrAllDevices,
};
use serde_json::{Map, Value, json};
use tessera_storage::{Store, ToDeviceTarget};

use crate::{
    Error, Result, auth::Identity, changes::ChangeLog, federation::Outbox, notifier::Notifier,
    streams::StreamAllocator,
};

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
    /// Carries messages for other servers' users.
    outbox: Outbox,
    /// Per recipient user, the position of their last queued message.
    changes: ChangeLog,
}

impl ToDevice {
    pub fn new(
        store: Store,
        streams: StreamAllocator,
        notifier: Notifier,
        server_name: OwnedServerName,
        outbox: Outbox,
    ) -> Self {
        let changes = ChangeLog::new(&streams);
        Self { store, streams, notifier, server_name, outbox, changes }
    }

    /// Queues `messages` (JSON content per user and device) from `who`:
    /// for local devices in their inboxes, for other servers' users as an
    /// `m.direct_to_device` EDU per server in the outbox, in one write.
    /// A repeated transaction ID changes nothing.
    pub async fn send(
        &self,
        who: &Identity,
        event_type: &str,
        txn_id: &str,
        messages: BTreeMap<OwnedUserId, Vec<(Devices, String)>>,
    ) -> Result<()> {
        let mut local = BTreeMap::new();
        let mut remote: BTreeMap<OwnedServerName, Map<String, Value>> = BTreeMap::new();
        for (user, devices) in messages {
            if user.server_name() == self.server_name {
                local.insert(user, devices);
                continue;
            }
            let mut by_device = Map::new();
            for (devices, content) in devices {
                let device = match devices {
                    Devices::One(device) => device.to_string(),
                    Devices::All => "*".to_owned(),
                };
                by_device.insert(device, serde_json::from_str(&content).map_err(Error::internal)?);
            }
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user.to_string(), by_device.into());
        }
        // The same for every retry of this transaction, so that the
        // receiving server can drop a duplicate.
        let message_id = {
            use sha2::Digest;
            let mut hash = sha2::Sha256::new();
            hash.update(who.device_id.as_bytes());
            hash.update([0]);
            hash.update(txn_id.as_bytes());
            hex::encode(&hash.finalize()[..16])
        };
        let edus: Vec<(String, String)> = remote
            .iter()
            .map(|(server, messages)| {
                let content = json!({
                    "sender": who.user_id,
                    "type": event_type,
                    "message_id": message_id,
                    "messages": messages,
                });
                (
                    server.to_string(),
                    json!({ "edu_type": "m.direct_to_device", "content": content }).to_string(),
                )
            })
            .collect();
        let sent = self.queue((&who.user_id, &who.device_id, txn_id), event_type, local, &edus).await?;
        if sent {
            for server in remote.keys() {
                self.outbox.wake(server);
            }
        }
        Ok(())
    }

    /// An `m.direct_to_device` EDU from `origin`: its messages for local
    /// users' devices, once per sender and message ID. A sender of
    /// another server than `origin` is refused (a server speaks only for
    /// its own users).
    pub async fn receive(&self, origin: &ServerName, content: &DirectDeviceContent) -> Result<()> {
        if content.sender.server_name() != origin {
            tracing::warn!(%origin, sender = %content.sender, "to-device EDU for another server's user dropped");
            return Ok(());
        }
        let mut local: BTreeMap<OwnedUserId, Vec<(Devices, String)>> = BTreeMap::new();
        for (user, devices) in &content.messages {
            if user.server_name() != self.server_name {
                continue;
            }
            let targets = devices
                .iter()
                .map(|(device, message)| {
                    let device = match device {
                        DeviceIdOrAllDevices::DeviceId(id) => Devices::One(id.clone()),
                        _ => Devices::All,
                    };
                    (device, message.json().get().to_owned())
                })
                .collect();
            local.insert(user.clone(), targets);
        }
        // Deduplicated per sender and message ID, as the origin's server
        // (standing in for the sending device) sends them.
        let sender_device: &DeviceId = origin.as_str().into();
        let event_type = content.ev_type.to_string();
        self.queue((&content.sender, sender_device, content.message_id.as_str()), &event_type, local, &[])
            .await?;
        Ok(())
    }

    /// Writes the local messages and the EDUs in one transaction, once per
    /// sender key; wakes the recipients. `false` if the key was seen.
    async fn queue(
        &self,
        sender: (&UserId, &DeviceId, &str),
        event_type: &str,
        messages: BTreeMap<OwnedUserId, Vec<(Devices, String)>>,
        edus: &[(String, String)],
    ) -> Result<bool> {
        // One message per device: a device named on its own gets its own
        // message rather than the one for all devices (`*`).
        let mut by_device: BTreeMap<(OwnedUserId, OwnedDeviceId), String> = BTreeMap::new();
        for (user, devices) in messages {
            let known: Vec<OwnedDeviceId> =
                self.store.list_devices(&user).await?.into_iter().map(|d| d.device_id).collect();
            let (all, named): (Vec<_>, Vec<_>) =
                devices.into_iter().partition(|(d, _)| matches!(d, Devices::All));
            for (_, content) in all {
                for device in &known {
                    by_device.insert((user.clone(), device.clone()), content.clone());
                }
            }
            for (device, content) in named {
                if let Devices::One(device) = device
                    && known.contains(&device)
                {
                    by_device.insert((user.clone(), device), content);
                }
            }
        }
        let targets: Vec<(OwnedUserId, OwnedDeviceId, String)> =
            by_device.into_iter().map(|((user, device), content)| (user, device, content)).collect();
        let rows: Vec<ToDeviceTarget<'_>> = targets
            .iter()
            .map(|(user, device, content)| ToDeviceTarget { user_id: user, device_id: device, content })
            .collect();
        let edus: Vec<(&str, &str)> =
            edus.iter().map(|(server, edu)| (server.as_str(), edu.as_str())).collect();
        let position = self.streams.reserve().await?;
        // Recorded before writing (see `ChangeLog`).
        for user in targets.iter().map(|(user, _, _)| user) {
            self.changes.record(user.as_str(), position.position);
        }
        let sent = self.store.queue_to_device(sender, event_type, &rows, &edus, position.position).await?;
        drop(position);
        if sent {
            for user in targets.iter().map(|(user, _, _)| user) {
                self.notifier.user_changed(user);
            }
        }
        Ok(sent)
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
