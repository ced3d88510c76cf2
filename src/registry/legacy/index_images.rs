//! The image lists of a repository: the one a push sends the stand-in
//! index (`_index_images`), and the one a central index grants a token
//! (`_images_list`).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{json, parse_json, Error, OrNotFound, Result};
use crate::names::RepositoryName;
use crate::storage::layout::legacy;
use crate::storage::{Storage, StorageError};

/// Whether an index update made the repository or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexUpdate {
    Created,
    Updated,
}

/// Merges the image list of a push (a JSON list of `{"id", "checksum"?}`)
/// into `_index_images` by id, an entry with a checksum winning over one
/// without; the first time, the list is stored as sent. Under the
/// storage's lock on the list, so that concurrent pushes lose no id.
pub async fn update_index_images(
    storage: &dyn Storage,
    name: &RepositoryName,
    body: Bytes,
) -> Result<IndexUpdate> {
    let new = match serde_json::from_slice::<Value>(&body) {
        Err(_) => return Err(Error::JsonDecoding),
        Ok(Value::Array(list)) => list,
        Ok(_) => return Err(Error::InvalidData),
    };
    let path = legacy::index_images(name);
    // The lock serialises this process's updates (and, on local storage,
    // other processes'); `put_if` catches a writer the lock cannot see (S3:
    // another instance), and the merge is then redone on what it wrote.
    let _lock = storage.lock(&path).await?;
    for _ in 0..MERGE_ATTEMPTS {
        let written = match storage.get_versioned(&path).await {
            Ok((bytes, version)) => {
                let old = match parse_json(&bytes) {
                    Some(Value::Array(list)) => list,
                    _ => Vec::new(),
                };
                let merged = json::to_bytes(&merge_image_lists(new.clone(), old));
                storage
                    .put_if(&path, merged, Some(&version))
                    .await?
                    .then_some(IndexUpdate::Updated)
            }
            Err(StorageError::NotFound(_)) => storage
                .put_if(&path, body.clone(), None)
                .await?
                .then_some(IndexUpdate::Created),
            Err(e) => return Err(e.into()),
        };
        if let Some(update) = written {
            return Ok(update);
        }
    }
    Err(StorageError::Unavailable(format!(
        "{path}: changed by other writers {MERGE_ATTEMPTS} times during one update"
    ))
    .into())
}

/// How many times an image list update is merged again when another
/// writer changed the list meanwhile, before it fails (503, retry later).
const MERGE_ATTEMPTS: usize = 16;

fn merge_image_lists(new: Vec<Value>, old: Vec<Value>) -> Value {
    let mut order: Vec<String> = Vec::new();
    let mut merged: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for entry in new.into_iter().chain(old) {
        let Some(id) = entry.get("id").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        let checksum = entry.get("checksum").cloned();
        match merged.get_mut(&id) {
            Some(existing) if existing.contains_key("checksum") => {}
            Some(existing) => {
                if let Some(c) = checksum {
                    existing.insert("checksum".into(), c);
                }
            }
            None => {
                let mut item = Map::new();
                item.insert("id".into(), Value::String(id.clone()));
                if let Some(c) = checksum {
                    item.insert("checksum".into(), c);
                }
                order.push(id.clone());
                merged.insert(id, item);
            }
        }
    }
    Value::Array(
        order
            .into_iter()
            .filter_map(|id| merged.remove(&id).map(Value::Object))
            .collect(),
    )
}

pub async fn index_images(storage: &dyn Storage, name: &RepositoryName) -> Result<Bytes> {
    storage
        .get(&legacy::index_images(name))
        .await
        .or_not_found(Error::IndexImagesNotFound)
}

/// Records the images a central index says a token may push.
pub async fn put_images_list(
    storage: &dyn Storage,
    name: &RepositoryName,
    ids: &[String],
) -> Result<()> {
    storage
        .put(&legacy::images_list(name), json::to_bytes(&json!(ids)))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_lists_merge_by_id_with_checksums_winning() {
        let new = vec![
            json!({"id": "a"}),
            json!({"id": "b", "checksum": "sha256:new"}),
        ];
        let old = vec![
            json!({"id": "a", "checksum": "sha256:old"}),
            json!({"id": "b", "checksum": "sha256:older"}),
            json!({"id": "c"}),
            json!({"no": "id"}),
        ];
        assert_eq!(
            merge_image_lists(new, old),
            json!([
                {"id": "a", "checksum": "sha256:old"},
                {"id": "b", "checksum": "sha256:new"},
                {"id": "c"},
            ])
        );
    }
}
