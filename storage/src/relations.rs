//! Relations: which events relate to which (edits, reactions, threads,
//! references), for `/relations`, `/threads` and bundled aggregations.
//!
//! A relation counts only between events of the same room (the spec
//! relates nothing across rooms): every reader joins the target and
//! requires its room to be the relating event's. Checked when read, not
//! when written, because a relation may be stored before its target
//! arrives over federation.

use ruma::{EventId, RoomId};
use sqlx::Row;

use crate::{
    Result, Store,
    events::{StoredEvent, columns, event_from_row},
};

/// One relation, for aggregating.
#[derive(Clone, Debug)]
pub struct Relation {
    pub relates_to: String,
    pub rel_type: String,
    pub event_id: String,
    pub event_type: String,
    pub sender: String,
    pub stream_ordering: i64,
}

/// Which relations of an event to list.
pub struct RelationQuery<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Exclusive stream position to continue from.
    pub from: Option<i64>,
    pub backwards: bool,
    pub limit: i64,
}

impl Store {
    /// Events relating to `target`, in stream order.
    pub async fn relating_events(
        &self,
        target: &EventId,
        query: &RelationQuery<'_>,
    ) -> Result<Vec<StoredEvent>> {
        let (compare, order) = if query.backwards { ("<", "DESC") } else { (">", "ASC") };
        let sql = format!(
            "SELECT {} FROM event_relations r JOIN events e ON e.event_id = r.event_id
             JOIN events t ON t.event_id = r.relates_to AND t.room_id = r.room_id
             WHERE r.relates_to = $1 AND ($2 = '' OR r.rel_type = $2) AND ($3 = '' OR r.event_type = $3)
               AND r.stream_ordering {compare} $4
             ORDER BY r.stream_ordering {order} LIMIT $5",
            columns("e.")
        );
        let from = query.from.unwrap_or(if query.backwards { i64::MAX } else { 0 });
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(target.as_str())
            .bind(query.rel_type.unwrap_or_default())
            .bind(query.event_type.unwrap_or_default())
            .bind(from)
            .bind(query.limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The edits, thread replies and references of the given events.
    pub async fn aggregation_relations(&self, targets: &[String]) -> Result<Vec<Relation>> {
        let mut relations = Vec::new();
        for chunk in targets.chunks(100) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT r.relates_to, r.rel_type, r.event_id, r.event_type, r.sender, r.stream_ordering
                 FROM event_relations r JOIN events t ON t.event_id = r.relates_to AND t.room_id = r.room_id
                 WHERE r.relates_to IN ({}) AND r.rel_type IN ('m.replace', 'm.thread', 'm.reference')
                 ORDER BY r.stream_ordering",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for target in chunk {
                query = query.bind(target.as_str());
            }
            for row in query.fetch_all(&self.read).await? {
                relations.push(Relation {
                    relates_to: row.try_get(0)?,
                    rel_type: row.try_get(1)?,
                    event_id: row.try_get(2)?,
                    event_type: row.try_get(3)?,
                    sender: row.try_get(4)?,
                    stream_ordering: row.try_get(5)?,
                });
            }
        }
        Ok(relations)
    }

    /// Thread roots of a room by latest activity, newest first, active
    /// before `before`; with `participant`, only threads they started or
    /// replied in.
    pub async fn thread_roots(
        &self,
        room_id: &RoomId,
        before: i64,
        participant: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(StoredEvent, i64)>> {
        let sql = format!(
            "SELECT {}, t.latest FROM (
                 SELECT r.relates_to AS root, MAX(r.stream_ordering) AS latest,
                        SUM(CASE WHEN r.sender = $3 THEN 1 ELSE 0 END) AS mine
                 FROM event_relations r
                 WHERE r.room_id = $1 AND r.rel_type = 'm.thread'
                 GROUP BY r.relates_to
             ) t JOIN events e ON e.event_id = t.root AND e.room_id = $1
             WHERE t.latest < $2 AND ($3 = '' OR e.sender = $3 OR t.mine > 0)
             ORDER BY t.latest DESC LIMIT $4",
            columns("e.")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(before)
            .bind(participant.unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|row| Ok((event_from_row(row)?, row.try_get(15)?))).collect()
    }
}
