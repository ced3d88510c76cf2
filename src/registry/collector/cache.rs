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
//!
//! Copies from a source that speaks only v1 (the old Python registry) live
//! in the v1 tree: a v1 repository is a copy as far as its tags have
//! records (`_mirror/v1tags`), and those tags go together, under the same
//! age and size bounds, in the same order. Its size counts the images on
//! the ancestries of those tags. The tags go; the images follow in the
//! same run when no other tag reaches them. A tag pushed here has no
//! record and is never evicted.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::oci::{digests_under, list};
use super::{Result, Run};
use crate::names::ImageId;
use crate::registry::oci::links;
use crate::storage::layout::{
    distribution as layout, legacy as v1_layout, mirror as mirror_layout,
};
use crate::storage::{Storage, StorageError};

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
    repository: Tree,
    used: SystemTime,
    size: u64,
}

/// Where a cached repository lives.
enum Tree {
    /// In the v2 tree, by name.
    V2(String),
    /// In the v1 tree.
    V1(V1Copy),
}

/// A v1 repository's tags copied from a v1 source, as the collector found
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Copy {
    /// `<ns>/<repo>` as the folders name it (escaped).
    pub name: String,
    /// The repository's folder in the v1 tree.
    pub tree: String,
    /// Its folder of records.
    pub records: String,
    pub tags: Vec<CopiedTag>,
}

/// One copied v1 tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedTag {
    /// The tag's file in the v1 tree.
    pub file: String,
    /// Its record, and the record's bytes when the mark read them: a
    /// record written since (the tag read from the source again) keeps the
    /// tag.
    pub record: String,
    pub seen: bytes::Bytes,
    /// The image the tag named then, if it still had a file.
    pub image: Option<String>,
}

/// What goes this run: v2 repositories by name, v1 copies.
#[derive(Default)]
pub(super) struct Evicted {
    pub v2: HashSet<String>,
    pub v1: Vec<V1Copy>,
}

/// The cached repositories among `repositories` (v2), and the v1 copies,
/// that go this run.
pub(super) async fn evicted(run: &mut Run<'_>, repositories: &[String]) -> Result<Evicted> {
    let rules = run.options.cache.clone();
    if rules.max_age.is_none() && rules.max_size.is_none() {
        return Ok(Evicted::default());
    }
    let mut copies = Vec::new();
    for repository in repositories.iter().filter(|r| rules.caches(r)) {
        copies.push(measure(run, repository).await?);
        run.tick().await?;
    }
    copies.extend(v1_copies(run).await?);
    let mut gone = Evicted::default();
    let mut kept_bytes = 0u64;
    // Newest first: what is used now is kept before what was used long ago.
    copies.sort_by_key(|copy| std::cmp::Reverse(copy.used));
    for copy in copies {
        let age = run.started.duration_since(copy.used).unwrap_or_default();
        let in_use = age < run.options.grace_period;
        let too_old = rules.max_age.is_some_and(|max| age >= max);
        let too_big = rules
            .max_size
            .is_some_and(|max| kept_bytes.saturating_add(copy.size) > max);
        if !in_use && (too_old || too_big) {
            match copy.repository {
                Tree::V2(name) => {
                    gone.v2.insert(name);
                }
                Tree::V1(copy) => gone.v1.push(copy),
            }
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
    // Without a size bound, only the age counts: no blob is looked at.
    let layers = match run.options.cache.max_size {
        Some(_) => digests_under(storage, &layout::layers(repository)).await?,
        None => Vec::new(),
    };
    for digest in layers {
        match storage.stat(&links::blob_data(&digest)).await {
            Ok(info) => size = size.saturating_add(info.size),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        run.tick().await?;
    }
    Ok(Copy {
        repository: Tree::V2(repository.to_owned()),
        used,
        size,
    })
}

/// Every v1 repository with copied tags, measured as [`measure`] measures
/// a v2 one.
async fn v1_copies(run: &mut Run<'_>) -> Result<Vec<Copy>> {
    let storage = run.storage;
    let root = mirror_layout::v1_records();
    let mut copies = Vec::new();
    for namespace in list(storage, &root).await? {
        for repository in list(storage, &format!("{root}/{namespace}")).await? {
            let listed = mirror_layout::V1Listed {
                namespace: &namespace,
                repository: &repository,
            };
            copies.push(measure_v1(run, &listed).await?);
            run.tick().await?;
        }
    }
    Ok(copies)
}

async fn measure_v1(run: &mut Run<'_>, listed: &mirror_layout::V1Listed<'_>) -> Result<Copy> {
    let storage = run.storage;
    let mut used = modified(storage, &listed.list_checked())
        .await?
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let checked = listed.tags_checked();
    let mut tags = Vec::new();
    for record in list(storage, &checked).await? {
        let path = format!("{checked}/{record}");
        let Some(when) = modified(storage, &path).await? else {
            continue;
        };
        used = used.max(when);
        let seen = match storage.get(&path).await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let file = listed.tag_file(&record);
        let image = match storage.get(&file).await {
            Ok(id) => Some(String::from_utf8_lossy(&id).trim().to_owned()),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        tags.push(CopiedTag {
            file,
            record: path,
            seen,
            image,
        });
    }
    let mut size = 0u64;
    if run.options.cache.max_size.is_some() {
        let mut counted = HashSet::new();
        for top in tags.iter().filter_map(|t| t.image.as_deref()) {
            for id in ancestry(storage, top).await? {
                let Some(image) = ImageId::parse(&id) else {
                    continue;
                };
                if !counted.insert(id) {
                    continue;
                }
                for path in [
                    v1_layout::image_json(&image),
                    v1_layout::image_layer(&image),
                ] {
                    match storage.stat(&path).await {
                        Ok(info) => size = size.saturating_add(info.size),
                        Err(StorageError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            run.tick().await?;
        }
    }
    Ok(Copy {
        repository: Tree::V1(V1Copy {
            name: format!("{}/{}", listed.namespace, listed.repository),
            tree: listed.tree(),
            records: listed.records(),
            tags,
        }),
        used,
        size,
    })
}

/// The image `top` and its ancestors (only `top` when its ancestry is
/// missing or unreadable).
async fn ancestry(storage: &dyn Storage, top: &str) -> Result<Vec<String>> {
    let Some(id) = ImageId::parse(top) else {
        return Ok(Vec::new());
    };
    match storage.get(&v1_layout::image_ancestry(&id)).await {
        Ok(bytes) => {
            Ok(serde_json::from_slice::<Vec<String>>(&bytes)
                .unwrap_or_else(|_| vec![top.to_owned()]))
        }
        Err(StorageError::NotFound(_)) => Ok(vec![top.to_owned()]),
        Err(e) => Err(e.into()),
    }
}

async fn modified(storage: &dyn Storage, path: &str) -> Result<Option<SystemTime>> {
    match storage.stat(path).await {
        Ok(info) => Ok(Some(info.modified)),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes a cached repository: its manifests and tags first (it is then
/// no repository, and a pull fetches it afresh), then its blob links and
/// the records of its tags. Not the folder itself: it may hold other
/// repositories (`a/b` holds `a/b/c`).
pub(super) async fn remove(storage: &dyn Storage, repository: &str) -> Result<()> {
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

/// Removes a v1 copy's tags: each whose record is as the mark read it
/// (not read from the source again since, nor pushed here, which drops the
/// record) and whose file still names the image it named, then its
/// record. When no record is left, the repository's records go: its next
/// pull asks the source as for a repository never pulled.
pub(super) async fn remove_v1(storage: &dyn Storage, copy: &V1Copy) -> Result<()> {
    for tag in &copy.tags {
        match storage.get(&tag.record).await {
            Ok(now) if now == tag.seen => {}
            Ok(_) | Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        if let Some(image) = &tag.image {
            match storage.get(&tag.file).await {
                Ok(now) if String::from_utf8_lossy(&now).trim() == image => {
                    gone(storage.remove(&tag.file).await)?;
                }
                Ok(_) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        gone(storage.remove(&tag.record).await)?;
    }
    let left = match storage.list(&format!("{}/_tags", copy.records)).await {
        Ok(files) => files.len(),
        Err(StorageError::NotFound(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    if left == 0 {
        gone(storage.remove(&copy.records).await)?;
    }
    Ok(())
}

/// A removal whose target is already gone did its job.
fn gone(result: std::result::Result<(), StorageError>) -> Result<()> {
    match result {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
