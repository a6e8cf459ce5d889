//! `/sync`: what changed for a user since a token, waiting (long-poll)
//! until something does.
//!
//! The wait is register-then-read: the request enables its wake-up on the
//! [`Notifier`] *before* reading storage up to `persisted_upto`, so a change
//! committed at any moment either is in the read or wakes the request.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3sync>.

mod filter;
mod lazy_members;
mod room;
mod token;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{OwnedUserId, api::client::filter::FilterDefinition};
use tessera_storage::Store;

use crate::{
    Result, account_data::AccountData, auth::Identity, delivery::Delivery, keys::Keys, notifier::Notifier,
    presence::Presence, receipts::Receipts, rooms::Rooms, streams::StreamAllocator, to_device::ToDevice,
    typing::Typing,
};

use filter::Criteria;
pub use room::{InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, RoomSummary, Unread};
pub use token::SyncToken;

/// What a sync request asks for.
pub struct SyncRequest {
    pub since: Option<String>,
    pub timeout: Duration,
    /// `set_presence`: `online` (the default), `unavailable` or `offline`.
    pub set_presence: String,
    pub full_state: bool,
    pub filter: FilterDefinition,
    /// `use_state_after` (spec v1.16): room state up to the timeline's end
    /// instead of up to its start.
    pub use_state_after: bool,
}

/// What changed: the spec's `rooms` sections and the next token.
#[derive(Default)]
pub struct SyncResponse {
    pub next_batch: SyncToken,
    /// Rooms' `state` runs to the timeline's end (`state_after`).
    pub state_after: bool,
    /// Global account data that changed: `{type, content}` events.
    pub account_data: Vec<serde_json::Value>,
    /// To-device messages for this device.
    pub to_device: Vec<serde_json::Value>,
    /// `m.presence` events of users sharing a room.
    pub presence: Vec<serde_json::Value>,
    /// `device_lists`: users whose devices changed or who newly share a
    /// room (`changed`), and users who no longer share any (`left`).
    pub device_lists: crate::keys::DeviceListChanges,
    /// The syncing device's key counts (`device_one_time_keys_count`,
    /// `device_unused_fallback_key_types`), sent in every response.
    pub key_counts: std::sync::Arc<crate::keys::KeyCounts>,
    pub join: Vec<JoinedRoom>,
    pub invite: Vec<InvitedRoom>,
    pub knock: Vec<KnockedRoom>,
    pub leave: Vec<LeftRoom>,
}

impl SyncResponse {
    /// Nothing new for the client.
    pub fn is_empty(&self) -> bool {
        self.join.is_empty()
            && self.invite.is_empty()
            && self.knock.is_empty()
            && self.leave.is_empty()
            && self.account_data.is_empty()
            && self.to_device.is_empty()
            && self.presence.is_empty()
            && self.device_lists.is_empty()
    }
}

/// The services whose changes sync carries besides room events.
pub struct SyncSources {
    pub account_data: AccountData,
    pub delivery: Delivery,
    pub typing: Typing,
    pub receipts: Receipts,
    pub to_device: ToDevice,
    pub presence: Presence,
    pub keys: Keys,
}

/// The longest a request may wait, whatever it asks (clients ask 30 s).
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// Sync reads under way at once: one per two cores, at least one. One
/// event wakes a sync per member; the rest queue here, in order, instead of
/// crowding the runtime's run queue ahead of the sends. A woken read runs
/// from memory, so more at once only interleave on the cores, and the
/// other half of the cores stay free for sends and the database; queued
/// reads also pick up the events that arrive while they wait, in one
/// response. (Measured on 2 cores, PostgreSQL, bench/analysis.md: 500-member
/// room, 16 turns 5.8 msg/s accepted of 20, 2 turns 20 msg/s with delivery
/// p99 49 ms, 1 turn 50-77 ms; steady chat in rooms of 10, 2 turns 457
/// msg/s accepted, 1 turn 684.)
fn reads_at_once() -> usize {
    (std::thread::available_parallelism().map_or(2, usize::from) / 2).max(1)
}

/// The sync service.
#[derive(Clone)]
pub struct SyncService {
    store: Store,
    rooms: Rooms,
    notifier: Notifier,
    streams: StreamAllocator,
    account_data: AccountData,
    delivery: Delivery,
    typing: Typing,
    receipts: Receipts,
    to_device: ToDevice,
    presence: Presence,
    keys: Keys,
    /// Per user, their ignored users as read at a stream position (valid
    /// while their account data has not changed since).
    ignored: Arc<Mutex<HashMap<OwnedUserId, IgnoredAt>>>,
    /// Admits [`reads_at_once`] reads at a time.
    reads: Arc<tokio::sync::Semaphore>,
    /// Stored filters as read, by user and ID. A filter's ID derives from
    /// its content, so an entry never goes stale; clients name the same
    /// filter on every `/sync`.
    filters: Arc<Mutex<HashMap<FilterKey, Arc<FilterDefinition>>>>,
    /// Lazy-loaded member events each device already has.
    sent_members: lazy_members::SentMembers,
}

/// A user's ignored users, as read at a stream position.
type IgnoredAt = (i64, Arc<HashSet<String>>);

/// A stored filter's owner and ID.
type FilterKey = (OwnedUserId, String);

impl SyncService {
    pub fn new(
        store: Store,
        rooms: Rooms,
        notifier: Notifier,
        streams: StreamAllocator,
        sources: SyncSources,
    ) -> Self {
        let SyncSources { account_data, delivery, typing, receipts, to_device, presence, keys } = sources;
        Self {
            store,
            rooms,
            notifier,
            streams,
            account_data,
            delivery,
            typing,
            receipts,
            to_device,
            presence,
            keys,
            ignored: Arc::default(),
            reads: Arc::new(tokio::sync::Semaphore::new(reads_at_once())),
            filters: Arc::default(),
            sent_members: Default::default(),
        }
    }

    /// Whether the server is shutting down (long-lived channels close).
    pub fn shutting_down(&self) -> bool {
        self.notifier.is_shutting_down()
    }

    /// Answers at once if anything changed since `since` (or for an
    /// initial sync), else waits up to the timeout for a change.
    pub async fn sync(&self, who: &Identity, request: &SyncRequest) -> Result<SyncResponse> {
        let since = match &request.since {
            Some(token) => Some(token.parse::<SyncToken>()?.validate(
                self.streams.persisted_upto(),
                self.streams.started_at(),
                self.typing.serial(),
            )?),
            None => None,
        };
        Box::pin(self.presence.on_sync(&who.user_id, &request.set_presence)).await?;
        if let Some(since) = since {
            // Asking for the next batch acknowledges everything up to `since`.
            self.delivery.acknowledged(&who.user_id, since.events);
        }
        let deadline = tokio::time::Instant::now() + request.timeout.min(MAX_TIMEOUT);
        let listener = self.notifier.listener(&who.user_id);
        let wants_deliveries =
            Criteria::from(&request.filter.room.ephemeral).wants_type(crate::delivery::EVENT_TYPE);
        loop {
            // Register first, then read: see the module documentation.
            let notified = listener.changes.notified();
            let delivered = listener.deliveries.notified();
            tokio::pin!(notified, delivered);
            notified.as_mut().enable();
            delivered.as_mut().enable();
            let turn = self.reads.acquire().await.map_err(crate::Error::internal)?;
            let upto = self.streams.persisted_upto();
            // Boxed, so that a waiting request holds only the loop's state.
            let response = Box::pin(self.read(who, since, upto, request)).await?;
            drop(turn);
            if since.is_none() || request.full_state || !response.is_empty() {
                return self.with_key_counts(who, response).await;
            }
            // A change for this user may have woken it while a slower
            // writer's lower position still hid it: then the read above
            // could not see it, and nothing else would wake the request.
            let hidden = Box::pin(self.change_above(who, upto)).await?;
            let settled = async {
                if hidden {
                    self.streams.settled_past(upto).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let done = tokio::select! {
                () = &mut notified => false,
                () = &mut delivered, if wants_deliveries => false,
                () = settled => false,
                () = tokio::time::sleep_until(deadline) => true,
                () = self.notifier.shutting_down() => true,
            };
            if done {
                return self.with_key_counts(who, response).await;
            }
        }
    }

    /// Adds the device's key counts, read once per response rather than
    /// per wake-up: they are sent every time but wake nobody (a claim of
    /// this device's keys is noticed at its next sync, as on Synapse).
    async fn with_key_counts(&self, who: &Identity, mut response: SyncResponse) -> Result<SyncResponse> {
        response.key_counts = self.keys.counts(&who.user_id, &who.device_id).await?;
        Ok(response)
    }

    async fn read(
        &self,
        who: &Identity,
        since: Option<SyncToken>,
        upto: i64,
        request: &SyncRequest,
    ) -> Result<SyncResponse> {
        let typing_serial = self.typing.serial();
        let acked = since.map_or(0, |s| s.to_device);
        let (to_device, to_device_upto) =
            self.to_device.for_device(&who.user_id, &who.device_id, acked, upto).await?;
        let next_batch = SyncToken { events: upto, typing: typing_serial, to_device: to_device_upto };
        let filter = &request.filter;
        let presence_filter = Criteria::from(&filter.presence);
        let mut presence = Vec::new();
        if presence_filter.wants_type("m.presence") {
            presence = self.presence.events_for(&who.user_id, after_or_zero(since), upto).await?;
            presence.retain(|event| presence_filter.wants_event(event));
        }
        let mut response = SyncResponse {
            next_batch,
            state_after: request.use_state_after,
            to_device,
            presence,
            ..SyncResponse::default()
        };
        let after = since.map(|s| s.events);
        if after.is_none() {
            self.sent_members.forget(&who.user_id, &who.device_id);
        }
        let room_filter = &filter.room;
        let included =
            |room_id: &str| room_listed(room_filter.rooms.as_deref(), &room_filter.not_rooms, room_id);
        let account_data_filter = Criteria::from(&filter.account_data);
        let room_account_data_filter = Criteria::from(&room_filter.account_data);
        let ephemeral_filter = Criteria::from(&room_filter.ephemeral);
        let ephemeral = &room_filter.ephemeral;
        let ephemeral_in =
            |room_id: &str| room_listed(ephemeral.rooms.as_deref(), &ephemeral.not_rooms, room_id);
        let memberships = self.rooms.memberships_of(&who.user_id, upto).await?;
        let joined = || memberships.iter().filter(|m| m.membership == "join").map(|m| m.room_id.as_str());
        let mut changed: HashSet<String> = match after {
            Some(after) => {
                joined().filter(|room| self.rooms.changed_after(room, after)).map(str::to_owned).collect()
            }
            None => Default::default(),
        };
        // Account data since the token: global goes to the top level, room
        // account data into (and brings in) its room's section.
        let mut room_account_data: HashMap<String, Vec<serde_json::Value>> = Default::default();
        let account_data = match after {
            Some(after) if !self.account_data.changed_after(&who.user_id, after) => Vec::new(),
            _ => self.store.account_data_changes(&who.user_id, after.unwrap_or(0), upto).await?,
        };
        for row in account_data {
            let wanted = if row.room_id.is_empty() {
                account_data_filter.wants_type(&row.data_type)
            } else {
                room_account_data_filter.wants_type(&row.data_type)
                    && room_listed(
                        room_filter.account_data.rooms.as_deref(),
                        &room_filter.account_data.not_rooms,
                        &row.room_id,
                    )
            };
            if !wanted {
                continue;
            }
            // An unreadable row (stored before the edge checked bodies) is
            // skipped, never the whole sync.
            let content: serde_json::Value = match serde_json::from_str(&row.content) {
                Ok(content) => content,
                Err(e) => {
                    tracing::warn!(user = %who.user_id, data_type = %row.data_type, error = %e, "unreadable account data skipped");
                    continue;
                }
            };
            let event = serde_json::json!({ "type": row.data_type, "content": content });
            if row.room_id.is_empty() {
                response.account_data.push(event);
            } else {
                changed.insert(row.room_id.clone());
                room_account_data.entry(row.room_id).or_default().push(event);
            }
        }
        // Clients expect their push rules in the initial sync, stored or not.
        if after.is_none()
            && account_data_filter.wants_type("m.push_rules")
            && !response.account_data.iter().any(|e| e["type"] == "m.push_rules")
        {
            let defaults = tessera_core::push::default_ruleset(&who.user_id);
            response
                .account_data
                .push(serde_json::json!({ "type": "m.push_rules", "content": { "global": defaults } }));
        }
        let ignored = self.ignored_users(who, upto).await?;
        // Ephemeral events only of the kinds the filter lets through: the
        // others are not read at all.
        let receipts_wanted = ephemeral_filter.wants_type("m.receipt");
        let typing_wanted = ephemeral_filter.wants_type("m.typing");
        if receipts_wanted
            && let Some(after) = after
            && joined().any(|room| self.receipts.changed_after(room, after))
        {
            let rooms = self.store.rooms_with_receipts(&who.user_id, after, upto).await?;
            changed.extend(rooms.into_iter().filter(|room| ephemeral_in(room)));
        }
        let mut delivered = if ephemeral_filter.wants_type(crate::delivery::EVENT_TYPE) {
            self.delivery.events_for(&who.user_id, after, upto).await?
        } else {
            Default::default()
        };
        delivered.retain(|room, _| ephemeral_in(room));
        changed.extend(delivered.keys().cloned());
        let since_typing = since.map(|s| s.typing);
        if typing_wanted && let Some(since_typing) = since_typing {
            changed.extend(
                self.typing
                    .rooms_changed_since(since_typing)
                    .into_iter()
                    .map(|room| room.to_string())
                    .filter(|room| ephemeral_in(room)),
            );
        }
        for membership in memberships.iter() {
            if !included(&membership.room_id) || membership.stream_ordering > upto {
                // Not asked for, or changed after this read's snapshot: the
                // next sync carries it.
                continue;
            }
            let new_since = after.is_none_or(|after| membership.stream_ordering > after);
            let room = room::RoomSync {
                sync: self,
                who,
                after,
                upto,
                filter: &request.filter,
                ignored: ignored.as_ref(),
                state_after: request.use_state_after,
            };
            match membership.membership.as_str() {
                "join" => {
                    let newly_joined = match after {
                        Some(after) if new_since => !room.was_joined_at(&membership.room_id, after).await?,
                        _ => false,
                    };
                    let full = after.is_none() || request.full_state || newly_joined;
                    if full || changed.contains(&membership.room_id) {
                        let mut joined = room.joined(&membership.room_id, full, newly_joined).await?;
                        joined.account_data =
                            room_account_data.remove(&membership.room_id).unwrap_or_default();
                        let room_id =
                            ruma::RoomId::parse(&membership.room_id).map_err(crate::Error::internal)?;
                        let receipts_after = if full { 0 } else { after.unwrap_or(0) };
                        let ephemeral_here = ephemeral_in(&membership.room_id);
                        if receipts_wanted
                            && ephemeral_here
                            && let Some(receipts) = self
                                .receipts
                                .receipt_event(&room_id, who.user_id.as_str(), receipts_after, upto)
                                .await?
                        {
                            joined.ephemeral.push(receipts);
                        }
                        if let Some(delivered) = delivered.remove(&membership.room_id) {
                            joined.ephemeral.push(delivered);
                        }
                        if typing_wanted
                            && ephemeral_here
                            && let Some(users) = self.typing.typing_since(&room_id, since_typing)
                        {
                            let typing =
                                serde_json::json!({ "type": "m.typing", "content": { "user_ids": users } });
                            joined.ephemeral.push(typing);
                        }
                        if full || !joined.is_empty() {
                            response.join.push(joined);
                        }
                    }
                }
                "invite" if new_since || request.full_state => {
                    let invited = room.invited(&membership.room_id).await?;
                    // Invites from ignored users are not shown.
                    if !invited.inviter.as_ref().is_some_and(|inviter| ignored.contains(inviter)) {
                        response.invite.push(invited);
                    }
                }
                "knock" if new_since || request.full_state => {
                    response.knock.push(room.knocked(&membership.room_id).await?);
                }
                "leave" | "ban" => {
                    let include_initial = room_filter.include_leave && !membership.forgotten;
                    if (after.is_some() && new_since) || (after.is_none() && include_initial) {
                        response
                            .leave
                            .push(room.left(&membership.room_id, membership.stream_ordering).await?);
                    }
                }
                _ => {}
            }
        }
        if after.is_some() && presence_filter.wants_type("m.presence") {
            let mut newcomers = newly_shared_users(who, &response);
            newcomers.retain(|user| !response.presence.iter().any(|e| e["sender"] == user.as_str()));
            let mut events = self.presence.events_of(&newcomers).await?;
            events.retain(|event| presence_filter.wants_event(event));
            response.presence.extend(events);
        }
        if let Some(after) = after {
            response.device_lists =
                self.keys.device_lists().changes_between(&who.user_id, after, upto).await?;
        }
        Ok(response)
    }

    /// Whether a change the caller's sync carries (room events, receipts,
    /// memberships, account data, to-device messages, anyone's device
    /// list) is noted above
    /// `upto`. Presence and delivery status are advisory and left out: a
    /// later wake-up carries them.
    async fn change_above(&self, who: &Identity, upto: i64) -> Result<bool> {
        let user = &who.user_id;
        if self.account_data.changed_after(user, upto)
            || self.to_device.changed_after(user, upto)
            || self.keys.device_lists().changed_after(upto)
            || self.rooms.user_memberships_changed_after(user, upto)
        {
            return Ok(true);
        }
        let memberships = self.rooms.memberships_of(user, upto).await?;
        Ok(memberships.iter().filter(|m| m.membership == "join").any(|m| {
            self.rooms.changed_after(&m.room_id, upto) || self.receipts.changed_after(&m.room_id, upto)
        }))
    }

    /// The users in the caller's `m.ignored_user_list`, read once per
    /// change of their account data; `upto` is the read's snapshot.
    async fn ignored_users(&self, who: &Identity, upto: i64) -> Result<Arc<HashSet<String>>> {
        let cached = self.ignored.lock().unwrap_or_else(|p| p.into_inner()).get(&who.user_id).cloned();
        if let Some((at, users)) = cached
            && !self.account_data.changed_after(&who.user_id, at)
        {
            return Ok(users);
        }
        let users = match self.store.get_account_data(&who.user_id, "", "m.ignored_user_list").await? {
            None => HashSet::new(),
            Some(list) => {
                let list: serde_json::Value = serde_json::from_str(&list).unwrap_or_else(|e| {
                    tracing::warn!(user = %who.user_id, error = %e, "unreadable m.ignored_user_list: nobody ignored");
                    serde_json::Value::Null
                });
                list["ignored_users"]
                    .as_object()
                    .map(|users| users.keys().cloned().collect())
                    .unwrap_or_default()
            }
        };
        let users = Arc::new(users);
        let mut ignored = self.ignored.lock().unwrap_or_else(|p| p.into_inner());
        crate::remember(&mut ignored, who.user_id.clone(), (upto, users.clone()));
        Ok(users)
    }
}

/// Whether a filter's `rooms` / `not_rooms` take in this room.
fn room_listed(rooms: Option<&[ruma::OwnedRoomId]>, not_rooms: &[ruma::OwnedRoomId], room_id: &str) -> bool {
    rooms.is_none_or(|rooms| rooms.iter().any(|r| r.as_str() == room_id))
        && !not_rooms.iter().any(|r| r.as_str() == room_id)
}

fn after_or_zero(since: Option<SyncToken>) -> i64 {
    since.map_or(0, |s| s.events)
}

/// Users an incremental sync shows joining a room with the viewer (or
/// already there when the viewer joined). Their presence has not been sent
/// to the viewer, changed or not, so the sync carries it.
fn newly_shared_users<'a>(who: &Identity, response: &'a SyncResponse) -> Vec<&'a ruma::UserId> {
    let mut users: Vec<&ruma::UserId> = response
        .join
        .iter()
        .flat_map(|room| room.joined_users.iter())
        .filter_map(|user| <&ruma::UserId>::try_from(user.as_str()).ok())
        .filter(|user| *user != who.user_id)
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}
