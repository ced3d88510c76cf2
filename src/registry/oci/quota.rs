//! What a repository of the v2 tree counts in its quota
//! ([`crate::registry::rules::quota`] keeps the usage and refuses).
//!
//! A repository counts what its manifests reference: each manifest's own
//! bytes, and the config and layers of each image manifest (an index
//! counts its own bytes; its images count as they are pushed). A blob
//! counts once in a repository however many of its manifests name it,
//! and once in each repository that references it (a layer shared by two
//! repositories counts in both, as Harbor counts).
//!
//! A push charges what its repository does not count yet (no `_counted`
//! marker: [`layout::counted`]) before the manifest is linked: a push
//! past the bound is refused before anything of it is served. The
//! markers are written after the charge: a crash between the two, or two
//! pushes of one new layer at once, count a blob twice, never too little.
//! A repository deleted gives back what its markers count; a manifest
//! deleted, its own bytes. The layers a deleted manifest leaves unnamed
//! are given back by the collector, which counts every covered repository
//! as it walks them and sets the usage right.

use futures_util::future::{try_join, try_join_all};

use super::error::Result;
use super::manifests::list_or_empty;
use super::{Digest, Name};
use crate::registry::rules::quota::{self, marker, marker_size};
use crate::registry::rules::Rules;
use crate::storage::layout::distribution as layout;
use crate::storage::{Storage, StorageError};

fn marker_path(name: &Name, digest: &Digest) -> String {
    layout::counted(name.as_str(), digest.algorithm().as_str(), digest.hex())
}

/// Charges a push to repository `name` of what it references that the
/// repository does not count yet: the manifest (`digest`, `size` bytes)
/// and `blobs`, each by its stored size (what a manifest says of a size
/// is the client's word); refuses it, charging nothing, past the bound.
pub async fn charge(
    storage: &dyn Storage,
    rules: &Rules,
    name: &Name,
    (digest, size): (&Digest, u64),
    blobs: &[&Digest],
) -> Result<()> {
    let Some(quota) = rules.quota(name.as_str()) else {
        return Ok(());
    };
    // Each at once: on S3 each look is a round trip.
    let manifest = async {
        let counted = storage.exists(&marker_path(name, digest)).await?;
        Ok::<_, StorageError>((!counted).then(|| (digest.clone(), size)))
    };
    let mut unique: Vec<&Digest> = Vec::with_capacity(blobs.len());
    for blob in blobs {
        if *blob != digest && !unique.contains(blob) {
            unique.push(blob);
        }
    }
    let blobs = unique.into_iter().map(|blob| async move {
        if storage.exists(&marker_path(name, blob)).await? {
            return Ok(None);
        }
        match storage.stat(&super::links::blob_data(blob)).await {
            Ok(info) => Ok(Some((blob.clone(), info.size))),
            // Not stored here (a foreign layer): nothing to count.
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    });
    let (manifest, blobs) = try_join(manifest, try_join_all(blobs)).await?;
    let new: Vec<(Digest, u64)> = manifest
        .into_iter()
        .chain(blobs.into_iter().flatten())
        .collect();
    quota::charge(storage, quota, new.iter().map(|(_, size)| size).sum()).await?;
    try_join_all(new.iter().map(|(digest, size)| async move {
        let path = marker_path(name, digest);
        storage.put_unsynced(&path, marker(*size)).await
    }))
    .await?;
    Ok(())
}

/// Refuses at once an upload of `size` bytes into repository `name` that
/// could not fit whatever else it shares.
pub async fn room_for(storage: &dyn Storage, rules: &Rules, name: &Name, size: u64) -> Result<()> {
    match rules.quota(name.as_str()) {
        Some(quota) => Ok(quota::room_for(storage, quota, size).await?),
        None => Ok(()),
    }
}

/// What repository `name` counts: each marker's digest and size.
pub async fn counted(storage: &dyn Storage, name: &Name) -> Result<Vec<(Digest, u64)>> {
    let mut found = Vec::new();
    let root = layout::counted_all(name.as_str());
    for algorithm in list_or_empty(storage, &root).await? {
        for hex in list_or_empty(storage, &format!("{root}/{algorithm}")).await? {
            let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) else {
                continue;
            };
            match storage.get(&marker_path(name, &digest)).await {
                Ok(bytes) => found.push((digest, marker_size(&bytes))),
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(found)
}

/// What repository `name` counts, in bytes (0 where no quota covers
/// it): read before it is deleted whole, given back after.
pub async fn repository_total(storage: &dyn Storage, rules: &Rules, name: &Name) -> Result<u64> {
    if rules.quota(name.as_str()).is_none() {
        return Ok(0);
    }
    Ok(counted(storage, name).await?.iter().map(|(_, s)| s).sum())
}

/// Takes the marker of manifest `digest` out of repository `name`, once
/// the manifest has left it; returns the size it counted (0 where none),
/// for [`give_back`]. What it referenced waits for the collector: another
/// manifest may name it.
pub async fn take_manifest(
    storage: &dyn Storage,
    rules: &Rules,
    name: &Name,
    digest: &Digest,
) -> Result<u64> {
    if rules.quota(name.as_str()).is_none() {
        return Ok(0);
    }
    let path = marker_path(name, digest);
    let size = match storage.get(&path).await {
        Ok(bytes) => marker_size(&bytes),
        Err(StorageError::NotFound(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    match storage.remove(&path).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(size),
        Err(e) => Err(e.into()),
    }
}

/// Gives `bytes` back to the quota of repository `name`.
pub async fn give_back(
    storage: &dyn Storage,
    rules: &Rules,
    name: &Name,
    bytes: u64,
) -> Result<()> {
    match rules.quota(name.as_str()) {
        Some(quota) => Ok(quota::give_back(storage, quota, bytes).await?),
        None => Ok(()),
    }
}
