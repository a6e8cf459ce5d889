//! Room history and state for other servers:
//! `GET /state_ids/{roomId}`, `GET /state/{roomId}`,
//! `GET /event_auth/{roomId}/{eventId}`, `GET /backfill/{roomId}`,
//! `POST /get_missing_events/{roomId}` and
//! `GET /timestamp_to_event/{roomId}` (all under `/_matrix/federation/v1`).
//! Who may read what is the rooms service's (`Rooms::state_for_server`
//! and its siblings), and so is the PDUs' form: as signed.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#retrieving-events>,
//! <https://spec.matrix.org/v1.16/server-server-api/#backfilling-and-retrieving-missing-events>.

use axum::{Router, extract::State};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::{
        Direction,
        federation::{
            authorization::get_event_authorization,
            backfill::get_backfill,
            event::{get_event_by_timestamp, get_missing_events, get_room_state, get_room_state_ids},
        },
    },
};
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new()
        .ruma_route::<get_room_state_ids::v1::Request, _, _>(state_ids)
        .ruma_route::<get_room_state::v1::Request, _, _>(state)
        .ruma_route::<get_event_authorization::v1::Request, _, _>(event_auth)
        .ruma_route::<get_backfill::v1::Request, _, _>(backfill)
        .ruma_route::<get_missing_events::v1::Request, _, _>(missing_events)
        .ruma_route::<get_event_by_timestamp::v1::Request, _, _>(timestamp_to_event)
}

async fn state_ids(
    State(state): State<FederationState>,
    req: Ruma<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response> {
    let body = &req.body;
    let at = state.rooms.state_ids_for_server(req.origin()?, &body.room_id, &body.event_id).await?;
    Ok(get_room_state_ids::v1::Response::new(at.auth_chain, at.state).into())
}

async fn state(
    State(state): State<FederationState>,
    req: Ruma<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response> {
    let body = &req.body;
    let at = state.rooms.state_for_server(req.origin()?, &body.room_id, &body.event_id).await?;
    Ok(get_room_state::v1::Response::new(at.auth_chain, at.state).into())
}

async fn event_auth(
    State(state): State<FederationState>,
    req: Ruma<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response> {
    let body = &req.body;
    let chain = state.rooms.event_auth_for_server(req.origin()?, &body.room_id, &body.event_id).await?;
    Ok(get_event_authorization::v1::Response::new(chain).into())
}

async fn backfill(
    State(state): State<FederationState>,
    req: Ruma<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response> {
    let body = &req.body;
    let events =
        state.rooms.backfill_for_server(req.origin()?, &body.room_id, &body.v, count(body.limit)).await?;
    let us = state.server_keys.server_name().to_owned();
    Ok(get_backfill::v1::Response::new(us, MilliSecondsSinceUnixEpoch::now(), events).into())
}

async fn missing_events(
    State(state): State<FederationState>,
    req: Ruma<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response> {
    let body = &req.body;
    // Depths are at most 2^53 (a `UInt`), so any depth fits an i64.
    let min_depth = i64::try_from(u64::from(body.min_depth)).unwrap_or(i64::MAX);
    let events = state
        .rooms
        .missing_events_for_server(
            req.origin()?,
            &body.room_id,
            &body.earliest_events,
            &body.latest_events,
            count(body.limit),
            min_depth,
        )
        .await?;
    Ok(get_missing_events::v1::Response::new(events).into())
}

async fn timestamp_to_event(
    State(state): State<FederationState>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let body = &req.body;
    let ts = i64::try_from(u64::from(body.ts.0)).map_err(|_| Error::invalid_param("ts is out of range"))?;
    let forward = body.dir == Direction::Forward;
    let (event_id, origin_ts) =
        state.rooms.event_at_timestamp_for_server(req.origin()?, &body.room_id, ts, forward).await?;
    let origin_ts = UInt::try_from(origin_ts).map_err(Error::internal)?;
    Ok(get_event_by_timestamp::v1::Response::new(event_id, MilliSecondsSinceUnixEpoch(origin_ts)).into())
}

/// A `limit` as a count; the service caps it.
fn count(limit: UInt) -> usize {
    usize::try_from(u64::from(limit)).unwrap_or(usize::MAX)
}
