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
    /// (room, event ID) and that everything up to their `upto` is recorded:
    /// a few multi-row statements, not one per row. Each (room, user) and
    /// each user appears once in a batch.
    pub async fn record_deliveries(&self, batch: &[UserDeliveries], ts: i64, position: i64) -> Result<()> {
        /// Rows per statement (five parameters each, well under SQLite's
        /// and PostgreSQL's limits).
        const ROWS: usize = 200;
        let rows: Vec<(&str, &str, &str)> = batch
            .iter()
            .flat_map(|user| {
                user.rooms.iter().map(|(room, event)| (room.as_str(), user.user_id.as_str(), event.as_str()))
            })
            .collect();
        let mut tx = self.write.begin().await?;
        for chunk in rows.chunks(ROWS) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${}, $1, $2)", 3 * i + 3, 3 * i + 4, 3 * i + 5))
                .collect();
            let sql = format!(
                "INSERT INTO deliveries (room_id, user_id, event_id, ts, stream_ordering) VALUES {}
                 ON CONFLICT (room_id, user_id)
                 DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_ordering = excluded.stream_ordering",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ts).bind(position);
            for (room, user, event) in chunk {
                query = query.bind(*room).bind(*user).bind(*event);
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in batch.chunks(ROWS) {
            let values: Vec<String> =
                (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
            let sql = format!(
                "INSERT INTO delivery_positions (user_id, delivered_upto) VALUES {}
                 ON CONFLICT (user_id) DO UPDATE SET delivered_upto =
                     CASE WHEN excluded.delivered_upto > delivery_positions.delivered_upto
                          THEN excluded.delivered_upto ELSE delivery_positions.delivered_upto END",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for user in chunk {
                query = query.bind(user.user_id.as_str()).bind(user.upto);
            }
            query.execute(&mut *tx).await?;
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
