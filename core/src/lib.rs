//! tessera-core: the pure heart of Tessera.
//!
//! Owns what can be decided without I/O: which room versions the server
//! speaks; the server's signing key and how JSON and events are signed with
//! it; how a local event is built (hashes, signature, event ID per room
//! version); the authorization rules (through ruma-state-res); the events
//! `createRoom` produces and the power levels a room upgrade carries;
//! push-rule verdicts; and the rules for user IDs. Everything here is
//! synchronous and deterministic apart from key and ID generation; nothing
//! touches a database, a socket or a clock it was not handed.

pub mod auth;
pub mod build;
pub mod create_room;
pub mod pdu;
pub mod power;
pub mod push;
pub mod room_versions;
pub mod signing_key;
pub mod state_res;
pub mod upgrade;
pub mod user_ids;

#[cfg(test)]
mod room_tests;

pub use build::{EventTemplate, Parents, build_event};
pub use pdu::{Pdu, rules_for};
pub use signing_key::{ServerSigningKey, SigningKeyError};

/// Why an event could not be built or was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Malformed: the client's or remote server's mistake.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// Well-formed but forbidden by the room's authorization rules.
    #[error("{0}")]
    AuthRejected(String),
    #[error("unsupported room version {0}")]
    UnsupportedRoomVersion(ruma::RoomVersionId),
    /// Over one of the spec's size limits: the whole event's 65,536
    /// bytes, or 255 bytes of its type or state key. Names the part.
    #[error("{0} is too large")]
    TooLarge(&'static str),
}
