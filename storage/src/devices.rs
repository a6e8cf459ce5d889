//! Devices: one per login session, each with its own access token.

use ruma::{DeviceId, OwnedDeviceId, UserId};
use sqlx::Row;

use crate::{Result, Store};

/// A device as `GET /devices` lists it.
#[derive(Clone, Debug)]
pub struct Device {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

fn device_from_row(row: &sqlx::any::AnyRow) -> Result<Device> {
    Ok(Device {
        device_id: row.try_get::<String, _>(0)?.into(),
        display_name: row.try_get(1)?,
        last_seen_ts: row.try_get(2)?,
        last_seen_ip: row.try_get(3)?,
    })
}

impl Store {
    pub async fn list_devices(&self, user_id: &UserId) -> Result<Vec<Device>> {
        let rows = sqlx::query(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
             WHERE user_id = $1 ORDER BY created_ts, device_id",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    pub async fn get_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<Device>> {
        let row = sqlx::query(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
             WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// Renames a device; `false` if the user has no such device.
    pub async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3")
            .bind(name)
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records when and from where a device was last seen.
    pub async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        ts: i64,
        ip: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2
             WHERE user_id = $3 AND device_id = $4",
        )
        .bind(ts)
        .bind(ip)
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Deletes the given devices and revokes their tokens. Unknown IDs are
    /// ignored, as `POST /delete_devices` requires.
    pub async fn delete_devices(&self, user_id: &UserId, device_ids: &[OwnedDeviceId]) -> Result<()> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let mut tx = self.write.begin().await?;
        for device_id in device_ids {
            for statement in [
                "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2",
                "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2",
                "DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2",
                "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2",
                "DELETE FROM fallback_keys WHERE user_id = $1 AND device_id = $2",
                // A device ID spelled like a cross-signing key's must not
                // take that key's signatures with it.
                "DELETE FROM key_signatures WHERE target_user_id = $1 AND target_key = $2
                     AND target_key NOT LIKE 'ed25519:%'",
                "DELETE FROM devices WHERE user_id = $1 AND device_id = $2",
            ] {
                sqlx::query(statement)
                    .bind(user_id.as_str())
                    .bind(device_id.as_str())
                    .execute(&mut tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes every device of the user except `keep` (all when `None`),
    /// revoking their tokens.
    pub async fn delete_other_devices(&self, user_id: &UserId, keep: Option<&DeviceId>) -> Result<()> {
        let _tokens_changed = self.token_cache.clear_on_drop();
        let mut tx = self.write.begin().await?;
        delete_devices_except(&mut tx, user_id, keep).await?;
        tx.commit().await?;
        Ok(())
    }
}

pub(crate) async fn delete_devices_except(
    tx: &mut crate::pool::Tx,
    user_id: &UserId,
    keep: Option<&DeviceId>,
) -> Result<()> {
    let keep = keep.map_or("", DeviceId::as_str);
    for statement in [
        "DELETE FROM access_tokens WHERE user_id = $1 AND device_id <> $2",
        "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id <> $2",
        "DELETE FROM device_keys WHERE user_id = $1 AND device_id <> $2",
        "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id <> $2",
        "DELETE FROM fallback_keys WHERE user_id = $1 AND device_id <> $2",
        // Signatures of the devices; a cross-signing key's ID starts `ed25519:`.
        "DELETE FROM key_signatures WHERE target_user_id = $1 AND target_key <> $2
             AND target_key NOT LIKE 'ed25519:%'",
        "DELETE FROM devices WHERE user_id = $1 AND device_id <> $2",
    ] {
        sqlx::query(statement).bind(user_id.as_str()).bind(keep).execute(&mut *tx).await?;
    }
    Ok(())
}
