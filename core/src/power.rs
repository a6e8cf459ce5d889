//! Power questions the server answers outside the authorization rules,
//! with ruma-state-res's readers of `m.room.power_levels` and
//! `m.room.create` so that the numbers are the ones the rules use.

use ruma::state_res::events::{RoomCreateEvent, RoomPowerLevelsEvent, RoomPowerLevelsIntField};
use ruma::{UserId, room_version_rules::RoomVersionRules};

use crate::Pdu;

/// Whether `user` may redact an event sent by `target_sender` (`None`: an
/// event not held, taken as another's): their own events always; others'
/// with at least the `redact` level (room creators, from room version 12,
/// always). Spec: "Redactions" in the client-server
/// API; the authorization rules themselves do not check this from room
/// version 3 on, so the server must.
pub fn may_redact(
    user: &UserId,
    target_sender: Option<&UserId>,
    create: &Pdu,
    power_levels: Option<&Pdu>,
    rules: &RoomVersionRules,
) -> bool {
    if target_sender == Some(user) {
        return true;
    }
    let auth = &rules.authorization;
    let creators = RoomCreateEvent::new(create).creators(auth).unwrap_or_default();
    if auth.explicitly_privilege_room_creators && creators.contains(user) {
        return true;
    }
    let Some(power_levels) = power_levels else {
        // Without power levels the creator has 100 and everyone else 0,
        // against a default redact level of 50.
        return creators.contains(user);
    };
    let levels = RoomPowerLevelsEvent::new(power_levels);
    let user_level = levels.user_power_level(user, auth);
    let redact_level = levels.get_as_int_or_default(RoomPowerLevelsIntField::Redact, auth);
    matches!((user_level, redact_level), (Ok(user), Ok(needed)) if user >= needed)
}

/// Whether `user` may invite, which is also what authorises a restricted
/// join on their server (`join_authorised_via_users_server`).
pub fn may_invite(user: &UserId, create: &Pdu, power_levels: Option<&Pdu>, rules: &RoomVersionRules) -> bool {
    let auth = &rules.authorization;
    let creators = RoomCreateEvent::new(create).creators(auth).unwrap_or_default();
    if auth.explicitly_privilege_room_creators && creators.contains(user) {
        return true;
    }
    let Some(power_levels) = power_levels else { return creators.contains(user) };
    let levels = RoomPowerLevelsEvent::new(power_levels);
    let user_level = levels.user_power_level(user, auth);
    let invite_level = levels.get_as_int_or_default(RoomPowerLevelsIntField::Invite, auth);
    matches!((user_level, invite_level), (Ok(user), Ok(needed)) if user >= needed)
}
