//! `GET /v1/rooms/{roomId}/hierarchy`: a space and the rooms under it,
//! depth first, each with its summary and, for spaces, its `m.space.child`
//! events; and for other servers `GET /_matrix/federation/v1/hierarchy`,
//! a room and its direct children.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv1roomsroomidhierarchy>.

use std::collections::HashSet;

use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, directory::PublicRoomsChunk, room::RoomType};
use serde_json::{Value, json};

use super::Rooms;
use crate::{Error, Result, auth::Identity};

/// How many of the servers a child's `via` names are asked about it.
const MAX_ASKED_SERVERS: usize = 3;

/// The servers an `m.space.child` event names (`content.via`).
fn via_of(event: &Value) -> Vec<OwnedServerName> {
    event["content"]["via"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().and_then(|s| OwnedServerName::try_from(s).ok()))
        .collect()
}

/// One room of the hierarchy.
pub struct HierarchyRoom {
    pub summary: PublicRoomsChunk,
    /// The room's `m.space.child` events, stripped as the spec shows them.
    pub children_state: Vec<Value>,
}

/// A space as another server sees it
/// (`GET /_matrix/federation/v1/hierarchy/{roomId}`).
pub struct ServerHierarchy {
    /// The room's summary (with `allowed_room_ids` for a restricted room)
    /// and, for a space, its `m.space.child` events.
    pub room: (Value, Vec<Value>),
    /// The summaries of its children the server may see.
    pub children: Vec<Value>,
    /// Its children known here that the server may not see.
    pub inaccessible_children: Vec<OwnedRoomId>,
}

/// How open a room is (see [`Rooms::may_peek`]).
struct Openness {
    join_rules: Value,
    join_rule: String,
    world_readable: bool,
}

/// What `/hierarchy` asks for.
pub struct HierarchyQuery<'a> {
    pub from: Option<&'a str>,
    pub limit: usize,
    pub max_depth: Option<usize>,
    pub suggested_only: bool,
}

impl Rooms {
    /// The rooms under `root` that `who` may see, from `query.from` on.
    pub async fn hierarchy(
        &self,
        who: &Identity,
        root: &RoomId,
        query: &HierarchyQuery<'_>,
    ) -> Result<(Vec<HierarchyRoom>, Option<String>)> {
        self.room_version(root).await?;
        if !self.may_peek(who, root).await? {
            return Err(Error::forbidden("You cannot see this space"));
        }
        let skip: usize = match query.from {
            Some(token) => token
                .strip_prefix('h')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::invalid_param("Invalid pagination token"))?,
            None => 0,
        };
        let limit = query.limit.clamp(1, 100);
        // Depth first, children in the spec's order, as Synapse walks it
        // (clients page through it with the same `from` either way): a stack
        // with each room's children pushed last first, each with the
        // servers its `m.space.child` names (`via`), to ask about a room
        // this server is not in.
        let mut stack: Vec<(OwnedRoomId, usize, Vec<OwnedServerName>)> =
            vec![(root.to_owned(), 0, Vec::new())];
        let mut seen: HashSet<OwnedRoomId> = HashSet::new();
        let mut rooms = Vec::new();
        let mut index = 0;
        while let Some((room_id, depth, via)) = stack.pop() {
            if !seen.insert(room_id.clone()) {
                continue;
            }
            // Rooms the user may not see are left out, and so are their
            // children; so are rooms no server named could tell about.
            let Some((summary, children)) =
                self.hierarchy_entry(who, &room_id, &via, query.suggested_only).await?
            else {
                continue;
            };
            if query.max_depth.is_none_or(|max| depth < max) {
                for (child, event) in children.iter().rev() {
                    if !seen.contains(child) {
                        stack.push((child.clone(), depth + 1, via_of(event)));
                    }
                }
            }
            if index >= skip {
                if rooms.len() == limit {
                    return Ok((rooms, Some(format!("h{index}"))));
                }
                rooms.push(HierarchyRoom {
                    summary,
                    children_state: children.into_iter().map(|(_, e)| e).collect(),
                });
            }
            index += 1;
        }
        Ok((rooms, None))
    }

    /// One room of a client's hierarchy, if `who` may see it: its summary
    /// and (for a space) its children with their stripped `m.space.child`
    /// events. A room this server is not in is asked of the servers `via`
    /// names (`/federation/v1/hierarchy`), the first that answers.
    async fn hierarchy_entry(
        &self,
        who: &Identity,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
    ) -> Result<Option<(PublicRoomsChunk, Vec<(OwnedRoomId, Value)>)>> {
        let known = self.room_version(room_id).await.is_ok();
        if !known || !self.has_local_members(room_id).await? {
            // Not in the room (any more): those in it know it better.
            if let Some(entry) = self.remote_hierarchy_entry(who, room_id, via, suggested_only).await? {
                return Ok(Some(entry));
            }
        }
        if known {
            if !self.may_peek(who, room_id).await? {
                return Ok(None);
            }
            let joined = self.store.joined_member_count(room_id).await?;
            let mut entries = self.directory_entries(vec![(room_id.to_owned(), joined)]).await?;
            let (_, summary) = entries.pop().ok_or_else(|| Error::internal("no directory entry"))?;
            // Only spaces have children: an `m.space.child` in any other
            // room is not followed (the spec: "If the room is not a
            // space-room, this should be empty").
            let children = if summary.room_type == Some(RoomType::Space) {
                self.space_children(room_id, suggested_only).await?
            } else {
                Vec::new()
            };
            return Ok(Some((summary, children)));
        }
        Ok(None)
    }

    /// [`Rooms::hierarchy_entry`] of a room this server is not in, asked of
    /// the servers `via` names.
    async fn remote_hierarchy_entry(
        &self,
        who: &Identity,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
    ) -> Result<Option<(PublicRoomsChunk, Vec<(OwnedRoomId, Value)>)>> {
        for server in via.iter().filter(|s| **s != self.server_name).take(MAX_ASKED_SERVERS) {
            let answer = match self.federation.remote.hierarchy(server, room_id, suggested_only).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::info!(room = %room_id, %server, error = %e, "hierarchy not answered");
                    continue;
                }
            };
            let summary = serde_json::to_value(&answer.room.summary).map_err(Error::internal)?;
            if summary["room_id"] != room_id.as_str() || !self.may_peek_remote(who, &summary).await? {
                return Ok(None);
            }
            let Ok(chunk) = serde_json::from_value::<PublicRoomsChunk>(summary) else { return Ok(None) };
            let mut children = Vec::new();
            if chunk.room_type == Some(RoomType::Space) {
                for event in &answer.room.children_state {
                    let Ok(event) = serde_json::from_str::<Value>(event.json().get()) else { continue };
                    let Some(child) = event["state_key"].as_str().and_then(|k| RoomId::parse(k).ok()) else {
                        continue;
                    };
                    if !via_of(&event).is_empty() {
                        children.push((child, event));
                    }
                }
            }
            return Ok(Some((chunk, children)));
        }
        Ok(None)
    }

    /// Whether `who` may see the summary of a room this server is not in,
    /// as another server gave it: anyone when it is public, knockable or
    /// world-readable; for a `restricted` room, members of a room it
    /// admits the members of.
    async fn may_peek_remote(&self, who: &Identity, summary: &Value) -> Result<bool> {
        if summary["world_readable"] == true {
            return Ok(true);
        }
        match summary["join_rule"].as_str().unwrap_or("public") {
            "public" | "knock" | "knock_restricted" => Ok(true),
            "restricted" => {
                for allowed in summary["allowed_room_ids"].as_array().into_iter().flatten() {
                    let Some(allowed) = allowed.as_str().and_then(|r| RoomId::parse(r).ok()) else {
                        continue;
                    };
                    if self.store.membership(&allowed, &who.user_id).await?.is_some_and(|(m, _)| m == "join")
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Whether `who` may see a room's summary: members and invitees; anyone
    /// when the room is public, knockable or world-readable; and, for a
    /// `restricted` or `knock_restricted` room, members of a room its join
    /// rule admits (they could join it), as Synapse decides.
    async fn may_peek(&self, who: &Identity, room_id: &RoomId) -> Result<bool> {
        if self
            .store
            .membership(room_id, &who.user_id)
            .await?
            .is_some_and(|(m, _)| m == "join" || m == "invite")
        {
            return Ok(true);
        }
        let openness = self.openness(room_id).await?;
        if openness.world_readable
            || matches!(openness.join_rule.as_str(), "public" | "knock" | "knock_restricted")
        {
            return Ok(true);
        }
        Ok(openness.join_rule == "restricted"
            && self.in_an_allowed_room(&openness.join_rules, &who.user_id).await?)
    }

    /// Whether server `origin` may see a room's summary: it has a member
    /// joined, or the room is public, knockable or world-readable, or
    /// restricted and the server has a member in a room that admits (its
    /// summary then lists those rooms, for the server to check its user
    /// against), as Synapse decides; never when the room's server ACL
    /// bans it.
    async fn server_may_peek(&self, origin: &ServerName, room_id: &RoomId) -> Result<bool> {
        if !self.server_allowed(room_id, origin).await? {
            return Ok(false);
        }
        if self.remote_servers(room_id).await?.iter().any(|server| server == origin) {
            return Ok(true);
        }
        let openness = self.openness(room_id).await?;
        if openness.world_readable
            || matches!(openness.join_rule.as_str(), "public" | "knock" | "knock_restricted")
        {
            return Ok(true);
        }
        // Restricted: when the server has a member in a room that admits
        // (as far as this server knows: it must be in that room too).
        if openness.join_rule == "restricted" {
            for allowed in super::membership::allowed_rooms(&openness.join_rules) {
                if self.version_if_known(&allowed).await?.is_some()
                    && self.remote_servers(&allowed).await?.iter().any(|server| server == origin)
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The room's join rules and whether it is world-readable.
    async fn openness(&self, room_id: &RoomId) -> Result<Openness> {
        let content = |kind: &'static str| async move {
            let event = self.store.current_state_event(room_id, kind, "").await?;
            Ok::<_, Error>(
                event.and_then(|e| serde_json::from_str::<Value>(&e.json).ok()).map(|j| j["content"].clone()),
            )
        };
        let join_rules = content("m.room.join_rules").await?.unwrap_or_else(|| json!({}));
        let join_rule = join_rules.get("join_rule").and_then(Value::as_str).unwrap_or("public").to_owned();
        let visibility = content("m.room.history_visibility").await?;
        let world_readable =
            visibility.as_ref().and_then(|c| c["history_visibility"].as_str()) == Some("world_readable");
        Ok(Openness { join_rules, join_rule, world_readable })
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}` by `origin`: the
    /// room and its direct children as the server may see them; 404 for a
    /// room it may not see, as for one not known here.
    pub async fn hierarchy_for_server(
        &self,
        origin: &ServerName,
        root: &RoomId,
        suggested_only: bool,
    ) -> Result<ServerHierarchy> {
        if self.room_version(root).await.is_err() || !self.server_may_peek(origin, root).await? {
            return Err(Error::not_found("Room not found"));
        }
        let summary = self.summary_for_server(root).await?;
        let is_space = summary["room_type"] == RoomType::Space.as_str();
        let children_state =
            if is_space { self.space_children(root, suggested_only).await? } else { Vec::new() };
        let mut children = Vec::new();
        let mut inaccessible_children = Vec::new();
        for (child, _) in &children_state {
            if self.room_version(child).await.is_err() {
                continue; // not known here: the asking server tries elsewhere
            }
            if self.server_may_peek(origin, child).await? {
                children.push(self.summary_for_server(child).await?);
            } else {
                inaccessible_children.push(child.clone());
            }
        }
        Ok(ServerHierarchy {
            room: (summary, children_state.into_iter().map(|(_, e)| e).collect()),
            children,
            inaccessible_children,
        })
    }

    /// A room's summary for another server: the directory entry, with the
    /// rooms that admit to it when it is restricted.
    async fn summary_for_server(&self, room_id: &RoomId) -> Result<Value> {
        let joined = self.store.joined_member_count(room_id).await?;
        let mut entries = self.directory_entries(vec![(room_id.to_owned(), joined)]).await?;
        let (_, entry) = entries.pop().ok_or_else(|| Error::internal("no directory entry"))?;
        let mut summary = serde_json::to_value(&entry).map_err(Error::internal)?;
        let openness = self.openness(room_id).await?;
        summary["join_rule"] = openness.join_rule.as_str().into();
        if matches!(openness.join_rule.as_str(), "restricted" | "knock_restricted") {
            let allowed: Vec<&str> = openness
                .join_rules
                .get("allow")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|entry| entry["type"] == "m.room_membership")
                .filter_map(|entry| entry["room_id"].as_str())
                .collect();
            summary["allowed_room_ids"] = json!(allowed);
        }
        Ok(summary)
    }

    /// A space's children in the spec's order (`order`, then when added,
    /// then room ID), with their stripped `m.space.child` events. Children
    /// without `via` have been removed from the space.
    async fn space_children(
        &self,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<Vec<(OwnedRoomId, Value)>> {
        let mut children = Vec::new();
        for event in self.store.current_state_of_type(room_id, "m.space.child").await? {
            let Ok(pdu) = serde_json::from_str::<Value>(&event.json) else { continue };
            let content = &pdu["content"];
            let has_via = content["via"].as_array().is_some_and(|via| !via.is_empty());
            let suggested = content["suggested"].as_bool().unwrap_or(false);
            let Some(child) = event.state_key.as_deref().and_then(|k| RoomId::parse(k).ok()) else {
                continue;
            };
            if !has_via || (suggested_only && !suggested) {
                continue;
            }
            // The spec's `order`: printable ASCII, at most 50 characters.
            let order = content["order"]
                .as_str()
                .filter(|o| o.len() <= 50 && o.chars().all(|c| (' '..='~').contains(&c)))
                .map(str::to_owned);
            let stripped = json!({
                "type": "m.space.child",
                "state_key": child,
                "content": content,
                "sender": event.sender,
                "origin_server_ts": event.origin_server_ts,
            });
            children.push((order, event.origin_server_ts, child, stripped));
        }
        // Children with an order come first, by order; then by time added.
        children.sort_by(|a, b| match (&a.0, &b.0) {
            (Some(x), Some(y)) => x.cmp(y).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1).then(a.2.cmp(&b.2)),
        });
        Ok(children.into_iter().map(|(_, _, child, stripped)| (child, stripped)).collect())
    }
}
