//! One classification of what can fail under the models (the storage
//! driver, the search index), so that each API answers the same kind of
//! failure with the same kind of status, whatever its wire spelling.

use crate::search::SearchError;
use crate::storage::StorageError;

/// What kind of failure a lower layer reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// What was asked for is not there (a 404 unless the API knows better).
    NotFound,
    /// A path no layout builds: a request that names something invalid.
    InvalidPath,
    /// The request body broke off; nothing was stored.
    Interrupted,
    /// A range past the end of a file of `size` bytes (it shrank meanwhile).
    InvalidRange { size: u64 },
    /// The backend cannot answer now; a retry may work (503).
    Unavailable,
    /// The backend answered with something broken: our fault or the
    /// operator's, never the client's (500). Details go to the log only.
    Internal,
}

impl Failure {
    /// The failure's name as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::NotFound => "not_found",
            Failure::InvalidPath => "invalid_path",
            Failure::Interrupted => "interrupted",
            Failure::InvalidRange { .. } => "invalid_range",
            Failure::Unavailable => "unavailable",
            Failure::Internal => "internal",
        }
    }
}

/// Errors of a lower layer, classified.
pub trait Classify {
    fn failure(&self) -> Failure;
}

impl Classify for StorageError {
    fn failure(&self) -> Failure {
        match self {
            StorageError::NotFound(_) => Failure::NotFound,
            StorageError::InvalidPath(_) => Failure::InvalidPath,
            StorageError::Interrupted(_) => Failure::Interrupted,
            StorageError::InvalidRange { size, .. } => Failure::InvalidRange { size: *size },
            StorageError::Unavailable(_) => Failure::Unavailable,
            StorageError::Io { .. } => Failure::Internal,
        }
    }
}

impl Classify for SearchError {
    fn failure(&self) -> Failure {
        match self {
            // Another process holds the database: it will let go.
            SearchError::Busy(_) => Failure::Unavailable,
            SearchError::Unavailable(_) => Failure::Internal,
        }
    }
}
