//! Manifests: what a push must hold to be accepted, how it is stored (as
//! distribution stores it: the bytes as a blob, a revision link, tag links)
//! and how it is read back and deleted.
//!
//! The bytes are kept exactly as pushed; only the fields the registry needs
//! (`schemaVersion`, `mediaType`, `artifactType`, `config`, `layers`,
//! `manifests`, `subject`, `annotations`) are read from them.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::digest::{Algorithm, Digest};
use super::error::{Error, Result};
use super::name::{Name, Reference, Tag};
use super::{links, referrers, repository, tags};
use crate::registry::rules::{self, Rules};
use crate::storage::layout::distribution as layout;
use crate::storage::{Lock, Storage, StorageError};

/// The largest manifest accepted: the spec asks registries to take at
/// least 4 MiB, and a manifest is read whole.
pub const MAX_SIZE: usize = 4 * 1024 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// The config of an artifact that has none, and its only possible content.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_CONTENT: &[u8] = b"{}";

const SCHEMA1_REFUSED: &str = "docker schema 1 manifests are not accepted (docker removed them \
     in 28.2, containerd in 2.1): push a docker schema 2 or OCI manifest";

/// A descriptor as a manifest names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A blob or manifest a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// As the notifications list what a manifest references.
impl From<Descriptor> for crate::events::Reference {
    fn from(d: Descriptor) -> Self {
        crate::events::Reference {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
        }
    }
}

impl Descriptor {
    /// Layers a registry does not hold (Windows base layers, licensed
    /// content): distribution lets them be absent, and so do we.
    fn non_distributable(&self) -> bool {
        self.media_type.contains("nondistributable") || self.media_type.contains(".foreign.")
    }

    fn is_empty_json(&self) -> bool {
        self.size == EMPTY_CONTENT.len() as u64
            && self.digest == Digest::of(self.digest.algorithm(), EMPTY_CONTENT)
    }
}

/// What a manifest is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// An image (or artifact) manifest: a config and layers, all blobs.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An index (or docker manifest list): other manifests.
    Index { manifests: Vec<Descriptor> },
}

/// The fields of a manifest the registry acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its own `mediaType`, or the OCI type its shape says when it has none.
    pub media_type: String,
    pub content: Content,
    pub subject: Option<Descriptor>,
    /// For the referrers API: `artifactType`, or the config's media type for
    /// an image manifest without one.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::ManifestInvalid(reason.into())
}

/// A `Content-Type` without parameters, lowercased; `None` when absent.
fn bare_type(content_type: Option<&str>) -> Option<String> {
    let bare = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    (!bare.is_empty()).then_some(bare)
}

/// Whether `text` is a media type by RFC 6838's grammar (`type/subtype`
/// of restricted characters, no parameters): safe as a header value.
fn is_media_type(text: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    text.split_once('/')
        .is_some_and(|(kind, subtype)| token(kind) && token(subtype))
}

/// Whether a pushed manifest may call itself `media_type`, which it is
/// then served as. Beyond the four known types, an artifact's own JSON
/// type (`application/...+json`): anything else (`text/html`, SVG, a value
/// with a line break) would let a push turn a pull of the registry's
/// origin into a page a browser renders, or an answer that cannot be sent.
fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST
    ) || (is_media_type(media_type)
        && media_type.starts_with("application/")
        && media_type.ends_with("+json"))
}

fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
}

fn descriptor(raw: RawDescriptor, field: &str) -> Result<Descriptor> {
    let digest = Digest::parse(&raw.digest)
        .map_err(|e| invalid(format!("{field}: {e} (sha256 and sha512 are accepted)")))?;
    Ok(Descriptor {
        media_type: raw.media_type,
        digest,
        size: raw.size,
    })
}

impl Manifest {
    /// Reads and checks a manifest: `content_type` is what the push said it
    /// is (`None` for one already stored). Refuses docker schema 1, bodies
    /// that are not a JSON object of schemaVersion 2, a `mediaType` that
    /// contradicts `content_type`, and descriptors without a usable digest.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self> {
        let declared = bare_type(content_type);
        if declared.as_deref().is_some_and(is_schema1) {
            return Err(invalid(SCHEMA1_REFUSED));
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let Some(object) = value.as_object() else {
            return Err(invalid("not a JSON object"));
        };
        match object.get("schemaVersion").and_then(Value::as_u64) {
            Some(2) => {}
            Some(1) => return Err(invalid(SCHEMA1_REFUSED)),
            _ => return Err(invalid("schemaVersion must be 2")),
        }
        let mut raw: RawManifest =
            serde_json::from_value(value).map_err(|e| invalid(format!("malformed: {e}")))?;
        // Go clients without `omitempty` write an absent type as "", and
        // distribution reads it so: the shape says what it is.
        raw.media_type = raw.media_type.filter(|t| !t.is_empty());
        if let Some(own) = &raw.media_type {
            if is_schema1(own) {
                return Err(invalid(SCHEMA1_REFUSED));
            }
            if declared.as_deref().is_some_and(|d| d != own) {
                return Err(invalid(format!(
                    "Content-Type {} does not match the manifest's mediaType {own}",
                    declared.unwrap_or_default()
                )));
            }
        }
        let media_type = match &raw.media_type {
            Some(own) => own.clone(),
            // An OCI manifest may leave out its mediaType; distribution then
            // tells an index from an image manifest by its `manifests`.
            None => {
                let shape = if raw.manifests.is_some() {
                    OCI_INDEX
                } else {
                    OCI_MANIFEST
                };
                match declared.as_deref() {
                    Some(DOCKER_MANIFEST | DOCKER_LIST) => {
                        return Err(invalid(
                            "a docker schema 2 manifest must have its mediaType",
                        ))
                    }
                    Some(d @ (OCI_MANIFEST | OCI_INDEX)) if d != shape => {
                        return Err(invalid(format!(
                            "Content-Type {d} does not match the manifest's shape ({shape})"
                        )))
                    }
                    _ => shape.to_owned(),
                }
            }
        };
        if !is_manifest_type(&media_type) {
            return Err(invalid(format!(
                "mediaType {:?} is not a manifest type (application/...+json)",
                media_type.chars().take(200).collect::<String>()
            )));
        }
        let index = match media_type.as_str() {
            OCI_INDEX | DOCKER_LIST => true,
            OCI_MANIFEST | DOCKER_MANIFEST => false,
            // Another type with the OCI shape (an artifact type of its own).
            _ if raw.manifests.is_some() => true,
            _ if raw.config.is_some() => false,
            other => {
                return Err(invalid(format!(
                    "{other} is neither an image manifest nor an index: no config, no manifests"
                )))
            }
        };
        let content = if index {
            let manifests = raw
                .manifests
                .ok_or_else(|| invalid("an index must have `manifests`"))?
                .into_iter()
                .map(|d| descriptor(d, "manifests"))
                .collect::<Result<_>>()?;
            Content::Index { manifests }
        } else {
            let config = descriptor(
                raw.config
                    .ok_or_else(|| invalid("an image manifest must have a `config`"))?,
                "config",
            )?;
            let layers = raw
                .layers
                .unwrap_or_default()
                .into_iter()
                .map(|d| descriptor(d, "layers"))
                .collect::<Result<_>>()?;
            Content::Image { config, layers }
        };
        let artifact_type =
            raw.artifact_type
                .filter(|t| !t.is_empty())
                .or_else(|| match &content {
                    Content::Image { config, .. } => Some(config.media_type.clone()),
                    Content::Index { .. } => None,
                });
        let subject = raw.subject.map(|d| descriptor(d, "subject")).transpose()?;
        Ok(Self {
            media_type,
            content,
            subject,
            artifact_type,
            annotations: raw.annotations,
        })
    }
}

/// The media type to serve stored bytes with: their own `mediaType`, else
/// what their shape says (as distribution reads them). Lenient: a manifest
/// another registry stored (even schema 1) is served as it is.
pub fn stored_media_type(body: &[u8]) -> String {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return OCI_MANIFEST.to_owned();
    };
    // One that cannot be a header value (stored by something less careful
    // than a push here) is served by its shape, not as a broken answer.
    if let Some(own) = object
        .get("mediaType")
        .and_then(Value::as_str)
        .filter(|t| is_media_type(t))
    {
        return own.to_owned();
    }
    if object.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
        return if object.contains_key("signatures") {
            DOCKER_SCHEMA1_SIGNED
        } else {
            DOCKER_SCHEMA1
        }
        .to_owned();
    }
    if object.contains_key("manifests") {
        OCI_INDEX.to_owned()
    } else {
        OCI_MANIFEST.to_owned()
    }
}

/// What a push did, for the answer and the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub digest: Digest,
    /// Its media type, as stored (served).
    pub media_type: String,
    pub size: u64,
    /// What it references: config and layers, or an index's manifests.
    pub references: Vec<Descriptor>,
    /// The subject, when the manifest has one (the `OCI-Subject` header).
    pub subject: Option<Digest>,
    /// The repository held no manifest before this one.
    pub first_in_repository: bool,
    /// The tags pushed: the reference's, when the push was by tag, and
    /// the others the push named (`?tag=`).
    pub tags: Vec<Tag>,
}

/// Stores a manifest under `reference` (a tag, or the digest the bytes
/// must have) for the registry itself (`registry-v1 migrate`): no rule
/// holds the operator's own copies.
pub async fn put(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Pushed> {
    let none = Rules::default();
    put_tagged(storage, &none, name, reference, &[], content_type, body).await
}

/// A client's push: [`put`] under the operator's `rules`, and the manifest
/// is tagged with each of `tags` too (the `?tag=` of a push by digest: the
/// digest stays the one named, whatever its algorithm, and no tag ever
/// points at a digest of another).
pub async fn put_tagged(
    storage: &dyn Storage,
    rules: &Rules,
    name: &Name,
    reference: &Reference,
    tags: &[Tag],
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Pushed> {
    let origin = Origin::Push { rules, tags };
    store(storage, name, reference, content_type, body, origin).await
}

/// Stores a manifest copied from an upstream registry (the pull-through
/// cache) under `reference`: as a push would, but before the blobs and
/// child manifests it names, which are fetched when a client asks for
/// them (a copy of a multi-platform index holds only the platforms that
/// were pulled).
pub async fn put_copy(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Pushed> {
    store(storage, name, reference, content_type, body, Origin::Copy).await
}

/// Where a stored manifest comes from.
enum Origin<'a> {
    /// A push (or the registry's own): its references must be stored, and
    /// `rules` hold the tags it names (its reference's, and `tags`).
    Push { rules: &'a Rules, tags: &'a [Tag] },
    /// A copy from an upstream, whose references come later; the upstream
    /// decides what its tags point at.
    Copy,
}

async fn store(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
    content_type: Option<&str>,
    body: Bytes,
    origin: Origin<'_>,
) -> Result<Pushed> {
    if body.len() > MAX_SIZE {
        return Err(Error::TooLarge {
            limit: MAX_SIZE as u64,
        });
    }
    let digest = match reference {
        Reference::Digest(expected) => {
            let actual = Digest::of(expected.algorithm(), &body);
            if &actual != expected {
                return Err(Error::DigestInvalid(format!(
                    "the manifest's digest is {actual}, not {expected}"
                )));
            }
            actual
        }
        Reference::Tag(_) => Digest::of(Algorithm::Sha256, &body),
    };
    let manifest = Manifest::parse(content_type, &body)?;
    let none = Rules::default();
    let (rules, tags, check) = match origin {
        Origin::Push { rules, tags } => (rules, tags, true),
        Origin::Copy => (&none, &[][..], false),
    };
    let by_tag = match reference {
        Reference::Tag(tag) => Some(tag),
        Reference::Digest(_) => None,
    };
    // Before anything is written, and held until the tags are: a refused
    // push leaves nothing behind, and of two first pushes at once one wins.
    let _held = hold_immutable_tags(
        storage,
        rules,
        name,
        by_tag.into_iter().chain(tags),
        &digest,
    )
    .await?;
    let media_type = manifest.media_type.clone();
    let size = body.len() as u64;
    // Before the check: a collection running now keeps what the record
    // names, or this push waits for its batch and sees what went.
    crate::registry::collector::records::announce(storage, &record_of(&digest, &manifest)).await?;
    if check {
        check_references(storage, name, &manifest).await?;
        // Before anything is linked: past the quota, nothing of the push
        // is served.
        let blobs: Vec<&Digest> = match &manifest.content {
            Content::Image { config, layers } => std::iter::once(config)
                .chain(layers)
                .filter(|b| !b.non_distributable())
                .map(|b| &b.digest)
                .collect(),
            Content::Index { .. } => Vec::new(),
        };
        super::quota::charge(storage, rules, name, (&digest, size), &blobs).await?;
    }

    let first_in_repository = !has_any_revision(storage, name).await?;
    let data = links::blob_data(&digest);
    if !storage.exists(&data).await? {
        storage.put(&data, body).await?;
    }
    links::write(storage, &links::revision(name, &digest), &digest).await?;
    let subject = manifest.subject.map(|s| s.digest);
    if let Some(subject) = &subject {
        referrers::record(storage, name, subject, &digest).await?;
    }
    let mut pushed_tags: Vec<Tag> = Vec::new();
    for tag in by_tag.into_iter().chain(tags) {
        if pushed_tags.contains(tag) {
            continue;
        }
        // distribution's order: the tag's history first, then what it
        // points at now.
        links::write(storage, &links::tag_index(name, tag, &digest), &digest).await?;
        links::write(storage, &links::tag_current(name, tag), &digest).await?;
        pushed_tags.push(tag.clone());
    }
    let references = match manifest.content {
        Content::Image { config, layers } => std::iter::once(config).chain(layers).collect(),
        Content::Index { manifests } => manifests,
    };
    Ok(Pushed {
        digest,
        media_type,
        size,
        references,
        subject,
        first_in_repository,
        tags: pushed_tags,
    })
}

/// Locks each of `tags` a rule holds, and checks that it is new or
/// already points at `digest`.
async fn hold_immutable_tags(
    storage: &dyn Storage,
    rules: &Rules,
    name: &Name,
    tags: impl Iterator<Item = &Tag>,
    digest: &Digest,
) -> Result<Vec<Lock>> {
    let mut held = Vec::new();
    for tag in tags {
        let Some(immutable) = rules.immutable(name.as_str(), tag.as_str()) else {
            continue;
        };
        let path = links::tag_current(name, tag);
        held.push(storage.lock(&path).await?);
        match links::read(storage, &path).await? {
            Some(current) if &current != digest => {
                let why = rules::refuse_push(immutable, &current.to_string());
                return Err(Error::Immutable(why));
            }
            _ => {}
        }
    }
    Ok(held)
}

/// What a push of `manifest` references, for the collector.
fn record_of(digest: &Digest, manifest: &Manifest) -> crate::registry::collector::records::Record {
    let mut record = crate::registry::collector::records::Record::default();
    record.manifests.insert(digest.to_string());
    match &manifest.content {
        Content::Image { config, layers } => {
            for blob in std::iter::once(config).chain(layers) {
                record.blobs.insert(blob.digest.to_string());
            }
        }
        Content::Index { manifests } => {
            for child in manifests {
                record.manifests.insert(child.digest.to_string());
            }
        }
    }
    if let Some(subject) = &manifest.subject {
        record.manifests.insert(subject.digest.to_string());
    }
    record
}

/// Every blob and child manifest must be in the repository already.
///
/// Each distinct digest is looked up once: a 4 MiB manifest can name one
/// layer some 25 000 times, and a lookup per line (two storage requests,
/// each a round trip on S3) would hold the request for minutes.
async fn check_references(storage: &dyn Storage, name: &Name, manifest: &Manifest) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    match &manifest.content {
        Content::Image { config, layers } => {
            for blob in std::iter::once(config).chain(layers) {
                if !seen.insert((&blob.digest, blob.non_distributable())) {
                    continue;
                }
                if blob.non_distributable() || links::has_layer(storage, name, &blob.digest).await?
                {
                    continue;
                }
                // Clients do not always upload the empty JSON blob of an
                // artifact; its content is known, so it is stored here.
                if blob.is_empty_json() {
                    store_empty_json(storage, name, &blob.digest).await?;
                    continue;
                }
                return Err(Error::ManifestBlobUnknown(blob.digest.clone()));
            }
        }
        Content::Index { manifests } => {
            for child in manifests {
                if !seen.insert((&child.digest, false)) {
                    continue;
                }
                if !links::has_revision(storage, name, &child.digest).await? {
                    return Err(Error::ManifestBlobUnknown(child.digest.clone()));
                }
            }
        }
    }
    Ok(())
}

async fn store_empty_json(storage: &dyn Storage, name: &Name, digest: &Digest) -> Result<()> {
    let data = links::blob_data(digest);
    if !storage.exists(&data).await? {
        storage
            .put(&data, Bytes::from_static(EMPTY_CONTENT))
            .await?;
    }
    links::write(storage, &links::layer(name, digest), digest).await
}

/// Whether any manifest belongs to the repository. distribution deletes a
/// revision's link and leaves its folder, so a folder alone does not count.
pub async fn has_any_revision(storage: &dyn Storage, name: &Name) -> Result<bool> {
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let folder = layout::revisions(name.as_str(), algorithm.as_str());
        for hex in list_or_empty(storage, &folder).await? {
            let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) else {
                continue;
            };
            if links::read(storage, &links::revision(name, &digest))
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Every manifest linked into repository `name` (tagged or not): one
/// listing of each algorithm's folder, no link read.
pub async fn held(storage: &dyn Storage, name: &Name) -> Result<Vec<Digest>> {
    let mut found = Vec::new();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let folder = layout::revisions(name.as_str(), algorithm.as_str());
        let held = match storage.folders_holding(&folder, "link").await {
            Ok(held) => held,
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        found.extend(
            held.iter()
                .filter_map(|hex| Digest::parse(&format!("{algorithm}:{hex}")).ok()),
        );
    }
    Ok(found)
}

/// The children of a folder; none when it does not exist.
pub(crate) async fn list_or_empty(storage: &dyn Storage, folder: &str) -> Result<Vec<String>> {
    match storage.list(folder).await {
        Ok(names) => Ok(names),
        Err(StorageError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a file or folder that may already be gone.
pub(crate) async fn remove_if_present(storage: &dyn Storage, path: &str) -> Result<()> {
    match storage.remove(path).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// The not-found error for `reference`: the repository's, when it does not
/// exist at all.
pub(crate) async fn unknown(storage: &dyn Storage, name: &Name, reference: &Reference) -> Error {
    match repository::exists(storage, name).await {
        Ok(false) => Error::NameUnknown(name.to_string()),
        Ok(true) => Error::ManifestUnknown(reference.to_string()),
        Err(e) => e,
    }
}

/// The digest `reference` names, if the repository links it.
async fn linked(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
) -> Result<Option<Digest>> {
    let digest = match reference {
        Reference::Tag(tag) => links::read(storage, &links::tag_current(name, tag)).await?,
        Reference::Digest(digest) => Some(digest.clone()),
    };
    match digest {
        Some(d)
            if links::read(storage, &links::revision(name, &d))
                .await?
                .is_some() =>
        {
            Ok(Some(d))
        }
        _ => Ok(None),
    }
}

/// The digest `reference` names in the repository, if it names one whose
/// bytes exist.
async fn resolve(storage: &dyn Storage, name: &Name, reference: &Reference) -> Result<Digest> {
    match linked(storage, name, reference).await? {
        Some(d) if storage.exists(&links::blob_data(&d)).await? => Ok(d),
        _ => Err(unknown(storage, name, reference).await),
    }
}

/// The manifest `reference` names, bytes as pushed.
pub async fn get(storage: &dyn Storage, name: &Name, reference: &Reference) -> Result<Stored> {
    match find(storage, name, reference).await? {
        Some(stored) => Ok(stored),
        None => Err(unknown(storage, name, reference).await),
    }
}

/// [`get`], with `None` where `get` tells which is unknown, the repository
/// or the manifest: a caller that only needs to know whether the
/// manifest is here spares the listing that tells them apart.
pub async fn find(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
) -> Result<Option<Stored>> {
    let Some(linked) = linked(storage, name, reference).await? else {
        return Ok(None);
    };
    // The read stands for the existence check `resolve` makes (one file
    // call less on the busiest route): the bytes may be gone, collected by
    // another registry since the link was read.
    let bytes = match storage.get(&links::blob_data(&linked)).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(Stored {
        media_type: stored_media_type(&bytes),
        digest: linked,
        bytes,
    }))
}

/// What a delete did, for the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The tags that are gone.
    pub tags: Vec<Tag>,
    /// No manifest is left in the repository.
    pub repository_empty: bool,
}

/// Deletes a tag (the manifest stays), or a manifest with every tag that
/// points at it and its referrer record, unless a tag that would go is
/// one the `rules` hold. The blob stays for the collector.
pub async fn delete(
    storage: &dyn Storage,
    rules: &Rules,
    name: &Name,
    reference: &Reference,
) -> Result<Deleted> {
    if let Reference::Tag(tag) = reference {
        if let Some(immutable) = rules.immutable(name.as_str(), tag.as_str()) {
            return Err(Error::Immutable(rules::refuse_delete(immutable)));
        }
        // The tag alone: it goes even when its manifest is already gone.
        if links::read(storage, &links::tag_current(name, tag))
            .await?
            .is_none()
        {
            return Err(unknown(storage, name, reference).await);
        }
        tags::remove(storage, name, tag).await?;
        return Ok(Deleted {
            tags: vec![tag.clone()],
            // No manifest goes with a tag.
            repository_empty: false,
        });
    }
    let digest = resolve(storage, name, reference).await?;
    let tags = tags::pointing_at(storage, name, &digest).await?;
    if let Some(immutable) = rules.first_immutable(name.as_str(), tags.iter().map(Tag::as_str)) {
        return Err(Error::Immutable(rules::refuse_delete(immutable)));
    }
    // Read before the links go: its subject says which record to drop.
    let subject = match storage.get(&links::blob_data(&digest)).await {
        Ok(bytes) => Manifest::parse(None, &bytes)
            .ok()
            .and_then(|m| m.subject)
            .map(|s| s.digest),
        Err(StorageError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let revision = links::revision(name, &digest);
    let folder = revision.trim_end_matches("/link");
    remove_if_present(storage, folder).await?;
    let counted = super::quota::take_manifest(storage, rules, name, &digest).await?;
    super::quota::give_back(storage, rules, name, counted).await?;
    for tag in &tags {
        tags::remove(storage, name, tag).await?;
    }
    if let Some(subject) = subject {
        referrers::forget(storage, name, &subject, &digest).await?;
    }
    Ok(Deleted {
        tags,
        repository_empty: !has_any_revision(storage, name).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sha(text: &str) -> String {
        Digest::of(Algorithm::Sha256, text.as_bytes()).to_string()
    }

    fn image(media_type: Option<&str>) -> Value {
        let mut m = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha("config"), "size": 6},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": sha("layer"), "size": 5}],
        });
        if let Some(t) = media_type {
            m["mediaType"] = json!(t);
        }
        m
    }

    fn parse(content_type: Option<&str>, v: &Value) -> Result<Manifest> {
        Manifest::parse(content_type, v.to_string().as_bytes())
    }

    fn invalid_reason(r: Result<Manifest>) -> String {
        match r {
            Err(Error::ManifestInvalid(reason)) => reason,
            other => panic!("expected MANIFEST_INVALID, got {other:?}"),
        }
    }

    #[test]
    fn every_accepted_media_type() {
        let m = parse(Some(OCI_MANIFEST), &image(Some(OCI_MANIFEST))).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        let Content::Image { config, layers } = &m.content else {
            panic!("not an image")
        };
        assert_eq!(config.size, 6);
        assert_eq!(layers.len(), 1);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );

        let m = parse(Some(DOCKER_MANIFEST), &image(Some(DOCKER_MANIFEST))).unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);

        // Without a mediaType, the shape decides; parameters are ignored.
        let m = parse(
            Some("application/vnd.oci.image.manifest.v1+json; x=y"),
            &image(None),
        )
        .unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);

        for t in [OCI_INDEX, DOCKER_LIST] {
            let index = json!({"schemaVersion": 2, "mediaType": t, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sha("child"), "size": 10,
                 "platform": {"architecture": "amd64", "os": "linux"}}]});
            let m = parse(Some(t), &index).unwrap();
            assert_eq!(m.media_type, t);
            assert!(matches!(&m.content, Content::Index { manifests } if manifests.len() == 1));
            assert_eq!(m.artifact_type, None);
        }
        let bare_index = json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(parse(None, &bare_index).unwrap().media_type, OCI_INDEX);

        // An artifact: artifactType, the empty config, a subject.
        let artifact = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": OCI_EMPTY, "digest": sha("{}"), "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": sha("subject"), "size": 3},
            "annotations": {"org.example": "yes"},
        });
        let m = parse(Some(OCI_MANIFEST), &artifact).unwrap();
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(m.subject.unwrap().digest.to_string(), sha("subject"));
        assert_eq!(m.annotations.unwrap()["org.example"], "yes");

        // A type of its own with the OCI shape.
        let own = image(Some("application/vnd.example.thing.v1+json"));
        let m = parse(Some("application/vnd.example.thing.v1+json"), &own).unwrap();
        assert!(matches!(m.content, Content::Image { .. }));
    }

    #[test]
    fn schema_1_is_refused_with_a_clear_message() {
        let schema1 = json!({"schemaVersion": 1, "name": "x", "tag": "latest",
                             "fsLayers": [], "history": []});
        for ct in [Some(DOCKER_SCHEMA1), Some(DOCKER_SCHEMA1_SIGNED), None] {
            let reason = invalid_reason(parse(ct, &schema1));
            assert!(reason.contains("schema 1"), "{reason}");
            assert!(reason.contains("schema 2 or OCI"), "{reason}");
        }
        // Said to be schema 1 by its Content-Type alone.
        let reason = invalid_reason(parse(Some(DOCKER_SCHEMA1_SIGNED), &image(None)));
        assert!(reason.contains("schema 1"));
    }

    #[test]
    fn malformed_manifests_are_invalid() {
        invalid_reason(Manifest::parse(Some(OCI_MANIFEST), b"not json"));
        invalid_reason(Manifest::parse(Some(OCI_MANIFEST), b"[1]"));
        let mut v = image(Some(OCI_MANIFEST));
        v["schemaVersion"] = json!(3);
        invalid_reason(parse(Some(OCI_MANIFEST), &v));
        // Content-Type and mediaType disagree.
        let reason = invalid_reason(parse(Some(DOCKER_MANIFEST), &image(Some(OCI_MANIFEST))));
        assert!(reason.contains("does not match"), "{reason}");
        // Docker schema 2 needs its mediaType; an index needs `manifests`.
        invalid_reason(parse(Some(DOCKER_MANIFEST), &image(None)));
        invalid_reason(parse(Some(OCI_INDEX), &image(None)));
        invalid_reason(parse(
            Some(OCI_INDEX),
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX}),
        ));
        // An image without a config, a descriptor without a usable digest.
        invalid_reason(parse(
            Some(OCI_MANIFEST),
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}),
        ));
        let mut v = image(Some(OCI_MANIFEST));
        v["layers"][0]["digest"] = json!("md5:d41d8cd98f00b204e9800998ecf8427e");
        assert!(invalid_reason(parse(Some(OCI_MANIFEST), &v)).contains("layers"));
        let mut v = image(Some(OCI_MANIFEST));
        v["config"]["size"] = json!(-1);
        invalid_reason(parse(Some(OCI_MANIFEST), &v));
    }

    #[test]
    fn stored_bytes_are_served_with_their_own_type() {
        assert_eq!(
            stored_media_type(image(Some(DOCKER_MANIFEST)).to_string().as_bytes()),
            DOCKER_MANIFEST
        );
        assert_eq!(
            stored_media_type(image(None).to_string().as_bytes()),
            OCI_MANIFEST
        );
        assert_eq!(
            stored_media_type(br#"{"schemaVersion":2,"manifests":[]}"#),
            OCI_INDEX
        );
        assert_eq!(
            stored_media_type(br#"{"schemaVersion":1,"signatures":[]}"#),
            DOCKER_SCHEMA1_SIGNED
        );
    }

    mod stored {
        use super::*;
        use crate::registry::oci::testing;
        use crate::registry::oci::{referrers, tags};

        async fn add_blob(storage: &dyn Storage, name: &Name, content: &str) -> Digest {
            let digest = Digest::of(Algorithm::Sha256, content.as_bytes());
            storage
                .put(&links::blob_data(&digest), Bytes::from(content.to_owned()))
                .await
                .unwrap();
            links::write(storage, &links::layer(name, &digest), &digest)
                .await
                .unwrap();
            digest
        }

        fn tag(t: &str) -> Reference {
            Reference::Tag(Tag::parse(t).unwrap())
        }

        fn body(v: &Value) -> Bytes {
            Bytes::from(v.to_string())
        }

        fn immutable_v_tags() -> Rules {
            let p = |t: &str| crate::config::Pattern::parse(t).unwrap();
            Rules::new(&[crate::config::RuleSettings {
                repositories: vec![p("ns/*")],
                immutable_tags: vec![p("v*")],
                retention: None,
                quota: None,
            }])
        }

        /// An image manifest of its own whose blobs are in `name`.
        async fn own_image(storage: &dyn Storage, name: &Name, n: usize) -> Bytes {
            let config = add_blob(storage, name, &format!("config {n}")).await;
            let layer = add_blob(storage, name, "layer").await;
            body(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config.to_string(), "size": format!("config {n}").len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer.to_string(), "size": 5}],
            }))
        }

        #[actix_web::test]
        async fn an_immutable_tag_takes_its_content_again_and_nothing_else() {
            let (_dir, storage) = testing::storage();
            let rules = immutable_v_tags();
            let name = Name::parse("ns/app").unwrap();
            let (a, b) = (
                own_image(&storage, &name, 1).await,
                own_image(&storage, &name, 2).await,
            );
            let push = async |tag_name: &str, body: &Bytes| {
                put_tagged(
                    &storage,
                    &rules,
                    &name,
                    &tag(tag_name),
                    &[],
                    Some(OCI_MANIFEST),
                    body.clone(),
                )
                .await
            };
            let first = push("v1", &a).await.unwrap();
            assert!(push("v1", &a).await.is_ok(), "the same content again");
            let Err(Error::Immutable(why)) = push("v1", &b).await else {
                panic!("moved");
            };
            assert!(why.contains("tag `v1` of `ns/app` is immutable"), "{why}");
            assert!(why.contains(&first.digest.to_string()), "{why}");
            // Nothing of the refused push was written.
            let b_digest = Digest::of(Algorithm::Sha256, &b);
            assert!(!links::has_revision(&storage, &name, &b_digest)
                .await
                .unwrap());
            // A tag no pattern names moves freely; a `?tag=` is held too.
            push("latest", &a).await.unwrap();
            push("latest", &b).await.unwrap();
            let by_digest = put_tagged(
                &storage,
                &rules,
                &name,
                &Reference::Digest(b_digest.clone()),
                &[Tag::parse("v1").unwrap()],
                Some(OCI_MANIFEST),
                b.clone(),
            )
            .await;
            assert!(matches!(by_digest, Err(Error::Immutable(_))));
            // Neither the tag nor the manifest it points at can go.
            for reference in [tag("v1"), Reference::Digest(first.digest.clone())] {
                assert!(matches!(
                    delete(&storage, &rules, &name, &reference).await,
                    Err(Error::Immutable(_))
                ));
            }
            // Another repository is not covered.
            let other = Name::parse("dev/app").unwrap();
            let c = own_image(&storage, &other, 3).await;
            let d = own_image(&storage, &other, 4).await;
            for body in [&c, &d] {
                put_tagged(
                    &storage,
                    &rules,
                    &other,
                    &tag("v1"),
                    &[],
                    Some(OCI_MANIFEST),
                    body.clone(),
                )
                .await
                .unwrap();
            }
        }

        #[actix_web::test]
        async fn of_first_pushes_at_once_to_an_immutable_tag_one_wins() {
            let (_dir, storage) = testing::storage();
            let rules = immutable_v_tags();
            let name = Name::parse("ns/race").unwrap();
            let mut bodies = Vec::new();
            for n in 0..8 {
                bodies.push(own_image(&storage, &name, n).await);
            }
            let v1 = tag("v1");
            let pushes = bodies.iter().map(|body| {
                put_tagged(
                    &storage,
                    &rules,
                    &name,
                    &v1,
                    &[],
                    Some(OCI_MANIFEST),
                    body.clone(),
                )
            });
            let results = futures_util::future::join_all(pushes).await;
            let won: Vec<&Pushed> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(won.len(), 1, "{results:?}");
            assert!(results
                .iter()
                .all(|r| r.is_ok() || matches!(r, Err(Error::Immutable(_)))));
            let current = links::read(
                &storage,
                &links::tag_current(&name, &Tag::parse("v1").unwrap()),
            )
            .await
            .unwrap();
            assert_eq!(current.as_ref(), Some(&won[0].digest));
        }

        #[actix_web::test]
        async fn push_pull_and_delete() {
            let (_dir, storage) = testing::storage();
            let name = Name::parse("ns/app").unwrap();
            let manifest = body(&image(Some(OCI_MANIFEST)));

            // The blobs are not there yet.
            let err = put(
                &storage,
                &name,
                &tag("v1"),
                Some(OCI_MANIFEST),
                manifest.clone(),
            )
            .await;
            assert!(
                matches!(err, Err(Error::ManifestBlobUnknown(d)) if d.to_string() == sha("config"))
            );
            add_blob(&storage, &name, "config").await;
            let err = put(
                &storage,
                &name,
                &tag("v1"),
                Some(OCI_MANIFEST),
                manifest.clone(),
            )
            .await;
            assert!(
                matches!(err, Err(Error::ManifestBlobUnknown(d)) if d.to_string() == sha("layer"))
            );
            add_blob(&storage, &name, "layer").await;

            let pushed = put(
                &storage,
                &name,
                &tag("v1"),
                Some(OCI_MANIFEST),
                manifest.clone(),
            )
            .await
            .unwrap();
            let digest = Digest::of(Algorithm::Sha256, &manifest);
            assert_eq!(pushed.digest, digest);
            assert!(pushed.first_in_repository);
            let again = put(&storage, &name, &tag("v2"), None, manifest.clone())
                .await
                .unwrap();
            assert!(!again.first_in_repository);

            // distribution's tree, key for key.
            let root = "docker/registry/v2/repositories/ns/app/_manifests";
            for path in [
                format!("{root}/revisions/sha256/{}/link", digest.hex()),
                format!("{root}/tags/v1/current/link"),
                format!("{root}/tags/v1/index/sha256/{}/link", digest.hex()),
            ] {
                assert_eq!(
                    storage.get(&path).await.unwrap(),
                    digest.to_string().as_bytes(),
                    "{path}"
                );
            }
            assert_eq!(
                storage.get(&links::blob_data(&digest)).await.unwrap(),
                manifest
            );

            for r in [tag("v1"), Reference::Digest(digest.clone())] {
                let got = get(&storage, &name, &r).await.unwrap();
                assert_eq!(got.bytes, manifest);
                assert_eq!(got.media_type, OCI_MANIFEST);
                assert_eq!(got.digest, digest);
            }
            assert!(matches!(
                get(&storage, &name, &tag("nope")).await,
                Err(Error::ManifestUnknown(_))
            ));
            let other = Name::parse("other").unwrap();
            assert!(matches!(
                get(&storage, &other, &tag("v1")).await,
                Err(Error::NameUnknown(_))
            ));

            // A tag goes alone; the digest takes its remaining tags along.
            let deleted = delete(&storage, &Rules::default(), &name, &tag("v1"))
                .await
                .unwrap();
            assert_eq!(deleted.tags, [Tag::parse("v1").unwrap()]);
            assert!(!deleted.repository_empty);
            assert!(matches!(
                get(&storage, &name, &tag("v1")).await,
                Err(Error::ManifestUnknown(_))
            ));
            assert!(get(&storage, &name, &Reference::Digest(digest.clone()))
                .await
                .is_ok());
            let deleted = delete(
                &storage,
                &Rules::default(),
                &name,
                &Reference::Digest(digest.clone()),
            )
            .await
            .unwrap();
            assert_eq!(deleted.tags, [Tag::parse("v2").unwrap()]);
            assert!(deleted.repository_empty);
            assert!(tags::all(&storage, &name).await.unwrap().is_empty());
            assert!(matches!(
                get(&storage, &name, &Reference::Digest(digest)).await,
                Err(Error::ManifestUnknown(_))
            ));
        }

        #[actix_web::test]
        async fn digests_and_sizes_are_enforced() {
            let (_dir, storage) = testing::storage();
            let name = Name::parse("app").unwrap();
            add_blob(&storage, &name, "config").await;
            add_blob(&storage, &name, "layer").await;
            let manifest = body(&image(Some(OCI_MANIFEST)));
            let wrong = Reference::Digest(Digest::of(Algorithm::Sha256, b"other"));
            assert!(matches!(
                put(
                    &storage,
                    &name,
                    &wrong,
                    Some(OCI_MANIFEST),
                    manifest.clone()
                )
                .await,
                Err(Error::DigestInvalid(_))
            ));
            let sha512 = Digest::of(Algorithm::Sha512, &manifest);
            let pushed = put(
                &storage,
                &name,
                &Reference::Digest(sha512.clone()),
                None,
                manifest.clone(),
            )
            .await
            .unwrap();
            assert_eq!(pushed.digest, sha512);
            assert!(pushed.tags.is_empty());
            // Tags named with a push by a sha512 digest point at it.
            let tags = [Tag::parse("a").unwrap(), Tag::parse("b").unwrap()];
            let sha512_ref = Reference::Digest(sha512.clone());
            let pushed = put_tagged(
                &storage,
                &Rules::default(),
                &name,
                &sha512_ref,
                &tags,
                None,
                manifest,
            )
            .await
            .unwrap();
            assert_eq!(pushed.tags, tags);
            for tag in tags {
                let got = get(&storage, &name, &Reference::Tag(tag)).await.unwrap();
                assert_eq!(got.digest, sha512);
            }

            let mut huge = image(Some(OCI_MANIFEST));
            huge["annotations"] = json!({"x": "y".repeat(MAX_SIZE)});
            assert!(matches!(
                put(&storage, &name, &tag("big"), None, body(&huge)).await,
                Err(Error::TooLarge { .. })
            ));
        }

        #[actix_web::test]
        async fn indexes_need_their_children_and_foreign_layers_may_be_absent() {
            let (_dir, storage) = testing::storage();
            let name = Name::parse("app").unwrap();
            add_blob(&storage, &name, "config").await;
            let mut windows = image(Some(DOCKER_MANIFEST));
            windows["layers"][0]["mediaType"] =
                json!("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip");
            let child = put(&storage, &name, &tag("win"), None, body(&windows))
                .await
                .unwrap();

            let index = |children: Vec<String>| {
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children
                    .iter().map(|d| json!({"mediaType": DOCKER_MANIFEST, "digest": d, "size": 1}))
                    .collect::<Vec<_>>()})
            };
            let missing = sha("missing");
            let err = put(
                &storage,
                &name,
                &tag("multi"),
                None,
                body(&index(vec![child.digest.to_string(), missing.clone()])),
            )
            .await;
            assert!(matches!(err, Err(Error::ManifestBlobUnknown(d)) if d.to_string() == missing));
            put(
                &storage,
                &name,
                &tag("multi"),
                None,
                body(&index(vec![child.digest.to_string()])),
            )
            .await
            .unwrap();
            let got = get(&storage, &name, &tag("multi")).await.unwrap();
            assert_eq!(got.media_type, OCI_INDEX);
        }

        #[actix_web::test]
        async fn referrers_are_recorded_filtered_and_forgotten() {
            let (_dir, storage) = testing::storage();
            let name = Name::parse("app").unwrap();
            // The subject need not be there; the empty config is stored
            // when the client did not upload it.
            let subject = Digest::of(Algorithm::Sha256, b"subject");
            let artifact = |kind: &str| {
                json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
                    "config": {"mediaType": OCI_EMPTY, "digest": sha("{}"), "size": 2},
                    "layers": [],
                    "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 7},
                    "annotations": {"kind": kind},
                })
            };
            let sbom = put(
                &storage,
                &name,
                &Reference::Digest(Digest::of(
                    Algorithm::Sha256,
                    artifact("sbom").to_string().as_bytes(),
                )),
                None,
                body(&artifact("sbom")),
            )
            .await
            .unwrap();
            assert_eq!(sbom.subject.as_ref(), Some(&subject));
            assert!(
                links::has_layer(&storage, &name, &Digest::parse(&sha("{}")).unwrap())
                    .await
                    .unwrap()
            );
            let sig = put(&storage, &name, &tag("sig"), None, body(&artifact("sig")))
                .await
                .unwrap();

            let all = referrers::list(&storage, &name, &subject, None)
                .await
                .unwrap();
            assert_eq!(all.media_type, OCI_INDEX);
            assert_eq!(all.manifests.len(), 2);
            let only = referrers::list(&storage, &name, &subject, Some("sig"))
                .await
                .unwrap();
            assert_eq!(only.manifests.len(), 1);
            let r = &only.manifests[0];
            assert_eq!(r.digest, sig.digest.to_string());
            assert_eq!(r.artifact_type.as_deref(), Some("sig"));
            assert_eq!(r.annotations.as_ref().unwrap()["kind"], "sig");
            assert_eq!(r.media_type, OCI_MANIFEST);
            assert_eq!(r.size, artifact("sig").to_string().len() as u64);

            delete(
                &storage,
                &Rules::default(),
                &name,
                &Reference::Digest(sig.digest),
            )
            .await
            .unwrap();
            let left = referrers::list(&storage, &name, &subject, None)
                .await
                .unwrap();
            assert_eq!(left.manifests.len(), 1);
            assert_eq!(left.manifests[0].digest, sbom.digest.to_string());
            let none = referrers::list(&storage, &Name::parse("nothing").unwrap(), &subject, None)
                .await
                .unwrap();
            assert!(none.manifests.is_empty());
        }
    }
}
