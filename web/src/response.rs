//! Successful responses, serialised by ruma.

use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use ruma::api::{OutgoingResponse, OutgoingResponseExt};
use tessera_service::Error;

use crate::WebError;

/// A ruma response type as an axum response.
pub struct RumaResponse<T>(pub T);

impl<T> From<T> for RumaResponse<T> {
    fn from(response: T) -> Self {
        Self(response)
    }
}

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response.map(|body| axum::body::Body::from(body.freeze())).into_response(),
            Err(e) => WebError(Error::internal(format!("response serialisation: {e}"))).into_response(),
        }
    }
}
