//! A v1 image chain as an OCI image: the config made from the v1 json of
//! the chain, the manifest listing its non-empty layers. Built once per
//! top image and kept in its folder (`_v2_manifest`, `_v2_config`,
//! `_v2_layers`): the digest of a tag never changes, after a restart, on
//! another instance, or under a later version of this code that would
//! serialize otherwise.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::layer::{self, LayerError, LayerRecord};
use crate::names::digest::{Algorithm, Digest};
use crate::names::ImageId;
use crate::storage::layout::legacy;
use crate::storage::{Storage, StorageError};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The keys of a v1 json that say how v1 stored the image, not what the
/// image is.
const V1_ONLY: &[&str] = &["id", "parent", "Size", "parent_id", "layer_id", "throwaway"];

/// Why an image has no v2 form.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not there, or its push is not finished.
    #[error("image {0} is not complete")]
    Incomplete(ImageId),
    #[error("image {0} has an ancestry or json that cannot be read")]
    Malformed(ImageId),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The v2 form of the chain an image tops.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image the chain tops: its folder keeps the config.
    pub top: ImageId,
    pub manifest: Bytes,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// The images whose layers the manifest lists, in its order.
    pub layers: Vec<ImageId>,
}

fn not_found_as<T>(
    result: Result<T, StorageError>,
    error: impl FnOnce() -> ImageError,
) -> Result<T, ImageError> {
    match result {
        Err(StorageError::NotFound(_)) => Err(error()),
        other => Ok(other?),
    }
}

/// The kept v2 form of `top`, or `None` when it was never built.
pub async fn kept(storage: &dyn Storage, top: &ImageId) -> Result<Option<Image>, ImageError> {
    let manifest = match storage.get(&legacy::image_v2_manifest(top)).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let layers = match storage.get(&legacy::image_v2_layers(top)).await {
        Ok(bytes) => bytes,
        // Written before the manifest: a crash in between leaves none.
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (Ok(parsed), Ok(ids)) = (
        serde_json::from_slice::<Value>(&manifest),
        serde_json::from_slice::<Vec<String>>(&layers),
    ) else {
        return Ok(None);
    };
    let Some(config_digest) = parsed["config"]["digest"]
        .as_str()
        .and_then(|d| Digest::parse(d).ok())
    else {
        return Ok(None);
    };
    let layers: Option<Vec<ImageId>> = ids.iter().map(|id| ImageId::parse(id)).collect();
    let Some(layers) = layers else {
        return Ok(None);
    };
    Ok(Some(Image {
        top: top.clone(),
        manifest_digest: Digest::of(Algorithm::Sha256, &manifest),
        manifest,
        config_digest,
        layers,
    }))
}

/// The v2 form of the chain `top` tops: kept, or built now and kept.
pub async fn image(storage: &dyn Storage, top: &ImageId) -> Result<Image, ImageError> {
    if let Some(image) = kept(storage, top).await? {
        return Ok(image);
    }
    let built = build(storage, top).await?;
    // The config and the layer list first: a manifest that is kept can
    // always be served whole.
    storage
        .put(&legacy::image_v2_config(top), built.config.clone())
        .await?;
    let ids: Vec<&str> = built.image.layers.iter().map(ImageId::as_str).collect();
    storage
        .put(
            &legacy::image_v2_layers(top),
            Bytes::from(serde_json::to_vec(&ids).unwrap_or_default()),
        )
        .await?;
    storage
        .put(
            &legacy::image_v2_manifest(top),
            built.image.manifest.clone(),
        )
        .await?;
    Ok(built.image)
}

/// The kept config of `top`.
pub async fn config(storage: &dyn Storage, top: &ImageId) -> Result<Bytes, StorageError> {
    storage.get(&legacy::image_v2_config(top)).await
}

struct Built {
    image: Image,
    config: Bytes,
}

/// The ids of the chain, top first.
async fn ancestry(storage: &dyn Storage, top: &ImageId) -> Result<Vec<ImageId>, ImageError> {
    let bytes = not_found_as(storage.get(&legacy::image_ancestry(top)).await, || {
        ImageError::Incomplete(top.clone())
    })?;
    let ids: Vec<String> =
        serde_json::from_slice(&bytes).map_err(|_| ImageError::Malformed(top.clone()))?;
    let ids: Option<Vec<ImageId>> = ids.iter().map(|id| ImageId::parse(id)).collect();
    match ids {
        Some(ids) if ids.first() == Some(top) => Ok(ids),
        _ => Err(ImageError::Malformed(top.clone())),
    }
}

async fn build(storage: &dyn Storage, top: &ImageId) -> Result<Built, ImageError> {
    let mut chain = ancestry(storage, top).await?;
    chain.reverse();
    let mut history = Vec::with_capacity(chain.len());
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    let mut layer_ids = Vec::new();
    let mut top_json = Map::new();
    for id in &chain {
        if storage.exists(&legacy::image_mark(id)).await? {
            return Err(ImageError::Incomplete(id.clone()));
        }
        let bytes = not_found_as(storage.get(&legacy::image_json(id)).await, || {
            ImageError::Incomplete(id.clone())
        })?;
        let Ok(Value::Object(json)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(ImageError::Malformed(id.clone()));
        };
        let record = layer::record(storage, id).await?;
        history.push(history_entry(&json, &record));
        if !record.empty {
            let (digest, size, media_type) = record.served();
            diff_ids.push(Value::String(record.diff_id.clone()));
            layers.push(json!({
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": size,
            }));
            layer_ids.push(id.clone());
        }
        top_json = json;
    }
    let config = config_of(top_json, diff_ids, history);
    let config_digest = Digest::of(Algorithm::Sha256, &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": layers,
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
    Ok(Built {
        image: Image {
            top: top.clone(),
            manifest_digest: Digest::of(Algorithm::Sha256, &manifest),
            manifest,
            config_digest,
            layers: layer_ids,
        },
        config: Bytes::from(config),
    })
}

/// One image of the chain as the config's `history` tells it.
fn history_entry(json: &Map<String, Value>, record: &LayerRecord) -> Value {
    let mut entry = Map::new();
    for key in ["created", "author", "comment"] {
        if let Some(Value::String(s)) = json.get(key) {
            if !s.is_empty() {
                entry.insert(key.to_owned(), Value::String(s.clone()));
            }
        }
    }
    let cmd = json
        .get("container_config")
        .and_then(|c| c.get("Cmd"))
        .and_then(Value::as_array);
    if let Some(cmd) = cmd {
        let words: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        if !words.is_empty() {
            entry.insert("created_by".into(), Value::String(words.join(" ")));
        }
    }
    if record.empty {
        entry.insert("empty_layer".into(), Value::Bool(true));
    }
    Value::Object(entry)
}

/// The top image's json without its v1-only keys, with `rootfs` and
/// `history`, and the platform every v2 client requires. Keys keep the
/// order of the stored json, so the bytes are the same every time.
fn config_of(mut json: Map<String, Value>, diff_ids: Vec<Value>, history: Vec<Value>) -> Vec<u8> {
    for key in V1_ONLY {
        json.remove(*key);
    }
    let architecture = match json.get("architecture").and_then(Value::as_str) {
        None | Some("") => "amd64".to_owned(),
        // docker before 1.0 wrote the kernel's name for it.
        Some("x86_64") => "amd64".to_owned(),
        Some(other) => other.to_owned(),
    };
    json.insert("architecture".into(), Value::String(architecture));
    if json
        .get("os")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        json.insert("os".into(), Value::String("linux".into()));
    }
    json.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    json.insert("history".into(), Value::Array(history));
    serde_json::to_vec(&Value::Object(json)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use std::io::Write;

    fn id(c: char) -> ImageId {
        ImageId::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    async fn put_image(storage: &MemoryStorage, chain: &[ImageId], json: Value, layer: Vec<u8>) {
        let top = &chain[0];
        let ids: Vec<&str> = chain.iter().map(ImageId::as_str).collect();
        storage
            .put(&legacy::image_json(top), Bytes::from(json.to_string()))
            .await
            .unwrap();
        storage
            .put(&legacy::image_layer(top), Bytes::from(layer))
            .await
            .unwrap();
        storage
            .put(
                &legacy::image_ancestry(top),
                Bytes::from(serde_json::to_vec(&ids).unwrap()),
            )
            .await
            .unwrap();
    }

    #[actix_web::test]
    async fn a_chain_becomes_an_image_with_empty_layers_in_history() {
        let storage = MemoryStorage::new();
        let (a, b, c) = (id('a'), id('b'), id('c'));
        put_image(
            &storage,
            std::slice::from_ref(&a),
            json!({"id": a.as_str(), "created": "2013-06-13T14:03:50Z", "comment": "Imported from -",
                   "architecture": "x86_64", "Size": 0}),
            layer_tar(&[]),
        )
        .await;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&layer_tar(&[("etc/x", b"x")])).unwrap();
        let gz = gz.finish().unwrap();
        put_image(
            &storage,
            &[b.clone(), a.clone()],
            json!({"id": b.as_str(), "parent": a.as_str(), "created": "2014-01-01T00:00:00Z",
                   "container_config": {"Cmd": ["/bin/sh", "-c", "echo x > /etc/x"]},
                   "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}}),
            gz.clone(),
        )
        .await;
        put_image(
            &storage,
            &[c.clone(), b.clone(), a.clone()],
            json!({"id": c.as_str(), "parent": b.as_str(), "created": "2014-01-02T00:00:00Z",
                   "author": "me", "os": "linux", "architecture": "arm64",
                   "config": {"Cmd": ["/bin/true"]}, "throwaway": true}),
            layer_tar(&[("bin/true", b"#!")]),
        )
        .await;

        let image = image(&storage, &c).await.unwrap();
        assert_eq!(image.layers, [b.clone(), c.clone()]);
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["layers"][0]["mediaType"], layer::OCI_LAYER_GZIP);
        assert_eq!(
            manifest["layers"][0]["digest"],
            format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&gz))
            )
        );
        assert_eq!(manifest["layers"][1]["mediaType"], layer::OCI_LAYER_TAR);
        let config_bytes = config(&storage, &c).await.unwrap();
        assert_eq!(
            Digest::of(Algorithm::Sha256, &config_bytes),
            image.config_digest
        );
        let doc: Value = serde_json::from_slice(&config_bytes).unwrap();
        for key in V1_ONLY {
            assert!(doc.get(key).is_none(), "{key}");
        }
        assert_eq!(doc["architecture"], "arm64");
        assert_eq!(doc["config"]["Cmd"], json!(["/bin/true"]));
        assert_eq!(doc["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(
            doc["history"],
            json!([
                {"created": "2013-06-13T14:03:50Z", "comment": "Imported from -", "empty_layer": true},
                {"created": "2014-01-01T00:00:00Z", "created_by": "/bin/sh -c echo x > /etc/x"},
                {"created": "2014-01-02T00:00:00Z", "author": "me"},
            ])
        );

        // Kept: the same bytes once more, even if the chain's json changed.
        storage
            .put(&legacy::image_json(&c), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let again = super::image(&storage, &c).await.unwrap();
        assert_eq!(again.manifest, image.manifest);

        // The base alone: a platform, and no layer at all.
        let base = super::image(&storage, &a).await.unwrap();
        let doc: Value = serde_json::from_slice(&config(&storage, &a).await.unwrap()).unwrap();
        assert_eq!(
            (doc["architecture"].as_str(), doc["os"].as_str()),
            (Some("amd64"), Some("linux"))
        );
        assert!(base.layers.is_empty());
    }

    #[actix_web::test]
    async fn unfinished_images_have_no_v2_form() {
        let storage = MemoryStorage::new();
        let a = id('a');
        put_image(
            &storage,
            std::slice::from_ref(&a),
            json!({"id": a.as_str()}),
            layer_tar(&[]),
        )
        .await;
        storage
            .put(&legacy::image_mark(&a), Bytes::from_static(b"true"))
            .await
            .unwrap();
        assert!(matches!(
            image(&storage, &a).await,
            Err(ImageError::Incomplete(_))
        ));
        assert!(matches!(
            image(&storage, &id('f')).await,
            Err(ImageError::Incomplete(_))
        ));
    }
}
