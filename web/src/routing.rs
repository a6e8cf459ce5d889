//! Registering handlers under every path ruma knows for an endpoint (`r0`,
//! `v3`, unstable prefixes), and the spec's answers for unknown paths and
//! wrong methods.

use axum::{Router, handler::Handler, routing::MethodFilter};
use ruma::api::{Metadata, path_builder::PathBuilder};
use tessera_service::Error;

use crate::WebError;

/// Adds `handler` for endpoint `T` on each of its paths.
pub trait RumaRoutes<S> {
    fn ruma_route<T, H, X>(self, handler: H) -> Self
    where
        T: Metadata,
        H: Handler<X, S>,
        X: 'static;
}

impl<S: Clone + Send + Sync + 'static> RumaRoutes<S> for Router<S> {
    fn ruma_route<T, H, X>(mut self, handler: H) -> Self
    where
        T: Metadata,
        H: Handler<X, S>,
        X: 'static,
    {
        let filter = MethodFilter::try_from(T::METHOD).expect("ruma endpoints use standard methods");
        for path in T::PATH_BUILDER.all_paths() {
            self = self.route(path, axum::routing::on(filter, handler.clone()));
        }
        self
    }
}

/// Adds `handler` for endpoint `T` also at `path`, a path ruma does not
/// list (like the empty-state-key form of the state endpoints).
pub fn extra_route<S, T, H, X>(router: Router<S>, path: &str, handler: H) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    T: Metadata,
    H: Handler<X, S>,
    X: 'static,
{
    let filter = MethodFilter::try_from(T::METHOD).expect("ruma endpoints use standard methods");
    router.route(path, axum::routing::on(filter, handler))
}

/// `404 M_UNRECOGNIZED` for paths we do not serve.
pub async fn unknown_path() -> WebError {
    WebError(Error::unrecognized(404, "Unrecognized request"))
}

/// `405 M_UNRECOGNIZED` for a known path with the wrong method.
pub async fn wrong_method() -> WebError {
    WebError(Error::unrecognized(405, "Method not allowed for this endpoint"))
}
