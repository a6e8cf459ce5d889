//! Server-side key backups: `POST/GET /room_keys/version`,
//! `GET/PUT/DELETE /room_keys/version/{version}` and
//! `PUT/GET/DELETE /room_keys/keys[/{roomId}[/{sessionId}]]`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#server-side-key-backups>.
//!
//! Owns what the spec asks of the server: versions numbered per user
//! (decimal strings), uploads only to the current version, the rule that
//! picks between two keys for one session, and checking the shape of what
//! clients send. Must not: look inside `auth_data` or `session_data`, which
//! are the client's (encrypted or signed) business; any algorithm is
//! stored, as Synapse does (Complement uses `m.megolm_backup.v1`).

use std::collections::BTreeMap;

use ruma::{
    OwnedRoomId, RoomId, UInt,
    api::{
        client::backup::{BackupAlgorithm, KeyBackupData, RoomKeyBackup},
        error::{ErrorKind, WrongRoomKeysVersionErrorData},
    },
    serde::Raw,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, value::RawValue};
use tessera_storage::{
    BackupKey, BackupKeyRow, BackupUpload, BackupVersion, KeyScope, Store, VersionDeletion,
};

use crate::{Error, Result, auth::Identity, limits};

/// A backup version as `GET /room_keys/version[/{version}]` answers it.
#[derive(Debug)]
pub struct VersionInfo {
    pub version: String,
    /// `{algorithm, auth_data}`.
    pub algorithm: Raw<BackupAlgorithm>,
    pub count: UInt,
    pub etag: String,
}

/// A version's keys after a change: what the key endpoints answer.
#[derive(Debug)]
pub struct KeyCounts {
    pub etag: String,
    pub count: UInt,
}

/// The key backup service.
#[derive(Clone)]
pub struct KeyBackup {
    store: Store,
}

/// `{algorithm, auth_data}` (and for updates an optional `version`), the
/// body of `POST /room_keys/version` and `PUT /room_keys/version/{version}`.
#[derive(Deserialize)]
struct AlgorithmBody {
    algorithm: String,
    auth_data: Map<String, Value>,
    version: Option<String>,
}

/// A key as uploaded (the spec's `KeyBackupData`). ruma's type requires
/// the `m.megolm_backup.v1.curve25519-aes-sha2` fields in `session_data`;
/// the server stores any object there.
#[derive(Deserialize)]
struct UploadedKey {
    first_message_index: UInt,
    forwarded_count: UInt,
    is_verified: bool,
    session_data: Map<String, Value>,
}

/// A stored key on its way out.
#[derive(Serialize)]
struct KeyJson<'a> {
    first_message_index: i64,
    forwarded_count: i64,
    is_verified: bool,
    session_data: &'a RawValue,
}

impl KeyBackup {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Creates a version, which becomes the current one; returns its
    /// number.
    pub async fn create_version(&self, who: &Identity, body: &Raw<BackupAlgorithm>) -> Result<String> {
        let body: AlgorithmBody = parse(body.json(), "backup version")?;
        limits::check_bytes("algorithm", &body.algorithm, limits::MAX_IDENTIFIER_BYTES)?;
        let auth_data = serde_json::to_string(&body.auth_data).map_err(Error::internal)?;
        let version = self.store.create_backup_version(&who.user_id, &body.algorithm, &auth_data).await?;
        Ok(version.to_string())
    }

    /// The current version: 404 when there is none (every client asks at
    /// sign-in, and reads the 404 as "no backup yet").
    pub async fn current_version(&self, who: &Identity) -> Result<VersionInfo> {
        let version = self.store.current_backup_version(&who.user_id).await?;
        version_info(version.ok_or_else(|| Error::not_found("No current backup version"))?)
    }

    /// A version by number, unless it was deleted.
    pub async fn get_version(&self, who: &Identity, version: &str) -> Result<VersionInfo> {
        let number = parse_version(version)?;
        let version = self.store.get_backup_version(&who.user_id, number).await?;
        version_info(version.ok_or_else(unknown_version)?)
    }

    /// Replaces a version's `auth_data`. The algorithm cannot change, and
    /// a `version` in the body must be the one in the path (400
    /// `M_INVALID_PARAM` otherwise, as the spec's example).
    pub async fn update_version(
        &self,
        who: &Identity,
        version: &str,
        body: &Raw<BackupAlgorithm>,
    ) -> Result<()> {
        let body: AlgorithmBody = parse(body.json(), "backup version")?;
        if body.version.as_deref().is_some_and(|v| v != version) {
            return Err(Error::invalid_param("Version in body does not match the path"));
        }
        let number = parse_version(version)?;
        let stored =
            self.store.get_backup_version(&who.user_id, number).await?.ok_or_else(unknown_version)?;
        if stored.algorithm != body.algorithm {
            return Err(Error::invalid_param("Algorithm does not match"));
        }
        let auth_data = serde_json::to_string(&body.auth_data).map_err(Error::internal)?;
        // Nothing matches only if the version was deleted meanwhile.
        if !self.store.update_backup_auth_data(&who.user_id, number, &stored.algorithm, &auth_data).await? {
            return Err(unknown_version());
        }
        Ok(())
    }

    /// Deletes a version and its keys. Deleting it again succeeds (the
    /// spec: "If the backup was previously deleted, the call should
    /// succeed"); a version that never existed is 404.
    pub async fn delete_version(&self, who: &Identity, version: &str) -> Result<()> {
        let number = parse_version(version)?;
        match self.store.delete_backup_version(&who.user_id, number).await? {
            VersionDeletion::Deleted | VersionDeletion::AlreadyDeleted => Ok(()),
            VersionDeletion::Unknown => Err(unknown_version()),
        }
    }

    /// Stores keys (room, session, key) in `version`, which must be the
    /// current one: 403 `M_WRONG_ROOM_KEYS_VERSION` with the current
    /// version otherwise, 404 for one that does not exist or was deleted.
    /// A session's stored key is replaced only by a better one
    /// ([`is_better`]).
    pub async fn put_keys(
        &self,
        who: &Identity,
        version: &str,
        keys: &[(&RoomId, &str, &Raw<KeyBackupData>)],
    ) -> Result<KeyCounts> {
        let number = parse_version(version)?;
        let mut checked = Vec::with_capacity(keys.len());
        for (room_id, session_id, key) in keys {
            limits::check_bytes("session ID", session_id, limits::MAX_IDENTIFIER_BYTES)?;
            let key: UploadedKey = parse(key.json(), &format!("key for {room_id} {session_id}"))?;
            let stored = BackupKey {
                first_message_index: i64::from(key.first_message_index),
                forwarded_count: i64::from(key.forwarded_count),
                is_verified: key.is_verified,
                session_data: serde_json::to_string(&key.session_data).map_err(Error::internal)?,
            };
            checked.push((room_id.as_str(), *session_id, stored));
        }
        match self.store.put_backup_keys(&who.user_id, number, &checked, is_better).await? {
            BackupUpload::Stored { etag, count } => key_counts(etag, count),
            BackupUpload::UnknownVersion => Err(unknown_version()),
            BackupUpload::NotCurrent { current } => Err(Error::new(
                403,
                ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(current.to_string())),
                "Wrong backup version",
            )),
        }
    }

    /// Every key of a version, by room (`{}` when it has none).
    pub async fn get_keys(
        &self,
        who: &Identity,
        version: &str,
    ) -> Result<BTreeMap<OwnedRoomId, RoomKeyBackup>> {
        let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>> = BTreeMap::new();
        for row in self.read_keys(who, version, KeyScope::All).await? {
            let room_id = RoomId::parse(&row.room_id).map_err(Error::internal)?;
            rooms.entry(room_id).or_default().insert(row.session_id, key_json(&row.key)?);
        }
        Ok(rooms.into_iter().map(|(room, sessions)| (room, RoomKeyBackup::new(sessions))).collect())
    }

    /// A room's keys in a version, by session (`{}` when it has none: the
    /// spec answers an empty `sessions`, not 404).
    pub async fn get_room_keys(
        &self,
        who: &Identity,
        version: &str,
        room_id: &RoomId,
    ) -> Result<BTreeMap<String, Raw<KeyBackupData>>> {
        self.read_keys(who, version, KeyScope::Room(room_id.as_str()))
            .await?
            .into_iter()
            .map(|row| Ok((row.session_id, key_json(&row.key)?)))
            .collect()
    }

    /// One session's key: 404 `M_NOT_FOUND` when there is none.
    pub async fn get_session_key(
        &self,
        who: &Identity,
        version: &str,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Raw<KeyBackupData>> {
        let rows = self.read_keys(who, version, KeyScope::Session(room_id.as_str(), session_id)).await?;
        let row = rows.first().ok_or_else(|| Error::not_found("No backed-up key for this session"))?;
        key_json(&row.key)
    }

    /// Deletes the keys of a version (any version not deleted), all of
    /// them, a room's or a session's.
    pub async fn delete_keys(
        &self,
        who: &Identity,
        version: &str,
        room_id: Option<&RoomId>,
        session_id: Option<&str>,
    ) -> Result<KeyCounts> {
        let number = parse_version(version)?;
        let scope = match (room_id, session_id) {
            (Some(room), Some(session)) => KeyScope::Session(room.as_str(), session),
            (Some(room), None) => KeyScope::Room(room.as_str()),
            (None, _) => KeyScope::All,
        };
        let (etag, count) =
            self.store.delete_backup_keys(&who.user_id, number, scope).await?.ok_or_else(unknown_version)?;
        key_counts(etag, count)
    }

    async fn read_keys(
        &self,
        who: &Identity,
        version: &str,
        scope: KeyScope<'_>,
    ) -> Result<Vec<BackupKeyRow>> {
        let number = parse_version(version)?;
        self.store.get_backup_keys(&who.user_id, number, scope).await?.ok_or_else(unknown_version)
    }
}

/// Whether `new` should replace `stored`, the key already held for the
/// same session. The spec's order: a verified key beats an unverified
/// one; then the lower `first_message_index` wins (it decrypts more);
/// then the lower `forwarded_count`. On a tie the stored key stays.
/// (Synapse lets a lower index win over `is_verified`; the spec does not.)
pub fn is_better(new: &BackupKey, stored: &BackupKey) -> bool {
    if new.is_verified != stored.is_verified {
        return new.is_verified;
    }
    if new.first_message_index != stored.first_message_index {
        return new.first_message_index < stored.first_message_index;
    }
    new.forwarded_count < stored.forwarded_count
}

/// A version number from a path or query: a decimal number as this
/// server hands them out. Anything else names no version: 404.
fn parse_version(version: &str) -> Result<i64> {
    let canonical =
        !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) && !version.starts_with('0');
    canonical.then(|| version.parse().ok()).flatten().ok_or_else(unknown_version)
}

fn unknown_version() -> Error {
    Error::not_found("Unknown backup version")
}

/// Parses a client's JSON (`what`, for the message) as ruma's extractor
/// would answer it: a missing field is `M_MISSING_PARAM`, anything else
/// wrong `M_BAD_JSON`.
fn parse<'a, T: Deserialize<'a>>(json: &'a RawValue, what: &str) -> Result<T> {
    serde_json::from_str(json.get()).map_err(|e| {
        let message = format!("{what}: {e}");
        if e.to_string().starts_with("missing field") {
            Error::missing_param(message)
        } else {
            Error::bad_json(message)
        }
    })
}

fn version_info(version: BackupVersion) -> Result<VersionInfo> {
    #[derive(Serialize)]
    struct AlgorithmJson<'a> {
        algorithm: &'a str,
        auth_data: &'a RawValue,
    }
    let auth_data: &RawValue = serde_json::from_str(&version.auth_data).map_err(Error::internal)?;
    let algorithm =
        serde_json::value::to_raw_value(&AlgorithmJson { algorithm: &version.algorithm, auth_data })
            .map_err(Error::internal)?;
    let counts = key_counts(version.etag, version.count)?;
    Ok(VersionInfo {
        version: version.version.to_string(),
        algorithm: Raw::from_json(algorithm),
        count: counts.count,
        etag: counts.etag,
    })
}

fn key_counts(etag: i64, count: i64) -> Result<KeyCounts> {
    Ok(KeyCounts { etag: etag.to_string(), count: UInt::try_from(count).map_err(Error::internal)? })
}

fn key_json(key: &BackupKey) -> Result<Raw<KeyBackupData>> {
    let session_data: &RawValue = serde_json::from_str(&key.session_data).map_err(Error::internal)?;
    let json = serde_json::value::to_raw_value(&KeyJson {
        first_message_index: key.first_message_index,
        forwarded_count: key.forwarded_count,
        is_verified: key.is_verified,
        session_data,
    })
    .map_err(Error::internal)?;
    Ok(Raw::from_json(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(is_verified: bool, first_message_index: i64, forwarded_count: i64) -> BackupKey {
        BackupKey { first_message_index, forwarded_count, is_verified, session_data: "{}".into() }
    }

    #[test]
    fn verified_keys_win_first() {
        assert!(is_better(&key(true, 10, 5), &key(false, 0, 0)));
        assert!(!is_better(&key(false, 0, 0), &key(true, 10, 5)));
    }

    #[test]
    fn then_the_lower_first_message_index() {
        assert!(is_better(&key(false, 9, 9), &key(false, 10, 5)));
        assert!(!is_better(&key(true, 11, 0), &key(true, 10, 5)));
    }

    #[test]
    fn then_the_lower_forwarded_count() {
        assert!(is_better(&key(false, 10, 4), &key(false, 10, 5)));
        assert!(!is_better(&key(false, 10, 6), &key(false, 10, 5)));
    }

    #[test]
    fn a_tie_keeps_the_stored_key() {
        assert!(!is_better(&key(true, 10, 5), &key(true, 10, 5)));
    }

    #[test]
    fn versions_are_canonical_decimal_numbers() {
        assert_eq!(parse_version("1").ok(), Some(1));
        assert_eq!(parse_version("42").ok(), Some(42));
        for bad in ["", "0", "01", "+1", "-1", "1.0", "abc", "99999999999999999999"] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }
}
