//! Membership: `/join`, `/rooms/{roomId}/join`, `/invite`, `/leave`,
//! `/kick`, `/ban`, `/unban`, `/knock`, `/forget`, `GET /joined_rooms`.

use axum::{Router, extract::State};
use ruma::api::client::{
    knock::knock_room,
    membership::{
        ban_user, forget_room, invite_user, join_room_by_id, join_room_by_id_or_alias, joined_rooms,
        kick_user, leave_room, unban_user,
    },
};
use tessera_service::{Error, rooms::membership::Change};
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(super) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<joined_rooms::v3::Request, _, _>(joined)
        .ruma_route::<join_room_by_id::v3::Request, _, _>(join_by_id)
        .ruma_route::<join_room_by_id_or_alias::v3::Request, _, _>(join_by_id_or_alias)
        .ruma_route::<knock_room::v3::Request, _, _>(knock)
        .ruma_route::<invite_user::v3::Request, _, _>(invite)
        .ruma_route::<leave_room::v3::Request, _, _>(leave)
        .ruma_route::<kick_user::v3::Request, _, _>(kick)
        .ruma_route::<ban_user::v3::Request, _, _>(ban)
        .ruma_route::<unban_user::v3::Request, _, _>(unban)
        .ruma_route::<forget_room::v3::Request, _, _>(forget)
}

async fn joined(
    State(state): State<ClientState>,
    req: Ruma<joined_rooms::v3::Request, GuestsAllowed>,
) -> Result<joined_rooms::v3::Response> {
    let rooms = state.rooms.joined_rooms(&req.identity()?.user_id).await?;
    Ok(joined_rooms::v3::Response::new(rooms).into())
}

async fn join_by_id(
    State(state): State<ClientState>,
    req: Ruma<join_room_by_id::v3::Request, GuestsAllowed>,
) -> Result<join_room_by_id::v3::Response> {
    let room = <&ruma::RoomOrAliasId>::from(&*req.body.room_id);
    let room_id = state
        .rooms
        .join_anywhere(req.identity()?, room, &[], req.body.reason.as_deref(), req.json_object())
        .await?;
    Ok(join_room_by_id::v3::Response::new(room_id).into())
}

async fn join_by_id_or_alias(
    State(state): State<ClientState>,
    req: Ruma<join_room_by_id_or_alias::v3::Request, GuestsAllowed>,
) -> Result<join_room_by_id_or_alias::v3::Response> {
    let body = &req.body;
    let room_id = state
        .rooms
        .join_anywhere(
            req.identity()?,
            &body.room_id_or_alias,
            &body.via,
            body.reason.as_deref(),
            req.json_object(),
        )
        .await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id).into())
}

async fn knock(
    State(state): State<ClientState>,
    req: Ruma<knock_room::v3::Request>,
) -> Result<knock_room::v3::Response> {
    let body = &req.body;
    let room_id = state
        .rooms
        .knock_anywhere(req.identity()?, &body.room_id_or_alias, &body.via, body.reason.as_deref())
        .await?;
    Ok(knock_room::v3::Response::new(room_id).into())
}

async fn invite(
    State(state): State<ClientState>,
    req: Ruma<invite_user::v3::Request>,
) -> Result<invite_user::v3::Response> {
    let invite_user::v3::InvitationRecipient::UserId(recipient) = &req.body.recipient else {
        return Err(Error::new(
            403,
            ruma::api::error::ErrorKind::ThreepidDenied,
            "Third-party invites are not supported",
        )
        .into());
    };
    let (me, room_id) = (req.identity()?, &req.body.room_id);
    state
        .rooms
        .change_membership(me, room_id, Change::Invite, &recipient.user_id, recipient.reason.as_deref())
        .await?;
    Ok(invite_user::v3::Response::new().into())
}

async fn leave(
    State(state): State<ClientState>,
    req: Ruma<leave_room::v3::Request, GuestsAllowed>,
) -> Result<leave_room::v3::Response> {
    let me = req.identity()?;
    state
        .rooms
        .change_membership(me, &req.body.room_id, Change::Leave, &me.user_id, req.body.reason.as_deref())
        .await?;
    Ok(leave_room::v3::Response::new().into())
}

async fn kick(
    State(state): State<ClientState>,
    req: Ruma<kick_user::v3::Request>,
) -> Result<kick_user::v3::Response> {
    let body = &req.body;
    state
        .rooms
        .change_membership(
            req.identity()?,
            &body.room_id,
            Change::Kick,
            &body.user_id,
            body.reason.as_deref(),
        )
        .await?;
    Ok(kick_user::v3::Response::new().into())
}

async fn ban(
    State(state): State<ClientState>,
    req: Ruma<ban_user::v3::Request>,
) -> Result<ban_user::v3::Response> {
    let body = &req.body;
    state
        .rooms
        .change_membership(req.identity()?, &body.room_id, Change::Ban, &body.user_id, body.reason.as_deref())
        .await?;
    Ok(ban_user::v3::Response::new().into())
}

async fn unban(
    State(state): State<ClientState>,
    req: Ruma<unban_user::v3::Request>,
) -> Result<unban_user::v3::Response> {
    let body = &req.body;
    state
        .rooms
        .change_membership(
            req.identity()?,
            &body.room_id,
            Change::Unban,
            &body.user_id,
            body.reason.as_deref(),
        )
        .await?;
    Ok(unban_user::v3::Response::new().into())
}

async fn forget(
    State(state): State<ClientState>,
    req: Ruma<forget_room::v3::Request>,
) -> Result<forget_room::v3::Response> {
    state.rooms.forget(req.identity()?, &req.body.room_id).await?;
    Ok(forget_room::v3::Response::new().into())
}
