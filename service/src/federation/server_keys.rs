//! Signing keys of servers: this server's own key response, other
//! servers' keys fetched from them (or from the trusted notaries), checked
//! and cached, the X-Matrix check of inbound requests, and the answers of
//! this server as a notary.
//!
//! A fetched response counts only if it names the server asked about and
//! every key in `verify_keys` signed it. A key verifies signatures until
//! the response's `valid_until_ts`, but never longer than a week after it
//! was fetched (the spec's cap); an old key until its `expired_ts`. Keys
//! are kept in storage and in memory; a key not known makes at most one
//! fetch per server every [`REFETCH_AFTER`], so requests naming made-up
//! keys cannot make this server hammer another.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#retrieving-server-keys>.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName,
    api::federation::{
        authentication::XMatrix,
        discovery::{ServerSigningKeys, VerifyKey},
    },
    serde::Base64,
};
use serde_json::{Map, Value};
use tessera_core::ServerSigningKey;
use tessera_storage::{ServerKeyResponse, ServerKeyRow, Store};

use super::Remote;
use crate::{Error, Result, now_ms};

/// How long this server's own key response says it may be cached. Short,
/// so that a rotated key is picked up within a day.
pub const OWN_KEY_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest a fetched key is trusted past its fetching (the spec's
/// seven days).
const MAX_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// The least time between two fetches of one server's keys.
const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// The longest one fetch (the server, then the notaries) may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(30);

/// Servers kept in memory at most (keys, fetch times).
const MAX_SERVERS_REMEMBERED: usize = 10_000;

/// Why an inbound federation request's `X-Matrix` authorization failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestAuthError {
    #[error("the request is for {0}, not this server")]
    WrongDestination(OwnedServerName),
    #[error("the request claims to come from this server")]
    FromThisServer,
    #[error("no valid key {key} of {origin} is known")]
    UnknownKey { origin: OwnedServerName, key: String },
    #[error("the signature does not verify")]
    BadSignature,
    #[error("federation with {0} is not allowed by this server")]
    NotAllowed(OwnedServerName),
}

/// The server-key store. Cheap to clone.
#[derive(Clone)]
pub struct ServerKeys {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    remote: Arc<dyn Remote>,
    own: Arc<ServerSigningKey>,
    /// Servers asked for keys a server does not give itself.
    notaries: Vec<OwnedServerName>,
    /// The servers this one federates with.
    policy: super::ServerPolicy,
    /// Each server's keys, as in storage.
    known: Mutex<HashMap<OwnedServerName, Arc<Vec<ServerKeyRow>>>>,
    /// Per server: one fetch at a time, and when the last one started.
    fetches: Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
}

impl ServerKeys {
    pub fn new(
        store: Store,
        remote: Arc<dyn Remote>,
        own: Arc<ServerSigningKey>,
        notaries: Vec<OwnedServerName>,
        policy: super::ServerPolicy,
    ) -> Self {
        let inner = Inner {
            store,
            remote,
            own,
            notaries,
            policy,
            known: Mutex::default(),
            fetches: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    pub fn server_name(&self) -> &ServerName {
        self.inner.own.server_name()
    }

    /// This server's key response (`GET /_matrix/key/v2/server`), signed.
    pub fn own_key_response(&self) -> Result<CanonicalJsonObject> {
        let own = &self.inner.own;
        let valid_until =
            MilliSecondsSinceUnixEpoch::from_system_time(std::time::SystemTime::now() + OWN_KEY_VALIDITY)
                .ok_or_else(|| Error::internal("clock out of range"))?;
        let mut keys = ServerSigningKeys::new(own.server_name().clone(), valid_until);
        keys.verify_keys = BTreeMap::from([(own.key_id().clone(), VerifyKey::new(own.public_key()))]);
        let mut object: CanonicalJsonObject =
            serde_json::to_value(&keys).and_then(serde_json::from_value).map_err(Error::internal)?;
        object.remove("signatures");
        own.sign(&mut object).map_err(Error::internal)?;
        Ok(object)
    }

    /// The public key (unpadded base64) `key_id` of `server`, if it is
    /// valid at `at_ts`: known, or fetched now.
    pub async fn verify_key(&self, server: &ServerName, key_id: &str, at_ts: i64) -> Result<Option<String>> {
        let own = &self.inner.own;
        if server == own.server_name() {
            return Ok((own.key_id().as_str() == key_id).then(|| own.public_key().encode()));
        }
        if let Some(key) = self.known_key(server, key_id, at_ts).await? {
            return Ok(Some(key));
        }
        self.fetch(server).await?;
        self.known_key(server, key_id, at_ts).await
    }

    /// Checks an inbound request's `X-Matrix` authorization; returns the
    /// server it comes from.
    pub async fn authenticate<T: AsRef<[u8]>>(
        &self,
        auth: &XMatrix,
        request: &http::Request<T>,
    ) -> Result<Result<OwnedServerName, RequestAuthError>> {
        let us = self.server_name();
        if let Some(destination) = &auth.destination
            && destination != us
        {
            return Ok(Err(RequestAuthError::WrongDestination(destination.clone())));
        }
        if auth.origin == us {
            return Ok(Err(RequestAuthError::FromThisServer));
        }
        if !self.inner.policy.permits(&auth.origin) {
            return Ok(Err(RequestAuthError::NotAllowed(auth.origin.clone())));
        }
        let Some(key) = self.verify_key(&auth.origin, auth.key.as_str(), now_ms()).await? else {
            return Ok(Err(RequestAuthError::UnknownKey {
                origin: auth.origin.clone(),
                key: auth.key.to_string(),
            }));
        };
        let Ok(key) = Base64::parse(&key) else {
            return Ok(Err(RequestAuthError::BadSignature));
        };
        let keys = BTreeMap::from([(auth.key.to_string(), key)]);
        let map = BTreeMap::from([(auth.origin.to_string(), keys)]);
        Ok(match auth.verify_http_request(request, us, &map) {
            Ok(()) => Ok(auth.origin.clone()),
            Err(_) => Err(RequestAuthError::BadSignature),
        })
    }

    /// This server's answer as a notary for `server`: the server's key
    /// responses valid at least until `minimum_valid_until_ts` (fetched
    /// again if the stored one is not), each with this server's signature
    /// added. Empty when none can be had.
    pub async fn notary_responses(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: i64,
    ) -> Result<Vec<Value>> {
        if server == self.server_name() {
            return Ok(vec![Value::Object(
                self.own_key_response()?.into_iter().map(|(k, v)| (k, v.into())).collect(),
            )]);
        }
        let fresh = |stored: &Option<ServerKeyResponse>| {
            stored.as_ref().is_some_and(|r| r.valid_until_ts >= minimum_valid_until_ts.max(now_ms()))
        };
        let mut stored = self.inner.store.server_key_response(server).await?;
        if !fresh(&stored) {
            self.fetch(server).await?;
            stored = self.inner.store.server_key_response(server).await?;
        }
        let Some(stored) = stored else {
            return Ok(Vec::new());
        };
        if stored.valid_until_ts < minimum_valid_until_ts {
            return Ok(Vec::new());
        }
        let mut object: CanonicalJsonObject =
            serde_json::from_str(&stored.response_json).map_err(Error::internal)?;
        self.inner.own.sign(&mut object).map_err(Error::internal)?;
        Ok(vec![serde_json::to_value(object).map_err(Error::internal)?])
    }

    async fn known_key(&self, server: &ServerName, key_id: &str, at_ts: i64) -> Result<Option<String>> {
        let cached = self.inner.known.lock().expect("known keys").get(server).cloned();
        let keys = match cached {
            Some(keys) => keys,
            None => self.load(server).await?,
        };
        Ok(keys
            .iter()
            .find(|k| k.key_id == key_id && k.valid_until_ts >= at_ts)
            .map(|k| k.public_key.clone()))
    }

    async fn load(&self, server: &ServerName) -> Result<Arc<Vec<ServerKeyRow>>> {
        let keys = Arc::new(self.inner.store.server_signing_keys(server).await?);
        let mut known = self.inner.known.lock().expect("known keys");
        if known.len() >= MAX_SERVERS_REMEMBERED {
            // Bounded: names made up by unauthenticated requests cannot
            // grow it for ever; what is dropped is in storage.
            known.clear();
        }
        known.insert(server.to_owned(), keys.clone());
        Ok(keys)
    }

    /// Fetches the server's keys from it, else from the notaries, unless
    /// a fetch started less than [`REFETCH_AFTER`] ago. Failures are
    /// logged: the caller finds the key still unknown.
    async fn fetch(&self, server: &ServerName) -> Result<()> {
        match tokio::time::timeout(FETCH_DEADLINE, self.fetch_now(server)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::info!(%server, "key fetch timed out");
                Ok(())
            }
        }
    }

    async fn fetch_now(&self, server: &ServerName) -> Result<()> {
        let gate = {
            let mut fetches = self.inner.fetches.lock().expect("fetches");
            if fetches.len() >= MAX_SERVERS_REMEMBERED {
                fetches.clear();
            }
            fetches.entry(server.to_owned()).or_default().clone()
        };
        let mut last = gate.lock().await;
        if last.is_some_and(|started| started.elapsed() < REFETCH_AFTER) {
            return Ok(());
        }
        *last = Some(Instant::now());
        match self.inner.remote.server_keys(server).await {
            Ok(raw) => match checked_response(server, raw.json().get(), now_ms()) {
                Ok((keys, response)) => return self.keep(server, &keys, &response).await,
                Err(reason) => tracing::warn!(%server, reason, "key response refused"),
            },
            Err(e) => tracing::info!(%server, error = %e, "keys not fetched from the server"),
        }
        for notary in self.inner.notaries.iter().filter(|notary| *notary != server) {
            let responses = match self.inner.remote.notary_keys(notary, server).await {
                Ok(responses) => responses,
                Err(e) => {
                    tracing::info!(%server, %notary, error = %e, "keys not fetched from the notary");
                    continue;
                }
            };
            for raw in responses {
                match self.checked_notary_response(notary, server, raw.json().get()).await? {
                    Ok((keys, response)) => return self.keep(server, &keys, &response).await,
                    Err(reason) => tracing::warn!(%server, %notary, reason, "notary's key response refused"),
                }
            }
        }
        Ok(())
    }

    /// A notary's copy of a server's response: the server's own checks,
    /// and the notary's signature too.
    async fn checked_notary_response(
        &self,
        notary: &ServerName,
        server: &ServerName,
        json: &str,
    ) -> Result<std::result::Result<(Vec<ServerKeyRow>, ServerKeyResponse), String>> {
        let checked = match checked_response(server, json, now_ms()) {
            Ok(checked) => checked,
            Err(reason) => return Ok(Err(reason)),
        };
        let Ok(object) = serde_json::from_str::<Map<String, Value>>(json) else {
            return Ok(Err("not a JSON object".into()));
        };
        let signatures = signatures_by(&object, notary.as_str());
        for (key_id, signature) in signatures {
            let Some(key) = self.notary_key(notary, &key_id).await? else {
                continue;
            };
            if crate::keys::verify_signature(&object, &key, &signature).is_ok() {
                // The notary's signature is not part of what it serves again.
                let mut response = checked.1;
                response.response_json = without_signatures_of(&object, notary.as_str())?;
                return Ok(Ok((checked.0, response)));
            }
        }
        Ok(Err("not signed by the notary".into()))
    }

    /// A notary's key, known or fetched from the notary itself: never
    /// through the notaries (nor behind a fetch's lock), so that notaries
    /// vouching for each other cannot wait on one another.
    async fn notary_key(&self, notary: &ServerName, key_id: &str) -> Result<Option<String>> {
        if let Some(key) = self.known_key(notary, key_id, now_ms()).await? {
            return Ok(Some(key));
        }
        match self.inner.remote.server_keys(notary).await {
            Ok(raw) => match checked_response(notary, raw.json().get(), now_ms()) {
                Ok((keys, response)) => self.keep(notary, &keys, &response).await?,
                Err(reason) => tracing::warn!(%notary, reason, "notary's own key response refused"),
            },
            Err(e) => tracing::info!(%notary, error = %e, "notary's keys not fetched"),
        }
        self.known_key(notary, key_id, now_ms()).await
    }

    async fn keep(
        &self,
        server: &ServerName,
        keys: &[ServerKeyRow],
        response: &ServerKeyResponse,
    ) -> Result<()> {
        self.inner.store.store_server_keys(server, keys, response).await?;
        self.load(server).await?;
        Ok(())
    }
}

/// A key response checked as `server`'s: its keys with the times they may
/// be used until, and the response to store; or why it is refused.
fn checked_response(
    server: &ServerName,
    json: &str,
    now: i64,
) -> std::result::Result<(Vec<ServerKeyRow>, ServerKeyResponse), String> {
    let keys: ServerSigningKeys =
        serde_json::from_str(json).map_err(|e| format!("not a key response: {e}"))?;
    let object: Map<String, Value> = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    if keys.server_name != server {
        return Err(format!("the response is for {}", keys.server_name));
    }
    if keys.verify_keys.is_empty() {
        return Err("no verify_keys".into());
    }
    let signatures: HashMap<String, String> = signatures_by(&object, server.as_str()).into_iter().collect();
    for (key_id, key) in &keys.verify_keys {
        let signature =
            signatures.get(key_id.as_str()).ok_or_else(|| format!("not signed by its key {key_id}"))?;
        crate::keys::verify_signature(&object, &key.key.encode(), signature)
            .map_err(|()| format!("the signature of {key_id} does not verify"))?;
    }
    let valid_until_ts = i64::from(keys.valid_until_ts.get());
    let usable_until = valid_until_ts.min(now.saturating_add(MAX_VALIDITY_MS));
    let mut rows: Vec<ServerKeyRow> = keys
        .verify_keys
        .iter()
        .map(|(id, key)| ServerKeyRow {
            key_id: id.to_string(),
            public_key: key.key.encode(),
            valid_until_ts: usable_until,
        })
        .collect();
    rows.extend(keys.old_verify_keys.iter().map(|(id, key)| ServerKeyRow {
        key_id: id.to_string(),
        public_key: key.key.encode(),
        valid_until_ts: i64::from(key.expired_ts.get()),
    }));
    let response = ServerKeyResponse { response_json: json.to_owned(), valid_until_ts, fetched_ts: now };
    Ok((rows, response))
}

/// The signatures in the object by `entity`, by key ID.
fn signatures_by(object: &Map<String, Value>, entity: &str) -> Vec<(String, String)> {
    let Some(by_entity) = object.get("signatures").and_then(|s| s.get(entity)).and_then(Value::as_object)
    else {
        return Vec::new();
    };
    by_entity.iter().filter_map(|(id, sig)| Some((id.clone(), sig.as_str()?.to_owned()))).collect()
}

fn without_signatures_of(object: &Map<String, Value>, entity: &str) -> Result<String> {
    let mut object = object.clone();
    if let Some(signatures) = object.get_mut("signatures").and_then(Value::as_object_mut) {
        signatures.remove(entity);
    }
    serde_json::to_string(&object).map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use ruma::server_name;

    use super::*;

    fn signed_response(key: &ServerSigningKey, valid_until: u64) -> String {
        let mut object: CanonicalJsonObject = serde_json::from_value(serde_json::json!({
            "server_name": key.server_name(),
            "valid_until_ts": valid_until,
            "verify_keys": { key.key_id().as_str(): { "key": key.public_key().encode() } },
            "old_verify_keys": { "ed25519:old": { "key": "b2xk", "expired_ts": 1000 } },
        }))
        .expect("object");
        key.sign(&mut object).expect("signed");
        serde_json::to_string(&object).expect("json")
    }

    #[test]
    fn a_response_counts_only_signed_by_its_keys_and_for_its_server() {
        let name = server_name!("remote.test");
        let (key, _) = ServerSigningKey::generate(name.to_owned()).expect("key");
        let now = 1_000_000;
        let json = signed_response(&key, 2_000_000);
        let (rows, response) = checked_response(name, &json, now).expect("accepted");
        let current = rows.iter().find(|r| r.key_id == key.key_id().as_str()).expect("current key");
        assert_eq!(current.public_key, key.public_key().encode());
        assert_eq!(current.valid_until_ts, 2_000_000);
        assert_eq!(rows.iter().find(|r| r.key_id == "ed25519:old").expect("old key").valid_until_ts, 1000);
        assert_eq!(response.valid_until_ts, 2_000_000);

        // Validity capped at a week after fetching.
        let far = signed_response(&key, 10_000_000_000_000);
        let (rows, _) = checked_response(name, &far, now).expect("accepted");
        assert_eq!(rows[0].valid_until_ts.min(rows[1].valid_until_ts), 1000);
        assert!(rows.iter().any(|r| r.valid_until_ts == now + MAX_VALIDITY_MS));

        // Another server's response, or a changed one, is refused.
        assert!(checked_response(server_name!("other.test"), &json, now).is_err());
        let tampered = json.replace("2000000", "2000001");
        assert!(checked_response(name, &tampered, now).is_err());
        // Signed by another key than the one it lists.
        let (other, _) = ServerSigningKey::generate(name.to_owned()).expect("key");
        let mut object: Map<String, Value> =
            serde_json::from_str(&signed_response(&other, 2_000_000)).expect("json");
        object["verify_keys"] =
            serde_json::json!({ key.key_id().as_str(): { "key": key.public_key().encode() } });
        let mismatched = serde_json::to_string(&object).expect("json");
        assert!(checked_response(name, &mismatched, now).is_err());
    }
}
