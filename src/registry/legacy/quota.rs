//! What a repository of the v1 tree counts in its quota
//! ([`crate::registry::rules::quota`] keeps the usage and refuses): the
//! layer of every image on the ancestry of its tags, each once, by its
//! stored size. An image shared by two repositories counts in both.
//!
//! A v1 push writes images first, which belong to no repository until a
//! tag names them: the tag's PUT is where a push is charged, before the
//! tag is written, so that a refused push leaves no tag (its images go
//! with the next collection, as any untagged image). As in the v2 tree,
//! a marker per counted image (`_counted/<id>` in the repository's
//! folder) is written after the charge; a repository deleted gives back
//! what they count; a tag deleted gives back nothing at once (other tags
//! may share its images) and the collector sets the count right.

use futures_util::future::try_join_all;

use super::{parse_json, Result};
use crate::names::{ImageId, RepositoryName};
use crate::registry::rules::quota::{self, marker, marker_size};
use crate::registry::rules::Rules;
use crate::storage::layout::legacy as layout;
use crate::storage::{Storage, StorageError};

/// Image `id` and its ancestors, as its `ancestry` lists them.
pub async fn lineage(storage: &dyn Storage, id: &ImageId) -> Result<Vec<ImageId>> {
    let listed = match storage.get(&layout::image_ancestry(id)).await {
        Ok(bytes) => parse_json(&bytes),
        Err(StorageError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut ids: Vec<ImageId> = match listed {
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().and_then(ImageId::parse))
            .collect(),
        _ => Vec::new(),
    };
    if !ids.contains(id) {
        ids.insert(0, id.clone());
    }
    Ok(ids)
}

/// Charges a tag of repository `name` pointing at `image` with the layers
/// of its lineage the repository does not count yet; refuses it,
/// charging nothing, past the bound.
pub async fn charge_tag(
    storage: &dyn Storage,
    rules: &Rules,
    name: &RepositoryName,
    image: &ImageId,
) -> Result<()> {
    let Some(quota) = rules.quota(&name.to_string()) else {
        return Ok(());
    };
    // Each at once: on S3 each look is a round trip.
    let lineage = lineage(storage, image).await?;
    let looks = lineage.iter().map(|id| async move {
        if storage.exists(&layout::counted(name, id.as_str())).await? {
            return Ok(None);
        }
        match storage.stat(&layout::image_layer(id)).await {
            Ok(info) => Ok(Some((id, info.size))),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    });
    let new: Vec<(&ImageId, u64)> = try_join_all(looks).await?.into_iter().flatten().collect();
    quota::charge(storage, quota, new.iter().map(|(_, size)| size).sum()).await?;
    try_join_all(new.iter().map(|(id, size)| async move {
        let path = layout::counted(name, id.as_str());
        storage.put_unsynced(&path, marker(*size)).await
    }))
    .await?;
    Ok(())
}

/// What repository `name` counts: each marker's image id and size.
pub async fn counted(storage: &dyn Storage, name: &RepositoryName) -> Result<Vec<(String, u64)>> {
    let files = match storage.list(&layout::counted_all(name)).await {
        Ok(files) => files,
        Err(StorageError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut found = Vec::new();
    for id in files {
        match storage.get(&layout::counted(name, &id)).await {
            Ok(bytes) => found.push((id, marker_size(&bytes))),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
}

/// What repository `name` counts, in bytes (0 where no quota covers it).
pub async fn repository_total(
    storage: &dyn Storage,
    rules: &Rules,
    name: &RepositoryName,
) -> Result<u64> {
    if rules.quota(&name.to_string()).is_none() {
        return Ok(0);
    }
    Ok(counted(storage, name).await?.iter().map(|(_, s)| s).sum())
}

/// Gives `bytes` back to the quota of repository `name`.
pub async fn give_back(
    storage: &dyn Storage,
    rules: &Rules,
    name: &RepositoryName,
    bytes: u64,
) -> Result<()> {
    match rules.quota(&name.to_string()) {
        Some(quota) => Ok(quota::give_back(storage, quota, bytes).await?),
        None => Ok(()),
    }
}
