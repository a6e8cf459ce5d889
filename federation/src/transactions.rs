//! `PUT /_matrix/federation/v1/send/{txnId}`: transactions of PDUs and
//! EDUs from other servers, for the service's `Transactions`.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#put_matrixfederationv1sendtxnid>.

use std::collections::BTreeMap;

use axum::{Router, extract::State};
use ruma::{OwnedEventId, api::federation::transactions::send_transaction_message};
use tessera_service::Error;
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new().ruma_route::<send_transaction_message::v1::Request, _, _>(send)
}

async fn send(
    State(state): State<FederationState>,
    req: Ruma<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response> {
    let origin = req.origin()?;
    if req.body.origin != origin {
        return Err(Error::forbidden("The transaction's origin is not the server that signed it").into());
    }
    let body = &req.body;
    let answer =
        state.transactions.receive(origin, body.transaction_id.as_str(), &body.pdus, &body.edus).await?;
    Ok(send_transaction_message::v1::Response::new(pdu_results(&answer)?).into())
}

/// The per-PDU results of a stored answer (`{"pdus": {id: {} or {"error": ..}}}`).
fn pdu_results(
    answer: &str,
) -> std::result::Result<BTreeMap<OwnedEventId, std::result::Result<(), String>>, Error> {
    let answer: serde_json::Value = serde_json::from_str(answer).map_err(Error::internal)?;
    let Some(pdus) = answer.get("pdus").and_then(serde_json::Value::as_object) else {
        return Ok(BTreeMap::new());
    };
    Ok(pdus
        .iter()
        .filter_map(|(id, result)| {
            let id = OwnedEventId::try_from(id.as_str()).ok()?;
            let result = match result.get("error").and_then(serde_json::Value::as_str) {
                Some(error) => Err(error.to_owned()),
                None => Ok(()),
            };
            Some((id, result))
        })
        .collect())
}
