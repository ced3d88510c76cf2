//! The pull-through cache's own folder, beside the v1 and v2 trees,
//! relative to `storage_path`. The cached images themselves live in the
//! v2 tree like pushed ones, under their upstream's prefix
//! (`docker.io/library/busybox`), or, copied from a source that speaks
//! only v1 (the old Python registry), in the v1 tree like pushed ones
//! (`images/<id>/...`, `repositories/<ns>/<repo>/tag_<tag>`); this folder
//! holds only when each cached tag was last checked against its upstream.
//!
//! ```text
//! _mirror/
//!   tags/<name>/_tags/<tag>        a cached v2 tag: {"digest": "sha256:..", "checked_ms": <unix ms>}
//!   v1tags/<ns>/<repo>/_tags/<tag> a v1 tag copied from the source: {"image": "<id>", "checked_ms": <unix ms>}
//!   v1tags/<ns>/<repo>/_list       when the source's tag list was last read: {"checked_ms": <unix ms>}
//! ```
//!
//! `<name>` is the stored repository name, `/` kept, and `<tag>` a tag;
//! both reach this file validated by the OCI grammar. `_tags` keeps the
//! tags of `a/b` apart from the repository `a/b/c` (no name component
//! starts with `_`). A v1 name is always two parts (`library/x`), so
//! `_tags` and `_list` sit at a fixed depth, whatever the v1 names hold.
//! A v1 tag with a record is the source's copy, served for
//! `tags_cache_ttl` and then asked for again; one without is pushed here.

use super::legacy;
use crate::names::{RepositoryName, Tag};

pub const ROOT: &str = "_mirror";

/// When the tag `tag` of the cached repository `name` was last checked.
pub fn tag_checked(name: &str, tag: &str) -> String {
    format!("{ROOT}/tags/{name}/_tags/{tag}")
}

/// The checks of every tag of repository `name`.
pub fn tags_checked(name: &str) -> String {
    format!("{ROOT}/tags/{name}/_tags")
}

/// The v1 repository `name`'s records, its parts escaped as the v1 tree
/// escapes them.
pub fn v1_repository(name: &RepositoryName) -> String {
    let tree = legacy::repository_dir(name);
    let parts = tree.strip_prefix(legacy::REPOSITORIES).unwrap_or(&tree);
    format!("{ROOT}/v1tags{parts}")
}

/// The record of the v1 tag `tag` copied from the source.
pub fn v1_tag_checked(name: &RepositoryName, tag: &Tag) -> String {
    format!(
        "{}/_tags/{}",
        v1_repository(name),
        legacy::escape(tag.as_str())
    )
}

/// The records of every copied v1 tag of a repository.
pub fn v1_tags_checked(name: &RepositoryName) -> String {
    format!("{}/_tags", v1_repository(name))
}

/// When the source's tag list of a v1 repository was last read.
pub fn v1_list_checked(name: &RepositoryName) -> String {
    format!("{}/_list", v1_repository(name))
}
