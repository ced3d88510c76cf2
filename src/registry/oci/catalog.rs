//! `_catalog`: every repository, found by walking `repositories/` as
//! distribution does, in distribution's order, a page at a time.

use std::cmp::Ordering;

use super::error::Result;
use super::manifests::list_or_empty;
use super::name::Name;
use super::repository::holds_repository;
use super::tags::Page;
use crate::storage::layout::distribution as layout;
use crate::storage::Storage;

/// distribution's order of repository names: component by component (as
/// if `/` sorted before every other character), so `a/b` comes before
/// `a-b`. A depth-first walk over sorted folders yields exactly this order.
pub fn compare(a: &str, b: &str) -> Ordering {
    let key = |s: &str| {
        s.bytes()
            .map(|c| if c == b'/' { 0 } else { c })
            .collect::<Vec<_>>()
    };
    key(a).cmp(&key(b))
}

fn before(a: &str, b: &str) -> bool {
    compare(a, b) == Ordering::Less
}

/// The repositories after `last`, at most `n`. Only the folders that can
/// hold names after `last` are walked, and the walk stops once it has one
/// more than the page needs.
pub async fn list(storage: &dyn Storage, n: Option<usize>, last: Option<&str>) -> Result<Page> {
    if n == Some(0) {
        return Ok(Page {
            items: Vec::new(),
            more: false,
        });
    }
    let want = n.map(|n| n.saturating_add(1));
    let mut found = Vec::new();
    // Folders still to visit, the next one last: (path under the root).
    let mut stack: Vec<String> = Vec::new();
    let top = list_or_empty(storage, &layout::repositories()).await?;
    push_children_of(&mut stack, "", top, last);
    while let Some(path) = stack.pop() {
        let children = list_or_empty(storage, &layout::repository(&path)).await?;
        if holds_repository(&children) && last.is_none_or(|l| before(l, &path)) {
            found.push(path.clone());
            if want.is_some_and(|w| found.len() >= w) {
                break;
            }
        }
        push_children_of(&mut stack, &path, children, last);
    }
    let more = want.is_some_and(|w| found.len() >= w);
    if more {
        found.truncate(found.len() - 1);
    }
    Ok(Page { items: found, more })
}

/// The paths of the sub-folders of `parent` that can be (or hold)
/// repository names: not `_` folders (a repository's own data), and only
/// valid names, the only ones the API writes.
pub fn name_folders(parent: &str, children: Vec<String>) -> impl Iterator<Item = String> + '_ {
    children
        .into_iter()
        .filter(|c| !c.starts_with('_'))
        .map(move |c| {
            if parent.is_empty() {
                c
            } else {
                format!("{parent}/{c}")
            }
        })
        .filter(|p| Name::parse(p).is_ok())
}

/// Pushes the sub-folders that can be (or hold) repository names, in
/// reverse so that the first pops first; skips `_` folders (a repository's
/// own data) and whole subtrees that sort before `last`.
fn push_children_of(
    stack: &mut Vec<String>,
    parent: &str,
    children: Vec<String>,
    last: Option<&str>,
) {
    let mut paths: Vec<String> = name_folders(parent, children)
        .filter(|p| match last {
            // Everything under `p` sorts before `last` unless `last` is
            // `p` itself or lies below it.
            Some(l) => !before(p, l) || l.starts_with(&format!("{p}/")),
            None => true,
        })
        .collect();
    paths.sort_by(|a, b| compare(a, b));
    stack.extend(paths.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_component_by_component() {
        let mut names = vec!["a-b", "a/b", "a", "b", "a/b/c", "a.b"];
        names.sort_by(|a, b| compare(a, b));
        assert_eq!(names, ["a", "a/b", "a/b/c", "a-b", "a.b", "b"]);
    }

    #[actix_web::test]
    async fn the_catalog_walks_nested_names_in_pages() {
        let (_dir, storage) = crate::registry::oci::testing::storage();
        let root = layout::repositories();
        for (repo, kind) in [
            ("a", "_layers"),
            ("a/b", "_manifests"),
            ("a/b/c", "_layers"),
            ("a-b", "_layers"),
            ("b", "_uploads"), // an upload alone is no repository
            ("c", "_layers"),
        ] {
            let path = format!("{root}/{repo}/{kind}/x");
            storage
                .put(&path, bytes::Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let storage = &storage;
        let page = |n, last| async move {
            let p = list(storage, n, last).await.unwrap();
            (p.items, p.more)
        };
        let all: Vec<String> = ["a", "a/b", "a/b/c", "a-b", "c"].map(String::from).into();
        assert_eq!(page(None, None).await, (all.clone(), false));
        assert_eq!(page(Some(2), None).await, (all[..2].to_vec(), true));
        assert_eq!(page(Some(2), Some("a/b")).await, (all[2..4].to_vec(), true));
        assert_eq!(page(Some(2), Some("a-b")).await, (all[4..].to_vec(), false));
        assert_eq!(page(Some(5), None).await, (all.clone(), false));
        assert_eq!(page(Some(0), None).await, (vec![], false));
        assert_eq!(page(None, Some("a/b/c")).await, (all[3..].to_vec(), false));
        assert_eq!(page(None, Some("zzz")).await, (vec![], false));
    }
}
