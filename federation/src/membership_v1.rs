//! The deprecated v1 forms of `send_join` and `send_leave`, which ruma no
//! longer lists. They take the same request as v2 (ruma's v2 types parse
//! it) and differ only in the path and in the answer, wrapped as
//! `[200, body]`. Servers that predate v2 still call them.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#put_matrixfederationv1send_joinroomideventid>
//!
//! Written by hand: ruma's `request`/`response` macros cannot read a
//! workspace-inherited Cargo.toml.

use bytes::BufMut;
use ruma::api::{
    IncomingRequest, Metadata, OutgoingBody, OutgoingResponse,
    error::{DeserializationError, IntoHttpError},
    federation::{
        authentication::ServerSignatures,
        membership::{create_join_event, create_leave_event},
    },
    path_builder::SinglePath,
};
use serde::Serialize;

/// A v2 request received on the v1 path `PATH`.
pub struct V1<T, const JOIN: bool>(pub T);

pub type SendJoin = V1<create_join_event::v2::Request, true>;
pub type SendLeave = V1<create_leave_event::v2::Request, false>;

impl<T, const JOIN: bool> Metadata for V1<T, JOIN> {
    const METHOD: http::Method = http::Method::PUT;
    const RATE_LIMITED: bool = false;
    type Authentication = ServerSignatures;
    type PathBuilder = SinglePath;
    const PATH_BUILDER: SinglePath = SinglePath::new(if JOIN {
        "/_matrix/federation/v1/send_join/{room_id}/{event_id}"
    } else {
        "/_matrix/federation/v1/send_leave/{room_id}/{event_id}"
    });
}

impl<T, const JOIN: bool> IncomingRequest for V1<T, JOIN>
where
    T: IncomingRequest,
{
    type EndpointError = T::EndpointError;
    type OutgoingResponse = Answer;

    fn try_from_http_request_inner(
        request: http::Request<&[u8]>,
        path_args: &[&str],
    ) -> Result<Self, DeserializationError> {
        T::try_from_http_request_inner(request, path_args).map(Self)
    }
}

/// `[200, body]`, serialized when made.
pub struct Answer(Vec<u8>);

impl Answer {
    pub fn new(body: &impl Serialize) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(&(200u16, body)).map(Self)
    }
}

impl OutgoingResponse for Answer {
    type Body = JsonBytes;

    fn try_into_http_response_inner(self) -> Result<http::Response<JsonBytes>, IntoHttpError> {
        Ok(http::Response::new(JsonBytes(self.0)))
    }
}

pub struct JsonBytes(Vec<u8>);

impl OutgoingBody for JsonBytes {
    type Error = std::convert::Infallible;

    fn content_type(&self) -> Option<http::HeaderValue> {
        Some(http::HeaderValue::from_static("application/json"))
    }

    fn try_into_buf<B: Default + BufMut + AsRef<[u8]>>(self) -> Result<B, Self::Error> {
        let mut buf = B::default();
        buf.put_slice(&self.0);
        Ok(buf)
    }
}
