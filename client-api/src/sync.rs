//! `GET /_matrix/client/v3/sync` and the filter endpoints
//! `POST /user/{userId}/filter`, `GET /user/{userId}/filter/{filterId}`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#syncing>.

use std::time::Duration;

use axum::{Router, extract::State, response::IntoResponse};
use ruma::{
    UserId,
    api::client::{
        filter::{FilterDefinition, create_filter, get_filter},
        sync::sync_events::{self, v3::Filter},
    },
};
use tessera_service::{Error, auth::Identity, sync::SyncRequest};
use tessera_web::{GuestsAllowed, Result, Ruma, WebError, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<sync_events::v3::Request, _, _>(sync)
        .ruma_route::<create_filter::v3::Request, _, _>(post_filter)
        .ruma_route::<get_filter::v3::Request, _, _>(fetch_filter)
}

/// Not an `async fn`: one keeps its arguments for as long as it runs, and
/// a long-poll runs for as long as it waits. The request (with its ~1 KiB
/// filter) is taken apart here and kept once, boxed.
fn sync(
    State(state): State<ClientState>,
    req: Ruma<sync_events::v3::Request, GuestsAllowed>,
) -> impl Future<Output = std::result::Result<axum::response::Response, WebError>> + Send {
    let prepared = sync_request(req).map(Box::new);
    async move {
        let mut prepared = prepared?;
        if let Some(id) = prepared.filter_id.take() {
            prepared.request.filter = Box::pin(state.sync.get_filter(&prepared.me.user_id, &id)).await?;
        }
        let response = state.sync.sync(&prepared.me, &prepared.request).await?;
        let body = crate::sync_body::to_json(&response).map_err(Error::internal)?;
        Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}

/// A `/sync` request as the service takes it.
struct Prepared {
    me: Identity,
    request: SyncRequest,
    /// The stored filter the request names, if it names one.
    filter_id: Option<String>,
}

fn sync_request(req: Ruma<sync_events::v3::Request, GuestsAllowed>) -> std::result::Result<Prepared, Error> {
    let me = req.identity()?.clone();
    let body = req.body;
    let (filter, filter_id) = match body.filter {
        None => (FilterDefinition::default(), None),
        Some(Filter::FilterDefinition(filter)) => (filter, None),
        // ruma reads an inline filter it cannot parse as a filter ID; no
        // stored filter's ID starts with `{`, so it is a bad inline filter.
        Some(Filter::FilterId(id)) if id.trim_start().starts_with('{') => {
            return Err(inline_filter(&id).err().unwrap_or_else(|| Error::bad_json("Invalid filter")));
        }
        Some(Filter::FilterId(id)) => (FilterDefinition::default(), Some(id)),
        Some(_) => return Err(Error::invalid_param("Unknown filter form")),
    };
    let request = SyncRequest {
        since: body.since,
        timeout: body.timeout.unwrap_or(Duration::ZERO),
        set_presence: body.set_presence.to_string(),
        full_state: body.full_state,
        filter,
        use_state_after: body.use_state_after,
    };
    Ok(Prepared { me, request, filter_id })
}

/// Resolves `/sync`'s `filter` parameter: inline JSON or a stored ID.
pub(crate) async fn resolve_filter(
    state: &ClientState,
    me: &Identity,
    filter: Option<&str>,
) -> std::result::Result<FilterDefinition, Error> {
    match filter.map(str::trim) {
        None | Some("") => Ok(FilterDefinition::default()),
        Some(json) if json.starts_with('{') => inline_filter(json),
        Some(id) => state.sync.get_filter(&me.user_id, id).await,
    }
}

/// An inline filter: 400 `M_NOT_JSON` if it is not JSON, `M_BAD_JSON` if
/// it is not a filter.
fn inline_filter(json: &str) -> std::result::Result<FilterDefinition, Error> {
    tessera_web::input::check_json_body(json.as_bytes())?;
    serde_json::from_str(json).map_err(|e| Error::bad_json(format!("Invalid filter: {e}")))
}

fn check_own(me: &Identity, user: &UserId) -> std::result::Result<(), Error> {
    if me.user_id != user {
        return Err(Error::forbidden("You cannot use another user's filters"));
    }
    Ok(())
}

async fn post_filter(
    State(state): State<ClientState>,
    req: Ruma<create_filter::v3::Request, GuestsAllowed>,
) -> Result<create_filter::v3::Response> {
    let me = req.identity()?;
    check_own(me, &req.body.user_id)?;
    let id = state.sync.create_filter(&me.user_id, &req.body.filter).await?;
    Ok(create_filter::v3::Response::new(id).into())
}

async fn fetch_filter(
    State(state): State<ClientState>,
    req: Ruma<get_filter::v3::Request, GuestsAllowed>,
) -> Result<get_filter::v3::Response> {
    let me = req.identity()?;
    check_own(me, &req.body.user_id)?;
    let filter = state.sync.get_filter(&me.user_id, &req.body.filter_id).await?;
    Ok(get_filter::v3::Response::new(filter).into())
}
