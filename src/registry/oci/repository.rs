//! What makes a folder of `repositories/` a repository: the rule the
//! catalog lists by and the not-found errors are told apart by; and
//! deleting one whole.

use super::error::{Error, Result};
use super::manifests::{list_or_empty, remove_if_present};
use super::name::{Name, Tag};
use super::{links, tags, Algorithm, Digest};
use crate::registry::rules::{self, Rules};
use crate::storage::layout::distribution as layout;
use crate::storage::Storage;

/// Whether a folder with these children is a repository. distribution 2.8
/// lists folders that hold `_layers`; a repository of indexes alone has
/// only `_manifests`, so either counts.
pub fn holds_repository(children: &[String]) -> bool {
    children.iter().any(|c| c == "_layers" || c == "_manifests")
}

/// Whether anything was ever pushed to the repository.
pub async fn exists(storage: &dyn Storage, name: &Name) -> Result<bool> {
    let children = list_or_empty(storage, &layout::repository(name.as_str())).await?;
    Ok(holds_repository(&children))
}

/// What a repository held when it was deleted: for the events.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub tags: Vec<Tag>,
    pub manifests: Vec<Digest>,
}

/// Deletes the repository from the v2 tree: its tags, its manifests' and
/// blobs' links, its referrers and its uploads in progress. The bytes stay
/// in `blobs/` for the collector, which sweeps what no other repository
/// names. Nothing goes when the `rules` hold one of its tags.
///
/// Where a folder goes at once (local disk) the repository goes at once.
/// Elsewhere (S3) its tags go first, each whole (see [`tags::remove`]),
/// then its manifests, then the rest: a delete cut short leaves a
/// repository that serves what is left of it, and a second one finishes.
/// A push that lands meanwhile makes the repository anew with what it
/// pushed.
pub async fn delete(storage: &dyn Storage, rules: &Rules, name: &Name) -> Result<Removed> {
    let tags = match tags::all(storage, name).await {
        Ok(tags) => tags,
        Err(Error::NameUnknown(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    if let Some(immutable) = rules.first_immutable(name.as_str(), tags.iter().map(String::as_str)) {
        return Err(Error::Immutable(rules::refuse_delete(immutable)));
    }
    let removed = Removed {
        tags: tags.iter().filter_map(|t| Tag::parse(t).ok()).collect(),
        manifests: revisions(storage, name).await?,
    };
    let counted = super::quota::repository_total(storage, rules, name).await?;
    let folder = layout::repository(name.as_str());
    if !storage.removes_folders_at_once() {
        for tag in &removed.tags {
            tags::remove(storage, name, tag).await?;
        }
        for digest in &removed.manifests {
            let link = links::revision(name, digest);
            remove_if_present(storage, link.trim_end_matches("/link")).await?;
        }
    }
    remove_if_present(storage, &folder).await?;
    super::quota::give_back(storage, rules, name, counted).await?;
    Ok(removed)
}

/// The manifests that belong to the repository (a linked revision).
async fn revisions(storage: &dyn Storage, name: &Name) -> Result<Vec<Digest>> {
    let mut found = Vec::new();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let folder = layout::revisions(name.as_str(), algorithm.as_str());
        for hex in list_or_empty(storage, &folder).await? {
            let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) else {
                continue;
            };
            // A link whose bytes are gone still goes with the repository.
            if links::read(storage, &links::revision(name, &digest))
                .await?
                .is_some()
            {
                found.push(digest);
            }
        }
    }
    Ok(found)
}
