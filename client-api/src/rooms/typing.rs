//! `PUT /rooms/{roomId}/typing/{userId}`.

use axum::{Router, extract::State};
use ruma::api::client::typing::create_typing_event::{self, v3::Typing as TypingState};
use tessera_service::Error;
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new().ruma_route::<create_typing_event::v3::Request, _, _>(typing)
}

async fn typing(
    State(state): State<ClientState>,
    req: Ruma<create_typing_event::v3::Request, GuestsAllowed>,
) -> Result<create_typing_event::v3::Response> {
    let me = req.identity()?;
    let body = &req.body;
    if me.user_id != body.user_id {
        return Err(Error::forbidden("You can only set your own typing state").into());
    }
    state.rooms.require_joined(&body.room_id, &me.user_id).await?;
    let timeout = match &body.state {
        TypingState::Yes(info) => Some(info.timeout),
        _ => None,
    };
    state.typing.set_local(&body.room_id, &me.user_id, timeout).await?;
    Ok(create_typing_event::v3::Response::new().into())
}
