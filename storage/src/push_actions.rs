//! Push-rule verdicts per recipient (`event_push_actions`): written with
//! the event, read as unread counts (rows after the user's read receipt)
//! and as the `GET /notifications` list.

use ruma::{RoomId, UserId};
use sqlx::Row;

use crate::{Result, Store};

/// One recipient's verdict on an event being appended.
pub struct NewPushAction {
    pub user_id: String,
    /// The thread root's event ID, or `main`.
    pub thread_id: String,
    /// The matching rule's actions as JSON.
    pub actions: String,
    pub notify: bool,
    pub highlight: bool,
}

/// Unread notifications of one thread (`main` for the main timeline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadCounts {
    pub thread_id: String,
    pub notifications: i64,
    pub highlights: i64,
}

/// One entry of a user's notification list.
#[derive(Clone, Debug)]
pub struct NotificationRow {
    pub room_id: String,
    pub stream_ordering: i64,
    pub event_id: String,
    pub actions: String,
    pub ts: i64,
    /// At or before the user's read receipt for its room and thread.
    pub read: bool,
}

/// The position of the newest event `a`'s user has read in `a`'s room and
/// thread: their latest public or private receipt, unthreaded or for the
/// thread, by the stream position of the event it points at.
const READ_UPTO: &str = "COALESCE((SELECT MAX(e.stream_ordering) FROM receipts r
         JOIN events e ON e.event_id = r.event_id
         WHERE r.room_id = a.room_id AND r.user_id = a.user_id
           AND r.receipt_type IN ('m.read', 'm.read.private')
           AND r.thread_id IN ('', a.thread_id)), 0)";

/// Rows per INSERT statement (5 binds each, far under both backends' limits).
const ROWS_PER_INSERT: usize = 100;

/// Writes the verdicts on one event inside its append transaction.
pub(crate) async fn insert(
    tx: &mut crate::pool::Tx,
    room_id: &str,
    stream_ordering: i64,
    event_id: &str,
    ts: i64,
    actions: &[NewPushAction],
) -> Result<()> {
    for chunk in actions.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let n = i * 5;
                format!("(${}, $1, $2, $3, ${}, ${}, ${}, ${}, $4)", n + 5, n + 6, n + 7, n + 8, n + 9)
            })
            .collect();
        let sql = format!(
            "INSERT INTO event_push_actions
                 (user_id, room_id, stream_ordering, event_id, thread_id, actions, notify, highlight, ts)
             VALUES {}",
            values.join(", ")
        );
        let mut query =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id).bind(stream_ordering).bind(event_id).bind(ts);
        for action in chunk {
            query = query
                .bind(action.user_id.as_str())
                .bind(action.thread_id.as_str())
                .bind(action.actions.as_str())
                .bind(i64::from(action.notify))
                .bind(i64::from(action.highlight));
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

impl Store {
    /// The user's unread notification and highlight counts in a room per
    /// thread, counting events up to stream position `upto`.
    pub async fn unread_counts(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        upto: i64,
    ) -> Result<Vec<UnreadCounts>> {
        let sql = format!(
            "SELECT a.thread_id,
                    COUNT(CASE WHEN a.notify = 1 THEN 1 END),
                    COUNT(CASE WHEN a.highlight = 1 THEN 1 END)
             FROM event_push_actions a
             WHERE a.user_id = $1 AND a.room_id = $2 AND a.stream_ordering <= $3
               AND a.stream_ordering > {READ_UPTO}
             GROUP BY a.thread_id ORDER BY a.thread_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id.as_str())
            .bind(room_id.as_str())
            .bind(upto)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(UnreadCounts {
                    thread_id: row.try_get(0)?,
                    notifications: row.try_get(1)?,
                    highlights: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// The user's notifications older than stream position `before`, newest
    /// first; only highlights if `only_highlight`.
    pub async fn notifications(
        &self,
        user_id: &UserId,
        before: i64,
        limit: i64,
        only_highlight: bool,
    ) -> Result<Vec<NotificationRow>> {
        let sql = format!(
            "SELECT a.room_id, a.stream_ordering, a.event_id, a.actions, a.ts,
                    CASE WHEN a.stream_ordering <= {READ_UPTO} THEN 1 ELSE 0 END
             FROM event_push_actions a
             WHERE a.user_id = $1 AND a.stream_ordering < $2 AND (a.highlight = 1 OR $3 = 0)
             ORDER BY a.stream_ordering DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id.as_str())
            .bind(before)
            .bind(i64::from(only_highlight))
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(NotificationRow {
                    room_id: row.try_get(0)?,
                    stream_ordering: row.try_get(1)?,
                    event_id: row.try_get(2)?,
                    actions: row.try_get(3)?,
                    ts: row.try_get(4)?,
                    read: row.try_get::<i64, _>(5)? != 0,
                })
            })
            .collect()
    }
}
