//! The bad-input sweep (issue 23): every Client-Server route of the spec,
//! and the few non-spec routes Tessera serves, gets malformed bodies, wrong
//! field types, bad path segments and bad query values. Whatever it answers
//! must not be a server error: any 5xx, dropped connection or missing answer
//! fails the test, all of them listed at once. Other statuses are not
//! checked here; specific refusals have their own tests.
//!
//! The routes come from `sweep/routes.json`, generated from the spec's
//! OpenAPI data by `sweep/gen_routes.py` (see its header to regenerate) and
//! committed, so the test needs no spec checkout. The bad inputs are in
//! `sweep/inputs.rs`; `sweep/valid.rs` holds valid bodies, carried by the
//! requests that vary the path or query and varied inside themselves; the
//! requests go out through `sweep/raw.rs`, byte for byte.
//!
//! Order: everything but what takes away the sweep's own room, alias and
//! session; then reads, as A and as B, of what the accepted writes stored;
//! then the deletions and leaves; then logout and deactivation, each on a
//! fresh session of B's.

mod inputs;
mod raw;
mod routes;
mod valid;

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt, stream};
use serde_json::json;

use crate::{
    both_backends,
    harness::{Backend, TestClient, TestServer, encode},
};
use raw::Outcome;
use routes::{Route, body_fields};

both_backends!(no_route_answers_bad_input_with_a_server_error);

/// Requests in flight at once: enough to finish in seconds, few enough
/// for two cores.
const CONCURRENCY: usize = 8;

/// Valid values to put in paths and queries, from the set-up.
struct Ids {
    user: String,
    device: String,
    bob_device: String,
    room: String,
    event: String,
    filter: String,
    now_ms: u64,
}

/// One request to send and how to name it in the report.
struct Probe {
    method: String,
    template: String,
    variant: String,
    target: String,
    body: Option<Vec<u8>>,
}

static TXN: AtomicU64 = AtomicU64::new(0);

/// A valid, percent-encoded value for path parameter `name` of `path`.
fn path_value(path: &str, name: &str, ids: &Ids) -> String {
    let value = match name {
        "userId" => ids.user.clone(),
        "roomId" | "roomIdOrAlias" => ids.room.clone(),
        "roomAlias" => "#sweep:tessera.test".into(),
        "eventId" => ids.event.clone(),
        "deviceId" => ids.device.clone(),
        "filterId" => ids.filter.clone(),
        "eventType" if path.contains("/state/") => "m.room.topic".into(),
        "eventType" => "m.room.message".into(),
        "stateKey" => String::new(),
        "txnId" => format!("sweep{}", TXN.fetch_add(1, Ordering::Relaxed)),
        "type" => "m.sweep".into(),
        "keyName" => "displayname".into(),
        "kind" => "content".into(),
        "ruleId" => "sweep".into(),
        "receiptType" => "m.read".into(),
        "relType" => "m.annotation".into(),
        "tag" => "u.sweep".into(),
        "serverName" => "tessera.test".into(),
        "version" => "1".into(),
        "protocol" => "irc".into(),
        _ => "x".into(),
    };
    encode(&value).replace('$', "%24")
}

/// Query values every request of a route carries unless the parameter is
/// the one being varied: `timeout=0` keeps the long-polls short, the rest
/// are required ones.
fn query_baseline(name: &str, ids: &Ids) -> Option<String> {
    match name {
        "timeout" | "timeout_ms" => Some("0".into()),
        "dir" => Some("b".into()),
        "ts" => Some(ids.now_ms.to_string()),
        "version" => Some("1".into()),
        _ => None,
    }
}

/// Every request the sweep sends to `route`.
fn probes(route: &Route, ids: &Ids) -> Vec<Probe> {
    let target = |bad_param: Option<(&str, &str)>, bad_query: Option<(&str, &str)>| {
        let mut path = route.path.clone();
        for name in &route.path_params {
            let value = match bad_param {
                Some((bad, value)) if bad == name => value.to_owned(),
                _ => path_value(&route.path, name, ids),
            };
            path = path.replace(&format!("{{{name}}}"), &value);
        }
        let mut query = Vec::new();
        for param in &route.query {
            let value = match bad_query {
                Some((bad, value)) if bad == param.name => Some(value.to_owned()),
                _ => query_baseline(&param.name, ids),
            };
            if let Some(value) = value {
                query.push(format!("{}={value}", param.name));
            }
        }
        if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) }
    };
    // Requests varying the path or query carry a body that is no trouble.
    let valid_body = valid::valid_body(&route.method, &route.path, ids);
    let plain_body = match &valid_body {
        Some(body) => Some(serde_json::to_vec(body).expect("a value serialises")),
        None => (route.method != "GET").then(|| b"{}".to_vec()),
    };
    let probe = |variant: String, target: String, body: Option<Vec<u8>>| Probe {
        method: route.method.clone(),
        template: route.path.clone(),
        variant,
        target,
        body,
    };

    let mut probes = vec![probe("baseline".into(), target(None, None), plain_body.clone())];
    // GETs too: a body they do not expect must not upset them either.
    for (name, text) in inputs::bodies() {
        probes.push(probe(format!("body: {name}"), target(None, None), Some(text.into_bytes())));
    }
    for field in body_fields(route, valid_body.as_ref()) {
        let key = serde_json::to_string(&field.name).expect("a string serialises");
        for (name, value) in inputs::field_values(&field.name, &field.types) {
            let body = format!("{{{key}:{value}}}").into_bytes();
            probes.push(probe(format!("field `{}`: {name}", field.name), target(None, None), Some(body)));
        }
    }
    for (name, text) in valid_body.as_ref().map(valid::in_context_variants).unwrap_or_default() {
        probes.push(probe(name, target(None, None), Some(text.into_bytes())));
    }
    for param in &route.path_params {
        for (name, value) in inputs::path_values(param) {
            let target = target(Some((param, &value)), None);
            probes.push(probe(format!("path `{param}`: {name}"), target, plain_body.clone()));
        }
    }
    for param in &route.query {
        for (name, value) in inputs::query_values(&param.name) {
            let target = target(None, Some((&param.name, &value)));
            probes.push(probe(format!("query `{}`: {name}", param.name), target, plain_body.clone()));
        }
    }
    probes
}

/// Routes that end the session or the account: sent last, each request
/// on a session of its own (B's, logged in afresh).
fn ends_session(route: &Route) -> bool {
    route.method == "POST"
        && ["/logout", "/logout/all", "/account/deactivate"].iter().any(|end| route.path.ends_with(end))
}

/// Routes that take away what the others use (the room, the alias, the
/// push rule, the tag): sent after the others.
fn takes_away(route: &Route) -> bool {
    route.method == "DELETE" || route.path.ends_with("/leave") || route.path.ends_with("/forget")
}

/// A failure line for the report, or `None` for an acceptable answer.
fn failure(probe: &Probe, outcome: &Outcome) -> Option<String> {
    let what = match outcome {
        Outcome::Answered { status, .. } if *status < 500 => return None,
        Outcome::Answered { status, body } => {
            let excerpt: String = body.chars().take(160).collect();
            format!("{status} {excerpt}")
        }
        Outcome::Dropped(why) => format!("no response: {why}"),
        Outcome::Unanswered => "no response in time".into(),
    };
    Some(format!("{} {} [{}] -> {what}", probe.method, probe.template, probe.variant))
}

/// What the sweep saw: the failures, and how many answers of each status
/// class (printed, to show the requests got past routing and auth).
#[derive(Default)]
struct Tally {
    failures: Vec<String>,
    by_class: std::collections::BTreeMap<String, usize>,
}

impl Tally {
    fn record(&mut self, probe: &Probe, outcome: &Outcome) {
        let class = match outcome {
            Outcome::Answered { status: 404, .. } => "404".to_owned(),
            Outcome::Answered { status, .. } => format!("{}xx", status / 100),
            Outcome::Dropped(_) | Outcome::Unanswered => "no answer".to_owned(),
        };
        *self.by_class.entry(class).or_default() += 1;
        self.failures.extend(failure(probe, outcome));
    }
}

/// Sends `probes` with `token`, [`CONCURRENCY`] at a time.
async fn sweep(addr: &str, token: &str, probes: Vec<Probe>, tally: &mut Tally) {
    let mut answers = stream::iter(probes)
        .map(|probe| async move {
            let outcome = raw::send(addr, &probe.method, &probe.target, token, probe.body.as_deref()).await;
            (probe, outcome)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((probe, outcome)) = answers.next().await {
        tally.record(&probe, &outcome);
    }
}

/// Registers A and B, and gives A a room (B invited) with a message, an
/// alias, a filter and a push rule for the path values to point at.
async fn set_up(server: &TestServer) -> (TestClient, TestClient, Ids) {
    let alice = server.register("sweep_a", "sweep-password").await;
    let bob = server.register("sweep_b", "sweep-password").await;
    let room = alice.create_room(json!({ "room_alias_name": "sweep", "invite": [valid::BOB] })).await;
    let event = alice.send_text(&room, "a message to point at").await;
    let user = alice.user_id.clone().expect("registered");
    let filter = alice.post(&format!("/_matrix/client/v3/user/{user}/filter"), json!({})).await.ok();
    alice
        .put(
            "/_matrix/client/v3/pushrules/global/content/sweep",
            json!({ "pattern": "sweep", "actions": ["notify"] }),
        )
        .await
        .ok();
    let ids = Ids {
        device: alice.device_id.clone().expect("registered"),
        bob_device: bob.device_id.clone().expect("registered"),
        user,
        room,
        event,
        filter: filter["filter_id"].as_str().expect("filter_id").to_owned(),
        now_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    (alice, bob, ids)
}

/// Reads of what the sweep's accepted writes stored (events, state,
/// account data, to-device messages for B, profile, presence): a value
/// the server took must not break the reads that return it.
fn read_back(ids: &Ids, reader: &str) -> Vec<Probe> {
    let (user, room, event) = (encode(&ids.user), encode(&ids.room), ids.event.replace('$', "%24"));
    [
        "/_matrix/client/v3/sync?timeout=0".to_owned(),
        format!("/_matrix/client/v3/sync?timeout=0&filter={}", ids.filter),
        format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1000"),
        format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=1000"),
        format!("/_matrix/client/v3/rooms/{room}/state"),
        format!("/_matrix/client/v3/rooms/{room}/members"),
        format!("/_matrix/client/v3/rooms/{room}/joined_members"),
        format!("/_matrix/client/v3/rooms/{room}/context/{event}?limit=100"),
        format!("/_matrix/client/v1/rooms/{room}/relations/{event}"),
        format!("/_matrix/client/v1/rooms/{room}/threads"),
        format!("/_matrix/client/v1/rooms/{room}/hierarchy"),
        format!("/_matrix/client/v3/user/{user}/account_data/m.sweep"),
        format!("/_matrix/client/v3/user/{user}/rooms/{room}/account_data/m.sweep"),
        format!("/_matrix/client/v3/user/{user}/rooms/{room}/tags"),
        format!("/_matrix/client/v3/profile/{user}"),
        format!("/_matrix/client/v3/presence/{user}/status"),
        "/_matrix/client/v3/devices".to_owned(),
        "/_matrix/client/v3/pushrules/".to_owned(),
        "/_matrix/client/v3/notifications".to_owned(),
        "/_matrix/client/v3/joined_rooms".to_owned(),
        "/_matrix/client/v3/publicRooms".to_owned(),
        "/_matrix/client/v3/directory/room/%23sweep%3Atessera.test".to_owned(),
    ]
    .into_iter()
    .map(|target| Probe {
        method: "GET".into(),
        template: target.split('?').next().unwrap_or_default().to_owned(),
        variant: format!("read-back as {reader}, after the sweep"),
        target,
        body: None,
    })
    .collect()
}

async fn no_route_answers_bad_input_with_a_server_error(backend: Backend) {
    let server =
        TestServer::start_with(backend, |c| c.registration_shared_secret = Some("sweep".into())).await;
    let (alice, bob, ids) = set_up(&server).await;
    let token = alice.token.clone().expect("registered");
    let addr = server.base.trim_start_matches("http://").to_owned();
    let routes = routes::routes();

    let (mut first, mut then, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for route in &routes {
        let probes = probes(route, &ids);
        if ends_session(route) {
            last.extend(probes);
        } else if takes_away(route) {
            then.extend(probes);
        } else {
            first.extend(probes);
        }
    }
    // Deactivation last of all: should it ever succeed, B could not log in.
    last.sort_by_key(|probe| probe.template.ends_with("/deactivate"));
    let total = first.len() + then.len() + last.len() + 2 * read_back(&ids, "A").len();
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    sweep(&addr, &token, first, &mut tally).await;
    sweep(&addr, &token, read_back(&ids, "A"), &mut tally).await;
    sweep(&addr, &bob.token.clone().expect("registered"), read_back(&ids, "B"), &mut tally).await;
    sweep(&addr, &token, then, &mut tally).await;
    // Nothing so far may have ended A's session: past that point the
    // sweep would have tested only the token check.
    alice.get("/_matrix/client/v3/account/whoami").await.ok();
    for probe in last {
        let mut bob = server.client();
        bob.login("sweep_b", "sweep-password").await.ok();
        sweep(&addr, &bob.token.expect("logged in"), vec![probe], &mut tally).await;
    }
    eprintln!(
        "{backend:?}: {total} requests to {} routes in {:?}: {:?}",
        routes.len(),
        started.elapsed(),
        tally.by_class
    );

    let mut failures = tally.failures;
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {total} requests got a server error or no answer:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
