//! `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}` and
//! `POST /rooms/{roomId}/read_markers`.

use axum::{Router, extract::State};
use ruma::api::client::{read_marker::set_read_marker, receipt::create_receipt};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<create_receipt::v3::Request, _, _>(receipt)
        .ruma_route::<set_read_marker::v3::Request, _, _>(read_markers)
}

async fn receipt(
    State(state): State<ClientState>,
    req: Ruma<create_receipt::v3::Request, GuestsAllowed>,
) -> Result<create_receipt::v3::Response> {
    let b = &req.body;
    let kind = b.receipt_type.to_string();
    state.receipts.receipt(req.identity()?, &b.room_id, &kind, &b.event_id, b.thread.as_str()).await?;
    Ok(create_receipt::v3::Response::new().into())
}

async fn read_markers(
    State(state): State<ClientState>,
    req: Ruma<set_read_marker::v3::Request, GuestsAllowed>,
) -> Result<set_read_marker::v3::Response> {
    let b = &req.body;
    let (fully_read, read, private) =
        (b.fully_read.as_deref(), b.read_receipt.as_deref(), b.private_read_receipt.as_deref());
    state.receipts.read_markers(req.identity()?, &b.room_id, fully_read, read, private).await?;
    Ok(set_read_marker::v3::Response::new().into())
}
