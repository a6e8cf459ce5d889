//! Server-side key backups: `POST/GET /room_keys/version`,
//! `GET/PUT/DELETE /room_keys/version/{version}`,
//! `PUT/GET/DELETE /room_keys/keys`, `/room_keys/keys/{roomId}` and
//! `/room_keys/keys/{roomId}/{sessionId}` (all with `?version=`).
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#server-side-key-backups>.

use axum::{Router, extract::State};
use ruma::api::client::backup::{
    add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version,
    delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version,
    get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
    get_latest_backup_info, update_backup_version,
};
use tessera_web::{Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<create_backup_version::v3::Request, _, _>(create_version)
        .ruma_route::<get_latest_backup_info::v3::Request, _, _>(current_version)
        .ruma_route::<get_backup_info::v3::Request, _, _>(get_version)
        .ruma_route::<update_backup_version::v3::Request, _, _>(update_version)
        .ruma_route::<delete_backup_version::v3::Request, _, _>(delete_version)
        .ruma_route::<add_backup_keys::v3::Request, _, _>(put_keys)
        .ruma_route::<add_backup_keys_for_room::v3::Request, _, _>(put_room_keys)
        .ruma_route::<add_backup_keys_for_session::v3::Request, _, _>(put_session_key)
        .ruma_route::<get_backup_keys::v3::Request, _, _>(get_keys)
        .ruma_route::<get_backup_keys_for_room::v3::Request, _, _>(get_room_keys)
        .ruma_route::<get_backup_keys_for_session::v3::Request, _, _>(get_session_key)
        .ruma_route::<delete_backup_keys::v3::Request, _, _>(delete_keys)
        .ruma_route::<delete_backup_keys_for_room::v3::Request, _, _>(delete_room_keys)
        .ruma_route::<delete_backup_keys_for_session::v3::Request, _, _>(delete_session_key)
}

async fn create_version(
    State(state): State<ClientState>,
    req: Ruma<create_backup_version::v3::Request>,
) -> Result<create_backup_version::v3::Response> {
    let version = state.key_backup.create_version(req.identity()?, &req.body.algorithm).await?;
    Ok(create_backup_version::v3::Response::new(version).into())
}

async fn current_version(
    State(state): State<ClientState>,
    req: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response> {
    let info = state.key_backup.current_version(req.identity()?).await?;
    Ok(get_latest_backup_info::v3::Response::new(info.algorithm, info.count, info.etag, info.version).into())
}

async fn get_version(
    State(state): State<ClientState>,
    req: Ruma<get_backup_info::v3::Request>,
) -> Result<get_backup_info::v3::Response> {
    let info = state.key_backup.get_version(req.identity()?, &req.body.version).await?;
    Ok(get_backup_info::v3::Response::new(info.algorithm, info.count, info.etag, info.version).into())
}

async fn update_version(
    State(state): State<ClientState>,
    req: Ruma<update_backup_version::v3::Request>,
) -> Result<update_backup_version::v3::Response> {
    let b = &req.body;
    state.key_backup.update_version(req.identity()?, &b.version, &b.algorithm).await?;
    Ok(update_backup_version::v3::Response::new().into())
}

async fn delete_version(
    State(state): State<ClientState>,
    req: Ruma<delete_backup_version::v3::Request>,
) -> Result<delete_backup_version::v3::Response> {
    state.key_backup.delete_version(req.identity()?, &req.body.version).await?;
    Ok(delete_backup_version::v3::Response::new().into())
}

async fn put_keys(
    State(state): State<ClientState>,
    req: Ruma<add_backup_keys::v3::Request>,
) -> Result<add_backup_keys::v3::Response> {
    let b = &req.body;
    let keys: Vec<_> = b
        .rooms
        .iter()
        .flat_map(|(room, backup)| {
            backup.sessions.iter().map(move |(session, key)| (&**room, &**session, key))
        })
        .collect();
    let counts = state.key_backup.put_keys(req.identity()?, &b.version, &keys).await?;
    Ok(add_backup_keys::v3::Response::new(counts.etag, counts.count).into())
}

async fn put_room_keys(
    State(state): State<ClientState>,
    req: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<add_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let keys: Vec<_> = b.sessions.iter().map(|(session, key)| (&*b.room_id, &**session, key)).collect();
    let counts = state.key_backup.put_keys(req.identity()?, &b.version, &keys).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(counts.etag, counts.count).into())
}

async fn put_session_key(
    State(state): State<ClientState>,
    req: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<add_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let keys = [(&*b.room_id, b.session_id.as_str(), &b.session_data)];
    let counts = state.key_backup.put_keys(req.identity()?, &b.version, &keys).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(counts.etag, counts.count).into())
}

async fn get_keys(
    State(state): State<ClientState>,
    req: Ruma<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response> {
    let rooms = state.key_backup.get_keys(req.identity()?, &req.body.version).await?;
    Ok(get_backup_keys::v3::Response::new(rooms).into())
}

async fn get_room_keys(
    State(state): State<ClientState>,
    req: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<get_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let sessions = state.key_backup.get_room_keys(req.identity()?, &b.version, &b.room_id).await?;
    Ok(get_backup_keys_for_room::v3::Response::new(sessions).into())
}

async fn get_session_key(
    State(state): State<ClientState>,
    req: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<get_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let key =
        state.key_backup.get_session_key(req.identity()?, &b.version, &b.room_id, &b.session_id).await?;
    Ok(get_backup_keys_for_session::v3::Response::new(key).into())
}

async fn delete_keys(
    State(state): State<ClientState>,
    req: Ruma<delete_backup_keys::v3::Request>,
) -> Result<delete_backup_keys::v3::Response> {
    let counts = state.key_backup.delete_keys(req.identity()?, &req.body.version, None, None).await?;
    Ok(delete_backup_keys::v3::Response::new(counts.etag, counts.count).into())
}

async fn delete_room_keys(
    State(state): State<ClientState>,
    req: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<delete_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let counts = state.key_backup.delete_keys(req.identity()?, &b.version, Some(&b.room_id), None).await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(counts.etag, counts.count).into())
}

async fn delete_session_key(
    State(state): State<ClientState>,
    req: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<delete_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let counts = state
        .key_backup
        .delete_keys(req.identity()?, &b.version, Some(&b.room_id), Some(&b.session_id))
        .await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(counts.etag, counts.count).into())
}
