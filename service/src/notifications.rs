//! `GET /notifications`: the events a user was (or would have been)
//! notified about, newest first, from the push-rule verdicts `rooms`
//! stores with each event. The `from` token is the stream position to
//! continue below. Spec:
//! <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3notifications>.

use std::collections::HashMap;

use serde_json::Value;
use tessera_storage::Store;

use crate::{
    Error, Result,
    auth::Identity,
    rooms::{ClientEvent, Form, Rooms},
};

/// Notifications per page when the client names no limit.
const DEFAULT_LIMIT: u64 = 20;
/// The most notifications one page returns.
const MAX_LIMIT: u64 = 1000;

/// One entry of the list.
pub struct Notification {
    pub room_id: String,
    pub event: ClientEvent,
    /// The matching rule's actions.
    pub actions: Value,
    pub read: bool,
    pub ts: i64,
}

/// A page of notifications.
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    /// The `from` of the next page; `None` at the end.
    pub next_token: Option<String>,
}

/// The notifications service.
#[derive(Clone)]
pub struct Notifications {
    store: Store,
    rooms: Rooms,
}

impl Notifications {
    pub fn new(store: Store, rooms: Rooms) -> Self {
        Self { store, rooms }
    }

    /// A page of the user's notifications below `from` (a previous
    /// `next_token`), only highlights if `only` is `highlight`.
    pub async fn list(
        &self,
        who: &Identity,
        from: Option<&str>,
        limit: Option<u64>,
        only: Option<&str>,
    ) -> Result<NotificationPage> {
        let before = match from {
            None => i64::MAX,
            Some(token) => token
                .parse::<i64>()
                .ok()
                .filter(|position| *position > 0)
                .ok_or_else(|| Error::invalid_param("Unknown pagination token"))?,
        };
        let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let only_highlight = only.is_some_and(|only| only.contains("highlight"));
        // One more than asked tells whether another page follows.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let mut rows = self.store.notifications(&who.user_id, before, fetch, only_highlight).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_token = more.then(|| rows.last().map(|row| row.stream_ordering.to_string())).flatten();

        let ids: Vec<String> = rows.iter().map(|row| row.event_id.clone()).collect();
        let stored = self.store.get_events(&ids).await?;
        let viewer = Some((who.user_id.as_str(), &*who.device_id));
        let form = Form { room_id: false, ..Form::plain(viewer) };
        let formatted = self.rooms.client_events(&stored, form).await?;
        let mut events: HashMap<String, ClientEvent> =
            stored.iter().map(|stored| stored.event_id.to_string()).zip(formatted).collect();
        let mut notifications = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(event) = events.remove(&row.event_id) else { continue };
            notifications.push(Notification {
                room_id: row.room_id,
                event,
                actions: serde_json::from_str(&row.actions).map_err(Error::internal)?,
                read: row.read,
                ts: row.ts,
            });
        }
        Ok(NotificationPage { notifications, next_token })
    }
}
