//! Typing notifications: `PUT /rooms/{roomId}/typing/{userId}`, kept in
//! memory (never stored as history), expired by the server, and delivered
//! as `m.typing` in sync's `ephemeral`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#typing-notifications>.
//!
//! Typing has its own serial, the second field of the sync token: it is
//! not persisted, so after a restart the serial starts again and the
//! serial of a token from an earlier run simply means "send the current
//! typing state" (`SyncToken::validate`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{Result, notifier::Notifier, rooms::Rooms};

/// The longest a client may ask to be shown typing without renewing.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct RoomTyping {
    users: HashMap<OwnedUserId, Instant>,
    /// The serial of this room's last change.
    changed: u64,
}

#[derive(Default)]
struct Inner {
    serial: u64,
    rooms: HashMap<OwnedRoomId, RoomTyping>,
}

/// How long another server's typing notice lasts unless renewed or
/// stopped (the EDU carries no timeout).
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is typing where. Cheap to clone.
#[derive(Clone)]
pub struct Typing {
    inner: Arc<Mutex<Inner>>,
    notifier: Notifier,
    rooms: Rooms,
}

impl Typing {
    pub fn new(notifier: Notifier, rooms: Rooms) -> Self {
        Self { inner: Arc::default(), notifier, rooms }
    }

    /// A local user's typing notice: shown here and sent to the room's
    /// other servers as an `m.typing` EDU.
    pub async fn set_local(&self, room: &RoomId, user: &UserId, typing: Option<Duration>) -> Result<()> {
        self.set(room, user, typing).await?;
        let edu = serde_json::json!({ "edu_type": "m.typing", "content": {
            "room_id": room, "user_id": user, "typing": typing.is_some(),
        } });
        self.rooms.send_edu_to_room(room, &edu).await
    }

    /// Another server's `m.typing` EDU: applied if the user is of that
    /// server and joined to the room.
    pub async fn receive(
        &self,
        origin: &ruma::ServerName,
        room: &RoomId,
        user: &UserId,
        typing: bool,
    ) -> Result<()> {
        if user.server_name() != origin
            || !self.rooms.is_joined(room, user).await?
            || !self.rooms.server_allowed(room, origin).await?
        {
            tracing::debug!(%origin, %user, %room, "typing EDU ignored");
            return Ok(());
        }
        self.set(room, user, typing.then_some(REMOTE_TIMEOUT)).await
    }

    /// The serial of the latest change anywhere.
    pub fn serial(&self) -> u64 {
        self.lock().serial
    }

    /// Marks `user` as typing in `room` for `timeout`, or stops it.
    pub async fn set(&self, room: &RoomId, user: &UserId, typing: Option<Duration>) -> Result<()> {
        let changed = {
            let mut inner = self.lock();
            inner.serial += 1;
            let serial = inner.serial;
            let entry = inner.rooms.entry(room.to_owned()).or_default();
            let changed = match typing {
                Some(timeout) => {
                    let expires = Instant::now() + timeout.min(MAX_TIMEOUT);
                    entry.users.insert(user.to_owned(), expires).is_none()
                }
                None => entry.users.remove(user).is_some(),
            };
            // Renewing an ongoing typing notice is not news.
            if changed {
                entry.changed = serial;
            }
            changed
        };
        if let Some(timeout) = typing {
            self.expire_later(room.to_owned(), user.to_owned(), timeout.min(MAX_TIMEOUT));
        }
        if changed {
            self.notifier.room_changed(room, None).await?;
        }
        Ok(())
    }

    /// Who is typing in `room` now, if it changed after serial `since`
    /// (`None` for an initial sync: always answer).
    pub fn typing_since(&self, room: &RoomId, since: Option<u64>) -> Option<Vec<OwnedUserId>> {
        let inner = self.lock();
        let entry = inner.rooms.get(room)?;
        if since.is_some_and(|since| entry.changed <= since) {
            return None;
        }
        let now = Instant::now();
        let mut users: Vec<OwnedUserId> =
            entry.users.iter().filter(|(_, exp)| **exp > now).map(|(u, _)| u.clone()).collect();
        users.sort();
        Some(users)
    }

    /// Rooms whose typing changed after serial `since`.
    pub fn rooms_changed_since(&self, since: u64) -> Vec<OwnedRoomId> {
        self.lock().rooms.iter().filter(|(_, r)| r.changed > since).map(|(room, _)| room.clone()).collect()
    }

    /// Removes the notice when it runs out (unless it was renewed), which
    /// is itself a change members' syncs must see.
    fn expire_later(&self, room: OwnedRoomId, user: OwnedUserId, after: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let expired = {
                let mut inner = this.lock();
                inner.serial += 1;
                let serial = inner.serial;
                match inner.rooms.get_mut(&room) {
                    Some(entry) if entry.users.get(&user).is_some_and(|exp| *exp <= Instant::now()) => {
                        entry.users.remove(&user);
                        entry.changed = serial;
                        true
                    }
                    _ => false,
                }
            };
            if expired && let Err(e) = this.notifier.room_changed(&room, None).await {
                tracing::warn!(error = %e, "could not notify a typing expiry");
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
