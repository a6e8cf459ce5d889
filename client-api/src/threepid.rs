//! Third-party identifiers, answered as a server without identity-server or
//! email/SMS support: no 3PIDs to list, nothing that can be validated.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#adding-account-administrative-contact-information>.

use axum::{Router, extract::State};
use ruma::api::{
    IncomingRequest, OutgoingResponse,
    client::account::{
        ThirdPartyIdRemovalStatus, add_3pid, bind_3pid, delete_3pid, get_3pids,
        request_3pid_management_token_via_email, request_3pid_management_token_via_msisdn,
        request_password_change_token_via_email, request_password_change_token_via_msisdn,
        request_registration_token_via_email, request_registration_token_via_msisdn, unbind_3pid,
    },
    error::ErrorKind,
};
use tessera_service::Error;
use tessera_web::{Result, Ruma, TokenPolicy, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_3pids::v3::Request, _, _>(get_3pids)
        .ruma_route::<add_3pid::v3::Request, _, _>(cannot_validate::<add_3pid::v3::Request>)
        .ruma_route::<bind_3pid::v3::Request, _, _>(cannot_validate::<bind_3pid::v3::Request>)
        .ruma_route::<delete_3pid::v3::Request, _, _>(delete_3pid)
        .ruma_route::<unbind_3pid::v3::Request, _, _>(unbind_3pid)
        .ruma_route::<request_registration_token_via_email::v3::Request, _, _>(
            denied::<request_registration_token_via_email::v3::Request>,
        )
        .ruma_route::<request_registration_token_via_msisdn::v3::Request, _, _>(
            denied::<request_registration_token_via_msisdn::v3::Request>,
        )
        .ruma_route::<request_3pid_management_token_via_email::v3::Request, _, _>(
            denied::<request_3pid_management_token_via_email::v3::Request>,
        )
        .ruma_route::<request_3pid_management_token_via_msisdn::v3::Request, _, _>(
            denied::<request_3pid_management_token_via_msisdn::v3::Request>,
        )
        .ruma_route::<request_password_change_token_via_email::v3::Request, _, _>(
            denied::<request_password_change_token_via_email::v3::Request>,
        )
        .ruma_route::<request_password_change_token_via_msisdn::v3::Request, _, _>(
            denied::<request_password_change_token_via_msisdn::v3::Request>,
        )
}

async fn get_3pids(_: Ruma<get_3pids::v3::Request>) -> Result<get_3pids::v3::Response> {
    Ok(get_3pids::v3::Response::new(Vec::new()).into())
}

/// No user has a 3PID here, so removing one is a no-op.
async fn delete_3pid(_: Ruma<delete_3pid::v3::Request>) -> Result<delete_3pid::v3::Response> {
    Ok(delete_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}

async fn unbind_3pid(_: Ruma<unbind_3pid::v3::Request>) -> Result<unbind_3pid::v3::Response> {
    Ok(unbind_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}

/// `requestToken` endpoints: the spec's 403 `M_THREEPID_DENIED` ("does not
/// allow the third-party identifier as a contact option").
async fn denied<T>(_: State<ClientState>, _: Ruma<T>) -> Result<T::OutgoingResponse>
where
    T: IncomingRequest + Send,
    T::Authentication: TokenPolicy,
    T::OutgoingResponse: OutgoingResponse,
{
    Err(Error::new(403, ErrorKind::ThreepidDenied, "This server does not support third-party identifiers")
        .into())
}

/// `add`/`bind` need a validated session from a `requestToken`, which can
/// never exist here.
async fn cannot_validate<T>(_: State<ClientState>, _: Ruma<T>) -> Result<T::OutgoingResponse>
where
    T: IncomingRequest + Send,
    T::Authentication: TokenPolicy,
    T::OutgoingResponse: OutgoingResponse,
{
    Err(Error::new(400, ErrorKind::ThreepidAuthFailed, "No validated third-party identifier session").into())
}
