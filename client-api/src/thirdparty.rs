//! Third-party networks (bridges): `GET /thirdparty/protocols` and the
//! lookups under `/thirdparty/`. No application service bridges a network
//! yet, so there are no protocols: the list is empty and every lookup finds
//! nothing. Element asks for the list every few seconds while open.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#third-party-networks>.

use std::collections::BTreeMap;

use axum::Router;
use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols,
    get_user_for_protocol, get_user_for_user_id,
};
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_protocols::v3::Request, _, _>(protocols)
        .ruma_route::<get_protocol::v3::Request, _, _>(protocol)
        .ruma_route::<get_location_for_protocol::v3::Request, _, _>(locations_for_protocol)
        .ruma_route::<get_user_for_protocol::v3::Request, _, _>(users_for_protocol)
        .ruma_route::<get_location_for_room_alias::v3::Request, _, _>(location_for_alias)
        .ruma_route::<get_user_for_user_id::v3::Request, _, _>(user_for_user_id)
}

async fn protocols(_: Ruma<get_protocols::v3::Request>) -> Result<get_protocols::v3::Response> {
    Ok(get_protocols::v3::Response::new(BTreeMap::new()).into())
}

async fn protocol(_: Ruma<get_protocol::v3::Request>) -> Result<get_protocol::v3::Response> {
    Err(Error::not_found("No such protocol").into())
}

async fn locations_for_protocol(
    _: Ruma<get_location_for_protocol::v3::Request>,
) -> Result<get_location_for_protocol::v3::Response> {
    Err(Error::not_found("No such protocol").into())
}

async fn users_for_protocol(
    _: Ruma<get_user_for_protocol::v3::Request>,
) -> Result<get_user_for_protocol::v3::Response> {
    Err(Error::not_found("No such protocol").into())
}

async fn location_for_alias(
    _: Ruma<get_location_for_room_alias::v3::Request>,
) -> Result<get_location_for_room_alias::v3::Response> {
    Err(Error::not_found("No portal rooms were found").into())
}

async fn user_for_user_id(
    _: Ruma<get_user_for_user_id::v3::Request>,
) -> Result<get_user_for_user_id::v3::Response> {
    Err(Error::not_found("No users were found").into())
}
