//! Stream positions: where the server-wide counter resumes after a start,
//! and the high-water mark below which it may hand positions out
//! (`stream_positions`, one row). The counter itself lives in
//! `service::streams`; this module only stores its bound.
//!
//! A position can be handed out and never stored (a repeated transaction
//! ID, a failed append), yet a client's sync token already covers it; so a
//! start resumes above the bound, not only above the streams' maximum.

use sqlx::Row;

use crate::{Result, Store};

impl Store {
    /// The highest stream position handed out so far, as far as the
    /// database knows (0 for an empty one): the maximum of every persisted
    /// stream (they share one counter) and of the allocator's stored bound.
    pub async fn highest_stream_position(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT MAX(p) FROM (
                 SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM events
                 UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM account_data
                 UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM receipts
                 UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM to_device_messages
                 UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM presence
                 UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM deliveries
                 UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM device_list_changes
                 UNION ALL SELECT COALESCE(MAX(bound), 0) AS p FROM stream_positions
             ) AS streams",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Raises the stored bound to `to` (never lowers it); durable once
    /// this returns.
    pub async fn raise_stream_position_bound(&self, to: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO stream_positions (id, bound) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET bound = excluded.bound
             WHERE stream_positions.bound < excluded.bound",
        )
        .bind(to)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
