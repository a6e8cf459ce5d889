//! tessera-storage: one [`Store`] over PostgreSQL and SQLite.
//!
//! Owns every SQL statement of the server, a module per table family. Both
//! backends go through sqlx's `Any` driver so that one statement text serves
//! both (sqlx's SQLite binds `$N` placeholders like PostgreSQL); where the
//! dialects differ, the variants sit side by side in the same function.
//! Columns use only types both decode alike: TEXT, BIGINT (booleans are 0/1,
//! times are ms since the epoch) and BYTEA/BLOB.
//!
//! Must not: know about HTTP, Matrix error codes or business rules. Absence
//! is `Option`, an expected uniqueness clash is [`StorageError::Conflict`].

mod account_data;
mod cache;
mod cross_signing;
mod delivery;
mod devices;
mod directory;
mod error;
mod events;
mod federation;
mod key_backup;
mod keys;
mod media;
mod migrate;
mod pool;
mod positions;
mod presence;
mod push_actions;
mod receipts;
mod registration_tokens;
mod relations;
mod rooms;
mod server_keys;
pub mod state;
mod store;
mod sync;
mod to_device;
mod tokens;
mod users;

pub use account_data::AccountDataRow;
pub use cross_signing::{CrossSigningKeyRow, KeySignature};
pub use delivery::{DeliveryRow, EventOutline, UserDeliveries};
pub use devices::Device;
pub use error::StorageError;
pub use events::{ClientParts, EventStatus, NewEvent, NewRelation, StoredEvent, TxnKey};
pub use federation::{OutboundEdu, OutboundPdu};
pub use key_backup::{BackupKey, BackupKeyRow, BackupUpload, BackupVersion, KeyScope, VersionDeletion};
pub use keys::{KeyUpload, NewKey, StoredDeviceKeys};
pub use media::{MediaContent, MediaRow, MediaUsage, NewMedia, ThumbnailRow};
pub use migrate::SchemaError;
pub use migrate::latest_version as latest_schema_version;
pub use presence::PresenceRow;
pub use push_actions::{NewPushAction, NotificationRow, UnreadCounts};
pub use receipts::{NewReceipt, ReceiptRow};
pub use registration_tokens::RegistrationToken;
pub use relations::{Relation, RelationQuery};
pub use rooms::RoomInfo;
pub use server_keys::{ServerKeyResponse, ServerKeyRow};
pub use store::{Backend, OpenError, PoolSettings, Store};
pub use sync::MembershipRow;
pub use to_device::{ToDeviceRow, ToDeviceTarget};
pub use tokens::{NewAccessToken, TokenOwner};
pub use users::{NewUser, Profile, User};

/// Result of a storage call.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
