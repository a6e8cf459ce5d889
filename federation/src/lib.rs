//! tessera-federation: the Server-Server API.
//!
//! Inbound: the key server and notary (`/_matrix/key/v2/*`), `/version`,
//! queries about this server's users (profiles, device keys), transactions
//! (`/send`: room events and EDUs), joins (`/make_join`, `/send_join`) and
//! the room reads (`/event`, `/state`, `/state_ids`, `/event_auth`,
//! `/backfill`, `/get_missing_events`, `/timestamp_to_event`); requests
//! signed with `X-Matrix` are verified by `tessera_web`'s extractor before
//! a handler runs. Outbound: the signed HTTPS client
//! ([`client::FederationClient`], the service's `Remote`), with
//! server-name resolution (`discovery`) and the address rules (`outbound`).
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/>.

pub mod client;
mod directory;
mod discovery;
mod events;
mod keys;
mod media;
mod media_fetch;
mod membership;
mod membership_v1;
pub mod outbound;
mod query;
mod room_reads;
mod srv;
mod transactions;
mod user_keys;
mod version;

use axum::{Router, extract::FromRef};
use tessera_service::{
    federation::{ServerKeys, Transactions},
    keys::Keys,
    media::Media,
    profiles::Profiles,
    rooms::Rooms,
};
use tessera_web::{Gate, routing};

/// Everything the federation handlers call.
#[derive(Clone)]
pub struct FederationState {
    pub gate: Gate,
    pub server_keys: ServerKeys,
    pub profiles: Profiles,
    pub keys: Keys,
    pub transactions: Transactions,
    pub rooms: Rooms,
    pub media: Media,
}

impl FromRef<FederationState> for Gate {
    fn from_ref(state: &FederationState) -> Gate {
        state.gate.clone()
    }
}

fn routes() -> Router<FederationState> {
    keys::routes()
        .merge(version::routes())
        .merge(query::routes())
        .merge(user_keys::routes())
        .merge(transactions::routes())
        .merge(events::routes())
        .merge(membership::routes())
        .merge(room_reads::routes())
        .merge(directory::routes())
        .merge(media::routes())
}

/// Every federation route, for mounting on the client listener too (as
/// Synapse does): a server behind a reverse proxy with `.well-known`
/// delegation federates through it, a server without a federation
/// listener still publishes its key, and a wrong method on these paths is
/// the spec's 405 there as well.
pub fn key_router(state: FederationState) -> Router {
    // The wrong-method answer is set here: the client router's own
    // applies only to the routes it had when it was set.
    routes()
        .method_not_allowed_fallback(routing::wrong_method)
        .layer(tessera_web::middleware::LogRequests)
        .with_state(state)
}

/// The federation listener's router.
pub fn router(state: FederationState) -> Router {
    routes()
        .fallback(routing::unknown_path)
        .method_not_allowed_fallback(routing::wrong_method)
        .layer(tessera_web::middleware::LogRequests)
        .with_state(state)
}
