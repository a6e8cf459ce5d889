//! Room directory endpoints. (Being written.)

use axum::Router;

use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new()
}
