//! Discovery: `GET /_matrix/client/versions`, `/.well-known/matrix/client`,
//! `/.well-known/matrix/server` and `GET /_matrix/client/v3/capabilities`.

use std::collections::BTreeMap;

use axum::Router;
use ruma::api::{
    client::discovery::{
        discover_homeserver::{self, HomeserverInfo},
        get_capabilities::{
            self,
            v3::{
                Capabilities, ChangePasswordCapability, GetLoginTokenCapability, RoomVersionStability,
                RoomVersionsCapability, SetAvatarUrlCapability, SetDisplayNameCapability,
                ThirdPartyIdChangesCapability,
            },
        },
        get_supported_versions,
    },
    federation::discovery::discover_homeserver as discover_server,
};
use tessera_core::room_versions::{self, Stability};
use tessera_web::{GuestsAllowed, Result, Ruma, WebError, routing::RumaRoutes};

use crate::ClientState;
use tessera_service::Error;

/// What the well-known documents announce.
#[derive(Clone, Debug, Default)]
pub struct DiscoverySettings {
    /// `m.homeserver.base_url` in `/.well-known/matrix/client`.
    pub client_base_url: Option<String>,
    /// `m.server` in `/.well-known/matrix/server` (`host:port`).
    pub server: Option<String>,
}

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_supported_versions::Request, _, _>(versions)
        .ruma_route::<discover_homeserver::Request, _, _>(well_known_client)
        .ruma_route::<discover_server::Request, _, _>(well_known_server)
        .ruma_route::<get_capabilities::v3::Request, _, _>(capabilities)
}

/// The spec versions whose client-visible behaviour we implement. Clients
/// switch features on by these, so we only claim what we serve.
const SPEC_VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9",
    "v1.10", "v1.11", "v1.12",
];

async fn versions(
    _: Ruma<get_supported_versions::Request, GuestsAllowed>,
) -> Result<get_supported_versions::Response> {
    let versions = SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect();
    let mut response = get_supported_versions::Response::new(versions);
    // Only what is implemented: the WebSocket sync channel.
    response.unstable_features.insert("org.tessera.sync".to_owned(), true);
    Ok(response.into())
}

async fn well_known_client(
    state: axum::extract::State<ClientState>,
    _: Ruma<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response> {
    let base_url = state
        .discovery
        .client_base_url
        .clone()
        .ok_or_else(|| Error::not_found("No client well-known configured"))?;
    Ok(discover_homeserver::Response::new(HomeserverInfo::new(base_url)).into())
}

async fn well_known_server(
    state: axum::extract::State<ClientState>,
    _: Ruma<discover_server::Request>,
) -> Result<discover_server::Response> {
    let server =
        state.discovery.server.clone().ok_or_else(|| Error::not_found("No server well-known configured"))?;
    let server = server
        .try_into()
        .map_err(|_| Error::internal("configured well-known server is not a valid server name"))?;
    Ok(discover_server::Response::new(server).into())
}

/// `GET /capabilities`, every capability spelled out: ruma leaves out
/// those at their default (`m.change_password` enabled, say), and
/// clients and Complement look for them.
async fn capabilities(
    state: axum::extract::State<ClientState>,
    _: Ruma<get_capabilities::v3::Request, GuestsAllowed>,
) -> std::result::Result<axum::Json<serde_json::Value>, WebError> {
    let available = room_versions::supported()
        .into_iter()
        .map(|(version, stability)| {
            let stability = match stability {
                Stability::Stable => RoomVersionStability::Stable,
                Stability::Unstable => RoomVersionStability::Unstable,
            };
            (version, stability)
        })
        .collect::<BTreeMap<_, _>>();
    let mut capabilities = Capabilities::new();
    capabilities.change_password = ChangePasswordCapability::new(true);
    capabilities.room_versions =
        RoomVersionsCapability::new(state.rooms.default_version().clone(), available);
    capabilities.set_displayname = SetDisplayNameCapability::new(true);
    capabilities.set_avatar_url = SetAvatarUrlCapability::new(true);
    capabilities.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(false);
    capabilities.get_login_token = GetLoginTokenCapability::new(true);
    let mut listed = serde_json::to_value(capabilities).map_err(Error::internal)?;
    if let Some(listed) = listed.as_object_mut() {
        for (name, enabled) in [
            ("m.change_password", true),
            ("m.set_displayname", true),
            ("m.set_avatar_url", true),
            ("m.3pid_changes", false),
            ("m.get_login_token", true),
        ] {
            listed.entry(name).or_insert_with(|| serde_json::json!({ "enabled": enabled }));
        }
    }
    Ok(axum::Json(serde_json::json!({ "capabilities": listed })))
}
