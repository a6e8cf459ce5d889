//! Verifying a room event from another server before anything else looks
//! at it: the signatures of every server that must have signed it (the
//! sender's; the event ID's in room versions 1 and 2; the authorising
//! server of a restricted join), with their keys valid when the event was
//! sent, and its content hash. A wrong hash means someone changed the
//! event after it was signed: it is kept in its redacted form, as the spec
//! says. Spec: <https://spec.matrix.org/v1.16/server-server-api/#checks-performed-on-receipt-of-a-pdu>.

use ruma::{
    OwnedServerName, RoomId, RoomVersionId,
    serde::Base64,
    signatures::{PublicKeyMap, Verified, required_server_signatures_to_verify_event},
};
use tessera_core::{EventError, Pdu, rules_for};

use super::ServerKeys;

/// At most this many servers' signatures are looked at per event (the
/// spec asks for three at most).
const MAX_SIGNING_SERVERS: usize = 4;

/// Parses and verifies a PDU from another server for `room_id` (`None`:
/// take the room from the event). Fails if it is malformed or a required
/// signature is missing or wrong; a wrong content hash gives the redacted
/// event.
pub async fn verify_pdu(
    keys: &ServerKeys,
    json: ruma::CanonicalJsonObject,
    room_id: Option<&RoomId>,
    version: &RoomVersionId,
) -> Result<Pdu, EventError> {
    let rules = rules_for(version)?;
    let pdu = Pdu::from_remote_json(json, room_id, &rules)?;
    let servers: Vec<OwnedServerName> =
        required_server_signatures_to_verify_event(&pdu.json, &rules.signatures)
            .map_err(|e| EventError::Invalid(format!("signatures: {e}")))?
            .into_iter()
            .collect();
    if servers.len() > MAX_SIGNING_SERVERS {
        return Err(EventError::Invalid("too many signing servers".into()));
    }
    let at_ts = i64::try_from(u64::from(pdu.origin_server_ts.0)).unwrap_or(i64::MAX);
    let mut public_keys = PublicKeyMap::new();
    for server in &servers {
        let key_ids: Vec<String> = match pdu.json.get("signatures") {
            Some(ruma::CanonicalJsonValue::Object(signatures)) => match signatures.get(server.as_str()) {
                Some(ruma::CanonicalJsonValue::Object(by_key)) => {
                    by_key.keys().filter(|id| id.starts_with("ed25519:")).take(4).cloned().collect()
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut set = ruma::signatures::PublicKeySet::new();
        for key_id in key_ids {
            let key = keys
                .verify_key(server, &key_id, at_ts)
                .await
                .map_err(|e| EventError::Invalid(format!("the keys of {server} are not available: {e}")))?;
            if let Some(key) = key.and_then(|k| Base64::parse(k).ok()) {
                set.insert(key_id, key);
            }
        }
        public_keys.insert(server.to_string(), set);
    }
    match ruma::signatures::verify_event(&public_keys, &pdu.json, &rules) {
        Ok(Verified::All) => Ok(pdu),
        Ok(Verified::Signatures) => {
            let redacted = pdu.redacted_json(&rules)?;
            Pdu::from_json(pdu.event_id.clone(), Some(&pdu.room_id), redacted, &rules)
        }
        Err(e) => Err(EventError::Invalid(format!("signature check failed: {e}"))),
    }
}
