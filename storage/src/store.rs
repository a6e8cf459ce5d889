//! The connection pools and how they are opened.
//!
//! SQLite allows one writer at a time; rather than let concurrent writers
//! collide on locks (and fail with SQLITE_BUSY when a read transaction tries to
//! upgrade), every write goes through a single-connection pool. PostgreSQL
//! has a pool of its own for writes too, so that a crowd of syncs queueing
//! for read connections never holds up a send: `max_connections` for
//! reads, a quarter of that (at least two) for writes.
//!
//! When the database is down, a request waits at most
//! [`PoolSettings::acquire_timeout`] for a connection and then fails as
//! [`StorageError::Unavailable`], which the service answers with a 503; the
//! pools reconnect by themselves once the database is back. A statement on
//! a connection that died silently is bounded too (`pool.rs`).

use std::{
    path::Path,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{
    AnyPool, ConnectOptions, Connection,
    any::{AnyConnectOptions, AnyPoolOptions},
};

use crate::{
    Result, StorageError, cache::Cache, error::is_unavailable, events::StoredEvent, migrate, pool::Pool,
    state::StateMap, tokens::TokenOwner,
};

/// Which database is behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The server's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    /// For reads.
    pub(crate) read: Pool,
    /// For writes. On SQLite a single connection, serialising writers.
    pub(crate) write: Pool,
    /// Resolved state groups (immutable once committed), weighed by
    /// entries.
    pub(crate) state_cache: Arc<Cache<i64, StateMap>>,
    /// Events by ID (changed only by a redaction, which removes them).
    pub(crate) event_cache: Arc<Cache<String, StoredEvent>>,
    /// Access tokens by hash, cleared by every change to any token, device
    /// or account flag (rare next to the lookups: one per request). Only
    /// this process changes those: the admin CLI only creates accounts.
    pub(crate) token_cache: Arc<Cache<Vec<u8>, TokenOwner>>,
}

/// At most this many state entries (across all cached state groups) stay
/// in memory: a few tens of MiB at worst.
const CACHED_STATE_ENTRIES: usize = 100_000;
/// At most this many events stay in memory.
const CACHED_EVENTS: usize = 20_000;
/// At most this many access tokens stay in memory.
const CACHED_TOKENS: usize = 100_000;

/// How the store's connection pools behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// PostgreSQL's read pool size (its write pool gets a quarter, at least
    /// two). SQLite has eight readers and one writer.
    pub max_connections: u32,
    /// How long a statement waits for a connection before the database
    /// counts as unavailable. sqlx retries connecting within this wait, so a
    /// database that comes back during it is used at once.
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout`: the server cancels a statement
    /// that runs longer (an error like any other). A statement still
    /// without an answer two seconds after that means its connection
    /// is dead: it is closed and the database counts as unavailable (see
    /// `pool.rs`). Zero turns both off.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// How long after its `statement_timeout` a statement may still go
/// unanswered: time for the server's cancellation to reach us.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// How long a starting server waits for PostgreSQL to accept connections
/// (it may be starting alongside), whatever the wait for one later.
const STARTUP_WAIT: Duration = Duration::from_secs(30);

/// A PostgreSQL connection unused for this long is pinged before it is
/// handed out: it may have been cut while it sat idle (the database
/// restarted), and the request that drew it would fail. Connections in
/// steady use are not pinged (a round trip per statement was 8% of the
/// server's CPU in steady chat).
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(5);

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("could not create the directory for {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] migrate::SchemaError),
}

impl From<OpenError> for StorageError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Database(e) => StorageError::from(e),
            other => StorageError::Corrupt(other.to_string()),
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema
    /// up to date. Refuses a schema newer than this binary.
    pub async fn open(url: &str, settings: PoolSettings) -> Result<Self, OpenError> {
        sqlx::any::install_default_drivers();
        let store = if let Some(path) = url.strip_prefix("sqlite://") {
            Self::open_sqlite(path, settings).await?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let started = Instant::now();
            loop {
                match Self::open_postgres(url, settings).await {
                    Err(OpenError::Database(e)) if is_unavailable(&e) && started.elapsed() < STARTUP_WAIT => {
                        tracing::warn!(error = %e, "waiting for PostgreSQL to accept connections");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    opened => break opened?,
                }
            }
        } else {
            return Err(OpenError::UnsupportedUrl(url.to_owned()));
        };
        // Migrations run without statement deadlines: on a big database a
        // migration may rightly take long.
        migrate::run(&store).await?;
        let deadline = (store.backend == Backend::Postgres && !settings.statement_timeout.is_zero())
            .then(|| settings.statement_timeout + ANSWER_GRACE);
        Ok(Self {
            read: store.read.with_deadline(deadline),
            write: store.write.with_deadline(deadline),
            ..store
        })
    }

    async fn open_postgres(url: &str, settings: PoolSettings) -> Result<Self, OpenError> {
        let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
        let set_timeout = format!("SET statement_timeout = {}", settings.statement_timeout.as_millis());
        let pool = |size: u32| {
            let set_timeout = set_timeout.clone();
            AnyPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(settings.acquire_timeout)
                .after_connect(move |conn, _| {
                    let set_timeout = sqlx::AssertSqlSafe(set_timeout.clone());
                    Box::pin(async move {
                        sqlx::raw_sql(set_timeout).execute(conn).await?;
                        Ok(())
                    })
                })
                // sqlx pings every connection it hands out by default: a
                // round trip per query (8% of the server's CPU in steady
                // chat). A broken connection fails its query instead, and
                // the pool replaces it; only long-idle ones are checked.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= CHECK_IDLE_AFTER {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(options.clone())
        };
        let read = pool(settings.max_connections.max(2)).await?;
        let write = pool((settings.max_connections / 4).max(2)).await?;
        Ok(Self::new(Backend::Postgres, read, write))
    }

    async fn open_sqlite(path: &str, settings: PoolSettings) -> Result<Self, OpenError> {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| OpenError::CreateDir { path: path.to_owned(), source })?;
        }
        let options =
            AnyConnectOptions::from_str(&format!("sqlite://{path}?mode=rwc"))?.disable_statement_logging();
        let pool = |size: u32| {
            AnyPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(settings.acquire_timeout)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // WAL lets readers proceed while the writer commits;
                        // NORMAL sync is durable across process crashes in WAL
                        // mode (only an OS crash can lose the last commits).
                        sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let write = pool(1).await?;
        let read = pool(8).await?;
        Ok(Self::new(Backend::Sqlite, read, write))
    }

    fn new(backend: Backend, read: AnyPool, write: AnyPool) -> Self {
        Self {
            backend,
            read: Pool::new(read),
            write: Pool::new(write),
            state_cache: Arc::new(Cache::new(CACHED_STATE_ENTRIES)),
            event_cache: Arc::new(Cache::new(CACHED_EVENTS)),
            token_cache: Arc::new(Cache::new(CACHED_TOKENS)),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A table expression `r` of the rows in the JSON array bound to
    /// `param` (objects with these columns and SQL types), for statements
    /// that write a batch of any size with the same text.
    pub(crate) fn json_rows(&self, param: &str, columns: &[(&str, &str)]) -> String {
        match self.backend {
            Backend::Postgres => {
                let typed: Vec<String> = columns.iter().map(|(name, ty)| format!("{name} {ty}")).collect();
                format!("json_to_recordset({param}::json) AS r({})", typed.join(", "))
            }
            Backend::Sqlite => {
                let picked: Vec<String> = columns
                    .iter()
                    .map(|(name, _)| format!("json_extract(value, '$.{name}') AS {name}"))
                    .collect();
                format!("(SELECT {} FROM json_each({param})) AS r", picked.join(", "))
            }
        }
    }

    /// Waits for in-flight queries and closes every connection. SQLite then
    /// checkpoints its WAL, leaving a single clean database file.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Milliseconds since the Unix epoch, as stored in every `*_ts` column.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
