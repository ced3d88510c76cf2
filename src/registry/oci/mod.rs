//! The OCI model over any storage, in distribution's layout
//! ([`crate::storage::layout::distribution`]): blobs, uploads, manifests,
//! tags, referrers and the catalog, with their rules. Returns [`Error`], in
//! the model's words; the v2 API maps it to the wire.

pub mod blobs;
pub mod catalog;
pub mod error;
pub mod links;
pub mod manifests;
pub mod quota;
pub mod referrers;
pub mod repository;
pub mod sessions;
pub mod tags;
pub mod uploads;

// Digests and OCI names are names: they live with the others, below the
// events that carry them.
pub use crate::names::digest;
pub use crate::names::oci as name;

pub use digest::{Algorithm, Digest, Hasher};
pub use error::{Error, Result};
pub use name::{Name, Reference, Tag};

#[cfg(test)]
pub(crate) mod testing {
    use crate::storage::local::LocalStorage;

    /// A local storage in a fresh temporary folder (kept while the guard is).
    pub fn storage() -> (tempfile::TempDir, LocalStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = LocalStorage::new(dir.path().to_str().expect("utf-8")).expect("local");
        (dir, storage)
    }
}
