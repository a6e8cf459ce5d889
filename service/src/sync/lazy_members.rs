//! Lazy-loaded members a device already has. With `lazy_load_members`
//! and without `include_redundant_members`, a sync leaves out the member
//! events of timeline senders that an earlier response gave the same
//! device, as the spec allows (and Synapse does): in a busy room every
//! incremental sync would otherwise carry the sender's and the user's own
//! member event again.
//!
//! An event counts as the device's only once the device has asked for a
//! batch from the position of the response that carried it or later: a
//! response that was lost, or a client that goes back to an older token,
//! gets the member events again. An initial sync forgets everything the
//! device had (the client starts over). Kept in memory only: after a
//! restart, members are sent again once.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#lazy-loading-room-members>.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
};

use ruma::{DeviceId, UserId};

/// Member events remembered per device; past it the one sent longest ago
/// is forgotten (and sent again when needed, which is always allowed). A
/// device in a big room would otherwise hold an entry for every member who
/// ever spoke: 500 devices in a 500-member room were 15 MiB as a map.
const PER_DEVICE: usize = 64;

/// One member event a device was sent: hashes of (room, member) and of the
/// event ID, and the position of the response that carried it. Hashes keep
/// an entry at 24 bytes and a lookup free of allocations; two different
/// keys colliding on 64 bits is not a concern.
#[derive(Clone, Copy)]
struct Sent {
    member: u64,
    event: u64,
    at: i64,
}

/// What each device (by hash of user and device ID) has been sent, at
/// most [`PER_DEVICE`] entries each, scanned in place. Cheap to clone.
#[derive(Clone, Default)]
pub(super) struct SentMembers {
    devices: Arc<Mutex<HashMap<u64, Vec<Sent>>>>,
    hasher: RandomState,
}

impl SentMembers {
    /// The device starts over (an initial sync).
    pub fn forget(&self, user: &UserId, device: &DeviceId) {
        self.lock().remove(&self.hasher.hash_one((user, device)));
    }

    /// Whether the device has `event` as `member`'s member event in `room`
    /// from a response at or before `since`, the position it now asks from.
    pub fn has(
        &self,
        device: (&UserId, &DeviceId),
        room: &str,
        member: &str,
        event: &str,
        since: i64,
    ) -> bool {
        let (member, event) = (self.hasher.hash_one((room, member)), self.hasher.hash_one(event));
        let devices = self.lock();
        devices
            .get(&self.hasher.hash_one(device))
            .is_some_and(|sent| sent.iter().any(|s| s.member == member && s.event == event && s.at <= since))
    }

    /// Notes that the response at position `at` carries these member
    /// events (member, event ID) of `room` to the device.
    pub fn sent<'a>(
        &self,
        device: (&UserId, &DeviceId),
        room: &str,
        members: impl IntoIterator<Item = (&'a str, &'a str)>,
        at: i64,
    ) {
        let mut members = members.into_iter().peekable();
        if members.peek().is_none() {
            return;
        }
        let mut devices = self.lock();
        // Bounded like the service's other per-user memories.
        if devices.len() >= crate::REMEMBERED_USERS {
            devices.clear();
        }
        let sent = devices.entry(self.hasher.hash_one(device)).or_default();
        for (member, event) in members {
            let entry =
                Sent { member: self.hasher.hash_one((room, member)), event: self.hasher.hash_one(event), at };
            match sent.iter().position(|s| s.member == entry.member) {
                Some(i) => sent[i] = entry,
                None if sent.len() < PER_DEVICE => sent.push(entry),
                None => {
                    if let Some(oldest) = sent.iter_mut().min_by_key(|s| s.at) {
                        *oldest = entry;
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Sent>>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use ruma::{device_id, user_id};

    use super::*;

    #[test]
    fn a_member_event_counts_once_the_device_asks_from_its_response() {
        let sent = SentMembers::default();
        let device = (user_id!("@alice:x"), device_id!("PHONE"));
        sent.sent(device, "!r:x", [("@bob:x", "$join")], 10);
        assert!(!sent.has(device, "!r:x", "@bob:x", "$join", 9), "the response at 10 may have been lost");
        assert!(sent.has(device, "!r:x", "@bob:x", "$join", 10));
        assert!(sent.has(device, "!r:x", "@bob:x", "$join", 12));
        assert!(!sent.has(device, "!r:x", "@bob:x", "$rename", 12), "a new member event is new");
        assert!(!sent.has(device, "!other:x", "@bob:x", "$join", 12), "another room");
        assert!(!sent.has((device.0, device_id!("LAPTOP")), "!r:x", "@bob:x", "$join", 12), "another device");
        sent.forget(device.0, device.1);
        assert!(!sent.has(device, "!r:x", "@bob:x", "$join", 12), "an initial sync starts over");
    }

    #[test]
    fn a_device_keeps_the_member_events_sent_last() {
        let sent = SentMembers::default();
        let device = (user_id!("@alice:x"), device_id!("PHONE"));
        let members: Vec<String> = (0..=PER_DEVICE).map(|i| format!("@m{i}:x")).collect();
        for (at, member) in members.iter().enumerate() {
            sent.sent(device, "!big:x", [(member.as_str(), "$e")], at as i64);
        }
        let since = PER_DEVICE as i64;
        assert!(!sent.has(device, "!big:x", &members[0], "$e", since), "the oldest made room");
        assert!(members[1..].iter().all(|m| sent.has(device, "!big:x", m, "$e", since)));
        sent.sent(device, "!big:x", [(members[1].as_str(), "$rename")], since + 1);
        assert!(sent.has(device, "!big:x", &members[1], "$rename", since + 1), "replaced in place");
        assert!(!sent.has(device, "!big:x", &members[1], "$e", since + 1));
    }
}
