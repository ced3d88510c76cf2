//! What can go wrong in the OCI model, in the model's words. The v2 API maps
//! each kind to its wire code and status in one place (`v2::error`).

use super::digest::Digest;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The blob is not in the repository (or not stored at all).
    #[error("blob unknown: {0}")]
    BlobUnknown(Digest),
    /// No upload in progress with that id in that repository.
    #[error("upload unknown")]
    UploadUnknown,
    /// The upload cannot go on as asked (a chunk that does not start where
    /// the upload ends is [`Error::RangeNotSatisfiable`]).
    #[error("upload invalid: {0}")]
    UploadInvalid(String),
    /// A chunk that does not start where the upload stands.
    #[error("chunk out of order: the upload holds {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The content does not have the digest the client named, or the
    /// digest cannot be used.
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    /// `Content-Length` or a size in a manifest that does not match.
    #[error("size invalid: {0}")]
    SizeInvalid(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// A manifest references a blob or manifest the repository lacks.
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(Digest),
    /// The repository does not exist.
    #[error("repository unknown: {0}")]
    NameUnknown(String),
    /// A body larger than the bound for its kind.
    #[error("too large: more than {limit} bytes")]
    TooLarge { limit: u64 },
    /// No room for another upload session (see `sessions`).
    #[error("too many uploads: {0}")]
    TooManyUploads(String),
    /// A tag an operator's rule holds would move or go (the message says
    /// which tag, which rule, and what it points at).
    #[error("{0}")]
    Immutable(String),
    /// A push that would take the repositories of a quota rule past its
    /// bound (the message says which, what is used, what the push needs).
    #[error("{0}")]
    QuotaExceeded(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::registry::rules::quota::Error> for Error {
    fn from(e: crate::registry::rules::quota::Error) -> Self {
        use crate::registry::rules::quota::Error as E;
        match e {
            E::Exceeded(why) => Error::QuotaExceeded(why),
            E::Storage(e) => Error::Storage(e),
        }
    }
}

/// Turns a storage "not found" into the error the caller's context calls for.
pub(crate) trait OrNotFound<T> {
    fn or_not_found(self, error: impl FnOnce() -> Error) -> Result<T>;
}

impl<T> OrNotFound<T> for std::result::Result<T, StorageError> {
    fn or_not_found(self, error: impl FnOnce() -> Error) -> Result<T> {
        match self {
            Err(StorageError::NotFound(_)) => Err(error()),
            other => Ok(other?),
        }
    }
}
