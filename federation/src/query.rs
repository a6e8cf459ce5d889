//! Queries other servers make about this server's users:
//! `GET /_matrix/federation/v1/query/profile`.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1queryprofile>.

use axum::{Router, extract::State};
use ruma::api::federation::query::get_profile_information;
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new().ruma_route::<get_profile_information::v1::Request, _, _>(profile)
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
