//! Federation, the service side: what this server asks other servers (the
//! [`Remote`] trait; the federation crate implements it over HTTPS, tests
//! fake it) and other servers' signing keys ([`ServerKeys`]: fetched,
//! verified, cached, and served again as a notary), with which inbound
//! requests and events are verified.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/>.

mod outbox;
mod pdus;
mod policy;
mod server_keys;
mod transactions;

use std::{future::Future, pin::Pin};

use std::collections::BTreeMap;

use ruma::{
    EventId, OwnedDeviceId, OwnedEventId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId, RoomVersionId,
    ServerName, UserId,
    api::federation::{
        backfill::get_backfill,
        directory::get_public_rooms_filtered,
        discovery::ServerSigningKeys,
        event::{get_room_state, get_room_state_ids},
        keys::{claim_keys, get_keys},
        membership::{
            create_invite, create_join_event, create_knock_event, prepare_join_event, prepare_knock_event,
            prepare_leave_event,
        },
        query::get_room_information,
        transactions::edu::Edu,
    },
    serde::Raw,
};
use serde_json::value::RawValue as RawJsonValue;
use tessera_storage::Profile;

pub use outbox::Outbox;
pub use pdus::verify_pdu;
pub use policy::ServerPolicy;
pub use server_keys::{RequestAuthError, ServerKeys};
pub use transactions::{EduReceivers, Transactions};

/// A boxed future, as [`Remote`]'s methods return (the trait is used as
/// `dyn Remote`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a request to another server failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The outbound rules (`outbound_allowed_ranges`, the domain lists)
    /// forbid contacting it.
    #[error("{server} may not be contacted: {reason}")]
    NotAllowed { server: OwnedServerName, reason: String },
    /// No connection, TLS failure, timeout.
    #[error("cannot reach {server}: {cause}")]
    Unreachable { server: OwnedServerName, cause: String },
    /// It answered with an error status.
    #[error("{server} answered {status}: {body}")]
    Status { server: OwnedServerName, status: u16, body: String },
    /// It answered something that is not the expected response.
    #[error("{server} answered an unreadable response: {cause}")]
    Malformed { server: OwnedServerName, cause: String },
    /// Its answer was larger than asked for.
    #[error("{server} answered more than {limit} bytes")]
    TooLarge { server: OwnedServerName, limit: usize },
}

/// A body arriving from another server, chunk by chunk.
pub type ByteStream = Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, RemoteError>> + Send>>;

/// Another server's file, its bytes still arriving.
pub struct RemoteFile {
    pub content_type: Option<String>,
    pub file_name: Option<String>,
    pub body: ByteStream,
}

/// A file fetched whole: a page or picture for a URL preview.
#[derive(Clone, Debug)]
pub struct FetchedFile {
    pub content_type: Option<String>,
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
}

/// The calls this server makes to other servers. Implemented by the
/// federation crate's signed HTTPS client; the service only ever asks
/// through here.
pub trait Remote: Send + Sync {
    /// `GET /_matrix/key/v2/server` of `server`: its key response, not yet
    /// verified.
    fn server_keys<'a>(
        &'a self,
        server: &'a ServerName,
    ) -> BoxFuture<'a, Result<Raw<ServerSigningKeys>, RemoteError>>;

    /// `POST /_matrix/key/v2/query` of `notary`: its copies of `server`'s
    /// key responses, not yet verified.
    fn notary_keys<'a>(
        &'a self,
        notary: &'a ServerName,
        server: &'a ServerName,
    ) -> BoxFuture<'a, Result<Vec<Raw<ServerSigningKeys>>, RemoteError>>;

    /// `GET /_matrix/federation/v1/query/profile` of the user's server.
    fn query_profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Profile, RemoteError>>;

    /// `POST /_matrix/federation/v1/user/keys/query` of `server`, for its
    /// users' devices (every device for an empty list).
    fn query_keys<'a>(
        &'a self,
        server: &'a ServerName,
        wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> BoxFuture<'a, Result<get_keys::v1::Response, RemoteError>>;

    /// `POST /_matrix/federation/v1/user/keys/claim` of `server`.
    fn claim_keys<'a>(
        &'a self,
        server: &'a ServerName,
        wanted: claim_keys::v1::OneTimeKeyClaims,
    ) -> BoxFuture<'a, Result<claim_keys::v1::Response, RemoteError>>;

    /// `PUT /_matrix/federation/v1/send/{txnId}` to `destination`: accepted
    /// (a PDU the destination refuses is its own business) or not.
    fn send_transaction<'a>(
        &'a self,
        destination: &'a ServerName,
        txn_id: &'a str,
        pdus: Vec<Box<RawJsonValue>>,
        edus: Vec<Raw<Edu>>,
    ) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}` of `server`:
    /// the room's version and the join event's template.
    fn make_join<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        user_id: &'a UserId,
        versions: Vec<RoomVersionId>,
    ) -> BoxFuture<'a, Result<prepare_join_event::v1::Response, RemoteError>>;

    /// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}` of `server`.
    fn send_join<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
        pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<create_join_event::v2::RoomState, RemoteError>>;

    /// `POST /_matrix/federation/v1/get_missing_events/{roomId}` of `server`.
    fn get_missing_events<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        earliest: Vec<OwnedEventId>,
        latest: Vec<OwnedEventId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Box<RawJsonValue>>, RemoteError>>;

    /// `POST /_matrix/federation/v1/publicRooms` of `server`: a page of its
    /// room directory.
    fn public_rooms<'a>(
        &'a self,
        server: &'a ServerName,
        request: get_public_rooms_filtered::v1::Request,
    ) -> BoxFuture<'a, Result<get_public_rooms_filtered::v1::Response, RemoteError>>;

    /// `GET /_matrix/federation/v1/event/{eventId}` of `server`: the PDU.
    fn get_event<'a>(
        &'a self,
        server: &'a ServerName,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Box<RawJsonValue>, RemoteError>>;

    /// `GET /_matrix/federation/v1/state/{roomId}?event_id=` of `server`:
    /// the state before the event and its auth chain, as PDUs.
    fn room_state<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<get_room_state::v1::Response, RemoteError>>;

    /// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}` of `server`.
    fn make_leave<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        user_id: &'a UserId,
    ) -> BoxFuture<'a, Result<prepare_leave_event::v1::Response, RemoteError>>;

    /// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}` of `server`.
    fn send_leave<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
        pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}` of `server`.
    fn make_knock<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        user_id: &'a UserId,
        versions: Vec<RoomVersionId>,
    ) -> BoxFuture<'a, Result<prepare_knock_event::v1::Response, RemoteError>>;

    /// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}` of
    /// `server`: the room's stripped state.
    fn send_knock<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
        pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<create_knock_event::v1::Response, RemoteError>>;

    /// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}` of the
    /// invited user's server: the invite with that server's signature.
    fn invite<'a>(
        &'a self,
        server: &'a ServerName,
        request: create_invite::v2::Request,
    ) -> BoxFuture<'a, Result<Box<RawJsonValue>, RemoteError>>;

    /// `GET /_matrix/federation/v1/query/directory` of the alias's server.
    fn query_alias<'a>(
        &'a self,
        alias: &'a RoomAliasId,
    ) -> BoxFuture<'a, Result<get_room_information::v1::Response, RemoteError>>;

    /// `GET /_matrix/federation/v1/backfill/{roomId}` of `server`: the
    /// events `from` and before them, as PDUs, not yet verified.
    fn backfill<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        from: Vec<OwnedEventId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<get_backfill::v1::Response, RemoteError>>;

    /// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}` of
    /// `server`: the event's whole auth chain, as PDUs, not yet verified.
    fn event_auth<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Vec<Box<RawJsonValue>>, RemoteError>> {
        let _ = (room_id, event_id);
        Box::pin(async move { Err(unreachable(server)) })
    }

    /// `GET /_matrix/federation/v1/timestamp_to_event/{roomId}` of
    /// `server`: the event it holds nearest `ts` in that direction.
    fn timestamp_to_event<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        ts: i64,
        forward: bool,
    ) -> BoxFuture<'a, Result<(OwnedEventId, i64), RemoteError>> {
        let _ = (room_id, ts, forward);
        Box::pin(async move { Err(unreachable(server)) })
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}` of `server`: a
    /// space and its direct children as that server lets this one see
    /// them.
    fn hierarchy<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        suggested_only: bool,
    ) -> BoxFuture<'a, Result<ruma::api::federation::space::get_hierarchy::v1::Response, RemoteError>> {
        let _ = (room_id, suggested_only);
        Box::pin(async move { Err(unreachable(server)) })
    }

    /// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=` of
    /// `server`: the IDs of the state before the event and of its auth
    /// chain.
    fn room_state_ids<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<get_room_state_ids::v1::Response, RemoteError>>;

    /// `GET /_matrix/federation/v1/media/download/{mediaId}` of `server`,
    /// else (a server without authenticated media) its unauthenticated
    /// `/_matrix/media/v3/download`: at most `max_bytes`, waiting up to
    /// `wait` for media still being uploaded there. Refused at once when
    /// it announces more than `max_bytes`; the caller counts the rest.
    fn download_media<'a>(
        &'a self,
        server: &'a ServerName,
        _media_id: &'a str,
        _max_bytes: usize,
        _wait: std::time::Duration,
    ) -> BoxFuture<'a, Result<RemoteFile, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    /// `GET url` on the web, for a URL preview: only public addresses
    /// (the outbound rules), at most `max_bytes`.
    fn fetch_url<'a>(
        &'a self,
        url: &'a str,
        _max_bytes: usize,
    ) -> BoxFuture<'a, Result<FetchedFile, RemoteError>> {
        Box::pin(async move {
            let server = ruma::OwnedServerName::try_from("localhost").expect("a valid server name");
            Err(RemoteError::NotAllowed { server, reason: format!("{url}: no outbound client") })
        })
    }
}

/// A [`Remote`] that reaches nobody: for a service used without
/// federation (tools, unit tests).
pub struct NoRemote;

impl Remote for NoRemote {
    fn server_keys<'a>(
        &'a self,
        server: &'a ServerName,
    ) -> BoxFuture<'a, Result<Raw<ServerSigningKeys>, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn notary_keys<'a>(
        &'a self,
        notary: &'a ServerName,
        _server: &'a ServerName,
    ) -> BoxFuture<'a, Result<Vec<Raw<ServerSigningKeys>>, RemoteError>> {
        Box::pin(async move { Err(unreachable(notary)) })
    }

    fn query_profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Profile, RemoteError>> {
        Box::pin(async move { Err(unreachable(user.server_name())) })
    }

    fn query_keys<'a>(
        &'a self,
        server: &'a ServerName,
        _wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> BoxFuture<'a, Result<get_keys::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn claim_keys<'a>(
        &'a self,
        server: &'a ServerName,
        _wanted: claim_keys::v1::OneTimeKeyClaims,
    ) -> BoxFuture<'a, Result<claim_keys::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn send_transaction<'a>(
        &'a self,
        destination: &'a ServerName,
        _txn_id: &'a str,
        _pdus: Vec<Box<RawJsonValue>>,
        _edus: Vec<Raw<Edu>>,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move { Err(unreachable(destination)) })
    }

    fn make_join<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _user_id: &'a UserId,
        _versions: Vec<RoomVersionId>,
    ) -> BoxFuture<'a, Result<prepare_join_event::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn send_join<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _event_id: &'a EventId,
        _pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<create_join_event::v2::RoomState, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn get_missing_events<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _earliest: Vec<OwnedEventId>,
        _latest: Vec<OwnedEventId>,
        _limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Box<RawJsonValue>>, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn get_event<'a>(
        &'a self,
        server: &'a ServerName,
        _event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Box<RawJsonValue>, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn public_rooms<'a>(
        &'a self,
        server: &'a ServerName,
        _request: get_public_rooms_filtered::v1::Request,
    ) -> BoxFuture<'a, Result<get_public_rooms_filtered::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn room_state<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<get_room_state::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn make_leave<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _user_id: &'a UserId,
    ) -> BoxFuture<'a, Result<prepare_leave_event::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn send_leave<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _event_id: &'a EventId,
        _pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn make_knock<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _user_id: &'a UserId,
        _versions: Vec<RoomVersionId>,
    ) -> BoxFuture<'a, Result<prepare_knock_event::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn send_knock<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _event_id: &'a EventId,
        _pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<create_knock_event::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn invite<'a>(
        &'a self,
        server: &'a ServerName,
        _request: create_invite::v2::Request,
    ) -> BoxFuture<'a, Result<Box<RawJsonValue>, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn query_alias<'a>(
        &'a self,
        alias: &'a RoomAliasId,
    ) -> BoxFuture<'a, Result<get_room_information::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(alias.server_name())) })
    }

    fn backfill<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _from: Vec<OwnedEventId>,
        _limit: u32,
    ) -> BoxFuture<'a, Result<get_backfill::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }

    fn room_state_ids<'a>(
        &'a self,
        server: &'a ServerName,
        _room_id: &'a RoomId,
        _event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<get_room_state_ids::v1::Response, RemoteError>> {
        Box::pin(async move { Err(unreachable(server)) })
    }
}

fn unreachable(server: &ServerName) -> RemoteError {
    RemoteError::Unreachable { server: server.to_owned(), cause: "federation is off".into() }
}
