//! Service errors turned into HTTP responses, once, through ruma's error
//! types so that `errcode`, `error`, `retry_after_ms` (with `Retry-After`)
//! and `soft_logout` are spelled exactly as the spec says.

use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::StatusCode;
use ruma::api::{
    OutgoingResponseExt,
    client::uiaa::UiaaResponse,
    error::{Error as RumaError, ErrorBody, ErrorKind, StandardErrorBody},
};
use tessera_service::Error;

/// A service error on its way to the client.
#[derive(Debug)]
pub struct WebError(pub Error);

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The body of every 500: nothing about our internals reaches the client.
fn internal_error() -> RumaError {
    let body = StandardErrorBody::new(ErrorKind::Unknown, "Internal server error".into());
    RumaError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorBody::Standard(body))
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let result = match self.0 {
            Error::Matrix { status, kind, message } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                let error =
                    RumaError::new(status, ErrorBody::Standard(StandardErrorBody::new(kind, message)));
                error.try_into_http_response::<BytesMut>()
            }
            Error::Uia(info) => UiaaResponse::AuthResponse(*info).try_into_http_response::<BytesMut>(),
            Error::Internal(cause) => {
                // Logged here, once, inside the request's span.
                tracing::error!(%cause, "internal error");
                internal_error().try_into_http_response::<BytesMut>()
            }
        };
        match result {
            Ok(response) => response.map(|body| axum::body::Body::from(body.freeze())).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "could not serialise an error response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
