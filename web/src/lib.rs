//! tessera-web: the glue between ruma's endpoint types and axum, shared by
//! the client and federation APIs.
//!
//! - [`Ruma`]: an extractor that authenticates the request as the endpoint's
//!   ruma metadata says, applies rate limits and the body limit, checks the
//!   body is JSON, and parses ruma's request type.
//! - [`RumaResponse`] and [`WebError`]: responses and errors, converted once,
//!   through ruma's own serialisers.
//! - [`routing`]: registers a handler on every path an endpoint has, and the
//!   spec's 404/405 `M_UNRECOGNIZED` fallbacks.
//! - [`middleware`]: CORS, one log line per request, panics → 500.
//!
//! Must not: contain business logic or SQL.

mod compat;
mod error;
mod extract;
pub mod input;
mod json;
pub mod media;
pub mod middleware;
mod response;
pub mod routing;
pub mod slow_body;

pub use error::WebError;
pub use extract::{
    ClientIp, Gate, GuestPolicy, GuestsAllowed, LogoutAllowed, NoGuests, Ruma, Streamed, TokenPolicy,
    body_error,
};
pub use json::JsonBody;
pub use response::{RumaResponse, public_rooms_json, reader_body, reader_stream};

/// What a handler returns.
pub type Result<T, E = WebError> = std::result::Result<RumaResponse<T>, E>;
