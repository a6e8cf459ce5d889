//! Push rules: `GET /pushrules/`, `GET /pushrules/global/`,
//! `GET/PUT/DELETE /pushrules/global/{kind}/{ruleId}` and its `enabled`
//! and `actions`; and what they produced, `GET /notifications`.

use axum::{Router, extract::State};
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pushrule, set_pushrule_actions, set_pushrule_enabled,
};
use tessera_service::Error;
use tessera_web::{GuestsAllowed, Result, Ruma, routing::RumaRoutes};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<get_pushrules_all::v3::Request, _, _>(all)
        .ruma_route::<get_pushrules_global_scope::v3::Request, _, _>(global)
        .ruma_route::<get_pushrule::v3::Request, _, _>(get)
        .ruma_route::<set_pushrule::v3::Request, _, _>(set)
        .ruma_route::<delete_pushrule::v3::Request, _, _>(delete)
        .ruma_route::<get_pushrule_enabled::v3::Request, _, _>(get_enabled)
        .ruma_route::<set_pushrule_enabled::v3::Request, _, _>(set_enabled)
        .ruma_route::<get_pushrule_actions::v3::Request, _, _>(get_actions)
        .ruma_route::<set_pushrule_actions::v3::Request, _, _>(set_actions)
        .ruma_route::<get_notifications::v3::Request, _, _>(notifications)
}

async fn notifications(
    State(state): State<ClientState>,
    req: Ruma<get_notifications::v3::Request>,
) -> Result<get_notifications::v3::Response> {
    let page = state
        .notifications
        .list(
            req.identity()?,
            req.body.from.as_deref(),
            req.body.limit.map(u64::from),
            req.body.only.as_deref(),
        )
        .await?;
    let mut notifications = Vec::with_capacity(page.notifications.len());
    for entry in page.notifications {
        let room_id = ruma::OwnedRoomId::try_from(entry.room_id).map_err(Error::internal)?;
        let actions = serde_json::from_value(entry.actions).map_err(Error::internal)?;
        let event = serde_json::value::to_raw_value(&entry.event).map_err(Error::internal)?;
        let ts = ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::try_from(entry.ts).unwrap_or_default());
        notifications.push(get_notifications::v3::Notification::new(
            actions,
            ruma::serde::Raw::from_json(event),
            entry.read,
            room_id,
            ts,
        ));
    }
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = page.next_token;
    Ok(response.into())
}

async fn all(
    State(state): State<ClientState>,
    req: Ruma<get_pushrules_all::v3::Request, GuestsAllowed>,
) -> Result<get_pushrules_all::v3::Response> {
    let ruleset = state.push_rules.ruleset(&req.identity()?.user_id).await?;
    Ok(get_pushrules_all::v3::Response::new(ruleset).into())
}

async fn global(
    State(state): State<ClientState>,
    req: Ruma<get_pushrules_global_scope::v3::Request, GuestsAllowed>,
) -> Result<get_pushrules_global_scope::v3::Response> {
    let ruleset = state.push_rules.ruleset(&req.identity()?.user_id).await?;
    Ok(get_pushrules_global_scope::v3::Response::new(ruleset).into())
}

async fn get(
    State(state): State<ClientState>,
    req: Ruma<get_pushrule::v3::Request, GuestsAllowed>,
) -> Result<get_pushrule::v3::Response> {
    let rule = state.push_rules.get(req.identity()?, req.body.kind.clone(), &req.body.rule_id).await?;
    Ok(get_pushrule::v3::Response::new(rule.into()).into())
}

async fn set(
    State(state): State<ClientState>,
    req: Ruma<set_pushrule::v3::Request>,
) -> Result<set_pushrule::v3::Response> {
    let b = req.body.clone();
    state.push_rules.set(req.identity()?, b.rule, b.before.as_deref(), b.after.as_deref()).await?;
    Ok(set_pushrule::v3::Response::new().into())
}

async fn delete(
    State(state): State<ClientState>,
    req: Ruma<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response> {
    state.push_rules.delete(req.identity()?, req.body.kind.clone(), &req.body.rule_id).await?;
    Ok(delete_pushrule::v3::Response::new().into())
}

async fn get_enabled(
    State(state): State<ClientState>,
    req: Ruma<get_pushrule_enabled::v3::Request, GuestsAllowed>,
) -> Result<get_pushrule_enabled::v3::Response> {
    let rule = state.push_rules.get(req.identity()?, req.body.kind.clone(), &req.body.rule_id).await?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()).into())
}

async fn set_enabled(
    State(state): State<ClientState>,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response> {
    let b = &req.body;
    state.push_rules.set_enabled(req.identity()?, b.kind.clone(), &b.rule_id, b.enabled).await?;
    Ok(set_pushrule_enabled::v3::Response::new().into())
}

async fn get_actions(
    State(state): State<ClientState>,
    req: Ruma<get_pushrule_actions::v3::Request, GuestsAllowed>,
) -> Result<get_pushrule_actions::v3::Response> {
    let rule = state.push_rules.get(req.identity()?, req.body.kind.clone(), &req.body.rule_id).await?;
    Ok(get_pushrule_actions::v3::Response::new(rule.actions().to_vec()).into())
}

async fn set_actions(
    State(state): State<ClientState>,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response> {
    let b = &req.body;
    state.push_rules.set_actions(req.identity()?, b.kind.clone(), &b.rule_id, b.actions.clone()).await?;
    Ok(set_pushrule_actions::v3::Response::new().into())
}
