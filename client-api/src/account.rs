//! Account: `GET /account/whoami`, `POST /account/password`,
//! `POST /account/deactivate`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#account-registration-and-management>.

use axum::{Router, extract::State};
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, change_password, deactivate, whoami};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<whoami::v3::Request, _, _>(whoami)
        .ruma_route::<change_password::v3::Request, _, _>(change_password)
        .ruma_route::<deactivate::v3::Request, _, _>(deactivate)
}

async fn whoami(req: Ruma<whoami::v3::Request, GuestsAllowed>) -> Result<whoami::v3::Response> {
    let me = req.identity()?;
    let mut response = whoami::v3::Response::new(me.user_id.clone(), me.is_guest);
    response.device_id = Some(me.device_id.clone());
    Ok(response.into())
}

/// `POST /account/password`. Without a token the spec would allow an
/// email-verified reset; this server has no email, so a token is required.
async fn change_password(
    State(state): State<ClientState>,
    req: Ruma<change_password::v3::Request>,
) -> Result<change_password::v3::Response> {
    let me = req.identity()?;
    let body = &req.body;
    state
        .accounts
        .change_password(me, body.new_password.clone(), body.logout_devices, body.auth.as_ref())
        .await?;
    Ok(change_password::v3::Response::new().into())
}

/// `POST /account/deactivate`. Guests may deactivate themselves per spec,
/// but have no password to pass UIA with, so the service refuses them.
async fn deactivate(
    State(state): State<ClientState>,
    req: Ruma<deactivate::v3::Request>,
) -> Result<deactivate::v3::Response> {
    state.accounts.deactivate(req.identity()?, req.body.erase, req.body.auth.as_ref()).await?;
    Ok(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}
