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

/// A `/publicRooms` answer (client or federation) as JSON with every
/// entry's `join_rule`. ruma leaves it out when it is `public` (the spec's
/// meaning of an absent one), but clients and Complement read it as
/// Synapse writes it, always present.
pub fn public_rooms_json(response: impl OutgoingResponse) -> Result<axum::Json<serde_json::Value>, WebError> {
    let response = response
        .try_into_http_response::<Vec<u8>>()
        .map_err(|e| Error::internal(format!("response serialisation: {e}")))?;
    let mut body: serde_json::Value = serde_json::from_slice(response.body()).map_err(Error::internal)?;
    for entry in body.get_mut("chunk").and_then(serde_json::Value::as_array_mut).into_iter().flatten() {
        if let Some(entry) = entry.as_object_mut() {
            entry.entry("join_rule").or_insert_with(|| "public".into());
        }
    }
    Ok(axum::Json(body))
}

/// A response body read from `reader` as it is sent (media): never held
/// whole in memory.
pub fn reader_body(reader: impl tokio::io::AsyncRead + Send + 'static) -> axum::body::Body {
    axum::body::Body::from_stream(reader_stream(reader))
}

/// The bytes of `reader` as a stream of chunks.
pub fn reader_stream(
    reader: impl tokio::io::AsyncRead + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024)
}
