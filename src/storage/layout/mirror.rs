//! The pull-through cache's own folder, beside the v1 and v2 trees,
//! relative to `storage_path`. The cached images themselves live in the
//! v2 tree like pushed ones, under their upstream's prefix
//! (`docker.io/library/busybox`); this folder holds only when each cached
//! tag was last checked against its upstream.
//!
//! ```text
//! _mirror/
//!   tags/<name>/_tags/<tag>   a cached tag: {"digest": "sha256:..", "checked_ms": <unix ms>}
//! ```
//!
//! `<name>` is the stored repository name, `/` kept, and `<tag>` a tag;
//! both reach this file validated by the OCI grammar. `_tags` keeps the
//! tags of `a/b` apart from the repository `a/b/c` (no name component
//! starts with `_`).

pub const ROOT: &str = "_mirror";

/// When the tag `tag` of the cached repository `name` was last checked.
pub fn tag_checked(name: &str, tag: &str) -> String {
    format!("{ROOT}/tags/{name}/_tags/{tag}")
}

/// The checks of every tag of repository `name`.
pub fn tags_checked(name: &str) -> String {
    format!("{ROOT}/tags/{name}/_tags")
}
