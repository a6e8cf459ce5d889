//! Room events for other servers: `GET /event/{eventId}`, the PDU as
//! signed, if the asking server may see it.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1eventeventid>.

use axum::{Router, extract::State};
use ruma::{MilliSecondsSinceUnixEpoch, api::federation::event::get_event};
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new().ruma_route::<get_event::v1::Request, _, _>(event)
}

async fn event(
    State(state): State<FederationState>,
    req: Ruma<get_event::v1::Request>,
) -> Result<get_event::v1::Response> {
    let origin = req.origin()?;
    let event = state.rooms.event_for_server(origin, &req.body.event_id).await?;
    let pdu = serde_json::value::RawValue::from_string(event.json.to_string()).map_err(Error::internal)?;
    let us = state.server_keys.server_name().to_owned();
    Ok(get_event::v1::Response::new(us, MilliSecondsSinceUnixEpoch::now(), pdu).into())
}
