//! Delivery status: which event of each room a user has received.

use ruma::UserId;
use sqlx::Row;

use crate::{Result, Store};

/// A member's delivery in a room.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub room_id: String,
    pub user_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// One user's deliveries to record: (room, event ID) pairs, and the
/// position up to which everything is then recorded.
#[derive(Clone, Debug)]
pub struct UserDeliveries {
    pub user_id: String,
    pub rooms: Vec<(String, String)>,
    pub upto: i64,
}

impl Store {
    /// The position up to which a user's deliveries are recorded.
    pub async fn delivered_upto(&self, user: &UserId) -> Result<i64> {
        let row = sqlx::query("SELECT delivered_upto FROM delivery_positions WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_optional(&self.read)
            .await?;
        row.map_or(Ok(0), |row| Ok(row.try_get(0)?))
    }

    /// Records, in one transaction at `position`, each user's deliveries
    /// (room, event ID) and that everything up to their `upto` is recorded.
    pub async fn record_deliveries(&self, batch: &[UserDeliveries], ts: i64, position: i64) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for user in batch {
            for (room_id, event_id) in &user.rooms {
                sqlx::query(
                    "INSERT INTO deliveries (room_id, user_id, event_id, ts, stream_ordering) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (room_id, user_id)
                     DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_ordering = excluded.stream_ordering",
                )
                .bind(room_id)
                .bind(&user.user_id)
                .bind(event_id)
                .bind(ts)
                .bind(position)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO delivery_positions (user_id, delivered_upto) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET delivered_upto =
                     CASE WHEN excluded.delivered_upto > delivery_positions.delivered_upto
                          THEN excluded.delivered_upto ELSE delivery_positions.delivered_upto END",
            )
            .bind(&user.user_id)
            .bind(user.upto)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deliveries recorded in `(after, upto]` in the rooms `viewer` is
    /// joined to, other than the viewer's own.
    pub async fn deliveries_for(&self, viewer: &UserId, after: i64, upto: i64) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT d.room_id, d.user_id, d.event_id, d.ts FROM deliveries d
             JOIN room_memberships m ON m.room_id = d.room_id AND m.user_id = $1 AND m.membership = 'join'
             WHERE d.stream_ordering > $2 AND d.stream_ordering <= $3 AND d.user_id <> $1
             ORDER BY d.stream_ordering",
        )
        .bind(viewer.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeliveryRow {
                    room_id: row.try_get(0)?,
                    user_id: row.try_get(1)?,
                    event_id: row.try_get(2)?,
                    ts: row.try_get(3)?,
                })
            })
            .collect()
    }
}
