//! Eviction of the pull-through cache's copies: a cached repository is
//! only a copy of its upstream's, so it may go whole when it has not been
//! used for `mirror_max_age`, or when the cached repositories together
//! hold more than `mirror_max_size` bytes (least recently used first).
//! Pushed repositories are never looked at here.
//!
//! "Used" is the last time content was fetched into the repository (its
//! newest manifest link) or a tag of it was confirmed with the upstream
//! (its `_mirror` record): a hit within a tag's trust time writes nothing,
//! so an image pulled every minute with a trust time of a day counts as
//! used once a day. Nothing used within the grace period goes (a pull may
//! be on its way). A repository's size counts the blobs it links; a layer
//! two cached repositories share counts in both, so the bound is met
//! early rather than late.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::oci::{digests_under, list};
use super::{Result, Run};
use crate::registry::oci::links;
use crate::storage::layout::{distribution as layout, mirror as mirror_layout};
use crate::storage::StorageError;

/// What the cache keeps, from the settings.
#[derive(Debug, Clone, Default)]
pub struct Eviction {
    /// The prefixes cached repositories are stored under.
    pub prefixes: Vec<String>,
    pub max_age: Option<Duration>,
    pub max_size: Option<u64>,
}

impl Eviction {
    pub fn from_settings(mirror: &crate::config::MirrorSettings) -> Self {
        Self {
            prefixes: mirror.upstreams.iter().map(|u| u.prefix.clone()).collect(),
            max_age: mirror.max_age,
            max_size: mirror.max_size,
        }
    }

    fn caches(&self, repository: &str) -> bool {
        self.prefixes.iter().any(|p| {
            repository
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// One cached repository as the eviction sees it.
struct Copy {
    repository: String,
    used: SystemTime,
    size: u64,
}

/// The cached repositories among `repositories` that go this run.
pub(super) async fn evicted(run: &mut Run<'_>, repositories: &[String]) -> Result<HashSet<String>> {
    let rules = run.options.cache.clone();
    if rules.max_age.is_none() && rules.max_size.is_none() {
        return Ok(HashSet::new());
    }
    let mut copies = Vec::new();
    for repository in repositories.iter().filter(|r| rules.caches(r)) {
        copies.push(measure(run, repository).await?);
        run.tick().await?;
    }
    let mut gone = HashSet::new();
    let mut kept_bytes = 0u64;
    // Newest first: what is used now is kept before what was used long ago.
    copies.sort_by_key(|b| std::cmp::Reverse(b.used));
    for copy in copies {
        let age = run.started.duration_since(copy.used).unwrap_or_default();
        let in_use = age < run.options.grace_period;
        let too_old = rules.max_age.is_some_and(|max| age >= max);
        let too_big = rules
            .max_size
            .is_some_and(|max| kept_bytes.saturating_add(copy.size) > max);
        if !in_use && (too_old || too_big) {
            gone.insert(copy.repository);
        } else {
            kept_bytes = kept_bytes.saturating_add(copy.size);
        }
    }
    Ok(gone)
}

async fn measure(run: &mut Run<'_>, repository: &str) -> Result<Copy> {
    let storage = run.storage;
    let mut used = SystemTime::UNIX_EPOCH;
    let mut newer = |modified: SystemTime| used = used.max(modified);
    for algorithm in ["sha256", "sha512"] {
        for hex in list(storage, &layout::revisions(repository, algorithm)).await? {
            match storage
                .stat(&layout::revision_link(repository, algorithm, &hex))
                .await
            {
                Ok(info) => newer(info.modified),
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let checks = mirror_layout::tags_checked(repository);
    for tag in list(storage, &checks).await? {
        match storage.stat(&format!("{checks}/{tag}")).await {
            Ok(info) => newer(info.modified),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut size = 0u64;
    for digest in digests_under(storage, &layout::layers(repository)).await? {
        match storage.stat(&links::blob_data(&digest)).await {
            Ok(info) => size = size.saturating_add(info.size),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        run.tick().await?;
    }
    Ok(Copy {
        repository: repository.to_owned(),
        used,
        size,
    })
}

/// Removes a cached repository: its manifests and tags first (it is then
/// no repository, and a pull fetches it afresh), then its blob links and
/// the records of its tags. Not the folder itself: it may hold other
/// repositories (`a/b` holds `a/b/c`).
pub(super) async fn remove(storage: &dyn crate::storage::Storage, repository: &str) -> Result<()> {
    let folder = layout::repository(repository);
    for part in ["_manifests", "_referrers", "_layers"] {
        match storage.remove(&format!("{folder}/{part}")).await {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match storage
        .remove(&mirror_layout::tags_checked(repository))
        .await
    {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
