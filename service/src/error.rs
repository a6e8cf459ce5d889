//! The service layer's one error type.
//!
//! A [`Error::Matrix`] carries the HTTP status with the errcode because the
//! spec sometimes gives one errcode different statuses (`M_UNRECOGNIZED` is
//! 404 for an unknown path and 405 for a wrong method). Storage trouble
//! becomes [`Error::Internal`], which the web layer logs once and answers
//! with a bare 500, except an unreachable database: [`Error::Unavailable`],
//! a 503 the client is told to retry.

use std::time::Duration;

use ruma::api::{
    client::uiaa::UiaaInfo,
    error::{ErrorKind, LimitExceededErrorData, RetryAfter, UnknownTokenErrorData},
};
use tessera_storage::StorageError;

/// Result of a service call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error the client caused, answered as `{errcode, error}`.
    #[error("{status} {kind:?}: {message}")]
    Matrix { status: u16, kind: ErrorKind, message: String },
    /// User-interactive auth is not complete: 401 with the flows.
    #[error("user-interactive authentication required")]
    Uia(Box<UiaaInfo>),
    /// Our fault. Logged with its cause; the client sees only a 500.
    #[error("internal error: {0}")]
    Internal(String),
    /// The database cannot be reached (down, restarting, unreachable).
    /// Logged with its cause; the client sees 503 `M_UNKNOWN` and when to
    /// retry, and a retry succeeds once the database is back.
    #[error("database unavailable: {cause}")]
    Unavailable { cause: String, retry_after: Duration },
}

/// When a client should try again after a 503: soon, since the pools
/// reconnect the moment the database is back, and each attempt already
/// waited for a connection.
pub const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(2);

impl Error {
    pub fn new(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Matrix { status, kind, message: message.into() }
    }
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::BadJson, message)
    }
    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::NotJson, message)
    }
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::InvalidParam, message)
    }
    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::MissingParam, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, ErrorKind::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, ErrorKind::NotFound, message)
    }
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::Unknown, message)
    }
    pub fn missing_token() -> Self {
        Self::new(401, ErrorKind::MissingToken, "Missing access token")
    }
    pub fn unknown_token(soft_logout: bool) -> Self {
        let mut data = UnknownTokenErrorData::new();
        data.soft_logout = soft_logout;
        let message = if soft_logout { "Access token has expired" } else { "Unknown access token" };
        Self::new(401, ErrorKind::UnknownToken(data), message)
    }
    pub fn guest_access_forbidden() -> Self {
        Self::new(403, ErrorKind::GuestAccessForbidden, "Guest access is not allowed here")
    }
    pub fn user_in_use() -> Self {
        Self::new(400, ErrorKind::UserInUse, "User ID already taken")
    }
    pub fn user_deactivated() -> Self {
        Self::new(403, ErrorKind::UserDeactivated, "This account has been deactivated")
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, ErrorKind::TooLarge, message)
    }
    pub fn limit_exceeded(retry_after: Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::new(429, ErrorKind::LimitExceeded(data), "Too many requests")
    }
    pub fn unrecognized(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, ErrorKind::Unrecognized, message)
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
    /// 400 `M_INVALID_SIGNATURE` (a key's signature does not verify).
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::new(400, custom_kind("M_INVALID_SIGNATURE"), message)
    }
}

/// An errcode ruma has no variant for.
fn custom_kind(errcode: &str) -> ErrorKind {
    serde_json::from_value::<ruma::api::error::StandardErrorBody>(serde_json::json!({
        "errcode": errcode,
        "error": "",
    }))
    .map_or(ErrorKind::Unknown, |body| body.kind)
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => {
                Self::Unavailable { cause: e.to_string(), retry_after: UNAVAILABLE_RETRY_AFTER }
            }
            _ => Self::Internal(e.to_string()),
        }
    }
}
