//! Scenarios 1-6 (7, the key API's, is in `keys`), each provisioning what
//! it needs (users with the run's own prefix, rooms it creates) and
//! measuring one thing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::{
    load::{self, ChatLoad, ChatOutcome, Room, Transport},
    matrix::{Server, User},
    measure::{Sampler, Watched, rss_kib},
};

/// What every scenario needs to reach the target.
#[derive(Clone)]
pub struct Target {
    pub server: Server,
    pub shared_secret: String,
    /// The server process and its database, for resources.
    pub watched: Watched,
    pub transport: Transport,
    /// Unique per run: user names and transaction IDs start with it.
    pub run_id: String,
    pub label: String,
    /// See [`crate::load::ChatLoad::warmup`].
    pub warmup: Duration,
}

pub const PASSWORD: &str = "bench-password-1";

/// Registers `count` users (a few at a time: password hashing is the cost).
pub async fn register_users(target: &Target, count: usize) -> Result<Vec<User>, String> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(8));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (target, gate) = (target.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let name = format!("{}u{i}", target.run_id);
                target
                    .server
                    .register(&target.shared_secret, &name, PASSWORD)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut users = Vec::with_capacity(count);
    for task in tasks {
        users.push(task.await.map_err(|e| e.to_string())??);
    }
    eprintln!("[{}] registered {count} users in {:.1}s", target.label, started.elapsed().as_secs_f64());
    Ok(users)
}

/// Creates one room per member list (its first member creates, the rest
/// join, several rooms at once), end-to-end encrypted if `encrypted`.
pub async fn create_rooms(
    target: &Target,
    users: &[User],
    groups: Vec<Vec<usize>>,
    encrypted: bool,
) -> Result<Vec<Room>, String> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(8));
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|members| {
            let (server, gate) = (target.server.clone(), gate.clone());
            let people: Vec<User> = members.iter().map(|&i| users[i].clone()).collect();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let id = server
                    .create_room(&people[0], encrypted)
                    .await
                    .map_err(|e| format!("createRoom: {e}"))?;
                for person in &people[1..] {
                    server.join(person, &id).await.map_err(|e| format!("join: {e}"))?;
                }
                Ok::<_, String>(Room { id, members })
            })
        })
        .collect();
    let mut rooms = Vec::with_capacity(tasks.len());
    for task in tasks {
        rooms.push(task.await.map_err(|e| e.to_string())??);
    }
    eprintln!("[{}] created {} rooms in {:.1}s", target.label, rooms.len(), started.elapsed().as_secs_f64());
    Ok(rooms)
}

/// Splits users `0..users` into rooms of `size`.
fn groups_of(users: usize, size: usize) -> Vec<Vec<usize>> {
    (0..users)
        .collect::<Vec<_>>()
        .chunks(size.max(2))
        .filter(|g| g.len() >= 2)
        .map(<[usize]>::to_vec)
        .collect()
}

fn chat_load(target: &Target, rate: f64, duration: Duration, name: &str) -> ChatLoad {
    ChatLoad {
        rate,
        duration,
        drain: Duration::from_secs(10),
        warmup: target.warmup,
        transport: target.transport,
        max_in_flight: 1024,
        run_id: format!("{}{name}", target.run_id),
        label: format!("{} {name}", target.label),
    }
}

/// Scenarios 1 and 2: a fixed rate over rooms of `room_size`.
pub async fn chat(
    target: &Target,
    users: usize,
    room_size: usize,
    rate: f64,
    duration: Duration,
) -> Result<ChatOutcome, String> {
    let people = register_users(target, users).await?;
    let rooms = create_rooms(target, &people, groups_of(users, room_size), false).await?;
    let load = chat_load(target, rate, duration, "chat");
    Ok(load::run_chat(&load::Homes::one(&target.server), &people, &rooms, &load, &target.watched, None).await)
}

/// Scenario 8: two servers federating. `users` on each server, in rooms of
/// `room_size` whose members alternate between the servers; each room is
/// created on the first server and joined from the second through it
/// (`/join?server_name=`); members of both servers send.
pub async fn federation(
    target: &Target,
    target_b: &Target,
    users: usize,
    room_size: usize,
    rate: f64,
    duration: Duration,
) -> Result<ChatOutcome, String> {
    let mut people = register_users(target, users).await?;
    people.extend(register_users(target_b, users).await?);
    let homes = load::Homes::two(&target.server, &target_b.server, users);
    let server_a =
        people[0].id.split_once(':').map(|(_, server)| server.to_owned()).ok_or("no server name")?;
    // Room r holds A's users r*k.. and B's users r*k.., interleaved.
    let per_side = (room_size / 2).max(1);
    let groups: Vec<Vec<usize>> = (0..users / per_side)
        .map(|r| (0..per_side).flat_map(|i| [r * per_side + i, users + r * per_side + i]).collect())
        .collect();
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(8));
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|members| {
            let (homes, gate, server_a) = (homes.clone(), gate.clone(), server_a.clone());
            let people: Vec<(usize, User)> = members.iter().map(|&i| (i, people[i].clone())).collect();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let (creator, first) = (people[0].0, &people[0].1);
                let id = homes
                    .of(creator)
                    .create_room(first, false)
                    .await
                    .map_err(|e| format!("createRoom: {e}"))?;
                for (index, person) in &people[1..] {
                    let via = (homes.index(*index) == 1).then_some(server_a.as_str());
                    homes.of(*index).join_via(person, &id, via).await.map_err(|e| format!("join: {e}"))?;
                }
                Ok::<_, String>(Room { id, members })
            })
        })
        .collect();
    let mut rooms = Vec::with_capacity(tasks.len());
    for task in tasks {
        rooms.push(task.await.map_err(|e| e.to_string())??);
    }
    eprintln!(
        "[{}] created {} rooms across servers in {:.1}s",
        target.label,
        rooms.len(),
        started.elapsed().as_secs_f64()
    );
    let load = chat_load(target, rate, duration, "federation");
    Ok(load::run_chat(&homes, &people, &rooms, &load, &target.watched, Some(&target_b.watched)).await)
}

/// Scenario 3's answer: each step, and the highest rate that passed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ceiling {
    pub steps: Vec<ChatOutcome>,
    /// Accepted messages per second of the last passing step.
    pub sustained_rate: f64,
    pub p99_limit_ms: f64,
}

/// Scenario 3: raise the rate by half each step until delivery p99 passes
/// the limit, deliveries go missing, errors appear or the server cannot
/// accept what is offered.
pub async fn ceiling(
    target: &Target,
    users: usize,
    room_size: usize,
    start_rate: f64,
    max_rate: f64,
    step: Duration,
    p99_limit_ms: f64,
) -> Result<Ceiling, String> {
    let people = register_users(target, users).await?;
    let rooms = create_rooms(target, &people, groups_of(users, room_size), false).await?;
    let mut result = Ceiling { p99_limit_ms, ..Ceiling::default() };
    let mut rate = start_rate;
    let mut n = 0;
    while rate <= max_rate {
        n += 1;
        let load = chat_load(target, rate, step, &format!("ceiling{n}"));
        let outcome =
            load::run_chat(&load::Homes::one(&target.server), &people, &rooms, &load, &target.watched, None)
                .await;
        let passed = outcome.accounted()
            && outcome.delivery_latency.p99_ms <= p99_limit_ms
            && outcome.accepted_per_second >= rate * 0.9;
        eprintln!(
            "[{}] ceiling step {rate:.0}/s: accepted {:.0}/s, delivery p99 {:.1} ms, missing {}, errors {} -> {}",
            target.label,
            outcome.accepted_per_second,
            outcome.delivery_latency.p99_ms,
            outcome.deliveries_missing,
            outcome.errors.values().sum::<u64>(),
            if passed { "pass" } else { "stop" }
        );
        if passed {
            result.sustained_rate = outcome.accepted_per_second;
        }
        result.steps.push(outcome);
        if !passed {
            break;
        }
        rate = (rate * 1.5).round();
    }
    Ok(result)
}

/// Scenario 4's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Idle {
    pub connections: u64,
    pub users: u64,
    pub baseline_rss_kib: u64,
    pub held_rss_kib: u64,
    pub rss_per_connection_kib: f64,
    /// Long-polls that ended before their timeout, WebSockets that closed.
    pub ended_early: u64,
    pub resources: crate::measure::Resources,
}

/// Scenario 4: `connections` syncs held open (spread over `users`, several
/// per access token) for `hold`; RSS per connection.
pub async fn idle(target: &Target, users: usize, connections: usize, hold: Duration) -> Result<Idle, String> {
    let people = register_users(target, users).await?;
    let people_at: Vec<_> = people.iter().map(|p| (target.server.clone(), p.clone())).collect();
    let starts = load::start_syncs(&people_at, 32).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = median_rss(target.watched.server_pid, 10).await;
    let ended = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let opening = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(connections);
    for n in 0..connections {
        let user = people[n % people.len()].clone();
        let Some(start) = starts[n % people.len()].clone() else { continue };
        let (server, ended, opened, opening) =
            (target.server.clone(), ended.clone(), opened.clone(), opening.clone());
        let mut stop = stop_rx.clone();
        let transport = target.transport;
        let timeout = hold + Duration::from_secs(60);
        tasks.push(tokio::spawn(async move {
            let permit = tokio::select! {
                permit = opening.acquire_owned() => permit.ok(),
                _ = stop.changed() => return,
            };
            let connection = Connection { server, user, start, transport, timeout };
            connection.hold(&mut stop, permit, &opened, &ended).await;
        }));
    }
    eprintln!("[{}] opening {connections} connections", target.label);
    let open_deadline = Instant::now() + Duration::from_secs(300);
    while opened.load(Ordering::Acquire) < tasks.len() as u64 && Instant::now() < open_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("[{}] {} connections open; holding", target.label, opened.load(Ordering::Acquire));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sampler = Sampler::start(&target.watched);
    tokio::time::sleep(hold).await;
    let resources = sampler.finish();
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let held = resources.server_rss_steady_kib;
    Ok(Idle {
        connections: connections as u64,
        users: users as u64,
        baseline_rss_kib: baseline,
        held_rss_kib: held,
        rss_per_connection_kib: held.saturating_sub(baseline) as f64 / connections.max(1) as f64,
        ended_early: ended.load(Ordering::Acquire),
        resources,
    })
}

/// One held-open sync connection of scenario 4.
struct Connection {
    server: Server,
    user: User,
    start: load::SyncStart,
    transport: Transport,
    timeout: Duration,
}

impl Connection {
    /// Holds the sync open until stopped, re-opening it (from the answer's
    /// `next_batch`) if it ends early. `permit` (the opening gate) is
    /// returned once the request is out.
    async fn hold(
        mut self,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        mut permit: Option<tokio::sync::OwnedSemaphorePermit>,
        opened: &AtomicU64,
        ended: &AtomicU64,
    ) {
        use futures_util::StreamExt;
        let mut counted = false;
        let mut open = |permit: &mut Option<tokio::sync::OwnedSemaphorePermit>| {
            *permit = None;
            if !counted {
                counted = true;
                opened.fetch_add(1, Ordering::AcqRel);
            }
        };
        while !*stop.borrow() {
            match self.transport {
                Transport::LongPoll => {
                    let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
                    let path = Server::sync_path(Some(&self.start.since), timeout_ms, &self.start.filter);
                    let request =
                        self.server.call_bytes(reqwest::Method::GET, &path, Some(&self.user.token), None);
                    let mut request = std::pin::pin!(request);
                    // Polled for a moment, the request is on the wire.
                    let answer = tokio::select! {
                        answer = &mut request => Some(answer),
                        _ = tokio::time::sleep(Duration::from_millis(50)) => None,
                        _ = stop.changed() => return,
                    };
                    open(&mut permit);
                    let answer = match answer {
                        Some(answer) => answer,
                        None => tokio::select! {
                            answer = &mut request => answer,
                            _ = stop.changed() => return,
                        },
                    };
                    ended.fetch_add(1, Ordering::AcqRel);
                    match answer
                        .ok()
                        .and_then(|body| serde_json::from_slice::<crate::matrix::SyncBody>(&body).ok())
                    {
                        Some(body) => self.start.since = body.next_batch,
                        None => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                Transport::WebSocket => {
                    let url =
                        self.server.sync_ws_url(&self.start.since, &self.start.filter, &self.user.token);
                    let connected = tokio::select! {
                        connected = tokio_tungstenite::connect_async(url) => connected,
                        _ = stop.changed() => return,
                    };
                    open(&mut permit);
                    let Ok((mut socket, _)) = connected else {
                        ended.fetch_add(1, Ordering::AcqRel);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    };
                    loop {
                        tokio::select! {
                            frame = socket.next() => match frame {
                                Some(Ok(_)) => {}
                                _ => { ended.fetch_add(1, Ordering::AcqRel); break; }
                            },
                            _ = stop.changed() => return,
                        }
                    }
                }
            }
        }
    }
}

async fn median_rss(pid: Option<u32>, samples: usize) -> u64 {
    let Some(pid) = pid else { return 0 };
    let mut seen = Vec::with_capacity(samples);
    for _ in 0..samples {
        seen.extend(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen.sort_unstable();
    seen.get(seen.len() / 2).copied().unwrap_or(0)
}

/// One measured sync of scenario 5.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SyncMeasure {
    pub seconds: f64,
    pub bytes: u64,
    pub rooms: u64,
    pub timeline_events: u64,
}

/// Scenario 5's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CatchUp {
    pub rooms: u64,
    pub room_size: u64,
    pub messages: u64,
    pub messages_failed: u64,
    pub initial_sync: SyncMeasure,
    pub incremental_sync: SyncMeasure,
    pub resources: crate::measure::Resources,
}

/// The sync filter of scenario 5: what a client like Element asks for.
const CLIENT_FILTER: &str = r#"{"room":{"timeline":{"limit":20},"state":{"lazy_load_members":true}}}"#;

/// Scenario 5: a user in `rooms` rooms of `room_size` members is offline
/// while `messages` arrive; then an initial and an incremental sync.
pub async fn catch_up(
    target: &Target,
    rooms: usize,
    room_size: usize,
    messages: u64,
) -> Result<CatchUp, String> {
    let people = register_users(target, room_size.max(2)).await?;
    let everyone: Vec<usize> = (0..people.len()).collect();
    let made = create_rooms(target, &people, vec![everyone; rooms], false).await?;
    let offline = &people[0];
    let path = Server::sync_path(None, 0, CLIENT_FILTER);
    let (before, _) = target
        .server
        .call_sized(reqwest::Method::GET, &path, Some(&offline.token), None)
        .await
        .map_err(|e| format!("initial sync: {e}"))?;
    let since = before["next_batch"].as_str().ok_or("no next_batch")?.to_owned();

    eprintln!("[{}] sending {messages} messages while the user is offline", target.label);
    let gate = Arc::new(Semaphore::new(64));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(usize::try_from(messages).unwrap_or(0));
    for id in 0..messages {
        let room = made[usize::try_from(id).unwrap_or(0) % made.len()].id.clone();
        // Everyone but the offline user (index 0) speaks.
        let sender = people[1 + usize::try_from(id).unwrap_or(0) % (people.len() - 1)].clone();
        let (server, gate, failed) = (target.server.clone(), gate.clone(), failed.clone());
        let txn = format!("{}catchup-{id}", target.run_id);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            if server.send(&sender, &room, &txn, id).await.is_err() {
                failed.fetch_add(1, Ordering::AcqRel);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }

    let sampler = Sampler::start(&target.watched);
    let initial_sync = measure_sync(&target.server, offline, None).await?;
    let incremental_sync = measure_sync(&target.server, offline, Some(&since)).await?;
    Ok(CatchUp {
        rooms: rooms as u64,
        room_size: room_size as u64,
        messages,
        messages_failed: failed.load(Ordering::Acquire),
        initial_sync,
        incremental_sync,
        resources: sampler.finish(),
    })
}

async fn measure_sync(server: &Server, user: &User, since: Option<&str>) -> Result<SyncMeasure, String> {
    let path = Server::sync_path(since, 0, CLIENT_FILTER);
    let started = Instant::now();
    let (body, bytes) = server
        .call_sized(reqwest::Method::GET, &path, Some(&user.token), None)
        .await
        .map_err(|e| format!("sync: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let joined = body["rooms"]["join"].as_object().cloned().unwrap_or_default();
    let timeline_events =
        joined.values().map(|room| room["timeline"]["events"].as_array().map_or(0, Vec::len) as u64).sum();
    Ok(SyncMeasure { seconds, bytes: bytes as u64, rooms: joined.len() as u64, timeline_events })
}

/// Scenario 6's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ColdStart {
    pub seconds_to_versions: f64,
    pub idle_rss_kib: u64,
}

/// Scenario 6: start the server with `command` (through `sh -c`), time it
/// to its first answered `/versions`, read its idle RSS, stop it.
pub async fn cold_start(server: &Server, command: &str, settle: Duration) -> Result<ColdStart, String> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id().ok_or("no pid")?;
    let deadline = Duration::from_secs(180);
    loop {
        if server.versions().await {
            break;
        }
        if started.elapsed() > deadline {
            return Err("the server did not answer /versions within 180 s".into());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited: {status}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds_to_versions = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let idle_rss_kib = rss_kib(pid).unwrap_or(0);
    // SIGTERM, so the server shuts down as it would in production.
    let _ = tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
    if tokio::time::timeout(Duration::from_secs(30), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    Ok(ColdStart { seconds_to_versions, idle_rss_kib })
}

/// A scenario's JSON for the results file.
pub fn record(scenario: &str, params: Value, outcome: impl Serialize) -> Value {
    json!({ "scenario": scenario, "params": params, "outcome": outcome })
}
