//! Schema migrations, embedded in the binary and applied at start.
//!
//! Each backend has the same numbered files under `migrations/`. The applied
//! versions are recorded in `tessera_schema`; a database that has a version
//! this binary does not know was written by a newer Tessera, and starting on
//! it could corrupt data, so we refuse with a message saying so.

use sqlx::Row;

use crate::{Backend, Store};

struct Migration {
    version: i64,
    name: &'static str,
    postgres: &'static str,
    sqlite: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            postgres: include_str!(concat!("../../migrations/postgres/", $name, ".sql")),
            sqlite: include_str!(concat!("../../migrations/sqlite/", $name, ".sql")),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_accounts"),
    migration!(2, "0002_rooms"),
    migration!(3, "0003_relations"),
    migration!(4, "0004_sync"),
    migration!(5, "0005_account_data"),
    migration!(6, "0006_receipts"),
    migration!(7, "0007_to_device"),
    migration!(8, "0008_presence"),
    migration!(9, "0009_delivery"),
    migration!(10, "0010_push_actions"),
    migration!(11, "0011_delivery_notices"),
    migration!(12, "0012_delivery_notices_in_memory"),
    migration!(13, "0013_deliveries_updated_in_place"),
    migration!(14, "0014_stream_positions"),
    migration!(15, "0015_txn_scope"),
    migration!(16, "0016_device_keys"),
    migration!(17, "0017_key_backup"),
    migration!(18, "0018_cross_signing"),
    migration!(19, "0019_server_keys"),
    migration!(20, "0020_federation_transactions"),
    migration!(21, "0021_remote_events"),
    migration!(22, "0022_media"),
    migration!(23, "0023_timeline_gaps"),
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database schema is at version {database}, but this tessera binary only knows \
         versions up to {binary}: it was used by a newer tessera. Run that version (or newer) \
         instead; refusing to start so that nothing is corrupted"
    )]
    TooNew { database: i64, binary: i64 },
    #[error("migration {version} ({name}) failed: {source}")]
    Failed { version: i64, name: &'static str, source: sqlx::Error },
    #[error("could not read the schema version: {0}")]
    Database(#[from] sqlx::Error),
}

pub(crate) async fn run(store: &Store) -> Result<(), SchemaError> {
    let mut tx = store.write.begin().await?;
    if store.backend == Backend::Postgres {
        // A migration may rightly take long on a big database, and so may
        // waiting for another process's (below): no statement_timeout.
        sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut tx).await?;
        // Several processes may start at once against one database.
        sqlx::query("SELECT pg_advisory_xact_lock(7402650901)").execute(&mut tx).await?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS tessera_schema (
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL)",
    )
    .execute(&mut tx)
    .await?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM tessera_schema")
        .fetch_one(&mut tx)
        .await?
        .try_get(0)?;
    if current > latest_version() {
        return Err(SchemaError::TooNew { database: current, binary: latest_version() });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let sql = match store.backend {
            Backend::Postgres => m.postgres,
            Backend::Sqlite => m.sqlite,
        };
        let failed = |source| SchemaError::Failed { version: m.version, name: m.name, source };
        sqlx::raw_sql(sql).execute(&mut tx).await.map_err(failed)?;
        sqlx::query("INSERT INTO tessera_schema (version, name, applied_ts) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(crate::store::now_ms())
            .execute(&mut tx)
            .await
            .map_err(failed)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    tx.commit().await?;
    Ok(())
}
