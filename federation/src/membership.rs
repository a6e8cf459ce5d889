//! Joining this server's rooms from other servers: `GET /make_join` (v1)
//! and `PUT /send_join` (v2).
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#joining-rooms>.

use axum::{Router, extract::State};
use ruma::api::federation::membership::{create_join_event, prepare_join_event};
use serde_json::value::to_raw_value;
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new()
        .ruma_route::<prepare_join_event::v1::Request, _, _>(make_join)
        .ruma_route::<create_join_event::v2::Request, _, _>(send_join)
}

async fn make_join(
    State(state): State<FederationState>,
    req: Ruma<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response> {
    let origin = req.origin()?;
    let (version, event) =
        state.rooms.make_join(origin, &req.body.room_id, &req.body.user_id, &req.body.ver).await?;
    let mut response = prepare_join_event::v1::Response::new(to_raw_value(&event).map_err(Error::internal)?);
    response.room_version = Some(version);
    Ok(response.into())
}

async fn send_join(
    State(state): State<FederationState>,
    req: Ruma<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response> {
    let origin = req.origin()?;
    let room_state =
        state.rooms.send_join(origin, &req.body.room_id, &req.body.event_id, &req.body.pdu).await?;
    Ok(create_join_event::v2::Response::new(room_state).into())
}
