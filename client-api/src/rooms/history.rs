//! History and members: `GET /rooms/{roomId}/messages`, `/members`,
//! `/joined_members`.

use axum::{Router, extract::State};
use ruma::api::{
    Direction as RumaDirection,
    client::{
        context::get_context,
        filter::{LazyLoadOptions, RoomEventFilter},
        membership::{get_member_events, joined_members},
        message::get_message_events,
        room::get_event_by_timestamp,
    },
};
use tessera_service::{
    Error,
    rooms::{Direction, HistoryQuery, RoomToken, read::EventFilter},
};
use tessera_web::{GuestsAllowed, Result, Ruma, WebError, routing::RumaRoutes};

use super::raw;
use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_message_events::v3::Request, _, _>(messages)
        .ruma_route::<get_member_events::v3::Request, _, _>(members)
        .ruma_route::<joined_members::v3::Request, _, _>(joined_members)
        .ruma_route::<get_context::v3::Request, _, _>(context)
        .ruma_route::<get_event_by_timestamp::v1::Request, _, _>(timestamp_to_event)
}

/// The event fields of a room event filter.
fn event_filter(filter: &RoomEventFilter) -> EventFilter {
    EventFilter {
        types: filter.types.clone(),
        not_types: filter.not_types.clone(),
        senders: filter.senders.as_ref().map(|s| s.iter().map(ToString::to_string).collect()),
        not_senders: filter.not_senders.iter().map(ToString::to_string).collect(),
        contains_url: filter.url_filter.map(|url| url == ruma::api::client::filter::UrlFilter::EventsWithUrl),
    }
}

/// `GET /rooms/{roomId}/context/{eventId}`.
async fn context(
    State(state): State<ClientState>,
    req: Ruma<get_context::v3::Request, GuestsAllowed>,
) -> Result<get_context::v3::Response> {
    let body = &req.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(DEFAULT_LIMIT);
    let lazy = !matches!(body.filter.lazy_load_options, LazyLoadOptions::Disabled);
    let context = state
        .rooms
        .context(req.identity()?, &body.room_id, &body.event_id, limit, &event_filter(&body.filter), lazy)
        .await?;
    let raws = |events: Vec<tessera_service::rooms::ClientEvent>| {
        events.into_iter().map(raw).collect::<std::result::Result<Vec<_>, Error>>()
    };
    let mut response = get_context::v3::Response::new();
    response.start = Some(context.start.to_string());
    response.end = Some(context.end.to_string());
    response.events_before = raws(context.events_before)?;
    response.event = Some(raw(context.event)?);
    response.events_after = raws(context.events_after)?;
    response.state = context.state.into_iter().map(raw).collect::<std::result::Result<_, Error>>()?;
    Ok(response.into())
}

/// `GET /v1/rooms/{roomId}/timestamp_to_event`.
async fn timestamp_to_event(
    State(state): State<ClientState>,
    req: Ruma<get_event_by_timestamp::v1::Request, GuestsAllowed>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let body = &req.body;
    let ts = i64::try_from(u64::from(body.ts.0)).map_err(|_| Error::invalid_param("ts is out of range"))?;
    let forward = body.dir == RumaDirection::Forward;
    let (event_id, origin_ts) =
        state.rooms.event_at_timestamp(req.identity()?, &body.room_id, ts, forward).await?;
    let origin_ts = ruma::UInt::try_from(origin_ts).map_err(Error::internal)?;
    Ok(get_event_by_timestamp::v1::Response::new(event_id, ruma::MilliSecondsSinceUnixEpoch(origin_ts))
        .into())
}

/// Page size when the client names none (the spec's default).
const DEFAULT_LIMIT: usize = 10;

async fn messages(
    State(state): State<ClientState>,
    req: Ruma<get_message_events::v3::Request, GuestsAllowed>,
) -> Result<get_message_events::v3::Response> {
    let me = req.identity()?;
    let body = &req.body;
    let token = |t: &Option<String>| t.as_deref().map(str::parse::<RoomToken>).transpose();
    let direction = match body.dir {
        RumaDirection::Backward => Direction::Backward,
        _ => Direction::Forward,
    };
    // An absent limit is ruma's default (10); an explicit 0 asks for no
    // events, and gets none.
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(DEFAULT_LIMIT);
    let filter = event_filter(&body.filter);
    let query = HistoryQuery { from: token(&body.from)?, to: token(&body.to)?, direction, limit, filter };
    let page = state.rooms.messages(me, &body.room_id, &query).await?;
    // Lazy-loaded members: the member events of this page's senders.
    let mut member_state = Vec::new();
    if !matches!(body.filter.lazy_load_options, LazyLoadOptions::Disabled) {
        for sender in &page.senders {
            if let Ok(event) = state.rooms.state_event(me, &body.room_id, "m.room.member", sender).await {
                member_state.push(raw(event)?);
            }
        }
    }
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start.to_string();
    response.end = page.end.map(|t| t.to_string());
    response.chunk = page.chunk.into_iter().map(raw).collect::<std::result::Result<_, Error>>()?;
    response.state = member_state;
    Ok(response.into())
}

async fn members(
    State(state): State<ClientState>,
    req: Ruma<get_member_events::v3::Request, GuestsAllowed>,
) -> Result<get_member_events::v3::Response> {
    let body = &req.body;
    let events = state
        .rooms
        .members(
            req.identity()?,
            &body.room_id,
            body.at.as_deref().map(str::parse::<RoomToken>).transpose()?,
            body.membership.as_ref().map(|m| m.as_str()),
            body.not_membership.as_ref().map(|m| m.as_str()),
        )
        .await?;
    let chunk = events.into_iter().map(raw).collect::<std::result::Result<_, Error>>()?;
    Ok(get_member_events::v3::Response::new(chunk).into())
}

/// `GET /rooms/{roomId}/joined_members`: `display_name` and `avatar_url`
/// are always present, `null` when unset, as Synapse answers (ruma would
/// leave them out, and clients and Complement look for them).
async fn joined_members(
    State(state): State<ClientState>,
    req: Ruma<joined_members::v3::Request, GuestsAllowed>,
) -> std::result::Result<axum::Json<serde_json::Value>, WebError> {
    let members = state.rooms.joined_members(req.identity()?, &req.body.room_id).await?;
    let mut joined = serde_json::Map::new();
    for (user, display_name, avatar_url) in members {
        joined.insert(user, serde_json::json!({ "display_name": display_name, "avatar_url": avatar_url }));
    }
    Ok(axum::Json(serde_json::json!({ "joined": joined })))
}
