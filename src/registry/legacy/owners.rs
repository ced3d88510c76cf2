//! Which v1 images a repository owns, for the auth gate of the image routes
//! (`/v1/images/<id>/...` name no repository): a token reaches an image only
//! through a repository it may act on.
//!
//! A repository owns the images its `_index_images` lists, the images its
//! tags point to, and every ancestor of those (an ancestor shared by two
//! repositories belongs to both). Its push list is `_index_images` alone:
//! a docker push lists every image before it sends any.
//!
//! Working that out reads a few files (the list, the tags, an ancestry per
//! tagged or listed image not already reached), and a v1 pull asks json,
//! ancestry and layer of every image: so the answer is kept in memory per
//! repository. What this process writes to a repository drops its entry
//! (the v1 handlers publish an [`Event`] for each write); what another
//! process writes is seen when a miss is rechecked ([`RECHECK`] after the
//! entry was made) or when the entry expires ([`TTL`]). A miss never
//! denies on an entry older than [`RECHECK`], so a fresh push elsewhere is
//! at most that late; an image taken out of a repository elsewhere stays
//! reachable through it for at most [`TTL`].

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::{image_ancestry, index_images, tags, Error, Result};
use crate::events::{Event, Subscriber};
use crate::names::{ImageId, RepositoryName};
use crate::storage::Storage;

/// How long an entry answers without a storage read.
pub const TTL: Duration = Duration::from_secs(60);
/// How old an entry must be before a miss reads the storage again.
pub const RECHECK: Duration = Duration::from_secs(1);
/// The most repositories remembered.
const MAX_ENTRIES: usize = 4096;
/// The most image ids remembered over all entries (about 100 bytes each).
const MAX_IDS: usize = 200_000;
/// The most ids one repository's answer holds; beyond, the rest is
/// ignored (and the repository reaches fewer images than it owns).
const MAX_IDS_PER_REPOSITORY: usize = 50_000;
/// The most ancestry files one answer reads.
const MAX_ANCESTRY_READS: usize = 2_000;
/// The most answers worked out at once: a flood of refused requests
/// waits rather than multiplies storage reads.
const MAX_COMPUTING: usize = 8;
/// Buckets of the write counters (see [`Owners::forget`]).
const EPOCHS: usize = 64;

/// What one repository owns.
struct Owned {
    /// `_index_images`: what a push may send.
    listed: HashSet<String>,
    /// The listed and tagged images and their ancestors: what a pull may
    /// read.
    reached: HashSet<String>,
    made: Instant,
}

impl Owned {
    fn holds(&self, id: &ImageId, push: bool) -> bool {
        if push {
            self.listed.contains(id.as_str())
        } else {
            self.reached.contains(id.as_str()) || self.listed.contains(id.as_str())
        }
    }

    fn size(&self) -> usize {
        self.listed.len() + self.reached.len()
    }
}

/// The per-repository answers, bounded in entries and ids.
pub struct Owners {
    entries: Mutex<HashMap<RepositoryName, Arc<Owned>>>,
    /// Bumped when a repository hashing to the bucket is written: an answer
    /// worked out across a write is used once, not kept.
    epochs: [AtomicU64; EPOCHS],
    computing: tokio::sync::Semaphore,
}

impl Default for Owners {
    fn default() -> Self {
        Self::new()
    }
}

impl Owners {
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            epochs: std::array::from_fn(|_| AtomicU64::new(0)),
            computing: tokio::sync::Semaphore::new(MAX_COMPUTING),
        }
    }

    /// Whether image `id` belongs to one of `repositories`: listed by it
    /// (`push`), or listed, tagged or an ancestor of either (a pull).
    pub async fn reaches(
        &self,
        storage: &dyn Storage,
        repositories: &[RepositoryName],
        id: &ImageId,
        push: bool,
    ) -> Result<bool> {
        // From memory first: the hot path reads nothing.
        let mut to_read = Vec::new();
        for name in repositories {
            match self.cached(name) {
                Some(owned) if owned.made.elapsed() < TTL && owned.holds(id, push) => {
                    return Ok(true)
                }
                Some(owned) if owned.made.elapsed() < RECHECK => {}
                _ => to_read.push(name),
            }
        }
        for name in to_read {
            if self.work_out(storage, name).await?.holds(id, push) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Drops what is known of `name`: it was just written.
    pub fn forget(&self, name: &RepositoryName) {
        let mut entries = self.lock();
        entries.remove(name);
        self.epoch(name).fetch_add(1, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RepositoryName, Arc<Owned>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn epoch(&self, name: &RepositoryName) -> &AtomicU64 {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        &self.epochs[(h.finish() % EPOCHS as u64) as usize]
    }

    fn cached(&self, name: &RepositoryName) -> Option<Arc<Owned>> {
        self.lock().get(name).cloned()
    }

    async fn work_out(&self, storage: &dyn Storage, name: &RepositoryName) -> Result<Arc<Owned>> {
        // The semaphore is never closed: `None` cannot happen.
        let _permit = self.computing.acquire().await.ok();
        // Another request may have worked it out while this one waited.
        if let Some(owned) = self.cached(name) {
            if owned.made.elapsed() < RECHECK {
                return Ok(owned);
            }
        }
        let epoch = self.epoch(name).load(Ordering::SeqCst);
        let owned = Arc::new(read_owned(storage, name).await?);
        let mut entries = self.lock();
        // A write during the reads may be missing from them: this answer
        // serves the request that asked, and the next one reads again.
        if self.epoch(name).load(Ordering::SeqCst) == epoch {
            entries.insert(name.clone(), owned.clone());
            shrink(&mut entries);
        }
        Ok(owned)
    }
}

/// Drops the oldest entries until both bounds hold.
fn shrink(entries: &mut HashMap<RepositoryName, Arc<Owned>>) {
    let mut ids: usize = entries.values().map(|o| o.size()).sum();
    while entries.len() > MAX_ENTRIES || ids > MAX_IDS {
        let Some(oldest) = entries
            .iter()
            .min_by_key(|(_, o)| o.made)
            .map(|(n, _)| n.clone())
        else {
            return;
        };
        if let Some(o) = entries.remove(&oldest) {
            ids -= o.size();
        }
    }
}

/// Reads what `name` owns from the storage.
async fn read_owned(storage: &dyn Storage, name: &RepositoryName) -> Result<Owned> {
    let made = Instant::now();
    let listed: Vec<String> = match index_images(storage, name).await {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Array(list)) => list
                .iter()
                .filter_map(|e| e.get("id").and_then(Value::as_str))
                .filter(|id| ImageId::parse(id).is_some())
                .take(MAX_IDS_PER_REPOSITORY)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        },
        Err(Error::IndexImagesNotFound) => Vec::new(),
        Err(e) => return Err(e),
    };
    let tagged: Vec<String> = match tags(storage, name).await {
        Ok(tags) => tags.into_values().collect(),
        Err(Error::RepositoryNotFound) => Vec::new(),
        Err(e) => return Err(e),
    };
    // Tags point at the tops, whose ancestries hold most of the list: read
    // them first, and skip any image an ancestry already brought in (its
    // own ancestors came with it).
    let mut reached: HashSet<String> = HashSet::new();
    let mut reads = 0;
    for top in tagged.iter().chain(&listed) {
        if reached.len() >= MAX_IDS_PER_REPOSITORY {
            break;
        }
        let Some(id) = ImageId::parse(top) else {
            continue;
        };
        if reached.contains(id.as_str()) {
            continue;
        }
        if reads == MAX_ANCESTRY_READS {
            log::warn!(
                "{name}: more than {MAX_ANCESTRY_READS} images to trace; the ancestors of the rest \
                 are not counted as the repository's"
            );
            reached.insert(id.as_str().to_owned());
            continue;
        }
        reads += 1;
        match image_ancestry(storage, &id).await {
            Ok(bytes) => {
                if let Ok(Value::Array(ids)) = serde_json::from_slice::<Value>(&bytes) {
                    reached.extend(
                        ids.iter()
                            .filter_map(Value::as_str)
                            .filter(|a| ImageId::parse(a).is_some())
                            .map(str::to_owned),
                    );
                }
            }
            // Listed, not pushed yet (or a tag at an image gone).
            Err(Error::ImageNotFound) => {}
            Err(e) => return Err(e),
        }
        reached.insert(id.as_str().to_owned());
    }
    Ok(Owned {
        listed: listed.into_iter().collect(),
        reached,
        made,
    })
}

/// Every write to a repository (its list, a tag, a deletion) drops what
/// is known of it.
#[async_trait(?Send)]
impl Subscriber for Owners {
    async fn on_event(&self, event: &Event) {
        let name = match event {
            Event::RepositoryCreated { name, .. }
            | Event::RepositoryUpdated { name, .. }
            | Event::RepositoryDeleted { name }
            | Event::TagPushed { name, .. }
            | Event::TagDeleted { name, .. } => name,
        };
        self.forget(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Tag;
    use crate::storage::layout::legacy;
    use crate::storage::local::LocalStorage;
    use bytes::Bytes;

    fn id(c: char) -> ImageId {
        ImageId::parse(&c.to_string().repeat(64)).unwrap()
    }

    async fn put(storage: &dyn Storage, path: &str, value: Value) {
        storage
            .put(path, Bytes::from(value.to_string()))
            .await
            .unwrap();
    }

    #[actix_web::test]
    async fn a_repository_owns_its_list_its_tags_and_their_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().to_str().unwrap()).unwrap();
        let storage: &dyn Storage = &storage;
        let tag = |t: &str| Tag::parse(t).unwrap();
        let app = RepositoryName::parse("alice/app").unwrap();
        let (base, top, listed_only, other) = (id('a'), id('b'), id('c'), id('d'));
        put(
            storage,
            &legacy::image_ancestry(&top),
            serde_json::json!([top.as_str(), base.as_str()]),
        )
        .await;
        // A tag file holds the bare id.
        let put_tag = |name: &RepositoryName, t: &str, image: &ImageId| {
            let (path, id) = (legacy::tag(name, &tag(t)), image.as_str().to_owned());
            async move { storage.put(&path, Bytes::from(id)).await.unwrap() }
        };
        put_tag(&app, "latest", &top).await;
        put(
            storage,
            &legacy::index_images(&app),
            serde_json::json!([{"id": listed_only.as_str()}]),
        )
        .await;
        let owners = Owners::new();
        let apps = [app.clone()];
        for (image, pull, push) in [
            (&top, true, false),
            (&base, true, false),
            (&listed_only, true, true),
            (&other, false, false),
        ] {
            assert_eq!(
                owners.reaches(storage, &apps, image, false).await.unwrap(),
                pull
            );
            assert_eq!(
                owners.reaches(storage, &apps, image, true).await.unwrap(),
                push
            );
        }
        // A push lists `other`: this process hears of it and reads again.
        put(
            storage,
            &legacy::index_images(&app),
            serde_json::json!([{"id": other.as_str()}]),
        )
        .await;
        assert!(
            !owners.reaches(storage, &apps, &other, false).await.unwrap(),
            "cached"
        );
        owners
            .on_event(&Event::RepositoryUpdated {
                name: app.clone(),
                description: None,
            })
            .await;
        assert!(owners.reaches(storage, &apps, &other, true).await.unwrap());
        // An entry older than RECHECK reads again on a miss, whoever wrote.
        let bob = RepositoryName::parse("bob/secret").unwrap();
        let bobs = [bob.clone()];
        assert!(!owners.reaches(storage, &bobs, &base, false).await.unwrap());
        put_tag(&bob, "v1", &top).await;
        tokio::time::sleep(RECHECK).await;
        assert!(owners.reaches(storage, &bobs, &base, false).await.unwrap());
    }

    #[test]
    fn the_oldest_entries_go_first() {
        let mut entries = HashMap::new();
        let start = Instant::now();
        for i in 0..(MAX_ENTRIES + 2) {
            let name = RepositoryName::parse(&format!("ns/r{i}")).unwrap();
            entries.insert(
                name,
                Arc::new(Owned {
                    listed: HashSet::new(),
                    reached: HashSet::new(),
                    made: start + Duration::from_millis(i as u64),
                }),
            );
        }
        shrink(&mut entries);
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert!(!entries.contains_key(&RepositoryName::parse("ns/r0").unwrap()));
        assert!(!entries.contains_key(&RepositoryName::parse("ns/r1").unwrap()));
        assert!(entries.contains_key(&RepositoryName::parse("ns/r2").unwrap()));
    }
}
