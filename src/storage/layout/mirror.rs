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

/// The folder of every v1 repository's records: `<ns>/<repo>/` below it,
/// each part escaped as the v1 tree escapes it (the collector walks it).
pub fn v1_records() -> String {
    format!("{ROOT}/v1tags")
}

/// A v1 copy as the collector finds it in [`v1_records`]: `namespace` and
/// `repository` are folder names there, already escaped.
pub struct V1Listed<'a> {
    pub namespace: &'a str,
    pub repository: &'a str,
}

impl V1Listed<'_> {
    /// What [`v1_repository`] names for this repository.
    pub fn records(&self) -> String {
        format!("{}/{}/{}", v1_records(), self.namespace, self.repository)
    }

    /// The records of its copied tags (file names: the escaped tags).
    pub fn tags_checked(&self) -> String {
        format!("{}/_tags", self.records())
    }

    /// When its tag list was last read.
    pub fn list_checked(&self) -> String {
        format!("{}/_list", self.records())
    }

    /// The repository's folder in the v1 tree.
    pub fn tree(&self) -> String {
        format!(
            "{}/{}/{}",
            legacy::REPOSITORIES,
            self.namespace,
            self.repository
        )
    }

    /// The v1 tree's file of the tag whose record is `record` (a file of
    /// [`V1Listed::tags_checked`]): both hold the tag escaped the same way.
    pub fn tag_file(&self, record: &str) -> String {
        format!("{}/{}{record}", self.tree(), legacy::TAG_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_v1_copy_names_the_paths_its_repository_has() {
        let name = RepositoryName::parse("team/my app").unwrap();
        let tag = Tag::parse("v1.0").unwrap();
        let records = v1_repository(&name);
        let (namespace, repository) = records
            .strip_prefix(&format!("{}/", v1_records()))
            .and_then(|rest| rest.split_once('/'))
            .unwrap();
        let listed = V1Listed {
            namespace,
            repository,
        };
        assert_eq!(listed.records(), records);
        assert_eq!(listed.tags_checked(), v1_tags_checked(&name));
        assert_eq!(listed.list_checked(), v1_list_checked(&name));
        assert_eq!(listed.tree(), legacy::repository_dir(&name));
        let record = v1_tag_checked(&name, &tag);
        let file = record.rsplit('/').next().unwrap();
        assert_eq!(listed.tag_file(file), legacy::tag(&name, &tag));
    }
}
