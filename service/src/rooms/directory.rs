//! Room directory: aliases (`PUT/GET/DELETE /directory/room/{roomAlias}`,
//! `GET /rooms/{roomId}/aliases`), a room's visibility in the published
//! room directory (`GET/PUT /directory/list/room/{roomId}`), the list itself
//! (`GET/POST /publicRooms`), and the check of the `m.room.canonical_alias`
//! content clients send.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#room-aliases>,
//! <https://spec.matrix.org/v1.16/client-server-api/#published-room-directory>.
//!
//! Who may change what is the server's choice where the spec leaves it
//! open; we follow Synapse: an alias may be deleted by its creator, and an
//! alias deleted or a room's visibility changed by whoever may send
//! `m.room.canonical_alias` in the room, or by a server admin.

use std::collections::HashMap;

use ruma::{
    OwnedMxcUri, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, ServerName, UInt,
    UserId,
    api::error::ErrorKind,
    directory::{Filter, PublicRoomsChunk, PublicRoomsChunkInit, RoomNetwork},
    room::{JoinRuleKind, RoomType},
};
use serde_json::{Map, Value, json};
use tessera_core::EventTemplate;
use tessera_storage::{StorageError, StoredEvent};

use super::Rooms;
use crate::{Error, Result, auth::Identity};

/// Page size of `/publicRooms` when the client names none, and the most
/// it may ask for.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 500;

/// The state a directory entry is made of.
const ENTRY_STATE: [&str; 8] = [
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
];

/// A page of the published room directory.
#[derive(Debug, Default)]
pub struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total_room_count_estimate: Option<UInt>,
}

/// A position in the list's order (joined members descending, then room
/// ID), and which way from it the next page goes. Serialised as
/// `n{joined}_{room_id}` (rooms after it) or `p{joined}_{room_id}` (rooms
/// before it); clients treat it as opaque.
struct Since {
    backwards: bool,
    joined: i64,
    room_id: String,
}

impl Since {
    fn token(backwards: bool, joined: i64, room_id: &RoomId) -> String {
        format!("{}{joined}_{room_id}", if backwards { 'p' } else { 'n' })
    }

    fn parse(token: &str) -> Result<Self> {
        let invalid = || Error::invalid_param("Invalid pagination token");
        let (backwards, rest) = match token.split_at_checked(1) {
            Some(("n", rest)) => (false, rest),
            Some(("p", rest)) => (true, rest),
            _ => return Err(invalid()),
        };
        let (joined, room_id) = rest.split_once('_').ok_or_else(invalid)?;
        Ok(Self { backwards, joined: joined.parse().map_err(|_| invalid())?, room_id: room_id.to_owned() })
    }
}

impl Rooms {
    /// `PUT /directory/room/{roomAlias}`: the alias must be ours, the room
    /// known and the user joined to it; a taken alias is 409 `M_UNKNOWN`.
    pub async fn create_alias(&self, who: &Identity, alias: &RoomAliasId, room_id: &RoomId) -> Result<()> {
        if alias.server_name() != self.server_name {
            return Err(Error::invalid_param(format!("Room aliases must end in :{}", self.server_name)));
        }
        self.room_version(room_id).await?;
        if !self.is_joined(room_id, &who.user_id).await? {
            return Err(Error::forbidden("You must be in the room to create an alias for it"));
        }
        match self.store.create_alias(alias.as_str(), room_id, &who.user_id).await {
            Err(StorageError::Conflict(_)) => {
                Err(Error::new(409, ErrorKind::Unknown, format!("Room alias {alias} already exists")))
            }
            other => Ok(other?),
        }
    }

    /// `GET /directory/room/{roomAlias}`: the room and the servers to join
    /// it through. Another server's alias is asked of it
    /// (`/query/directory`).
    pub async fn get_alias(&self, alias: &RoomAliasId) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        if alias.server_name() != self.server_name {
            return self.remote_alias(alias).await;
        }
        let (room_id, _) = self
            .store
            .get_alias(alias)
            .await?
            .ok_or_else(|| Error::not_found(format!("Room alias {alias} not found")))?;
        // The servers to join through: this one, and the others in the room.
        let mut servers = vec![self.server_name.clone()];
        if self.version_if_known(&room_id).await?.is_some() {
            servers.extend(self.remote_servers(&room_id).await?.iter().cloned());
        }
        Ok((room_id, servers))
    }

    /// `DELETE /directory/room/{roomAlias}`. If the alias was advertised in
    /// `m.room.canonical_alias`, it is taken out there too, when the user
    /// may; the deletion stands either way (the spec's recommendation).
    pub async fn delete_alias(&self, who: &Identity, alias: &RoomAliasId) -> Result<()> {
        let not_found = || Error::not_found(format!("Room alias {alias} not found"));
        let (room_id, creator) = self.store.get_alias(alias).await?.ok_or_else(not_found)?;
        let allowed = creator == who.user_id
            || who.is_admin
            || self.may_send_state(&room_id, &who.user_id, "m.room.canonical_alias").await?;
        if !allowed {
            return Err(Error::forbidden("You may not delete this alias"));
        }
        if !self.store.delete_alias(alias).await? {
            // Someone else deleted it first.
            return Err(not_found());
        }
        if let Err(e) = self.unadvertise_alias(who, &room_id, alias).await {
            tracing::info!(%room_id, %alias, error = %e, "alias deleted; m.room.canonical_alias left as it was");
        }
        Ok(())
    }

    /// Removes `alias` from the room's `m.room.canonical_alias`, if there,
    /// with a new state event from `who`. The room lock is held from reading
    /// the current content to storing the new one, so that a concurrent
    /// change to the event is not overwritten.
    async fn unadvertise_alias(&self, who: &Identity, room_id: &RoomId, alias: &RoomAliasId) -> Result<()> {
        let version = self.room_version(room_id).await?;
        let lock = self.room_lock(room_id);
        let _guard = lock.lock().await;
        let current = self.store.current_state_event(room_id, "m.room.canonical_alias", "").await?;
        let Some(mut content) = current.as_ref().and_then(content_object) else {
            return Ok(());
        };
        let mut changed = false;
        if content.get("alias").and_then(Value::as_str) == Some(alias.as_str()) {
            content.remove("alias");
            changed = true;
        }
        if let Some(alt) = content.get_mut("alt_aliases").and_then(Value::as_array_mut) {
            let before = alt.len();
            alt.retain(|a| a.as_str() != Some(alias.as_str()));
            changed |= alt.len() != before;
        }
        if !changed {
            return Ok(());
        }
        let template = EventTemplate::state("m.room.canonical_alias", "", Value::Object(content));
        let prepared = self.prepare(Some(room_id), &version, &who.user_id, &template).await?;
        self.persist(&prepared, None, None).await?;
        Ok(())
    }

    /// `GET /rooms/{roomId}/aliases`: for members, anyone if the room is
    /// world-readable, and server admins. An unknown room is 403 like any
    /// room the user is not in (the spec lists no 404).
    pub async fn local_aliases(&self, who: &Identity, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let world_readable = self
            .store
            .current_state_event(room_id, "m.room.history_visibility", "")
            .await?
            .and_then(|e| content_object(&e))
            .is_some_and(|c| c.get("history_visibility").and_then(Value::as_str) == Some("world_readable"));
        if !world_readable && !who.is_admin && !self.is_joined(room_id, &who.user_id).await? {
            return Err(Error::forbidden("You are not a member of this room"));
        }
        Ok(self.store.room_aliases(room_id).await?)
    }

    /// `GET /directory/list/room/{roomId}`: whether the room is published.
    pub async fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        let room = self.store.get_room(room_id).await?.ok_or_else(|| Error::not_found("Room not found"))?;
        Ok(room.is_public)
    }

    /// `PUT /directory/list/room/{roomId}`: for those who may send
    /// `m.room.canonical_alias` in the room, and server admins.
    pub async fn set_published(&self, who: &Identity, room_id: &RoomId, public: bool) -> Result<()> {
        self.room_version(room_id).await?;
        if !who.is_admin && !self.may_send_state(room_id, &who.user_id, "m.room.canonical_alias").await? {
            return Err(Error::forbidden("You may not change this room's visibility in the directory"));
        }
        if !self.store.set_room_public(room_id, public).await? {
            return Err(Error::not_found("Room not found"));
        }
        Ok(())
    }

    /// Another server's directory, asked of it (`/publicRooms` over
    /// federation, its tokens passed through): 404 if it cannot be asked.
    async fn remote_public_rooms(
        &self,
        server: &ServerName,
        network: &RoomNetwork,
        filter: &Filter,
        since: Option<&str>,
        limit: Option<UInt>,
    ) -> Result<PublicRoomsPage> {
        use ruma::api::federation::directory::get_public_rooms_filtered;
        let mut request = get_public_rooms_filtered::v1::Request::new();
        request.limit = limit;
        request.since = since.filter(|s| !s.is_empty()).map(str::to_owned);
        request.filter = filter.clone();
        request.room_network = network.clone();
        // A server that cannot be asked is answered as one with no directory
        // (404): the name comes from the client, often mistyped, and a 5xx
        // would blame this server.
        let answer = self.federation.remote.public_rooms(server, request).await.map_err(|e| {
            tracing::info!(%server, error = %e, "remote room directory not read");
            Error::not_found(format!("{server}'s room directory could not be read"))
        })?;
        Ok(PublicRoomsPage {
            chunk: answer.chunk,
            next_batch: answer.next_batch,
            prev_batch: answer.prev_batch,
            total_room_count_estimate: answer.total_room_count_estimate,
        })
    }

    /// `GET/POST /publicRooms`: a page of the published rooms, most joined
    /// members first, then by room ID; another server's, asked of it.
    pub async fn public_rooms(
        &self,
        server: Option<&ServerName>,
        network: &RoomNetwork,
        filter: &Filter,
        since: Option<&str>,
        limit: Option<UInt>,
    ) -> Result<PublicRoomsPage> {
        if let Some(server) = server.filter(|s| *s != self.server_name) {
            return self.remote_public_rooms(server, network, filter, since, limit).await;
        }
        let since = since.filter(|s| !s.is_empty()).map(Since::parse).transpose()?;
        // Third-party networks need application services, which we do not
        // have yet: their directories are empty (the spec lists no error).
        if matches!(network, RoomNetwork::ThirdParty(_)) {
            return Ok(PublicRoomsPage { total_room_count_estimate: Some(UInt::MIN), ..Default::default() });
        }
        let limit = limit
            .map_or(DEFAULT_LIMIT, |l| usize::try_from(u64::from(l)).unwrap_or(MAX_LIMIT))
            .clamp(1, MAX_LIMIT);
        let backwards = since.as_ref().is_some_and(|s| s.backwards);
        let search = filter.generic_search_term.as_deref().map(str::to_lowercase).filter(|t| !t.is_empty());
        let mut cursor = since.as_ref().map(|s| (s.joined, s.room_id.clone()));
        let mut found: Vec<(i64, PublicRoomsChunk)> = Vec::new();
        let mut more = false;
        // Read in batches until the page (plus one, to know whether there
        // is more) is full: entries the filter drops do not count.
        loop {
            let batch_size = (limit + 1 - found.len()).max(20);
            let batch = self
                .store
                .public_rooms(
                    cursor.as_ref().map(|(joined, room)| (*joined, room.as_str())),
                    backwards,
                    i64::try_from(batch_size).unwrap_or(i64::MAX),
                )
                .await?;
            let exhausted = batch.len() < batch_size;
            if let Some((room_id, joined)) = batch.last() {
                cursor = Some((*joined, room_id.to_string()));
            }
            for (joined, entry) in self.directory_entries(batch).await? {
                if matches_filter(&entry, search.as_deref(), filter) {
                    found.push((joined, entry));
                    if found.len() > limit {
                        more = true;
                        break;
                    }
                }
            }
            if more || exhausted {
                break;
            }
        }
        found.truncate(limit);
        if backwards {
            found.reverse();
        }
        let token = |backwards: bool, (joined, entry): &(i64, PublicRoomsChunk)| {
            Since::token(backwards, *joined, &entry.room_id)
        };
        // Forwards, there is something before us exactly when we came from a
        // token; backwards, there is something after us for the same reason.
        let (has_prev, has_next) = if backwards { (more, true) } else { (since.is_some(), more) };
        Ok(PublicRoomsPage {
            next_batch: found.last().filter(|_| has_next).map(|last| token(false, last)),
            prev_batch: found.first().filter(|_| has_prev).map(|first| token(true, first)),
            chunk: found.into_iter().map(|(_, entry)| entry).collect(),
            total_room_count_estimate: UInt::try_from(self.store.count_public_rooms().await?).ok(),
        })
    }

    /// Directory entries for published rooms, in the order given.
    pub(crate) async fn directory_entries(
        &self,
        rooms: Vec<(OwnedRoomId, i64)>,
    ) -> Result<Vec<(i64, PublicRoomsChunk)>> {
        let ids: Vec<OwnedRoomId> = rooms.iter().map(|(room_id, _)| room_id.clone()).collect();
        let mut state: HashMap<String, HashMap<String, Map<String, Value>>> = HashMap::new();
        for event in self.store.current_state_of_types(&ids, &ENTRY_STATE).await? {
            if let Some(content) = content_object(&event) {
                state.entry(event.room_id).or_default().insert(event.event_type, content);
            }
        }
        Ok(rooms
            .into_iter()
            .map(|(room_id, joined)| {
                let entry = directory_entry(room_id.clone(), joined, state.get(room_id.as_str()));
                (joined, entry)
            })
            .collect())
    }

    /// Checks the `m.room.canonical_alias` content a client sends: every
    /// alias must be well-formed (400 `M_INVALID_PARAM`), and every local
    /// alias must exist and point at this room (400 `M_BAD_ALIAS`). Only
    /// aliases the event adds are checked, as Synapse does: one that was
    /// deleted since it was advertised must not stop the room's admins from
    /// editing the others. Remote aliases are checked for syntax only until
    /// federation can resolve them.
    pub(crate) async fn check_canonical_alias(&self, room_id: &RoomId, content: &Value) -> Result<()> {
        let current = self
            .store
            .current_state_event(room_id, "m.room.canonical_alias", "")
            .await?
            .and_then(|e| content_object(&e))
            .unwrap_or_default();
        let old_alias = current.get("alias").and_then(Value::as_str);
        let old_alt: Vec<&str> = current
            .get("alt_aliases")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut added: Vec<&str> = Vec::new();
        match content.get("alias") {
            None | Some(Value::Null) => {}
            Some(Value::String(alias)) => {
                if !alias.is_empty() && Some(alias.as_str()) != old_alias {
                    added.push(alias);
                }
            }
            Some(_) => return Err(Error::invalid_param("alias must be a room alias")),
        }
        match content.get("alt_aliases") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let alias = item
                        .as_str()
                        .ok_or_else(|| Error::invalid_param("alt_aliases must be a list of room aliases"))?;
                    if !old_alt.contains(&alias) {
                        added.push(alias);
                    }
                }
            }
            Some(_) => return Err(Error::invalid_param("alt_aliases must be a list of room aliases")),
        }
        // Syntax first, so that a malformed alias is reported as such
        // whatever precedes it.
        let added = added
            .into_iter()
            .map(|alias| {
                RoomAliasId::parse(alias)
                    .map_err(|e| Error::invalid_param(format!("Invalid room alias {alias:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        for alias in added.iter().filter(|alias| alias.server_name() == self.server_name) {
            match self.store.get_alias(alias).await? {
                Some((target, _)) if target == room_id => {}
                _ => {
                    return Err(Error::new(
                        400,
                        ErrorKind::BadAlias,
                        format!("The alias {alias} does not point to this room"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn is_joined(&self, room_id: &RoomId, user: &UserId) -> Result<bool> {
        Ok(self.store.membership(room_id, user).await?.is_some_and(|(m, _)| m == "join"))
    }

    /// Whether the room's authorization rules let `user` send a state event
    /// of `kind` now. The rules run on a trial event that is never stored,
    /// so the answer is the one sending would meet (membership, power
    /// levels, room version 12's creators) without restating the rules.
    async fn may_send_state(&self, room_id: &RoomId, user: &UserId, kind: &str) -> Result<bool> {
        let version = self.room_version(room_id).await?;
        let template = EventTemplate::state(kind, "", json!({}));
        match self.prepare(Some(room_id), &version, user, &template).await {
            Ok(_) => Ok(true),
            Err(Error::Matrix { status: 403, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A published room as the directory shows it, from its current state.
fn directory_entry(
    room_id: OwnedRoomId,
    joined: i64,
    state: Option<&HashMap<String, Map<String, Value>>>,
) -> PublicRoomsChunk {
    let field = |kind: &str, key: &str| {
        state?.get(kind)?.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let mut entry: PublicRoomsChunk = PublicRoomsChunkInit {
        num_joined_members: UInt::try_from(joined).unwrap_or(UInt::MIN),
        room_id,
        world_readable: field("m.room.history_visibility", "history_visibility").as_deref()
            == Some("world_readable"),
        guest_can_join: field("m.room.guest_access", "guest_access").as_deref() == Some("can_join"),
    }
    .into();
    entry.name = field("m.room.name", "name");
    entry.topic = field("m.room.topic", "topic").or_else(|| plain_topic(state?.get("m.room.topic")?));
    entry.canonical_alias =
        field("m.room.canonical_alias", "alias").and_then(|alias| RoomAliasId::parse(alias).ok());
    entry.avatar_url = field("m.room.avatar", "url").map(OwnedMxcUri::from);
    // The spec: "When not present, the room is assumed to be public".
    entry.join_rule =
        field("m.room.join_rules", "join_rule").map_or(JoinRuleKind::Public, JoinRuleKind::from);
    entry.room_type = field("m.room.create", "type").map(RoomType::from);
    entry
}

/// The `text/plain` representation in `m.topic` (a representation without
/// a mimetype is plain text), for a topic event without `topic`.
fn plain_topic(content: &Map<String, Value>) -> Option<String> {
    let representations = content.get("m.topic")?.get("m.text")?.as_array()?;
    representations
        .iter()
        .find(|r| r.get("mimetype").and_then(Value::as_str).is_none_or(|m| m == "text/plain"))?
        .get("body")?
        .as_str()
        .filter(|body| !body.is_empty())
        .map(str::to_owned)
}

/// `filter.generic_search_term` (a case-insensitive substring of the name,
/// topic or canonical alias; `search` is already lowercase) and
/// `filter.room_types`.
fn matches_filter(entry: &PublicRoomsChunk, search: Option<&str>, filter: &Filter) -> bool {
    let type_matches = filter.room_types.is_empty()
        || filter.room_types.iter().any(|t| t.as_str() == entry.room_type.as_ref().map(RoomType::as_str));
    let text_matches = search.is_none_or(|term| {
        [entry.name.as_deref(), entry.topic.as_deref(), entry.canonical_alias.as_ref().map(|a| a.as_str())]
            .into_iter()
            .flatten()
            .any(|text| text.to_lowercase().contains(term))
    });
    type_matches && text_matches
}

/// An event's content, if it is a JSON object.
fn content_object(event: &StoredEvent) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(&event.json).ok()?.get_mut("content")?.take() {
        Value::Object(content) => Some(content),
        _ => None,
    }
}
