//! tessera-service: what the server does, independent of HTTP.
//!
//! Each module is one Matrix concept with a service struct that takes its
//! collaborators (the [`Store`](tessera_storage::Store), settings, other
//! services) in its constructor. Handlers in `client-api` call exactly one
//! service method each. Errors are [`Error`]: a Matrix error the client
//! caused, a user-interactive-auth challenge, or an internal failure.
//!
//! Must not: depend on axum or know about routes.

pub mod account_data;
pub mod accounts;
pub mod auth;
pub mod changes;
pub mod delivery;
pub mod devices;
pub use tessera_storage::Device;
pub mod error;
pub mod federation;
pub mod key_backup;
pub mod keys;
pub mod limits;
pub mod media;
pub mod notifications;
pub mod notifier;
pub mod passwords;
pub mod presence;
pub mod profiles;
pub mod push_rules;
pub mod rate_limit;
pub mod receipts;
pub mod rooms;
pub mod secrets;
pub mod shared_secret;
pub mod streams;
pub mod sync;
pub mod to_device;
pub mod typing;
pub mod uia;

pub use error::{Error, Result};

/// Entries a per-user shortcut map holds at most (see [`remember`]).
const REMEMBERED_USERS: usize = 100_000;

/// Inserts into a per-user map that is only a shortcut (what it holds can
/// be read or decided again): past [`REMEMBERED_USERS`] entries it starts
/// over, so it does not grow with every user the process has seen.
pub(crate) fn remember<K: std::hash::Hash + Eq, V>(
    map: &mut std::collections::HashMap<K, V>,
    key: K,
    value: V,
) {
    if map.len() >= REMEMBERED_USERS && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
