//! `PUT /sendToDevice/{eventType}/{txnId}`.

use std::collections::BTreeMap;

use axum::{Router, extract::State};
use ruma::{api::client::to_device::send_event_to_device, to_device::DeviceIdOrAllDevices};
use tessera_service::to_device::Devices;
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new().ruma_route::<send_event_to_device::v3::Request, _, _>(send)
}

async fn send(
    State(state): State<ClientState>,
    req: Ruma<send_event_to_device::v3::Request, GuestsAllowed>,
) -> Result<send_event_to_device::v3::Response> {
    let body = &req.body;
    let messages = body
        .messages
        .iter()
        .map(|(user, devices)| {
            let devices = devices
                .iter()
                .map(|(device, content)| {
                    let target = match device {
                        DeviceIdOrAllDevices::DeviceId(id) => Devices::One(id.clone()),
                        _ => Devices::All,
                    };
                    (target, content.json().get().to_owned())
                })
                .collect();
            (user.clone(), devices)
        })
        .collect::<BTreeMap<_, _>>();
    state
        .to_device
        .send(req.identity()?, &body.event_type.to_string(), body.txn_id.as_str(), messages)
        .await?;
    Ok(send_event_to_device::v3::Response::new().into())
}
