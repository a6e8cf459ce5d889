//! Filters: `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`,
//! which events a filter lets through ([`Criteria`]), and the filter's
//! `event_fields`.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#filtering>.

use std::sync::Arc;

use ruma::{
    OwnedUserId, UserId,
    api::client::filter::{Filter, FilterDefinition, RoomEventFilter},
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::SyncService;
use crate::{Error, Result, rooms::ClientEvent};

impl SyncService {
    /// Stores a filter for `user`; its ID derives from its content, so the
    /// same filter uploaded twice gets the same ID.
    pub async fn create_filter(&self, user: &UserId, filter: &FilterDefinition) -> Result<String> {
        let json = serde_json::to_string(filter).map_err(Error::internal)?;
        let id = hex::encode(&Sha256::digest(json.as_bytes())[..8]);
        self.store.put_filter(user, &id, &json).await?;
        Ok(id)
    }

    /// A stored filter; 404 if the user has none with this ID.
    pub async fn get_filter(&self, user: &UserId, filter_id: &str) -> Result<FilterDefinition> {
        let key = (user.to_owned(), filter_id.to_owned());
        if let Some(filter) = self.filters.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(FilterDefinition::clone(filter));
        }
        let json = self
            .store
            .get_filter(user, filter_id)
            .await?
            .ok_or_else(|| Error::not_found("Unknown filter"))?;
        let filter: FilterDefinition =
            serde_json::from_str(&json).map_err(|e| Error::internal(format!("stored filter: {e}")))?;
        crate::remember(
            &mut self.filters.lock().unwrap_or_else(|p| p.into_inner()),
            key,
            Arc::new(filter.clone()),
        );
        Ok(filter)
    }
}

/// The type and sender conditions that every kind of filter has (`Filter`
/// for presence and account data, `RoomEventFilter` for a room's sections).
pub(super) struct Criteria<'a> {
    types: Option<&'a [String]>,
    not_types: &'a [String],
    senders: Option<&'a [OwnedUserId]>,
    not_senders: &'a [OwnedUserId],
}

impl<'a> From<&'a Filter> for Criteria<'a> {
    fn from(filter: &'a Filter) -> Self {
        Self {
            types: filter.types.as_deref(),
            not_types: &filter.not_types,
            senders: filter.senders.as_deref(),
            not_senders: &filter.not_senders,
        }
    }
}

impl<'a> From<&'a RoomEventFilter> for Criteria<'a> {
    fn from(filter: &'a RoomEventFilter) -> Self {
        Self {
            types: filter.types.as_deref(),
            not_types: &filter.not_types,
            senders: filter.senders.as_deref(),
            not_senders: &filter.not_senders,
        }
    }
}

impl Criteria<'_> {
    /// Whether events of this type may pass (`*` ends a prefix pattern;
    /// `not_types` wins over `types`). When it is false for a whole kind
    /// of event, sync does not read that kind at all.
    pub(super) fn wants_type(&self, event_type: &str) -> bool {
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => pattern == event_type,
        };
        self.types.is_none_or(|types| types.iter().any(matches)) && !self.not_types.iter().any(matches)
    }

    /// Whether an event of this type and sender passes. Events without a
    /// sender (receipts, typing, account data) pass the sender conditions.
    pub(super) fn wants(&self, event_type: &str, sender: Option<&str>) -> bool {
        self.wants_type(event_type)
            && sender.is_none_or(|sender| {
                self.senders.is_none_or(|senders| senders.iter().any(|s| s.as_str() == sender))
                    && !self.not_senders.iter().any(|s| s.as_str() == sender)
            })
    }

    /// [`Self::wants`] for an event in client form (`type`, `sender`).
    pub(super) fn wants_event(&self, event: &Value) -> bool {
        self.wants(event["type"].as_str().unwrap_or_default(), event["sender"].as_str())
    }
}

/// The filter's `event_fields`: only the listed dot-separated paths of an
/// event (`content.body`; `\.` is a literal dot in a key). Paths the event
/// lacks are skipped.
pub(super) fn keep_fields(event: &ClientEvent, fields: &[String]) -> Result<ClientEvent> {
    ClientEvent::from_object(&pick_fields(&event.to_object(), fields))
}

fn pick_fields(event: &Map<String, Value>, fields: &[String]) -> Map<String, Value> {
    let mut kept = Map::new();
    for field in fields {
        let path = split_path(field);
        if let Some((last, parents)) = path.split_last() {
            copy_path(event, &mut kept, parents, last);
        }
    }
    kept
}

/// Copies `parents.last` from `from` into `into`, creating the parent
/// objects on the way.
fn copy_path(from: &Map<String, Value>, into: &mut Map<String, Value>, parents: &[String], last: &str) {
    match parents.split_first() {
        None => {
            if let Some(value) = from.get(last) {
                into.insert(last.to_owned(), value.clone());
            }
        }
        Some((key, rest)) => {
            let Some(Value::Object(child)) = from.get(key) else { return };
            let slot = into.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(slot) = slot {
                copy_path(child, slot, rest, last);
            }
        }
    }
}

/// `a.b\.c` → `["a", "b.c"]`; `\\` is a literal backslash.
fn split_path(field: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push(chars.next().unwrap_or('\\')),
            '.' => parts.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test events are objects"),
        }
    }

    fn criteria(filter: Value) -> Filter {
        serde_json::from_value(filter).expect("a valid filter")
    }

    #[test]
    fn types_match_exactly_or_by_prefix_and_not_types_win() {
        let filter = criteria(json!({ "types": ["m.room.*", "m.receipt"], "not_types": ["m.room.member"] }));
        let criteria = Criteria::from(&filter);
        assert!(criteria.wants_type("m.room.message"));
        assert!(criteria.wants_type("m.receipt"));
        assert!(!criteria.wants_type("m.receipt.private"));
        assert!(!criteria.wants_type("m.room.member"));
        assert!(!criteria.wants_type("m.typing"));
    }

    #[test]
    fn not_types_star_excludes_everything_and_an_empty_filter_nothing() {
        let none = criteria(json!({ "not_types": ["*"] }));
        assert!(!Criteria::from(&none).wants_type("m.presence"));
        let all = criteria(json!({}));
        assert!(Criteria::from(&all).wants_type("m.presence"));
        assert!(Criteria::from(&all).wants_event(&json!({ "type": "m.typing" })));
    }

    #[test]
    fn senders_filter_events_that_have_one() {
        let filter = criteria(json!({ "senders": ["@a:x"], "not_senders": ["@b:x"] }));
        let criteria = Criteria::from(&filter);
        assert!(criteria.wants_event(&json!({ "type": "m.presence", "sender": "@a:x" })));
        assert!(!criteria.wants_event(&json!({ "type": "m.presence", "sender": "@c:x" })));
        assert!(!criteria.wants("m.presence", Some("@b:x")));
        assert!(criteria.wants_event(&json!({ "type": "m.receipt", "content": {} })));
    }

    #[test]
    fn keeps_only_the_listed_paths() {
        let full = event(json!({
            "type": "m.room.message",
            "sender": "@a:x",
            "content": { "body": "hi", "msgtype": "m.text", "m.relates_to": { "rel_type": "m.thread" } },
            "unsigned": { "age": 5 },
        }));
        let fields =
            ["type", "content.body", "content.m\\.relates_to.rel_type", "content.absent"].map(String::from);
        assert_eq!(
            Value::Object(pick_fields(&full, &fields)),
            json!({
                "type": "m.room.message",
                "content": { "body": "hi", "m.relates_to": { "rel_type": "m.thread" } },
            })
        );
    }

    #[test]
    fn a_path_through_a_non_object_is_skipped() {
        let full = event(json!({ "type": "m.x", "content": { "body": "hi" } }));
        let fields = ["type.inner", "content.body.deeper"].map(String::from);
        assert_eq!(Value::Object(pick_fields(&full, &fields)), json!({ "content": {} }));
    }

    #[test]
    fn paths_split_on_unescaped_dots() {
        assert_eq!(split_path("a.b\\.c.d\\\\"), ["a", "b.c", "d\\"]);
        assert_eq!(split_path("plain"), ["plain"]);
    }
}
