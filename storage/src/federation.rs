//! Federation transactions (`0020_federation_transactions`): the EDUs
//! queued for other servers, and the transactions received from them.

use sqlx::Row;

use crate::{Result, Store};

/// An EDU waiting to be sent.
#[derive(Debug, Clone)]
pub struct OutboundEdu {
    pub seq: i64,
    pub edu_json: String,
}

/// A room event waiting to be sent, with its JSON as stored.
#[derive(Debug, Clone)]
pub struct OutboundPdu {
    pub seq: i64,
    pub event_id: String,
    pub json: String,
}

impl Store {
    /// The destinations with room events waiting.
    pub async fn pdu_destinations(&self) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT DISTINCT destination FROM outbound_pdus").fetch_all(&self.read).await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// The oldest `limit` room events waiting for `destination`.
    pub async fn outbound_pdus(&self, destination: &str, limit: i64) -> Result<Vec<OutboundPdu>> {
        let rows = sqlx::query(
            "SELECT o.seq, o.event_id, e.json FROM outbound_pdus o JOIN events e ON e.event_id = o.event_id
             WHERE o.destination = $1 ORDER BY o.seq LIMIT $2",
        )
        .bind(destination)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboundPdu { seq: row.try_get(0)?, event_id: row.try_get(1)?, json: row.try_get(2)? })
            })
            .collect()
    }

    /// Forgets the room events `seqs` for `destination` (see
    /// [`Store::delete_edus`]).
    pub async fn delete_pdus(&self, destination: &str, seqs: &[i64]) -> Result<()> {
        self.delete_queued("outbound_pdus", destination, seqs).await
    }

    /// Queues EDUs (destination, JSON) in one transaction.
    pub async fn queue_edus(&self, edus: &[(&str, &str)]) -> Result<()> {
        let mut tx = self.write.begin().await?;
        insert_edus(&mut tx, edus).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The destinations with EDUs waiting.
    pub async fn edu_destinations(&self) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT DISTINCT destination FROM outbound_edus").fetch_all(&self.read).await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// The oldest `limit` EDUs waiting for `destination`.
    pub async fn outbound_edus(&self, destination: &str, limit: i64) -> Result<Vec<OutboundEdu>> {
        let rows = sqlx::query(
            "SELECT seq, edu_json FROM outbound_edus WHERE destination = $1 ORDER BY seq LIMIT $2",
        )
        .bind(destination)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        rows.iter().map(|row| Ok(OutboundEdu { seq: row.try_get(0)?, edu_json: row.try_get(1)? })).collect()
    }

    /// Forgets the EDUs `seqs` for `destination`, which it accepted. Only
    /// those: on PostgreSQL a lower `seq` may commit after a higher one was
    /// read, and must still be sent.
    pub async fn delete_edus(&self, destination: &str, seqs: &[i64]) -> Result<()> {
        self.delete_queued("outbound_edus", destination, seqs).await
    }

    /// Deletes the rows `seqs` of `destination` from a queue (`table`), in
    /// one statement: the sequence numbers are integers, written into it.
    async fn delete_queued(&self, table: &'static str, destination: &str, seqs: &[i64]) -> Result<()> {
        for chunk in seqs.chunks(500) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let sql = format!("DELETE FROM {table} WHERE destination = $1 AND seq IN ({list})");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(destination).execute(&self.write).await?;
        }
        Ok(())
    }

    /// The answer given to a transaction already received.
    pub async fn inbound_transaction(&self, origin: &str, txn_id: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT response_json FROM inbound_transactions WHERE origin = $1 AND txn_id = $2")
                .bind(origin)
                .bind(txn_id)
                .fetch_optional(&self.write)
                .await?;
        row.map(|row| Ok(row.try_get(0)?)).transpose()
    }

    /// Records a transaction's answer (the first one stays).
    pub async fn record_inbound_transaction(
        &self,
        origin: &str,
        txn_id: &str,
        response_json: &str,
        received_ts: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO inbound_transactions (origin, txn_id, response_json, received_ts)
             VALUES ($1, $2, $3, $4) ON CONFLICT (origin, txn_id) DO NOTHING",
        )
        .bind(origin)
        .bind(txn_id)
        .bind(response_json)
        .bind(received_ts)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

pub(crate) async fn insert_edus(tx: &mut crate::pool::Tx, edus: &[(&str, &str)]) -> Result<()> {
    for (destination, json) in edus {
        sqlx::query("INSERT INTO outbound_edus (destination, edu_json) VALUES ($1, $2)")
            .bind(destination)
            .bind(json)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
