//! The registry below both APIs: the application state, the auth policy,
//! and the models of what is stored (v1 images and tags in [`legacy`], OCI
//! blobs, uploads, manifests, tags and referrers in [`oci`]), the
//! [`bridge`] that serves v1 images to v2 clients, the backends'
//! [`health`], returning
//! domain errors that each API maps to its wire. Nothing here imports an
//! API module or `http`.

pub mod auth;
pub mod bridge;
pub mod collector;
pub mod failure;
pub mod health;
pub mod inspect;
pub mod legacy;
pub mod mirror;
pub mod oci;
pub mod rules;
mod state;
pub mod tap;

pub use failure::{Classify, Failure};
pub use state::AppState;
