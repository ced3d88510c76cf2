//! Images: the three steps of a push (json, layer, checksum) and what a
//! pull reads.

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{json, parse_json, remove_if_present, Error, OrNotFound, Result};
use crate::names::ImageId;
use crate::registry::bridge::{self, layer::Alongside};
use crate::registry::tap::tap;
use crate::storage::layout::legacy;
use crate::storage::{ByteStream, Storage, StorageError};

/// Refuses an image whose push is not finished.
pub async fn require_complete(storage: &dyn Storage, id: &ImageId) -> Result<()> {
    if storage.exists(&legacy::image_mark(id)).await? {
        Err(Error::ImageInProgress)
    } else {
        Ok(())
    }
}

/// Whether the image's json is stored (complete or not).
pub async fn image_exists(storage: &dyn Storage, id: &ImageId) -> Result<bool> {
    Ok(storage.exists(&legacy::image_json(id)).await?)
}

/// First step of a push: the image JSON, stored as sent.
pub async fn put_image_json(storage: &dyn Storage, id: &ImageId, body: Bytes) -> Result<()> {
    let data = match parse_json(&body) {
        Some(Value::Object(map)) if !map.is_empty() => map,
        _ => return Err(Error::InvalidJson),
    };
    match data.get("id") {
        None => return Err(Error::MissingId),
        Some(Value::String(s)) if s == id.as_str() => {}
        Some(_) => return Err(Error::WrongId),
    }
    let parent = match data.get("parent") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let parent = ImageId::parse(s).ok_or(Error::MissingParent)?;
            // Before the check, for the collector (see `collector::records`).
            super::repositories::announce_images(storage, [parent.to_string(), id.to_string()])
                .await?;
            if !image_exists(storage, &parent).await? {
                return Err(Error::MissingParent);
            }
            Some(parent)
        }
        Some(_) => return Err(Error::MissingParent),
    };
    let json_path = legacy::image_json(id);
    let mark_path = legacy::image_mark(id);
    // One step of a push at a time per image (see `put_image_layer`).
    let _lock = storage.lock(&mark_path).await?;
    if storage.exists(&json_path).await? && !storage.exists(&mark_path).await? {
        return Err(Error::ImageExists);
    }
    let mut ancestry = vec![Value::String(id.to_string())];
    if let Some(parent) = &parent {
        let stored = storage
            .get(&legacy::image_ancestry(parent))
            .await
            .or_not_found(Error::MissingParent)?;
        match parse_json(&stored) {
            Some(Value::Array(list)) => ancestry.extend(list),
            _ => ancestry.push(Value::String(parent.to_string())),
        }
    }
    // The mark goes first: whatever happens next, the image is not
    // pullable until its checksum is accepted.
    storage.put(&mark_path, Bytes::from_static(b"true")).await?;
    remove_if_present(storage, &legacy::image_checksum(id)).await?;
    storage.put(&json_path, body).await?;
    storage
        .put(
            &legacy::image_ancestry(id),
            json::to_bytes(&Value::Array(ancestry)),
        )
        .await?;
    Ok(())
}

/// Second step: the layer, streamed to storage while its checksum
/// `sha256(json + "\n" + layer)` is computed, never read back.
///
/// The body streams into a file of its own; only then, under the image's
/// lock, does it become the layer with its checksum, and only if the image
/// is still in progress: an upload that started before the image was
/// completed cannot replace it (`ImageExists`, its file removed), and the
/// stored checksum always belongs to the stored layer.
pub async fn put_image_layer(storage: &dyn Storage, id: &ImageId, body: ByteStream) -> Result<()> {
    let json = storage
        .get(&legacy::image_json(id))
        .await
        .or_not_found(Error::ImageNotFound)?;
    let layer_path = legacy::image_layer(id);
    let mark_path = legacy::image_mark(id);
    if !storage.exists(&mark_path).await? {
        return Err(Error::ImageExists);
    }
    let mut hasher = Sha256::new();
    hasher.update(&json);
    hasher.update(b"\n");
    let (hashed, layer) = tap(body, hasher, |h, bytes| h.update(bytes));
    // The layer's v2 digests, from the same bytes on their way in, on
    // another thread (see `bridge::layer`).
    let (hashed, v2) = Alongside::new(hashed);
    let upload = legacy::image_layer_upload(id, &upload_token());
    match storage.put_stream(&upload, hashed).await {
        Ok(_) => {}
        Err(e) => {
            discard(storage, &upload).await;
            return Err(match e {
                StorageError::Interrupted(e) => {
                    log::info!("upload of layer {id} interrupted: {e}");
                    Error::Interrupted
                }
                e => e.into(),
            });
        }
    }
    let digest = layer.finish().0.finalize();
    let v2 = v2.record().await;
    let checksums = json!([format!("sha256:{}", hex::encode(digest))]);
    let _lock = storage.lock(&mark_path).await?;
    let installed = async {
        // The json may have been replaced while the layer streamed: the
        // checksum must be of the json that is stored now.
        if !storage.exists(&mark_path).await? || storage.get(&legacy::image_json(id)).await? != json
        {
            return Ok(false);
        }
        storage.rename(&upload, &layer_path).await?;
        remove_if_present(storage, &legacy::image_files(id)).await?;
        remove_if_present(storage, &legacy::image_files_failure(id)).await?;
        match &v2 {
            Ok(record) => bridge::layer::save(storage, id, record).await?,
            // Computed again on first use, which says why it fails.
            _ => remove_if_present(storage, &legacy::image_v2_layer(id)).await?,
        }
        storage
            .put(&legacy::image_checksum(id), json::to_bytes(&checksums))
            .await?;
        Ok::<_, Error>(true)
    }
    .await;
    match installed {
        Ok(true) => Ok(()),
        Ok(false) => {
            log::info!("layer of {id} refused: the image was completed or changed meanwhile");
            discard(storage, &upload).await;
            Err(Error::ImageExists)
        }
        Err(e) => {
            discard(storage, &upload).await;
            Err(e)
        }
    }
}

/// A copy of another registry's image (the v1 pull-through cache), stored
/// through the steps of a push: marked in progress, its json and the
/// ancestry its source sent, then the layer streamed through
/// [`put_image_layer`] (hashed on its way, never held in memory), then
/// completed by [`put_image_checksum`] with the checksums the source
/// named, which must match the one computed here. A source that named
/// none: the computed one completes it (the bytes are the source's).
///
/// Any failure (a cut transfer, a checksum that does not match) leaves
/// nothing: the image is removed as if never fetched. Its parents need
/// not be stored: a pull fetches each image it asks for.
pub async fn put_image_copy(
    storage: &dyn Storage,
    id: &ImageId,
    json_body: Bytes,
    ancestry: Bytes,
    layer: ByteStream,
    checksums: &[String],
) -> Result<()> {
    match parse_json(&json_body) {
        Some(Value::Object(map)) => match map.get("id") {
            Some(Value::String(s)) if s == id.as_str() => {}
            Some(_) => return Err(Error::WrongId),
            None => return Err(Error::MissingId),
        },
        _ => return Err(Error::InvalidJson),
    }
    let lineage = match parse_json(&ancestry) {
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().and_then(ImageId::parse))
            .collect::<Option<Vec<_>>>()
            .filter(|ids| ids.first() == Some(id))
            .ok_or(Error::InvalidData)?,
        _ => return Err(Error::InvalidData),
    };
    // Before anything is stored, for the collector (see `collector::records`).
    super::repositories::announce_images(storage, lineage.iter().map(ImageId::to_string)).await?;
    let mark_path = legacy::image_mark(id);
    {
        let _lock = storage.lock(&mark_path).await?;
        if storage.exists(&legacy::image_json(id)).await? && !storage.exists(&mark_path).await? {
            // Completed meanwhile, by another copy or a push.
            return Ok(());
        }
        storage.put(&mark_path, Bytes::from_static(b"true")).await?;
        remove_if_present(storage, &legacy::image_checksum(id)).await?;
        storage.put(&legacy::image_json(id), json_body).await?;
        storage.put(&legacy::image_ancestry(id), ancestry).await?;
    }
    let completed = async {
        put_image_layer(storage, id, layer).await?;
        let computed = checksums_of(storage, id).await?;
        let named = checksums
            .iter()
            .find(|c| computed.contains(c))
            .or_else(|| checksums.first())
            .or_else(|| computed.first())
            .ok_or(Error::ChecksumMismatch)?
            .clone();
        put_image_checksum(storage, id, Some(&named)).await
    }
    .await;
    match completed {
        Ok(()) => Ok(()),
        // Completed by a push or another copy while this one streamed.
        Err(Error::ImageExists | Error::ChecksumNotExpected) => Ok(()),
        Err(e) => {
            discard_image(storage, id).await;
            Err(e)
        }
    }
}

/// The computed checksums of an image's stored layer.
async fn checksums_of(storage: &dyn Storage, id: &ImageId) -> Result<Vec<String>> {
    checksums(storage, id)
        .await
        .or_not_found(Error::ChecksumMismatch)
}

/// Removes an image that is still in progress (a copy that failed):
/// nothing of it stays to be served or listed.
async fn discard_image(storage: &dyn Storage, id: &ImageId) {
    let mark_path = legacy::image_mark(id);
    let Ok(_lock) = storage.lock(&mark_path).await else {
        log::warn!("cannot lock {mark_path} to remove a failed copy");
        return;
    };
    if !matches!(storage.exists(&mark_path).await, Ok(true)) {
        return;
    }
    // The json first (without it the image is not there, on S3 too, where
    // a folder goes key by key), then the folder: every file in it belongs
    // to the failed copy.
    discard(storage, &legacy::image_json(id)).await;
    discard(storage, &legacy::image_dir(id)).await;
}

/// A random name for one layer upload.
fn upload_token() -> String {
    use rand::Rng;
    hex::encode(rand::thread_rng().gen::<[u8; 8]>())
}

/// Removes an upload's own file, which nothing else refers to.
async fn discard(storage: &dyn Storage, path: &str) {
    match storage.remove(path).await {
        Ok(()) | Err(StorageError::NotFound(_)) => {}
        Err(e) => log::warn!("cannot remove {path}: {e}"),
    }
}

/// The checksums computed for an image: a JSON list, or (older data) one
/// bare string.
async fn checksums(storage: &dyn Storage, id: &ImageId) -> Result<Vec<String>, StorageError> {
    let data = storage.get(&legacy::image_checksum(id)).await?;
    Ok(match parse_json(&data) {
        Some(Value::Array(list)) => list
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s],
        _ => vec![String::from_utf8_lossy(&data).trim().to_owned()],
    })
}

/// Last step: the client's checksum; a match completes the image.
pub async fn put_image_checksum(
    storage: &dyn Storage,
    id: &ImageId,
    checksum: Option<&str>,
) -> Result<()> {
    let checksum = checksum.ok_or(Error::ChecksumMissing)?;
    if checksum.is_empty() {
        return Err(Error::ChecksumEmpty);
    }
    if !image_exists(storage, id).await? {
        return Err(Error::ImageNotFound);
    }
    let mark_path = legacy::image_mark(id);
    let _lock = storage.lock(&mark_path).await?;
    if !storage.exists(&mark_path).await? {
        return Err(Error::ChecksumNotExpected);
    }
    let known = checksums(storage, id)
        .await
        .or_not_found(Error::ChecksumMismatch)?;
    if !known.iter().any(|c| c == checksum) {
        log::debug!("checksum mismatch for {id}: got {checksum}, expected {known:?}");
        return Err(Error::ChecksumMismatch);
    }
    remove_if_present(storage, &mark_path).await
}

/// What `GET /v1/images/<id>/json` answers with.
pub struct ImageJson {
    pub json: Bytes,
    pub layer_size: Option<u64>,
    pub checksum: Option<String>,
}

pub async fn image_json(storage: &dyn Storage, id: &ImageId) -> Result<ImageJson> {
    let json = storage
        .get(&legacy::image_json(id))
        .await
        .or_not_found(Error::ImageNotFound)?;
    let layer_size = storage.size(&legacy::image_layer(id)).await.ok();
    let checksum = checksums(storage, id)
        .await
        .ok()
        .and_then(|c| c.into_iter().next());
    Ok(ImageJson {
        json,
        layer_size,
        checksum,
    })
}

pub async fn image_ancestry(storage: &dyn Storage, id: &ImageId) -> Result<Bytes> {
    storage
        .get(&legacy::image_ancestry(id))
        .await
        .or_not_found(Error::ImageNotFound)
}

/// The size of a stored layer.
pub async fn layer_size(storage: &dyn Storage, id: &ImageId) -> Result<u64> {
    storage
        .size(&legacy::image_layer(id))
        .await
        .or_not_found(Error::ImageNotFound)
}

/// The `/files` listing, computed once and kept in `_files`. A layer that
/// cannot be listed (no tar, or over a bound) has its failure kept beside
/// it, in `_files_failure` (`{"error": "format"}` or `{"error": "too
/// large", "reason": "..."}`), so the next request costs one read too.
pub async fn image_files(storage: &dyn Storage, id: &ImageId) -> Result<Bytes> {
    let cache = legacy::image_files(id);
    match storage.get(&cache).await {
        Ok(cached) => return Ok(cached),
        Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let failed = legacy::image_files_failure(id);
    match storage.get(&failed).await {
        Ok(failure) => return Err(cached_failure(&failure)),
        Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let layer = storage
        .get_stream(&legacy::image_layer(id), None)
        .await
        .or_not_found(Error::ImageNotFound)?;
    match super::layer_files::list(layer).await {
        Ok(listing) => {
            storage.put(&cache, listing.clone()).await?;
            Ok(listing)
        }
        Err(Error::LayerFormat) => {
            let failure = serde_json::json!({"error": "format"});
            storage
                .put(&failed, super::json::to_bytes(&failure))
                .await?;
            Err(Error::LayerFormat)
        }
        Err(Error::ListingTooLarge(why)) => {
            let failure = serde_json::json!({"error": "too large", "reason": why});
            storage
                .put(&failed, super::json::to_bytes(&failure))
                .await?;
            Err(Error::ListingTooLarge(why))
        }
        Err(e) => Err(e),
    }
}

/// The error a stored `_files_failure` stands for.
fn cached_failure(stored: &[u8]) -> Error {
    let failure: serde_json::Value = serde_json::from_slice(stored).unwrap_or_default();
    match failure.get("error").and_then(|e| e.as_str()) {
        Some("too large") => Error::ListingTooLarge(
            failure
                .get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or("over a bound")
                .to_owned(),
        ),
        _ => Error::LayerFormat,
    }
}
