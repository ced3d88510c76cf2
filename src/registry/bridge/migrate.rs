//! `registry-v1 migrate`: every v1 tag written into the v2 tree for good,
//! as the bridge serves it (same manifest, same digests), so that any v2
//! registry on the same storage (distribution 2.8 among them) serves it.
//!
//! Layers are linked, not rewritten: the v2 blob is the v1 `layer` file
//! itself (a hard link on local disk, a server-side copy on S3), except an
//! xz layer, whose tar is written out (v2 clients read no xz). Blobs go
//! first, the manifest and its tag last, each file whole: a run killed at
//! any point leaves a tree that serves what it served before, and the next
//! run finishes the work. The v1 tree is only read (and its `_v2*` records
//! written, as a pull would).
//!
//! Where the v1 tag goes: `library/x` becomes the v2 `x` (what docker 1.x
//! users typed, and what today's docker asks for); every other name keeps
//! its spelling. A tag the v2 tree already has is left alone (the v2 push
//! wins, as when serving).

use std::collections::BTreeMap;

use super::layer::Compression;
use super::{image, layer, tagged_image, v1_repositories, xz_stream};
use crate::names::{ImageId, RepositoryName};
use crate::registry::legacy;
use crate::registry::oci::{self, blobs, links, manifests, Digest, Name, Reference, Tag};
use crate::storage::layout::legacy as v1_layout;
use crate::storage::{Storage, StorageError};

/// The v2 name a v1 repository is migrated to.
pub fn target(name: &RepositoryName) -> Option<Name> {
    if name.namespace() == RepositoryName::DEFAULT_NAMESPACE {
        if let Ok(short) = Name::parse(name.repository()) {
            return Some(short);
        }
    }
    super::v2_name(name)
}

/// What a run did, or (dry run) would do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub repositories: u64,
    /// Tags written into the v2 tree by this run.
    pub migrated: u64,
    /// Tags the v2 tree already had with the bridge's digest.
    pub already: u64,
    /// Distinct v1 images behind the tags migrated or checked.
    pub images: u64,
    /// Bytes of layers the v2 tree now serves for those tags.
    pub bytes: u64,
    /// Names and tags left out, and why.
    pub skipped: Vec<(String, String)>,
    /// Tags whose v2 copy does not pull with the bridge's digests.
    pub mismatched: Vec<String>,
}

/// Migrates (or, with `dry_run`, only looks at) every v1 tag.
pub async fn migrate(
    storage: &dyn Storage,
    dry_run: bool,
    progress: &indicatif::ProgressBar,
) -> Result<Report, StorageError> {
    let mut report = Report::default();
    let mut refused = Vec::new();
    let repositories = v1_repositories(storage, |name| refused.push(name)).await?;
    for name in refused {
        report.skipped.push((
            name.to_string(),
            "the name is not a valid v2 repository name (lowercase letters, digits, \
             separators)"
                .into(),
        ));
    }
    progress.set_length(repositories.len() as u64);
    let mut images = std::collections::BTreeSet::new();
    for (_, v1) in repositories {
        progress.inc(1);
        progress.set_message(v1.to_string());
        let Some(v2) = target(&v1) else {
            report
                .skipped
                .push((v1.to_string(), "no v2 name for it".into()));
            continue;
        };
        let tags: BTreeMap<String, String> = match legacy::tags(storage, &v1).await {
            Ok(tags) => tags,
            Err(legacy::Error::Storage(e)) => return Err(e),
            Err(_) => continue,
        };
        report.repositories += 1;
        for (tag, id) in tags {
            let what = format!("{v1}:{tag}");
            let Ok(v2_tag) = Tag::parse(&tag) else {
                report
                    .skipped
                    .push((what, "the tag is not a valid v2 tag".into()));
                continue;
            };
            let Some(id) = ImageId::parse(id.trim()) else {
                report
                    .skipped
                    .push((what, "the tag names no image id".into()));
                continue;
            };
            let image = match tagged_image(storage, &v1, &id).await {
                Ok(image) => image,
                Err(super::ImageError::Storage(e)) => return Err(e),
                Err(e) => {
                    report.skipped.push((what, e.to_string()));
                    continue;
                }
            };
            let current = links::read(storage, &links::tag_current(&v2, &v2_tag))
                .await
                .map_err(storage_error)?;
            match current {
                Some(d) if d == image.manifest_digest => report.already += 1,
                Some(d) => {
                    report.skipped.push((
                        what,
                        format!("the v2 tree's {v2}:{tag} is another manifest ({d}); kept"),
                    ));
                    continue;
                }
                None if dry_run => report.migrated += 1,
                None => {
                    write(storage, &v2, &v2_tag, &image).await?;
                    report.migrated += 1;
                }
            }
            for layer_id in &image.layers {
                if images.insert(layer_id.clone()) {
                    if let Some(record) = layer::kept(storage, layer_id).await? {
                        report.bytes += record.served().1;
                    }
                }
            }
            images.insert(id.clone());
            if !dry_run && !verify(storage, &v2, &v2_tag, &image).await? {
                report.mismatched.push(format!("{v2}:{tag}"));
            }
        }
    }
    report.images = images.len() as u64;
    Ok(report)
}

fn storage_error(e: oci::Error) -> StorageError {
    match e {
        oci::Error::Storage(e) => e,
        other => StorageError::Unavailable(other.to_string()),
    }
}

/// The blobs, then the manifest and its tag.
async fn write(
    storage: &dyn Storage,
    v2: &Name,
    tag: &Tag,
    image: &image::Image,
) -> Result<(), StorageError> {
    for id in &image.layers {
        let Some(record) = layer::kept(storage, id).await? else {
            return Err(StorageError::NotFound(v1_layout::image_v2_layer(id)));
        };
        let (digest, _, _) = record.served();
        let data = links::blob_data(&digest);
        if !storage.exists(&data).await? {
            let layer = v1_layout::image_layer(id);
            if record.compression == Compression::Xz {
                write_xz_tar(storage, &layer, &data, &digest).await?;
            } else {
                storage.copy(&layer, &data).await?;
            }
        }
        blobs::link(storage, v2, &digest)
            .await
            .map_err(storage_error)?;
    }
    let config_data = links::blob_data(&image.config_digest);
    if !storage.exists(&config_data).await? {
        let config = image::config(storage, &image.top).await?;
        storage.put(&config_data, config).await?;
    }
    blobs::link(storage, v2, &image.config_digest)
        .await
        .map_err(storage_error)?;
    manifests::put(
        storage,
        v2,
        &Reference::Tag(tag.clone()),
        Some(image::OCI_MANIFEST),
        image.manifest.clone(),
    )
    .await
    .map_err(storage_error)?;
    Ok(())
}

/// The tar inside an xz layer, written as the blob `digest`; refused (and
/// not left behind) when its bytes do not have that digest.
async fn write_xz_tar(
    storage: &dyn Storage,
    layer: &str,
    data: &str,
    digest: &Digest,
) -> Result<(), StorageError> {
    use sha2::Digest as _;
    let (body, sha) = crate::registry::tap::tap(
        xz_stream(storage, layer).await?,
        sha2::Sha256::new(),
        |h, bytes| h.update(bytes),
    );
    // Beside the blob, then moved into place: the blob path holds the
    // right bytes or none.
    // A temporary file's name, which listings skip and the start-up sweep
    // removes should a crash leave it.
    let folder = data.rsplit_once('/').map_or(data, |(folder, _)| folder);
    let upload = format!("{folder}/.registry-v1-tmp-xz-tar");
    storage.put_stream(&upload, body).await?;
    let written = format!("sha256:{}", hex::encode(sha.finish().0.finalize()));
    if written != digest.to_string() {
        let _ = storage.remove(&upload).await;
        return Err(StorageError::Io {
            path: layer.to_owned(),
            source: std::io::Error::other(format!(
                "the tar inside the xz layer has digest {written}, not {digest}"
            )),
        });
    }
    storage.rename(&upload, data).await
}

/// Whether the v2 tree now serves the tag with the bridge's digests: the
/// manifest's, and each blob's, with the sizes the manifest gives.
async fn verify(
    storage: &dyn Storage,
    v2: &Name,
    tag: &Tag,
    image: &image::Image,
) -> Result<bool, StorageError> {
    let stored = match manifests::get(storage, v2, &Reference::Tag(tag.clone())).await {
        Ok(stored) => stored,
        Err(oci::Error::Storage(e)) => return Err(e),
        Err(_) => return Ok(false),
    };
    if stored.digest != image.manifest_digest || stored.bytes != image.manifest {
        return Ok(false);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&stored.bytes).unwrap_or_default();
    let descriptors = manifest["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain(std::iter::once(manifest["config"].clone()));
    for descriptor in descriptors {
        let Some(digest) = descriptor["digest"]
            .as_str()
            .and_then(|d| Digest::parse(d).ok())
        else {
            return Ok(false);
        };
        match blobs::stat(storage, v2, &digest).await {
            Ok(info) if Some(info.size) == descriptor["size"].as_u64() => {}
            Ok(_) => return Ok(false),
            Err(oci::Error::Storage(e)) => return Err(e),
            Err(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// The command: storage from the settings, the report on standard output;
/// fails (exit status 1) when a migrated tag does not verify.
pub async fn command(settings: crate::config::Settings, dry_run: bool) -> anyhow::Result<()> {
    let storage = crate::storage::from_settings(&settings).await?;
    let progress = super::digests::progress_bar(if dry_run {
        "looking at v1 repositories"
    } else {
        "migrating v1 repositories"
    });
    let report = migrate(storage.as_ref(), dry_run, &progress).await?;
    progress.finish_and_clear();
    let verb = if dry_run { "would migrate" } else { "migrated" };
    println!(
        "{} repositories: {verb} {} tags, {} already in the v2 tree; {} images, {} bytes of layers",
        report.repositories, report.migrated, report.already, report.images, report.bytes
    );
    for (what, why) in &report.skipped {
        println!("skipped {what}: {why}");
    }
    for tag in &report.mismatched {
        println!("NOT VERIFIED {tag}: the v2 tree does not serve the bridge's digests");
    }
    if !report.mismatched.is_empty() {
        anyhow::bail!("{} tags did not verify", report.mismatched.len());
    }
    if !dry_run {
        println!("verified: every migrated tag pulls with the bridge's digests");
    }
    Ok(())
}
