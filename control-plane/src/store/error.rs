//! What can go wrong in a store, in terms that name no database driver.

use uuid::Uuid;

/// The kind of a database failure, classified by the store that saw it: callers decide
/// from it whether to retry (and the API which status to answer) without knowing which
/// database is underneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The store cannot answer now but may later (a failing or read-only file system,
    /// a lock held too long, memory short).
    Unavailable,
    /// The disk under the store is full: nothing new can be written until space is
    /// freed.
    Full,
    /// A write broke a constraint (a duplicate key the store did not expect).
    Conflict,
    /// The stored data is damaged.
    Corrupt,
    /// Anything else.
    Other,
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, corruption, full disk).
    #[error("database error during {operation}: {source}")]
    Database {
        /// What the store was doing.
        operation: &'static str,
        /// What kind of failure it was.
        fault: Fault,
        /// The underlying error, whatever the database.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored value could not be decoded.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A function with this name already exists.
    #[error("function {0} already exists")]
    FunctionExists(String),
    /// No function with this name.
    #[error("function {0} not found")]
    FunctionNotFound(String),
    /// Another execution of the function already has this idempotency key.
    #[error("idempotency key already used by execution {0}")]
    DuplicateIdempotencyKey(Uuid),
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
    /// The data directory could not be prepared.
    #[error("cannot open the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// A database failure of kind `fault` during `operation`.
    pub fn database(
        operation: &'static str,
        fault: Fault,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Database {
            operation,
            fault,
            source: source.into(),
        }
    }

    /// The kind of database failure, if this is one.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StoreError::Database { fault, .. } => Some(*fault),
            _ => None,
        }
    }

    /// Whether the disk under the store is full.
    pub fn is_full(&self) -> bool {
        self.fault() == Some(Fault::Full)
    }

    /// Whether the store cannot write now but may later (full disk, read-only or failing
    /// file system, a lock held too long, the store shut down): the caller may retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Closed)
            || matches!(self.fault(), Some(Fault::Unavailable | Fault::Full))
    }
}
