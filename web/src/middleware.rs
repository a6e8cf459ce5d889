//! Cross-cutting HTTP behaviour: CORS for web clients, one structured log
//! line per request, and panics turned into a logged 500 instead of a
//! dropped connection.
//!
//! Both are tower layers with their own small futures, not
//! `axum::middleware::from_fn`: that boxes an async block and a service
//! clone for every request, and a waiting long-poll holds them (about
//! 1 KiB per layer) for as long as it waits.

use std::{
    convert::Infallible,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{
    FutureExt,
    future::{Either, Map, Ready},
};
use tower::{Layer, Service};

use crate::{WebError, extract::UserSlot};

/// CORS as the spec asks of every client API response, so that Element Web
/// on another origin works; preflights are answered here, before routing.
/// Spec: <https://spec.matrix.org/v1.16/client-server-api/#web-browser-clients>.
#[derive(Clone, Copy, Default)]
pub struct Cors;

impl<S> Layer<S> for Cors {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService(inner)
    }
}

#[derive(Clone)]
pub struct CorsService<S>(S);

type Answered = Result<Response, Infallible>;

impl<S> Service<Request> for CorsService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Map<S::Future, fn(Answered) -> Answered>, Ready<Answered>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == Method::OPTIONS {
            return Either::Right(futures_util::future::ready(Ok(with_cors(
                StatusCode::NO_CONTENT.into_response(),
            ))));
        }
        let add: fn(Answered) -> Answered = |answered| answered.map(with_cors);
        Either::Left(self.0.call(request).map(add))
    }
}

fn with_cors(mut response: Response) -> Response {
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
#[derive(Clone, Copy, Default)]
pub struct LogRequests;

impl<S> Layer<S> for LogRequests {
    type Service = LogRequestsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LogRequestsService(inner)
    }
}

#[derive(Clone)]
pub struct LogRequestsService<S>(S);

impl<S> Service<Request> for LogRequestsService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Logged<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let slot = UserSlot::default();
        request.extensions_mut().insert(slot.clone());
        let method = request.method();
        let span = match request.extensions().get::<MatchedPath>() {
            Some(path) => tracing::info_span!("request", %method, path = path.as_str()),
            None => tracing::info_span!("request", %method, path = "<unmatched>"),
        };
        Logged { inner: self.0.call(request), span, slot, started: Instant::now() }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, logged when it answers.
    pub struct Logged<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        slot: UserSlot,
        started: Instant,
    }
}

impl<F> Future for Logged<F>
where
    F: Future<Output = Answered>,
{
    type Output = Answered;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered> {
        let this = self.project();
        let _entered = this.span.enter();
        let inner = this.inner;
        let response = match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(polled) => match ready!(polled) {
                Ok(response) => response,
                Err(never) => match never {},
            },
            // Logged inside the request's span, with its cause.
            Err(panic) => {
                WebError(tessera_service::Error::internal(format!("panic: {}", panic_cause(&*panic))))
                    .into_response()
            }
        };
        let status = response.status().as_u16();
        let latency_ms = this.started.elapsed().as_secs_f64() * 1000.0;
        let user = this.slot.0.get().map_or("-", String::as_str);
        tracing::info!(status, latency_ms = format!("{latency_ms:.1}"), user, "handled");
        Poll::Ready(Ok(response))
    }
}

fn panic_cause(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        let panicking = || async {
            if std::hint::black_box(true) {
                panic!("the handler broke");
            }
            "unreachable"
        };
        Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route("/panics", get(panicking))
            .layer(LogRequests)
            .layer(Cors)
    }

    async fn call(method: Method, path: &str) -> (StatusCode, http::HeaderMap, String) {
        let request = Request::builder().method(method).uri(path).body(Body::empty()).expect("request");
        let response = app().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn answers_carry_cors_headers_and_preflights_are_answered_before_routing() {
        let (status, headers, body) = call(Method::GET, "/ok").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "fine"));
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let (status, headers, _) = call(Method::OPTIONS, "/no/such/path").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_m_unknown_with_cors_headers() {
        let (status, headers, body) = call(Method::GET, "/panics").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["errcode"], "M_UNKNOWN");
        assert!(!body["error"].as_str().unwrap_or_default().contains("broke"), "details leak: {body}");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
