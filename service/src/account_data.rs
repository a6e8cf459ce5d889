//! Account data: `PUT/GET /user/{userId}/account_data/{type}`, the room
//! variant, and room tags (`m.tag`), delivered to the user's other devices
//! through sync. Spec: <https://spec.matrix.org/v1.16/client-server-api/#client-config>
//! and <https://spec.matrix.org/v1.16/client-server-api/#room-tagging>.

use ruma::{RoomId, UserId, api::error::ErrorKind};
use serde_json::{Value, json};
use tessera_storage::Store;

use crate::{
    Error, Result, auth::Identity, changes::ChangeLog, notifier::Notifier, streams::StreamAllocator,
};

/// Types the server maintains itself; clients may not set them here.
const SERVER_MANAGED: [&str; 2] = ["m.fully_read", "m.push_rules"];

/// The account data service.
#[derive(Clone)]
pub struct AccountData {
    store: Store,
    streams: StreamAllocator,
    notifier: Notifier,
    /// Per user, the position of their last account data change.
    changes: ChangeLog,
}

impl AccountData {
    pub fn new(store: Store, streams: StreamAllocator, notifier: Notifier) -> Self {
        let changes = ChangeLog::new(&streams);
        Self { store, streams, notifier, changes }
    }

    /// Whether `user`'s account data (global or per room) may have changed
    /// after stream position `after`.
    pub fn changed_after(&self, user: &UserId, after: i64) -> bool {
        self.changes.changed_after(user.as_str(), after)
    }

    /// Sets account data (`room` `None` for global) for the caller.
    pub async fn set(
        &self,
        who: &Identity,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<()> {
        check_own(who, user)?;
        if SERVER_MANAGED.contains(&kind) {
            return Err(Error::new(405, ErrorKind::BadJson, format!("{kind} is managed by the server")));
        }
        if !content.is_object() {
            return Err(Error::bad_json("Account data must be a JSON object"));
        }
        self.write(user, room, kind, content).await
    }

    /// Reads account data; 404 when there is none of this type.
    pub async fn get(
        &self,
        who: &Identity,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
    ) -> Result<Value> {
        check_own(who, user)?;
        let room = room.map_or("", RoomId::as_str);
        let content = self
            .store
            .get_account_data(user, room, kind)
            .await?
            .ok_or_else(|| Error::not_found("No account data of this type"))?;
        serde_json::from_str(&content).map_err(Error::internal)
    }

    /// The room's tags (`m.tag` content, `{"tags": {}}` when none).
    pub async fn tags(&self, who: &Identity, user: &UserId, room: &RoomId) -> Result<Value> {
        match self.get(who, user, Some(room), "m.tag").await {
            Err(Error::Matrix { status: 404, .. }) => Ok(json!({ "tags": {} })),
            other => other,
        }
    }

    /// Adds or replaces one tag.
    pub async fn set_tag(
        &self,
        who: &Identity,
        user: &UserId,
        room: &RoomId,
        tag: &str,
        info: Value,
    ) -> Result<()> {
        let mut tags = self.tags(who, user, room).await?;
        tags["tags"][tag] = info;
        self.write(user, Some(room), "m.tag", &tags).await
    }

    /// Removes one tag (absent tags are not an error).
    pub async fn delete_tag(&self, who: &Identity, user: &UserId, room: &RoomId, tag: &str) -> Result<()> {
        let mut tags = self.tags(who, user, room).await?;
        if let Some(map) = tags["tags"].as_object_mut() {
            map.remove(tag);
        }
        self.write(user, Some(room), "m.tag", &tags).await
    }

    /// Writes account data without the client checks (for types the server
    /// manages, like `m.fully_read`).
    pub(crate) async fn write(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<()> {
        let json = serde_json::to_string(content).map_err(Error::internal)?;
        let position = self.streams.reserve().await?;
        // Recorded before writing: a request cancelled mid-write must not
        // commit a change the log never saw (see `ChangeLog`).
        self.changes.record(user.as_str(), position.position);
        self.store
            .put_account_data(user, room.map_or("", RoomId::as_str), kind, &json, position.position)
            .await?;
        drop(position);
        self.notifier.user_changed(user);
        Ok(())
    }
}

fn check_own(who: &Identity, user: &UserId) -> Result<()> {
    if who.user_id != user {
        return Err(Error::forbidden("You cannot access another user's account data"));
    }
    Ok(())
}
