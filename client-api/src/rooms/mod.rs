//! Room endpoints: creation, membership, sending events and state, and
//! reading history. Spec: <https://spec.matrix.org/v1.16/client-server-api/#rooms>.

mod create;
mod directory;
mod events;
mod hierarchy;
mod history;
mod membership;
mod receipts;
mod relations;
mod typing;

use axum::Router;
use ruma::serde::Raw;
use tessera_service::{Error, rooms::ClientEvent};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .merge(create::routes())
        .merge(directory::routes())
        .merge(membership::routes())
        .merge(events::routes())
        .merge(hierarchy::routes())
        .merge(history::routes())
        .merge(receipts::routes())
        .merge(relations::routes())
        .merge(typing::routes())
}

/// A client-format event as the ruma type a response wants.
fn raw<T>(event: ClientEvent) -> Result<Raw<T>, Error> {
    Ok(Raw::from_json(event.into_json()))
}
