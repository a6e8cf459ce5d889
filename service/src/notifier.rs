//! The in-process notifier: wakes the waiting `/sync` requests that a
//! committed change concerns, and no others.
//!
//! Each user has one [`Listener`]. A sync request *registers* on it (enables
//! `Notified` futures) before it reads the database, and waits on it only if
//! the read found nothing: a change committed after the read wakes it, a
//! change committed before the read is in what it read. No wake-up is lost
//! and nothing polls. A room event wakes the room's local members (kept in
//! a membership cache updated by membership events), plus the target of a
//! membership change, who may just have left.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tessera_storage::Store;
use tokio::sync::Notify;

use crate::Result;

/// Memberships whose holders receive a room's events in sync.
const SYNCED_MEMBERSHIPS: [&str; 3] = ["join", "invite", "knock"];

struct Inner {
    store: Store,
    /// Set once the server is shutting down: waiting requests return.
    shutdown: tokio::sync::watch::Sender<bool>,
    users: Mutex<HashMap<OwnedUserId, Arc<Listener>>>,
    /// Shared, so that waking a room's members copies no member set.
    members: Mutex<HashMap<OwnedRoomId, Arc<HashSet<OwnedUserId>>>>,
}

/// What one user's waiting requests wait on.
#[derive(Default)]
pub struct Listener {
    /// Any change a sync carries, but delivery status.
    pub changes: Notify,
    /// Delivery status (docs/delivery-status.md): kept apart because it
    /// moves every [`crate::delivery`] flush for an active sender, and a
    /// sync whose filter leaves it out must not wake for it.
    pub deliveries: Notify,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    pub fn new(store: Store) -> Self {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Self {
            inner: Arc::new(Inner { store, shutdown, users: Mutex::default(), members: Mutex::default() }),
        }
    }

    /// Ends every wait: long-polls answer at once so that a graceful
    /// shutdown does not hang on them.
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Whether the server is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Resolves when the server starts shutting down.
    pub async fn shutting_down(&self) {
        let mut receiver = self.inner.shutdown.subscribe();
        let _ = receiver.wait_for(|down| *down).await;
    }

    /// The handles a request for `user` waits on.
    pub fn listener(&self, user: &UserId) -> Arc<Listener> {
        let mut users = self.inner.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.len() > 1024 && users.len().is_power_of_two() {
            // Forget users nobody is waiting for (only the map holds them).
            users.retain(|_, notify| Arc::strong_count(notify) > 1);
        }
        users.entry(user.to_owned()).or_default().clone()
    }

    /// Wakes one user's waiting requests (their own account changed).
    pub fn user_changed(&self, user: &UserId) {
        if let Some(listener) = self.inner.users.lock().unwrap_or_else(|p| p.into_inner()).get(user) {
            listener.changes.notify_waiters();
        }
    }

    /// Wakes one user's waiting requests that want delivery status.
    pub fn deliveries_changed(&self, user: &UserId) {
        if let Some(listener) = self.inner.users.lock().unwrap_or_else(|p| p.into_inner()).get(user) {
            listener.deliveries.notify_waiters();
        }
    }

    /// Drops the cached member set of a room (reloaded when next needed):
    /// for a membership change whose outcome is unknown.
    pub fn forget_members(&self, room_id: &RoomId) {
        self.inner.members.lock().unwrap_or_else(|p| p.into_inner()).remove(room_id);
    }

    /// After an event in `room_id` committed: wakes its local members, and
    /// applies a membership change (`target`, `membership`) to the cache.
    pub async fn room_changed(&self, room_id: &RoomId, membership: Option<(&UserId, &str)>) -> Result<()> {
        let cached = self.inner.members.lock().unwrap_or_else(|p| p.into_inner()).get(room_id).cloned();
        let store_back = cached.is_none() || membership.is_some();
        let mut members = match cached {
            Some(members) => members,
            None => {
                let loaded: HashSet<OwnedUserId> = self
                    .inner
                    .store
                    .room_members(room_id)
                    .await?
                    .into_iter()
                    .filter(|(m, _)| SYNCED_MEMBERSHIPS.contains(&m.as_str()))
                    .filter_map(|(_, event)| event.state_key.and_then(|k| UserId::parse(k).ok()))
                    .collect();
                Arc::new(loaded)
            }
        };
        if let Some((target, membership)) = membership {
            if SYNCED_MEMBERSHIPS.contains(&membership) {
                Arc::make_mut(&mut members).insert(target.to_owned());
            } else {
                Arc::make_mut(&mut members).remove(target);
            }
            self.user_changed(target);
        }
        {
            let users = self.inner.users.lock().unwrap_or_else(|p| p.into_inner());
            for member in members.iter() {
                if let Some(listener) = users.get(member) {
                    listener.changes.notify_waiters();
                }
            }
        }
        if store_back {
            self.inner.members.lock().unwrap_or_else(|p| p.into_inner()).insert(room_id.to_owned(), members);
        }
        Ok(())
    }
}
