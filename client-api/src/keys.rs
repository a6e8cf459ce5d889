//! End-to-end encryption keys: `POST /keys/upload`, `POST /keys/query`,
//! `POST /keys/claim`, `GET /keys/changes`, and cross-signing:
//! `POST /keys/device_signing/upload`, `POST /keys/signatures/upload`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#end-to-end-encryption>.

use axum::{Router, extract::State};
use ruma::{
    UInt,
    api::client::keys::{
        claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
    },
};
use tessera_service::{Error, keys::SigningKeysUpload};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

/// How long other servers are waited for (the spec's default `timeout`,
/// and the most a client may ask for).
const REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<upload_keys::v3::Request, _, _>(upload)
        .ruma_route::<get_keys::v3::Request, _, _>(query)
        .ruma_route::<claim_keys::v3::Request, _, _>(claim)
        .ruma_route::<get_key_changes::v3::Request, _, _>(changes)
        .ruma_route::<upload_signing_keys::v3::Request, _, _>(upload_signing_keys)
        .ruma_route::<upload_signatures::v3::Request, _, _>(upload_signatures)
}

async fn upload(
    State(state): State<ClientState>,
    req: Ruma<upload_keys::v3::Request, GuestsAllowed>,
) -> Result<upload_keys::v3::Response> {
    let body = &req.body;
    let counts = state
        .keys
        .upload(req.identity()?, body.device_keys.as_ref(), &body.one_time_keys, &body.fallback_keys)
        .await?;
    let counts = counts
        .into_iter()
        .map(|(algorithm, count)| (algorithm.into(), UInt::try_from(count).unwrap_or_default()))
        .collect();
    Ok(upload_keys::v3::Response::new(counts).into())
}

async fn query(
    State(state): State<ClientState>,
    req: Ruma<get_keys::v3::Request, GuestsAllowed>,
) -> Result<get_keys::v3::Response> {
    let timeout = req.body.timeout.unwrap_or(REMOTE_TIMEOUT).min(REMOTE_TIMEOUT);
    let found = state.keys.query(&req.identity()?.user_id, &req.body.device_keys, timeout).await?;
    let mut response = get_keys::v3::Response::new();
    response.device_keys = found.device_keys;
    response.master_keys = found.master_keys;
    response.self_signing_keys = found.self_signing_keys;
    response.user_signing_keys = found.user_signing_keys;
    response.failures = found.failures;
    Ok(response.into())
}

async fn claim(
    State(state): State<ClientState>,
    req: Ruma<claim_keys::v3::Request, GuestsAllowed>,
) -> Result<claim_keys::v3::Response> {
    let timeout = req.body.timeout.unwrap_or(REMOTE_TIMEOUT).min(REMOTE_TIMEOUT);
    let found = state.keys.claim(&req.body.one_time_keys, timeout).await?;
    let mut response = claim_keys::v3::Response::new(found.keys);
    response.failures = found.failures;
    Ok(response.into())
}

async fn changes(
    State(state): State<ClientState>,
    req: Ruma<get_key_changes::v3::Request, GuestsAllowed>,
) -> Result<get_key_changes::v3::Response> {
    let changes = state.keys.changes(req.identity()?, &req.body.from, &req.body.to).await?;
    Ok(get_key_changes::v3::Response::new(changes.changed, changes.left).into())
}

async fn upload_signing_keys(
    State(state): State<ClientState>,
    req: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response> {
    let body = &req.body;
    let upload = SigningKeysUpload {
        master: body.master_key.as_ref(),
        self_signing: body.self_signing_key.as_ref(),
        user_signing: body.user_signing_key.as_ref(),
    };
    state.keys.upload_signing_keys(req.identity()?, upload, body.auth.as_ref()).await?;
    Ok(upload_signing_keys::v3::Response::new().into())
}

async fn upload_signatures(
    State(state): State<ClientState>,
    req: Ruma<upload_signatures::v3::Request>,
) -> Result<upload_signatures::v3::Response> {
    let failures = state.keys.upload_signatures(req.identity()?, &req.body.signed_keys).await?;
    let mut response = upload_signatures::v3::Response::new();
    // ruma's `Failure` has private fields: it is made from its JSON.
    response.failures = serde_json::from_value(serde_json::to_value(failures).map_err(Error::internal)?)
        .map_err(Error::internal)?;
    Ok(response.into())
}
