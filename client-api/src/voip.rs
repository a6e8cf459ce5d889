//! `GET /voip/turnServer`. No TURN server is configured yet, which the
//! spec's clients read from an empty object (as Synapse answers without
//! one): calls then use STUN and direct connections only.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3voipturnserver>.

use axum::{Json, Router};
use ruma::api::client::voip::get_turn_server_info;
use serde_json::{Value, json};
use tessera_web::{GuestsAllowed, Ruma, WebError, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new().ruma_route::<get_turn_server_info::v3::Request, _, _>(turn_server)
}

/// An empty object: ruma's response type requires credentials, which a
/// server without TURN does not have.
async fn turn_server(
    _: Ruma<get_turn_server_info::v3::Request, GuestsAllowed>,
) -> Result<Json<Value>, WebError> {
    Ok(Json(json!({})))
}
