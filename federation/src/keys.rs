//! `GET /_matrix/key/v2/server`: this server's published signing key.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#publishing-keys>.

use std::{collections::BTreeMap, time::Duration};

use axum::{Router, extract::State};
use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch,
    api::federation::discovery::{ServerSigningKeys, VerifyKey, get_server_keys},
    serde::Raw,
};
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

/// How long other servers may cache the key. Short, so a rotated key is
/// picked up within a day.
const VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

pub(crate) fn routes() -> Router<FederationState> {
    Router::new().ruma_route::<get_server_keys::v2::Request, _, _>(server_keys)
}

async fn server_keys(
    State(state): State<FederationState>,
    _: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let key = &state.signing_key;
    let valid_until = MilliSecondsSinceUnixEpoch::from_system_time(std::time::SystemTime::now() + VALIDITY)
        .ok_or_else(|| Error::internal("clock out of range"))?;
    let mut keys = ServerSigningKeys::new(key.server_name().clone(), valid_until);
    keys.verify_keys = BTreeMap::from([(key.key_id().clone(), VerifyKey::new(key.public_key()))]);
    let mut object: CanonicalJsonObject =
        serde_json::to_value(&keys).and_then(serde_json::from_value).map_err(Error::internal)?;
    object.remove("signatures");
    key.sign(&mut object).map_err(Error::internal)?;
    let raw = Raw::from_json(serde_json::value::to_raw_value(&object).map_err(Error::internal)?);
    Ok(get_server_keys::v2::Response::new(raw).into())
}
