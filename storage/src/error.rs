//! Storage errors: database trouble, an expected conflict, or a row that
//! does not decode (which means the database was edited by hand or a bug).

/// What can go wrong below the service layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}
