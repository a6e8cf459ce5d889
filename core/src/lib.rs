//! tessera-core: the pure heart of Tessera.
//!
//! Owns what can be decided without I/O: which room versions the server
//! speaks, the server's signing key and how JSON is signed with it, and the
//! rules for user IDs. Everything here is synchronous and deterministic apart
//! from key generation; nothing here touches a database, a socket or a clock
//! it was not handed.

pub mod room_versions;
pub mod signing_key;
pub mod user_ids;

pub use signing_key::{ServerSigningKey, SigningKeyError};
