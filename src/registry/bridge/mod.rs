//! The v1-to-v2 bridge: v1 tags served to v2 clients from the v1 tree as
//! it is, with no migration step, and the rule that names a v1 repository
//! in v2 words.
//!
//! A v1 tag names the top image of a chain; its v2 form (an OCI manifest
//! and config, see [`image`]) is built from the chain's json and the
//! digests of its layers ([`layer`]), once, and kept in the top image's
//! folder. Each repository keeps which image serves a digest it handed out
//! (`_v2_digests`), so that `GET /v2/<name>/blobs/<digest>` finds the v1
//! layer or config behind it. An entry whose image is gone (collected)
//! names nothing: 404, as any unknown digest.
//!
//! **Names.** docker 1.x stored a one-part name `x` as `library/x`; today's
//! clients ask for `/v2/x/...`. A v2 name is read as a v1 name the way v1
//! reads a path ([`v1_name`]): `x` and `library/x` both reach the v1
//! `library/x`, `a/b` reaches `a/b`, `a/b/c` reaches namespace `a`,
//! repository `b/c`. The search index and the events name v2 repositories
//! the same way, so `docker search` lists a v2 `x` as `library/x`.
//!
//! **Both trees.** The v2 tree is asked first: a tag pushed over v2 wins
//! over a v1 tag of the same name (a v2 push is the newer intent; v1
//! clients still see their v1 tag). Lists (`tags/list`, `_catalog`) hold
//! both, each name once.

pub mod digests;
pub mod image;
pub mod layer;
pub mod migrate;
pub mod repository;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::names::{ImageId, RepositoryName};
use crate::registry::legacy;
use crate::registry::oci::{
    self, blobs, catalog as oci_catalog, links, manifests, tags as oci_tags, Digest, Name,
    Reference,
};
use crate::storage::layout::legacy as v1_layout;
use crate::storage::{ByteStream, Storage, StorageError};
use image::ImageError;
use layer::{Compression, LayerError};

/// The v1 repository a v2 name reaches, when the v1 layout can hold it.
pub fn v1_name(name: &Name) -> Option<RepositoryName> {
    RepositoryName::parse(name.as_str())
        .and_then(v1_layout::storable)
        .ok()
}

/// The v2 name of a v1 repository, when the v2 grammar takes it: the name
/// as v1 spells it (`library/x` stays `library/x`).
pub fn v2_name(name: &RepositoryName) -> Option<Name> {
    Name::parse(&name.to_string()).ok()
}

/// What a digest handed out by the bridge stands for in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Layer,
    Config,
    Manifest,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    image: String,
    kind: Kind,
}

fn entry_path(name: &RepositoryName, digest: &Digest) -> String {
    v1_layout::repository_v2_digest(name, digest.algorithm().as_str(), digest.hex())
}

async fn entry(
    storage: &dyn Storage,
    name: &RepositoryName,
    digest: &Digest,
) -> oci::Result<Option<(ImageId, Kind)>> {
    match storage.get(&entry_path(name, digest)).await {
        Ok(bytes) => Ok(serde_json::from_slice::<Entry>(&bytes)
            .ok()
            .and_then(|e| Some((ImageId::parse(&e.image)?, e.kind)))),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn write_entry(
    storage: &dyn Storage,
    name: &RepositoryName,
    digest: &Digest,
    image: &ImageId,
    kind: Kind,
) -> oci::Result<()> {
    let entry = Entry {
        image: image.to_string(),
        kind,
    };
    let bytes = Bytes::from(serde_json::to_vec(&entry).unwrap_or_default());
    Ok(storage.put(&entry_path(name, digest), bytes).await?)
}

/// Maps the bridge's reasons to the OCI model's: what cannot be built is
/// not there (and the log says why).
fn unknown_because(reference: &impl std::fmt::Display, e: ImageError) -> oci::Error {
    match e {
        ImageError::Storage(e) | ImageError::Layer(LayerError::Storage(e)) => e.into(),
        e => {
            log::warn!("v1 image behind {reference} not served over v2: {e}");
            oci::Error::ManifestUnknown(reference.to_string())
        }
    }
}

/// The v2 form of the image a v1 tag points at, and the repository's
/// entries for every digest it hands out (written once, when missing).
pub async fn tagged_image(
    storage: &dyn Storage,
    name: &RepositoryName,
    top: &ImageId,
) -> Result<image::Image, ImageError> {
    let image = image::image(storage, top).await?;
    let digest = &image.manifest_digest;
    let known =
        matches!(entry(storage, name, digest).await, Ok(Some((id, Kind::Manifest))) if &id == top);
    if !known {
        let manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest).unwrap_or_default();
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        let write = async {
            for (id, layer) in image.layers.iter().zip(layers) {
                if let Some(d) = layer["digest"].as_str().and_then(|d| Digest::parse(d).ok()) {
                    write_entry(storage, name, &d, id, Kind::Layer).await?;
                }
            }
            write_entry(storage, name, &image.config_digest, top, Kind::Config).await?;
            // Last: its presence says the others are there.
            write_entry(storage, name, digest, top, Kind::Manifest).await
        };
        write.await.map_err(|e| match e {
            oci::Error::Storage(e) => ImageError::Storage(e),
            other => ImageError::Storage(StorageError::Unavailable(other.to_string())),
        })?;
    }
    Ok(image)
}

/// What the v2 form of a v1 image references: its config and layers.
pub fn references(image: &image::Image) -> Vec<manifests::Descriptor> {
    match manifests::Manifest::parse(Some(image::OCI_MANIFEST), &image.manifest) {
        Ok(manifests::Manifest {
            content: manifests::Content::Image { config, layers },
            ..
        }) => std::iter::once(config).chain(layers).collect(),
        _ => Vec::new(),
    }
}

/// The image a v1 tag of the repository points at.
async fn v1_tag(
    storage: &dyn Storage,
    name: &RepositoryName,
    tag: &str,
) -> oci::Result<Option<ImageId>> {
    match legacy::tag(storage, name, &crate::names::Tag::unchecked(tag)).await {
        Ok(id) => Ok(ImageId::parse(id.trim())),
        Err(legacy::Error::TagNotFound) => Ok(None),
        Err(legacy::Error::Storage(e)) => Err(e.into()),
        Err(e) => Err(oci::Error::Storage(StorageError::Unavailable(
            e.to_string(),
        ))),
    }
}

/// `GET /v2/<name>/manifests/<reference>`: the v2 tree's manifest, else the
/// v2 form of the v1 tag (or of a digest the bridge handed out).
pub async fn manifest(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
) -> oci::Result<manifests::Stored> {
    if let Some(stored) = find_manifest(storage, name, reference).await? {
        return Ok(stored);
    }
    let v2_error = manifests::unknown(storage, name, reference).await;
    match v1_name(name) {
        Some(v1) => Err(not_found(storage, &v1, reference, v2_error).await),
        None => Err(v2_error),
    }
}

/// [`manifest`], with `None` where neither tree holds it, without telling
/// an unknown repository from an unknown manifest (which costs a listing
/// of each tree): for a caller that asks another source then, as the
/// pull-through cache does on every request it serves.
pub async fn find_manifest(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
) -> oci::Result<Option<manifests::Stored>> {
    if let Some(stored) = manifests::find(storage, name, reference).await? {
        return Ok(Some(stored));
    }
    let Some(v1) = v1_name(name) else {
        return Ok(None);
    };
    let top = match reference {
        Reference::Tag(tag) => v1_tag(storage, &v1, tag.as_str()).await?,
        Reference::Digest(digest) => match entry(storage, &v1, digest).await? {
            Some((id, Kind::Manifest)) => Some(id),
            _ => None,
        },
    };
    let Some(top) = top else {
        return Ok(None);
    };
    let image = tagged_image(storage, &v1, &top)
        .await
        .map_err(|e| unknown_because(reference, e))?;
    if let Reference::Digest(digest) = reference {
        if digest != &image.manifest_digest {
            return Err(oci::Error::ManifestUnknown(reference.to_string()));
        }
    }
    Ok(Some(manifests::Stored {
        digest: image.manifest_digest,
        media_type: image::OCI_MANIFEST.to_owned(),
        bytes: image.manifest,
    }))
}

/// The v2 tree's not-found error, unless the v1 repository exists: then
/// the repository is known and the reference is not.
async fn not_found(
    storage: &dyn Storage,
    v1: &RepositoryName,
    reference: &Reference,
    v2_error: oci::Error,
) -> oci::Error {
    if !matches!(v2_error, oci::Error::NameUnknown(_)) {
        return v2_error;
    }
    match legacy::repository_exists(storage, v1).await {
        Ok(true) => oci::Error::ManifestUnknown(reference.to_string()),
        Ok(false) => v2_error,
        Err(legacy::Error::Storage(e)) => e.into(),
        Err(e) => StorageError::Unavailable(e.to_string()).into(),
    }
}

/// Where a blob's bytes are, as the v2 API serves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSource {
    /// The stored file.
    pub path: String,
    /// The size served.
    pub size: u64,
    /// The file is an xz layer, served as the plain tar inside it: no
    /// ranges, no shortcut past the registry.
    pub xz: bool,
}

/// `GET /v2/<name>/blobs/<digest>`: a blob of the v2 tree, else the v1
/// layer or config the bridge handed out under that digest.
pub async fn blob(storage: &dyn Storage, name: &Name, digest: &Digest) -> oci::Result<BlobSource> {
    match blobs::stat(storage, name, digest).await {
        Ok(info) => {
            return Ok(BlobSource {
                path: links::blob_data(digest),
                size: info.size,
                xz: false,
            })
        }
        Err(oci::Error::BlobUnknown(_)) => {}
        Err(e) => return Err(e),
    }
    let unknown = || oci::Error::BlobUnknown(digest.clone());
    let Some(v1) = v1_name(name) else {
        return Err(unknown());
    };
    let Some((id, kind)) = entry(storage, &v1, digest).await? else {
        return Err(unknown());
    };
    match kind {
        Kind::Layer => {
            let record = match layer::kept(storage, &id).await? {
                Some(record) => record,
                // The image was collected since: the entry names nothing.
                None => return Err(unknown()),
            };
            let (served, size, _) = record.served();
            if &served != digest {
                return Err(unknown());
            }
            let path = v1_layout::image_layer(&id);
            match storage.size(&path).await {
                Ok(stored) if stored == record.size => {}
                Ok(_) | Err(StorageError::NotFound(_)) => return Err(unknown()),
                Err(e) => return Err(e.into()),
            }
            Ok(BlobSource {
                path,
                size,
                xz: record.compression == Compression::Xz,
            })
        }
        Kind::Config => {
            let config = match image::config(storage, &id).await {
                Ok(config) => config,
                Err(StorageError::NotFound(_)) => return Err(unknown()),
                Err(e) => return Err(e.into()),
            };
            if &Digest::of(digest.algorithm(), &config) != digest {
                return Err(unknown());
            }
            Ok(BlobSource {
                path: v1_layout::image_v2_config(&id),
                size: config.len() as u64,
                xz: false,
            })
        }
        Kind::Manifest => Err(unknown()),
    }
}

/// The plain tar inside an xz layer, decompressed as it streams out, a
/// bounded block at a time on the blocking pool.
pub async fn xz_stream(storage: &dyn Storage, path: &str) -> Result<ByteStream, StorageError> {
    const BLOCK: usize = 1 << 20;
    let input = storage.get_stream(path, None).await?;
    let decoder = xz2::stream::Stream::new_stream_decoder(u64::MAX, 0)
        .map_err(|e| StorageError::Unavailable(e.to_string()))?;
    struct State {
        input: ByteStream,
        decoder: Option<xz2::stream::Stream>,
        pending: Bytes,
        /// The stored bytes ended (a stream must not be polled again).
        input_done: bool,
        done: bool,
    }
    let state = State {
        input,
        decoder: Some(decoder),
        pending: Bytes::new(),
        input_done: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            if s.pending.is_empty() && !s.input_done {
                match s.input.next().await {
                    Some(Ok(chunk)) => s.pending = chunk,
                    Some(Err(e)) => {
                        s.done = true;
                        return Some((Err(e), s));
                    }
                    None => s.input_done = true,
                }
            }
            let finishing = s.input_done && s.pending.is_empty();
            let mut decoder = s.decoder.take()?;
            let pending = std::mem::take(&mut s.pending);
            let step = actix_web::rt::task::spawn_blocking(move || {
                let mut out = Vec::with_capacity(BLOCK);
                let before = decoder.total_in();
                let action = if finishing {
                    xz2::stream::Action::Finish
                } else {
                    xz2::stream::Action::Run
                };
                let status = decoder.process_vec(&pending, &mut out, action);
                let used = (decoder.total_in() - before) as usize;
                (decoder, pending.slice(used..), out, status)
            })
            .await;
            let (decoder, rest, out, status) = match step {
                Ok(step) => step,
                Err(e) => {
                    s.done = true;
                    return Some((Err(std::io::Error::other(e.to_string())), s));
                }
            };
            s.decoder = Some(decoder);
            s.pending = rest;
            match status {
                Ok(xz2::stream::Status::StreamEnd) => s.done = true,
                Ok(_) => {}
                Err(e) => {
                    s.done = true;
                    return Some((Err(std::io::Error::other(e.to_string())), s));
                }
            }
            if finishing && out.is_empty() && !s.done {
                s.done = true;
                return Some((Err(std::io::Error::other("xz layer ends early")), s));
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), s));
            }
        }
    });
    Ok(Box::pin(stream))
}

/// Whether either tree still holds the repository the search index and
/// the events call `name`: the v1 tree its folder, the v2 tree a manifest
/// under any spelling that names it (`library/x` is also the v2 `x`). The
/// same rule as `reindex` walks by, so that a delete in one tree never
/// takes out of search what the other still serves.
///
/// Asked after a delete, to tell whether the repository left the
/// registry: a storage failure answers `true` (and logs), since an index
/// entry too many is put right by `reindex`, while a served repository
/// missing from search is what this rule is for.
pub async fn still_held(storage: &dyn Storage, name: &RepositoryName) -> bool {
    match held(storage, name).await {
        Ok(held) => held,
        Err(e) => {
            log::warn!("{name}: whether a tree still holds it is unknown ({e}); kept in search");
            true
        }
    }
}

async fn held(storage: &dyn Storage, name: &RepositoryName) -> oci::Result<bool> {
    match legacy::repository_exists(storage, name).await {
        Ok(true) => return Ok(true),
        Ok(false) => {}
        Err(legacy::Error::Storage(e)) => return Err(e.into()),
        Err(e) => return Err(StorageError::Unavailable(e.to_string()).into()),
    }
    let mut spellings: Vec<Name> = v2_name(name).into_iter().collect();
    if name.namespace() == RepositoryName::DEFAULT_NAMESPACE {
        spellings.extend(Name::parse(name.repository()).ok());
    }
    for v2 in spellings {
        if manifests::has_any_revision(storage, &v2).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `tags/list`: the v2 tree's tags and the v1 repository's (those the v2
/// grammar takes), each once.
pub async fn tags(
    storage: &dyn Storage,
    name: &Name,
    n: Option<usize>,
    last: Option<&str>,
) -> oci::Result<oci_tags::Page> {
    let (mut all, v2_error) = match oci_tags::all(storage, name).await {
        Ok(tags) => (tags, None),
        Err(e @ oci::Error::NameUnknown(_)) => (Vec::new(), Some(e)),
        Err(e) => return Err(e),
    };
    let v1 = match v1_name(name) {
        Some(v1) => of_v1(legacy::tags(storage, &v1).await)?,
        None => None,
    };
    match (v1, v2_error) {
        (None, Some(e)) => return Err(e),
        (Some(v1), _) => all.extend(v1.into_keys().filter(|t| oci::Tag::parse(t).is_ok())),
        (None, None) => {}
    }
    all.sort();
    all.dedup();
    Ok(oci_tags::page(all, n, last, |a, b| a < b))
}

/// Every tag of both trees, as [`tags`] lists them, with when each was
/// pushed (the time its current link or its v1 tag file was written: a
/// tag both trees hold has the v2 tree's, whose manifest the v2 API
/// serves), newest first.
pub async fn tags_pushed(
    storage: &dyn Storage,
    name: &Name,
) -> oci::Result<Vec<(String, std::time::SystemTime)>> {
    let (mut all, v2_error) = match oci_tags::all_pushed(storage, name).await {
        Ok(tags) => (tags, None),
        Err(e @ oci::Error::NameUnknown(_)) => (Vec::new(), Some(e)),
        Err(e) => return Err(e),
    };
    let v1 = match v1_name(name) {
        Some(v1) => of_v1(legacy::tags_pushed(storage, &v1).await)?,
        None => None,
    };
    match (v1, v2_error) {
        (None, Some(e)) => return Err(e),
        (Some(v1), _) => {
            let v2: std::collections::HashSet<String> =
                all.iter().map(|(tag, _)| tag.clone()).collect();
            all.extend(
                v1.into_iter()
                    .map(|(tag, at)| (tag.to_string(), at))
                    .filter(|(tag, _)| !v2.contains(tag) && oci::Tag::parse(tag).is_ok()),
            );
        }
        (None, None) => {}
    }
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(all)
}

/// What the v1 model answered of a repository: `None` when there is none.
fn of_v1<T>(answer: Result<T, legacy::Error>) -> oci::Result<Option<T>> {
    match answer {
        Ok(found) => Ok(Some(found)),
        Err(legacy::Error::RepositoryNotFound) => Ok(None),
        Err(legacy::Error::Storage(e)) => Err(e.into()),
        Err(e) => Err(StorageError::Unavailable(e.to_string()).into()),
    }
}

/// Every v1 repository, as `<namespace>/<repository>`, sorted by the
/// catalog's order; `refused` gets those the v2 grammar does not take.
pub async fn v1_repositories(
    storage: &dyn Storage,
    mut refused: impl FnMut(RepositoryName),
) -> Result<Vec<(Name, RepositoryName)>, StorageError> {
    let list = |path: String| async move {
        match storage.list(&path).await {
            Ok(children) => Ok(children),
            Err(StorageError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    let mut found = Vec::new();
    for namespace in list(v1_layout::REPOSITORIES.to_owned()).await? {
        let folder = format!("{}/{namespace}", v1_layout::REPOSITORIES);
        for repository in list(folder.clone()).await? {
            let Ok(name) = RepositoryName::new(
                &v1_layout::unescape(&namespace),
                &v1_layout::unescape(&v1_layout::unescape(&repository)),
            ) else {
                continue;
            };
            // Folders must be the layout's own spelling of the name.
            if v1_layout::repository_dir(&name) != format!("{folder}/{repository}") {
                continue;
            }
            match v2_name(&name) {
                Some(v2) => found.push((v2, name)),
                None => refused(name),
            }
        }
    }
    found.sort_by(|a, b| oci_catalog::compare(a.0.as_str(), b.0.as_str()));
    Ok(found)
}

/// `_catalog`: the v2 tree's repositories and the v1 ones, each once, in
/// the catalog's order.
pub async fn catalog(
    storage: &dyn Storage,
    n: Option<usize>,
    last: Option<&str>,
) -> oci::Result<oci_tags::Page> {
    let v2 = oci_catalog::list(storage, n, last).await?;
    let v1 = v1_repositories(storage, |_| {}).await?;
    let mut all: Vec<String> = v2.items;
    all.extend(
        v1.into_iter()
            .map(|(name, _)| name.to_string())
            .filter(|name| last.is_none_or(|l| oci_catalog::compare(l, name).is_lt())),
    );
    all.sort_by(|a, b| oci_catalog::compare(a, b));
    all.dedup();
    let mut page = oci_tags::page(all, n, None, |_, _| true);
    page.more |= v2.more;
    Ok(page)
}
