//! Service errors turned into HTTP responses, once, through ruma's error
//! types so that `errcode`, `error`, `retry_after_ms` (with `Retry-After`)
//! and `soft_logout` are spelled exactly as the spec says.
//!
//! An unreachable database is 503 `M_UNKNOWN` with a retry hint: the
//! `Retry-After` header (RFC 9110's for a 503) and `retry_after_ms` in the
//! body as in `M_LIMIT_EXCEEDED`, where clients already look. ruma puts a
//! retry hint only on `M_LIMIT_EXCEEDED`, so that body is written as JSON
//! and the header added here.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::{HeaderValue, StatusCode, header::RETRY_AFTER};
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

/// The body of every 503: the database is unavailable, try again.
fn unavailable_error(retry_after: Duration) -> RumaError {
    let body = serde_json::json!({
        "errcode": "M_UNKNOWN",
        "error": "The database is unavailable; try again shortly",
        "retry_after_ms": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
    });
    RumaError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::Json(body))
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
            Error::Unavailable { cause, retry_after } => {
                // Not a bug here, and one line per failed request while the
                // database is down: a warning.
                tracing::warn!(%cause, "database unavailable");
                unavailable_error(retry_after).try_into_http_response::<BytesMut>().map(|mut response| {
                    // Whole seconds, rounded up so that a client never comes back early.
                    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
                    response
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: Error) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let (parts, body) = WebError(error).into_response().into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        (parts.status, parts.headers, serde_json::from_slice(&body).expect("JSON"))
    }

    #[tokio::test]
    async fn an_unavailable_database_is_503_m_unknown_with_when_to_retry() {
        let cause = "database unavailable: pool timed out while waiting for an open connection".into();
        let error = Error::Unavailable { cause, retry_after: Duration::from_millis(1500) };
        let (status, headers, body) = answer(error).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["errcode"], "M_UNKNOWN");
        assert_eq!(body["retry_after_ms"], 1500);
        assert!(!body["error"].as_str().unwrap_or_default().contains("pool"), "details leak: {body}");
        assert_eq!(headers[RETRY_AFTER], "2", "whole seconds, rounded up");
    }

    #[tokio::test]
    async fn internal_errors_stay_bare_500s() {
        let (status, headers, body) = answer(Error::internal("corrupt row: x")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!((body["errcode"].as_str(), body.get("retry_after_ms")), (Some("M_UNKNOWN"), None));
        assert!(!headers.contains_key(RETRY_AFTER));
    }
}
