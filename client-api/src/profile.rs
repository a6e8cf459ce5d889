//! Profiles: `GET /profile/{userId}`, `GET/PUT /profile/{userId}/displayname`
//! and `/avatar_url`; the user directory, `POST /user_directory/search`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#profiles>,
//! <https://spec.matrix.org/v1.16/client-server-api/#user-directory>.

use axum::{Router, extract::State};
use ruma::{
    api::client::{
        profile::{get_avatar_url, get_display_name, get_profile, set_avatar_url, set_display_name},
        user_directory::search_users,
    },
    profile::UserProfile,
};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_profile::v3::Request, _, _>(get_profile)
        .ruma_route::<get_display_name::v3::Request, _, _>(get_displayname)
        .ruma_route::<set_display_name::v3::Request, _, _>(set_displayname)
        .ruma_route::<get_avatar_url::v3::Request, _, _>(get_avatar_url)
        .ruma_route::<set_avatar_url::v3::Request, _, _>(set_avatar_url)
        .ruma_route::<search_users::v3::Request, _, _>(search_users)
}

async fn search_users(
    State(state): State<ClientState>,
    req: Ruma<search_users::v3::Request>,
) -> Result<search_users::v3::Response> {
    let me = req.identity()?;
    let limit = usize::try_from(u64::from(req.body.limit)).unwrap_or(usize::MAX);
    let (found, limited) = state.profiles.search(&me.user_id, &req.body.search_term, limit).await?;
    let results = found
        .into_iter()
        .filter_map(|(user_id, profile)| {
            let mut user = search_users::v3::User::new(ruma::UserId::parse(user_id).ok()?);
            user.display_name = profile.displayname;
            user.avatar_url = profile.avatar_url;
            Some(user)
        })
        .collect();
    Ok(search_users::v3::Response::new(results, limited).into())
}

async fn get_profile(
    State(state): State<ClientState>,
    req: Ruma<get_profile::v3::Request>,
) -> Result<get_profile::v3::Response> {
    let profile = state.profiles.get(&req.body.user_id).await?;
    let mut data = UserProfile::new();
    if let Some(name) = profile.displayname {
        data.set("displayname".into(), name.into());
    }
    if let Some(url) = profile.avatar_url {
        data.set("avatar_url".into(), url.to_string().into());
    }
    Ok(get_profile::v3::Response::from(data).into())
}

async fn get_displayname(
    State(state): State<ClientState>,
    req: Ruma<get_display_name::v3::Request>,
) -> Result<get_display_name::v3::Response> {
    let profile = state.profiles.get(&req.body.user_id).await?;
    Ok(get_display_name::v3::Response::new(profile.displayname).into())
}

async fn set_displayname(
    State(state): State<ClientState>,
    req: Ruma<set_display_name::v3::Request, GuestsAllowed>,
) -> Result<set_display_name::v3::Response> {
    state
        .profiles
        .set_displayname(req.identity()?, &req.body.user_id, req.body.displayname.as_deref())
        .await?;
    Ok(set_display_name::v3::Response::new().into())
}

async fn get_avatar_url(
    State(state): State<ClientState>,
    req: Ruma<get_avatar_url::v3::Request>,
) -> Result<get_avatar_url::v3::Response> {
    let profile = state.profiles.get(&req.body.user_id).await?;
    Ok(get_avatar_url::v3::Response::new(profile.avatar_url).into())
}

async fn set_avatar_url(
    State(state): State<ClientState>,
    req: Ruma<set_avatar_url::v3::Request, GuestsAllowed>,
) -> Result<set_avatar_url::v3::Response> {
    state.profiles.set_avatar_url(req.identity()?, &req.body.user_id, req.body.avatar_url.as_deref()).await?;
    Ok(set_avatar_url::v3::Response::new().into())
}
