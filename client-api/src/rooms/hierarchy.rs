//! `GET /v1/rooms/{roomId}/hierarchy`.

use axum::{Router, extract::State};
use ruma::{
    api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy},
    serde::Raw,
};
use tessera_service::{Error, rooms::hierarchy::HierarchyQuery};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new().ruma_route::<get_hierarchy::v1::Request, _, _>(hierarchy)
}

async fn hierarchy(
    State(state): State<ClientState>,
    req: Ruma<get_hierarchy::v1::Request, GuestsAllowed>,
) -> Result<get_hierarchy::v1::Response> {
    let body = &req.body;
    let number = |n: Option<ruma::UInt>| n.and_then(|n| usize::try_from(u64::from(n)).ok());
    let query = HierarchyQuery {
        from: body.from.as_deref(),
        limit: number(body.limit).unwrap_or(50),
        max_depth: number(body.max_depth),
        suggested_only: body.suggested_only,
    };
    let (rooms, next_batch) = state.rooms.hierarchy(req.identity()?, &body.room_id, &query).await?;
    let mut response = get_hierarchy::v1::Response::new();
    for room in rooms {
        let children = room
            .children_state
            .iter()
            .map(|child| serde_json::value::to_raw_value(child).map(Raw::from_json).map_err(Error::internal))
            .collect::<std::result::Result<_, _>>()?;
        response.rooms.push(SpaceHierarchyRoomsChunk::new(room.summary.into(), children));
    }
    response.next_batch = next_batch;
    Ok(response.into())
}
