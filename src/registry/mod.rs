//! The registry below both APIs: the application state and the models of
//! what is stored (v1 images and tags, OCI blobs, uploads, manifests, tags,
//! referrers), returning domain errors that each API maps to its wire.

pub mod oci;
mod state;

pub use state::AppState;
