//! Room directory: `PUT/GET/DELETE /directory/room/{roomAlias}`,
//! `GET /rooms/{roomId}/aliases`, `GET/PUT /directory/list/room/{roomId}`,
//! `GET/POST /publicRooms`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#room-aliases>,
//! <https://spec.matrix.org/v1.16/client-server-api/#published-room-directory>.

use axum::{Json, Router, extract::State};
use ruma::{
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility},
        room::{Visibility, aliases},
    },
    directory::{Filter, RoomNetwork},
};
use serde_json::Value;
use tessera_service::Error;
use tessera_web::{GuestsAllowed, Result, Ruma, WebError, routing::RumaRoutes};

use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<create_alias::v3::Request, _, _>(put_alias)
        .ruma_route::<get_alias::v3::Request, _, _>(get_room_alias)
        .ruma_route::<delete_alias::v3::Request, _, _>(remove_alias)
        .ruma_route::<aliases::v3::Request, _, _>(local_aliases)
        .ruma_route::<get_room_visibility::v3::Request, _, _>(get_visibility)
        .ruma_route::<set_room_visibility::v3::Request, _, _>(set_visibility)
        .ruma_route::<get_public_rooms::v3::Request, _, _>(public_rooms)
        .ruma_route::<get_public_rooms_filtered::v3::Request, _, _>(public_rooms_filtered)
}

/// `PUT /directory/room/{roomAlias}`.
async fn put_alias(
    State(state): State<ClientState>,
    req: Ruma<create_alias::v3::Request>,
) -> Result<create_alias::v3::Response> {
    state.rooms.create_alias(req.identity()?, &req.body.room_alias, &req.body.room_id).await?;
    Ok(create_alias::v3::Response::new().into())
}

/// `GET /directory/room/{roomAlias}`.
async fn get_room_alias(
    State(state): State<ClientState>,
    req: Ruma<get_alias::v3::Request>,
) -> Result<get_alias::v3::Response> {
    let (room_id, servers) = state.rooms.get_alias(&req.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers).into())
}

/// `DELETE /directory/room/{roomAlias}`.
async fn remove_alias(
    State(state): State<ClientState>,
    req: Ruma<delete_alias::v3::Request>,
) -> Result<delete_alias::v3::Response> {
    state.rooms.delete_alias(req.identity()?, &req.body.room_alias).await?;
    Ok(delete_alias::v3::Response::new().into())
}

/// `GET /rooms/{roomId}/aliases`.
async fn local_aliases(
    State(state): State<ClientState>,
    req: Ruma<aliases::v3::Request>,
) -> Result<aliases::v3::Response> {
    let aliases = state.rooms.local_aliases(req.identity()?, &req.body.room_id).await?;
    Ok(aliases::v3::Response::new(aliases).into())
}

/// `GET /directory/list/room/{roomId}`.
async fn get_visibility(
    State(state): State<ClientState>,
    req: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response> {
    let public = state.rooms.is_published(&req.body.room_id).await?;
    let visibility = if public { Visibility::Public } else { Visibility::Private };
    Ok(get_room_visibility::v3::Response::new(visibility).into())
}

/// `PUT /directory/list/room/{roomId}`.
async fn set_visibility(
    State(state): State<ClientState>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response> {
    let public = match req.body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => return Err(Error::invalid_param("visibility must be public or private").into()),
    };
    state.rooms.set_published(req.identity()?, &req.body.room_id, public).await?;
    Ok(set_room_visibility::v3::Response::new().into())
}

/// `GET /publicRooms`.
async fn public_rooms(
    State(state): State<ClientState>,
    req: Ruma<get_public_rooms::v3::Request>,
) -> std::result::Result<Json<Value>, WebError> {
    let body = &req.body;
    let page = state
        .rooms
        .public_rooms(
            body.server.as_deref(),
            &RoomNetwork::Matrix,
            &Filter::new(),
            body.since.as_deref(),
            body.limit,
        )
        .await?;
    let mut response = get_public_rooms::v3::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = page.total_room_count_estimate;
    tessera_web::public_rooms_json(response)
}

/// `POST /publicRooms`.
async fn public_rooms_filtered(
    State(state): State<ClientState>,
    req: Ruma<get_public_rooms_filtered::v3::Request, GuestsAllowed>,
) -> std::result::Result<Json<Value>, WebError> {
    let body = &req.body;
    let page = state
        .rooms
        .public_rooms(
            body.server.as_deref(),
            &body.room_network,
            &body.filter,
            body.since.as_deref(),
            body.limit,
        )
        .await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = page.total_room_count_estimate;
    tessera_web::public_rooms_json(response)
}
