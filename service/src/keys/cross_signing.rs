//! Cross-signing: a user's master, self-signing and user-signing keys
//! (`POST /keys/device_signing/upload`) and the signatures clients make
//! with them (`POST /keys/signatures/upload`), which `/keys/query` merges
//! into the keys they sign.
//!
//! Every key and signature is checked before it is stored: a key belongs
//! to the uploader, has the usage it is uploaded as and exactly one
//! ed25519 key; self-signing and user-signing keys carry the master key's
//! signature; an uploaded signature verifies against the signing key and
//! covers exactly the key stored. A signature of another user's master key
//! (by the uploader's user-signing key) is shown to the signer alone.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#cross-signing>.

use std::collections::BTreeMap;

use ruma::{
    OwnedUserId, UserId,
    api::client::{keys::upload_signatures::v3::SignedKeys, uiaa::AuthData},
    encryption::CrossSigningKey,
    serde::Raw,
};
use serde_json::{Map, Value, json};
use tessera_storage::{CrossSigningKeyRow, KeySignature};

use super::{Keys, canonical_without_signatures, verify_signature};
use crate::{Error, Result, auth::Identity};

/// The keys of one `POST /keys/device_signing/upload`.
#[derive(Default, Clone, Copy)]
pub struct SigningKeysUpload<'a> {
    pub master: Option<&'a Raw<CrossSigningKey>>,
    pub self_signing: Option<&'a Raw<CrossSigningKey>>,
    pub user_signing: Option<&'a Raw<CrossSigningKey>>,
}

/// Per user and key, why an uploaded signature was refused.
pub type SignatureFailures = BTreeMap<OwnedUserId, BTreeMap<String, Value>>;

const MASTER: &str = "master";
const SELF_SIGNING: &str = "self_signing";
const USER_SIGNING: &str = "user_signing";

impl Keys {
    /// `POST /keys/device_signing/upload`. UIA is asked for only when the
    /// user already has a master key and the upload changes any key (the
    /// spec's rule since v1.11, MSC3967): a first upload, and the same
    /// upload again, need none.
    pub async fn upload_signing_keys(
        &self,
        who: &Identity,
        upload: SigningKeysUpload<'_>,
        auth: Option<&AuthData>,
    ) -> Result<()> {
        let stored = self.store.cross_signing_keys(&who.user_id).await?;
        let stored_of = |usage: &str| stored.iter().find(|key| key.usage == usage);
        let master = upload.master.map(|raw| checked_signing_key(who, raw, MASTER, None)).transpose()?;
        let master_key = match (&master, stored_of(MASTER)) {
            (Some(new), _) => Some(new.key_id.clone()),
            (None, Some(old)) => Some(old.key_id.clone()),
            (None, None) => None,
        };
        let signed_by_master = |raw: &Raw<CrossSigningKey>, usage: &str| {
            let master_key =
                master_key.as_deref().ok_or_else(|| Error::missing_param("No master key is available"))?;
            checked_signing_key(who, raw, usage, Some(master_key))
        };
        let self_signing = upload.self_signing.map(|raw| signed_by_master(raw, SELF_SIGNING)).transpose()?;
        let user_signing = upload.user_signing.map(|raw| signed_by_master(raw, USER_SIGNING)).transpose()?;
        let new: Vec<CrossSigningKeyRow> = [master, self_signing, user_signing]
            .into_iter()
            .flatten()
            .filter(|key| stored_of(&key.usage).is_none_or(|old| old.key_json != key.key_json))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        // The spec's 403: a key named like a device would be ambiguous in
        // `/keys/signatures/upload`, which names both by ID.
        let devices = self.store.list_devices(&who.user_id).await?;
        let names_a_device = |key: &CrossSigningKeyRow| {
            devices.iter().any(|d| d.device_id == key.key_id || d.device_id == public_part(&key.key_id))
        };
        if new.iter().any(names_a_device) {
            return Err(Error::forbidden(
                "The public key of one of the keys is the same as one of your device IDs",
            ));
        }
        if stored_of(MASTER).is_some() {
            self.accounts.require_password_uia("device_signing_upload", who, auth).await?;
        }
        let position = self.device_lists.reserve().await?;
        self.store.upload_cross_signing_keys(&who.user_id, &new, position.position).await?;
        drop(position);
        self.device_lists.wake(&who.user_id).await?;
        self.device_lists.send_signing_keys(&who.user_id).await;
        Ok(())
    }

    /// `POST /keys/signatures/upload`: stores each signature that verifies
    /// and answers why the others were refused. The uploader may sign their
    /// own devices (with their self-signing key), their own master key
    /// (with a device's key), and other users' master keys (with their
    /// user-signing key).
    pub async fn upload_signatures(
        &self,
        who: &Identity,
        signed: &BTreeMap<OwnedUserId, SignedKeys>,
    ) -> Result<SignatureFailures> {
        let mut failures = SignatureFailures::new();
        let mut accepted: Vec<KeySignature> = Vec::new();
        let mut own_keys_signed = false;
        let mut others_signed: Vec<&UserId> = Vec::new();
        let own_keys = self.store.cross_signing_keys(&who.user_id).await?;
        for (user, keys) in signed {
            for (key, object) in keys.iter() {
                let object: Map<String, Value> = match serde_json::from_str(object.get()) {
                    Ok(object) => object,
                    Err(_) => {
                        failure(
                            &mut failures,
                            user,
                            key,
                            "M_BAD_JSON",
                            "The signed key is not a JSON object",
                        );
                        continue;
                    }
                };
                let checked = if user == &who.user_id {
                    self.own_key_signatures(who, &own_keys, key, &object).await?
                } else {
                    self.other_user_signature(who, &own_keys, user, key, &object).await?
                };
                match checked {
                    Ok(signatures) => {
                        if user == &who.user_id {
                            own_keys_signed = true;
                        } else if !others_signed.contains(&&**user) {
                            others_signed.push(user);
                        }
                        accepted.extend(signatures);
                    }
                    Err((errcode, error)) => failure(&mut failures, user, key, errcode, &error),
                }
            }
        }
        if accepted.is_empty() {
            return Ok(failures);
        }
        let changed: Vec<&UserId> = if own_keys_signed { vec![&who.user_id] } else { Vec::new() };
        let private: Vec<(&UserId, &UserId)> =
            others_signed.iter().map(|other| (&*who.user_id, *other)).collect();
        let position = self.device_lists.reserve().await?;
        self.store.store_key_signatures(&accepted, &changed, &private, position.position).await?;
        let at = position.position;
        drop(position);
        if own_keys_signed {
            self.device_lists.wake(&who.user_id).await?;
            // Other servers hear of the signed devices and master key.
            let own = accepted.iter().filter(|s| s.target_user_id == who.user_id.as_str());
            let (keys, devices): (Vec<_>, Vec<_>) = own.partition(|s| s.target_key.starts_with("ed25519:"));
            let mut devices: Vec<&str> = devices.iter().map(|s| s.target_key.as_str()).collect();
            devices.dedup();
            self.device_lists.send_device_keys(&who.user_id, &devices, at).await;
            if !keys.is_empty() {
                self.device_lists.send_signing_keys(&who.user_id).await;
            }
        } else {
            self.device_lists.wake_user_only(&who.user_id);
        }
        Ok(failures)
    }

    /// A signature of one of the uploader's own keys: a device signed by
    /// their self-signing key, or their master key signed by their devices.
    async fn own_key_signatures(
        &self,
        who: &Identity,
        own_keys: &[CrossSigningKeyRow],
        key: &str,
        object: &Map<String, Value>,
    ) -> Result<Checked> {
        let user = &who.user_id;
        if let Some(master) = own_keys.iter().find(|k| k.usage == MASTER && is_key(&k.key_id, key)) {
            if !same_key(object, &master.key_json) {
                return Ok(Err(("M_INVALID_PARAM", "The signed key is not the stored master key".into())));
            }
            let devices = self.store.device_keys_of(user).await?;
            let mut signatures = Vec::new();
            for (signer_key_id, signature) in signatures_by(object, user) {
                let Some(device_key) = signer_key_id
                    .strip_prefix("ed25519:")
                    .and_then(|device| devices.iter().find(|d| d.device_id == device))
                    .and_then(|device| ed25519_key_of(&device.keys_json, &signer_key_id))
                else {
                    // The master key's own signature, or an unknown device's.
                    continue;
                };
                if verify_signature(object, &device_key, &signature).is_err() {
                    return Ok(Err((
                        "M_INVALID_SIGNATURE",
                        format!("{signer_key_id}'s signature does not verify"),
                    )));
                }
                signatures.push(key_signature(user, &master.key_id, user, &signer_key_id, signature));
            }
            if signatures.is_empty() {
                return Ok(Err(("M_INVALID_SIGNATURE", "No signature of one of the user's devices".into())));
            }
            return Ok(Ok(signatures));
        }
        let devices = self.store.device_keys_of(user).await?;
        let Some(device) = devices.iter().find(|d| d.device_id == key) else {
            return Ok(Err(("M_NOT_FOUND", "No such device or key".into())));
        };
        if !same_key(object, &device.keys_json) {
            return Ok(Err(("M_INVALID_PARAM", "The signed keys are not the device's stored keys".into())));
        }
        let Some(self_signing) = own_keys.iter().find(|k| k.usage == SELF_SIGNING) else {
            return Ok(Err(("M_NOT_FOUND", "The user has no self-signing key".into())));
        };
        let Some(signature) = signature_of(object, user, &self_signing.key_id) else {
            return Ok(Err(("M_INVALID_SIGNATURE", "No signature of the self-signing key".into())));
        };
        if verify_signature(object, public_part(&self_signing.key_id), &signature).is_err() {
            return Ok(Err((
                "M_INVALID_SIGNATURE",
                "The self-signing key's signature does not verify".into(),
            )));
        }
        Ok(Ok(vec![key_signature(user, key, user, &self_signing.key_id, signature)]))
    }

    /// A signature of another user's master key by the uploader's
    /// user-signing key.
    async fn other_user_signature(
        &self,
        who: &Identity,
        own_keys: &[CrossSigningKeyRow],
        user: &UserId,
        key: &str,
        object: &Map<String, Value>,
    ) -> Result<Checked> {
        if user.server_name() != self.server_name {
            return Ok(Err(("M_UNKNOWN", "Keys of users on other servers cannot be signed yet".into())));
        }
        let Some(user_signing) = own_keys.iter().find(|k| k.usage == USER_SIGNING) else {
            return Ok(Err(("M_NOT_FOUND", "You have no user-signing key".into())));
        };
        let theirs = self.store.cross_signing_keys(user).await?;
        let Some(master) = theirs.iter().find(|k| k.usage == MASTER && is_key(&k.key_id, key)) else {
            return Ok(Err(("M_NOT_FOUND", "Only a user's master key can be signed".into())));
        };
        if !same_key(object, &master.key_json) {
            return Ok(Err(("M_INVALID_PARAM", "The signed key is not the stored master key".into())));
        }
        let Some(signature) = signature_of(object, &who.user_id, &user_signing.key_id) else {
            return Ok(Err(("M_INVALID_SIGNATURE", "No signature of your user-signing key".into())));
        };
        if verify_signature(object, public_part(&user_signing.key_id), &signature).is_err() {
            return Ok(Err((
                "M_INVALID_SIGNATURE",
                "The user-signing key's signature does not verify".into(),
            )));
        }
        Ok(Ok(vec![key_signature(user, &master.key_id, &who.user_id, &user_signing.key_id, signature)]))
    }
}

/// A user's cross-signing keys as `requester` may see them (`None`: another
/// server asks), each with the signatures of the user and the requester
/// merged in: the master and self-signing keys, and the user-signing key
/// only for the user themself.
pub(super) fn visible_signing_keys(
    requester: Option<&UserId>,
    user: &UserId,
    keys: Vec<CrossSigningKeyRow>,
    signatures: &[KeySignature],
) -> Result<Vec<(String, Raw<CrossSigningKey>)>> {
    let mut visible = Vec::new();
    for key in keys {
        if key.usage == USER_SIGNING && requester != Some(user) {
            continue;
        }
        let Ok(mut object) = serde_json::from_str::<Map<String, Value>>(&key.key_json) else {
            tracing::warn!(%user, usage = key.usage, "unreadable cross-signing key skipped");
            continue;
        };
        merge_signatures(&mut object, signatures.iter().filter(|s| s.target_key == key.key_id));
        visible.push((key.usage, super::to_raw(&object)?));
    }
    Ok(visible)
}

/// The signatures of one uploaded key, or its errcode and message.
type Checked = std::result::Result<Vec<KeySignature>, (&'static str, String)>;

/// A cross-signing key as stored: checked against the uploader, its usage
/// and (for self-signing and user-signing keys) the master key's signature.
fn checked_signing_key(
    who: &Identity,
    raw: &Raw<CrossSigningKey>,
    usage: &str,
    master_key_id: Option<&str>,
) -> Result<CrossSigningKeyRow> {
    let field = format!("{usage}_key");
    let key: CrossSigningKey = raw.deserialize().map_err(|e| Error::bad_json(format!("{field}: {e}")))?;
    if key.user_id != who.user_id {
        return Err(Error::invalid_param(format!("{field} must be a key of the uploading user")));
    }
    if !key.usage.iter().any(|u| u.as_str() == usage) {
        return Err(Error::invalid_param(format!("{field} must have the usage {usage}")));
    }
    let mut keys = key.keys.iter();
    let (Some((key_id, public_key)), None) = (keys.next(), keys.next()) else {
        return Err(Error::invalid_param(format!("{field} must hold exactly one key")));
    };
    let key_id = key_id.to_string();
    if key_id.strip_prefix("ed25519:") != Some(public_key.as_str()) {
        return Err(Error::invalid_param(format!("{field} must be an ed25519 key named by its public key")));
    }
    let mut object: Map<String, Value> =
        serde_json::from_str(raw.json().get()).map_err(|e| Error::bad_json(format!("{field}: {e}")))?;
    object.remove("unsigned");
    if let Some(master_key_id) = master_key_id {
        let signature = signature_of(&object, &who.user_id, master_key_id)
            .ok_or_else(|| Error::invalid_signature(format!("{field} is not signed by the master key")))?;
        verify_signature(&object, public_part(master_key_id), &signature).map_err(|_| {
            Error::invalid_signature(format!("{field}: the master key's signature does not verify"))
        })?;
    }
    let key_json = ruma::CanonicalJsonValue::try_from(Value::Object(object))
        .map_err(|e| Error::bad_json(format!("{field}: {e}")))?
        .to_string();
    Ok(CrossSigningKeyRow { usage: usage.to_owned(), key_id, key_json })
}

/// Adds the signatures to a key's `signatures`.
pub(super) fn merge_signatures<'a>(
    object: &mut Map<String, Value>,
    signatures: impl Iterator<Item = &'a KeySignature>,
) {
    for signature in signatures {
        let all = object.entry("signatures").or_insert_with(|| json!({}));
        if let Some(all) = all.as_object_mut() {
            let by_user = all.entry(signature.signer_user_id.clone()).or_insert_with(|| json!({}));
            if let Some(by_user) = by_user.as_object_mut() {
                by_user.insert(signature.signer_key_id.clone(), Value::String(signature.signature.clone()));
            }
        }
    }
}

fn key_signature(
    target: &UserId,
    target_key: &str,
    signer: &UserId,
    signer_key_id: &str,
    signature: String,
) -> KeySignature {
    KeySignature {
        target_user_id: target.to_string(),
        target_key: target_key.to_owned(),
        signer_user_id: signer.to_string(),
        signer_key_id: signer_key_id.to_owned(),
        signature,
    }
}

fn failure(failures: &mut SignatureFailures, user: &UserId, key: &str, errcode: &str, error: &str) {
    failures
        .entry(user.to_owned())
        .or_default()
        .insert(key.to_owned(), json!({ "errcode": errcode, "error": error }));
}

/// Whether `key` (as a client names it in `/keys/signatures/upload`: the
/// bare public key, or the whole ID) names the stored key `key_id`.
fn is_key(key_id: &str, key: &str) -> bool {
    key_id == key || public_part(key_id) == key
}

/// The public key of an `ed25519:<public key>` ID.
fn public_part(key_id: &str) -> &str {
    key_id.strip_prefix("ed25519:").unwrap_or(key_id)
}

/// Whether the uploaded object is the stored key, signatures aside.
fn same_key(object: &Map<String, Value>, stored_json: &str) -> bool {
    let Ok(stored) = serde_json::from_str::<Map<String, Value>>(stored_json) else {
        return false;
    };
    canonical_without_signatures(object).is_some()
        && canonical_without_signatures(object) == canonical_without_signatures(&stored)
}

/// The signatures in the object by the user's keys, by key ID.
fn signatures_by(object: &Map<String, Value>, user: &UserId) -> Vec<(String, String)> {
    let Some(by_user) =
        object.get("signatures").and_then(|s| s.get(user.as_str())).and_then(Value::as_object)
    else {
        return Vec::new();
    };
    by_user.iter().filter_map(|(id, sig)| Some((id.clone(), sig.as_str()?.to_owned()))).collect()
}

fn signature_of(object: &Map<String, Value>, user: &UserId, key_id: &str) -> Option<String> {
    object.get("signatures")?.get(user.as_str())?.get(key_id)?.as_str().map(str::to_owned)
}

/// A device's public ed25519 key of the given ID, from its stored keys.
fn ed25519_key_of(keys_json: &str, key_id: &str) -> Option<String> {
    let keys: Value = serde_json::from_str(keys_json).ok()?;
    keys.get("keys")?.get(key_id)?.as_str().map(str::to_owned)
}
