//! The `/sync` response body, written straight from the service's
//! sections (the same bytes for the long-poll and the WebSocket channel).
//!
//! Not ruma's response type: it leaves out every field at its default, and
//! clients and Complement read `timeline.limited` even when it is false
//! (Synapse always sends it). Otherwise the shape is the spec's, with the
//! same sections left out when empty.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3sync>.

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;
use tessera_service::{
    rooms::ClientEvent,
    sync::{JoinedRoom, LeftRoom, RoomSummary, SyncResponse, Unread},
};

/// The response body as JSON.
pub(crate) fn to_json(response: &SyncResponse) -> serde_json::Result<String> {
    serde_json::to_string(&Body(response))
}

struct Body<'a>(&'a SyncResponse);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("next_batch", &r.next_batch.to_string())?;
        let rooms_empty =
            r.join.is_empty() && r.invite.is_empty() && r.knock.is_empty() && r.leave.is_empty();
        if !rooms_empty {
            map.serialize_entry("rooms", &Rooms(r))?;
        }
        for (key, events) in
            [("presence", &r.presence), ("account_data", &r.account_data), ("to_device", &r.to_device)]
        {
            if !events.is_empty() {
                map.serialize_entry(key, &Events(events))?;
            }
        }
        let lists = &r.device_lists;
        if !lists.is_empty() {
            map.serialize_entry("device_lists", &DeviceLists(lists))?;
        }
        // Always sent: clients upload keys when the count is low, and read
        // a missing count as unknown (Complement and matrix-rust-sdk
        // expect `signed_curve25519`).
        map.serialize_entry("device_one_time_keys_count", &r.key_counts.one_time_keys)?;
        map.serialize_entry("device_unused_fallback_key_types", &r.key_counts.unused_fallback_key_types)?;
        map.end()
    }
}

/// `device_lists`, each list left out when empty.
struct DeviceLists<'a>(&'a tessera_service::keys::DeviceListChanges);

impl Serialize for DeviceLists<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, users) in [("changed", &self.0.changed), ("left", &self.0.left)] {
            if !users.is_empty() {
                map.serialize_entry(key, users)?;
            }
        }
        map.end()
    }
}

/// `{"events": [...]}`.
#[derive(Serialize)]
struct Events<'a, T: Serialize>(#[serde(serialize_with = "events")] &'a [T]);

fn events<T: Serialize, S: Serializer>(events: &&[T], serializer: S) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(1))?;
    map.serialize_entry("events", events)?;
    map.end()
}

struct Rooms<'a>(&'a SyncResponse);

impl Serialize for Rooms<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = serializer.serialize_map(None)?;
        if !r.join.is_empty() {
            let rooms =
                r.join.iter().map(|room| (&room.room_id, Joined { room, state_after: r.state_after }));
            map.serialize_entry("join", &ByRoom(rooms))?;
        }
        if !r.invite.is_empty() {
            let rooms = r
                .invite
                .iter()
                .map(|room| (&room.room_id, Stripped { key: "invite_state", state: &room.invite_state }));
            map.serialize_entry("invite", &ByRoom(rooms))?;
        }
        if !r.knock.is_empty() {
            let rooms = r
                .knock
                .iter()
                .map(|room| (&room.room_id, Stripped { key: "knock_state", state: &room.knock_state }));
            map.serialize_entry("knock", &ByRoom(rooms))?;
        }
        if !r.leave.is_empty() {
            let rooms = r.leave.iter().map(|room| (&room.room_id, Left { room, state_after: r.state_after }));
            map.serialize_entry("leave", &ByRoom(rooms))?;
        }
        map.end()
    }
}

/// A map from room ID to section, from the service's list.
struct ByRoom<I>(I);

impl<'a, I, T> Serialize for ByRoom<I>
where
    I: Iterator<Item = (&'a String, T)> + Clone,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.clone())
    }
}

/// `timeline`, always with `limited`.
struct Timeline<'a> {
    events: &'a [ClientEvent],
    limited: bool,
    prev_batch: Option<&'a str>,
}

impl Serialize for Timeline<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("events", self.events)?;
        map.serialize_entry("limited", &self.limited)?;
        if let Some(prev_batch) = self.prev_batch {
            map.serialize_entry("prev_batch", prev_batch)?;
        }
        map.end()
    }
}

/// `state` (before the timeline, left out when empty) or `state_after`.
fn serialize_state<M: SerializeMap>(map: &mut M, state: &[ClientEvent], after: bool) -> Result<(), M::Error> {
    if after {
        map.serialize_entry("state_after", &Events(state))
    } else if !state.is_empty() {
        map.serialize_entry("state", &Events(state))
    } else {
        Ok(())
    }
}

#[derive(Clone)]
struct Joined<'a> {
    room: &'a JoinedRoom,
    state_after: bool,
}

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let room = self.room;
        let mut map = serializer.serialize_map(None)?;
        if let Some(summary) = &room.summary {
            map.serialize_entry("summary", &Summary(summary))?;
        }
        map.serialize_entry("unread_notifications", &Counts(room.unread))?;
        if !room.unread_threads.is_empty() {
            let threads = room.unread_threads.iter().map(|(root, unread)| (root, Counts(*unread)));
            map.serialize_entry("unread_thread_notifications", &ByRoom(threads))?;
        }
        let timeline = Timeline {
            events: &room.timeline,
            limited: room.limited,
            prev_batch: room.prev_batch.as_deref(),
        };
        map.serialize_entry("timeline", &timeline)?;
        serialize_state(&mut map, &room.state, self.state_after)?;
        if !room.account_data.is_empty() {
            map.serialize_entry("account_data", &Events(&room.account_data))?;
        }
        // Always there, as Synapse has it: clients and test suites read
        // `ephemeral.events` without checking for the section.
        map.serialize_entry("ephemeral", &Events(&room.ephemeral))?;
        map.end()
    }
}

#[derive(Clone)]
struct Left<'a> {
    room: &'a LeftRoom,
    state_after: bool,
}

impl Serialize for Left<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let room = self.room;
        let mut map = serializer.serialize_map(None)?;
        let timeline = Timeline {
            events: &room.timeline,
            limited: room.limited,
            prev_batch: room.prev_batch.as_deref(),
        };
        map.serialize_entry("timeline", &timeline)?;
        serialize_state(&mut map, &room.state, self.state_after)?;
        map.end()
    }
}

/// An invited or knocked room's section: its stripped state under `key`
/// (`invite_state`, `knock_state`).
#[derive(Clone)]
struct Stripped<'a> {
    key: &'static str,
    state: &'a [Value],
}

impl Serialize for Stripped<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.key, &Events(self.state))?;
        map.end()
    }
}

/// `summary`, with the spec's `m.`-prefixed keys.
struct Summary<'a>(&'a RoomSummary);

impl Serialize for Summary<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let summary = self.0;
        let mut map = serializer.serialize_map(None)?;
        if !summary.heroes.is_empty() {
            map.serialize_entry("m.heroes", &summary.heroes)?;
        }
        map.serialize_entry("m.joined_member_count", &summary.joined_member_count.max(0))?;
        map.serialize_entry("m.invited_member_count", &summary.invited_member_count.max(0))?;
        map.end()
    }
}

/// `unread_notifications` and each thread's counts.
#[derive(Clone)]
struct Counts(Unread);

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("highlight_count", &self.0.highlights.max(0))?;
        map.serialize_entry("notification_count", &self.0.notifications.max(0))?;
        map.end()
    }
}
