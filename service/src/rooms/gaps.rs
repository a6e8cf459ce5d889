//! Gaps in rooms' timelines here: where an event was appended without its
//! previous events (a join through another server; a PDU whose missing
//! previous events could not all be fetched). Sync starts a timeline that
//! reaches across a gap at it, marked `limited`, so clients page back
//! (and the server backfills) rather than show two stretches of history
//! as if they were one. Kept in memory, read from `timeline_gaps` once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use super::Rooms;
use crate::Result;

#[derive(Default)]
pub(super) struct TimelineGaps {
    /// Whether the stored gaps were read (merged into `by_room`).
    loaded: tokio::sync::OnceCell<()>,
    /// Per room, the stream positions of the first events after its gaps,
    /// ascending. Appends add to it whether or not the stored ones were
    /// read yet: reading merges, so nothing noted meanwhile is lost.
    by_room: Mutex<HashMap<String, Vec<i64>>>,
}

pub(super) type SharedGaps = Arc<TimelineGaps>;

impl TimelineGaps {
    /// Notes a gap before the event at `position` (before its commit; see
    /// [`TimelineGaps::forget`] for a commit that fails). Reading the
    /// stored gaps merges them the same way.
    pub(super) fn note(&self, room: &str, position: i64) {
        let mut by_room = self.by_room.lock().unwrap_or_else(|p| p.into_inner());
        let positions = by_room.entry(room.to_owned()).or_default();
        if let Err(at) = positions.binary_search(&position) {
            positions.insert(at, position);
        }
    }

    /// Forgets a gap noted for an event whose commit failed.
    pub(super) fn forget(&self, room: &str, position: i64) {
        let mut by_room = self.by_room.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(positions) = by_room.get_mut(room) {
            positions.retain(|p| *p != position);
        }
    }
}

impl Rooms {
    /// The gaps, read from storage on first use.
    async fn gaps_loaded(&self) -> Result<&TimelineGaps> {
        let gaps = &*self.gaps;
        gaps.loaded
            .get_or_try_init(|| async {
                for (room, position) in self.store.timeline_gaps().await? {
                    gaps.note(&room, position);
                }
                Ok::<_, crate::Error>(())
            })
            .await?;
        Ok(gaps)
    }

    /// The newest gap in the room's timeline after `after` up to `upto`:
    /// the stream position of the first event after it.
    pub(crate) async fn newest_gap(&self, room: &str, after: i64, upto: i64) -> Result<Option<i64>> {
        let gaps = self.gaps_loaded().await?;
        let by_room = gaps.by_room.lock().unwrap_or_else(|p| p.into_inner());
        Ok(by_room
            .get(room)
            .and_then(|positions| positions.iter().rev().find(|p| **p > after && **p <= upto).copied()))
    }

    /// Whether the event at `position` is the first after a gap.
    pub(super) async fn follows_gap(&self, room: &str, position: i64) -> Result<bool> {
        let gaps = self.gaps_loaded().await?;
        let by_room = gaps.by_room.lock().unwrap_or_else(|p| p.into_inner());
        Ok(by_room.get(room).is_some_and(|positions| positions.binary_search(&position).is_ok()))
    }
}
