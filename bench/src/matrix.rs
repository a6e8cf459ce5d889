//! The few Client-Server API calls the benchmark makes, over one shared
//! HTTP connection pool. Users are provisioned through shared-secret
//! registration (`/_synapse/admin/v1/register`), which Tessera and Synapse
//! both offer.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;

/// Why a request failed, by kind (the report counts errors by kind).
#[derive(Debug)]
pub enum CallError {
    /// The server answered with this HTTP status.
    Status(u16, String),
    /// No answer: connection refused or reset, timeout, bad body.
    Transport(String),
}

impl CallError {
    /// A short label for the error table: `http_429`, `transport`.
    pub fn kind(&self) -> String {
        match self {
            CallError::Status(status, _) => format!("http_{status}"),
            CallError::Transport(_) => "transport".to_owned(),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(status, body) => write!(f, "HTTP {status}: {body}"),
            CallError::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

pub type CallResult<T> = Result<T, CallError>;

/// A registered or logged-in user: its ID, access token and the token's
/// device.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
    /// Empty if the server did not say (only the key scenario needs it).
    pub device_id: String,
}

/// The target homeserver.
#[derive(Clone)]
pub struct Server {
    pub base: String,
    http: reqwest::Client,
}

impl Server {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(300))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Self { base: base.trim_end_matches('/').to_owned(), http }
    }

    /// One request; the JSON answer of a 2xx, else the error.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> CallResult<Value> {
        let (value, _) = self.call_sized(method, path, token, body).await?;
        Ok(value)
    }

    /// Like [`Server::call`], also returning the answer's size in bytes.
    pub async fn call_sized(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> CallResult<(Value, usize)> {
        let bytes = self.call_bytes(method, path, token, body).await?;
        let value =
            serde_json::from_slice(&bytes).map_err(|e| CallError::Transport(format!("bad JSON: {e}")))?;
        Ok((value, bytes.len()))
    }

    /// The raw body of a 2xx answer.
    pub async fn call_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> CallResult<Vec<u8>> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| CallError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| CallError::Transport(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(CallError::Status(
                status,
                String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            ));
        }
        Ok(bytes.to_vec())
    }

    /// Whether `/_matrix/client/versions` answers 200.
    pub async fn versions(&self) -> bool {
        self.call(reqwest::Method::GET, "/_matrix/client/versions", None, None).await.is_ok()
    }

    /// Registers `username` through shared-secret registration.
    pub async fn register(&self, secret: &str, username: &str, password: &str) -> CallResult<User> {
        let path = "/_synapse/admin/v1/register";
        let nonce = self.call(reqwest::Method::GET, path, None, None).await?;
        let nonce = nonce["nonce"].as_str().ok_or_else(|| CallError::Transport("no nonce".into()))?;
        let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes())
            .map_err(|e| CallError::Transport(format!("shared secret: {e}")))?;
        mac.update(format!("{nonce}\0{username}\0{password}\0notadmin").as_bytes());
        let body = json!({
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": false,
            "mac": hex::encode(mac.finalize().into_bytes()),
        });
        let registered = self.call(reqwest::Method::POST, path, None, Some(&body)).await?;
        session(&registered)
    }

    /// Logs `user` in with a password (`POST /login`): a new device.
    pub async fn login(&self, user: &User, password: &str) -> CallResult<User> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": user.id },
            "password": password,
            "initial_device_display_name": "tessera-bench",
        });
        let path = "/_matrix/client/v3/login";
        session(&self.call(reqwest::Method::POST, path, None, Some(&body)).await?)
    }

    /// Stores `filter` for `user` (`POST /user/{userId}/filter`), as Element
    /// does before its first sync; returns the filter's ID.
    pub async fn upload_filter(&self, user: &User, filter: &str) -> CallResult<String> {
        let body: Value =
            serde_json::from_str(filter).map_err(|e| CallError::Transport(format!("bad filter: {e}")))?;
        let path = format!("/_matrix/client/v3/user/{}/filter", encode(&user.id));
        let stored = self.call(reqwest::Method::POST, &path, Some(&user.token), Some(&body)).await?;
        stored["filter_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CallError::Transport("no filter_id".into()))
    }

    /// Creates a public room, end-to-end encrypted if `encrypted` (Megolm,
    /// as Element turns it on); returns its ID.
    pub async fn create_room(&self, creator: &User, encrypted: bool) -> CallResult<String> {
        let mut body = json!({ "preset": "public_chat" });
        if encrypted {
            body["initial_state"] = json!([{
                "type": "m.room.encryption",
                "state_key": "",
                "content": { "algorithm": "m.megolm.v1.aes-sha2" },
            }]);
        }
        let created = self
            .call(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(&creator.token), Some(&body))
            .await?;
        created["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CallError::Transport("no room_id".into()))
    }

    pub async fn join(&self, user: &User, room_id: &str) -> CallResult<()> {
        self.join_via(user, room_id, None).await
    }

    /// Joins, through server `via` when the room is on another server.
    pub async fn join_via(&self, user: &User, room_id: &str, via: Option<&str>) -> CallResult<()> {
        let mut path = format!("/_matrix/client/v3/join/{}", encode(room_id));
        if let Some(via) = via {
            path.push_str(&format!("?server_name={}", encode(via)));
        }
        self.call(reqwest::Method::POST, &path, Some(&user.token), Some(&json!({}))).await.map(drop)
    }

    /// The room's joined members (`GET /rooms/{roomId}/joined_members`).
    pub async fn joined_members(&self, user: &User, room_id: &str) -> CallResult<Vec<String>> {
        let path = format!("/_matrix/client/v3/rooms/{}/joined_members", encode(room_id));
        let answer = self.call(reqwest::Method::GET, &path, Some(&user.token), None).await?;
        let joined = answer["joined"].as_object().ok_or_else(|| CallError::Transport("no joined".into()))?;
        Ok(joined.keys().cloned().collect())
    }

    /// Sends a benchmark message carrying `id`; returns the event ID.
    pub async fn send(&self, user: &User, room_id: &str, txn: &str, id: u64) -> CallResult<String> {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(room_id));
        let body = json!({ "msgtype": "m.text", "body": format!("bench message {id}"), BENCH_ID: id });
        let sent = self.call(reqwest::Method::PUT, &path, Some(&user.token), Some(&body)).await?;
        sent["event_id"].as_str().map(str::to_owned).ok_or_else(|| CallError::Transport("no event_id".into()))
    }

    /// Tessera's WebSocket sync channel from `since` with `filter`.
    pub fn sync_ws_url(&self, since: &str, filter: &str, token: &str) -> String {
        format!(
            "{}/_matrix/client/unstable/org.tessera.sync/ws?since={}&filter={}&access_token={}",
            self.base.replacen("http", "ws", 1),
            encode(since),
            encode(filter),
            encode(token),
        )
    }

    /// The `/sync` path for `since` (none: initial), a long-poll `timeout`
    /// and a `filter` (a stored filter's ID, or a filter inline).
    pub fn sync_path(since: Option<&str>, timeout_ms: u64, filter: &str) -> String {
        let since = since.map(|s| format!("&since={}", encode(s))).unwrap_or_default();
        format!("/_matrix/client/v3/sync?timeout={timeout_ms}&filter={}{since}", encode(filter))
    }
}

/// The user of a registration or login answer.
fn session(answer: &Value) -> CallResult<User> {
    let field = |key: &str| {
        answer[key].as_str().map(str::to_owned).ok_or_else(|| CallError::Transport(format!("no {key}")))
    };
    let device_id = answer["device_id"].as_str().unwrap_or_default().to_owned();
    Ok(User { id: field("user_id")?, token: field("access_token")?, device_id })
}

/// The content key that carries a benchmark message's number.
pub const BENCH_ID: &str = "org.tessera.bench.id";

/// The parts of a sync response the benchmark reads.
#[derive(Deserialize)]
pub struct SyncBody {
    pub next_batch: String,
    #[serde(default)]
    pub rooms: SyncRooms,
}

#[derive(Default, Deserialize)]
pub struct SyncRooms {
    #[serde(default)]
    pub join: std::collections::HashMap<String, SyncJoined>,
}

#[derive(Deserialize)]
pub struct SyncJoined {
    #[serde(default)]
    pub timeline: SyncTimeline,
}

#[derive(Default, Deserialize)]
pub struct SyncTimeline {
    #[serde(default)]
    pub events: Vec<SyncEvent>,
}

#[derive(Deserialize)]
pub struct SyncEvent {
    #[serde(default)]
    pub content: SyncContent,
}

#[derive(Default, Deserialize)]
pub struct SyncContent {
    #[serde(rename = "org.tessera.bench.id")]
    pub bench_id: Option<u64>,
}

impl SyncBody {
    /// The benchmark message numbers in the response's timelines.
    pub fn bench_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.rooms
            .join
            .values()
            .flat_map(|room| room.timeline.events.iter().filter_map(|e| e.content.bench_id))
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_escapes_all_but_unreserved_characters() {
        assert_eq!(encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(encode("!room:x y/{\"é\"}"), "%21room%3Ax%20y%2F%7B%22%C3%A9%22%7D");
    }

    #[test]
    fn sync_path_carries_the_token_and_the_encoded_filter() {
        assert_eq!(
            Server::sync_path(Some("s1_2"), 30_000, "{\"a\":1}"),
            "/_matrix/client/v3/sync?timeout=30000&filter=%7B%22a%22%3A1%7D&since=s1_2"
        );
        assert_eq!(Server::sync_path(None, 0, "{}"), "/_matrix/client/v3/sync?timeout=0&filter=%7B%7D");
    }
}
