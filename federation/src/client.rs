//! The outbound federation client: ruma's request types, sent over HTTPS
//! (rustls; the system's roots plus `federation_trusted_ca`) to where
//! [`Discovery`] says, signed with this server's key (`X-Matrix`), only to
//! addresses the [`OutboundRules`] permit. It is the service's
//! [`Remote`].

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use ruma::{
    EventId, OwnedDeviceId, OwnedEventId, OwnedMxcUri, OwnedServerName, OwnedUserId, RoomAliasId, RoomId,
    RoomVersionId, ServerName, UserId,
    api::{
        IncomingResponseExt, OutgoingRequest,
        federation::{
            authenticated_media::get_content as media_content,
            backfill::get_backfill,
            discovery::{ServerSigningKeys, get_remote_server_keys_batch, get_server_keys},
            event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
            keys::{claim_keys, get_keys},
            membership::{
                create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
                prepare_knock_event, prepare_leave_event,
            },
            query::{get_profile_information, get_room_information},
            transactions::{edu::Edu, send_transaction_message},
        },
        path_builder::PathBuilder,
    },
    http_headers::ContentDisposition,
    serde::Raw,
};
use serde_json::value::RawValue as RawJsonValue;
use tessera_core::ServerSigningKey;
use tessera_service::federation::{BoxFuture, FetchedFile, Remote, RemoteError, RemoteFile};
use tessera_service::profiles::Profile;

use crate::{
    discovery::Discovery,
    media_fetch,
    outbound::{FilteringResolver, OutboundRules},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a file may take to arrive from another server, besides the
/// wait asked for one still being uploaded there.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest response body read from another server.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What the client is built from.
pub struct ClientSettings {
    /// PEM certificates trusted besides the system's roots.
    pub trusted_ca_pem: Option<Vec<u8>>,
    pub rules: OutboundRules,
    /// The servers this one federates with (none other is asked).
    pub servers: tessera_service::federation::ServerPolicy,
    /// The nameserver asked for SRV records (the system's when `None`).
    pub dns_server: Option<std::net::SocketAddr>,
}

/// The signed HTTPS client. Cheap to clone.
#[derive(Clone)]
pub struct FederationClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    discovery: Discovery,
    rules: OutboundRules,
    servers: tessera_service::federation::ServerPolicy,
    key: Arc<ServerSigningKey>,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("federation client: {0}")]
pub struct ClientError(String);

impl FederationClient {
    pub fn new(key: Arc<ServerSigningKey>, settings: ClientSettings) -> Result<Self, ClientError> {
        install_crypto_provider();
        let routes = crate::discovery::SrvRoutes::default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(redirects(settings.rules.clone()))
            // A proxy would resolve names itself, past the address rules.
            .no_proxy()
            .user_agent(concat!("Tessera/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(FilteringResolver {
                rules: settings.rules.clone(),
                routes: routes.clone(),
            }));
        if let Some(pem) = &settings.trusted_ca_pem {
            for certificate in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError(e.to_string()))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| ClientError(e.to_string()))?;
        let srv = crate::srv::SrvResolver::new(settings.dns_server);
        let discovery = Discovery::new(http.clone(), settings.rules.clone(), srv, routes);
        let servers = settings.servers;
        Ok(Self { inner: Arc::new(Inner { http, discovery, rules: settings.rules, servers, key }) })
    }

    /// Sends `request` to `destination`, signed when the endpoint asks for
    /// it, and reads ruma's response.
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, RemoteError>
    where
        R: OutgoingRequest,
        R::Authentication: 'static,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        self.send_with_limit(destination, request, MAX_RESPONSE_BYTES).await
    }

    async fn send_with_limit<R>(
        &self,
        destination: &ServerName,
        request: R,
        limit: usize,
    ) -> Result<R::IncomingResponse, RemoteError>
    where
        R: OutgoingRequest,
        R::Authentication: 'static,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        let server = || destination.to_owned();
        let malformed = |cause: String| RemoteError::Malformed { server: server(), cause };
        let (target, http_request) = self.prepare(destination, request).await?;
        let (status, headers, bytes) =
            self.execute(destination, &target, http_request, is_signed::<R>(), limit).await?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
            return Err(RemoteError::Status { server: server(), status: status.as_u16(), body });
        }
        let mut http_response = http::Response::new(bytes.as_ref());
        *http_response.status_mut() = status;
        *http_response.headers_mut() = headers;
        R::IncomingResponse::try_from_http_response(http_response).map_err(|e| malformed(e.to_string()))
    }

    /// Where `request` goes (if this server may be asked at all), and the
    /// request as HTTP.
    async fn prepare<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<(crate::discovery::Destination, http::Request<Vec<u8>>), RemoteError>
    where
        R: OutgoingRequest,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        let malformed = |cause: String| RemoteError::Malformed { server: destination.to_owned(), cause };
        if !self.inner.servers.permits(destination) {
            return Err(RemoteError::NotAllowed {
                server: destination.to_owned(),
                reason: "federation with this server is not allowed by this server's configuration".into(),
            });
        }
        let target = self.inner.discovery.resolve(destination).await?;
        let (mut parts, body) = request
            .try_into_http_request_inner(&target.base_url, ())
            .map_err(|e| malformed(format!("cannot build the request: {e}")))?
            .into_parts();
        if let Some(content_type) = ruma::api::OutgoingBody::content_type(&body) {
            parts.headers.insert(http::header::CONTENT_TYPE, content_type);
        }
        let body: Vec<u8> = ruma::api::OutgoingBody::try_into_buf(body).map_err(|e| {
            malformed(format!(
                "cannot build the request: {}",
                Into::<ruma::api::error::IntoHttpError>::into(e)
            ))
        })?;
        Ok((target, http::Request::from_parts(parts, body)))
    }

    /// Sends a built request to `destination` at `target` (signed if
    /// `sign`), with its `Host`, only to a permitted address, and reads at
    /// most `limit` bytes of the answer.
    async fn execute(
        &self,
        destination: &ServerName,
        target: &crate::discovery::Destination,
        http_request: http::Request<Vec<u8>>,
        sign: bool,
        limit: usize,
    ) -> Result<(http::StatusCode, http::HeaderMap, Vec<u8>), RemoteError> {
        let response =
            self.execute_streaming(destination, target, http_request, sign, REQUEST_TIMEOUT).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_limited(response, limit).await.map_err(|e| match e {
            ReadError::TooLarge => RemoteError::TooLarge { server: destination.to_owned(), limit },
            ReadError::Broken(cause) => RemoteError::Malformed { server: destination.to_owned(), cause },
        })?;
        Ok((status, headers, bytes))
    }

    /// [`FederationClient::execute`], leaving the body unread.
    async fn execute_streaming(
        &self,
        destination: &ServerName,
        target: &crate::discovery::Destination,
        mut http_request: http::Request<Vec<u8>>,
        sign: bool,
        timeout: Duration,
    ) -> Result<reqwest::Response, RemoteError> {
        let server = || destination.to_owned();
        let malformed = |cause: String| RemoteError::Malformed { server: server(), cause };
        if sign {
            let auth = self
                .inner
                .key
                .sign_request(&http_request, destination)
                .map_err(|e| malformed(format!("cannot sign the request: {e}")))?;
            http_request.headers_mut().insert(http::header::AUTHORIZATION, http::HeaderValue::from(&auth));
        }
        let host = http::HeaderValue::from_str(&target.host_header).map_err(|e| malformed(e.to_string()))?;
        http_request.headers_mut().insert(http::header::HOST, host);
        let mut request = reqwest::Request::try_from(http_request).map_err(|e| malformed(e.to_string()))?;
        *request.timeout_mut() = Some(timeout);
        if !self.inner.rules.permits_url(request.url()) {
            let reason = format!("{} is not a public address", target.base_url);
            return Err(RemoteError::NotAllowed { server: server(), reason });
        }
        self.inner
            .http
            .execute(request)
            .await
            .map_err(|e| RemoteError::Unreachable { server: server(), cause: error_chain(&e) })
    }
}

/// Whether an endpoint's requests are `X-Matrix` signed.
fn is_signed<R: OutgoingRequest>() -> bool
where
    R::Authentication: 'static,
{
    std::any::TypeId::of::<R::Authentication>()
        == std::any::TypeId::of::<ruma::api::federation::authentication::ServerSignatures>()
}

impl Remote for FederationClient {
    fn server_keys<'a>(
        &'a self,
        server: &'a ServerName,
    ) -> BoxFuture<'a, Result<Raw<ServerSigningKeys>, RemoteError>> {
        Box::pin(async move { Ok(self.send(server, get_server_keys::v2::Request::new()).await?.server_key) })
    }

    fn notary_keys<'a>(
        &'a self,
        notary: &'a ServerName,
        server: &'a ServerName,
    ) -> BoxFuture<'a, Result<Vec<Raw<ServerSigningKeys>>, RemoteError>> {
        Box::pin(async move {
            let wanted: OwnedServerName = server.to_owned();
            let request = get_remote_server_keys_batch::v2::Request::new(
                [(wanted, Default::default())].into_iter().collect(),
            );
            Ok(self.send(notary, request).await?.server_keys)
        })
    }

    fn query_profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Profile, RemoteError>> {
        Box::pin(async move {
            let request = get_profile_information::v1::Request::new(user.to_owned());
            let response = self.send(user.server_name(), request).await?;
            let text = |field: &str| response.get(field).and_then(|v| v.as_str()).map(str::to_owned);
            Ok(Profile {
                displayname: text("displayname"),
                avatar_url: text("avatar_url").map(OwnedMxcUri::from),
            })
        })
    }

    fn query_keys<'a>(
        &'a self,
        server: &'a ServerName,
        wanted: std::collections::BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> BoxFuture<'a, Result<get_keys::v1::Response, RemoteError>> {
        Box::pin(async move { self.send(server, get_keys::v1::Request::new(wanted)).await })
    }

    fn claim_keys<'a>(
        &'a self,
        server: &'a ServerName,
        wanted: claim_keys::v1::OneTimeKeyClaims,
    ) -> BoxFuture<'a, Result<claim_keys::v1::Response, RemoteError>> {
        Box::pin(async move { self.send(server, claim_keys::v1::Request::new(wanted)).await })
    }

    fn send_transaction<'a>(
        &'a self,
        destination: &'a ServerName,
        txn_id: &'a str,
        pdus: Vec<Box<RawJsonValue>>,
        edus: Vec<Raw<Edu>>,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let origin = self.inner.key.server_name().clone();
            let mut request = send_transaction_message::v1::Request::new(
                txn_id.into(),
                origin,
                ruma::MilliSecondsSinceUnixEpoch::now(),
            );
            request.pdus = pdus;
            request.edus = edus;
            self.send(destination, request).await.map(|_| ())
        })
    }

    fn make_join<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        user_id: &'a UserId,
        versions: Vec<RoomVersionId>,
    ) -> BoxFuture<'a, Result<prepare_join_event::v1::Response, RemoteError>> {
        Box::pin(async move {
            let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
            request.ver = versions;
            self.send(server, request).await
        })
    }

    fn send_join<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
        pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<create_join_event::v2::RoomState, RemoteError>> {
        Box::pin(async move {
            let request = create_join_event::v2::Request::new(room_id.to_owned(), event_id.to_owned(), pdu);
            Ok(self.send(server, request).await?.room_state)
        })
    }

    fn get_missing_events<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        earliest: Vec<OwnedEventId>,
        latest: Vec<OwnedEventId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Box<RawJsonValue>>, RemoteError>> {
        Box::pin(async move {
            let mut request = get_missing_events::v1::Request::new(room_id.to_owned(), earliest, latest);
            request.limit = limit.into();
            Ok(self.send(server, request).await?.events)
        })
    }

    fn get_event<'a>(
        &'a self,
        server: &'a ServerName,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Box<RawJsonValue>, RemoteError>> {
        Box::pin(
            async move { Ok(self.send(server, get_event::v1::Request::new(event_id.to_owned())).await?.pdu) },
        )
    }

    fn room_state<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<get_room_state::v1::Response, RemoteError>> {
        Box::pin(async move {
            self.send(server, get_room_state::v1::Request::new(event_id.to_owned(), room_id.to_owned())).await
        })
    }

    fn public_rooms<'a>(
        &'a self,
        server: &'a ServerName,
        request: ruma::api::federation::directory::get_public_rooms_filtered::v1::Request,
    ) -> BoxFuture<
        'a,
        Result<ruma::api::federation::directory::get_public_rooms_filtered::v1::Response, RemoteError>,
    > {
        Box::pin(async move { self.send(server, request).await })
    }

    fn make_leave<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        user_id: &'a UserId,
    ) -> BoxFuture<'a, Result<prepare_leave_event::v1::Response, RemoteError>> {
        Box::pin(async move {
            self.send(server, prepare_leave_event::v1::Request::new(room_id.to_owned(), user_id.to_owned()))
                .await
        })
    }

    fn send_leave<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
        pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let request = create_leave_event::v2::Request::new(room_id.to_owned(), event_id.to_owned(), pdu);
            self.send(server, request).await.map(|_| ())
        })
    }

    fn make_knock<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        user_id: &'a UserId,
        versions: Vec<RoomVersionId>,
    ) -> BoxFuture<'a, Result<prepare_knock_event::v1::Response, RemoteError>> {
        Box::pin(async move {
            let mut request = prepare_knock_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
            request.ver = versions;
            self.send(server, request).await
        })
    }

    fn send_knock<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
        pdu: Box<RawJsonValue>,
    ) -> BoxFuture<'a, Result<create_knock_event::v1::Response, RemoteError>> {
        Box::pin(async move {
            let request = create_knock_event::v1::Request::new(room_id.to_owned(), event_id.to_owned(), pdu);
            self.send(server, request).await
        })
    }

    fn invite<'a>(
        &'a self,
        server: &'a ServerName,
        request: create_invite::v2::Request,
    ) -> BoxFuture<'a, Result<Box<RawJsonValue>, RemoteError>> {
        Box::pin(async move { Ok(self.send(server, request).await?.event) })
    }

    fn query_alias<'a>(
        &'a self,
        alias: &'a RoomAliasId,
    ) -> BoxFuture<'a, Result<get_room_information::v1::Response, RemoteError>> {
        Box::pin(async move {
            self.send(alias.server_name(), get_room_information::v1::Request::new(alias.to_owned())).await
        })
    }

    fn backfill<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        from: Vec<OwnedEventId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<get_backfill::v1::Response, RemoteError>> {
        Box::pin(async move {
            let request = get_backfill::v1::Request::new(room_id.to_owned(), from, limit.into());
            self.send(server, request).await
        })
    }

    fn event_auth<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Vec<Box<serde_json::value::RawValue>>, RemoteError>> {
        use ruma::api::federation::authorization::get_event_authorization;
        Box::pin(async move {
            let request = get_event_authorization::v1::Request::new(room_id.to_owned(), event_id.to_owned());
            Ok(self.send(server, request).await?.auth_chain)
        })
    }

    fn timestamp_to_event<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        ts: i64,
        forward: bool,
    ) -> BoxFuture<'a, Result<(OwnedEventId, i64), RemoteError>> {
        use ruma::api::{Direction, federation::event::get_event_by_timestamp};
        Box::pin(async move {
            let ts = ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::try_from(ts.max(0)).unwrap_or_default());
            let dir = if forward { Direction::Forward } else { Direction::Backward };
            let answer = self
                .send(server, get_event_by_timestamp::v1::Request::new(room_id.to_owned(), ts, dir))
                .await?;
            let at = i64::try_from(u64::from(answer.origin_server_ts.0)).unwrap_or(i64::MAX);
            Ok((answer.event_id, at))
        })
    }

    fn hierarchy<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        suggested_only: bool,
    ) -> BoxFuture<'a, Result<ruma::api::federation::space::get_hierarchy::v1::Response, RemoteError>> {
        Box::pin(async move {
            let mut request =
                ruma::api::federation::space::get_hierarchy::v1::Request::new(room_id.to_owned());
            request.suggested_only = suggested_only;
            self.send(server, request).await
        })
    }

    fn room_state_ids<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<get_room_state_ids::v1::Response, RemoteError>> {
        Box::pin(async move {
            let request = get_room_state_ids::v1::Request::new(event_id.to_owned(), room_id.to_owned());
            self.send(server, request).await
        })
    }

    fn download_media<'a>(
        &'a self,
        server: &'a ServerName,
        media_id: &'a str,
        max_bytes: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<RemoteFile, RemoteError>> {
        Box::pin(async move {
            match self.authenticated_download(server, media_id, max_bytes, wait).await {
                Err(error) if unauthenticated_may_serve(&error) => {
                    tracing::debug!(%error, "authenticated media download failed; trying the unauthenticated one");
                    self.legacy_download(server, media_id, max_bytes, wait).await
                }
                other => other,
            }
        })
    }

    fn fetch_url<'a>(
        &'a self,
        url: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<FetchedFile, RemoteError>> {
        Box::pin(async move {
            let parsed: reqwest::Url = url.parse().map_err(|e| RemoteError::Malformed {
                server: url_server(url),
                cause: format!("bad URL: {e}"),
            })?;
            let file = self.fetch_stream(parsed, max_bytes).await?;
            let server = url_server(url);
            let mut bytes = Vec::new();
            let mut body = file.body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if bytes.len() + chunk.len() > max_bytes {
                    return Err(RemoteError::TooLarge { server, limit: max_bytes });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(FetchedFile { content_type: file.content_type, file_name: file.file_name, bytes })
        })
    }
}

impl FederationClient {
    /// `GET /_matrix/federation/v1/media/download/{mediaId}`: its
    /// multipart answer read as it arrives, or the `Location` it names.
    async fn authenticated_download(
        &self,
        server: &ServerName,
        media_id: &str,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<RemoteFile, RemoteError> {
        let mut request = media_content::v1::Request::new(media_id.to_owned());
        request.timeout_ms = wait;
        let (target, request) = self.prepare(server, request).await?;
        let response = self.execute_streaming(server, &target, request, true, media_timeout(wait)).await?;
        let response = successful(server, response, max_bytes).await?;
        let malformed = |cause: String| RemoteError::Malformed { server: server.to_owned(), cause };
        let content_type = header_text(response.headers(), http::header::CONTENT_TYPE).unwrap_or_default();
        let boundary =
            media_fetch::boundary(&content_type).ok_or_else(|| malformed("not multipart/mixed".into()))?;
        let part = media_fetch::second_part(chunks(response), &boundary).await.map_err(malformed)?;
        if let Some(location) = part.header("location") {
            let url = location.parse().map_err(|e| malformed(format!("bad Location: {e}")))?;
            return self.fetch_stream(url, max_bytes).await;
        }
        Ok(RemoteFile {
            content_type: part.header("content-type").map(str::to_owned),
            file_name: part.header("content-disposition").and_then(file_name),
            body: with_server(server, part.body),
        })
    }

    /// `GET /_matrix/media/v3/download/{server}/{mediaId}?allow_remote=false`.
    async fn legacy_download(
        &self,
        server: &ServerName,
        media_id: &str,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<RemoteFile, RemoteError> {
        let target = self.inner.discovery.resolve(server).await?;
        let malformed = |cause: String| RemoteError::Malformed { server: server.to_owned(), cause };
        let uri = format!(
            "{}/_matrix/media/v3/download/{server}/{media_id}?allow_remote=false&timeout_ms={}",
            target.base_url,
            wait.as_millis()
        );
        let request = http::Request::get(uri).body(Vec::new()).map_err(|e| malformed(e.to_string()))?;
        let response = self.execute_streaming(server, &target, request, false, media_timeout(wait)).await?;
        let response = successful(server, response, max_bytes).await?;
        Ok(plain_file(server, response))
    }

    /// An unsigned `GET` of a URL (a media `Location`, a page to preview),
    /// to permitted addresses only, its body read as it arrives.
    async fn fetch_stream(&self, url: reqwest::Url, max_bytes: usize) -> Result<RemoteFile, RemoteError> {
        let server = url_server(url.as_str());
        if !self.inner.rules.permits_url(&url) {
            return Err(RemoteError::NotAllowed { server, reason: "not a public address".into() });
        }
        let response = self
            .inner
            .http
            .get(url)
            .timeout(MEDIA_TIMEOUT)
            .send()
            .await
            .map_err(|e| RemoteError::Unreachable { server: server.clone(), cause: error_chain(&e) })?;
        let response = successful(&server, response, max_bytes).await?;
        Ok(plain_file(&server, response))
    }
}

/// Whether a failed authenticated download may be retried with the
/// deprecated one: the server lacks the endpoint (or answered it oddly),
/// rather than answering about the media (not found, not yet uploaded).
fn unauthenticated_may_serve(error: &RemoteError) -> bool {
    match error {
        RemoteError::Status { body, .. }
            if body.contains("M_NOT_FOUND") || body.contains("M_NOT_YET_UPLOADED") =>
        {
            false
        }
        RemoteError::Status { status, .. } => matches!(status, 400 | 404 | 405 | 501),
        RemoteError::Malformed { .. } => true,
        _ => false,
    }
}

fn media_timeout(wait: Duration) -> Duration {
    MEDIA_TIMEOUT + wait
}

/// The response if it succeeded and does not announce more than
/// `max_bytes`; else the error it is (with the start of its body).
async fn successful(
    server: &ServerName,
    response: reqwest::Response,
    max_bytes: usize,
) -> Result<reqwest::Response, RemoteError> {
    let status = response.status();
    if !status.is_success() {
        let bytes = read_limited(response, 4096).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        return Err(RemoteError::Status { server: server.to_owned(), status: status.as_u16(), body });
    }
    if response.content_length().is_some_and(|len| len > u64::try_from(max_bytes).unwrap_or(u64::MAX)) {
        return Err(RemoteError::TooLarge { server: server.to_owned(), limit: max_bytes });
    }
    Ok(response)
}

/// A plain download's file: its type and name from the headers.
fn plain_file(server: &ServerName, response: reqwest::Response) -> RemoteFile {
    let headers = response.headers();
    RemoteFile {
        content_type: header_text(headers, http::header::CONTENT_TYPE),
        file_name: header_text(headers, http::header::CONTENT_DISPOSITION).as_deref().and_then(file_name),
        body: with_server(server, chunks(response)),
    }
}

fn header_text(headers: &http::HeaderMap, name: http::header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

/// The file name of a `Content-Disposition` (RFC 6266, as ruma reads it).
fn file_name(disposition: &str) -> Option<String> {
    ContentDisposition::try_from(disposition.as_bytes()).ok().and_then(|disposition| disposition.filename)
}

/// A response's body as a stream of chunks.
fn chunks(response: reqwest::Response) -> media_fetch::Chunks {
    Box::pin(futures_util::stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(e) => Some((Err(error_chain(&e)), None)),
        }
    }))
}

/// A body's failures as the server's.
fn with_server(server: &ServerName, body: media_fetch::Chunks) -> tessera_service::federation::ByteStream {
    let server = server.to_owned();
    Box::pin(
        body.map(move |chunk| {
            chunk.map_err(|cause| RemoteError::Malformed { server: server.clone(), cause })
        }),
    )
}

/// A URL's host, as the server name errors about it carry.
fn url_server(url: &str) -> OwnedServerName {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().and_then(|host| ServerName::parse(host).ok()))
        .unwrap_or_else(|| ServerName::parse("invalid.invalid").expect("a valid server name"))
}

/// Redirects are followed (for `.well-known`, which may redirect) only to
/// `https` URLs the rules permit, at most five.
fn redirects(rules: OutboundRules) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if attempt.url().scheme() != "https" || !rules.permits_url(attempt.url()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// Why a response's body was not read.
#[derive(Debug)]
pub(crate) enum ReadError {
    TooLarge,
    Broken(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge => f.write_str("the response is too large"),
            ReadError::Broken(cause) => f.write_str(cause),
        }
    }
}

/// A response's body, refused past `limit` bytes (read chunk by chunk,
/// so an endless body costs no more than the limit).
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| ReadError::Broken(error_chain(&e)))? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// rustls' process-wide crypto provider, which reqwest's TLS uses: ring, as
/// the federation listener uses. Installing it again is harmless.
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// An error with its causes, which is where reqwest says what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}
