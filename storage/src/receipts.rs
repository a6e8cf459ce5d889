//! Read receipts: the latest per room, user, type and thread.

use ruma::{RoomId, UserId};
use sqlx::Row;

use crate::{Result, Store};

/// One receipt.
#[derive(Clone, Debug)]
pub struct ReceiptRow {
    pub user_id: String,
    pub receipt_type: String,
    /// Empty for an unthreaded receipt.
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// A receipt to record.
pub struct NewReceipt<'a> {
    pub room_id: &'a RoomId,
    pub user_id: &'a UserId,
    pub receipt_type: &'a str,
    pub thread_id: &'a str,
    pub event_id: &'a str,
    pub ts: i64,
    pub stream_ordering: i64,
}

impl Store {
    /// Records a receipt, replacing the user's previous one of that type
    /// and thread.
    pub async fn put_receipt(&self, new: NewReceipt<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, stream_ordering)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (room_id, user_id, receipt_type, thread_id)
             DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_ordering = excluded.stream_ordering",
        )
        .bind(new.room_id.as_str())
        .bind(new.user_id.as_str())
        .bind(new.receipt_type)
        .bind(new.thread_id)
        .bind(new.event_id)
        .bind(new.ts)
        .bind(new.stream_ordering)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// A room's receipts set in `(after, upto]` (all for `after` 0).
    pub async fn receipts_changed(&self, room_id: &RoomId, after: i64, upto: i64) -> Result<Vec<ReceiptRow>> {
        let rows = sqlx::query(
            "SELECT user_id, receipt_type, thread_id, event_id, ts FROM receipts
             WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3 ORDER BY stream_ordering",
        )
        .bind(room_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReceiptRow {
                    user_id: row.try_get(0)?,
                    receipt_type: row.try_get(1)?,
                    thread_id: row.try_get(2)?,
                    event_id: row.try_get(3)?,
                    ts: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// The joined rooms of `user` with receipts set in `(after, upto]`.
    pub async fn rooms_with_receipts(&self, user: &UserId, after: i64, upto: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT r.room_id FROM receipts r
             JOIN room_memberships m ON m.room_id = r.room_id AND m.user_id = $1 AND m.membership = 'join'
             WHERE r.stream_ordering > $2 AND r.stream_ordering <= $3",
        )
        .bind(user.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }
}
