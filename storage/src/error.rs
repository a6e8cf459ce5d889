//! Storage errors: the database unavailable, other database trouble, an
//! expected conflict, or a row that does not decode (which means the
//! database was edited by hand or a bug).

/// What can go wrong below the service layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be reached: no connection within the wait,
    /// or the connection was refused, cut or shut down by the server, or
    /// left a statement unanswered. Transient: the pools reconnect once the
    /// database is back, so the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A uniqueness rule the caller expects to be hit sometimes (a user ID
    /// that is taken, a registration token that is used up).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StorageError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) { Self::Unavailable(error) } else { Self::Database(error) }
    }
}

/// Whether `error` says the database cannot be reached, rather than that a
/// statement failed.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        // No connection within the wait (sqlx retries refused connections
        // until then), or the pool is shutting down.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        // Refused, reset, closed under us, or unanswered (`pool.rs`).
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| is_unavailable_sqlstate(&code)),
        _ => false,
    }
}

/// PostgreSQL's SQLSTATEs for a server that is going away or cannot be
/// talked to: class 08 (connection exception) and 57P0x (admin shutdown,
/// crash shutdown, cannot connect now, database dropped, idle session
/// timeout). <https://www.postgresql.org/docs/current/errcodes-appendix.html>.
/// SQLite's codes are numbers, which none of these are.
fn is_unavailable_sqlstate(code: &str) -> bool {
    code.len() == 5 && (code.starts_with("08") || code.starts_with("57P0"))
}

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_unavailability() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
            sqlx::Error::Io(std::io::ErrorKind::UnexpectedEof.into()),
        ] {
            assert!(matches!(StorageError::from(error), StorageError::Unavailable(_)));
        }
        assert!(matches!(StorageError::from(sqlx::Error::RowNotFound), StorageError::Database(_)));
    }

    #[test]
    fn sqlstates_of_a_server_going_away() {
        for code in ["08000", "08006", "08P01", "57P01", "57P02", "57P03"] {
            assert!(is_unavailable_sqlstate(code), "{code}");
        }
        // A cancelled statement (statement_timeout), a unique violation,
        // SQLite's SQLITE_BUSY and a constraint code: errors, not outages.
        for code in ["57014", "23505", "5", "2067", "0800"] {
            assert!(!is_unavailable_sqlstate(code), "{code}");
        }
    }
}
