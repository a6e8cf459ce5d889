//! Device lists: which users' devices or identity keys changed, as a
//! stream (`device_list_changes`) that `/sync`'s `device_lists` and
//! `GET /keys/changes` read.
//!
//! A change takes a stream position like any other sync stream, is noted
//! in a [`ChangeLog`] before the position is released, and wakes the user
//! and everyone sharing a joined room with them. Who a change is shown to
//! is decided when it is read, from the rooms shared *then*: a user who
//! shares no room with the reader is never in `changed`, unless the reader
//! signed their master key (`user_signature_changes`), a change shown to
//! the signer alone.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#tracking-the-device-list-for-a-user>.

use std::collections::BTreeSet;

use ruma::{OwnedServerName, OwnedUserId, RoomId, UserId};
use tessera_storage::Store;

use super::federated::DeviceSnapshot;
use crate::{Error, Result, changes::ChangeLog, notifier::Notifier, rooms::Rooms, streams::StreamAllocator};

/// A device-list change recorded ahead of its write (see
/// [`DeviceLists::begin_device_change`]).
pub struct PendingDeviceChange {
    lists: DeviceLists,
    user: OwnedUserId,
    position: crate::streams::Reserved,
    /// For a local user sharing rooms with other servers: those servers
    /// and the devices before the change, to tell them what changed.
    news: Option<(Vec<OwnedServerName>, DeviceSnapshot)>,
}

impl PendingDeviceChange {
    /// The change's stream position.
    pub fn position(&self) -> i64 {
        self.position.position
    }

    /// The write is done (or failed): releases the position, wakes the
    /// syncs concerned and tells other servers what changed. A failure to
    /// wake or tell them is logged, not answered: the change is recorded,
    /// and their next sync (or the next update's `prev_id`) reports it.
    pub async fn finish(mut self) {
        let news = self.news.take();
        let (lists, user, at) = (self.lists.clone(), self.user.clone(), self.position.position);
        self.release().await;
        if let Some((servers, before)) = news {
            match lists.device_snapshot(&user).await {
                Ok(after) => {
                    let changed = super::federated::changed_devices(&before, &after);
                    lists.send_device_news(&user, &servers, changed, at).await;
                }
                Err(e) => tracing::warn!(%user, error = %e, "device-list change not sent to other servers"),
            }
        }
    }

    /// Releases the position and wakes the syncs concerned; other servers
    /// are not told.
    pub(super) async fn release(self) {
        let Self { lists, user, position, .. } = self;
        lists.key_counts.forget_user(user.as_str());
        drop(position);
        if let Err(e) = lists.wake(&user).await {
            tracing::warn!(%user, error = %e, "device-list change: syncs not woken");
        }
    }
}

/// The users an incremental sync or `/keys/changes` reports.
#[derive(Default, Debug)]
pub struct DeviceListChanges {
    /// Devices or keys changed, or newly sharing a room with the reader.
    pub changed: Vec<OwnedUserId>,
    /// No longer sharing any room with the reader.
    pub left: Vec<OwnedUserId>,
}

impl DeviceListChanges {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.left.is_empty()
    }
}

/// Records and reads device-list changes. Cheap to clone.
#[derive(Clone)]
pub struct DeviceLists {
    store: Store,
    streams: StreamAllocator,
    notifier: Notifier,
    rooms: Rooms,
    /// The position of the last change of anyone's device list (key "").
    changes: ChangeLog,
    /// Each device's key counts, which a device change forgets.
    key_counts: super::counts::KeyCountCache,
}

impl DeviceLists {
    pub fn new(store: Store, streams: StreamAllocator, notifier: Notifier, rooms: Rooms) -> Self {
        let changes = ChangeLog::new(&streams);
        Self { store, streams, notifier, rooms, changes, key_counts: Default::default() }
    }

    /// A device of `user` is about to be added or removed (login, logout,
    /// deletion): the change is recorded *before* the write, at a position
    /// held until [`PendingDeviceChange::finish`] after it. So no reader
    /// sees the change before the devices it announces, and a crash after
    /// the write cannot lose it; a write that fails leaves an extra change,
    /// which only makes clients re-query.
    pub async fn begin_device_change(&self, user: &UserId) -> Result<PendingDeviceChange> {
        let servers = self.news_destinations(user).await?;
        let before = if servers.is_empty() { None } else { Some(self.device_snapshot(user).await?) };
        let mut pending = self.record_change(user).await?;
        pending.news = before.map(|before| (servers, before));
        Ok(pending)
    }

    /// Records a change of `user`'s device list at a new position, held
    /// until [`PendingDeviceChange::finish`]; other servers are not told.
    pub(super) async fn record_change(&self, user: &UserId) -> Result<PendingDeviceChange> {
        let position = self.streams.reserve().await?;
        // Noted before the position is released (see `ChangeLog`).
        self.changes.record("", position.position);
        self.store.record_device_list_change(user, position.position).await?;
        Ok(PendingDeviceChange { lists: self.clone(), user: user.to_owned(), position, news: None })
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    pub(super) fn key_counts(&self) -> &super::counts::KeyCountCache {
        &self.key_counts
    }

    /// Reserves the position a key upload's change takes, noted as a
    /// change: the caller writes it and then calls [`Self::wake`].
    pub(super) async fn reserve(&self) -> Result<crate::streams::Reserved> {
        let position = self.streams.reserve().await?;
        self.changes.record("", position.position);
        Ok(position)
    }

    /// Wakes the syncs of `user` and of everyone sharing a room with them.
    pub(super) async fn wake(&self, user: &UserId) -> Result<()> {
        self.notifier.user_changed(user);
        for other in self.store.users_sharing_rooms(user).await? {
            if let Ok(other) = UserId::parse(&other) {
                self.notifier.user_changed(&other);
            }
        }
        Ok(())
    }

    /// Wakes the user's own syncs only (a change only they are shown).
    pub(super) fn wake_user_only(&self, user: &UserId) {
        self.notifier.user_changed(user);
    }

    /// Whether anyone's device list may have changed after `after`.
    pub fn changed_after(&self, after: i64) -> bool {
        self.changes.changed_after("", after)
    }

    /// What `user` is told changed in `(after, upto]`: users sharing a room
    /// with them whose device lists changed, or who newly share one (they
    /// joined, or the user joined their room), the user themself if their
    /// own devices changed; and in `left`, users the user stopped sharing
    /// every room with.
    pub async fn changes_between(&self, user: &UserId, after: i64, upto: i64) -> Result<DeviceListChanges> {
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut left: BTreeSet<String> = BTreeSet::new();
        if after >= upto {
            return Ok(DeviceListChanges::default());
        }
        // Users whose master keys this user signed: shown to them whatever
        // rooms they share (their other devices re-query the signed key).
        let mut signed = Vec::new();
        if self.changes.changed_after("", after) {
            changed.extend(self.store.device_list_changes_seen_by(user, after, upto).await?);
            signed = self.store.user_signature_changes(user, after, upto).await?;
        }
        // Their own devices changed (a new login): kept whatever they share.
        let mut own_change = changed.contains(user.as_str());
        let memberships = self.rooms.memberships_of(user, upto).await?;
        for membership in memberships.iter() {
            let mine_changed = membership.stream_ordering > after && membership.stream_ordering <= upto;
            let gone = matches!(membership.membership.as_str(), "leave" | "ban");
            let relevant = membership.membership == "join" || (mine_changed && gone);
            if !relevant || !self.rooms.members_changed_after(&membership.room_id, after) {
                continue;
            }
            let room_id = RoomId::parse(&membership.room_id).map_err(Error::internal)?;
            if mine_changed {
                // The user joined or left: everyone there now is new to
                // them, or possibly no longer shared.
                let members = self.store.joined_user_ids(&room_id).await?;
                if gone {
                    left.extend(members)
                } else {
                    // Their own list too, as on Synapse: their other
                    // devices now share the room with new people.
                    own_change |= members.iter().any(|m| m != user.as_str());
                    changed.extend(members)
                }
                continue;
            }
            for (other, now) in self.store.membership_changes_in_range(&room_id, after, upto).await? {
                match now.as_str() {
                    "join" => {
                        changed.insert(other);
                    }
                    "leave" | "ban" => {
                        left.insert(other);
                    }
                    _ => {}
                }
            }
        }
        if changed.is_empty() && left.is_empty() && signed.is_empty() {
            return Ok(DeviceListChanges::default());
        }
        // Sorted by the rooms shared now: someone who left one room but
        // shares another is not `left`.
        let shared: BTreeSet<String> = self.store.users_sharing_rooms(user).await?.into_iter().collect();
        changed.retain(|other| other != user.as_str() && shared.contains(other));
        left.retain(|other| other != user.as_str() && !shared.contains(other));
        changed.extend(signed.into_iter().filter(|other| other != user.as_str()));
        let parse = |ids: BTreeSet<String>| ids.into_iter().filter_map(|id| UserId::parse(id).ok()).collect();
        let mut changes = DeviceListChanges { changed: parse(changed), left: parse(left) };
        if own_change {
            changes.changed.push(user.to_owned());
        }
        Ok(changes)
    }
}
