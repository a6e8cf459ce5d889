//! Delivery status: which event of each room a user has received.

use ruma::{RoomId, UserId};
use sqlx::{Row, any::AnyRow};

use crate::{Result, Store};

/// A member's delivery in a room.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub room_id: String,
    pub user_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// What the delivery recorder needs of an event.
#[derive(Clone, Debug)]
pub struct EventOutline {
    pub stream_ordering: i64,
    pub event_id: String,
    pub sender: String,
    pub event_type: String,
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
    /// A room's events in `(after, upto]`, oldest first, rejected ones left
    /// out: their positions, IDs, senders and types only.
    pub async fn event_outlines(&self, room_id: &RoomId, after: i64, upto: i64) -> Result<Vec<EventOutline>> {
        let rows = sqlx::query(
            "SELECT stream_ordering, event_id, sender, event_type FROM events
             WHERE room_id = $1 AND status = 0 AND stream_ordering > $2 AND stream_ordering <= $3
             ORDER BY stream_ordering",
        )
        .bind(room_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EventOutline {
                    stream_ordering: row.try_get(0)?,
                    event_id: row.try_get(1)?,
                    sender: row.try_get(2)?,
                    event_type: row.try_get(3)?,
                })
            })
            .collect()
    }

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
    /// two statements whatever the batch's size, each with the batch as one
    /// JSON parameter, so their text never changes and they stay prepared.
    /// Each (room, user) and each user appears once in a batch.
    pub async fn record_deliveries(&self, batch: &[UserDeliveries], ts: i64, position: i64) -> Result<()> {
        #[derive(serde::Serialize)]
        struct Delivery<'a> {
            room_id: &'a str,
            user_id: &'a str,
            event_id: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Position<'a> {
            user_id: &'a str,
            delivered_upto: i64,
        }
        let deliveries: Vec<Delivery<'_>> = batch
            .iter()
            .flat_map(|user| {
                user.rooms.iter().map(|(room, event)| Delivery {
                    room_id: room,
                    user_id: &user.user_id,
                    event_id: event,
                })
            })
            .collect();
        let positions: Vec<Position<'_>> =
            batch.iter().map(|user| Position { user_id: &user.user_id, delivered_upto: user.upto }).collect();
        let deliveries = serde_json::to_string(&deliveries).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let positions = serde_json::to_string(&positions).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let mut tx = self.write.begin().await?;
        let sql = format!(
            "INSERT INTO deliveries (room_id, user_id, event_id, ts, stream_ordering)
             SELECT r.room_id, r.user_id, r.event_id, $2, $3 FROM {} WHERE true
             ON CONFLICT (room_id, user_id) DO UPDATE SET
                 event_id = excluded.event_id, ts = excluded.ts, stream_ordering = excluded.stream_ordering",
            self.json_rows("$1", &[("room_id", "TEXT"), ("user_id", "TEXT"), ("event_id", "TEXT")]),
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(deliveries)
            .bind(ts)
            .bind(position)
            .execute(&mut tx)
            .await?;
        let sql = format!(
            "INSERT INTO delivery_positions (user_id, delivered_upto)
             SELECT r.user_id, r.delivered_upto FROM {} WHERE true
             ON CONFLICT (user_id) DO UPDATE SET delivered_upto =
                 CASE WHEN excluded.delivered_upto > delivery_positions.delivered_upto
                      THEN excluded.delivered_upto ELSE delivery_positions.delivered_upto END",
            self.json_rows("$1", &[("user_id", "TEXT"), ("delivered_upto", "BIGINT")]),
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(positions).execute(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The deliveries recorded in `(after, upto]` in the rooms `viewer` is
    /// joined to, other than the viewer's own (`after` 0: all of them, as
    /// every recorded delivery has a position).
    pub async fn deliveries_between(
        &self,
        viewer: &UserId,
        after: i64,
        upto: i64,
    ) -> Result<Vec<DeliveryRow>> {
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
        rows.iter().map(delivery_row).collect()
    }
}

fn delivery_row(row: &AnyRow) -> Result<DeliveryRow> {
    Ok(DeliveryRow {
        room_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        event_id: row.try_get(2)?,
        ts: row.try_get(3)?,
    })
}
