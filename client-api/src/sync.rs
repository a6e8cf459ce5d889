//! `GET /_matrix/client/v3/sync` and the filter endpoints
//! `POST /user/{userId}/filter`, `GET /user/{userId}/filter/{filterId}`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#syncing>.

use std::time::Duration;

use axum::{Router, extract::State};
use ruma::{
    OwnedRoomId, UInt, UserId,
    api::client::{
        filter::{FilterDefinition, create_filter, get_filter},
        sync::sync_events::{
            self,
            v3::{Filter, JoinedRoom, LeftRoom, State as RoomState, StateEvents},
        },
    },
    serde::Raw,
};
use tessera_service::{
    Error,
    auth::Identity,
    rooms::ClientEvent,
    sync::{SyncRequest, SyncResponse},
};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<sync_events::v3::Request, _, _>(sync)
        .ruma_route::<create_filter::v3::Request, _, _>(post_filter)
        .ruma_route::<get_filter::v3::Request, _, _>(fetch_filter)
}

/// Not an `async fn`: one keeps its arguments for as long as it runs, and
/// a long-poll runs for as long as it waits. The request (with its ~1 KiB
/// filter) is taken apart here and kept once, boxed.
fn sync(
    State(state): State<ClientState>,
    req: Ruma<sync_events::v3::Request, GuestsAllowed>,
) -> impl Future<Output = Result<sync_events::v3::Response>> + Send {
    let prepared = sync_request(req).map(Box::new);
    async move {
        let mut prepared = prepared?;
        if let Some(id) = prepared.filter_id.take() {
            prepared.request.filter = Box::pin(state.sync.get_filter(&prepared.me.user_id, &id)).await?;
        }
        let response = state.sync.sync(&prepared.me, &prepared.request).await?;
        Ok(to_ruma(response)?.into())
    }
}

/// A `/sync` request as the service takes it.
struct Prepared {
    me: Identity,
    request: SyncRequest,
    /// The stored filter the request names, if it names one.
    filter_id: Option<String>,
}

fn sync_request(req: Ruma<sync_events::v3::Request, GuestsAllowed>) -> std::result::Result<Prepared, Error> {
    let me = req.identity()?.clone();
    let body = req.body;
    let (filter, filter_id) = match body.filter {
        None => (FilterDefinition::default(), None),
        Some(Filter::FilterDefinition(filter)) => (filter, None),
        // ruma reads an inline filter it cannot parse as a filter ID; no
        // stored filter's ID starts with `{`, so it is a bad inline filter.
        Some(Filter::FilterId(id)) if id.trim_start().starts_with('{') => {
            return Err(inline_filter(&id).err().unwrap_or_else(|| Error::bad_json("Invalid filter")));
        }
        Some(Filter::FilterId(id)) => (FilterDefinition::default(), Some(id)),
        Some(_) => return Err(Error::invalid_param("Unknown filter form")),
    };
    let request = SyncRequest {
        since: body.since,
        timeout: body.timeout.unwrap_or(Duration::ZERO),
        set_presence: body.set_presence.to_string(),
        full_state: body.full_state,
        filter,
        use_state_after: body.use_state_after,
    };
    Ok(Prepared { me, request, filter_id })
}

/// Resolves `/sync`'s `filter` parameter: inline JSON or a stored ID.
pub(crate) async fn resolve_filter(
    state: &ClientState,
    me: &Identity,
    filter: Option<&str>,
) -> std::result::Result<FilterDefinition, Error> {
    match filter.map(str::trim) {
        None | Some("") => Ok(FilterDefinition::default()),
        Some(json) if json.starts_with('{') => inline_filter(json),
        Some(id) => state.sync.get_filter(&me.user_id, id).await,
    }
}

/// An inline filter: 400 `M_NOT_JSON` if it is not JSON, `M_BAD_JSON` if
/// it is not a filter.
fn inline_filter(json: &str) -> std::result::Result<FilterDefinition, Error> {
    tessera_web::input::check_json_body(json.as_bytes())?;
    serde_json::from_str(json).map_err(|e| Error::bad_json(format!("Invalid filter: {e}")))
}

/// The service's sections as ruma's response.
pub(crate) fn to_ruma(response: SyncResponse) -> std::result::Result<sync_events::v3::Response, Error> {
    let mut out = sync_events::v3::Response::new(response.next_batch.to_string());
    out.account_data.events = values(response.account_data)?;
    out.to_device.events = values(response.to_device)?;
    out.presence.events = values(response.presence)?;
    let room_id = |id: &str| OwnedRoomId::try_from(id).map_err(Error::internal);
    let state_after = response.state_after;
    let room_state = |events| {
        let mut state = StateEvents::new();
        state.events = events;
        if state_after { RoomState::After(state) } else { RoomState::Before(state) }
    };
    for room in response.join {
        let mut joined = JoinedRoom::new();
        joined.timeline.events = raws(room.timeline)?;
        joined.timeline.limited = room.limited;
        joined.timeline.prev_batch = room.prev_batch;
        joined.state = room_state(raws(room.state)?);
        if let Some(summary) = room.summary {
            joined.summary.heroes = summary.heroes.iter().filter_map(|h| UserId::parse(h).ok()).collect();
            joined.summary.joined_member_count = UInt::try_from(summary.joined_member_count).ok();
            joined.summary.invited_member_count = UInt::try_from(summary.invited_member_count).ok();
        }
        joined.account_data.events = values(room.account_data)?;
        joined.ephemeral.events = values(room.ephemeral)?;
        joined.unread_notifications = unread_count(room.unread);
        for (root, unread) in room.unread_threads {
            let root = ruma::OwnedEventId::try_from(root).map_err(Error::internal)?;
            joined.unread_thread_notifications.insert(root, unread_count(unread));
        }
        out.rooms.join.insert(room_id(&room.room_id)?, joined);
    }
    for room in response.invite {
        let mut invited = sync_events::v3::InvitedRoom::new();
        invited.invite_state.events = values(room.invite_state)?;
        out.rooms.invite.insert(room_id(&room.room_id)?, invited);
    }
    for room in response.knock {
        let mut knocked = sync_events::v3::KnockedRoom::new();
        knocked.knock_state.events = values(room.knock_state)?;
        out.rooms.knock.insert(room_id(&room.room_id)?, knocked);
    }
    for room in response.leave {
        let mut left = LeftRoom::new();
        left.timeline.events = raws(room.timeline)?;
        left.timeline.limited = room.limited;
        left.timeline.prev_batch = room.prev_batch;
        left.state = room_state(raws(room.state)?);
        out.rooms.leave.insert(room_id(&room.room_id)?, left);
    }
    Ok(out)
}

/// Plain JSON events (account data) as ruma's raw type.
fn values<T>(events: Vec<serde_json::Value>) -> std::result::Result<Vec<Raw<T>>, Error> {
    events
        .iter()
        .map(|e| serde_json::value::to_raw_value(e).map(Raw::from_json).map_err(Error::internal))
        .collect()
}

/// Client events as the ruma type a section wants.
fn raws<T>(events: Vec<ClientEvent>) -> std::result::Result<Vec<Raw<T>>, Error> {
    Ok(events.into_iter().map(|e| Raw::from_json(e.into_json())).collect())
}

fn check_own(me: &Identity, user: &UserId) -> std::result::Result<(), Error> {
    if me.user_id != user {
        return Err(Error::forbidden("You cannot use another user's filters"));
    }
    Ok(())
}

async fn post_filter(
    State(state): State<ClientState>,
    req: Ruma<create_filter::v3::Request, GuestsAllowed>,
) -> Result<create_filter::v3::Response> {
    let me = req.identity()?;
    check_own(me, &req.body.user_id)?;
    let id = state.sync.create_filter(&me.user_id, &req.body.filter).await?;
    Ok(create_filter::v3::Response::new(id).into())
}

async fn fetch_filter(
    State(state): State<ClientState>,
    req: Ruma<get_filter::v3::Request, GuestsAllowed>,
) -> Result<get_filter::v3::Response> {
    let me = req.identity()?;
    check_own(me, &req.body.user_id)?;
    let filter = state.sync.get_filter(&me.user_id, &req.body.filter_id).await?;
    Ok(get_filter::v3::Response::new(filter).into())
}

/// The spec's `unread_notifications` object for a room or thread.
fn unread_count(unread: tessera_service::sync::Unread) -> sync_events::UnreadNotificationsCount {
    let mut count = sync_events::UnreadNotificationsCount::new();
    count.notification_count = UInt::try_from(unread.notifications).ok();
    count.highlight_count = UInt::try_from(unread.highlights).ok();
    count
}
