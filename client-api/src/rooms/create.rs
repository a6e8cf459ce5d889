//! `POST /createRoom` and `POST /rooms/{roomId}/upgrade`.

use axum::{Router, extract::State};
use ruma::{
    api::client::room::{Visibility, create_room, upgrade_room},
    events::TimelineEventType,
};
use serde_json::{Map, Value};
use tessera_core::{EventTemplate, create_room::Preset};
use tessera_service::{Error, rooms::CreateRoom};
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<create_room::v3::Request, _, _>(create_room)
        .ruma_route::<upgrade_room::v3::Request, _, _>(upgrade_room)
}

async fn create_room(
    State(state): State<ClientState>,
    req: Ruma<create_room::v3::Request>,
) -> Result<create_room::v3::Response> {
    let me = req.identity()?.clone();
    let body = req.body;
    let object =
        |raw: &serde_json::value::RawValue, what: &str| -> std::result::Result<Map<String, Value>, Error> {
            match serde_json::from_str(raw.get()) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(Error::bad_json(format!("{what} must be a JSON object"))),
            }
        };
    let mut initial_state = Vec::with_capacity(body.initial_state.len());
    for event in &body.initial_state {
        let event = object(event.json(), "initial_state event")?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("initial_state event needs a type"))?;
        let content = event
            .get("content")
            .filter(|c| c.is_object())
            .ok_or_else(|| Error::bad_json("initial_state content must be an object"))?;
        let state_key = event.get("state_key").and_then(Value::as_str).unwrap_or_default();
        initial_state.push(EventTemplate::state(TimelineEventType::from(kind), state_key, content.clone()));
    }
    let request = CreateRoom {
        preset: body
            .preset
            .as_ref()
            .map(|preset| match preset.as_str() {
                "public_chat" => Ok(Preset::PublicChat),
                "trusted_private_chat" => Ok(Preset::TrustedPrivateChat),
                "private_chat" => Ok(Preset::PrivateChat),
                other => Err(Error::bad_json(format!("Unknown preset {other}"))),
            })
            .transpose()?,
        public: body.visibility == Visibility::Public,
        room_version: body.room_version,
        creation_content: body
            .creation_content
            .as_ref()
            .map(|c| object(c.json(), "creation_content"))
            .transpose()?,
        initial_state,
        name: body.name,
        topic: body.topic,
        invite: body.invite,
        is_direct: body.is_direct,
        power_level_content_override: body
            .power_level_content_override
            .as_ref()
            .map(|c| object(c.json(), "power_level_content_override"))
            .transpose()?,
        room_alias_name: body.room_alias_name,
    };
    let room_id = state.rooms.create_room(&me, request).await?;
    Ok(create_room::v3::Response::new(room_id).into())
}

async fn upgrade_room(
    State(state): State<ClientState>,
    req: Ruma<upgrade_room::v3::Request>,
) -> Result<upgrade_room::v3::Response> {
    let me = req.identity()?.clone();
    let body = req.body;
    let replacement =
        state.rooms.upgrade(&me, &body.room_id, body.new_version, body.additional_creators).await?;
    Ok(upgrade_room::v3::Response::new(replacement).into())
}
