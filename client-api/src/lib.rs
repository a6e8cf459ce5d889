//! tessera-client-api: the Client-Server API routes.
//!
//! One module per area of the spec; each handler parses a ruma request
//! (through [`tessera_web::Ruma`]), makes one service call and answers with
//! ruma's response type. Spec:
//! <https://spec.matrix.org/v1.16/client-server-api/>.

mod account;
mod account_data;
mod admin;
mod devices;
// `m.set_displayname`/`m.set_avatar_url` are deprecated by v1.16's profile
// fields; we advertise v1.12, where they are what clients read.
#[allow(deprecated)]
mod discovery;
mod key_backup;
mod keys;
// The deprecated unauthenticated media endpoints are still served (frozen).
#[allow(deprecated)]
mod media;
mod presence;
mod profile;
mod push_rules;
mod register;
mod rooms;
mod session;
mod sync;
mod sync_body;
mod sync_ws;
mod thirdparty;
mod threepid;
mod to_device;
mod voip;

use std::sync::Arc;

use axum::{Router, extract::FromRef, routing::get};
use tessera_service::{
    account_data::AccountData, accounts::Accounts, devices::Devices, key_backup::KeyBackup, keys::Keys,
    media::Media, notifications::Notifications, presence::Presence, profiles::Profiles,
    push_rules::PushRules, rate_limit::RateLimiter, receipts::Receipts, rooms::Rooms,
    shared_secret::SharedSecretRegistration, sync::SyncService, to_device::ToDevice, typing::Typing,
};
use tessera_web::{Gate, routing};

pub use discovery::DiscoverySettings;

/// Everything the client API's handlers call, shared: every request
/// clones its route's state, so this is one pointer.
#[derive(Clone)]
pub struct ClientState(Arc<ClientServices>);

impl ClientState {
    pub fn new(services: ClientServices) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for ClientState {
    type Target = ClientServices;

    fn deref(&self) -> &ClientServices {
        &self.0
    }
}

/// The services behind [`ClientState`].
pub struct ClientServices {
    pub gate: Gate,
    pub account_data: AccountData,
    pub accounts: Accounts,
    pub devices: Devices,
    pub key_backup: KeyBackup,
    pub profiles: Profiles,
    pub rooms: Rooms,
    pub media: Media,
    pub shared_secret: SharedSecretRegistration,
    pub sync: SyncService,
    pub typing: Typing,
    pub receipts: Receipts,
    pub to_device: ToDevice,
    pub presence: Presence,
    pub keys: Keys,
    pub push_rules: PushRules,
    pub notifications: Notifications,
    pub rate_limiter: RateLimiter,
    pub discovery: DiscoverySettings,
}

impl FromRef<ClientState> for Gate {
    fn from_ref(state: &ClientState) -> Gate {
        state.gate.clone()
    }
}

/// The client API router, with CORS, request logging and the spec's
/// fallbacks for unknown paths and methods.
pub fn router(state: ClientState) -> Router {
    let routes = Router::new()
        .merge(discovery::routes())
        .merge(register::routes())
        .merge(session::routes())
        .merge(account::routes())
        .merge(account_data::routes())
        .merge(threepid::routes())
        .merge(thirdparty::routes())
        .merge(voip::routes())
        .merge(devices::routes())
        .merge(keys::routes())
        .merge(media::routes())
        .merge(key_backup::routes())
        .merge(presence::routes())
        .merge(profile::routes())
        .merge(push_rules::routes())
        .merge(rooms::routes())
        .merge(sync::routes())
        .merge(sync_ws::routes())
        .merge(to_device::routes())
        .merge(admin::routes())
        .route("/health", get(|| async { "OK" }))
        .fallback(routing::unknown_path)
        .method_not_allowed_fallback(routing::wrong_method)
        .layer(tessera_web::middleware::LogRequests)
        .with_state(state);
    // CORS wraps everything, so that preflights for any path are answered.
    routes.layer(tessera_web::middleware::Cors)
}
