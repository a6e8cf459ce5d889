//! Cross-cutting HTTP behaviour: CORS for web clients, one structured log
//! line per request, and panics turned into a logged 500 instead of a
//! dropped connection.

use std::{panic::AssertUnwindSafe, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::FutureExt;
use tracing::Instrument;

use crate::{WebError, extract::UserSlot};

/// CORS as the spec asks of every client API response, so that Element Web
/// on another origin works; preflights are answered here, before routing.
/// Spec: <https://spec.matrix.org/v1.16/client-server-api/#web-browser-clients>.
pub async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization"),
    );
    response
}

/// Logs one line per request (method, path template, status, latency,
/// user) and converts a panic in a handler into a 500 logged with its cause.
pub async fn log_request(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |p| p.as_str().to_owned());
    let slot = UserSlot::default();
    request.extensions_mut().insert(slot.clone());
    let span = tracing::info_span!("request", %method, %path);
    let response =
        AssertUnwindSafe(next.run(request)).catch_unwind().instrument(span.clone()).await.unwrap_or_else(
            |panic| {
                let cause = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                span.in_scope(|| {
                    WebError(tessera_service::Error::internal(format!("panic: {cause}"))).into_response()
                })
            },
        );
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let user = slot.0.get().map_or("-", String::as_str);
    span.in_scope(|| tracing::info!(status, latency_ms = format!("{latency_ms:.1}"), user, "handled"));
    response
}
