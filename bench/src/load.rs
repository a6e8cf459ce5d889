//! The chat load: members of rooms sync (long-poll or the Tessera
//! WebSocket channel) while messages are sent at a fixed rate; every
//! message's send latency and each recipient's delivery latency (from the
//! start of the send request to the moment the recipient's sync yields it)
//! are recorded, and every expected delivery is accounted for.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use crate::{
    matrix::{Server, SyncBody, User},
    measure::{Percentiles, Resources, Sampler, Watched, micros},
};

/// How members receive events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// `GET /sync` long-polls.
    LongPoll,
    /// Tessera's `/_matrix/client/unstable/org.tessera.sync/ws`.
    WebSocket,
}

/// Where each user lives: every user on one server, or, for two servers
/// federating, users from `split` on the second.
#[derive(Clone)]
pub struct Homes {
    servers: Vec<Server>,
    split: usize,
}

impl Homes {
    pub fn one(server: &Server) -> Self {
        Self { servers: vec![server.clone()], split: usize::MAX }
    }

    pub fn two(a: &Server, b: &Server, split: usize) -> Self {
        Self { servers: vec![a.clone(), b.clone()], split }
    }

    /// 0 or 1: the user's server.
    pub fn index(&self, user: usize) -> usize {
        usize::from(user >= self.split && self.servers.len() > 1)
    }

    pub fn of(&self, user: usize) -> &Server {
        &self.servers[self.index(user)]
    }
}

/// A room and its members (the first created it).
#[derive(Clone, Debug)]
pub struct Room {
    pub id: String,
    pub members: Vec<usize>,
}

/// The filter of the first sync, which only fetches a token: one event
/// per room, so that joining a large room costs the server nothing extra.
pub const TOKEN_FILTER: &str =
    r#"{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}},"presence":{"not_types":["*"]}}"#;

/// The sync filter every benchmark client uses: timelines only.
pub const FILTER: &str = r#"{"room":{"timeline":{"limit":500},"state":{"lazy_load_members":true},"ephemeral":{"not_types":["*"]},"account_data":{"not_types":["*"]}},"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]}}"#;

/// Long-poll timeout of the benchmark's syncs.
const POLL_TIMEOUT_MS: u64 = 30_000;

/// One chat run's shape.
#[derive(Clone, Debug)]
pub struct ChatLoad {
    pub rate: f64,
    pub duration: Duration,
    /// How long to wait after the last send for deliveries still on their way.
    pub drain: Duration,
    /// How long every sync runs before the first send and the first
    /// resource sample: first responses, presence and other start-up
    /// traffic settle outside the measured window.
    pub warmup: Duration,
    pub transport: Transport,
    pub max_in_flight: usize,
    /// Prefixes transaction IDs so runs never collide.
    pub run_id: String,
    /// Printed in the progress line.
    pub label: String,
}

/// What one chat run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChatOutcome {
    pub offered_rate: f64,
    pub sent: u64,
    pub accepted: u64,
    pub accepted_per_second: f64,
    pub send_latency: Percentiles,
    pub delivery_latency: Percentiles,
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    pub deliveries_missing: u64,
    pub deliveries_duplicated: u64,
    /// Two servers: the deliveries to a member of the other server than
    /// the sender's (also counted in `delivery_latency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_server_delivery_latency: Option<Percentiles>,
    /// Two servers: the second server's resources (`resources` are the
    /// first's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_b: Option<Resources>,
    /// Sync responses (long-poll answers or WebSocket frames) the members
    /// received, and how many of them carried no benchmark message: a
    /// server that answers with nothing new makes its clients ask again.
    #[serde(default)]
    pub sync_responses: u64,
    #[serde(default)]
    pub sync_responses_without_messages: u64,
    pub errors: BTreeMap<String, u64>,
    pub resources: Resources,
}

impl ChatOutcome {
    /// Every delivery arrived exactly once and nothing failed.
    pub fn accounted(&self) -> bool {
        self.deliveries_missing == 0 && self.deliveries_duplicated == 0 && self.errors.is_empty()
    }
}

/// Per-message bookkeeping shared by the sender and the syncers.
struct Ledger {
    start: Instant,
    homes: Homes,
    /// Microseconds after `start` at which the send began, plus one (0: unsent).
    sent_at: Vec<AtomicU64>,
    /// Index of the sending user, plus one.
    sender: Vec<AtomicU32>,
    expected: Vec<AtomicU32>,
    received: Vec<AtomicU32>,
    delivered: AtomicU64,
    sync_responses: AtomicU64,
    sync_responses_without_messages: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Ledger {
    fn new(capacity: usize, homes: Homes) -> Self {
        let zeros32 = || (0..capacity).map(|_| AtomicU32::new(0)).collect();
        Self {
            start: Instant::now(),
            homes,
            sent_at: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            sender: zeros32(),
            expected: zeros32(),
            received: zeros32(),
            delivered: AtomicU64::new(0),
            sync_responses: AtomicU64::new(0),
            sync_responses_without_messages: AtomicU64::new(0),
            errors: Mutex::default(),
        }
    }

    fn error(&self, kind: String) {
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
    }

    /// Records that `user` received message `id`; its latency if it
    /// counts, and whether it crossed from one server to the other.
    fn receive(&self, user: usize, id: u64, now: Instant) -> Option<(u32, bool)> {
        let id = usize::try_from(id).ok().filter(|id| *id < self.sent_at.len())?;
        let sent = self.sent_at[id].load(Ordering::Acquire);
        let sender = self.sender[id].load(Ordering::Acquire) as usize;
        if sent == 0 || sender == user + 1 {
            return None;
        }
        self.received[id].fetch_add(1, Ordering::AcqRel);
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let since_start = u64::try_from(now.duration_since(self.start).as_micros()).unwrap_or(u64::MAX);
        let latency = u32::try_from(since_start.saturating_sub(sent - 1)).unwrap_or(u32::MAX);
        let cross = sender > 0 && self.homes.index(sender - 1) != self.homes.index(user);
        Some((latency, cross))
    }
}

/// Where a member's sync loop starts: the token of its first sync and the
/// ID of its stored [`FILTER`].
#[derive(Clone, Debug)]
pub struct SyncStart {
    pub since: String,
    pub filter: String,
}

/// Stores [`FILTER`] for each of `users` (each on its server) and runs
/// their first syncs (at most `parallel` users at once), as Element does
/// before it long-polls with the filter's ID.
pub async fn start_syncs(users: &[(Server, User)], parallel: usize) -> Vec<Option<SyncStart>> {
    let gate = Arc::new(Semaphore::new(parallel));
    let tasks: Vec<_> = users
        .iter()
        .map(|(server, user)| {
            let (server, user, gate) = (server.clone(), user.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.ok()?;
                let filter = server.upload_filter(&user, FILTER).await.ok()?;
                let path = Server::sync_path(None, 0, TOKEN_FILTER);
                let body =
                    server.call_bytes(reqwest::Method::GET, &path, Some(&user.token), None).await.ok()?;
                let since = serde_json::from_slice::<SyncBody>(&body).ok()?.next_batch;
                Some(SyncStart { since, filter })
            })
        })
        .collect();
    let mut starts = Vec::with_capacity(tasks.len());
    for task in tasks {
        starts.push(task.await.ok().flatten());
    }
    starts
}

/// Runs the chat load over `rooms` of `users` (each on its server of
/// `homes`) and measures it: the server of `watched`, and with two
/// servers the second's (`watched_b`) too.
pub async fn run_chat(
    homes: &Homes,
    users: &[User],
    rooms: &[Room],
    load: &ChatLoad,
    watched: &Watched,
    watched_b: Option<&Watched>,
) -> ChatOutcome {
    let capacity = (load.rate * load.duration.as_secs_f64() * 1.2) as usize + 100;
    let ledger = Arc::new(Ledger::new(capacity, homes.clone()));

    // Everyone in a room syncs, from a token taken before the first send.
    let mut syncing: Vec<usize> = rooms.iter().flat_map(|r| r.members.iter().copied()).collect();
    syncing.sort_unstable();
    syncing.dedup();
    let chosen: Vec<(Server, User)> =
        syncing.iter().map(|&i| (homes.of(i).clone(), users[i].clone())).collect();
    let starts = start_syncs(&chosen, 32).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut syncers = Vec::with_capacity(syncing.len());
    for (&index, start) in syncing.iter().zip(starts) {
        let Some(start) = start else {
            ledger.error("initial_sync".into());
            continue;
        };
        let task = Syncer {
            server: homes.of(index).clone(),
            user: users[index].clone(),
            index,
            ledger: ledger.clone(),
            stop: stop_rx.clone(),
            transport: load.transport,
            filter: start.filter,
        };
        syncers.push(tokio::spawn(task.run(start.since)));
    }
    // Let every long-poll reach the server, and the start-up traffic
    // settle, before the first message.
    tokio::time::sleep(load.warmup).await;

    let sampler = Sampler::start(watched);
    let sampler_b = watched_b.map(Sampler::start);
    let send_latencies = Arc::new(Mutex::new(Vec::<u32>::with_capacity(capacity)));
    let accepted = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(Semaphore::new(load.max_in_flight));
    let progress = spawn_progress(load.label.clone(), ledger.clone(), accepted.clone());
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let expected_of: HashMap<usize, u32> = rooms
        .iter()
        .enumerate()
        .map(|(i, r)| (i, u32::try_from(r.members.len().saturating_sub(1)).unwrap_or(0)))
        .collect();
    let deadline = tokio::time::Instant::now() + load.duration;
    'sending: while tokio::time::Instant::now() < deadline {
        tick.tick().await;
        let due = (load.rate * started.elapsed().as_secs_f64()) as u64;
        while sent < due.min(capacity as u64) {
            // A server that falls behind holds the sender back, never past
            // the run's end: the run is bounded in time whatever happens.
            let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, in_flight.clone().acquire_owned()).await
            else {
                break 'sending;
            };
            let id = sent;
            sent += 1;
            let room_index = (id as usize) % rooms.len();
            let room = &rooms[room_index];
            let sender_index = room.members[(id as usize / rooms.len()) % room.members.len()];
            let slot = id as usize;
            ledger.sender[slot].store(u32::try_from(sender_index + 1).unwrap_or(0), Ordering::Release);
            let at = u64::try_from(ledger.start.elapsed().as_micros()).unwrap_or(u64::MAX);
            ledger.sent_at[slot].store(at + 1, Ordering::Release);
            let (server, user, room_id) =
                (homes.of(sender_index).clone(), users[sender_index].clone(), room.id.clone());
            let (ledger, latencies, accepted) = (ledger.clone(), send_latencies.clone(), accepted.clone());
            let expected = expected_of[&room_index];
            let txn = format!("{}-{id}", load.run_id);
            tokio::spawn(async move {
                let began = Instant::now();
                match server.send(&user, &room_id, &txn, id).await {
                    Ok(_) => {
                        latencies.lock().unwrap_or_else(|p| p.into_inner()).push(micros(began.elapsed()));
                        ledger.expected[slot].store(expected, Ordering::Release);
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => ledger.error(format!("send_{}", e.kind())),
                }
                drop(permit);
            });
        }
    }
    // Wait for the sends still in flight (at most 30 s: a send still
    // unanswered then is an error), then for deliveries on their way.
    let everything = u32::try_from(load.max_in_flight).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), in_flight.acquire_many(everything)).await.is_err() {
        let unanswered = load.max_in_flight - in_flight.available_permits();
        for _ in 0..unanswered {
            ledger.error("send_unanswered_after_30s".into());
        }
    }
    let send_window = started.elapsed();
    let expected_total =
        || -> u64 { ledger.expected.iter().map(|e| u64::from(e.load(Ordering::Acquire))).sum() };
    let drain_start = Instant::now();
    while ledger.delivered.load(Ordering::Acquire) < expected_total() && drain_start.elapsed() < load.drain {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resources = sampler.finish();
    let resources_b = sampler_b.map(Sampler::finish);
    let _ = stop_tx.send(true);
    progress.abort();
    let (mut delivery, mut cross) = (Vec::new(), Vec::new());
    for syncer in syncers {
        if let Ok(latencies) = syncer.await {
            for (latency, crossed) in latencies {
                delivery.push(latency);
                if crossed {
                    cross.push(latency);
                }
            }
        }
    }
    eprintln!();

    let (mut expected, mut received, mut missing, mut duplicated) = (0, 0, 0, 0);
    for slot in 0..capacity {
        let e = u64::from(ledger.expected[slot].load(Ordering::Acquire));
        let r = u64::from(ledger.received[slot].load(Ordering::Acquire));
        if ledger.sent_at[slot].load(Ordering::Acquire) == 0 || (e == 0 && r == 0) {
            continue;
        }
        expected += e;
        received += r.min(e);
        missing += e.saturating_sub(r);
        duplicated += r.saturating_sub(e);
    }
    let accepted = accepted.load(Ordering::Acquire);
    let errors = ledger.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let send_latency =
        Percentiles::of(std::mem::take(&mut *send_latencies.lock().unwrap_or_else(|p| p.into_inner())));
    ChatOutcome {
        offered_rate: load.rate,
        sent,
        accepted,
        accepted_per_second: accepted as f64 / send_window.as_secs_f64().max(0.001),
        send_latency,
        delivery_latency: Percentiles::of(delivery),
        deliveries_expected: expected,
        deliveries_received: received,
        deliveries_missing: missing,
        deliveries_duplicated: duplicated,
        cross_server_delivery_latency: (homes.servers.len() > 1).then(|| Percentiles::of(cross)),
        resources_b,
        sync_responses: ledger.sync_responses.load(Ordering::Acquire),
        sync_responses_without_messages: ledger.sync_responses_without_messages.load(Ordering::Acquire),
        errors,
        resources,
    }
}

/// Prints a progress line every two seconds while a run lasts.
fn spawn_progress(
    label: String,
    ledger: Arc<Ledger>,
    accepted: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.tick().await;
        loop {
            tick.tick().await;
            let elapsed = start.elapsed().as_secs_f64();
            let accepted = accepted.load(Ordering::Relaxed);
            let delivered = ledger.delivered.load(Ordering::Relaxed);
            let expected: u64 = ledger.expected.iter().map(|e| u64::from(e.load(Ordering::Relaxed))).sum();
            let errors: u64 = ledger.errors.lock().unwrap_or_else(|p| p.into_inner()).values().sum();
            eprint!(
                "\r[{label}] {elapsed:5.1}s accepted {accepted} ({:.0}/s) delivered {delivered}/{expected} errors {errors}   ",
                accepted as f64 / elapsed
            );
        }
    })
}

/// One member's sync loop.
struct Syncer {
    server: Server,
    user: User,
    index: usize,
    ledger: Arc<Ledger>,
    stop: watch::Receiver<bool>,
    transport: Transport,
    /// The stored filter's ID.
    filter: String,
}

impl Syncer {
    /// Syncs until stopped; returns the delivery latencies it measured,
    /// each with whether it crossed servers.
    async fn run(mut self, mut since: String) -> Vec<(u32, bool)> {
        let mut latencies = Vec::new();
        while !*self.stop.borrow() {
            let result = match self.transport {
                Transport::LongPoll => self.poll(&mut since, &mut latencies).await,
                Transport::WebSocket => self.socket(&mut since, &mut latencies).await,
            };
            match result {
                Ok(()) => {}
                Err(kind) => {
                    if *self.stop.borrow() {
                        break;
                    }
                    self.ledger.error(kind);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        latencies
    }

    fn absorb(
        &self,
        body: &[u8],
        since: &mut String,
        latencies: &mut Vec<(u32, bool)>,
    ) -> Result<(), String> {
        let now = Instant::now();
        let body: SyncBody = serde_json::from_slice(body).map_err(|_| "sync_bad_json".to_owned())?;
        let mut messages = 0;
        for id in body.bench_ids() {
            messages += 1;
            if let Some(latency) = self.ledger.receive(self.index, id, now) {
                latencies.push(latency);
            }
        }
        // Only responses inside the measured window count (the warm-up's
        // first answers come before the ledger starts counting sends).
        if self.ledger.sent_at.first().is_some_and(|first| first.load(Ordering::Relaxed) != 0) {
            self.ledger.sync_responses.fetch_add(1, Ordering::Relaxed);
            if messages == 0 {
                self.ledger.sync_responses_without_messages.fetch_add(1, Ordering::Relaxed);
            }
        }
        *since = body.next_batch;
        Ok(())
    }

    /// One long-poll (or nothing, if stopped meanwhile).
    async fn poll(&mut self, since: &mut String, latencies: &mut Vec<(u32, bool)>) -> Result<(), String> {
        let path = Server::sync_path(Some(since), POLL_TIMEOUT_MS, &self.filter);
        let request = self.server.call_bytes(reqwest::Method::GET, &path, Some(&self.user.token), None);
        let body = tokio::select! {
            body = request => body.map_err(|e| format!("sync_{}", e.kind()))?,
            _ = self.stop.changed() => return Ok(()),
        };
        self.absorb(&body, since, latencies)
    }

    /// One WebSocket connection, read until it closes (or until stopped).
    async fn socket(&mut self, since: &mut String, latencies: &mut Vec<(u32, bool)>) -> Result<(), String> {
        let url = self.server.sync_ws_url(since, &self.filter, &self.user.token);
        let (mut socket, _) =
            tokio_tungstenite::connect_async(url).await.map_err(|_| "ws_connect".to_owned())?;
        loop {
            let frame = tokio::select! {
                frame = socket.next() => frame,
                _ = self.stop.changed() => return Ok(()),
            };
            match frame {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    self.absorb(text.as_bytes(), since, latencies)?;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err("ws_closed".to_owned()),
            }
        }
    }
}
