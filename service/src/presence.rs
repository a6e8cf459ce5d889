//! Presence: `PUT/GET /presence/{userId}/status` and `set_presence` on sync.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#presence>.
//!
//! Shared only with users who share a room, and computed lazily: a change
//! is one row written once; each member's sync reads the rows of the users
//! it shares rooms with. Nothing is copied per member and nobody else's
//! long-poll is woken, so a status change in a 10,000-member room costs
//! one write. The shown state is derived from timestamps (online → idle →
//! unavailable, no sync → offline); a sweeper records those transitions so
//! incremental syncs learn about them.
//!
//! Over federation: a local user's change goes as an `m.presence` EDU to
//! every server with a user sharing a room with them, and again every
//! [`FEDERATION_PING`] while they stay online; other servers' users are
//! taken as their server says (a server speaks only for its own users)
//! and shown offline when it has said nothing for [`FEDERATION_TIMEOUT_MS`].
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#presence>.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ruma::{
    OwnedServerName, OwnedUserId, ServerName, UserId, api::federation::transactions::edu::PresenceContent,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tessera_storage::{PresenceRow, Store};

use crate::{
    Error, Result, auth::Identity, changes::ChangeLog, notifier::Notifier, now_ms, rooms::Rooms,
    streams::StreamAllocator,
};

/// Presence configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceSettings {
    /// Off: every user shows as offline and nothing is stored.
    pub enabled: bool,
    /// Online users with no activity for this long show as unavailable.
    pub idle_timeout_ms: u64,
    /// Users whose clients stopped syncing this long ago show as offline.
    pub offline_timeout_ms: u64,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self { enabled: true, idle_timeout_ms: 5 * 60 * 1000, offline_timeout_ms: 2 * 60 * 1000 }
    }
}

/// A user's presence as others see it.
pub struct PresenceView {
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<Duration>,
    pub currently_active: bool,
}

/// A sync writes "still here" at most this often per user, and within
/// this time a sync asking for the state it asked for last reads nothing.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Active within this long counts as `currently_active`.
const CURRENTLY_ACTIVE_MS: i64 = 60_000;
/// A local user who stays online is announced to other servers again
/// this often (Synapse's interval), so theirs never time them out.
pub const FEDERATION_PING: Duration = Duration::from_secs(25 * 60);
/// Another server's user of whom it has said nothing for this long shows
/// as offline (Synapse's timeout).
pub const FEDERATION_TIMEOUT_MS: i64 = 30 * 60 * 1000;

/// The presence service. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    store: Store,
    streams: StreamAllocator,
    notifier: Notifier,
    rooms: Rooms,
    server_name: OwnedServerName,
    settings: PresenceSettings,
    /// Per user: when a sync last checked the stored presence, and the
    /// state it asked for. Any presence write drops the user's entry.
    touched: Arc<Mutex<HashMap<OwnedUserId, (Instant, String)>>>,
    /// Counts presence writes, so a sync only remembers a row no write
    /// raced with.
    writes: Arc<AtomicU64>,
    /// The position of the last presence change of anyone (key "").
    changes: ChangeLog,
    /// Per local user, when their presence last went to other servers.
    federated: Arc<Mutex<HashMap<OwnedUserId, Instant>>>,
}

impl Presence {
    pub fn new(
        store: Store,
        streams: StreamAllocator,
        notifier: Notifier,
        rooms: Rooms,
        settings: PresenceSettings,
    ) -> Self {
        let changes = ChangeLog::new(&streams);
        let server_name = rooms.server_name().to_owned();
        Self {
            store,
            streams,
            notifier,
            rooms,
            server_name,
            settings,
            touched: Arc::default(),
            writes: Arc::default(),
            changes,
            federated: Arc::default(),
        }
    }

    /// `PUT /presence/{userId}/status`.
    pub async fn set(
        &self,
        who: &Identity,
        user: &UserId,
        state: &str,
        status_msg: Option<String>,
    ) -> Result<()> {
        if who.user_id != user {
            return Err(Error::forbidden("You can only set your own presence"));
        }
        if !matches!(state, "online" | "unavailable" | "offline") {
            return Err(Error::invalid_param(format!("Unknown presence state {state}")));
        }
        if let Some(message) = &status_msg {
            crate::limits::check_chars("status_msg", message, crate::limits::MAX_STATUS_MSG_CHARS)?;
        }
        if !self.settings.enabled {
            return Ok(());
        }
        let now = now_ms();
        let previous = self.store.get_presence(user).await?;
        let last_active_ts =
            if state == "online" { now } else { previous.as_ref().map_or(now, |p| p.last_active_ts) };
        let row = PresenceRow {
            user_id: user.to_string(),
            state: state.to_owned(),
            status_msg,
            last_active_ts,
            last_sync_ts: now,
        };
        self.write(&row).await
    }

    /// `GET /presence/{userId}/status`: for the user and those who share a room.
    pub async fn get(&self, who: &Identity, user: &UserId) -> Result<PresenceView> {
        if who.user_id != user && !self.store.share_a_room(&who.user_id, user).await? {
            return Err(Error::forbidden("You do not share a room with this user"));
        }
        let row = match self.store.get_presence(user).await? {
            Some(row) if self.settings.enabled => row,
            _ => {
                if self.store.get_profile(user).await?.is_none() {
                    return Err(Error::not_found("No such user"));
                }
                return Ok(PresenceView {
                    state: "offline".into(),
                    status_msg: None,
                    last_active_ago: None,
                    currently_active: false,
                });
            }
        };
        Ok(self.view(&row, now_ms()))
    }

    /// `set_presence` on sync (`online` unless the client says otherwise;
    /// `offline` leaves presence alone, as the spec says).
    pub async fn on_sync(&self, user: &UserId, set_presence: &str) -> Result<()> {
        if !self.settings.enabled || !matches!(set_presence, "online" | "unavailable") {
            return Ok(());
        }
        let checked_recently = self
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .is_some_and(|(at, asked)| at.elapsed() < TOUCH_EVERY && asked == set_presence);
        if checked_recently {
            return Ok(());
        }
        let writes = self.writes.load(Ordering::SeqCst);
        let now = now_ms();
        let previous = self.store.get_presence(user).await?;
        let shown = previous.as_ref().map(|p| self.view(p, now).state);
        if shown.as_deref() != Some(set_presence) {
            let status_msg = previous.as_ref().and_then(|p| p.status_msg.clone());
            let last_active_ts = if set_presence == "online" {
                now
            } else {
                previous.as_ref().map_or(now, |p| p.last_active_ts)
            };
            let row = PresenceRow {
                user_id: user.to_string(),
                state: set_presence.to_owned(),
                status_msg,
                last_active_ts,
                last_sync_ts: now,
            };
            self.write(&row).await?;
        } else {
            self.store.touch_presence_sync(user, now).await?;
            if let Some(row) = previous.filter(|_| self.federation_ping_due(user)) {
                self.federate(&row, now).await;
            }
        }
        if self.writes.load(Ordering::SeqCst) == writes {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            crate::remember(&mut touched, user.to_owned(), (Instant::now(), set_presence.to_owned()));
        }
        Ok(())
    }

    /// `m.presence` events for `viewer`'s sync: changes in `(after, upto]`
    /// of users who share a room with them.
    pub async fn events_for(&self, viewer: &UserId, after: i64, upto: i64) -> Result<Vec<Value>> {
        if !self.settings.enabled || !self.changes.changed_after("", after) {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let rows = self.store.presence_changes_for(viewer, after, upto).await?;
        Ok(rows.iter().map(|row| self.event(row, now)).collect())
    }

    /// The current `m.presence` events of `users` whatever their age: for
    /// users the viewer has just come to share a room with, whose presence
    /// the viewer has never been sent. Users with no presence are left out.
    pub async fn events_of(&self, users: &[&UserId]) -> Result<Vec<Value>> {
        if !self.settings.enabled {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut events = Vec::with_capacity(users.len());
        for user in users {
            if let Some(row) = self.store.get_presence(user).await? {
                events.push(self.event(&row, now));
            }
        }
        Ok(events)
    }

    /// An `m.presence` EDU from `origin`: each update about one of its own
    /// users who is in a room here is stored as that server says.
    pub async fn receive(&self, origin: &ServerName, content: &PresenceContent) -> Result<()> {
        if !self.settings.enabled {
            return Ok(());
        }
        let now = now_ms();
        for update in &content.push {
            if update.user_id.server_name() != origin {
                tracing::info!(%origin, user = %update.user_id, "presence about another server's user dropped");
                continue;
            }
            if self.store.rooms_with_membership(&update.user_id, "join").await?.is_empty() {
                continue;
            }
            let ago = i64::try_from(u64::from(update.last_active_ago)).unwrap_or(i64::MAX);
            let row = PresenceRow {
                user_id: update.user_id.to_string(),
                state: update.presence.to_string(),
                status_msg: update.status_msg.clone(),
                last_active_ts: now.saturating_sub(ago),
                last_sync_ts: now,
            };
            self.write(&row).await?;
        }
        Ok(())
    }

    /// Whether a local user's presence has not gone to other servers for
    /// [`FEDERATION_PING`].
    fn federation_ping_due(&self, user: &UserId) -> bool {
        self.federated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .is_none_or(|at| at.elapsed() >= FEDERATION_PING)
    }

    /// Sends a local user's presence to every server with a user sharing a
    /// room with them. A failure to queue it is logged: presence is
    /// advisory, and the next change or ping sends it again.
    async fn federate(&self, row: &PresenceRow, now: i64) {
        let Ok(user) = UserId::parse(&row.user_id) else { return };
        if user.server_name() != self.server_name {
            return;
        }
        crate::remember(
            &mut self.federated.lock().unwrap_or_else(|p| p.into_inner()),
            user.clone(),
            Instant::now(),
        );
        let mut update = self.event(row, now)["content"].take();
        update["user_id"] = row.user_id.as_str().into();
        if update.get("last_active_ago").is_none() {
            update["last_active_ago"] = 0.into();
        }
        let edu = json!({ "edu_type": "m.presence", "content": { "push": [update] } });
        let sent = match self.rooms.servers_sharing_with(&user).await {
            Ok(servers) => self.rooms.send_edu(&servers, &edu).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!(%user, error = %e, "presence not sent to other servers");
        }
    }

    fn event(&self, row: &PresenceRow, now: i64) -> Value {
        let view = self.view(row, now);
        let mut content = json!({ "presence": view.state, "currently_active": view.currently_active });
        if let Some(ago) = view.last_active_ago {
            content["last_active_ago"] = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX).into();
        }
        if let Some(msg) = &view.status_msg {
            content["status_msg"] = msg.as_str().into();
        }
        json!({ "type": "m.presence", "sender": row.user_id, "content": content })
    }

    /// Records the idle and offline transitions due by now. Runs from a
    /// background task (see [`Presence::spawn_sweeper`]).
    pub async fn sweep(&self) -> Result<()> {
        let now = now_ms();
        let idle = i64::try_from(self.settings.idle_timeout_ms).unwrap_or(i64::MAX);
        let gone = i64::try_from(self.settings.offline_timeout_ms).unwrap_or(i64::MAX);
        let local_suffix = format!(":{}", self.server_name);
        let remote_gone = now.saturating_sub(FEDERATION_TIMEOUT_MS);
        let stale = self
            .store
            .stale_presence(now.saturating_sub(idle), now.saturating_sub(gone), &local_suffix, remote_gone)
            .await?;
        for row in stale {
            let shown = self.view(&row, now).state;
            if shown != row.state {
                self.write(&PresenceRow { state: shown, ..row }).await?;
            }
        }
        Ok(())
    }

    /// Sweeps periodically until the server shuts down.
    pub fn spawn_sweeper(&self) {
        if !self.settings.enabled {
            return;
        }
        let this = self.clone();
        let every =
            Duration::from_millis(self.settings.idle_timeout_ms.min(self.settings.offline_timeout_ms) / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = this.notifier.shutting_down() => return,
                }
                if let Err(e) = this.sweep().await {
                    tracing::warn!(error = %e, "presence sweep failed");
                }
            }
        });
    }

    /// The state shown for a stored row at `now`.
    fn view(&self, row: &PresenceRow, now: i64) -> PresenceView {
        let idle = i64::try_from(self.settings.idle_timeout_ms).unwrap_or(i64::MAX);
        let gone = i64::try_from(self.settings.offline_timeout_ms).unwrap_or(i64::MAX);
        let remote = !row.user_id.ends_with(&format!(":{}", self.server_name));
        let state = match row.state.as_str() {
            "online" | "unavailable" if remote && now - row.last_sync_ts > FEDERATION_TIMEOUT_MS => "offline",
            other if remote => other,
            "online" | "unavailable" if now - row.last_sync_ts > gone => "offline",
            "online" if now - row.last_active_ts > idle => "unavailable",
            other => other,
        };
        let ago = u64::try_from((now - row.last_active_ts).max(0)).unwrap_or(0);
        PresenceView {
            state: state.to_owned(),
            status_msg: row.status_msg.clone(),
            last_active_ago: Some(Duration::from_millis(ago)),
            currently_active: state == "online" && now - row.last_active_ts < CURRENTLY_ACTIVE_MS,
        }
    }

    async fn write(&self, row: &PresenceRow) -> Result<()> {
        let position = self.streams.reserve().await?;
        // Recorded before writing (see `ChangeLog`); the write counter moves
        // before and after, so a sync that read the old row around this
        // write does not remember it (see `on_sync`).
        self.changes.record("", position.position);
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.store.put_presence(row, position.position).await?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        drop(position);
        if let Ok(user) = UserId::parse(&row.user_id) {
            self.touched.lock().unwrap_or_else(|p| p.into_inner()).remove(&user);
            // Only the user's own syncs are woken; others read it lazily.
            self.notifier.user_changed(&user);
        }
        self.federate(row, now_ms()).await;
        Ok(())
    }
}
