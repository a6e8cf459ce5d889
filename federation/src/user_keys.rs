//! Other servers asking for this server's users' devices and keys:
//! `POST /user/keys/query`, `POST /user/keys/claim` and
//! `GET /user/devices/{userId}`. Only local users are answered; a request
//! naming other servers' users gets nothing for them.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#end-to-end-encryption>.

use std::collections::BTreeMap;

use axum::{Router, extract::State};
use ruma::{
    UInt,
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
    },
};
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new()
        .ruma_route::<get_keys::v1::Request, _, _>(query)
        .ruma_route::<claim_keys::v1::Request, _, _>(claim)
        .ruma_route::<get_devices::v1::Request, _, _>(devices)
}

async fn query(
    State(state): State<FederationState>,
    req: Ruma<get_keys::v1::Request>,
) -> Result<get_keys::v1::Response> {
    req.origin()?;
    let found = state.keys.query_local(None, &req.body.device_keys).await?;
    let mut response = get_keys::v1::Response::new(found.device_keys);
    response.master_keys = found.master_keys;
    response.self_signing_keys = found.self_signing_keys;
    Ok(response.into())
}

async fn claim(
    State(state): State<FederationState>,
    req: Ruma<claim_keys::v1::Request>,
) -> Result<claim_keys::v1::Response> {
    req.origin()?;
    let found = state.keys.claim_local(&req.body.one_time_keys).await?;
    Ok(claim_keys::v1::Response::new(found.keys).into())
}

async fn devices(
    State(state): State<FederationState>,
    req: Ruma<get_devices::v1::Request>,
) -> Result<get_devices::v1::Response> {
    req.origin()?;
    let user = &req.body.user_id;
    if user.server_name() != state.server_keys.server_name() {
        return Err(Error::invalid_param("The user is not on this server").into());
    }
    let wanted = BTreeMap::from([(user.clone(), Vec::new())]);
    let mut found = state.keys.query_local(None, &wanted).await?;
    let stream_id = state.keys.device_list_version(user).await?;
    let mut response =
        get_devices::v1::Response::new(user.clone(), UInt::try_from(stream_id).unwrap_or_default());
    for (device_id, keys) in found.device_keys.remove(user).unwrap_or_default() {
        let name = keys.get_field::<serde_json::Value>("unsigned").ok().flatten().and_then(|unsigned| {
            unsigned.get("device_display_name").and_then(|name| name.as_str()).map(str::to_owned)
        });
        let mut device = get_devices::v1::UserDevice::new(device_id, keys);
        device.device_display_name = name;
        response.devices.push(device);
    }
    response.master_key = found.master_keys.remove(user);
    response.self_signing_key = found.self_signing_keys.remove(user);
    Ok(response.into())
}
