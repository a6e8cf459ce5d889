//! One room's section of a sync response: its timeline since the token
//! (newest `limit` events, `limited` and `prev_batch` when there are more),
//! the state between the token and the timeline's start, and its summary.

use std::collections::HashSet;

use ruma::{
    RoomId, UserId,
    api::client::filter::{FilterDefinition, LazyLoadOptions, RoomEventFilter},
};
use serde_json::{Value, json};
use tessera_storage::{EventStatus, StoredEvent};

use super::SyncService;
use crate::{
    Error, Result,
    auth::Identity,
    rooms::{ClientEvent, Form, OUTSIDER_STATE},
};

/// Timeline length when the filter sets none (Synapse's default).
const DEFAULT_TIMELINE_LIMIT: usize = 10;

/// A joined room's section.
pub struct JoinedRoom {
    pub room_id: String,
    pub timeline: Vec<ClientEvent>,
    pub limited: bool,
    pub prev_batch: Option<String>,
    pub state: Vec<ClientEvent>,
    /// Left out of an incremental sync when no membership changed (the
    /// spec lets a server omit an unchanged summary).
    pub summary: Option<RoomSummary>,
    /// Room account data that changed (tags and the like).
    pub account_data: Vec<Value>,
    /// Ephemeral events: `m.typing`.
    pub ephemeral: Vec<Value>,
    /// Unread notifications: the whole room's, or only the main
    /// timeline's when the filter asks for threads apart.
    pub unread: Unread,
    /// Unread notifications per thread root, when the filter asks for them
    /// (`unread_thread_notifications`); threads with none are left out.
    pub unread_threads: Vec<(String, Unread)>,
    /// Users whose joins this section carries (in its timeline or state):
    /// an incremental sync sends their presence.
    pub joined_users: Vec<String>,
}

/// `summary`: who to name the room after, and how many are in it.
#[derive(Clone, Debug, Default)]
pub struct RoomSummary {
    pub heroes: Vec<String>,
    pub joined_member_count: i64,
    pub invited_member_count: i64,
}

/// Unread notification and highlight counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    pub notifications: i64,
    pub highlights: i64,
}

impl JoinedRoom {
    /// Nothing to tell the client about this room.
    pub fn is_empty(&self) -> bool {
        self.timeline.is_empty()
            && self.state.is_empty()
            && self.account_data.is_empty()
            && self.ephemeral.is_empty()
    }
}

/// An invited room's section: stripped state only.
pub struct InvitedRoom {
    pub room_id: String,
    pub invite_state: Vec<Value>,
    /// Who sent the invite.
    pub inviter: Option<String>,
}

/// A room the user knocked on: stripped state only, with the knock.
pub struct KnockedRoom {
    pub room_id: String,
    pub knock_state: Vec<Value>,
}

/// A room the user left (or was kicked or banned from) since the token.
pub struct LeftRoom {
    pub room_id: String,
    pub timeline: Vec<ClientEvent>,
    pub limited: bool,
    pub prev_batch: Option<String>,
    pub state: Vec<ClientEvent>,
}

/// Builds room sections for one sync read.
pub(super) struct RoomSync<'a> {
    pub sync: &'a SyncService,
    pub who: &'a Identity,
    /// The token's position; `None` for an initial sync.
    pub after: Option<i64>,
    pub upto: i64,
    pub filter: &'a FilterDefinition,
    /// Senders whose messages the user does not want (`m.ignored_user_list`).
    pub ignored: &'a HashSet<String>,
    /// State up to the timeline's end (`use_state_after`), not its start.
    pub state_after: bool,
}

impl RoomSync<'_> {
    /// A joined room: everything since the token, or (`full`) the full
    /// state before the timeline, for initial syncs and new joins. A room
    /// joined since the token (`newly_joined`) gets its newest events as
    /// an initial sync would, not only those since the token, and is
    /// `limited` when there are older ones (as on Synapse).
    pub async fn joined(&self, room_id: &str, full: bool, newly_joined: bool) -> Result<JoinedRoom> {
        let room = RoomId::parse(room_id).map_err(Error::internal)?;
        let after = if newly_joined { None } else { self.after };
        let (timeline, limited) = self.timeline(&room, after, self.upto).await?;
        let state = self.state(&room, &timeline, self.upto, full).await?;
        let store = &self.sync.store;
        let (unread, unread_threads) = self.unread(&room).await?;
        // Decided on the room's own record, not on the (filtered) timeline.
        let members_changed =
            full || self.after.is_none_or(|after| self.sync.rooms.members_changed_after(room_id, after));
        let summary = if members_changed {
            Some(RoomSummary {
                heroes: store.room_heroes(&room, &self.who.user_id, 5).await?,
                joined_member_count: store.member_count(&room, "join").await?,
                invited_member_count: store.member_count(&room, "invite").await?,
            })
        } else {
            None
        };
        let prev_batch = prev_batch(&timeline, limited, self.upto);
        let joined_users = timeline
            .iter()
            .chain(state.iter())
            .filter(|e| e.event_type == "m.room.member")
            .filter(|e| e.content().and_then(|c| c.get("membership")).is_some_and(|m| m == "join"))
            .filter_map(|e| e.state_key.clone())
            .collect();
        Ok(JoinedRoom {
            room_id: room_id.to_owned(),
            joined_users,
            timeline: self.format(&timeline, true).await?,
            limited,
            prev_batch,
            state: self.format(&state, false).await?,
            summary,
            account_data: Vec::new(),
            ephemeral: Vec::new(),
            unread,
            unread_threads,
        })
    }

    /// Whether the user was joined to the room at the token's position
    /// `after`: a member event since then (a new display name, say) is not
    /// a new join. Walks back through the user's member events since it.
    pub async fn was_joined_at(&self, room_id: &str, after: i64) -> Result<bool> {
        let room = RoomId::parse(room_id).map_err(Error::internal)?;
        let store = &self.sync.store;
        let user = self.who.user_id.as_str();
        let mut event = store.membership_event(&room, &self.who.user_id).await?;
        while let Some(member) = event {
            if member.stream_ordering <= after {
                return Ok(member.content().and_then(|c| c.get("membership")).is_some_and(|m| m == "join"));
            }
            event = store.state_entry_at(member.state_before, "m.room.member", user).await?;
        }
        Ok(false)
    }

    /// The room's unread counts from the push-rule verdicts after the
    /// user's read receipts, split by thread if the filter asks for it.
    async fn unread(&self, room: &RoomId) -> Result<(Unread, Vec<(String, Unread)>)> {
        let per_thread = self.sync.rooms.unread_counts(&self.who.user_id, room, self.upto).await?;
        let by_thread = self.filter.room.timeline.unread_thread_notifications;
        let mut unread = Unread::default();
        let mut threads = Vec::new();
        for counts in per_thread {
            let these = Unread { notifications: counts.notifications, highlights: counts.highlights };
            if by_thread && counts.thread_id != tessera_core::push::MAIN_THREAD {
                threads.push((counts.thread_id, these));
            } else {
                unread.notifications += these.notifications;
                unread.highlights += these.highlights;
            }
        }
        Ok((unread, threads))
    }

    /// A room the user was invited to: the stripped state to show the invite.
    pub async fn invited(&self, room_id: &str) -> Result<InvitedRoom> {
        let (invite_state, inviter) = self.stripped_state(room_id).await?;
        Ok(InvitedRoom { room_id: room_id.to_owned(), invite_state, inviter })
    }

    /// A room the user knocked on: the same stripped state, with the knock.
    pub async fn knocked(&self, room_id: &str) -> Result<KnockedRoom> {
        let (knock_state, _) = self.stripped_state(room_id).await?;
        Ok(KnockedRoom { room_id: room_id.to_owned(), knock_state })
    }

    /// The room's stripped state for someone outside it, ending with the
    /// user's own membership event (and its sender's, when another user
    /// sent it); also who sent that membership.
    async fn stripped_state(&self, room_id: &str) -> Result<(Vec<Value>, Option<String>)> {
        let room = RoomId::parse(room_id).map_err(Error::internal)?;
        let store = &self.sync.store;
        let mut events = Vec::new();
        let mut sender = None;
        let membership = store.membership_event(&room, &self.who.user_id).await?;
        if let Some(membership) = membership.as_ref().filter(|m| m.status == EventStatus::Outlier) {
            // Held out of band: the state that came with the invite or knock.
            let pdu: Value = serde_json::from_str(&membership.json).map_err(Error::internal)?;
            let unsigned = &pdu["unsigned"];
            let given = unsigned.get("invite_room_state").or_else(|| unsigned.get("knock_room_state"));
            let mut state: Vec<Value> = given.and_then(Value::as_array).cloned().unwrap_or_default();
            state.retain(|e| !(e["type"] == "m.room.member" && e["state_key"] == self.who.user_id.as_str()));
            state.extend(stripped(membership));
            return Ok((state, Some(membership.sender.clone())));
        }
        for kind in OUTSIDER_STATE {
            if let Some(event) = store.current_state_event(&room, kind, "").await? {
                events.push(event);
            }
        }
        if let Some(membership) = membership {
            sender = Some(membership.sender.clone());
            if membership.sender != self.who.user_id.as_str()
                && let Ok(other) = UserId::parse(&membership.sender)
                && let Some(member) =
                    store.current_state_event(&room, "m.room.member", other.as_str()).await?
            {
                events.push(member);
            }
            events.push(membership);
        }
        Ok((events.iter().filter_map(stripped).collect(), sender))
    }

    /// A room left at `left_at`: its timeline up to the leave.
    pub async fn left(&self, room_id: &str, left_at: i64) -> Result<LeftRoom> {
        let room = RoomId::parse(room_id).map_err(Error::internal)?;
        let (mut timeline, limited) = self.timeline(&room, self.after, left_at).await?;
        // A room never joined here (an invite rejected or rescinded, a
        // knock refused): the leave, held out of band, is its timeline.
        if timeline.is_empty()
            && let Some(leave) = self.sync.store.membership_event(&room, &self.who.user_id).await?
            && leave.status == EventStatus::Outlier
            && self.after.is_none_or(|after| leave.stream_ordering > after)
        {
            timeline.push(leave);
        }
        let state = self.state(&room, &timeline, left_at, self.after.is_none()).await?;
        let prev_batch = prev_batch(&timeline, limited, left_at);
        Ok(LeftRoom {
            room_id: room_id.to_owned(),
            timeline: self.format(&timeline, true).await?,
            limited,
            prev_batch,
            state: self.format(&state, false).await?,
        })
    }

    /// The newest events after `after` up to `upto`, oldest first, that
    /// the user may see and the filter wants; `limited` if some were cut
    /// (a filter's `limit: 0` cuts them all) or a gap in the DAG lies in
    /// the range (the timeline then starts after it; see `rooms::gaps`).
    async fn timeline(
        &self,
        room: &RoomId,
        after: Option<i64>,
        upto: i64,
    ) -> Result<(Vec<StoredEvent>, bool)> {
        let timeline_filter = &self.filter.room.timeline;
        let limit = timeline_filter
            .limit
            .and_then(|l| usize::try_from(u64::from(l)).ok())
            .unwrap_or(DEFAULT_TIMELINE_LIMIT)
            .min(500);
        let mut events = self.sync.rooms.events_in_range(room, after.unwrap_or(0), upto, limit + 1).await?;
        let mut limited = events.len() > limit;
        events.truncate(limit);
        // A timeline reaching across a gap in the DAG here starts after it,
        // limited: what lies behind it is paged (and backfilled) for.
        if let Some(gap) = self.sync.rooms.newest_gap(room.as_str(), after.unwrap_or(0), upto).await? {
            events.retain(|e| e.stream_ordering >= gap);
            limited = true;
        }
        events.reverse();
        // Ignored users' messages are dropped; their state changes stay, as
        // the room's state must stay whole.
        events.retain(|e| {
            matches_filter(timeline_filter, e) && (e.state_key.is_some() || !self.ignored.contains(&e.sender))
        });
        let visible = self.sync.rooms.visible_to(&self.who.user_id, room, events).await?;
        Ok((visible, limited))
    }

    /// The state to send with a timeline: all of it before the timeline
    /// (`full`), or what changed between the token and the timeline's start;
    /// with `state_after`, the same up to the timeline's end (`upto`).
    /// With lazy-loaded members, only the timeline senders' member events.
    async fn state(
        &self,
        room: &RoomId,
        timeline: &[StoredEvent],
        upto: i64,
        full: bool,
    ) -> Result<Vec<StoredEvent>> {
        let store = &self.sync.store;
        let start_group = match timeline.first() {
            Some(first) if !self.state_after => first.state_before,
            _ => match self.sync.rooms.last_event_upto(room, upto).await? {
                Some(last) => last.state_after,
                None => return Ok(Vec::new()),
            },
        };
        let since_group = match (full, self.after) {
            (false, Some(after)) => {
                self.sync.rooms.last_event_upto(room, after).await?.map(|e| e.state_after)
            }
            _ => None,
        };
        let at_start = store.state_at_group(start_group).await?;
        let state_filter = &self.filter.room.state;
        let (lazy, redundant) = match state_filter.lazy_load_options {
            LazyLoadOptions::Disabled => (false, false),
            LazyLoadOptions::Enabled { include_redundant_members } => (true, include_redundant_members),
        };
        // The user's own member event comes with every timeline, never
        // alone: an empty timeline over unchanged state (a read that woke
        // for an event above its snapshot) is then no section at all,
        // rather than one the client would answer with another request.
        let own = (full || !timeline.is_empty()).then_some(self.who.user_id.as_str());
        let senders: HashSet<&str> = timeline.iter().map(|e| e.sender.as_str()).chain(own).collect();
        // A lazy-loading client gets the timeline senders' member events
        // even when unchanged since the token, unless this device was given
        // them before (`lazy_members`) and does not ask for redundant ones.
        let device = (&*self.who.user_id, &*self.who.device_id);
        let sent_members = &self.sync.sent_members;
        let known = |member: &str, id: &str| match self.after {
            Some(after) if lazy && !redundant && !full => {
                sent_members.has(device, room.as_str(), member, id, after)
            }
            _ => false,
        };
        let lazy_member = |kind: &str, key: &str| lazy && kind == "m.room.member" && senders.contains(key);
        let ids: Vec<String> = if since_group == Some(start_group) {
            // The state is the token's (the common case: a woken sync over
            // messages): only what lazy loading resends, without walking
            // the whole state.
            if !lazy {
                return Ok(Vec::new());
            }
            senders
                .iter()
                .filter_map(|sender| {
                    let id = at_start.get(&("m.room.member".to_owned(), (*sender).to_owned()))?;
                    (!known(sender, id)).then(|| id.clone())
                })
                .collect()
        } else {
            let since = match since_group {
                Some(group) => store.state_at_group(group).await?,
                None => Default::default(),
            };
            at_start
                .iter()
                .filter(|(key, id)| since.get(*key) != Some(*id) || lazy_member(&key.0, &key.1))
                .filter(|((kind, key), _)| !lazy || kind != "m.room.member" || senders.contains(key.as_str()))
                .filter(|((kind, key), id)| kind != "m.room.member" || !known(key, id))
                .map(|(_, id)| id.clone())
                .collect()
        };
        let mut events = store.get_events(&ids).await?;
        events.retain(|e| matches_filter(state_filter, e));
        events.sort_by_key(|e| e.stream_ordering);
        if lazy && !redundant {
            let members = events
                .iter()
                .filter(|e| e.event_type == "m.room.member")
                .filter_map(|e| Some((e.state_key.as_deref()?, e.event_id.as_str())));
            sent_members.sent(device, room.as_str(), members, self.upto);
        }
        Ok(events)
    }

    /// Sync format: client events without `room_id` (the room is the key).
    async fn format(&self, events: &[StoredEvent], timeline: bool) -> Result<Vec<ClientEvent>> {
        let viewer = Some((self.who.user_id.as_str(), &*self.who.device_id));
        let form = Form { viewer, timeline, room_id: false };
        let mut formatted = self.sync.rooms.client_events(events, form).await?;
        if let Some(fields) = &self.filter.event_fields {
            formatted = formatted
                .iter()
                .map(|event| super::filter::keep_fields(event, fields))
                .collect::<Result<_>>()?;
        }
        Ok(formatted)
    }
}

fn matches_filter(filter: &RoomEventFilter, event: &StoredEvent) -> bool {
    super::filter::Criteria::from(filter).wants(&event.event_type, Some(&event.sender))
}

/// A stripped state event: type, state key, content and sender only;
/// but `m.room.create` whole, as signed (MSC4311, Matrix 1.16: the PDU that
/// `invite_room_state` carries over federation, from which a client or
/// safety tool can check that a version 12 room's ID is its hash).
fn stripped(event: &StoredEvent) -> Option<Value> {
    let pdu: Value = serde_json::from_str(&event.json).ok()?;
    if event.event_type == "m.room.create" && event.state_key.as_deref() == Some("") {
        return Some(pdu);
    }
    Some(json!({
        "type": event.event_type,
        "state_key": event.state_key.as_deref().unwrap_or_default(),
        "content": pdu.get("content")?,
        "sender": event.sender,
    }))
}

/// `prev_batch`: where a client pages back from, a sync token. A limited
/// timeline continues just before its first event's stream position
/// (paging back reads what arrived before it, by topology; an event that
/// arrived late from another server hides nothing); a whole one gives the position
/// the timeline runs to (a sync token), as Synapse does: paging back from
/// it returns the timeline again and then older history, and
/// `/members?at=` with it reads the members as of the timeline's end.
fn prev_batch(timeline: &[StoredEvent], limited: bool, upto: i64) -> Option<String> {
    match timeline.first() {
        // The position just before the first event: paging back from it
        // reads what was received before, in topological order.
        Some(first) if limited => Some(
            crate::sync::SyncToken {
                events: first.stream_ordering.saturating_sub(1),
                typing: 0,
                to_device: 0,
            }
            .to_string(),
        ),
        _ => Some(crate::sync::SyncToken { events: upto, typing: 0, to_device: 0 }.to_string()),
    }
}
