//! Queries other servers make about this server's users and aliases:
//! `GET /_matrix/federation/v1/query/profile` and `/query/directory`.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#querying-for-information>.

use axum::{Router, extract::State};
use ruma::api::federation::query::{get_profile_information, get_room_information};
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new()
        .ruma_route::<get_profile_information::v1::Request, _, _>(profile)
        .ruma_route::<get_room_information::v1::Request, _, _>(directory)
}

/// An alias of this server: its room and the servers to join through.
async fn directory(
    State(state): State<FederationState>,
    req: Ruma<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response> {
    req.origin()?;
    let alias = &req.body.room_alias;
    if alias.server_name() != state.server_keys.server_name() {
        return Err(Error::not_found("The alias is not of this server").into());
    }
    let (room_id, servers) = state.rooms.get_alias(alias).await?;
    Ok(get_room_information::v1::Response::new(room_id, servers).into())
}

async fn profile(
    State(state): State<FederationState>,
    req: Ruma<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response> {
    req.origin()?;
    let user = &req.body.user_id;
    if user.server_name() != state.server_keys.server_name() {
        return Err(Error::invalid_param("The user is not on this server").into());
    }
    let profile = state.profiles.local(user).await?;
    let wanted = |field: &str| req.body.field.as_ref().is_none_or(|f| f.as_str() == field);
    let mut response = get_profile_information::v1::Response::new();
    if let Some(name) = profile.displayname.filter(|_| wanted("displayname")) {
        response.data.set("displayname".into(), name.into());
    }
    if let Some(url) = profile.avatar_url.filter(|_| wanted("avatar_url")) {
        response.data.set("avatar_url".into(), url.to_string().into());
    }
    Ok(response.into())
}
