//! The OCI model over any storage, in distribution's layout
//! ([`crate::storage::layout::distribution`]): blobs, uploads, manifests,
//! tags, referrers and the catalog, with their rules. Returns [`Error`], in
//! the model's words; the v2 API maps it to the wire.

pub mod digest;
pub mod error;
pub mod links;
pub mod name;

pub use digest::{Algorithm, Digest, Hasher};
pub use error::{Error, Result};
pub use name::{Name, Reference, Tag};
