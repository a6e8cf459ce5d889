//! To-device messages: queued per device, deleted once acknowledged.

use ruma::{DeviceId, UserId};
use sqlx::Row;

use crate::{Result, Store, error::is_unique_violation};

/// A message waiting for a device.
#[derive(Clone, Debug)]
pub struct ToDeviceRow {
    pub stream_ordering: i64,
    pub sender: String,
    pub event_type: String,
    pub content: String,
}

/// One delivery of a send: the target device and the content.
pub struct ToDeviceTarget<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
    pub content: &'a str,
}

impl Store {
    /// Queues a send for every target, and the EDUs (destination, JSON)
    /// carrying it to other servers, once per sending device and
    /// transaction ID: `false` if this transaction was already sent.
    pub async fn queue_to_device(
        &self,
        sender: (&UserId, &DeviceId, &str),
        event_type: &str,
        targets: &[ToDeviceTarget<'_>],
        remote: &[(&str, &str)],
        stream_ordering: i64,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let recorded =
            sqlx::query("INSERT INTO to_device_txns (user_id, device_id, txn_id) VALUES ($1, $2, $3)")
                .bind(sender.0.as_str())
                .bind(sender.1.as_str())
                .bind(sender.2)
                .execute(&mut tx)
                .await;
        match recorded {
            Err(e) if is_unique_violation(&e) => return Ok(false),
            other => other?,
        };
        for target in targets {
            sqlx::query(
                "INSERT INTO to_device_messages (user_id, device_id, stream_ordering, sender, event_type, content)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(target.user_id.as_str())
            .bind(target.device_id.as_str())
            .bind(stream_ordering)
            .bind(sender.0.as_str())
            .bind(event_type)
            .bind(target.content)
            .execute(&mut tx)
            .await?;
        }
        crate::federation::insert_edus(&mut tx, remote).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes what the device acknowledged (positions up to `acked`) and
    /// returns up to `limit` of what is still waiting, up to `upto`.
    pub async fn take_to_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        acked: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<ToDeviceRow>> {
        sqlx::query(
            "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_ordering <= $3",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(acked)
        .execute(&self.write)
        .await?;
        let rows = sqlx::query(
            "SELECT stream_ordering, sender, event_type, content FROM to_device_messages
             WHERE user_id = $1 AND device_id = $2 AND stream_ordering <= $3
             ORDER BY stream_ordering LIMIT $4",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ToDeviceRow {
                    stream_ordering: row.try_get(0)?,
                    sender: row.try_get(1)?,
                    event_type: row.try_get(2)?,
                    content: row.try_get(3)?,
                })
            })
            .collect()
    }
}
