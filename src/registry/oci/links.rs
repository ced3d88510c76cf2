//! Link files: how distribution's tree says that a blob or a manifest
//! belongs to a repository, or what a tag points at. A link holds the
//! digest as text, `sha256:<hex>`, no newline.

use bytes::Bytes;

use super::digest::Digest;
use super::error::{Error, Result};
use super::name::{Name, Tag};
use crate::storage::layout::distribution as layout;
use crate::storage::{Storage, StorageError};

/// The digest a link names; `None` when there is no link. A link that does
/// not hold a digest is a broken tree, reported as such.
pub async fn read(storage: &dyn Storage, path: &str) -> Result<Option<Digest>> {
    match storage.get(path).await {
        Ok(bytes) => {
            let text = std::str::from_utf8(&bytes).unwrap_or_default().trim();
            Digest::parse(text).map(Some).map_err(|e| {
                Error::Storage(StorageError::Io {
                    path: path.to_owned(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })
            })
        }
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn write(storage: &dyn Storage, path: &str, digest: &Digest) -> Result<()> {
    Ok(storage.put(path, Bytes::from(digest.to_string())).await?)
}

pub fn layer(name: &Name, digest: &Digest) -> String {
    layout::layer_link(name.as_str(), digest.algorithm().as_str(), digest.hex())
}

pub fn revision(name: &Name, digest: &Digest) -> String {
    layout::revision_link(name.as_str(), digest.algorithm().as_str(), digest.hex())
}

pub fn tag_current(name: &Name, tag: &Tag) -> String {
    layout::tag_current_link(name.as_str(), tag.as_str())
}

pub fn tag_index(name: &Name, tag: &Tag, digest: &Digest) -> String {
    layout::tag_index_link(
        name.as_str(),
        tag.as_str(),
        digest.algorithm().as_str(),
        digest.hex(),
    )
}

/// Where the bytes of a blob (or manifest) are, whichever repository.
pub fn blob_data(digest: &Digest) -> String {
    layout::blob_data(digest.algorithm().as_str(), digest.hex())
}

/// Whether the repository may serve blob `digest`: its link is there and
/// so are the bytes (a link left by a collected blob does not count).
pub async fn has_layer(storage: &dyn Storage, name: &Name, digest: &Digest) -> Result<bool> {
    Ok(read(storage, &layer(name, digest)).await?.is_some()
        && storage.exists(&blob_data(digest)).await?)
}

/// Whether manifest `digest` belongs to the repository (and its bytes are
/// there).
pub async fn has_revision(storage: &dyn Storage, name: &Name, digest: &Digest) -> Result<bool> {
    Ok(read(storage, &revision(name, digest)).await?.is_some()
        && storage.exists(&blob_data(digest)).await?)
}
