//! Scenario 7: the key API calls a client makes before it first sends into
//! an encrypted room: `POST /keys/query` for the members' devices, then
//! `POST /keys/claim` of a one-time key for each device it has no Olm
//! session with. Measured for one user with many devices and for every
//! member of a large room, one request at a time; setup (users, logins,
//! key uploads, the room) is not measured.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3keysquery>,
//! <https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3keysclaim>.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Instant,
};

use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use crate::{
    matrix::User,
    measure::{Percentiles, Resources, Sampler, micros},
    scenarios::{PASSWORD, Target, create_rooms, register_users},
};

/// The one-time key algorithm clients upload and claim.
const SIGNED_CURVE25519: &str = "signed_curve25519";

/// One measured operation: the same request again and again, one at a
/// time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Operation {
    /// Users and devices each request names.
    pub users: u64,
    pub devices: u64,
    /// The first request, not in `latency`: what a client meets once the
    /// keys were just uploaded (caches cold, statements not yet prepared).
    pub first_request_ms: f64,
    /// The requests after the first; `latency.count` is how many answered.
    pub latency: Percentiles,
    /// Answers per second of the measured phase.
    pub requests_per_second: f64,
    pub server_cpu_seconds_per_request: f64,
    /// PostgreSQL's share (0 on SQLite).
    pub postgres_cpu_seconds_per_request: f64,
    /// Size of an answer (the last).
    pub response_bytes: u64,
    /// Answers without every asked device's identity keys (query) or
    /// without a one-time key for every asked device (claim).
    pub incomplete: u64,
    /// Failed requests by kind (`http_500`, `transport`).
    pub errors: BTreeMap<String, u64>,
    pub resources: Resources,
}

/// Scenario 7's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeysOutcome {
    /// `/keys/query` for every device of the user with many devices.
    pub query_user: Operation,
    /// `/keys/claim` of one one-time key for each of that user's devices.
    pub claim_user: Operation,
    /// `/keys/query` for every member of the room.
    pub query_room: Operation,
    /// `/keys/claim` for the device of every other member of the room.
    pub claim_room: Operation,
    pub setup_seconds: f64,
}

impl KeysOutcome {
    /// Whether every request answered, with every key asked for.
    pub fn accounted(&self) -> bool {
        [&self.query_user, &self.claim_user, &self.query_room, &self.claim_room]
            .iter()
            .all(|op| op.incomplete == 0 && op.errors.is_empty())
    }
}

/// Scenario 7: a user with `devices` devices and a room of `members`, each
/// member with one device; every device uploads its identity keys and one
/// more one-time key than `claim_rounds`. Then, as the room's first member:
/// query the user's devices `query_rounds` times, claim a key for each of
/// them `claim_rounds` times, and the same for the room's members.
pub async fn keys(
    target: &Target,
    devices: usize,
    members: usize,
    query_rounds: usize,
    claim_rounds: usize,
) -> Result<KeysOutcome, String> {
    let started = Instant::now();
    let mut people = register_users(target, members.max(2) + 1).await?;
    let many = people.pop().ok_or("no users")?;
    let mut sessions = vec![many.clone()];
    sessions.extend(login_devices(target, &many, devices.max(1) - 1).await?);
    let everyone: Vec<usize> = (0..people.len()).collect();
    let room = create_rooms(target, &people, vec![everyone], true).await?;
    let room_id = &room.first().ok_or("no room")?.id;

    let uploaders: Vec<User> = sessions.iter().chain(&people).cloned().collect();
    upload_all(target, &uploaders, claim_rounds + 1).await?;
    let setup_seconds = started.elapsed().as_secs_f64();

    // The client: the room's first member. It reads the member list from
    // the server, as a client does, and never claims for its own device.
    let client = &people[0];
    let joined = target.server.joined_members(client, room_id).await.map_err(|e| format!("members: {e}"))?;
    if joined.len() != people.len() {
        return Err(format!("the room has {} members, not {}", joined.len(), people.len()));
    }
    let many_devices: Vec<&User> = sessions.iter().collect();
    let others: Vec<&User> = people.iter().skip(1).collect();
    let room_devices: Vec<&User> = people.iter().collect();
    let mut outcome = KeysOutcome { setup_seconds, ..KeysOutcome::default() };
    let rounds = [
        ("query one user's devices", Ask::Query(&many_devices), query_rounds, &mut outcome.query_user),
        ("claim one user's devices", Ask::Claim(&many_devices), claim_rounds, &mut outcome.claim_user),
        ("query the room's members", Ask::Query(&room_devices), query_rounds, &mut outcome.query_room),
        ("claim the room's members", Ask::Claim(&others), claim_rounds, &mut outcome.claim_room),
    ];
    for (name, ask, count, into) in rounds {
        *into = measure(target, client, &ask, count).await;
        eprintln!(
            "[{}] {name}: p50 {:.1} ms, p99 {:.1} ms, {:.1}/s, server CPU {:.1} ms per request",
            target.label,
            into.latency.p50_ms,
            into.latency.p99_ms,
            into.requests_per_second,
            into.server_cpu_seconds_per_request * 1000.0
        );
    }
    Ok(outcome)
}

/// Logs `user` in `count` times (a few at a time): a device each.
async fn login_devices(target: &Target, user: &User, count: usize) -> Result<Vec<User>, String> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(8));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (server, gate, user) = (target.server.clone(), gate.clone(), user.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                server.login(&user, PASSWORD).await.map_err(|e| format!("login: {e}"))
            })
        })
        .collect();
    let mut sessions = Vec::with_capacity(count);
    for task in tasks {
        sessions.push(task.await.map_err(|e| e.to_string())??);
    }
    eprintln!("[{}] logged in {count} more devices in {:.1}s", target.label, started.elapsed().as_secs_f64());
    Ok(sessions)
}

/// Uploads every device's identity keys and `one_time_keys` signed
/// one-time keys, one request per device (a few at a time), and checks the
/// server counts them all.
async fn upload_all(target: &Target, devices: &[User], one_time_keys: usize) -> Result<(), String> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(8));
    let mut tasks = Vec::with_capacity(devices.len());
    for (n, device) in devices.iter().enumerate() {
        if device.device_id.is_empty() {
            return Err(format!("the server gave {} no device ID", device.id));
        }
        let (server, gate, device) = (target.server.clone(), gate.clone(), device.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let body = upload_body(&device, n as u64, one_time_keys);
            let path = "/_matrix/client/v3/keys/upload";
            let answer = server
                .call(reqwest::Method::POST, path, Some(&device.token), Some(&body))
                .await
                .map_err(|e| format!("keys/upload: {e}"))?;
            let counted = answer["one_time_key_counts"][SIGNED_CURVE25519].as_u64().unwrap_or(0);
            match counted == one_time_keys as u64 {
                true => Ok(()),
                false => Err(format!("keys/upload: {counted} one-time keys counted of {one_time_keys}")),
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    eprintln!(
        "[{}] uploaded the keys of {} devices in {:.1}s",
        target.label,
        devices.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What a request asks for: every device of these sessions.
enum Ask<'a> {
    Query(&'a [&'a User]),
    Claim(&'a [&'a User]),
}

impl Ask<'_> {
    fn devices(&self) -> &[&User] {
        match self {
            Ask::Query(devices) | Ask::Claim(devices) => devices,
        }
    }

    fn path(&self) -> &'static str {
        match self {
            Ask::Query(_) => "/_matrix/client/v3/keys/query",
            Ask::Claim(_) => "/_matrix/client/v3/keys/claim",
        }
    }

    /// The request body: for a query every device of each user (an empty
    /// list), as a client asks the first time; for a claim one key per device.
    fn body(&self) -> Value {
        match self {
            Ask::Query(devices) => {
                let users: Map<String, Value> = devices.iter().map(|d| (d.id.clone(), json!([]))).collect();
                json!({ "device_keys": users })
            }
            Ask::Claim(devices) => {
                let mut users = Map::new();
                for device in devices.iter() {
                    let wanted = users.entry(device.id.clone()).or_insert_with(|| json!({}));
                    wanted[&device.device_id] = json!(SIGNED_CURVE25519);
                }
                json!({ "one_time_keys": users })
            }
        }
    }

    /// Whether the answer holds every asked device's identity keys (query)
    /// or a one-time key for every asked device (claim), and no failures.
    fn complete(&self, answer: &Value) -> bool {
        let failures = answer["failures"].as_object().is_some_and(|f| !f.is_empty());
        !failures
            && self.devices().iter().all(|d| match self {
                Ask::Query(_) => answer["device_keys"][&d.id][&d.device_id]["keys"].is_object(),
                Ask::Claim(_) => answer["one_time_keys"][&d.id][&d.device_id]
                    .as_object()
                    .is_some_and(|keys| keys.keys().any(|id| id.starts_with("signed_curve25519:"))),
            })
    }
}

/// One first request, then `count` more timed one at a time while the
/// server's CPU is read. Answers are checked after the timed phase.
async fn measure(target: &Target, client: &User, ask: &Ask<'_>, count: usize) -> Operation {
    let body = ask.body();
    let users: BTreeSet<&str> = ask.devices().iter().map(|d| d.id.as_str()).collect();
    let mut op =
        Operation { users: users.len() as u64, devices: ask.devices().len() as u64, ..Operation::default() };
    let send =
        || target.server.call_bytes(reqwest::Method::POST, ask.path(), Some(&client.token), Some(&body));
    let mut answers = Vec::with_capacity(count + 1);
    let first = Instant::now();
    answers.push(send().await);
    op.first_request_ms = first.elapsed().as_secs_f64() * 1000.0;

    let sampler = Sampler::start(&target.watched);
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let answer = send().await;
        if answer.is_ok() {
            latencies.push(micros(started.elapsed()));
        }
        answers.push(answer);
    }
    op.resources = sampler.finish();

    let per_request = |seconds: f64| seconds / count.max(1) as f64;
    op.server_cpu_seconds_per_request = per_request(op.resources.server_cpu_seconds);
    op.postgres_cpu_seconds_per_request = per_request(op.resources.postgres_cpu_seconds);
    op.requests_per_second = latencies.len() as f64 / op.resources.seconds.max(f64::EPSILON);
    op.latency = Percentiles::of(latencies);
    for answer in answers {
        match answer {
            Ok(bytes) => {
                op.response_bytes = bytes.len() as u64;
                let complete = serde_json::from_slice::<Value>(&bytes).is_ok_and(|a| ask.complete(&a));
                op.incomplete += u64::from(!complete);
            }
            Err(e) => *op.errors.entry(e.kind()).or_default() += 1,
        }
    }
    op
}

/// The body of a device's `/keys/upload`: its identity keys and
/// `one_time_keys` signed curve25519 keys, all signed with its ed25519 key
/// (the `n`th device's, made from `n`), as a client uploads them.
fn upload_body(device: &User, n: u64, one_time_keys: usize) -> Value {
    let signing = signing_key(n);
    let (user, id) = (device.id.as_str(), device.device_id.as_str());
    let mut identity = json!({
        "user_id": user,
        "device_id": id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{id}"): curve25519_key(n, 0),
            format!("ed25519:{id}"): STANDARD_NO_PAD.encode(signing.verifying_key().to_bytes()),
        },
    });
    sign(&mut identity, user, id, &signing);
    let one_time: Map<String, Value> = (1..=one_time_keys as u64)
        .map(|k| {
            let mut key = json!({ "key": curve25519_key(n, k) });
            sign(&mut key, user, id, &signing);
            (format!("{SIGNED_CURVE25519}:AAAA{k:05}"), key)
        })
        .collect();
    json!({ "device_keys": identity, "one_time_keys": one_time })
}

/// The `n`th device's ed25519 key, the same in every run.
fn signing_key(n: u64) -> SigningKey {
    let mut seed = [0x5e_u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// A curve25519 public key for the `n`th device, `k`th key: 32 distinct
/// bytes. Servers store these without looking inside, so they need not
/// be real keys.
fn curve25519_key(n: u64, k: u64) -> String {
    let mut bytes = [0xc2_u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes[8..16].copy_from_slice(&k.to_le_bytes());
    STANDARD_NO_PAD.encode(bytes)
}

/// Adds the device's signature of `object` under `signatures`. A signature
/// covers the canonical JSON of the object without `signatures` (which it
/// has not yet): serde_json's compact text of these objects, whose maps
/// are sorted (no `preserve_order`) and which hold only strings.
fn sign(object: &mut Value, user: &str, device: &str, key: &SigningKey) {
    let signature = key.sign(object.to_string().as_bytes());
    object["signatures"] =
        json!({ user: { format!("ed25519:{device}"): STANDARD_NO_PAD.encode(signature.to_bytes()) } });
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier as _};

    use super::*;

    fn device(user: &str, device_id: &str) -> User {
        User { id: user.into(), token: String::new(), device_id: device_id.into() }
    }

    #[test]
    fn uploaded_keys_are_signed_over_their_canonical_json() {
        let body = upload_body(&device("@a:x", "DEV"), 3, 2);
        let keys = &body["device_keys"];
        let canonical = format!(
            r#"{{"algorithms":["m.olm.v1.curve25519-aes-sha2","m.megolm.v1.aes-sha2"],"device_id":"DEV","keys":{{"curve25519:DEV":"{}","ed25519:DEV":"{}"}},"user_id":"@a:x"}}"#,
            keys["keys"]["curve25519:DEV"].as_str().unwrap(),
            keys["keys"]["ed25519:DEV"].as_str().unwrap(),
        );
        let signature = STANDARD_NO_PAD.decode(keys["signatures"]["@a:x"]["ed25519:DEV"].as_str().unwrap());
        let signature = Signature::from_slice(&signature.unwrap()).unwrap();
        assert!(signing_key(3).verifying_key().verify(canonical.as_bytes(), &signature).is_ok());

        let one_time = body["one_time_keys"].as_object().unwrap();
        assert_eq!(one_time.len(), 2);
        assert!(one_time["signed_curve25519:AAAA00001"]["signatures"]["@a:x"]["ed25519:DEV"].is_string());
        assert_ne!(curve25519_key(3, 1), curve25519_key(3, 2));
    }

    #[test]
    fn answers_are_complete_only_with_every_device() {
        let (a, b) = (device("@a:x", "A1"), device("@b:x", "B1"));
        let devices = [&a, &b];
        let claim = Ask::Claim(&devices);
        assert_eq!(
            claim.body(),
            json!({ "one_time_keys": { "@a:x": { "A1": "signed_curve25519" }, "@b:x": { "B1": "signed_curve25519" } } })
        );
        let key = json!({ "signed_curve25519:AAAA1": { "key": "k" } });
        let both =
            json!({ "one_time_keys": { "@a:x": { "A1": key }, "@b:x": { "B1": key } }, "failures": {} });
        assert!(claim.complete(&both));
        assert!(!claim.complete(&json!({ "one_time_keys": { "@a:x": { "A1": key } } })));

        let query = Ask::Query(&devices);
        assert_eq!(query.body(), json!({ "device_keys": { "@a:x": [], "@b:x": [] } }));
        let keys = json!({ "keys": {} });
        assert!(
            query.complete(&json!({ "device_keys": { "@a:x": { "A1": keys }, "@b:x": { "B1": keys } } }))
        );
        let failed = json!({ "device_keys": { "@a:x": { "A1": keys }, "@b:x": { "B1": keys } },
                             "failures": { "y": {} } });
        assert!(!query.complete(&failed));
    }
}
