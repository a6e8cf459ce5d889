//! Rooms: creating them, appending events to their DAG, membership, and
//! reading state and history with the spec's visibility rules.
//!
//! Appends to one room are serialised by a per-room lock held from choosing
//! `prev_events` to commit, so every local event extends the single forward
//! extremity and the DAG stays a chain of local events; different rooms
//! append in parallel. Spec: <https://spec.matrix.org/v1.16/client-server-api/#rooms>.

mod append;
mod backfill;
mod client_event;
pub mod context;
mod create;
mod directory;
mod federation_reads;
mod gaps;
pub mod hierarchy;
mod joins;
pub mod membership;
mod push;
pub mod read;
mod recent;
mod redact;
pub mod relations;
mod remote;
mod remote_membership;
mod unread;
mod upgrade;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, UserId};
use tessera_core::ServerSigningKey;
use tessera_storage::{EventOutline, MembershipRow, Store, StoredEvent, UnreadCounts};

use crate::{
    Error, Result, changes::ChangeLog, notifier::Notifier, push_rules::PushRules, streams::StreamAllocator,
};

pub use client_event::ClientEvent;
pub(crate) use client_event::Form;
pub use create::CreateRoom;
pub use federation_reads::{RawPdu, StateAt};
pub use read::{Direction, HistoryPage, HistoryQuery, PageToken, RoomToken};
pub use remote::RemoteOutcome;
pub(crate) use remote_membership::OUTSIDER_STATE;

/// The rooms service.
#[derive(Clone)]
pub struct Rooms {
    store: Store,
    signing_key: Arc<ServerSigningKey>,
    server_name: OwnedServerName,
    default_version: RoomVersionId,
    streams: StreamAllocator,
    notifier: Notifier,
    push_rules: PushRules,
    audiences: Arc<Mutex<HashMap<OwnedRoomId, Arc<push::Audience>>>>,
    locks: Arc<Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>>,
    versions: Arc<Mutex<HashMap<OwnedRoomId, RoomVersionId>>>,
    /// Per room, the position of its last event.
    changes: ChangeLog,
    /// Per user, the position of their last membership change.
    member_changes: ChangeLog,
    /// Per room, the position of its last membership change.
    room_member_changes: ChangeLog,
    /// Per user, their memberships as read at a stream position (valid
    /// while `member_changes` has nothing for them after it).
    memberships: Arc<Mutex<HashMap<OwnedUserId, MembershipsAt>>>,
    /// Per room, its forward extremities as the last append left them
    /// (set and dropped only under the room's lock, see `append`).
    tips: Arc<Mutex<HashMap<OwnedRoomId, Arc<append::Tip>>>>,
    /// Each active room's newest events.
    recent: Arc<recent::RecentEvents>,
    /// Unread counts read, kept up to date by appends and receipts.
    unread: Arc<unread::UnreadCache>,
    /// Under the key "": when relations that bundle into events changed
    /// (see `client_event`).
    relation_changes: ChangeLog,
    /// Per room, the other servers with members joined (see `remote`).
    servers: Arc<Mutex<HashMap<OwnedRoomId, Arc<Vec<OwnedServerName>>>>>,
    /// How rooms reach other servers.
    federation: RoomsFederation,
    /// History fetched from other servers (see `backfill`).
    backfill: backfill::SharedBackfill,
    /// Where rooms' timelines have gaps (see `gaps`).
    gaps: gaps::SharedGaps,
}

/// What rooms need of federation: the outbox their events leave through,
/// other servers' keys (to verify their events) and the client that asks
/// them (joins, missing events).
#[derive(Clone)]
pub struct RoomsFederation {
    pub outbox: crate::federation::Outbox,
    pub server_keys: crate::federation::ServerKeys,
    pub remote: Arc<dyn crate::federation::Remote>,
}

/// A user's memberships, as read at a stream position.
type MembershipsAt = (i64, Arc<Vec<MembershipRow>>);

impl Rooms {
    pub fn new(
        store: Store,
        signing_key: Arc<ServerSigningKey>,
        default_version: RoomVersionId,
        streams: StreamAllocator,
        notifier: Notifier,
        push_rules: PushRules,
        federation: RoomsFederation,
    ) -> Self {
        let server_name = signing_key.server_name().clone();
        let changes = ChangeLog::new(&streams);
        let member_changes = ChangeLog::new(&streams);
        let room_member_changes = ChangeLog::new(&streams);
        let relation_changes = ChangeLog::new(&streams);
        Self {
            store,
            signing_key,
            server_name,
            default_version,
            streams,
            notifier,
            push_rules,
            audiences: Arc::default(),
            locks: Arc::default(),
            versions: Arc::default(),
            changes,
            member_changes,
            room_member_changes,
            memberships: Arc::default(),
            tips: Arc::default(),
            recent: Arc::default(),
            unread: Arc::default(),
            relation_changes,
            servers: Arc::default(),
            federation,
            backfill: Default::default(),
            gaps: Default::default(),
        }
    }

    /// Every room `user` has a membership in (`sync`'s view: rows past
    /// `upto`, the reader's snapshot, may be included). Read from storage
    /// once per membership change of the user.
    pub async fn memberships_of(&self, user: &UserId, upto: i64) -> Result<Arc<Vec<MembershipRow>>> {
        let cached = self.memberships.lock().unwrap_or_else(|p| p.into_inner()).get(user).cloned();
        if let Some((at, rows)) = cached
            && !self.member_changes.changed_after(user.as_str(), at)
        {
            return Ok(rows);
        }
        let rows = Arc::new(self.store.memberships_of(user).await?);
        let mut memberships = self.memberships.lock().unwrap_or_else(|p| p.into_inner());
        crate::remember(&mut memberships, user.to_owned(), (upto, rows.clone()));
        Ok(rows)
    }

    /// Whether `user`'s memberships may have changed after `after`.
    pub fn user_memberships_changed_after(&self, user: &UserId, after: i64) -> bool {
        self.member_changes.changed_after(user.as_str(), after)
    }

    /// Whether anyone's membership of the room may have changed after
    /// stream position `after`.
    pub fn members_changed_after(&self, room: &str, after: i64) -> bool {
        self.room_member_changes.changed_after(room, after)
    }

    /// Whether the room may have events after stream position `after`.
    pub fn changed_after(&self, room: &str, after: i64) -> bool {
        self.changes.changed_after(room, after)
    }

    /// The room's newest events above `after` up to `upto` (a settled
    /// position), newest first, at most `limit`; rejected ones left out.
    pub async fn events_in_range(
        &self,
        room: &RoomId,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        if let Some(events) = self.recent.range(room, after, upto, limit) {
            return Ok(events);
        }
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self.store.room_events_in_range(room, after, upto, fetch).await?)
    }

    /// The room's last event at or before `upto` (a settled position).
    pub async fn last_event_upto(&self, room: &RoomId, upto: i64) -> Result<Option<StoredEvent>> {
        if let Some(event) = self.recent.last_upto(room, upto) {
            return Ok(Some(event));
        }
        Ok(self.store.last_event_upto(room, upto).await?)
    }

    /// The outlines of the room's events in `(after, upto]` (a settled
    /// position), oldest first; rejected ones left out.
    pub async fn event_outlines(&self, room: &RoomId, after: i64, upto: i64) -> Result<Vec<EventOutline>> {
        if let Some(outlines) = self.recent.outlines(room, after, upto) {
            return Ok(outlines);
        }
        Ok(self.store.event_outlines(room, after, upto).await?)
    }

    /// `user`'s unread counts in `room` per thread, up to `upto` (a
    /// settled position).
    pub async fn unread_counts(&self, user: &UserId, room: &RoomId, upto: i64) -> Result<Vec<UnreadCounts>> {
        if let Some(counts) = self.unread.get(user.as_str(), room.as_str(), upto) {
            return Ok(counts);
        }
        let receipts = self.unread.receipts_seen();
        let counts = self.store.unread_counts(user, room, upto).await?;
        self.unread.insert(user.as_str(), room.as_str(), upto, counts.clone(), receipts, || {
            self.changes.changed_after(room.as_str(), upto)
        });
        Ok(counts)
    }

    /// To hold while `user` stores a read receipt in `room`: when dropped
    /// (however the write ended), their unread counts there are read again.
    pub(crate) fn storing_receipt<'a>(&'a self, user: &'a UserId, room: &'a RoomId) -> StoringReceipt<'a> {
        StoringReceipt { unread: &self.unread, user, room }
    }

    /// This server's name: users with it are local.
    pub fn server_name(&self) -> &ruma::ServerName {
        &self.server_name
    }

    /// The room version new rooms get by default.
    pub fn default_version(&self) -> &RoomVersionId {
        &self.default_version
    }

    /// The lock that serialises appends to `room_id`.
    fn room_lock(&self, room_id: &RoomId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(room_id.to_owned()).or_default().clone()
    }

    /// The room's version; 404 if the server does not know the room.
    async fn room_version(&self, room_id: &RoomId) -> Result<RoomVersionId> {
        if let Some(version) = self.versions.lock().unwrap_or_else(|p| p.into_inner()).get(room_id) {
            return Ok(version.clone());
        }
        let info = self.store.get_room(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(room_id.to_owned(), info.room_version.clone());
        Ok(info.room_version)
    }
}

/// See [`Rooms::storing_receipt`].
pub(crate) struct StoringReceipt<'a> {
    unread: &'a unread::UnreadCache,
    user: &'a UserId,
    room: &'a RoomId,
}

impl Drop for StoringReceipt<'_> {
    fn drop(&mut self) {
        self.unread.receipt(self.user.as_str(), self.room.as_str());
    }
}
