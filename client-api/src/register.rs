//! Registration: `POST /register` (UIA), `GET /register` (the flows),
//! `GET /register/available`, and registration-token validity.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#account-registration>.

use axum::{Json, Router, extract::State, routing::get};
use ruma::api::client::{
    account::{check_registration_token_validity, get_username_availability, register},
    uiaa::{AuthFlow, UiaaInfo},
};
use serde_json::Value as JsonValue;
use tessera_service::{Error, accounts::Registration};
use tessera_web::{Result, Ruma, WebError, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<register::v3::Request, _, _>(register)
        .route("/_matrix/client/v3/register", get(registration_flows))
        .route("/_matrix/client/r0/register", get(registration_flows))
        .ruma_route::<get_username_availability::v3::Request, _, _>(available)
        .ruma_route::<check_registration_token_validity::v1::Request, _, _>(token_validity)
}

/// `POST /register`.
async fn register(
    State(state): State<ClientState>,
    req: Ruma<register::v3::Request>,
) -> Result<register::v3::Response> {
    if req.body.login_type.is_some() {
        // m.login.application_service needs an appservice token; no
        // application services are registered yet.
        return Err(Error::missing_token().into());
    }
    let ip = req.client_ip.map(|ip| ip.to_string());
    let body = req.body;
    let registered = state
        .accounts
        .register(Registration {
            username: body.username,
            password: body.password,
            device_id: body.device_id,
            initial_device_display_name: body.initial_device_display_name,
            auth: body.auth,
            guest: body.kind == register::RegistrationKind::Guest,
            inhibit_login: body.inhibit_login,
            refresh_token: body.refresh_token,
            ip,
        })
        .await?;
    let mut response = register::v3::Response::new(registered.user_id);
    if let Some(session) = registered.session {
        response.access_token = Some(session.access_token);
        response.device_id = Some(session.device_id);
        response.refresh_token = session.refresh_token;
        response.expires_in = session.expires_in;
    }
    Ok(response.into())
}

/// `GET /register`: not in the spec's OpenAPI, but long answered by
/// Synapse and asked by the issue: the UIA flows a registration would need,
/// so a client can tell open, token-gated and closed servers apart.
async fn registration_flows(
    State(state): State<ClientState>,
) -> std::result::Result<Json<JsonValue>, WebError> {
    let flows =
        state.accounts.registration_flows().ok_or_else(|| Error::forbidden("Registration is disabled"))?;
    let mut info = UiaaInfo::new(flows.into_iter().map(AuthFlow::new).collect());
    info.params = serde_json::value::to_raw_value(&serde_json::json!({})).ok();
    let json = serde_json::to_value(info).map_err(Error::internal)?;
    Ok(Json(json))
}

/// `GET /register/available`.
async fn available(
    State(state): State<ClientState>,
    req: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response> {
    state.accounts.username_available(&req.body.username).await?;
    Ok(get_username_availability::v3::Response::new(true).into())
}

/// `GET /v1/register/m.login.registration_token/validity`.
async fn token_validity(
    State(state): State<ClientState>,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response> {
    let valid = state.accounts.registration_token_valid(&req.body.token).await?;
    Ok(check_registration_token_validity::v1::Response::new(valid).into())
}
