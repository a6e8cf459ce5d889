//! Delivery status (beyond the spec): the sender learns which event of a
//! room each member has received on at least one device, as the ephemeral
//! event `org.tessera.delivered`. Specified in docs/delivery-status.md.
//!
//! A device that asks for its next batch with `since = S` has received
//! everything up to S. On such a request the server records, for each
//! room with new events since the user's last record, the latest event up
//! to S: one read and one upsert per room that actually had news, batched
//! per sync, never one write per message per member. Members' syncs read
//! the records lazily; only the senders of newly delivered events are woken.

use std::collections::{BTreeMap, HashSet};

use ruma::{RoomId, UserId};
use serde_json::{Value, json};
use tessera_storage::Store;

use crate::{Result, notifier::Notifier, now_ms, streams::StreamAllocator};

/// The delivery-status service.
#[derive(Clone)]
pub struct Delivery {
    store: Store,
    streams: StreamAllocator,
    notifier: Notifier,
}

impl Delivery {
    pub fn new(store: Store, streams: StreamAllocator, notifier: Notifier) -> Self {
        Self { store, streams, notifier }
    }

    /// A device of `user` acknowledged everything up to `acked`.
    pub async fn acknowledged(&self, user: &UserId, acked: i64) -> Result<()> {
        let recorded = self.store.delivered_upto(user).await?;
        if acked <= recorded {
            return Ok(());
        }
        let mut deliveries = Vec::new();
        let mut senders = HashSet::new();
        for room in self.store.joined_rooms_with_events(user, recorded, acked).await? {
            let Ok(room_id) = RoomId::parse(&room) else { continue };
            if let Some(event) = self.store.last_event_upto(&room_id, acked).await? {
                if event.sender != user.as_str() {
                    senders.insert(event.sender.clone());
                }
                deliveries.push((room, event.event_id.to_string()));
            }
        }
        let position = self.streams.reserve();
        self.store.record_deliveries(user, &deliveries, acked, now_ms(), position.position).await?;
        drop(position);
        for sender in senders {
            if let Ok(sender) = UserId::parse(&sender) {
                self.notifier.user_changed(&sender);
            }
        }
        Ok(())
    }

    /// Per room, the `org.tessera.delivered` event of the deliveries
    /// recorded in `(after, upto]` that `viewer` may see.
    pub async fn events_for(
        &self,
        viewer: &UserId,
        after: i64,
        upto: i64,
    ) -> Result<BTreeMap<String, Value>> {
        let mut by_room: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
        for row in self.store.deliveries_for(viewer, after, upto).await? {
            by_room
                .entry(row.room_id)
                .or_default()
                .insert(row.user_id, json!({ "event_id": row.event_id, "ts": row.ts }));
        }
        Ok(by_room
            .into_iter()
            .map(|(room, content)| (room, json!({ "type": "org.tessera.delivered", "content": content })))
            .collect())
    }
}
