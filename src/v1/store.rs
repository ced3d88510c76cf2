//! The v1 model over any [`Storage`]: what an image, a tag, a repository and
//! the stand-in index's image list are, and the rules of their life cycle.
//!
//! An image is pushed in three steps (json, layer, checksum) and stays
//! marked `_inprogress` until the checksum the client computed matches the
//! one we computed while the layer streamed in; only then can it be pulled.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use crate::names::{ImageId, RepositoryName, Tag};
use crate::storage::layout::legacy;
use crate::storage::{ByteStream, Storage, StorageError};

/// Turns "not found" into the error the caller's context calls for.
trait OrNotFound<T> {
    fn or_not_found(self, error: Error) -> Result<T>;
}

impl<T> OrNotFound<T> for Result<T, StorageError> {
    fn or_not_found(self, error: Error) -> Result<T> {
        match self {
            Err(StorageError::NotFound(_)) => Err(error),
            other => Ok(other?),
        }
    }
}

/// Removes a file that may not be there.
async fn remove_if_present(storage: &dyn Storage, path: &str) -> Result<()> {
    match storage.remove(path).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn parse_json(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

fn to_bytes(value: &Value) -> Bytes {
    super::legacy_json::to_bytes(value)
}

// --- Images -------------------------------------------------------------

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
            if !image_exists(storage, &parent).await? {
                return Err(Error::MissingParent);
            }
            Some(parent)
        }
        Some(_) => return Err(Error::MissingParent),
    };
    let json_path = legacy::image_json(id);
    let mark_path = legacy::image_mark(id);
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
            to_bytes(&Value::Array(ancestry)),
        )
        .await?;
    Ok(())
}

/// Second step: the layer, streamed to storage while its checksum
/// `sha256(json + "\n" + layer)` is computed, never read back.
pub async fn put_image_layer(storage: &dyn Storage, id: &ImageId, body: ByteStream) -> Result<()> {
    let json = storage
        .get(&legacy::image_json(id))
        .await
        .or_not_found(Error::ImageNotFound)?;
    let layer_path = legacy::image_layer(id);
    let mark_path = legacy::image_mark(id);
    if storage.exists(&layer_path).await? && !storage.exists(&mark_path).await? {
        return Err(Error::ImageExists);
    }
    let mut hasher = Sha256::new();
    hasher.update(&json);
    hasher.update(b"\n");
    // The body is consumed by the driver; the hasher sees each chunk on
    // its way through. Single-threaded: the request lives on one worker.
    let hasher = Rc::new(RefCell::new(hasher));
    let tap = hasher.clone();
    let hashed: ByteStream = Box::pin(body.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            tap.borrow_mut().update(bytes);
        }
        chunk
    }));
    match storage.put_stream(&layer_path, hashed).await {
        Ok(_) => {}
        Err(StorageError::Interrupted(e)) => {
            log::info!("upload of layer {id} interrupted: {e}");
            return Err(Error::Interrupted);
        }
        Err(e) => return Err(e.into()),
    }
    let digest = Rc::try_unwrap(hasher)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| shared.borrow().clone())
        .finalize();
    let checksums = json!([format!("sha256:{}", hex::encode(digest))]);
    storage
        .put(&legacy::image_checksum(id), to_bytes(&checksums))
        .await?;
    Ok(())
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
    let checksum = checksum.ok_or(Error::ChecksumHeaderMissing)?;
    if checksum.is_empty() {
        return Err(Error::ChecksumEmpty);
    }
    if !image_exists(storage, id).await? {
        return Err(Error::ImageNotFound);
    }
    let mark_path = legacy::image_mark(id);
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

/// The `/files` listing, computed once and kept in `_files`.
pub async fn image_files(storage: &dyn Storage, id: &ImageId) -> Result<Bytes> {
    let cache = legacy::image_files(id);
    match storage.get(&cache).await {
        Ok(cached) => return Ok(cached),
        Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let layer = storage
        .get_stream(&legacy::image_layer(id), None)
        .await
        .or_not_found(Error::ImageNotFound)?;
    let listing = super::layer_files::list(layer).await?;
    storage.put(&cache, listing.clone()).await?;
    Ok(listing)
}

// --- Tags and repositories ------------------------------------------------

/// Every tag of a repository and the image it points to.
pub async fn tags(
    storage: &dyn Storage,
    name: &RepositoryName,
) -> Result<BTreeMap<String, String>> {
    let files = storage
        .list(&legacy::repository_dir(name))
        .await
        .or_not_found(Error::RepositoryNotFound)?;
    let mut tags = BTreeMap::new();
    for file in files {
        let Some(tag) = legacy::tag_from_file_name(&file) else {
            continue;
        };
        // A tag deleted between the listing and the read is simply gone.
        match storage.get(&legacy::tag(name, &tag)).await {
            Ok(image) => {
                tags.insert(
                    tag.to_string(),
                    String::from_utf8_lossy(&image).into_owned(),
                );
            }
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(tags)
}

pub async fn tag(storage: &dyn Storage, name: &RepositoryName, tag: &Tag) -> Result<String> {
    let image = storage
        .get(&legacy::tag(name, tag))
        .await
        .or_not_found(Error::TagNotFound)?;
    Ok(String::from_utf8_lossy(&image).into_owned())
}

/// Points `tag` at an image, recording what the pushing client said of
/// itself in its User-Agent.
pub async fn put_tag(
    storage: &dyn Storage,
    name: &RepositoryName,
    tag: &Tag,
    body: &[u8],
    user_agent: &[(String, String)],
) -> Result<ImageId> {
    let Some(Value::String(image)) = parse_json(body) else {
        return Err(Error::InvalidData);
    };
    if image.is_empty() {
        return Err(Error::InvalidData);
    }
    let image = ImageId::parse(&image).ok_or(Error::ImageNotFound)?;
    if !image_exists(storage, &image).await? {
        return Err(Error::ImageNotFound);
    }
    storage
        .put(&legacy::tag(name, tag), Bytes::from(image.to_string()))
        .await?;
    let props = to_bytes(&tag_properties(user_agent));
    storage
        .put(&legacy::tag_json(name, tag), props.clone())
        .await?;
    if tag.as_str() == "latest" {
        storage.put(&legacy::repository_json(name), props).await?;
    }
    Ok(image)
}

/// `tag<tag>_json`: when and by which client a tag was pushed, keys in the
/// old registry's order.
fn tag_properties(user_agent: &[(String, String)]) -> Value {
    let mut props = Map::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    props.insert("last_update".into(), json!(now));
    // A product named twice: the last one counts, as in a Python dict.
    let find = |product: &str| {
        user_agent
            .iter()
            .rev()
            .find(|(k, _)| k == product)
            .map(|(_, v)| v.clone())
    };
    for (field, product, lower) in [
        ("docker_version", "docker", false),
        ("docker_go_version", "go", false),
        ("arch", "arch", true),
        ("kernel", "kernel", true),
        ("os", "os", true),
    ] {
        if let Some(value) = find(product) {
            let value = if lower { value.to_lowercase() } else { value };
            props.insert(field.to_owned(), Value::String(value));
        }
    }
    Value::Object(props)
}

/// The JSON of a tag that has none stored.
fn default_tag_json() -> Bytes {
    to_bytes(&json!({
        "last_update": null,
        "docker_version": null,
        "docker_go_version": null,
        "arch": "amd64",
        "os": "linux",
        "kernel": null,
    }))
}

pub async fn tag_json(storage: &dyn Storage, name: &RepositoryName, tag: &Tag) -> Result<Bytes> {
    stored_or_default(storage, &legacy::tag_json(name, tag)).await
}

pub async fn repository_json(storage: &dyn Storage, name: &RepositoryName) -> Result<Bytes> {
    stored_or_default(storage, &legacy::repository_json(name)).await
}

async fn stored_or_default(storage: &dyn Storage, path: &str) -> Result<Bytes> {
    match storage.get(path).await {
        Ok(data) if parse_json(&data).is_some() => Ok(data),
        Ok(_) | Err(StorageError::NotFound(_)) => Ok(default_tag_json()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a tag and its JSON (and the repository JSON for `latest`).
pub async fn delete_tag(storage: &dyn Storage, name: &RepositoryName, tag: &Tag) -> Result<()> {
    storage
        .remove(&legacy::tag(name, tag))
        .await
        .or_not_found(Error::TagNotFoundNamed(tag.to_string()))?;
    remove_if_present(storage, &legacy::tag_json(name, tag)).await?;
    if tag.as_str() == "latest" {
        remove_if_present(storage, &legacy::repository_json(name)).await?;
    }
    Ok(())
}

/// Removes every tag and the repository's folder; the images stay (other
/// repositories may share them).
pub async fn delete_repository(storage: &dyn Storage, name: &RepositoryName) -> Result<()> {
    for tag in tags(storage, name).await?.into_keys() {
        match delete_tag(storage, name, &Tag::unchecked(&tag)).await {
            Ok(()) | Err(Error::TagNotFoundNamed(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // Whatever is left (index files, the private flag). In a bucket the
    // folder may be gone with its last tag already.
    remove_if_present(storage, &legacy::repository_dir(name)).await
}

/// Whether the repository's folder exists (it has been pushed to).
pub async fn repository_exists(storage: &dyn Storage, name: &RepositoryName) -> Result<bool> {
    match storage.list(&legacy::repository_dir(name)).await {
        Ok(_) => Ok(true),
        Err(StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn is_private(storage: &dyn Storage, name: &RepositoryName) -> Result<bool> {
    Ok(storage.exists(&legacy::private_flag(name)).await?)
}

/// The width of the search index's `description VARCHAR(100)` column, which
/// the old registry's databases (and other engines than SQLite) enforce.
pub const MAX_DESCRIPTION_CHARS: usize = 100;

/// What a client may set through `PUT .../properties`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Properties {
    pub private: Option<bool>,
    pub description: Option<String>,
}

impl Properties {
    /// `{"access": "private"|"public", "description": "..."}`, either key
    /// optional but not both.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let Some(Value::Object(map)) = parse_json(body) else {
            return Err(Error::InvalidData);
        };
        let private = match map.get("access") {
            None => None,
            Some(Value::String(s)) if s == "private" => Some(true),
            Some(Value::String(s)) if s == "public" => Some(false),
            Some(_) => return Err(Error::InvalidData),
        };
        let description = match map.get("description") {
            None => None,
            Some(Value::String(s)) if s.chars().count() > MAX_DESCRIPTION_CHARS => {
                return Err(Error::DescriptionTooLong(MAX_DESCRIPTION_CHARS))
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Error::InvalidData),
        };
        if private.is_none() && description.is_none() {
            return Err(Error::InvalidData);
        }
        Ok(Self {
            private,
            description,
        })
    }
}

pub async fn set_private(
    storage: &dyn Storage,
    name: &RepositoryName,
    private: bool,
) -> Result<()> {
    let flag = legacy::private_flag(name);
    if private {
        storage.put(&flag, Bytes::new()).await?;
    } else {
        remove_if_present(storage, &flag).await?;
    }
    Ok(())
}

// --- The stand-in index's image list ----------------------------------------

/// Whether an index update made the repository or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexUpdate {
    Created,
    Updated,
}

/// Merges the image list of a push (a JSON list of `{"id", "checksum"?}`)
/// into `_index_images` by id, an entry with a checksum winning over one
/// without; the first time, the list is stored as sent.
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
    let old = match storage.get(&path).await {
        Ok(bytes) => match parse_json(&bytes) {
            Some(Value::Array(list)) => list,
            _ => Vec::new(),
        },
        Err(StorageError::NotFound(_)) => {
            storage.put(&path, body).await?;
            return Ok(IndexUpdate::Created);
        }
        Err(e) => return Err(e.into()),
    };
    storage
        .put(&path, to_bytes(&merge_image_lists(new, old)))
        .await?;
    Ok(IndexUpdate::Updated)
}

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
        .put(&legacy::images_list(name), to_bytes(&json!(ids)))
        .await?;
    Ok(())
}

/// Whether `id` is among the images a central index allowed for `name`.
pub async fn in_images_list(
    storage: &dyn Storage,
    name: &RepositoryName,
    id: &ImageId,
) -> Result<bool> {
    match storage.get(&legacy::images_list(name)).await {
        Ok(bytes) => Ok(matches!(parse_json(&bytes), Some(Value::Array(list))
            if list.iter().any(|v| v.as_str() == Some(id.as_str())))),
        Err(StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
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

    #[test]
    fn tag_properties_come_from_the_user_agent() {
        let ua = [
            ("docker".to_owned(), "1.3.0".to_owned()),
            ("go".to_owned(), "go1.3.3".to_owned()),
            ("kernel".to_owned(), "3.16-Generic".to_owned()),
            ("os".to_owned(), "Linux".to_owned()),
            ("arch".to_owned(), "AMD64".to_owned()),
            ("git-commit".to_owned(), "c78088f".to_owned()),
        ];
        let props = tag_properties(&ua);
        assert_eq!(props["docker_version"], "1.3.0");
        assert_eq!(props["docker_go_version"], "go1.3.3");
        assert_eq!(props["kernel"], "3.16-generic");
        assert_eq!(props["os"], "linux");
        assert_eq!(props["arch"], "amd64");
        assert!(props["last_update"].as_u64().unwrap() > 1_600_000_000);
        let keys: Vec<&String> = props.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "last_update",
                "docker_version",
                "docker_go_version",
                "arch",
                "kernel",
                "os"
            ]
        );
        assert!(props.get("git-commit").is_none());
    }

    #[test]
    fn properties_take_access_and_description() {
        assert_eq!(
            Properties::parse(br#"{"access": "private"}"#).unwrap(),
            Properties {
                private: Some(true),
                description: None
            }
        );
        assert_eq!(
            Properties::parse(br#"{"description": "x"}"#)
                .unwrap()
                .description
                .as_deref(),
            Some("x")
        );
        let long = format!(r#"{{"description": "{}"}}"#, "é".repeat(101));
        assert!(matches!(
            Properties::parse(long.as_bytes()),
            Err(Error::DescriptionTooLong(100))
        ));
        let fits = format!(r#"{{"description": "{}"}}"#, "é".repeat(100));
        assert!(Properties::parse(fits.as_bytes()).is_ok());
        for bad in [&b"[]"[..], b"{}", br#"{"access": "secret"}"#, b"nope"] {
            assert!(Properties::parse(bad).is_err());
        }
    }
}
