//! `GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
//! and `GET /v1/rooms/{roomId}/threads`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#relationships-api>
//! and <https://spec.matrix.org/v1.16/client-server-api/#threads>.

use ruma::{EventId, RoomId};
use tessera_storage::{RelationQuery, StoredEvent};

use super::{
    Rooms,
    client_event::{ClientEvent, Form},
    read::{Direction, PageToken, RoomToken, TokenUse, VisibilityCache},
};
use crate::{Error, Result, auth::Identity};

/// How deep `recurse=true` follows relations of relations (the spec's
/// suggestion for servers).
const MAX_RECURSION: u32 = 3;

/// What `/relations` asks for.
pub struct RelationsQuery {
    pub rel_type: Option<String>,
    pub event_type: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub backwards: bool,
    pub limit: usize,
    pub recurse: bool,
}

/// A page of related events.
pub struct RelationsPage {
    pub chunk: Vec<ClientEvent>,
    pub next_batch: Option<String>,
    pub recursion_depth: Option<u32>,
}

/// A pagination token of relations and threads as an exclusive stream
/// position: their own `r{stream}`, or a `/messages` or `/sync` token
/// (the spec allows both). A sync position is a cut after the events it
/// covers: paging backwards from it, or forwards up to it, includes the
/// event at it.
fn parse_token(token: Option<&str>, used: TokenUse, backwards: bool) -> Result<Option<i64>> {
    let Some(token) = token else { return Ok(None) };
    if let Some(stream) = token.strip_prefix('r') {
        return stream.parse().map(Some).map_err(|_| Error::invalid_param("Invalid pagination token"));
    }
    Ok(Some(match token.parse::<RoomToken>()? {
        RoomToken::Page(page) => page.stream,
        RoomToken::Sync(position) | RoomToken::After(PageToken { stream: position, .. }) => {
            let includes_it = matches!(used, TokenUse::From(_)) == backwards;
            if includes_it { position.saturating_add(1) } else { position }
        }
    }))
}

impl Rooms {
    /// Events relating to `target` that `who` may see.
    pub async fn relations(
        &self,
        who: &Identity,
        room_id: &RoomId,
        target: &EventId,
        query: &RelationsQuery,
    ) -> Result<RelationsPage> {
        let current = self.check_may_read(who, room_id).await?;
        let mut cache = VisibilityCache::default();
        let not_found = || Error::not_found("Event not found");
        let root = self.event_in_room(room_id, target).await?.ok_or_else(not_found)?;
        if !self.is_visible(&who.user_id, current.as_deref(), &root, &mut cache).await? {
            return Err(not_found());
        }
        let direction = if query.backwards { Direction::Backward } else { Direction::Forward };
        let from = parse_token(query.from.as_deref(), TokenUse::From(direction), query.backwards)?;
        let to = parse_token(query.to.as_deref(), TokenUse::To, query.backwards)?;
        let limit = query.limit.clamp(1, 1000);
        let store_query = |from: Option<i64>, limit: i64| RelationQuery {
            rel_type: query.rel_type.as_deref(),
            event_type: query.event_type.as_deref(),
            from,
            backwards: query.backwards,
            limit,
        };

        let (mut candidates, depth) = if query.recurse {
            // Relations of relations, a bounded breadth-first walk, then
            // ordered and paged in memory.
            let mut found: Vec<StoredEvent> = Vec::new();
            let mut frontier = vec![target.to_owned()];
            let mut depth = 0;
            while depth < MAX_RECURSION && !frontier.is_empty() && found.len() < 1000 {
                depth += 1;
                let mut next = Vec::new();
                for id in &frontier {
                    let all = RelationQuery {
                        rel_type: None,
                        event_type: None,
                        from: None,
                        backwards: false,
                        limit: 1000,
                    };
                    for event in self.store.relating_events(id, &all).await? {
                        next.push(event.event_id.clone());
                        found.push(event);
                    }
                }
                frontier = next;
            }
            found.retain(|e| {
                let matches_type = query.event_type.as_deref().is_none_or(|t| e.event_type == t);
                matches_type
                    && query.rel_type.as_deref().is_none_or(|r| relation_type(e).as_deref() == Some(r))
            });
            found.sort_by_key(|e| e.stream_ordering);
            if query.backwards {
                found.reverse();
            }
            found.retain(|e| {
                from.is_none_or(
                    |f| if query.backwards { e.stream_ordering < f } else { e.stream_ordering > f },
                )
            });
            (found, Some(depth))
        } else {
            let limit = i64::try_from(limit + 1).unwrap_or(1001);
            (self.store.relating_events(target, &store_query(from, limit)).await?, None)
        };
        if let Some(to) = to {
            candidates
                .retain(|e| if query.backwards { e.stream_ordering > to } else { e.stream_ordering < to });
        }
        let more = candidates.len() > limit;
        candidates.truncate(limit);
        let mut visible = Vec::with_capacity(candidates.len());
        for event in candidates.iter() {
            if self.is_visible(&who.user_id, current.as_deref(), event, &mut cache).await? {
                visible.push(event.clone());
            }
        }
        let next_batch = more.then(|| candidates.last().map(|e| format!("r{}", e.stream_ordering))).flatten();
        let chunk = self
            .client_events(&visible, Form::timeline(Some((who.user_id.as_str(), &who.device_id))))
            .await?;
        Ok(RelationsPage { chunk, next_batch, recursion_depth: depth })
    }

    /// Thread roots by latest activity, with their thread summaries.
    pub async fn threads(
        &self,
        who: &Identity,
        room_id: &RoomId,
        participated_only: bool,
        from: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ClientEvent>, Option<String>)> {
        let current = self.check_may_read(who, room_id).await?;
        let before = parse_token(from, TokenUse::From(Direction::Backward), true)?.unwrap_or(i64::MAX);
        let limit = limit.clamp(1, 100);
        let participant = participated_only.then_some(who.user_id.as_str());
        let mut roots = self
            .store
            .thread_roots(room_id, before, participant, i64::try_from(limit + 1).unwrap_or(101))
            .await?;
        let more = roots.len() > limit;
        roots.truncate(limit);
        let next_batch = more.then(|| roots.last().map(|(_, latest)| format!("r{latest}"))).flatten();
        let mut cache = VisibilityCache::default();
        let mut visible = Vec::with_capacity(roots.len());
        for (root, _) in roots {
            if self.is_visible(&who.user_id, current.as_deref(), &root, &mut cache).await? {
                visible.push(root);
            }
        }
        let chunk = self
            .client_events(&visible, Form::timeline(Some((who.user_id.as_str(), &who.device_id))))
            .await?;
        Ok((chunk, next_batch))
    }
}

/// `content.m.relates_to.rel_type` of a stored event.
fn relation_type(event: &StoredEvent) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(&event.json).ok()?;
    json["content"]["m.relates_to"]["rel_type"].as_str().map(str::to_owned)
}
