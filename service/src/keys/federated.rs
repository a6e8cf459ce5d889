//! Device-list and cross-signing news for other servers: what their
//! users need to encrypt for ours.
//!
//! A change to a local user's devices (a login, a logout, a rename, new
//! identity keys, a signature on one of them) goes as one
//! `m.device_list_update` EDU per changed device to every server with a
//! user sharing a room with them; new cross-signing keys go as
//! `m.signing_key_update`. Each device update's `stream_id` is the
//! position of its device-list change, and its `prev_id` the user's
//! previous change: a receiver that missed one (or was never told of a
//! change, such as a cross-signing upload) sees the gap and fetches the
//! whole list with `/user/devices`, which answers with the last position.
//!
//! From other servers, either EDU about one of their own users is
//! recorded as a device-list change of that user, so local clients
//! sharing a room re-query the keys (which goes to that server live).
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#device-management>.

use std::collections::BTreeMap;

use ruma::{OwnedServerName, ServerName, UserId};
use serde_json::{Map, Value, json};

use super::{cross_signing, device_lists::DeviceLists};
use crate::Result;

/// What other servers are told of a local device: its display name and
/// its identity keys with the signatures on them.
#[derive(Clone, PartialEq, Debug)]
pub(crate) struct DeviceNews {
    pub display_name: Option<String>,
    pub keys: Option<Map<String, Value>>,
}

/// A local user's devices as other servers see them, by device ID.
pub(crate) type DeviceSnapshot = BTreeMap<String, DeviceNews>;

/// The devices whose news differs between two snapshots, each with what
/// it is now (`None`: deleted).
pub(crate) fn changed_devices(
    before: &DeviceSnapshot,
    after: &DeviceSnapshot,
) -> Vec<(String, Option<DeviceNews>)> {
    let mut changed = Vec::new();
    for (device, news) in after {
        if before.get(device) != Some(news) {
            changed.push((device.clone(), Some(news.clone())));
        }
    }
    for device in before.keys() {
        if !after.contains_key(device) {
            changed.push((device.clone(), None));
        }
    }
    changed
}

/// An `m.device_list_update` EDU.
pub(crate) fn device_list_update(
    user: &UserId,
    device_id: &str,
    news: Option<&DeviceNews>,
    stream_id: i64,
    prev_id: Option<i64>,
) -> Value {
    let mut content = json!({
        "user_id": user,
        "device_id": device_id,
        "stream_id": stream_id,
        "prev_id": prev_id.into_iter().collect::<Vec<_>>(),
    });
    match news {
        Some(news) => {
            if let Some(name) = &news.display_name {
                content["device_display_name"] = name.as_str().into();
            }
            if let Some(keys) = &news.keys {
                content["keys"] = Value::Object(keys.clone());
            }
        }
        None => content["deleted"] = true.into(),
    }
    json!({ "edu_type": "m.device_list_update", "content": content })
}

impl DeviceLists {
    /// The other servers to tell of `user`'s devices: none for another
    /// server's user.
    pub(crate) async fn news_destinations(&self, user: &UserId) -> Result<Vec<OwnedServerName>> {
        if user.server_name() != self.rooms().server_name() {
            return Ok(Vec::new());
        }
        self.rooms().servers_sharing_with(user).await
    }

    /// A local user's devices as other servers are told of them.
    pub(crate) async fn device_snapshot(&self, user: &UserId) -> Result<DeviceSnapshot> {
        let store = self.store();
        let signatures = store.key_signatures_of_users(&[user], None).await?;
        let mut snapshot: DeviceSnapshot = store
            .list_devices(user)
            .await?
            .into_iter()
            .map(|device| {
                (device.device_id.to_string(), DeviceNews { display_name: device.display_name, keys: None })
            })
            .collect();
        for (_, stored) in store.device_keys_of_users(&[user]).await? {
            let Ok(mut keys) = serde_json::from_str::<Map<String, Value>>(&stored.keys_json) else {
                continue;
            };
            cross_signing::merge_signatures(
                &mut keys,
                signatures.iter().filter(|s| s.target_key == stored.device_id),
            );
            let news = snapshot
                .entry(stored.device_id)
                .or_insert(DeviceNews { display_name: stored.display_name, keys: None });
            news.keys = Some(keys);
        }
        Ok(snapshot)
    }

    /// Tells `servers` of each changed device of a local user, the first
    /// at `position` (a device-list change already recorded), the others
    /// at positions recorded now. Failures are logged: the next change's
    /// `prev_id` shows the receivers the gap.
    pub(crate) async fn send_device_news(
        &self,
        user: &UserId,
        servers: &[OwnedServerName],
        changed: Vec<(String, Option<DeviceNews>)>,
        position: i64,
    ) {
        if servers.is_empty() {
            return;
        }
        let mut first = Some(position);
        for (device_id, news) in changed {
            let sent = async {
                let stream_id = match first.take() {
                    Some(position) => position,
                    None => {
                        let pending = self.record_change(user).await?;
                        let position = pending.position();
                        pending.release().await;
                        position
                    }
                };
                let prev_id = self.store().device_list_change_before(user, stream_id).await?;
                let edu = device_list_update(user, &device_id, news.as_ref(), stream_id, prev_id);
                self.rooms().send_edu(servers, &edu).await
            };
            if let Err(e) = sent.await {
                tracing::warn!(%user, device = device_id, error = %e, "device update not sent to other servers");
            }
        }
    }

    /// Tells other servers of local devices' keys (an upload, or
    /// signatures on them), the first at the change's `position`.
    pub(crate) async fn send_device_keys(&self, user: &UserId, device_ids: &[&str], position: i64) {
        let news = async {
            let servers = self.news_destinations(user).await?;
            if servers.is_empty() || device_ids.is_empty() {
                return Ok(None);
            }
            let mut snapshot = self.device_snapshot(user).await?;
            let changed = device_ids.iter().map(|id| ((*id).to_owned(), snapshot.remove(*id))).collect();
            Ok::<_, crate::Error>(Some((servers, changed)))
        };
        match news.await {
            Ok(Some((servers, changed))) => self.send_device_news(user, &servers, changed, position).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(%user, error = %e, "device keys not sent to other servers"),
        }
    }

    /// Tells other servers of a local user's cross-signing keys (master
    /// and self-signing; the user-signing key is private).
    pub(crate) async fn send_signing_keys(&self, user: &UserId) {
        let sent = async {
            let servers = self.news_destinations(user).await?;
            if servers.is_empty() {
                return Ok(());
            }
            let signatures = self.store().key_signatures_of_users(&[user], None).await?;
            let stored = self.store().cross_signing_keys(user).await?;
            let mut content = json!({ "user_id": user });
            for (usage, key) in cross_signing::visible_signing_keys(None, user, stored, &signatures)? {
                let field = match usage.as_str() {
                    "master" => "master_key",
                    "self_signing" => "self_signing_key",
                    _ => continue,
                };
                content[field] = serde_json::to_value(&key).map_err(crate::Error::internal)?;
            }
            let edu = json!({ "edu_type": "m.signing_key_update", "content": content });
            self.rooms().send_edu(&servers, &edu).await
        };
        if let Err(e) = sent.await {
            tracing::warn!(%user, error = %e, "cross-signing keys not sent to other servers");
        }
    }

    /// An `m.device_list_update` or `m.signing_key_update` EDU from
    /// `origin` about `user`: recorded as a change of the user's device
    /// list if it is the origin's own user.
    pub async fn receive_remote_change(&self, origin: &ServerName, user: &UserId) -> Result<()> {
        if user.server_name() != origin {
            tracing::info!(%origin, %user, "device news about another server's user dropped");
            return Ok(());
        }
        self.record_change(user).await?.release().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn news(name: &str, key: Option<&str>) -> DeviceNews {
        DeviceNews {
            display_name: Some(name.to_owned()),
            keys: key.map(|k| json!({ "keys": { "ed25519:D": k } }).as_object().cloned().unwrap()),
        }
    }

    #[test]
    fn changed_devices_names_added_changed_and_deleted_devices() {
        let before = DeviceSnapshot::from([
            ("KEPT".to_owned(), news("phone", Some("a"))),
            ("RENAMED".to_owned(), news("old", None)),
            ("GONE".to_owned(), news("laptop", Some("b"))),
        ]);
        let after = DeviceSnapshot::from([
            ("KEPT".to_owned(), news("phone", Some("a"))),
            ("RENAMED".to_owned(), news("new", None)),
            ("NEW".to_owned(), news("tablet", Some("c"))),
        ]);
        let changed = changed_devices(&before, &after);
        assert_eq!(
            changed,
            vec![
                ("NEW".to_owned(), Some(news("tablet", Some("c")))),
                ("RENAMED".to_owned(), Some(news("new", None))),
                ("GONE".to_owned(), None),
            ]
        );
    }

    #[test]
    fn device_list_update_marks_deletions_and_chains_to_the_previous_change() {
        let user = UserId::parse("@alice:a.test").unwrap();
        let deleted = device_list_update(&user, "D", None, 7, Some(3));
        assert_eq!(deleted["edu_type"], "m.device_list_update");
        assert_eq!(deleted["content"]["deleted"], true);
        assert_eq!(deleted["content"]["prev_id"], json!([3]));
        let first = device_list_update(&user, "D", Some(&news("phone", Some("k"))), 1, None);
        assert_eq!(first["content"]["prev_id"], json!([]));
        assert_eq!(first["content"]["device_display_name"], "phone");
        assert_eq!(first["content"]["keys"]["keys"]["ed25519:D"], "k");
        assert!(first["content"].get("deleted").is_none());
    }
}
