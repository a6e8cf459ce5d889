//! The pools every statement goes through, and how long a statement may go
//! unanswered.
//!
//! A connection can die without telling us: the database host freezes, or a
//! network path or firewall drops it. A statement written to it then waits
//! for an answer until TCP gives up, about 15 minutes on Linux, holding its
//! request (and, for an append, the room's lock, so every later send to the
//! room queues behind it). sqlx sets no TCP keepalive or user timeout on its
//! sockets and lets us set none, and a keepalive would not notice a frozen
//! database process anyway, whose kernel still answers. So each statement
//! gets a deadline here instead, on PostgreSQL: past it the connection is
//! presumed dead and closed, not returned to the pool, and the statement
//! fails as an I/O timeout, which [`crate::StorageError`] counts as the
//! database being unavailable. SQLite runs in-process: nothing to lose
//! there, and its waits for the write lock end at its busy timeout.
//!
//! [`Pool`] and [`Tx`] are sqlx executors, so statements are written as
//! usual (`.fetch_all(&self.read)`, `.execute(&mut tx)`). Must not: run
//! anything without the deadline, except migrations (their statements may
//! legitimately take long on a big database).

use std::{fmt, future::Future, io, time::Duration};

use futures_util::{
    TryStreamExt,
    future::BoxFuture,
    stream::{self, BoxStream, StreamExt},
};
use sqlx::{
    AnyPool, Either, Execute, Executor, SqlStr,
    any::{Any, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo},
    pool::PoolConnection,
};

/// A connection pool whose statements have a deadline. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Pool {
    pool: AnyPool,
    /// How long a statement may go unanswered; `None` waits for ever.
    deadline: Option<Duration>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("size", &self.pool.size()).field("deadline", &self.deadline).finish()
    }
}

impl Pool {
    /// A pool without deadlines, for migrations; see [`Pool::with_deadline`].
    pub(crate) fn new(pool: AnyPool) -> Self {
        Self { pool, deadline: None }
    }

    /// The same pool, giving each statement at most `deadline`.
    pub(crate) fn with_deadline(&self, deadline: Option<Duration>) -> Self {
        Self { pool: self.pool.clone(), deadline }
    }

    /// Starts a transaction on a connection of this pool. The deadline
    /// covers the wait for the connection too.
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let tx = within(self.deadline, self.pool.begin())
            .await
            .unwrap_or_else(|| Err(no_answer(self.deadline)))?;
        Ok(Tx { tx, deadline: self.deadline })
    }

    /// Waits for the statements in flight and closes every connection.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

/// A transaction: sqlx's, with the deadline on each statement. Rolled back
/// when dropped uncommitted. A connection that left a statement unanswered
/// goes back to the pool as sqlx's transactions do, where its test ping
/// waits until TCP gives up; it holds a place in the pool until then, which
/// only matters while the database is unreachable anyway.
pub(crate) struct Tx {
    tx: sqlx::Transaction<'static, Any>,
    deadline: Option<Duration>,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").field("deadline", &self.deadline).finish()
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        within(self.deadline, self.tx.commit()).await.unwrap_or_else(|| Err(no_answer(self.deadline)))
    }
}

/// `future`'s output, or `None` if `deadline` passed first.
async fn within<T>(deadline: Option<Duration>, future: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

/// The statement's result; if it went unanswered, an I/O timeout, and the
/// connection is closed when dropped instead of going back to the pool
/// (where sqlx would test it with a ping that waits for ever on a dead
/// socket, keeping its place in the pool).
fn settle<T>(
    conn: &mut PoolConnection<Any>,
    deadline: Option<Duration>,
    answered: Option<Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    answered.unwrap_or_else(|| {
        conn.close_on_drop();
        Err(no_answer(deadline))
    })
}

/// The error of a statement left unanswered: an I/O timeout.
fn no_answer(deadline: Option<Duration>) -> sqlx::Error {
    let waited = deadline.unwrap_or_default().as_millis();
    sqlx::Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the database left a statement unanswered for {waited} ms"),
    ))
}

/// One result or row of a statement.
type Step = Either<AnyQueryResult, AnyRow>;

/// Every result and row of a statement, read under the deadline before the
/// first is handed on, so that the deadline covers the whole statement (the
/// store reads whole results anyway: `fetch_all`, `execute`).
fn collected<'e>(
    steps: impl Future<Output = Result<Vec<Step>, sqlx::Error>> + Send + 'e,
) -> BoxStream<'e, Result<Step, sqlx::Error>> {
    stream::once(steps).map_ok(|steps| stream::iter(steps.into_iter().map(Ok))).try_flatten().boxed()
}

impl<'p> Executor<'p> for &'p Pool {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        collected(async move {
            let mut conn = self.pool.acquire().await?;
            let answered = within(self.deadline, conn.fetch_many(query).try_collect::<Vec<_>>()).await;
            settle(&mut conn, self.deadline, answered)
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let answered = within(self.deadline, conn.fetch_optional(query)).await;
            settle(&mut conn, self.deadline, answered)
        })
    }

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<AnyQueryResult, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let answered = within(self.deadline, conn.execute(query)).await;
            settle(&mut conn, self.deadline, answered)
        })
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let answered = within(self.deadline, conn.fetch_all(query)).await;
            settle(&mut conn, self.deadline, answered)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let answered = within(self.deadline, conn.prepare_with(sql, parameters)).await;
            settle(&mut conn, self.deadline, answered)
        })
    }
}

impl<'t> Executor<'t> for &'t mut Tx {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        't: 'e,
        E: 'q + Execute<'q, Any>,
    {
        collected(in_transaction(self.deadline, self.tx.fetch_many(query).try_collect::<Vec<_>>()))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        't: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(in_transaction(self.deadline, self.tx.fetch_optional(query)))
    }

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<AnyQueryResult, sqlx::Error>>
    where
        't: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(in_transaction(self.deadline, self.tx.execute(query)))
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<AnyRow>, sqlx::Error>>
    where
        't: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(in_transaction(self.deadline, self.tx.fetch_all(query)))
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        't: 'e,
    {
        Box::pin(in_transaction(self.deadline, self.tx.prepare_with(sql, parameters)))
    }
}

/// A statement of a transaction, under the deadline.
async fn in_transaction<T>(
    deadline: Option<Duration>,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    within(deadline, statement).await.unwrap_or_else(|| Err(no_answer(deadline)))
}
