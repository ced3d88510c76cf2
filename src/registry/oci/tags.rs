//! Tags: listing them in pages (`n`, `last`), and finding those that point
//! at a manifest.

use super::digest::Digest;
use super::error::{Error, Result};
use super::manifests::list_or_empty;
use super::name::{Name, Tag};
use super::{links, repository};
use crate::storage::layout::distribution as layout;
use crate::storage::{Storage, StorageError};

/// One page of a sorted list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// More items follow the last one of this page.
    pub more: bool,
}

/// The items after `last` (exclusive), at most `n` of them. `sorted` must
/// be in the order `before(a, b)` says; `n == Some(0)` is an empty page.
pub fn page(
    sorted: impl IntoIterator<Item = String>,
    n: Option<usize>,
    last: Option<&str>,
    before: impl Fn(&str, &str) -> bool,
) -> Page {
    let mut after = sorted
        .into_iter()
        .filter(|item| last.is_none_or(|last| before(last, item)));
    let items: Vec<String> = match n {
        Some(n) => after.by_ref().take(n).collect(),
        None => after.by_ref().collect(),
    };
    let more = n != Some(0) && after.next().is_some();
    Page { items, more }
}

/// Every tag of the repository, sorted bytewise (the spec's "ASCIIbetical"
/// order). `NameUnknown` when the repository does not exist.
///
/// distribution lists the tag folders as they are; here a folder counts
/// only with its current link: one without is a tag being deleted (see
/// [`remove`]) or whose delete was cut short, or a push that has not
/// written its link yet, and none serves. The driver answers which folders
/// hold one ([`Storage::folders_holding_with_times`]): a stat each in one batch on
/// local disk, one listing on S3, not a read per tag.
pub async fn all(storage: &dyn Storage, name: &Name) -> Result<Vec<String>> {
    let pushed = all_pushed(storage, name).await?;
    Ok(pushed.into_iter().map(|(tag, _)| tag).collect())
}

/// [`all`], each tag with when it was pushed (its current link written):
/// the same listing, the times read with it.
pub async fn all_pushed(
    storage: &dyn Storage,
    name: &Name,
) -> Result<Vec<(String, std::time::SystemTime)>> {
    let folders = match storage
        .folders_holding_with_times(&layout::tags(name.as_str()), layout::TAG_CURRENT_LINK)
        .await
    {
        Ok(folders) => folders,
        Err(StorageError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if folders.is_empty() && !repository::exists(storage, name).await? {
        return Err(Error::NameUnknown(name.to_string()));
    }
    // A folder that is not a valid tag was not written by a registry.
    let mut tags: Vec<_> = folders
        .into_iter()
        .filter(|(tag, _)| Tag::parse(tag).is_ok())
        .collect();
    tags.sort();
    Ok(tags)
}

/// Deletes a tag so that it is gone at once on every driver: where a
/// folder goes at once (local disk) the folder; elsewhere (S3) its current
/// link first (one file: the instant the tag stops being listed and
/// served), then its history. A delete cut short there leaves a folder
/// without a current link, which listings skip, a push of the same tag
/// makes whole again, and the collector removes. The folder is
/// distribution's, as distribution lays it out.
pub async fn remove(storage: &dyn Storage, name: &Name, tag: &Tag) -> Result<()> {
    let folder = layout::tag(name.as_str(), tag.as_str());
    let mut paths = vec![folder];
    if !storage.removes_folders_at_once() {
        paths.insert(0, links::tag_current(name, tag));
    }
    for path in paths {
        match storage.remove(&path).await {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A page of the repository's tags.
pub async fn list(
    storage: &dyn Storage,
    name: &Name,
    n: Option<usize>,
    last: Option<&str>,
) -> Result<Page> {
    let tags = all(storage, name).await?;
    Ok(page(tags, n, last, |a, b| a < b))
}

/// The tags whose current manifest is `digest`, sorted.
pub async fn pointing_at(storage: &dyn Storage, name: &Name, digest: &Digest) -> Result<Vec<Tag>> {
    let mut found = Vec::new();
    for folder in list_or_empty(storage, &layout::tags(name.as_str())).await? {
        let Ok(tag) = Tag::parse(&folder) else {
            continue;
        };
        if links::read(storage, &links::tag_current(name, &tag))
            .await?
            .as_ref()
            == Some(digest)
        {
            found.push(tag);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn tags_page(n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
        let p = page(strings(&["a", "b", "c", "d"]), n, last, |a, b| a < b);
        (p.items, p.more)
    }

    #[test]
    fn pages_follow_n_and_last() {
        assert_eq!(
            tags_page(None, None),
            (strings(&["a", "b", "c", "d"]), false)
        );
        assert_eq!(tags_page(Some(2), None), (strings(&["a", "b"]), true));
        assert_eq!(tags_page(Some(2), Some("b")), (strings(&["c", "d"]), false));
        assert_eq!(
            tags_page(Some(4), None),
            (strings(&["a", "b", "c", "d"]), false)
        );
        assert_eq!(tags_page(Some(0), None), (vec![], false));
        assert_eq!(tags_page(None, Some("bb")), (strings(&["c", "d"]), false));
        assert_eq!(tags_page(Some(1), Some("d")), (vec![], false));
        assert_eq!(
            tags_page(Some(10), Some("0")),
            (strings(&["a", "b", "c", "d"]), false)
        );
    }
}
