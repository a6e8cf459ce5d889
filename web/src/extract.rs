//! The `Ruma<T>` extractor: from an HTTP request to an authenticated, rate
//! limited, parsed ruma request.
//!
//! The order matters and follows what clients observe from Synapse: a
//! missing or bad token is reported before anything about the body; rate
//! limits apply before the (possibly expensive) parse; a body that is not
//! JSON is `M_NOT_JSON`, JSON of the wrong shape `M_BAD_JSON` or
//! `M_MISSING_PARAM`.

use std::{
    marker::PhantomData,
    net::{IpAddr, SocketAddr},
    panic::AssertUnwindSafe,
    sync::{Arc, OnceLock},
};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, RawPathParams, Request},
    http::request::Parts,
};
use ruma::api::{
    IncomingRequest, IncomingRequestExt, Metadata,
    auth_scheme::{
        AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken,
        NoAuthentication, extract_bearer_or_query_token,
    },
    error::{DeserializationError, FromHttpRequestError},
    federation::authentication::{ServerSignatures, XMatrix},
};
use tessera_service::{
    Error,
    auth::{Authenticator, Identity},
    federation::ServerKeys,
    rate_limit::{Class, RateLimiter},
};

use crate::{WebError, compat, input};

/// What every extractor needs from the application state.
#[derive(Clone)]
pub struct Gate {
    pub authenticator: Authenticator,
    pub rate_limiter: RateLimiter,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Whether to take the client IP from `X-Forwarded-For` (behind a
    /// reverse proxy) rather than from the TCP peer.
    pub trust_forwarded_for: bool,
    /// Verifies federation requests' `X-Matrix` signatures.
    pub server_keys: ServerKeys,
}

/// Whether an endpoint needs, accepts or ignores an access token, read from
/// the ruma metadata's authentication scheme.
pub trait TokenPolicy {
    const REQUIRED: bool;
    const ACCEPTED: bool;
    /// Federation requests: signed by the origin server (`X-Matrix`).
    const SERVER_SIGNED: bool = false;
}
macro_rules! token_policy {
    ($($scheme:ty => $required:literal, $accepted:literal;)*) => {$(
        impl TokenPolicy for $scheme {
            const REQUIRED: bool = $required;
            const ACCEPTED: bool = $accepted;
        }
    )*};
}
token_policy! {
    AccessToken => true, true;
    AccessTokenOptional => false, true;
    // Application services arrive in a later issue; until then their
    // endpoints behave as the user-token equivalents.
    AppserviceToken => true, true;
    AppserviceTokenOptional => false, true;
    NoAccessToken => false, false;
    NoAuthentication => false, false;
}

impl TokenPolicy for ServerSignatures {
    const REQUIRED: bool = false;
    const ACCEPTED: bool = false;
    const SERVER_SIGNED: bool = true;
}

/// Who may call an endpoint beyond ordinary users: guests (spec: "Guest
/// access") and holders of expired tokens (only to log out).
pub trait GuestPolicy {
    const ALLOWED: bool;
    const EXPIRED_TOKENS: bool = false;
}
/// The default: guests get `M_GUEST_ACCESS_FORBIDDEN`.
pub struct NoGuests;
/// For the endpoints the spec lets guests use.
pub struct GuestsAllowed;
/// For `/logout` and `/logout/all`: guests, and expired tokens too, so a
/// client whose refresh failed can still remove its device (as Synapse).
pub struct LogoutAllowed;
impl GuestPolicy for NoGuests {
    const ALLOWED: bool = false;
}
impl GuestPolicy for GuestsAllowed {
    const ALLOWED: bool = true;
}
impl GuestPolicy for LogoutAllowed {
    const ALLOWED: bool = true;
    const EXPIRED_TOKENS: bool = true;
}

/// Where the request-log middleware learns who made the request.
#[derive(Clone, Default)]
pub struct UserSlot(pub Arc<OnceLock<String>>);

/// A parsed, authenticated request for endpoint `T`.
pub struct Ruma<T, G = NoGuests> {
    pub body: T,
    identity: Option<Identity>,
    /// The server a federation request comes from (verified).
    origin: Option<ruma::OwnedServerName>,
    pub client_ip: Option<IpAddr>,
    /// The request body as sent (checked, after the compatibility
    /// rewrites), for the few endpoints that keep keys ruma's type drops.
    raw_body: bytes::Bytes,
    _guests: PhantomData<G>,
}

impl<T, G> Ruma<T, G> {
    /// The body's top-level JSON object, or an empty one (no body, or not
    /// an object).
    pub fn json_object(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_slice(&self.raw_body) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => serde_json::Map::new(),
        }
    }

    /// The caller. Always present on endpoints that require a token.
    pub fn identity(&self) -> Result<&Identity, Error> {
        self.identity.as_ref().ok_or_else(Error::missing_token)
    }

    /// The caller, if the request carried a token.
    pub fn maybe_identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The server that signed this federation request.
    pub fn origin(&self) -> Result<&ruma::ServerName, Error> {
        self.origin.as_deref().ok_or_else(|| unauthorized("Missing X-Matrix authorization"))
    }
}

impl<T, G, S> FromRequest<S> for Ruma<T, G>
where
    T: IncomingRequest + Send,
    T::Authentication: TokenPolicy,
    G: GuestPolicy,
    Gate: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Boxed: the handler's future is sized for its largest state, and
        // a long-poll holds that future for as long as it waits.
        Box::pin(Self::extract(request, state)).await
    }
}

impl<T, G> Ruma<T, G>
where
    T: IncomingRequest + Send,
    T::Authentication: TokenPolicy,
    G: GuestPolicy,
{
    async fn extract<S>(request: Request, state: &S) -> Result<Self, WebError>
    where
        Gate: FromRef<S>,
        S: Send + Sync,
    {
        let gate = Gate::from_ref(state);
        let (mut parts, body) = request.into_parts();
        let client_ip = client_ip(&parts, gate.trust_forwarded_for);

        let identity = authenticate::<T>(&gate, &parts, client_ip, G::EXPIRED_TOKENS).await?;
        if let Some(identity) = &identity {
            if identity.is_guest && !G::ALLOWED {
                return Err(Error::guest_access_forbidden().into());
            }
            if let Some(slot) = parts.extensions.get::<UserSlot>() {
                let _ = slot.0.set(identity.user_id.to_string());
            }
        }
        if T::RATE_LIMITED {
            let key = match &identity {
                Some(identity) => identity.user_id.to_string(),
                None => client_ip.map_or_else(|| "unknown".into(), |ip| ip.to_string()),
            };
            gate.rate_limiter.check(Class::General, &key)?;
        }

        let path_args = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| Error::invalid_param(format!("bad path parameter: {e}")))?;
        let mut path_args: Vec<String> = path_args.iter().map(|(_, v)| v.to_owned()).collect();
        for arg in &path_args {
            input::check_path_parameter(arg)?;
        }
        input::check_query(parts.uri.query().unwrap_or_default())?;
        // Routes registered without a trailing parameter (the spec's
        // `/state/{eventType}` with an empty state key) leave it empty.
        while path_args.len() < T::_path_parameters().len() {
            path_args.push(String::new());
        }
        let path_args: Vec<&str> = path_args.iter().map(String::as_str).collect();

        let bytes = read_body(body, gate.max_body_bytes).await?;
        input::check_json_body(&bytes)?;
        let origin = match T::Authentication::SERVER_SIGNED {
            true => Some(verify_origin(&gate.server_keys, &parts, &bytes).await?),
            false => None,
        };
        let bytes = compat::legacy_uia_user(bytes);
        let bytes = compat::empty_json_body(&parts, bytes);
        // After the empty body became `{}`, which has no `type` either.
        compat::check_login_type(&parts, &bytes)?;
        compat::default_messages_dir(&mut parts);

        let http_request = http::Request::from_parts(parts, bytes.as_ref());
        // ruma's deserialisers index into JSON maps in places; a malformed body
        // must never take the connection down with a panic.
        let parsed =
            std::panic::catch_unwind(AssertUnwindSafe(|| T::try_from_http_request(http_request, &path_args)))
                .map_err(|_| Error::bad_json("Malformed request"))?;
        let body = parsed.map_err(request_error)?;
        Ok(Self { body, identity, origin, client_ip, raw_body: bytes, _guests: PhantomData })
    }
}

async fn authenticate<T>(
    gate: &Gate,
    parts: &Parts,
    ip: Option<IpAddr>,
    allow_expired: bool,
) -> Result<Option<Identity>, Error>
where
    T: Metadata,
    T::Authentication: TokenPolicy,
{
    if !T::Authentication::ACCEPTED {
        return Ok(None);
    }
    let probe = http::Request::from_parts(parts.clone(), ());
    let token = extract_bearer_or_query_token(&probe).map_err(|_| {
        Error::new(401, ruma::api::error::ErrorKind::MissingToken, "Malformed Authorization header")
    })?;
    match token {
        Some(token) => {
            let ip = ip.map(|ip| ip.to_string());
            gate.authenticator.authenticate(&token, ip.as_deref(), allow_expired).await.map(Some)
        }
        None if T::Authentication::REQUIRED => Err(Error::missing_token()),
        None => Ok(None),
    }
}

/// The client's IP address, for handlers outside [`Ruma`].
/// Checks a federation request's `X-Matrix` authorization against the
/// origin's key (fetched if need be); 401 `M_UNAUTHORIZED` otherwise.
async fn verify_origin(
    server_keys: &ServerKeys,
    parts: &Parts,
    body: &bytes::Bytes,
) -> Result<ruma::OwnedServerName, Error> {
    let auth = XMatrix::extract_from_http_headers(&parts.headers)
        .map_err(|e| unauthorized(&format!("Missing or malformed X-Matrix authorization: {e}")))?;
    let request = http::Request::from_parts(parts.clone(), body.as_ref());
    server_keys.authenticate(&auth, &request).await?.map_err(|e| match e {
        tessera_service::federation::RequestAuthError::NotAllowed(_) => Error::forbidden(e.to_string()),
        e => unauthorized(&e.to_string()),
    })
}

fn unauthorized(message: &str) -> Error {
    Error::new(401, ruma::api::error::ErrorKind::Unauthorized, message)
}

pub struct ClientIp(pub Option<IpAddr>);

impl<S> FromRequestParts<S> for ClientIp
where
    Gate: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, Gate::from_ref(state).trust_forwarded_for)))
    }
}

fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        // The entry our proxy appended is the last one of the last header;
        // everything before it came from the client and can be forged.
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}

/// Reads the whole body, up to `limit` bytes: more is 413 `M_TOO_LARGE`;
/// see [`body_error`] for the rest.
pub(crate) async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, Error> {
    axum::body::to_bytes(body, limit).await.map_err(body_error)
}

/// Why a request body could not be read, as the client is told: one that
/// stalls or trickles past the connection settings is 408
/// (`crate::slow_body`); past a length limit 413; one that breaks off or
/// is malformed on the wire (a bad chunk size) is the client's mistake, 400.
pub fn body_error(e: axum::Error) -> Error {
    if crate::slow_body::BodyTimedOut::caused(&e) {
        return Error::new(
            408,
            ruma::api::error::ErrorKind::Unknown,
            "The request body was not received in time",
        );
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(error) = cause {
        if error.is::<http_body_util::LengthLimitError>() {
            return Error::too_large("Request body is too large");
        }
        cause = error.source();
    }
    Error::not_json(format!("Could not read the request body: {e}"))
}

/// A request for endpoint `T` whose body is left unread for the handler
/// to stream (media uploads): ruma parses the path, query and headers as
/// for [`Ruma`] (its body field stays empty), after the same
/// authentication and rate limiting.
pub struct Streamed<T, G = NoGuests> {
    pub request: Ruma<T, G>,
    pub body: axum::body::Body,
    /// The `Content-Length` the client declared, if any.
    pub declared_len: Option<u64>,
}

impl<T, G, S> FromRequest<S> for Streamed<T, G>
where
    T: IncomingRequest + Send,
    T::Authentication: TokenPolicy,
    G: GuestPolicy,
    Gate: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let declared_len = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let without_body = Request::from_parts(parts, axum::body::Body::empty());
        let request = Box::pin(Ruma::<T, G>::extract(without_body, state)).await?;
        Ok(Self { request, body, declared_len })
    }
}

/// Maps ruma's parse failures to the spec's error codes.
fn request_error(error: FromHttpRequestError) -> WebError {
    let error = match error {
        FromHttpRequestError::MethodMismatch { .. } => Error::unrecognized(405, "Method not allowed"),
        FromHttpRequestError::Deserialization(e) => match e {
            DeserializationError::Json(e) if e.to_string().starts_with("missing field") => {
                Error::missing_param(e.to_string())
            }
            DeserializationError::Json(e) => Error::bad_json(e.to_string()),
            DeserializationError::Query(e) if e.to_string().starts_with("missing field") => {
                Error::missing_param(e.to_string())
            }
            DeserializationError::Query(e) => Error::invalid_param(e.to_string()),
            DeserializationError::Ident(e) => Error::invalid_param(e.to_string()),
            other => Error::bad_json(other.to_string()),
        },
        _ => Error::bad_json("Malformed request"),
    };
    WebError(error)
}
