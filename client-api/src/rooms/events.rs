//! Sending and reading events: `PUT /rooms/{roomId}/send/{eventType}/{txnId}`,
//! `PUT/GET /rooms/{roomId}/state/{eventType}/{stateKey}`,
//! `GET /rooms/{roomId}/state`, `GET /rooms/{roomId}/event/{eventId}`,
//! `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`.

use axum::{Router, extract::State};
use ruma::api::client::{
    message::send_message_event,
    redact::redact_event,
    room::get_room_event,
    state::{get_state_event_for_key, get_state_events, send_state_event},
};
use serde_json::Value;
use tessera_core::EventTemplate;
use tessera_service::Error;
use tessera_web::{
    GuestsAllowed, Result, Ruma,
    routing::{RumaRoutes, extra_route},
};

use super::raw;
use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    let mut router = Router::new()
        .ruma_route::<send_message_event::v3::Request, _, _>(send)
        .ruma_route::<send_state_event::v3::Request, _, _>(send_state)
        .ruma_route::<get_state_event_for_key::v3::Request, _, _>(get_state_event)
        .ruma_route::<get_state_events::v3::Request, _, _>(get_state)
        .ruma_route::<get_room_event::v3::Request, _, _>(get_event)
        .ruma_route::<redact_event::v3::Request, _, _>(redact);
    // The spec's form for an empty state key omits it (with or without the
    // trailing slash).
    for version in ["r0", "v3"] {
        for suffix in ["", "/"] {
            let path = format!("/_matrix/client/{version}/rooms/{{room_id}}/state/{{event_type}}{suffix}");
            router = extra_route::<_, send_state_event::v3::Request, _, _>(router, &path, send_state);
            router =
                extra_route::<_, get_state_event_for_key::v3::Request, _, _>(router, &path, get_state_event);
        }
    }
    router
}

/// The body as a JSON object, as event content must be.
fn content(body: &serde_json::value::RawValue) -> std::result::Result<Value, Error> {
    match serde_json::from_str(body.get()) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(Error::bad_json("Event content must be a JSON object")),
    }
}

/// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`: idempotent per device and
/// transaction ID.
async fn send(
    State(state): State<ClientState>,
    req: Ruma<send_message_event::v3::Request, GuestsAllowed>,
) -> Result<send_message_event::v3::Response> {
    let me = req.identity()?;
    let body = &req.body;
    let template = EventTemplate::message(body.event_type.to_string(), content(body.body.json())?);
    let txn = Some((&*me.device_id, body.txn_id.as_str()));
    let event_id = state.rooms.send(&body.room_id, &me.user_id, &template, txn).await?;
    Ok(send_message_event::v3::Response::new(event_id).into())
}

async fn send_state(
    State(state): State<ClientState>,
    req: Ruma<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response> {
    let me = req.identity()?;
    let body = &req.body;
    let template =
        EventTemplate::state(body.event_type.to_string(), body.state_key.clone(), content(body.body.json())?);
    let event_id = state.rooms.send_state(&body.room_id, &me.user_id, template).await?;
    Ok(send_state_event::v3::Response::new(event_id).into())
}

async fn get_state_event(
    State(state): State<ClientState>,
    req: Ruma<get_state_event_for_key::v3::Request, GuestsAllowed>,
) -> Result<get_state_event_for_key::v3::Response> {
    let body = &req.body;
    let event = state
        .rooms
        .state_event(req.identity()?, &body.room_id, &body.event_type.to_string(), &body.state_key)
        .await?;
    let raw = match body.format {
        get_state_event_for_key::v3::StateEventFormat::Event => event.into_json(),
        _ => {
            let content =
                event.to_object().remove("content").unwrap_or_else(|| Value::Object(Default::default()));
            serde_json::value::to_raw_value(&content).map_err(Error::internal)?
        }
    };
    Ok(get_state_event_for_key::v3::Response::new(raw).into())
}

async fn get_state(
    State(state): State<ClientState>,
    req: Ruma<get_state_events::v3::Request, GuestsAllowed>,
) -> Result<get_state_events::v3::Response> {
    let events = state.rooms.state(req.identity()?, &req.body.room_id).await?;
    let events = events.into_iter().map(raw).collect::<std::result::Result<_, _>>()?;
    Ok(get_state_events::v3::Response::new(events).into())
}

async fn get_event(
    State(state): State<ClientState>,
    req: Ruma<get_room_event::v3::Request, GuestsAllowed>,
) -> Result<get_room_event::v3::Response> {
    let event = state.rooms.event(req.identity()?, &req.body.room_id, &req.body.event_id).await?;
    Ok(get_room_event::v3::Response::new(raw(event)?).into())
}

/// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`.
async fn redact(
    State(state): State<ClientState>,
    req: Ruma<redact_event::v3::Request>,
) -> Result<redact_event::v3::Response> {
    let body = &req.body;
    let event_id = state
        .rooms
        .redact(req.identity()?, &body.room_id, &body.event_id, body.reason.as_deref(), body.txn_id.as_str())
        .await?;
    Ok(redact_event::v3::Response::new(event_id).into())
}
