//! The room directory for other servers: `GET` and `POST
//! /_matrix/federation/v1/publicRooms`, this server's published rooms as
//! its own clients see them; and `GET /_matrix/federation/v1/hierarchy`,
//! a space and its direct children as the asking server may see them.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#public-room-directory>,
//! <https://spec.matrix.org/v1.16/server-server-api/#spaces>.

use axum::{Json, Router, extract::State};
use ruma::{
    api::federation::{
        directory::{get_public_rooms, get_public_rooms_filtered},
        space::get_hierarchy,
    },
    directory::{Filter, RoomNetwork},
};
use serde_json::{Value, json};
use tessera_web::{Ruma, WebError, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new()
        .ruma_route::<get_public_rooms::v1::Request, _, _>(public_rooms)
        .ruma_route::<get_public_rooms_filtered::v1::Request, _, _>(public_rooms_filtered)
        .ruma_route::<get_hierarchy::v1::Request, _, _>(hierarchy)
}

async fn hierarchy(
    State(state): State<FederationState>,
    req: Ruma<get_hierarchy::v1::Request>,
) -> Result<Json<Value>, WebError> {
    let origin = req.origin()?;
    let found = state.rooms.hierarchy_for_server(origin, &req.body.room_id, req.body.suggested_only).await?;
    let (mut room, children_state) = found.room;
    room["children_state"] = Value::Array(children_state);
    Ok(Json(json!({
        "room": room,
        "children": found.children,
        "inaccessible_children": found.inaccessible_children,
    })))
}

async fn public_rooms(
    State(state): State<FederationState>,
    req: Ruma<get_public_rooms::v1::Request>,
) -> Result<Json<Value>, WebError> {
    req.origin()?;
    let body = &req.body;
    let page = state
        .rooms
        .public_rooms(None, &body.room_network, &Filter::new(), body.since.as_deref(), body.limit)
        .await?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = page.total_room_count_estimate;
    tessera_web::public_rooms_json(response)
}

async fn public_rooms_filtered(
    State(state): State<FederationState>,
    req: Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<Json<Value>, WebError> {
    req.origin()?;
    let body = &req.body;
    let network: &RoomNetwork = &body.room_network;
    let page =
        state.rooms.public_rooms(None, network, &body.filter, body.since.as_deref(), body.limit).await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = page.total_room_count_estimate;
    tessera_web::public_rooms_json(response)
}
