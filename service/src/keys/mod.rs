//! End-to-end encryption keys: `POST /keys/upload`,
//! `/keys/query`, `/keys/claim`, `GET /keys/changes`, the key counts
//! `/sync` reports, and cross-signing (`cross_signing`). Remote users
//! are asked of their servers (`federation::Remote`).
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#end-to-end-encryption>.

mod counts;
mod cross_signing;
mod device_lists;
mod federated;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::task::JoinSet;

use ruma::{
    CanonicalJsonValue, DeviceId, OwnedDeviceId, OwnedOneTimeKeyId, OwnedServerName, OwnedUserId, UserId,
    encryption::{CrossSigningKey, DeviceKeys, OneTimeKey},
    serde::{Base64, Raw},
    signatures::SigningKeyAlgorithm,
};
use serde_json::{Map, Value, json};
use tessera_storage::{
    CrossSigningKeyRow, KeySignature, KeyUpload, NewKey, StorageError, Store, StoredDeviceKeys,
};

use crate::{
    Error, Result,
    accounts::Accounts,
    auth::Identity,
    federation::{Remote, RemoteError},
    streams::StreamAllocator,
    sync::SyncToken,
};

pub use cross_signing::{SignatureFailures, SigningKeysUpload};
pub use device_lists::{DeviceListChanges, DeviceLists, PendingDeviceChange};

/// Devices' keys by user and device, as `/keys/query` and `/keys/claim`
/// answer them, and the servers that could not be asked.
pub struct KeysByDevice<T> {
    pub keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, T>>,
    pub failures: BTreeMap<String, Value>,
}

impl<T> Default for KeysByDevice<T> {
    fn default() -> Self {
        Self { keys: BTreeMap::new(), failures: BTreeMap::new() }
    }
}

/// What `/keys/query` answers: devices' identity keys and users'
/// cross-signing keys, with the signatures the requester may see.
#[derive(Default)]
pub struct QueriedKeys {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<DeviceKeys>>>,
    pub master_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub self_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub user_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub failures: BTreeMap<String, Value>,
}

/// What `/sync` reports about the syncing device's own keys.
#[derive(Default, Debug)]
pub struct KeyCounts {
    /// Unclaimed one-time keys per algorithm; `signed_curve25519` always.
    pub one_time_keys: BTreeMap<String, i64>,
    /// Algorithms whose fallback key has not been claimed.
    pub unused_fallback_key_types: Vec<String>,
}

/// The keys service. Cheap to clone.
#[derive(Clone)]
pub struct Keys {
    store: Store,
    streams: StreamAllocator,
    device_lists: DeviceLists,
    /// For the UIA that replacing cross-signing keys needs.
    accounts: Accounts,
    /// Other servers, asked for their users' keys.
    remote: Arc<dyn Remote>,
    server_name: OwnedServerName,
}

impl Keys {
    pub fn new(
        store: Store,
        streams: StreamAllocator,
        device_lists: DeviceLists,
        accounts: Accounts,
        remote: Arc<dyn Remote>,
        server_name: OwnedServerName,
    ) -> Self {
        Self { store, streams, device_lists, accounts, remote, server_name }
    }

    /// The device-list stream this service writes to.
    pub fn device_lists(&self) -> &DeviceLists {
        &self.device_lists
    }

    /// `POST /keys/upload`: stores the device's identity keys, one-time
    /// keys and fallback keys, all or nothing, and answers the counts of
    /// its unclaimed one-time keys.
    pub async fn upload(
        &self,
        who: &Identity,
        device_keys: Option<&Raw<DeviceKeys>>,
        one_time_keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
        fallback_keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
    ) -> Result<BTreeMap<String, i64>> {
        let device_keys = device_keys.map(|raw| checked_device_keys(who, raw)).transpose()?;
        let one_time_keys = checked_keys(one_time_keys)?;
        let fallback_keys = checked_keys(fallback_keys)?;
        let one_time = key_rows(&one_time_keys);
        let fallback = key_rows(&fallback_keys);
        let one_time_rows: Vec<NewKey<'_>> = one_time.iter().map(new_key).collect();
        let fallback_rows: Vec<NewKey<'_>> = fallback.iter().map(new_key).collect();
        // Only new identity keys take a position (and wake anyone).
        let position = match device_keys {
            Some(_) => Some(self.device_lists.reserve().await?),
            None => None,
        };
        let upload = KeyUpload {
            user_id: &who.user_id,
            device_id: &who.device_id,
            device_keys: device_keys.as_deref(),
            one_time_keys: &one_time_rows,
            fallback_keys: &fallback_rows,
            stream_ordering: position.as_ref().map_or(0, |p| p.position),
        };
        let changed = match self.store.upload_keys(upload).await {
            Err(StorageError::Conflict(message)) => return Err(Error::invalid_param(message)),
            other => other?,
        };
        let at = position.as_ref().map(|p| p.position);
        drop(position);
        self.device_lists.key_counts().forget_device(who.user_id.as_str(), who.device_id.as_str());
        if changed {
            self.device_lists.wake(&who.user_id).await?;
            if let Some(at) = at {
                self.device_lists.send_device_keys(&who.user_id, &[who.device_id.as_str()], at).await;
            }
        }
        Ok(self.counts(&who.user_id, &who.device_id).await?.one_time_keys.clone())
    }

    /// The counts `/sync` and `/keys/upload` report for a device.
    /// Kept in memory per device (`counts::KeyCountCache`): every sync
    /// response reads them.
    pub async fn counts(&self, user: &UserId, device: &DeviceId) -> Result<Arc<KeyCounts>> {
        let cache = self.device_lists.key_counts();
        if let Some(counts) = cache.get(user.as_str(), device.as_str()) {
            return Ok(counts);
        }
        let read_at = cache.generation();
        let mut one_time_keys: BTreeMap<String, i64> =
            self.store.one_time_key_counts(user, device).await?.into_iter().collect();
        // Clients (matrix-rust-sdk) read a missing count as "unknown", not 0.
        one_time_keys.entry("signed_curve25519".to_owned()).or_insert(0);
        let unused_fallback_key_types = self.store.unused_fallback_key_types(user, device).await?;
        let counts = Arc::new(KeyCounts { one_time_keys, unused_fallback_key_types });
        cache.keep(user.as_str(), device.as_str(), counts.clone(), read_at);
        Ok(counts)
    }

    /// `POST /keys/query` by `requester`: local users' keys (see
    /// [`Self::query_local`]), and other servers' users' keys asked of
    /// their servers at once, each within `timeout`; a server that fails
    /// or is late is listed in `failures`.
    pub async fn query(
        &self,
        requester: &UserId,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
        timeout: Duration,
    ) -> Result<QueriedKeys> {
        let (local, mut by_server) = self.split_by_server(wanted);
        let mut answer = self.query_local(Some(requester), &local).await?;
        for server in too_many(&mut by_server) {
            answer
                .failures
                .insert(server.to_string(), json!({ "status": 400, "message": "Too many servers" }));
        }
        let mut asks = JoinSet::new();
        for (server, users) in by_server {
            let remote = self.remote.clone();
            asks.spawn(async move {
                let result = tokio::time::timeout(timeout, remote.query_keys(&server, users)).await;
                (server, result)
            });
        }
        while let Some(joined) = asks.join_next().await {
            let Ok((server, result)) = joined else { continue };
            let response = match result {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    answer.failures.insert(server.to_string(), remote_failure(&e));
                    continue;
                }
                Err(_) => {
                    answer.failures.insert(server.to_string(), timed_out());
                    continue;
                }
            };
            // A server answers only for its own users.
            let own = |user: &OwnedUserId| user.server_name() == server;
            answer.device_keys.extend(response.device_keys.into_iter().filter(|(user, _)| own(user)));
            answer.master_keys.extend(response.master_keys.into_iter().filter(|(user, _)| own(user)));
            answer
                .self_signing_keys
                .extend(response.self_signing_keys.into_iter().filter(|(user, _)| own(user)));
        }
        Ok(answer)
    }

    /// The keys of local users for `requester` (`None`: another server):
    /// the identity keys of the named devices (every device for an empty
    /// list), each with its display name in `unsigned`, and their
    /// cross-signing keys (the user-signing key only of the requester),
    /// with the signatures of the key's owner and of the requester.
    /// Unknown users, and users of other servers, are left out.
    pub async fn query_local(
        &self,
        requester: Option<&UserId>,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<QueriedKeys> {
        // A few statements for all the users (a client asks for everyone
        // in a room before it first sends there), not a few per user.
        let local: Vec<&UserId> =
            wanted.keys().filter(|user| user.server_name() == self.server_name).map(|user| &**user).collect();
        let existing: std::collections::HashSet<String> =
            self.store.existing_users(&local).await?.into_iter().collect();
        let users: Vec<&UserId> = local.into_iter().filter(|user| existing.contains(user.as_str())).collect();
        let mut signatures: BTreeMap<String, Vec<KeySignature>> = BTreeMap::new();
        for signature in self.store.key_signatures_of_users(&users, requester).await? {
            signatures.entry(signature.target_user_id.clone()).or_default().push(signature);
        }
        let mut devices: BTreeMap<String, Vec<StoredDeviceKeys>> = BTreeMap::new();
        for (user, keys) in self.store.device_keys_of_users(&users).await? {
            devices.entry(user).or_default().push(keys);
        }
        let mut signing_keys: BTreeMap<String, Vec<CrossSigningKeyRow>> = BTreeMap::new();
        for (user, key) in self.store.cross_signing_keys_of_users(&users).await? {
            signing_keys.entry(user).or_default().push(key);
        }
        let mut answer = QueriedKeys::default();
        for user in users {
            let wanted_devices = &wanted[user];
            let signatures = signatures.remove(user.as_str()).unwrap_or_default();
            let mut found = BTreeMap::new();
            for stored in devices.remove(user.as_str()).unwrap_or_default() {
                let device_id: OwnedDeviceId = stored.device_id.into();
                if !wanted_devices.is_empty() && !wanted_devices.contains(&device_id) {
                    continue;
                }
                let mut keys: Map<String, Value> = match serde_json::from_str(&stored.keys_json) {
                    Ok(keys) => keys,
                    Err(e) => {
                        tracing::warn!(%user, %device_id, error = %e, "unreadable device keys skipped");
                        continue;
                    }
                };
                cross_signing::merge_signatures(
                    &mut keys,
                    signatures.iter().filter(|s| s.target_key == device_id.as_str()),
                );
                if let Some(name) = stored.display_name {
                    keys.insert("unsigned".to_owned(), json!({ "device_display_name": name }));
                }
                found.insert(device_id, to_raw(&keys)?);
            }
            answer.device_keys.insert(user.to_owned(), found);
            let stored_keys = signing_keys.remove(user.as_str()).unwrap_or_default();
            for (usage, key) in
                cross_signing::visible_signing_keys(requester, user, stored_keys, &signatures)?
            {
                let keys = match usage.as_str() {
                    "master" => &mut answer.master_keys,
                    "self_signing" => &mut answer.self_signing_keys,
                    _ => &mut answer.user_signing_keys,
                };
                keys.insert(user.to_owned(), key);
            }
        }
        Ok(answer)
    }

    /// The wanted users of this server, and the others' by server.
    fn split_by_server<T: Clone>(
        &self,
        wanted: &BTreeMap<OwnedUserId, T>,
    ) -> (BTreeMap<OwnedUserId, T>, BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>>) {
        let mut local = BTreeMap::new();
        let mut by_server: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> = BTreeMap::new();
        for (user, value) in wanted {
            if user.server_name() == self.server_name {
                local.insert(user.clone(), value.clone());
            } else {
                by_server
                    .entry(user.server_name().to_owned())
                    .or_default()
                    .insert(user.clone(), value.clone());
            }
        }
        (local, by_server)
    }

    /// `POST /keys/claim`: local devices' keys (see [`Self::claim_local`]),
    /// and other servers' asked of them at once, each within `timeout`.
    pub async fn claim(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, ruma::OneTimeKeyAlgorithm>>,
        timeout: Duration,
    ) -> Result<KeysByDevice<BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>>> {
        let (local, mut by_server) = self.split_by_server(wanted);
        let mut answer = self.claim_local(&local).await?;
        for server in too_many(&mut by_server) {
            answer
                .failures
                .insert(server.to_string(), json!({ "status": 400, "message": "Too many servers" }));
        }
        let mut asks = JoinSet::new();
        for (server, users) in by_server {
            let remote = self.remote.clone();
            asks.spawn(async move {
                let result = tokio::time::timeout(timeout, remote.claim_keys(&server, users)).await;
                (server, result)
            });
        }
        while let Some(joined) = asks.join_next().await {
            let Ok((server, result)) = joined else { continue };
            match result {
                Ok(Ok(response)) => answer.keys.extend(
                    response.one_time_keys.into_iter().filter(|(user, _)| user.server_name() == server),
                ),
                Ok(Err(e)) => {
                    answer.failures.insert(server.to_string(), remote_failure(&e));
                }
                Err(_) => {
                    answer.failures.insert(server.to_string(), timed_out());
                }
            }
        }
        Ok(answer)
    }

    /// Claims of local devices' keys: per device, its oldest unclaimed
    /// one-time key of the algorithm (deleted), else its fallback key
    /// (kept). Concurrent claims never get the same one-time key (see the
    /// storage statement). Users of other servers are left out.
    pub async fn claim_local(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, ruma::OneTimeKeyAlgorithm>>,
    ) -> Result<KeysByDevice<BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>>> {
        let claims: Vec<(&UserId, &DeviceId, &str)> = wanted
            .iter()
            .filter(|(user, _)| user.server_name() == self.server_name)
            .flat_map(|(user, devices)| {
                devices.iter().map(move |(device, algorithm)| (&**user, &**device, algorithm.as_str()))
            })
            .collect();
        let claimed = self.store.claim_keys(&claims).await;
        for (user, device, _) in &claims {
            self.device_lists.key_counts().forget_device(user.as_str(), device.as_str());
        }
        let mut answer = KeysByDevice::default();
        for ((user, device, _), claimed) in claims.iter().zip(claimed?) {
            let Some((key_id, json)) = claimed else {
                continue;
            };
            let (Ok(key_id), Ok(key)) = (
                OwnedOneTimeKeyId::try_from(key_id.as_str()),
                serde_json::value::RawValue::from_string(json).map(Raw::from_json),
            ) else {
                tracing::warn!(%user, %device, %key_id, "unreadable one-time key skipped");
                continue;
            };
            answer
                .keys
                .entry((*user).to_owned())
                .or_default()
                .insert((*device).to_owned(), BTreeMap::from([(key_id, key)]));
        }
        Ok(answer)
    }

    /// A number that grows with each change of the user's device list
    /// (`stream_id` of `/user/devices`): its last change's position.
    pub async fn device_list_version(&self, user: &UserId) -> Result<i64> {
        Ok(self.store.last_device_list_change(user).await?)
    }

    /// `GET /keys/changes`: the device-list changes between two sync
    /// tokens, as an incremental sync from `from` up to `to` reports them.
    pub async fn changes(&self, who: &Identity, from: &str, to: &str) -> Result<DeviceListChanges> {
        let from: SyncToken = from.parse()?;
        let to: SyncToken = to.parse()?;
        let upto = to.events.min(self.streams.persisted_upto());
        self.device_lists.changes_between(&who.user_id, from.events, upto).await
    }
}

/// What `failures` holds for a server that could not be asked, as
/// Synapse words it: the status it answered, else 503. What it answered is
/// not passed on (it could be anything a redirect or a bad server sent).
fn remote_failure(error: &RemoteError) -> Value {
    let (status, message) = match error {
        RemoteError::Status { status, .. } => (*status, format!("The server answered {status}")),
        RemoteError::NotAllowed { .. } => (503, "The server may not be contacted".to_owned()),
        RemoteError::Unreachable { .. } => (503, "The server could not be reached".to_owned()),
        RemoteError::Malformed { .. } | RemoteError::TooLarge { .. } => {
            (503, "The server's answer could not be read".to_owned())
        }
    };
    tracing::info!(error = %error, "keys not fetched from another server");
    json!({ "status": status, "message": message })
}

/// The most other servers one query or claim asks at once.
const MAX_SERVERS: usize = 100;

/// Takes the servers past [`MAX_SERVERS`] out of `by_server`.
fn too_many<T>(by_server: &mut BTreeMap<OwnedServerName, T>) -> Vec<OwnedServerName> {
    let extra: Vec<OwnedServerName> = by_server.keys().skip(MAX_SERVERS).cloned().collect();
    for server in &extra {
        by_server.remove(server);
    }
    extra
}

fn timed_out() -> Value {
    json!({ "status": 504, "message": "The server did not answer in time" })
}

fn to_raw<T>(value: &impl serde::Serialize) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value).map(Raw::from_json).map_err(Error::internal)
}

/// The device's identity keys as stored: checked against the caller and
/// their own signature, without `unsigned` (the server fills that in), as
/// canonical JSON so an identical re-upload compares equal.
fn checked_device_keys(who: &Identity, raw: &Raw<DeviceKeys>) -> Result<String> {
    let keys: DeviceKeys = raw.deserialize().map_err(|e| Error::bad_json(format!("device_keys: {e}")))?;
    if keys.user_id != who.user_id || keys.device_id != who.device_id {
        return Err(Error::invalid_param("device_keys must be for the device of the access token"));
    }
    let mut object: Map<String, Value> =
        serde_json::from_str(raw.json().get()).map_err(|e| Error::bad_json(format!("device_keys: {e}")))?;
    object.remove("unsigned");
    let canonical = CanonicalJsonValue::try_from(Value::Object(object.clone()))
        .map_err(|e| Error::bad_json(format!("device_keys: {e}")))?;
    // The device's self-signature is checked when it is there. Complement
    // (TestDeviceListUpdates) uploads keys with empty `signatures`, and
    // Synapse checks none, so an unsigned upload is accepted.
    let key_id = format!("ed25519:{}", who.device_id);
    let signature = object
        .get("signatures")
        .and_then(|s| s.get(who.user_id.as_str()))
        .and_then(|s| s.get(&key_id))
        .and_then(Value::as_str);
    if let Some(signature) = signature {
        let public_key = keys.keys.iter().find(|(id, _)| id.as_str() == key_id).map(|(_, key)| key.as_str());
        let public_key =
            public_key.ok_or_else(|| Error::invalid_param(format!("device_keys has no {key_id} key")))?;
        verify_signature(&object, public_key, signature)
            .map_err(|_| Error::invalid_signature("device_keys: the device's signature does not verify"))?;
    }
    Ok(canonical.to_string())
}

/// The object's canonical JSON without `signatures` and `unsigned`: what
/// a signature covers (the spec's signing rules).
fn canonical_without_signatures(object: &Map<String, Value>) -> Option<String> {
    let mut signed = object.clone();
    signed.remove("signatures");
    signed.remove("unsigned");
    Some(CanonicalJsonValue::try_from(Value::Object(signed)).ok()?.to_string())
}

/// Verifies an ed25519 signature (unpadded base64, as the public key) of
/// the object.
pub(crate) fn verify_signature(
    object: &Map<String, Value>,
    public_key: &str,
    signature: &str,
) -> Result<(), ()> {
    let signed = canonical_without_signatures(object).ok_or(())?;
    let public_key = Base64::<ruma::serde::base64::Standard>::parse(public_key).map_err(|_| ())?;
    let signature = Base64::<ruma::serde::base64::Standard>::parse(signature).map_err(|_| ())?;
    ruma::signatures::verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        public_key.as_bytes(),
        signature.as_bytes(),
        signed.as_bytes(),
    )
    .map_err(|_| ())
}

/// One-time or fallback keys, each checked to parse as a key, as
/// canonical JSON.
fn checked_keys(
    keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
) -> Result<Vec<(OwnedOneTimeKeyId, String)>> {
    keys.iter()
        .map(|(id, raw)| {
            raw.deserialize().map_err(|e| Error::bad_json(format!("key {id}: {e}")))?;
            let value: Value = serde_json::from_str(raw.json().get())
                .map_err(|e| Error::bad_json(format!("key {id}: {e}")))?;
            let canonical =
                CanonicalJsonValue::try_from(value).map_err(|e| Error::bad_json(format!("key {id}: {e}")))?;
            Ok((id.clone(), canonical.to_string()))
        })
        .collect()
}

/// Each key's algorithm, whole ID and JSON.
fn key_rows(keys: &[(OwnedOneTimeKeyId, String)]) -> Vec<(String, String, String)> {
    keys.iter().map(|(id, json)| (id.algorithm().to_string(), id.to_string(), json.clone())).collect()
}

fn new_key((algorithm, key_id, json): &(String, String, String)) -> NewKey<'_> {
    NewKey { algorithm, key_id, json }
}
