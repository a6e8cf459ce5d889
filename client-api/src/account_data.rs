//! Account data and tags: `PUT/GET /user/{userId}/account_data/{type}`,
//! `PUT/GET /user/{userId}/rooms/{roomId}/account_data/{type}`,
//! `GET/PUT/DELETE /user/{userId}/rooms/{roomId}/tags[/{tag}]`.

use axum::{Router, extract::State};
use ruma::{
    api::client::{
        config::{
            get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
        },
        tag::{create_tag, delete_tag, get_tags},
    },
    serde::Raw,
};
use serde_json::Value;
use tessera_service::Error;
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<set_global_account_data::v3::Request, _, _>(set_global)
        .ruma_route::<get_global_account_data::v3::Request, _, _>(get_global)
        .ruma_route::<set_room_account_data::v3::Request, _, _>(set_room)
        .ruma_route::<get_room_account_data::v3::Request, _, _>(get_room)
        .ruma_route::<get_tags::v3::Request, _, _>(tags)
        .ruma_route::<create_tag::v3::Request, _, _>(put_tag)
        .ruma_route::<delete_tag::v3::Request, _, _>(remove_tag)
}

fn json<T>(raw: &Raw<T>) -> std::result::Result<Value, Error> {
    serde_json::from_str(raw.json().get()).map_err(|e| Error::bad_json(e.to_string()))
}

fn raw<T>(value: &Value) -> std::result::Result<Raw<T>, Error> {
    serde_json::value::to_raw_value(value).map(Raw::from_json).map_err(Error::internal)
}

async fn set_global(
    State(state): State<ClientState>,
    req: Ruma<set_global_account_data::v3::Request, GuestsAllowed>,
) -> Result<set_global_account_data::v3::Response> {
    let b = &req.body;
    state
        .account_data
        .set(req.identity()?, &b.user_id, None, &b.event_type.to_string(), &json(&b.data)?)
        .await?;
    Ok(set_global_account_data::v3::Response::new().into())
}

async fn get_global(
    State(state): State<ClientState>,
    req: Ruma<get_global_account_data::v3::Request, GuestsAllowed>,
) -> Result<get_global_account_data::v3::Response> {
    let b = &req.body;
    let content =
        state.account_data.get(req.identity()?, &b.user_id, None, &b.event_type.to_string()).await?;
    Ok(get_global_account_data::v3::Response::new(raw(&content)?).into())
}

async fn set_room(
    State(state): State<ClientState>,
    req: Ruma<set_room_account_data::v3::Request, GuestsAllowed>,
) -> Result<set_room_account_data::v3::Response> {
    let b = &req.body;
    let content = json(&b.data)?;
    state
        .account_data
        .set(req.identity()?, &b.user_id, Some(&b.room_id), &b.event_type.to_string(), &content)
        .await?;
    Ok(set_room_account_data::v3::Response::new().into())
}

async fn get_room(
    State(state): State<ClientState>,
    req: Ruma<get_room_account_data::v3::Request, GuestsAllowed>,
) -> Result<get_room_account_data::v3::Response> {
    let b = &req.body;
    let content = state
        .account_data
        .get(req.identity()?, &b.user_id, Some(&b.room_id), &b.event_type.to_string())
        .await?;
    Ok(get_room_account_data::v3::Response::new(raw(&content)?).into())
}

async fn tags(
    State(state): State<ClientState>,
    req: Ruma<get_tags::v3::Request, GuestsAllowed>,
) -> Result<get_tags::v3::Response> {
    let b = &req.body;
    let content = state.account_data.tags(req.identity()?, &b.user_id, &b.room_id).await?;
    let tags = serde_json::from_value(content["tags"].clone()).map_err(Error::internal)?;
    Ok(get_tags::v3::Response::new(tags).into())
}

async fn put_tag(
    State(state): State<ClientState>,
    req: Ruma<create_tag::v3::Request, GuestsAllowed>,
) -> Result<create_tag::v3::Response> {
    let b = &req.body;
    let info = serde_json::to_value(&b.tag_info).map_err(Error::internal)?;
    state.account_data.set_tag(req.identity()?, &b.user_id, &b.room_id, &b.tag, info).await?;
    Ok(create_tag::v3::Response::new().into())
}

async fn remove_tag(
    State(state): State<ClientState>,
    req: Ruma<delete_tag::v3::Request, GuestsAllowed>,
) -> Result<delete_tag::v3::Response> {
    let b = &req.body;
    state.account_data.delete_tag(req.identity()?, &b.user_id, &b.room_id, &b.tag).await?;
    Ok(delete_tag::v3::Response::new().into())
}
