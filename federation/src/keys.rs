//! The key server: `GET /_matrix/key/v2/server` (this server's signed
//! key) and, as a notary, `GET /_matrix/key/v2/query/{serverName}` and
//! `POST /_matrix/key/v2/query` (other servers' keys as this server
//! fetched and verified them, with its own signature added).
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#retrieving-server-keys>.

use axum::{Router, extract::State};
use ruma::{
    api::federation::discovery::{get_remote_server_keys, get_remote_server_keys_batch, get_server_keys},
    serde::Raw,
};
use tessera_service::{Error, now_ms};
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

/// The most servers one batch query may ask about.
const MAX_SERVERS_PER_QUERY: usize = 100;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new()
        .ruma_route::<get_server_keys::v2::Request, _, _>(server_keys)
        .ruma_route::<get_remote_server_keys::v2::Request, _, _>(query_one)
        .ruma_route::<get_remote_server_keys_batch::v2::Request, _, _>(query_batch)
}

async fn server_keys(
    State(state): State<FederationState>,
    _: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let object = state.server_keys.own_key_response()?;
    Ok(get_server_keys::v2::Response::new(to_raw(&object)?).into())
}

async fn query_one(
    State(state): State<FederationState>,
    req: Ruma<get_remote_server_keys::v2::Request>,
) -> Result<get_remote_server_keys::v2::Response> {
    let minimum = i64::from(req.body.minimum_valid_until_ts.get());
    let responses = state.server_keys.notary_responses(&req.body.server_name, minimum).await?;
    let keys = responses.iter().map(to_raw).collect::<std::result::Result<_, _>>()?;
    Ok(get_remote_server_keys::v2::Response::new(keys).into())
}

async fn query_batch(
    State(state): State<FederationState>,
    req: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response> {
    if req.body.server_keys.len() > MAX_SERVERS_PER_QUERY {
        return Err(Error::invalid_param(format!("at most {MAX_SERVERS_PER_QUERY} servers per query")).into());
    }
    let mut keys = Vec::new();
    for (server, wanted) in &req.body.server_keys {
        // Every key of the server is answered, whichever IDs were named
        // (the spec allows it); the latest validity asked for counts.
        let minimum = wanted
            .values()
            .filter_map(|criteria| criteria.minimum_valid_until_ts)
            .map(|ts| i64::from(ts.get()))
            .max()
            .unwrap_or_else(now_ms);
        for response in state.server_keys.notary_responses(server, minimum).await? {
            keys.push(to_raw(&response)?);
        }
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(keys).into())
}

fn to_raw<T>(value: &impl serde::Serialize) -> std::result::Result<Raw<T>, Error> {
    serde_json::value::to_raw_value(value).map(Raw::from_json).map_err(Error::internal)
}
