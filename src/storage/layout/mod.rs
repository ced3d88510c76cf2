//! Where things live in a folder or bucket: one file a tree, each drawing
//! its tree in its header comment.
//!
//! - [`legacy`]: the v1 tree of the Python registry (`images/`,
//!   `repositories/` directly under `storage_path`), byte for byte;
//! - [`distribution`]: the v2 tree of the reference registry
//!   (`docker/registry/v2/` under `storage_path`), key for key;
//! - [`collection`]: the garbage collector's lease and push records (`_gc/`).
//!
//! The three do not overlap, so one `storage_path` holds them all.

pub mod collection;
pub mod distribution;
pub mod legacy;
