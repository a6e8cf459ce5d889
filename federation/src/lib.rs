//! tessera-federation: the Server-Server API.
//!
//! For now: the key server (`GET /_matrix/key/v2/server`, the server's
//! signed ed25519 key) and `GET /_matrix/federation/v1/version`. The
//! transport for rooms arrives with the federation issue.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/>.

mod keys;
mod version;

use std::sync::Arc;

use axum::{Router, extract::FromRef};
use tessera_core::ServerSigningKey;
use tessera_web::{Gate, routing};

/// Everything the federation handlers call.
#[derive(Clone)]
pub struct FederationState {
    pub gate: Gate,
    pub signing_key: Arc<ServerSigningKey>,
}

impl FromRef<FederationState> for Gate {
    fn from_ref(state: &FederationState) -> Gate {
        state.gate.clone()
    }
}

/// The key server and `/_matrix/federation/v1/version`, for mounting on
/// the client listener too (as Synapse does), so that a server without a
/// federation listener still publishes its key, and a wrong method on
/// these paths is the spec's 405 there as well.
pub fn key_router(state: FederationState) -> Router {
    // The wrong-method answer is set here: the client router's own
    // applies only to the routes it had when it was set.
    keys::routes()
        .merge(version::routes())
        .method_not_allowed_fallback(routing::wrong_method)
        .layer(tessera_web::middleware::LogRequests)
        .with_state(state)
}

/// The federation listener's router.
pub fn router(state: FederationState) -> Router {
    keys::routes()
        .merge(version::routes())
        .fallback(routing::unknown_path)
        .method_not_allowed_fallback(routing::wrong_method)
        .layer(tessera_web::middleware::LogRequests)
        .with_state(state)
}
