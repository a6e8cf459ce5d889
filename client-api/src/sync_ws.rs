//! The WebSocket push channel for sync (beyond the spec):
//! `GET /_matrix/client/unstable/org.tessera.sync/ws`.
//!
//! The same query parameters as `/sync` (`since`, `filter`, `full_state`,
//! `set_presence`), the access token in the `Authorization` header or the
//! `access_token` parameter. After the upgrade the server sends one text
//! frame per sync response, an ordinary `/sync` body with `next_batch`,
//! whenever there is something new; the client never polls. It resumes
//! after a drop by reconnecting with `since` = the last `next_batch` it
//! processed. Specified in docs/websocket-sync.md.

use std::{collections::HashMap, time::Duration};

use axum::{
    Router,
    extract::{
        Query, State,
        ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::{SinkExt, StreamExt};
use tessera_service::{Error, auth::Identity, sync::SyncRequest};
use tessera_web::{ClientIp, WebError};

use crate::{ClientState, sync::resolve_filter};

/// The channel's path: a public contract (CONTRACTS.md).
pub const PATH: &str = "/_matrix/client/unstable/org.tessera.sync/ws";

/// How long one server-side wait lasts before it is renewed (invisible to
/// the client: nothing is sent when nothing changed).
const WAIT: Duration = Duration::from_secs(30);
/// Every socket, busy or idle, is pinged this often; a client that answers
/// nothing for two intervals is gone.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A frame the client does not take within this time ends the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Unsent data the server buffers per socket at most; past it the
/// connection ends rather than letting a slow reader grow server memory.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;
/// The socket's read buffer: clients send only pongs and close frames.
const READ_BUFFER: usize = 4 * 1024;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new().route(PATH, get(upgrade))
}

async fn upgrade(
    State(state): State<ClientState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Everything that can fail does so before the upgrade, as plain HTTP
    // with the spec's error JSON.
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| query.get("access_token").cloned());
    let Some(token) = token else { return WebError(Error::missing_token()).into_response() };
    let ip = ip.map(|ip| ip.to_string());
    let me = match state.gate.authenticator.authenticate(&token, ip.as_deref(), false).await {
        Ok(me) => me,
        Err(e) => return WebError(e).into_response(),
    };
    let filter = match resolve_filter(&state, &me, query.get("filter").map(String::as_str)).await {
        Ok(filter) => filter,
        Err(e) => return WebError(e).into_response(),
    };
    let since = query.get("since").cloned();
    if let Some(since) = &since
        && let Err(e) = since.parse::<tessera_service::sync::SyncToken>()
    {
        return WebError(e).into_response();
    }
    let full_state = query.get("full_state").is_some_and(|v| v == "true");
    let use_state_after = query.get("use_state_after").is_some_and(|v| v == "true");
    let set_presence = query.get("set_presence").cloned().unwrap_or_else(|| "online".to_owned());
    let Ok(ws) = ws else {
        return WebError(Error::invalid_param("This endpoint needs a WebSocket upgrade")).into_response();
    };
    // The first sync answers at once; the later ones wait.
    let request =
        SyncRequest { since, timeout: Duration::ZERO, set_presence, full_state, filter, use_state_after };
    // Small buffers: an idle socket costs its task and these, not
    // tungstenite's 128 KiB defaults (frames larger than a buffer still
    // pass; the buffers grow for them).
    ws.read_buffer_size(READ_BUFFER).write_buffer_size(0).max_write_buffer_size(MAX_BUFFERED).on_upgrade(
        // Boxed: an async fn keeps a by-value argument twice in its state.
        move |socket| serve(state, me, socket, Box::new(request)),
    )
}

/// Pushes sync responses until the client leaves, stops reading, or the
/// server shuts down.
async fn serve(state: ClientState, me: Identity, socket: WebSocket, mut request: Box<SyncRequest>) {
    let (mut sender, mut receiver) = socket.split();
    // The reader answers pings (tungstenite does) and notices the client
    // going away or going silent.
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        loop {
            match tokio::time::timeout(PING_EVERY * 2 + SEND_TIMEOUT, receiver.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
        let _ = gone_tx.send(());
    });
    let mut first = true;
    let mut last_ping = tokio::time::Instant::now();
    loop {
        let sync = tokio::select! {
            result = state.sync.sync(&me, &request) => result,
            _ = &mut gone => break,
        };
        let response = match sync {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(user = %me.user_id, error = %e, "sync over WebSocket failed");
                let _ = sender.send(Message::Close(None)).await;
                break;
            }
        };
        let next_batch = response.next_batch.to_string();
        let changed = first || request.since.is_none() || !response.is_empty();
        if changed {
            let Some(frame) = body_of(response) else { break };
            match tokio::time::timeout(SEND_TIMEOUT, sender.send(Message::text(frame))).await {
                Ok(Ok(())) => {}
                // Not read in time, or the buffer limit hit: the client is
                // too slow to keep; it resumes from its last token.
                _ => break,
            }
        }
        // A ping after an idle wait, and at least every PING_EVERY on a busy
        // socket too: the reader judges the client by its answers, and a
        // client that only reads sends nothing else (found by the
        // benchmark: busy sockets were dropped after 70 s).
        if !changed || last_ping.elapsed() >= PING_EVERY {
            last_ping = tokio::time::Instant::now();
            if tokio::time::timeout(SEND_TIMEOUT, sender.send(Message::Ping(Default::default())))
                .await
                .is_err()
            {
                break;
            }
        }
        request.since = Some(next_batch);
        request.timeout = WAIT;
        request.full_state = false;
        first = false;
        if state.sync.shutting_down() {
            let _ = sender.send(Message::Close(None)).await;
            break;
        }
    }
    reader.abort();
}

/// The frame: exactly the body `/sync` would have answered.
fn body_of(response: tessera_service::sync::SyncResponse) -> Option<String> {
    crate::sync_body::to_json(&response).ok()
}
