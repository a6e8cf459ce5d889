//! Memberships of other servers' users in this server's rooms, and
//! invites of this server's users: `make_join` (v1) / `send_join` (v2),
//! `make_leave` (v1) / `send_leave` (v2), `make_knock` / `send_knock`
//! (v1), and `invite` (v2); the deprecated v1 `send_join` and
//! `send_leave` too (`membership_v1.rs`).
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#joining-rooms>
//! and the sections after it.

use axum::{Router, extract::State};
use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
    prepare_knock_event, prepare_leave_event,
};
use serde_json::value::to_raw_value;
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::{FederationState, membership_v1};

pub(crate) fn routes() -> Router<FederationState> {
    Router::new()
        .ruma_route::<prepare_join_event::v1::Request, _, _>(make_join)
        .ruma_route::<create_join_event::v2::Request, _, _>(send_join)
        .ruma_route::<membership_v1::SendJoin, _, _>(send_join_v1)
        .ruma_route::<prepare_leave_event::v1::Request, _, _>(make_leave)
        .ruma_route::<create_leave_event::v2::Request, _, _>(send_leave)
        .ruma_route::<membership_v1::SendLeave, _, _>(send_leave_v1)
        .ruma_route::<prepare_knock_event::v1::Request, _, _>(make_knock)
        .ruma_route::<create_knock_event::v1::Request, _, _>(send_knock)
        .ruma_route::<create_invite::v2::Request, _, _>(invite)
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
    let room_state = state
        .rooms
        .send_join(origin, &req.body.room_id, &req.body.event_id, &req.body.pdu, req.body.omit_members)
        .await?;
    Ok(create_join_event::v2::Response::new(room_state).into())
}

async fn send_join_v1(
    State(state): State<FederationState>,
    req: Ruma<membership_v1::SendJoin>,
) -> Result<membership_v1::Answer> {
    let origin = req.origin()?;
    let body = &req.body.0;
    let room_state = state.rooms.send_join(origin, &body.room_id, &body.event_id, &body.pdu, false).await?;
    Ok(membership_v1::Answer::new(&room_state).map_err(Error::internal)?.into())
}

async fn make_leave(
    State(state): State<FederationState>,
    req: Ruma<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response> {
    let origin = req.origin()?;
    let (version, event) = state.rooms.make_leave(origin, &req.body.room_id, &req.body.user_id).await?;
    let event = to_raw_value(&event).map_err(Error::internal)?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), event).into())
}

async fn send_leave(
    State(state): State<FederationState>,
    req: Ruma<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response> {
    let origin = req.origin()?;
    state.rooms.send_leave(origin, &req.body.room_id, &req.body.event_id, &req.body.pdu).await?;
    Ok(create_leave_event::v2::Response::new().into())
}

async fn send_leave_v1(
    State(state): State<FederationState>,
    req: Ruma<membership_v1::SendLeave>,
) -> Result<membership_v1::Answer> {
    let origin = req.origin()?;
    let body = &req.body.0;
    state.rooms.send_leave(origin, &body.room_id, &body.event_id, &body.pdu).await?;
    Ok(membership_v1::Answer::new(&serde_json::json!({})).map_err(Error::internal)?.into())
}

async fn make_knock(
    State(state): State<FederationState>,
    req: Ruma<prepare_knock_event::v1::Request>,
) -> Result<prepare_knock_event::v1::Response> {
    let origin = req.origin()?;
    let (version, event) =
        state.rooms.make_knock(origin, &req.body.room_id, &req.body.user_id, &req.body.ver).await?;
    let event = to_raw_value(&event).map_err(Error::internal)?;
    Ok(prepare_knock_event::v1::Response::new(version, event).into())
}

async fn send_knock(
    State(state): State<FederationState>,
    req: Ruma<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response> {
    let origin = req.origin()?;
    let knock_room_state =
        state.rooms.send_knock(origin, &req.body.room_id, &req.body.event_id, &req.body.pdu).await?;
    Ok(create_knock_event::v1::Response::new(knock_room_state).into())
}

async fn invite(
    State(state): State<FederationState>,
    req: Ruma<create_invite::v2::Request>,
) -> Result<create_invite::v2::Response> {
    let origin = req.origin()?;
    let body = &req.body;
    let event = state
        .rooms
        .receive_invite(
            origin,
            &body.room_id,
            &body.event_id,
            &body.room_version,
            &body.event,
            &body.invite_room_state,
        )
        .await?;
    Ok(create_invite::v2::Response::new(event).into())
}
