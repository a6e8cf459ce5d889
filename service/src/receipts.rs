//! Receipts and read markers: `POST /rooms/{roomId}/receipt/{type}/{eventId}`
//! and `POST /rooms/{roomId}/read_markers`. Public receipts (`m.read`) go
//! to every member's sync, private ones (`m.read.private`) only to their
//! owner; `m.fully_read` is room account data.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#receipts>.

use ruma::{EventId, RoomId};
use serde_json::{Map, Value, json};
use tessera_storage::{NewReceipt, Store};

use crate::{
    Error, Result, account_data::AccountData, auth::Identity, changes::ChangeLog, notifier::Notifier, now_ms,
    rooms::Rooms, streams::StreamAllocator,
};

/// The receipts service.
#[derive(Clone)]
pub struct Receipts {
    store: Store,
    rooms: Rooms,
    account_data: AccountData,
    streams: StreamAllocator,
    notifier: Notifier,
    /// Per room, the position of its last receipt.
    changes: ChangeLog,
}

impl Receipts {
    pub fn new(
        store: Store,
        rooms: Rooms,
        account_data: AccountData,
        streams: StreamAllocator,
        notifier: Notifier,
    ) -> Self {
        let changes = ChangeLog::new(&streams);
        Self { store, rooms, account_data, streams, notifier, changes }
    }

    /// Records a receipt of `kind` (`m.read`, `m.read.private`,
    /// `m.fully_read`) for `event_id`, optionally in a thread.
    pub async fn receipt(
        &self,
        who: &Identity,
        room: &RoomId,
        kind: &str,
        event_id: &EventId,
        thread: Option<&str>,
    ) -> Result<()> {
        self.rooms.require_joined(room, &who.user_id).await?;
        self.rooms.event(who, room, event_id).await?;
        match kind {
            "m.fully_read" => {
                if thread.is_some() {
                    return Err(Error::invalid_param("m.fully_read cannot be threaded"));
                }
                let content = json!({ "event_id": event_id });
                self.account_data.write(&who.user_id, Some(room), "m.fully_read", &content).await
            }
            "m.read" | "m.read.private" => {
                if let Some(thread) = thread.filter(|t| *t != "main") {
                    let root = EventId::parse(thread)
                        .map_err(|_| Error::invalid_param("thread_id is not an event ID"))?;
                    self.rooms
                        .event(who, room, &root)
                        .await
                        .map_err(|_| Error::invalid_param("Unknown thread"))?;
                }
                let ts = now_ms();
                self.store_receipt(room, &who.user_id, kind, thread.unwrap_or_default(), event_id, ts)
                    .await?;
                if kind == "m.read" {
                    let mut data = json!({ "ts": ts });
                    if let Some(thread) = thread {
                        data["thread_id"] = thread.into();
                    }
                    let edu = json!({ "edu_type": "m.receipt", "content": { room.as_str(): { "m.read": {
                        who.user_id.as_str(): { "event_ids": [event_id], "data": data },
                    } } } });
                    self.rooms.send_edu_to_room(room, &edu).await?;
                }
                Ok(())
            }
            other => Err(Error::invalid_param(format!("Unknown receipt type {other}"))),
        }
    }

    /// Stores a receipt and tells the room's (or, for a private one, the
    /// user's) syncs.
    async fn store_receipt(
        &self,
        room: &RoomId,
        user: &ruma::UserId,
        kind: &str,
        thread: &str,
        event_id: &EventId,
        ts: i64,
    ) -> Result<()> {
        let position = self.streams.reserve().await?;
        // Recorded before writing (see `ChangeLog`).
        self.changes.record(room.as_str(), position.position);
        // Dropped before the position is released.
        let storing = self.rooms.storing_receipt(user, room);
        self.store
            .put_receipt(NewReceipt {
                room_id: room,
                user_id: user,
                receipt_type: kind,
                thread_id: thread,
                event_id: event_id.as_str(),
                ts,
                stream_ordering: position.position,
            })
            .await?;
        drop(storing);
        drop(position);
        if kind == "m.read" {
            self.notifier.room_changed(room, None).await
        } else {
            self.notifier.user_changed(user);
            Ok(())
        }
    }

    /// Another server's `m.receipt` EDU: each public receipt of one of its
    /// users joined to the room is stored (the last event named; a
    /// timestamp in the future is taken as now).
    pub async fn receive(
        &self,
        origin: &ruma::ServerName,
        content: &ruma::api::federation::transactions::edu::ReceiptContent,
    ) -> Result<()> {
        for (room, map) in &content.receipts {
            for (user, receipt) in &map.read {
                if user.server_name() != origin
                    || !self.rooms.is_joined(room, user).await?
                    || !self.rooms.server_allowed(room, origin).await?
                {
                    tracing::debug!(%origin, %user, %room, "receipt EDU ignored");
                    continue;
                }
                let Some(event_id) = receipt.event_ids.last() else { continue };
                let ts = receipt
                    .data
                    .ts
                    .and_then(|ts| i64::try_from(u64::from(ts.0)).ok())
                    .map_or_else(now_ms, |ts| ts.min(now_ms()));
                let thread = match &receipt.data.thread {
                    ruma::events::receipt::ReceiptThread::Main => "main".to_owned(),
                    ruma::events::receipt::ReceiptThread::Thread(root) => root.to_string(),
                    _ => String::new(),
                };
                self.store_receipt(room, user, "m.read", &thread, event_id, ts).await?;
            }
        }
        Ok(())
    }

    /// Whether the room may have receipts after stream position `after`.
    pub fn changed_after(&self, room: &str, after: i64) -> bool {
        self.changes.changed_after(room, after)
    }

    /// `POST /rooms/{roomId}/read_markers`.
    pub async fn read_markers(
        &self,
        who: &Identity,
        room: &RoomId,
        fully_read: Option<&EventId>,
        read: Option<&EventId>,
        read_private: Option<&EventId>,
    ) -> Result<()> {
        for (kind, event) in
            [("m.fully_read", fully_read), ("m.read", read), ("m.read.private", read_private)]
        {
            if let Some(event) = event {
                self.receipt(who, room, kind, event, None).await?;
            }
        }
        Ok(())
    }

    /// The `m.receipt` event for a room's receipts in `(after, upto]` as
    /// `viewer` may see them (others' private receipts left out).
    pub async fn receipt_event(
        &self,
        room: &RoomId,
        viewer: &str,
        after: i64,
        upto: i64,
    ) -> Result<Option<Value>> {
        if !self.changed_after(room.as_str(), after) {
            return Ok(None);
        }
        let mut content = Map::new();
        for receipt in self.store.receipts_changed(room, after, upto).await? {
            if receipt.receipt_type == "m.read.private" && receipt.user_id != viewer {
                continue;
            }
            let mut data = json!({ "ts": receipt.ts });
            if !receipt.thread_id.is_empty() {
                data["thread_id"] = receipt.thread_id.clone().into();
            }
            let by_type = content.entry(receipt.event_id).or_insert_with(|| json!({}));
            let slot = &mut by_type[receipt.receipt_type.as_str()][receipt.user_id.as_str()];
            // One receipt per user, type and event: an unthreaded one wins
            // over a threaded one for the same event (MSC4102).
            let unthreaded_held = slot.is_object() && slot.get("thread_id").is_none();
            if !unthreaded_held {
                *slot = data;
            }
        }
        Ok((!content.is_empty()).then(|| json!({ "type": "m.receipt", "content": content })))
    }
}
