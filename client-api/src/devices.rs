//! Devices: `GET /devices`, `GET/PUT/DELETE /devices/{deviceId}`,
//! `POST /delete_devices`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#device-management>.

use axum::{Router, extract::State};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::device::{self, delete_device, delete_devices, get_device, get_devices, update_device},
};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_devices::v3::Request, _, _>(list)
        .ruma_route::<get_device::v3::Request, _, _>(get)
        .ruma_route::<update_device::v3::Request, _, _>(update)
        .ruma_route::<delete_device::v3::Request, _, _>(delete)
        .ruma_route::<delete_devices::v3::Request, _, _>(delete_many)
}

fn to_ruma(d: tessera_service::Device) -> device::Device {
    let mut device = device::Device::new(d.device_id);
    device.display_name = d.display_name;
    device.last_seen_ip = d.last_seen_ip;
    device.last_seen_ts =
        d.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
    device
}

async fn list(
    State(state): State<ClientState>,
    req: Ruma<get_devices::v3::Request, GuestsAllowed>,
) -> Result<get_devices::v3::Response> {
    let devices = state.devices.list(&req.identity()?.user_id).await?;
    Ok(get_devices::v3::Response::new(devices.into_iter().map(to_ruma).collect()).into())
}

async fn get(
    State(state): State<ClientState>,
    req: Ruma<get_device::v3::Request, GuestsAllowed>,
) -> Result<get_device::v3::Response> {
    let device = state.devices.get(&req.identity()?.user_id, &req.body.device_id).await?;
    Ok(get_device::v3::Response::new(to_ruma(device)).into())
}

async fn update(
    State(state): State<ClientState>,
    req: Ruma<update_device::v3::Request, GuestsAllowed>,
) -> Result<update_device::v3::Response> {
    let me = req.identity()?;
    state.devices.rename(&me.user_id, &req.body.device_id, req.body.display_name.as_deref()).await?;
    Ok(update_device::v3::Response::new().into())
}

async fn delete(
    State(state): State<ClientState>,
    req: Ruma<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response> {
    // A device that does not exist (or was already removed) is a success,
    // as the spec's only documented answers are 200 and 401.
    let me = req.identity()?;
    state.devices.delete(me, std::slice::from_ref(&req.body.device_id), req.body.auth.as_ref()).await?;
    Ok(delete_device::v3::Response::new().into())
}

async fn delete_many(
    State(state): State<ClientState>,
    req: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response> {
    state.devices.delete(req.identity()?, &req.body.devices, req.body.auth.as_ref()).await?;
    Ok(delete_devices::v3::Response::new().into())
}
