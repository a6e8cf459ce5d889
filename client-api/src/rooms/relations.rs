//! `GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
//! and `GET /v1/rooms/{roomId}/threads`.

use axum::{Router, extract::State};
use ruma::{
    UInt,
    api::{
        Direction,
        client::{
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            threads::get_threads,
        },
    },
};
use tessera_service::{
    Error,
    rooms::relations::{RelationsPage, RelationsQuery},
};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use super::raw;
use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_relating_events::v1::Request, _, _>(relations)
        .ruma_route::<get_relating_events_with_rel_type::v1::Request, _, _>(relations_of_type)
        .ruma_route::<get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(
            relations_of_type_and_event,
        )
        .ruma_route::<get_threads::v1::Request, _, _>(threads)
}

/// The spec leaves the default page size to the server; Synapse uses 5 for
/// relations, which is too small for reaction lists. 50 it is.
fn limit(limit: Option<UInt>, default: usize) -> usize {
    limit.and_then(|l| usize::try_from(u64::from(l)).ok()).filter(|l| *l > 0).unwrap_or(default)
}

struct Common {
    from: Option<String>,
    to: Option<String>,
    dir: Direction,
    limit: Option<UInt>,
    recurse: bool,
}

async fn run(
    state: &ClientState,
    req_identity: &tessera_service::auth::Identity,
    room_id: &ruma::RoomId,
    event_id: &ruma::EventId,
    rel_type: Option<String>,
    event_type: Option<String>,
    common: Common,
) -> std::result::Result<(Vec<ruma::serde::Raw<ruma::events::AnyMessageLikeEvent>>, RelationsPage), Error> {
    let query = RelationsQuery {
        rel_type,
        event_type,
        from: common.from,
        to: common.to,
        backwards: common.dir == Direction::Backward,
        limit: limit(common.limit, 50),
        recurse: common.recurse,
    };
    let mut page = state.rooms.relations(req_identity, room_id, event_id, &query).await?;
    let chunk =
        std::mem::take(&mut page.chunk).into_iter().map(raw).collect::<std::result::Result<_, _>>()?;
    Ok((chunk, page))
}

async fn relations(
    State(state): State<ClientState>,
    req: Ruma<get_relating_events::v1::Request, GuestsAllowed>,
) -> Result<get_relating_events::v1::Response> {
    let b = &req.body;
    let common =
        Common { from: b.from.clone(), to: b.to.clone(), dir: b.dir, limit: b.limit, recurse: b.recurse };
    let (chunk, page) = run(&state, req.identity()?, &b.room_id, &b.event_id, None, None, common).await?;
    let mut response = get_relating_events::v1::Response::new(chunk);
    response.next_batch = page.next_batch;
    response.recursion_depth = page.recursion_depth.map(UInt::from);
    Ok(response.into())
}

async fn relations_of_type(
    State(state): State<ClientState>,
    req: Ruma<get_relating_events_with_rel_type::v1::Request, GuestsAllowed>,
) -> Result<get_relating_events_with_rel_type::v1::Response> {
    let b = &req.body;
    let common =
        Common { from: b.from.clone(), to: b.to.clone(), dir: b.dir, limit: b.limit, recurse: b.recurse };
    let rel_type = Some(b.rel_type.to_string());
    let (chunk, page) = run(&state, req.identity()?, &b.room_id, &b.event_id, rel_type, None, common).await?;
    let mut response = get_relating_events_with_rel_type::v1::Response::new(chunk);
    response.next_batch = page.next_batch;
    response.recursion_depth = page.recursion_depth.map(UInt::from);
    Ok(response.into())
}

async fn relations_of_type_and_event(
    State(state): State<ClientState>,
    req: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request, GuestsAllowed>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let b = &req.body;
    let common =
        Common { from: b.from.clone(), to: b.to.clone(), dir: b.dir, limit: b.limit, recurse: b.recurse };
    let (rel_type, event_type) = (Some(b.rel_type.to_string()), Some(b.event_type.to_string()));
    let (chunk, page) =
        run(&state, req.identity()?, &b.room_id, &b.event_id, rel_type, event_type, common).await?;
    let mut response = get_relating_events_with_rel_type_and_event_type::v1::Response::new(chunk);
    response.next_batch = page.next_batch;
    response.recursion_depth = page.recursion_depth.map(UInt::from);
    Ok(response.into())
}

async fn threads(
    State(state): State<ClientState>,
    req: Ruma<get_threads::v1::Request, GuestsAllowed>,
) -> Result<get_threads::v1::Response> {
    let b = &req.body;
    let participated = b.include == get_threads::v1::IncludeThreads::Participated;
    let (chunk, next_batch) = state
        .rooms
        .threads(req.identity()?, &b.room_id, participated, b.from.as_deref(), limit(b.limit, 20))
        .await?;
    let mut response =
        get_threads::v1::Response::new(chunk.into_iter().map(raw).collect::<std::result::Result<_, _>>()?);
    response.next_batch = next_batch;
    Ok(response.into())
}
