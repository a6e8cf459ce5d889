//! Sessions: `GET/POST /login`, `POST /refresh`, `POST /logout`,
//! `POST /logout/all`, `POST /v1/login/get_token`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#login>.

use axum::{Router, extract::State};
use ruma::api::client::{
    session::{
        get_login_token, get_login_types,
        get_login_types::v3::{LoginType, PasswordLoginType, TokenLoginType},
        login::{self, v3::LoginInfo},
        logout, logout_all, refresh_token,
    },
    uiaa::UserIdentifier,
};
use tessera_service::{
    Error,
    accounts::{Credentials, Login},
};
use tessera_web::{LogoutAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_login_types::v3::Request, _, _>(login_types)
        .ruma_route::<login::v3::Request, _, _>(login)
        .ruma_route::<refresh_token::v3::Request, _, _>(refresh)
        .ruma_route::<logout::v3::Request, _, _>(logout)
        .ruma_route::<logout_all::v3::Request, _, _>(logout_all)
        .ruma_route::<get_login_token::v1::Request, _, _>(get_token)
}

async fn login_types(_: Ruma<get_login_types::v3::Request>) -> Result<get_login_types::v3::Response> {
    let mut token = TokenLoginType::new();
    // Tells clients they can mint m.login.token tokens for other devices.
    token.get_login_token = true;
    let flows = vec![LoginType::Password(PasswordLoginType::new()), LoginType::Token(token)];
    Ok(get_login_types::v3::Response::new(flows).into())
}

/// `POST /login`.
async fn login(
    State(state): State<ClientState>,
    req: Ruma<login::v3::Request>,
) -> Result<login::v3::Response> {
    // Rate limited by the service, which knows whether the attempt failed.
    let ip = req.client_ip.map(|ip| ip.to_string());
    let body = req.body;
    let credentials = match body.login_info {
        LoginInfo::Password(password) => {
            #[allow(deprecated)] // the legacy `user` field is still sent by older clients and bots
            let user = match (password.identifier, password.user) {
                (Some(UserIdentifier::Matrix(id)), _) => id.user,
                (None, Some(user)) => user,
                (Some(_), _) => {
                    return Err(Error::forbidden("Third-party identifiers are not supported").into());
                }
                (None, None) => return Err(Error::missing_param("identifier is required").into()),
            };
            Credentials::Password { user, password: password.password }
        }
        LoginInfo::Token(token) => Credentials::Token(token.token),
        other => return Err(Error::unknown(format!("Unknown login type {}", other.login_type())).into()),
    };
    let session = state
        .accounts
        .login(Login {
            credentials,
            device_id: body.device_id,
            initial_device_display_name: body.initial_device_display_name,
            refresh_token: body.refresh_token,
            ip,
        })
        .await?;
    let mut response = login::v3::Response::new(session.user_id, session.access_token, session.device_id);
    response.refresh_token = session.refresh_token;
    response.expires_in = session.expires_in;
    #[allow(deprecated)] // still read by old clients
    {
        response.home_server = Some(state.accounts.server_name().clone());
    }
    Ok(response.into())
}

/// `POST /refresh`.
async fn refresh(
    State(state): State<ClientState>,
    req: Ruma<refresh_token::v3::Request>,
) -> Result<refresh_token::v3::Response> {
    let session = state.accounts.refresh(&req.body.refresh_token).await?;
    let mut response = refresh_token::v3::Response::new(session.access_token);
    response.refresh_token = session.refresh_token;
    response.expires_in_ms = session.expires_in;
    Ok(response.into())
}

async fn logout(
    State(state): State<ClientState>,
    req: Ruma<logout::v3::Request, LogoutAllowed>,
) -> Result<logout::v3::Response> {
    state.accounts.logout(req.identity()?).await?;
    Ok(logout::v3::Response::new().into())
}

async fn logout_all(
    State(state): State<ClientState>,
    req: Ruma<logout_all::v3::Request, LogoutAllowed>,
) -> Result<logout_all::v3::Response> {
    state.accounts.logout_all(req.identity()?).await?;
    Ok(logout_all::v3::Response::new().into())
}

/// `POST /v1/login/get_token` (UIA).
async fn get_token(
    State(state): State<ClientState>,
    req: Ruma<get_login_token::v1::Request>,
) -> Result<get_login_token::v1::Response> {
    let (token, lifetime) =
        state.accounts.create_login_token(req.identity()?, req.body.auth.as_ref()).await?;
    Ok(get_login_token::v1::Response::new(lifetime, token).into())
}
