//! How many bytes a repository holds, for the pages: each blob its
//! manifests reference counted once (config, layers, the manifests'
//! own bytes), as a quota counts it, whether or not a quota covers it;
//! a layer two repositories share counts in both. The v2 tree counts
//! every manifest linked into the repository, tagged or not (an untagged
//! one holds its blobs until it is deleted); the v1 tree, the layers on
//! the ancestry of its tags.
//!
//! Sizes are what the manifests declare (the v2 tree) and what the layer
//! files measure (the v1 tree, and schema 1 manifests, which declare
//! none): no other blob is stat'ed. Counting
//! reads each manifest once: what a manifest references never changes
//! (its digest is its content), nor what a complete v1 image's ancestry
//! holds, so both are kept here, [`CAPACITY`] blobs at most, and a repository
//! counted again reads only its listing and what is new.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::Parsed;
use crate::names::{ImageId, RepositoryName};
use crate::registry::bridge;
use crate::registry::legacy;
use crate::registry::oci::{self, links, manifests, Digest, Name};
use crate::storage::layout::legacy as v1_layout;
use crate::storage::{Storage, StorageError};

/// Blobs kept, counted over every manifest and v1 image kept (each blob
/// some 100 bytes: a few MiB in all, however large the manifests).
pub const CAPACITY: u64 = 65_536;

/// Manifests and v1 images expected to be kept: sizes the cache's table.
const KEPT: usize = 8_192;

/// A kept manifest or v1 image weighs its blobs.
#[derive(Clone)]
struct ByBlobs;

impl quick_cache::Weighter<Held, Arc<[(Blob, u64)]>> for ByBlobs {
    fn weight(&self, _: &Held, held: &Arc<[(Blob, u64)]>) -> u64 {
        held.len() as u64 + 1
    }
}

/// Reads made at once while counting one repository.
const READS_AT_ONCE: usize = 8;

/// The largest manifest read to count it (the API takes no larger).
const MAX_MANIFEST: u64 = 4 << 20;

/// A blob as counted: one key per stored file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Blob {
    Digest(Digest),
    V1Layer(ImageId),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Held {
    Manifest(Digest),
    /// A v1 image and its ancestors.
    Image(ImageId),
}

/// The blobs each manifest or v1 image references, as counted before.
pub struct Sizes {
    known: quick_cache::sync::Cache<Held, Arc<[(Blob, u64)]>, ByBlobs>,
}

impl Default for Sizes {
    fn default() -> Self {
        Self::new()
    }
}

impl Sizes {
    pub fn new() -> Self {
        Sizes {
            known: quick_cache::sync::Cache::with_weighter(KEPT, CAPACITY, ByBlobs),
        }
    }

    /// What repository `name` holds in both trees, in bytes; `None` when
    /// neither tree holds it.
    pub async fn repository(&self, storage: &dyn Storage, name: &Name) -> oci::Result<Option<u64>> {
        let mut blobs: HashSet<Blob> = HashSet::new();
        let mut total = 0u64;
        let mut found = false;
        let mut add = |held: &[(Blob, u64)]| {
            for (blob, size) in held {
                if blobs.insert(blob.clone()) {
                    total = total.saturating_add(*size);
                }
            }
        };
        let linked = manifests::held(storage, name).await?;
        found |= !linked.is_empty();
        let mut counted = stream::iter(linked)
            .map(|digest| self.manifest(storage, digest))
            .buffer_unordered(READS_AT_ONCE);
        while let Some(held) = counted.try_next().await? {
            add(&held);
        }
        drop(counted);
        if let Some(v1) = bridge::v1_name(name) {
            if let Some(images) = v1_tagged(storage, &v1).await? {
                found = true;
                let mut counted = stream::iter(images)
                    .map(|id| self.image(storage, id))
                    .buffer_unordered(READS_AT_ONCE);
                while let Some(held) = counted.try_next().await? {
                    add(&held);
                }
            }
        }
        Ok(found.then_some(total))
    }

    /// Manifest `digest` and what it references (an index: its own bytes;
    /// its children are manifests of the repository too).
    async fn manifest(
        &self,
        storage: &dyn Storage,
        digest: Digest,
    ) -> oci::Result<Arc<[(Blob, u64)]>> {
        let key = Held::Manifest(digest.clone());
        if let Some(held) = self.known.get(&key) {
            return Ok(held);
        }
        let path = links::blob_data(&digest);
        let bytes = match storage.stat(&path).await {
            Ok(info) if info.size > MAX_MANIFEST => None,
            Ok(_) => match storage.get(&path).await {
                Ok(bytes) => Some(bytes),
                Err(StorageError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        // A link whose bytes are gone (or too large to be a manifest)
        // holds nothing; not kept, as the bytes may come.
        let Some(bytes) = bytes else {
            return Ok(Arc::from([]));
        };
        let parsed = Parsed::of(&bytes);
        let mut held = vec![(Blob::Digest(digest), bytes.len() as u64)];
        held.extend(
            parsed
                .config
                .iter()
                .chain(&parsed.layers)
                .filter_map(|d| Some((Blob::Digest(Digest::parse(&d.digest).ok()?), d.size))),
        );
        // Schema 1 declares no sizes: its layers' files say, once each
        // (its `fsLayers` repeat a layer for each empty step).
        let mut layers = schema1_layers(&bytes);
        layers.sort();
        layers.dedup();
        let mut complete = true;
        let measured: Vec<Option<(Blob, u64)>> = stream::iter(layers)
            .map(|layer| async move {
                match storage.stat(&links::blob_data(&layer)).await {
                    Ok(info) => Ok(Some((Blob::Digest(layer), info.size))),
                    Err(StorageError::NotFound(_)) => Ok(None),
                    Err(e) => Err(oci::Error::from(e)),
                }
            })
            .buffered(READS_AT_ONCE)
            .try_collect()
            .await?;
        for layer in measured {
            match layer {
                Some(layer) => held.push(layer),
                None => complete = false,
            }
        }
        let held: Arc<[(Blob, u64)]> = held.into();
        // A layer not there (yet) is counted when it is: not kept.
        if complete {
            self.known.insert(key, held.clone());
        }
        Ok(held)
    }

    /// v1 image `top` and its ancestors, each with its layer's size.
    async fn image(&self, storage: &dyn Storage, top: ImageId) -> oci::Result<Arc<[(Blob, u64)]>> {
        let key = Held::Image(top.clone());
        if let Some(held) = self.known.get(&key) {
            return Ok(held);
        }
        let lineage = legacy::quota::lineage(storage, &top)
            .await
            .map_err(v1_error)?;
        let sizes: Vec<Option<(Blob, u64)>> = stream::iter(lineage)
            .map(|id| async move {
                match storage.stat(&v1_layout::image_layer(&id)).await {
                    Ok(info) => Ok(Some((Blob::V1Layer(id), info.size))),
                    Err(StorageError::NotFound(_)) => Ok(None),
                    Err(e) => Err(oci::Error::from(e)),
                }
            })
            .buffered(READS_AT_ONCE)
            .try_collect()
            .await?;
        // An image whose layers are not all there yet (a push under way)
        // is counted as it is and not kept.
        let complete = sizes.iter().all(Option::is_some);
        let held: Arc<[(Blob, u64)]> = sizes.into_iter().flatten().collect();
        if complete {
            self.known.insert(key, held.clone());
        }
        Ok(held)
    }
}

/// Layers a schema 1 manifest may name and have counted (docker builds
/// at most 127; more is not an image).
const SCHEMA1_MOST_LAYERS: usize = 1000;

/// The layers a schema 1 manifest names (`fsLayers[].blobSum`); none for
/// any other manifest (a field of that name elsewhere is not schema 1's),
/// nor for one naming more than [`SCHEMA1_MOST_LAYERS`].
fn schema1_layers(bytes: &[u8]) -> Vec<Digest> {
    #[derive(serde::Deserialize)]
    struct Schema1 {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "fsLayers")]
        fs_layers: Vec<FsLayer>,
    }
    #[derive(serde::Deserialize)]
    struct FsLayer {
        #[serde(rename = "blobSum")]
        blob_sum: String,
    }
    match serde_json::from_slice::<Schema1>(bytes) {
        Ok(m) if m.schema_version == 1 && m.fs_layers.len() <= SCHEMA1_MOST_LAYERS => m
            .fs_layers
            .iter()
            .filter_map(|l| Digest::parse(&l.blob_sum).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// The images the tags of v1 repository `name` point at, each once;
/// `None` when there is no such repository.
async fn v1_tagged(
    storage: &dyn Storage,
    name: &RepositoryName,
) -> oci::Result<Option<Vec<ImageId>>> {
    let tags = match legacy::tags(storage, name).await {
        Ok(tags) => tags,
        Err(legacy::Error::RepositoryNotFound) => return Ok(None),
        Err(e) => return Err(v1_error(e)),
    };
    let mut images: Vec<ImageId> = tags
        .values()
        .filter_map(|id| ImageId::parse(id.trim()))
        .collect();
    images.sort();
    images.dedup();
    Ok(Some(images))
}

fn v1_error(e: legacy::Error) -> oci::Error {
    match e {
        legacy::Error::Storage(e) => e.into(),
        other => StorageError::Unavailable(other.to_string()).into(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::names::digest::Algorithm;
    use crate::names::Tag;
    use crate::storage::memory::MemoryStorage;

    fn sha(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    async fn blob(storage: &MemoryStorage, bytes: &[u8]) -> Digest {
        let digest = sha(bytes);
        let path = links::blob_data(&digest);
        storage
            .put(&path, Bytes::copy_from_slice(bytes))
            .await
            .unwrap();
        digest
    }

    /// An image manifest of `config` and `layers` (digest, size) linked
    /// into `name`; its digest and size.
    async fn image(
        storage: &MemoryStorage,
        name: &Name,
        config: &(Digest, u64),
        layers: &[(Digest, u64)],
    ) -> (Digest, u64) {
        let descriptor = |(d, size): &(Digest, u64)| json!({"digest": d.to_string(), "size": size});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "config": descriptor(config),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        }))
        .unwrap();
        let digest = blob(storage, &manifest).await;
        links::write(storage, &links::revision(name, &digest), &digest)
            .await
            .unwrap();
        (digest, manifest.len() as u64)
    }

    #[actix_web::test]
    async fn a_repository_counts_each_blob_of_its_manifests_once() {
        let storage = MemoryStorage::new();
        let name = Name::parse("team/app").unwrap();
        let sizes = Sizes::new();
        assert_eq!(sizes.repository(&storage, &name).await.unwrap(), None);

        let config = |n: u64| (sha(format!("config {n}").as_bytes()), 100 + n);
        let shared = (sha(b"base layer"), 10_000);
        let own = (sha(b"app layer"), 2_000);
        let (_, first) = image(&storage, &name, &config(1), std::slice::from_ref(&shared)).await;
        let (_, second) = image(&storage, &name, &config(2), &[shared.clone(), own]).await;
        let expected = first + second + 101 + 102 + 10_000 + 2_000;
        assert_eq!(
            sizes.repository(&storage, &name).await.unwrap(),
            Some(expected)
        );

        // Another repository holding the first image counts it too.
        let other = Name::parse("team/other").unwrap();
        let (_, alone) = image(&storage, &other, &config(1), &[shared]).await;
        assert_eq!(
            sizes.repository(&storage, &other).await.unwrap(),
            Some(alone + 101 + 10_000)
        );
    }

    #[actix_web::test]
    async fn a_deleted_manifest_counts_no_more_and_a_missing_one_nothing() {
        let storage = MemoryStorage::new();
        let name = Name::parse("team/app").unwrap();
        let sizes = Sizes::new();
        let layer = (sha(b"layer"), 5_000);
        let config = (sha(b"config"), 50);
        let (digest, size) = image(&storage, &name, &config, &[layer]).await;
        let total = size + 50 + 5_000;
        assert_eq!(
            sizes.repository(&storage, &name).await.unwrap(),
            Some(total)
        );

        // A link whose manifest bytes are gone holds nothing.
        let gone = sha(b"no such manifest");
        links::write(&storage, &links::revision(&name, &gone), &gone)
            .await
            .unwrap();
        assert_eq!(
            sizes.repository(&storage, &name).await.unwrap(),
            Some(total)
        );

        // The links taken out (as a delete does; the folders may stay, as
        // distribution leaves them): the repository is gone, though what
        // the manifest referenced is kept in memory.
        for d in [&digest, &gone] {
            storage.remove(&links::revision(&name, d)).await.unwrap();
        }
        assert_eq!(sizes.repository(&storage, &name).await.unwrap(), None);
    }

    #[actix_web::test]
    async fn a_schema1_manifest_counts_its_layers_files_once() {
        let storage = MemoryStorage::new();
        let name = Name::parse("old/schema1").unwrap();
        let base = blob(&storage, &[1u8; 3_000]).await;
        let top = blob(&storage, &[2u8; 500]).await;
        let missing = sha(b"not pushed yet");
        let manifest = |layers: &[&Digest]| {
            serde_json::to_vec(&json!({
                "schemaVersion": 1,
                "name": "old/schema1",
                "tag": "latest",
                "fsLayers": layers.iter().map(|d| json!({"blobSum": d.to_string()})).collect::<Vec<_>>(),
                "history": [],
            }))
            .unwrap()
        };
        // Newest first, the base named twice (an empty step shares it).
        let whole = manifest(&[&top, &base, &base]);
        let digest = blob(&storage, &whole).await;
        links::write(&storage, &links::revision(&name, &digest), &digest)
            .await
            .unwrap();
        let sizes = Sizes::new();
        let expected = whole.len() as u64 + 3_000 + 500;
        assert_eq!(
            sizes.repository(&storage, &name).await.unwrap(),
            Some(expected)
        );

        // One naming a layer not there yet counts what is, and later all.
        let partial = manifest(&[&missing, &base]);
        let partial_digest = blob(&storage, &partial).await;
        links::write(
            &storage,
            &links::revision(&name, &partial_digest),
            &partial_digest,
        )
        .await
        .unwrap();
        let counted = expected + partial.len() as u64;
        assert_eq!(
            sizes.repository(&storage, &name).await.unwrap(),
            Some(counted)
        );
        storage
            .put(&links::blob_data(&missing), Bytes::from(vec![3u8; 70]))
            .await
            .unwrap();
        assert_eq!(
            sizes.repository(&storage, &name).await.unwrap(),
            Some(counted + 70)
        );
    }

    #[test]
    fn only_schema_1_names_its_layers_so() {
        let layer = sha(b"elsewhere");
        let doc = |version: u32| {
            serde_json::to_vec(&json!({
                "schemaVersion": version,
                "fsLayers": [{"blobSum": layer.to_string()}],
            }))
            .unwrap()
        };
        assert_eq!(schema1_layers(&doc(1)), std::slice::from_ref(&layer));
        assert!(
            schema1_layers(&doc(2)).is_empty(),
            "a v2 field of that name"
        );
        let many: Vec<_> = (0..=SCHEMA1_MOST_LAYERS)
            .map(|_| json!({"blobSum": layer.to_string()}))
            .collect();
        let too_many = serde_json::to_vec(&json!({"schemaVersion": 1, "fsLayers": many})).unwrap();
        assert!(schema1_layers(&too_many).is_empty());
    }

    #[actix_web::test]
    async fn a_v1_repository_counts_the_layers_on_the_ancestry_of_its_tags() {
        let storage = MemoryStorage::new();
        let v1 = RepositoryName::parse("legacy/app").unwrap();
        let name = bridge::v2_name(&v1).unwrap();
        let base = ImageId::parse(&"a".repeat(64)).unwrap();
        let child = ImageId::parse(&"b".repeat(64)).unwrap();
        let other = ImageId::parse(&"c".repeat(64)).unwrap();
        for (id, layer) in [(&base, 7_000), (&child, 300), (&other, 40)] {
            let path = v1_layout::image_layer(id);
            storage
                .put(&path, Bytes::from(vec![0u8; layer]))
                .await
                .unwrap();
        }
        let ancestry = |ids: &[&ImageId]| {
            Bytes::from(
                serde_json::to_vec(&ids.iter().map(|i| i.as_str()).collect::<Vec<_>>()).unwrap(),
            )
        };
        for (id, lineage) in [
            (&base, ancestry(&[&base])),
            (&child, ancestry(&[&child, &base])),
            (&other, ancestry(&[&other, &base])),
        ] {
            storage
                .put(&v1_layout::image_ancestry(id), lineage)
                .await
                .unwrap();
        }
        for (tag, id) in [("old", &child), ("new", &other), ("again", &other)] {
            let path = v1_layout::tag(&v1, &Tag::parse(tag).unwrap());
            storage
                .put(&path, Bytes::from(id.as_str().to_owned()))
                .await
                .unwrap();
        }
        let sizes = Sizes::new();
        assert_eq!(
            sizes.repository(&storage, &name).await.unwrap(),
            Some(7_000 + 300 + 40),
            "the base both tags share, once"
        );
    }
}
