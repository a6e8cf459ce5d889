//! Synapse's shared-secret registration admin API,
//! `GET/POST /_synapse/admin/v1/register`, which `register_new_matrix_user`,
//! Complement and the benchmark use to create accounts. Enabled only when a
//! shared secret is configured.
//! Reference: <https://element-hq.github.io/synapse/latest/admin_api/register_api.html>.

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};
use tessera_service::{rate_limit::Class, shared_secret::SharedSecretRequest};
use tessera_web::{ClientIp, JsonBody, WebError};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new().route("/_synapse/admin/v1/register", get(nonce).post(register))
}

#[derive(Serialize)]
struct NonceResponse {
    nonce: String,
}

async fn nonce(
    State(state): State<ClientState>,
    ClientIp(ip): ClientIp,
) -> Result<Json<NonceResponse>, WebError> {
    state
        .rate_limiter
        .check(Class::Registration, &ip.map_or_else(|| "unknown".into(), |ip| ip.to_string()))?;
    Ok(Json(NonceResponse { nonce: state.shared_secret.nonce()? }))
}

#[derive(Deserialize)]
struct RegisterRequest {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    displayname: Option<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    user_type: Option<String>,
    mac: String,
}

#[derive(Serialize)]
struct RegisterResponse {
    user_id: String,
    home_server: String,
    access_token: Option<String>,
    device_id: Option<String>,
}

async fn register(
    State(state): State<ClientState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<Json<RegisterResponse>, WebError> {
    state
        .rate_limiter
        .check(Class::Registration, &ip.map_or_else(|| "unknown".into(), |ip| ip.to_string()))?;
    let registered = state
        .shared_secret
        .register(SharedSecretRequest {
            nonce: body.nonce,
            username: body.username,
            password: body.password,
            displayname: body.displayname,
            admin: body.admin,
            user_type: body.user_type,
            mac: body.mac,
        })
        .await?;
    let session = registered.session;
    Ok(Json(RegisterResponse {
        home_server: registered.user_id.server_name().to_string(),
        user_id: registered.user_id.to_string(),
        access_token: session.as_ref().map(|s| s.access_token.clone()),
        device_id: session.map(|s| s.device_id.to_string()),
    }))
}
