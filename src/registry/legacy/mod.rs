//! The v1 model over any [`Storage`]: what an image, a tag, a repository and
//! the stand-in index's image list are, and the rules of their life cycle.
//! It answers in domain errors ([`Error`]); the v1 API maps each to its
//! status and message.
//!
//! An image is pushed in three steps (json, layer, checksum) and stays
//! marked `_inprogress` until the checksum the client computed matches the
//! one we computed while the layer streamed in; only then can it be pulled.

mod images;
mod index_images;
pub mod json;
mod layer_files;
mod owners;
pub mod quota;
mod repositories;

pub use images::*;
pub use index_images::*;
pub use owners::Owners;
pub use repositories::*;

use crate::names::Tag;
use crate::storage::{Storage, StorageError};

/// What the v1 model refuses, and why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image not found")]
    ImageNotFound,
    #[error("image already exists")]
    ImageExists,
    #[error("image is being uploaded")]
    ImageInProgress,
    #[error("image json is not a JSON object")]
    InvalidJson,
    #[error("image json has no id")]
    MissingId,
    #[error("image json names another id")]
    WrongId,
    #[error("image parent does not exist")]
    MissingParent,
    #[error("no checksum given")]
    ChecksumMissing,
    #[error("empty checksum")]
    ChecksumEmpty,
    #[error("image is not waiting for a checksum")]
    ChecksumNotExpected,
    #[error("checksum mismatch")]
    ChecksumMismatch,
    #[error("layer is no tar we can read")]
    LayerFormat,
    /// The layer's listing goes over a bound (which one is said).
    #[error("layer listing too large: {0}")]
    ListingTooLarge(String),
    /// Too many listings are being computed; the request waited its turn
    /// in vain.
    #[error("too many file listings at once")]
    ListingBusy,
    /// The layer body broke off: nothing was stored.
    #[error("layer upload interrupted")]
    Interrupted,
    #[error("repository not found")]
    RepositoryNotFound,
    /// A tag looked up that is not there.
    #[error("tag not found")]
    TagNotFound,
    /// A tag to delete that is not there (the old registry named it).
    #[error("tag to delete not found: {0}")]
    TagToDeleteNotFound(Tag),
    /// A tag, properties or image list that is not what it must be.
    #[error("invalid data")]
    InvalidData,
    #[error("description too long (at most {0} characters)")]
    DescriptionTooLong(usize),
    #[error("image list is not JSON")]
    JsonDecoding,
    /// A tag an operator's rule holds would move or go (the message says
    /// which tag, which rule, and what it points at).
    #[error("{0}")]
    Immutable(String),
    /// A push that would take the repositories of a quota rule past its
    /// bound (the message says which, what is used, what the push needs).
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("no image list for the repository")]
    IndexImagesNotFound,
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

/// Turns "not found" into the error the caller's context calls for.
trait OrNotFound<T> {
    fn or_not_found(self, error: Error) -> Result<T>;
}

impl<T> OrNotFound<T> for Result<T, StorageError> {
    fn or_not_found(self, error: Error) -> Result<T> {
        match self {
            Err(StorageError::NotFound(_)) => Err(error),
            other => Ok(other?),
        }
    }
}

/// Removes a file that may not be there.
async fn remove_if_present(storage: &dyn Storage, path: &str) -> Result<()> {
    match storage.remove(path).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn parse_json(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(bytes).ok()
}
