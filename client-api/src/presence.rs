//! `PUT/GET /presence/{userId}/status`.

use axum::{Router, extract::State};
use ruma::api::client::presence::{get_presence, set_presence};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<set_presence::v3::Request, _, _>(put_status)
        .ruma_route::<get_presence::v3::Request, _, _>(get_status)
}

async fn put_status(
    State(state): State<ClientState>,
    req: Ruma<set_presence::v3::Request, GuestsAllowed>,
) -> Result<set_presence::v3::Response> {
    let b = &req.body;
    state.presence.set(req.identity()?, &b.user_id, b.presence.as_str(), b.status_msg.clone()).await?;
    Ok(set_presence::v3::Response::new().into())
}

async fn get_status(
    State(state): State<ClientState>,
    req: Ruma<get_presence::v3::Request, GuestsAllowed>,
) -> Result<get_presence::v3::Response> {
    let view = state.presence.get(req.identity()?, &req.body.user_id).await?;
    let mut response = get_presence::v3::Response::new(view.state.as_str().into());
    response.status_msg = view.status_msg;
    response.last_active_ago = view.last_active_ago;
    response.currently_active = Some(view.currently_active);
    Ok(response.into())
}
