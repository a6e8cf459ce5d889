//! `GET /_matrix/federation/v1/version`.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1version>.

use axum::Router;
use ruma::api::federation::discovery::get_server_version;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new().ruma_route::<get_server_version::v1::Request, _, _>(version)
}

async fn version(_: Ruma<get_server_version::v1::Request>) -> Result<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Tessera".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response.into())
}
