//! The v1 pull-through cache: the old `mirroring` section's behaviour when
//! its source speaks only v1 (the old Python registry). Only the default
//! upstream serves v1 requests (the old section named one source), and only
//! once it has answered that it has no v2 API: a v2 source (Docker Hub
//! today) is never asked v1 questions.
//!
//! - An image (`json`, `ancestry`, `layer`) that this registry does not
//!   hold is fetched whole on the first request for any of the three and
//!   stored in the v1 tree through the steps of a push
//!   ([`legacy::put_image_copy`]: the layer streamed to storage and
//!   checked against the checksum the source names); then served as any
//!   pushed image, for good (an image id names its content), the source
//!   up or down. One fetch per image at a time.
//! - A tag is copied into the v1 tree with a record of when it was read
//!   (`_mirror/v1tags/...`, see [`layout`]); after `tags_cache_ttl` the
//!   source is asked again. A source that cannot answer leaves the copy
//!   served (and logged). A tag pushed here has no record and is never
//!   replaced by the source's.
//! - `/v1/search` adds the source's answers (or `source_index`'s) to this
//!   registry's own; `/v1/repositories/<repo>/images` comes from the index
//!   when this registry has none.
//!
//! Because copies live in the v1 tree, the v1-to-v2 bridge serves them
//! over v2 to today's clients like pushed v1 images.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderMap;

use super::{Cached, Error, Freshness, Mirror, Result};
use crate::names::{ImageId, RepositoryName, Tag};
use crate::registry::{bridge, legacy, oci};
use crate::storage::layout::mirror as layout;
use crate::storage::{ByteStream, Storage, StorageError};
use crate::upstream::{Api, UpstreamError};

/// The most tags of one repository copied from a source's list.
pub const MAX_V1_TAGS: usize = 10_000;

/// The image fetches under way, one lock an image id: a second request
/// for an image being fetched waits, then finds it stored.
#[derive(Default)]
pub struct ImageFetches(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl ImageFetches {
    fn entry(&self, id: &ImageId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// Forgets an image's lock once no request holds it.
    fn release(&self, id: &ImageId, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // The map's and this one: nobody else waits.
        if Arc::strong_count(&lock) <= 2 {
            map.remove(id.as_str());
        }
    }
}

/// A tag copied from the source, and when.
#[derive(serde::Serialize, serde::Deserialize)]
struct TagChecked {
    image: String,
    checked_ms: u64,
}

/// When a repository's tag list was last read from the source.
#[derive(serde::Serialize, serde::Deserialize)]
struct ListChecked {
    checked_ms: u64,
}

/// The source's answer to a search, as much of it as is merged.
pub struct SourceSearch {
    pub num_results: u64,
    pub results: Vec<SourceHit>,
}

#[derive(serde::Deserialize)]
pub struct SourceHit {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What goes into a path of the source: everything but letters, digits
/// and `-._` escaped (a tag's `\w` takes any Unicode letter).
const PATH_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

fn part(s: &str) -> String {
    utf8_percent_encode(s, PATH_PART).to_string()
}

/// The repository's path at the source; `None` for a name with a `.` or
/// `..` part, which a URL cannot carry (escaped or not, it is a step up
/// the path): such a repository is this registry's own only.
fn repository_path(name: &RepositoryName) -> Option<String> {
    let dots = |s: &str| s == "." || s == "..";
    if dots(name.namespace()) || dots(name.repository()) {
        return None;
    }
    Some(format!(
        "/v1/repositories/{}/{}",
        part(name.namespace()),
        part(name.repository())
    ))
}

/// The `sha256:<hex>` checksums a `X-Docker-Checksum-Payload` names (the
/// old registry sent one, or a printed list of them).
fn named_checksums(headers: &HeaderMap) -> Vec<String> {
    let Some(text) = headers
        .get("x-docker-checksum-payload")
        .and_then(|v| v.to_str().ok())
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("sha256:") {
        let candidate = &rest[at + 7..];
        let hex: String = candidate
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        if hex.len() == 64 {
            found.push(format!("sha256:{}", hex.to_ascii_lowercase()));
        }
        rest = &rest[at + 7..];
    }
    found
}

impl Mirror {
    /// Whether a default upstream is configured (checked before anything
    /// costs a storage read or a request).
    pub fn has_v1_candidate(&self) -> bool {
        self.upstreams.iter().any(|u| u.settings.default)
    }

    /// The default upstream, when it speaks only v1.
    async fn v1_source(&self) -> Result<Option<&Cached>> {
        let Some(source) = self.upstreams.iter().find(|u| u.settings.default) else {
            return Ok(None);
        };
        match source.client.api().await {
            Ok(Api::V1) => Ok(Some(source)),
            Ok(Api::V2) => Ok(None),
            Err(e) => Err(upstream_error(source, e)),
        }
    }

    /// Makes sure the image `id` is stored, fetching it from a v1 source
    /// when it is not. `false`: no v1 source (the caller answers as
    /// without a mirror). The source's 404 is the image's.
    pub async fn v1_image(&self, storage: &dyn Storage, id: &ImageId) -> Result<bool> {
        if !self.has_v1_candidate() {
            return Ok(false);
        }
        let Some(source) = self.v1_source().await? else {
            return Ok(false);
        };
        let lock = self.v1_images.entry(id);
        let fetched = {
            let _turn = lock.lock().await;
            fetch_image(storage, source, id).await
        };
        self.v1_images.release(id, lock);
        fetched.map(|()| true)
    }

    /// A v2 pull (today's clients) of a tag from a v1 source: the tag
    /// copied as a v1 pull copies it, every image of its ancestry fetched,
    /// then the v1-to-v2 bridge's manifest of it, as for a v1 image pushed
    /// here. `missed`: this registry has no such manifest (else only a
    /// copied tag older than `tags_cache_ttl` is asked for again). `None`:
    /// nothing to do here (no v1 source, a name v1 cannot hold, a tag
    /// pushed here, a fresh copy, or one the source does not have).
    pub async fn v1_manifest(
        &self,
        storage: &dyn Storage,
        name: &oci::Name,
        tag: &oci::Tag,
        missed: bool,
    ) -> Result<Option<oci::manifests::Stored>> {
        if !self.has_v1_candidate() {
            return Ok(None);
        }
        let Some(repo) = bridge::v1_name(name) else {
            return Ok(None);
        };
        if !missed {
            let record_path = layout::v1_tag_checked(&repo, &Tag::unchecked(tag.as_str()));
            match read_record::<TagChecked>(storage, &record_path).await? {
                Some(record) if !self.fresh(record.checked_ms) => {}
                _ => return Ok(None),
            }
        }
        // Only a source known to speak v1: one that cannot be asked now
        // (down since this registry started) leaves the answer to the v2
        // cache, which serves its copies stale, or to this registry's own
        // copy of the v1 tag.
        if !matches!(self.v1_source().await, Ok(Some(_))) {
            return Ok(None);
        }
        let image =
            match self.v1_tag(storage, &repo, tag.as_str()).await {
                Ok((image, _)) => image,
                Err(Error::Legacy(
                    legacy::Error::TagNotFound | legacy::Error::RepositoryNotFound,
                )) if missed => return Ok(None),
                Err(Error::Legacy(
                    legacy::Error::TagNotFound | legacy::Error::RepositoryNotFound,
                )) => return Err(oci::Error::ManifestUnknown(tag.to_string()).into()),
                Err(e) => return Err(e),
            };
        let Some(top) = ImageId::parse(&image) else {
            return Ok(None);
        };
        self.v1_image(storage, &top).await?;
        let ancestry = legacy::image_ancestry(storage, &top).await?;
        let lineage: Vec<String> = serde_json::from_slice(&ancestry).unwrap_or_default();
        for id in lineage.iter().rev().filter_map(|id| ImageId::parse(id)) {
            self.v1_image(storage, &id).await?;
        }
        let reference = oci::Reference::Tag(tag.clone());
        Ok(Some(bridge::manifest(storage, name, &reference).await?))
    }

    /// A v2 tag list (today's clients) of a repository of a v1 source:
    /// the source's tags copied into the v1 tree first, as a v1 list
    /// copies them (when the repository is a copy or unknown here and its
    /// list older than `tags_cache_ttl`), for the bridge to list.
    pub async fn v1_sync_tags(&self, storage: &dyn Storage, name: &oci::Name) -> Result<()> {
        if !self.has_v1_candidate() {
            return Ok(());
        }
        let Some(repo) = bridge::v1_name(name) else {
            return Ok(());
        };
        // As for manifests: only a source known to speak v1.
        if !matches!(self.v1_source().await, Ok(Some(_))) {
            return Ok(());
        }
        match self.v1_tags(storage, &repo).await {
            Ok(_) | Err(Error::Legacy(legacy::Error::RepositoryNotFound)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/repositories/<name>/tags/<tag>`: the image this registry's
    /// tag names, refreshed from a v1 source when it is a copy older than
    /// `tags_cache_ttl`, fetched when there is none; and how the cache made
    /// the answer (`None`: a tag of this registry's own).
    pub async fn v1_tag(
        &self,
        storage: &dyn Storage,
        name: &RepositoryName,
        raw: &str,
    ) -> Result<(String, Option<Freshness>)> {
        let local = legacy::tag(storage, name, &Tag::unchecked(raw)).await;
        let (tag, repo_path) = match (Tag::parse(raw), repository_path(name)) {
            (Some(tag), Some(path)) if self.has_v1_candidate() => (tag, path),
            _ => return Ok((local?, None)),
        };
        let record_path = layout::v1_tag_checked(name, &tag);
        let record: Option<TagChecked> = read_record(storage, &record_path).await?;
        if let Ok(image) = &local {
            let Some(record) = &record else {
                // Pushed here: this registry's own.
                return Ok((image.clone(), None));
            };
            if self.fresh(record.checked_ms) {
                return Ok((image.clone(), Some(Freshness::Hit)));
            }
        }
        let source = match self.v1_source().await {
            Ok(Some(source)) => source,
            Ok(None) => return Ok((local?, None)),
            Err(e) => return stale_or(local, name, e),
        };
        let path = format!("{repo_path}/tags/{}", part(tag.as_str()));
        match source.client.v1_get(&source.settings.url, &path).await {
            Ok((_, body)) => {
                let image = match serde_json::from_slice::<String>(&body)
                    .ok()
                    .and_then(|s| ImageId::parse(&s))
                {
                    Some(image) => image,
                    None => {
                        let e =
                            UpstreamError::Invalid(format!("the tag {name}:{tag} is no image id"));
                        return stale_or(local, name, upstream_error(source, e));
                    }
                };
                copy_tag(storage, name, &tag, &image).await?;
                let image = image.to_string();
                let confirmed = record.is_some() && local.as_ref().is_ok_and(|l| *l == image);
                let freshness = if confirmed {
                    Freshness::Revalidated
                } else {
                    Freshness::Miss
                };
                count(source, "v1_tag", freshness.as_str());
                Ok((image, Some(freshness)))
            }
            Err(UpstreamError::NotFound) => {
                if record.is_some() {
                    // Gone from the source: the copy goes too.
                    forget_tag(storage, name, &tag).await?;
                    return Err(legacy::Error::TagNotFound.into());
                }
                Ok((local?, None))
            }
            Err(e) => stale_or(local, name, upstream_error(source, e)),
        }
    }

    /// `GET /v1/repositories/<name>/tags`: this registry's tags, with the
    /// source's copied in when the repository is a copy (or unknown here)
    /// and its list was read longer ago than `tags_cache_ttl`; and how the
    /// cache made the answer (`None`: this registry's own tags only).
    pub async fn v1_tags(
        &self,
        storage: &dyn Storage,
        name: &RepositoryName,
    ) -> Result<(BTreeMap<String, String>, Option<Freshness>)> {
        let local = legacy::tags(storage, name).await;
        let Some(repo_path) = repository_path(name).filter(|_| self.has_v1_candidate()) else {
            return Ok((local?, None));
        };
        let list_path = layout::v1_list_checked(name);
        let listed: Option<ListChecked> = read_record(storage, &list_path).await?;
        let copied = copied_tags(storage, name).await?;
        match (&local, &listed) {
            // Pushed here, never read from the source.
            (Ok(_), None) if copied.is_empty() => return Ok((local?, None)),
            (Ok(_), Some(listed)) if self.fresh(listed.checked_ms) => {
                let freshness = (!copied.is_empty()).then_some(Freshness::Hit);
                return Ok((local?, freshness));
            }
            _ => {}
        }
        let source = match self.v1_source().await {
            Ok(Some(source)) => source,
            Ok(None) => return Ok((local?, None)),
            Err(e) => return stale_or(local, name, e),
        };
        let path = format!("{repo_path}/tags");
        let tags = match source.client.v1_get(&source.settings.url, &path).await {
            Ok((_, body)) => match serde_json::from_slice::<BTreeMap<String, String>>(&body) {
                Ok(tags) => tags,
                Err(e) => {
                    let e = UpstreamError::Invalid(format!("the tags of {name}: {e}"));
                    return stale_or(local, name, upstream_error(source, e));
                }
            },
            Err(UpstreamError::NotFound) => BTreeMap::new(),
            Err(e) => return stale_or(local, name, upstream_error(source, e)),
        };
        if tags.len() > MAX_V1_TAGS {
            log::warn!(
                "mirror source {}: {name} has {} tags; copying the first {MAX_V1_TAGS}",
                source.settings.url,
                tags.len()
            );
        }
        let pushed: Vec<&String> = match &local {
            Ok(own) => own.keys().filter(|t| !copied.contains(*t)).collect(),
            Err(_) => Vec::new(),
        };
        let mut kept = Vec::new();
        for (raw, image) in tags.iter().take(MAX_V1_TAGS) {
            let (Some(tag), Some(image)) = (Tag::parse(raw), ImageId::parse(image)) else {
                continue;
            };
            if pushed.contains(&raw) {
                continue;
            }
            copy_tag(storage, name, &tag, &image).await?;
            kept.push(raw.clone());
        }
        for gone in copied.iter().filter(|t| !kept.contains(t)) {
            forget_tag(storage, name, &Tag::unchecked(gone)).await?;
        }
        if tags.is_empty() && pushed.is_empty() {
            remove_if_present(storage, &list_path).await?;
            return Err(legacy::Error::RepositoryNotFound.into());
        }
        write_record(
            storage,
            &list_path,
            &ListChecked {
                checked_ms: now_ms(),
            },
        )
        .await;
        count(source, "v1_tags", "miss");
        Ok((legacy::tags(storage, name).await?, Some(Freshness::Miss)))
    }

    /// The source's answers to a search (`source_index` when set), or
    /// `None` when there is no v1 source or it cannot answer (logged: the
    /// search answers with this registry's own then).
    pub async fn v1_search(&self, term: &str, page: u64, per_page: u32) -> Option<SourceSearch> {
        if !self.has_v1_candidate() {
            return None;
        }
        let source = match self.v1_source().await {
            Ok(source) => source?,
            Err(e) => {
                log::warn!(
                    "search: the mirror source cannot be asked ({e}); answering with local results"
                );
                return None;
            }
        };
        let base = source
            .settings
            .index_url
            .as_deref()
            .unwrap_or(&source.settings.url);
        let path = format!(
            "/v1/search?q={}&n={per_page}&page={page}",
            utf8_percent_encode(term, NON_ALPHANUMERIC)
        );
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            num_results: Option<u64>,
            #[serde(default)]
            results: Vec<SourceHit>,
        }
        let answer = match source.client.v1_get(base, &path).await {
            Ok((_, body)) => serde_json::from_slice::<Answer>(&body)
                .map_err(|e| UpstreamError::Invalid(format!("a search answer: {e}"))),
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => Some(SourceSearch {
                num_results: answer.num_results.unwrap_or(answer.results.len() as u64),
                results: answer.results,
            }),
            Err(e) => {
                count_error(source, &e);
                log::warn!("search: the mirror source {base} did not answer ({e}); answering with local results");
                None
            }
        }
    }

    /// `GET /v1/repositories/<name>/images` from the source's index, when
    /// this registry has no image list of its own: passed on, not stored
    /// (the old mirror did the same). `None`: no v1 source.
    pub async fn v1_index_images(&self, name: &RepositoryName) -> Result<Option<Bytes>> {
        let Some(repo_path) = repository_path(name).filter(|_| self.has_v1_candidate()) else {
            return Ok(None);
        };
        let Some(source) = self.v1_source().await? else {
            return Ok(None);
        };
        let base = source
            .settings
            .index_url
            .as_deref()
            .unwrap_or(&source.settings.url);
        let path = format!("{repo_path}/images");
        match source.client.v1_get(base, &path).await {
            Ok((_, body)) => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Array(_)) => Ok(Some(body)),
                _ => Err(upstream_error(
                    source,
                    UpstreamError::Invalid(format!("the image list of {name} is no JSON list")),
                )),
            },
            Err(UpstreamError::NotFound) => Err(legacy::Error::IndexImagesNotFound.into()),
            Err(e) => Err(upstream_error(source, e)),
        }
    }

    /// Whether a record written at `checked_ms` is within the source's
    /// `tags_cache_ttl`.
    fn fresh(&self, checked_ms: u64) -> bool {
        let ttl = self
            .upstreams
            .iter()
            .find(|u| u.settings.default)
            .map_or(0, |u| u.settings.tag_ttl.as_millis() as u64);
        now_ms().saturating_sub(checked_ms) < ttl
    }
}

/// Fetches the image `id` from the source and stores it, unless it is
/// stored already (by a fetch this one waited for, or a push).
async fn fetch_image(storage: &dyn Storage, source: &Cached, id: &ImageId) -> Result<()> {
    if legacy::image_exists(storage, id).await? {
        return Ok(());
    }
    let client = &source.client;
    let url = &source.settings.url;
    let image = format!("/v1/images/{id}");
    let not_found = |e| match e {
        UpstreamError::NotFound => Error::Legacy(legacy::Error::ImageNotFound),
        e => upstream_error(source, e),
    };
    let (headers, json) = client
        .v1_get(url, &format!("{image}/json"))
        .await
        .map_err(not_found)?;
    let (_, ancestry) = client
        .v1_get(url, &format!("{image}/ancestry"))
        .await
        .map_err(not_found)?;
    let checksums = named_checksums(&headers);
    let declared: Option<u64> = headers
        .get("x-docker-size")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let layer = client
        .v1_stream(&format!("{image}/layer"))
        .await
        .map_err(not_found)?;
    let expected = declared.or(layer.length);
    let body = counted(layer.stream, expected, source);
    match legacy::put_image_copy(storage, id, json, ancestry, body, &checksums).await {
        Ok(()) => {
            count(source, "v1_image", "miss");
            Ok(())
        }
        Err(legacy::Error::Interrupted) => Err(upstream_error(
            source,
            UpstreamError::Unavailable(format!("the layer of {id} broke off; nothing was kept")),
        )),
        Err(
            e @ (legacy::Error::ChecksumMismatch
            | legacy::Error::InvalidJson
            | legacy::Error::MissingId
            | legacy::Error::WrongId
            | legacy::Error::InvalidData),
        ) => Err(upstream_error(
            source,
            UpstreamError::Invalid(format!("image {id}: {e}; nothing was kept")),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The layer's body, counted into the fetched bytes, and broken off with
/// an error when it ends short of (or runs past) the size the source
/// named: a body that is not the layer is never completed.
fn counted(
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>,
    expected: Option<u64>,
    source: &Cached,
) -> ByteStream {
    let seen = Arc::new(AtomicU64::new(0));
    let tally = seen.clone();
    let fetched = crate::metrics::get()
        .mirror_fetched_bytes
        .with_label_values(&[source.settings.name.as_str()]);
    let body = stream.inspect(move |block| {
        if let Ok(block) = block {
            tally.fetch_add(block.len() as u64, Ordering::Relaxed);
            fetched.inc_by(block.len() as u64);
        }
    });
    let end = futures_util::stream::once(async move {
        let got = seen.load(Ordering::Relaxed);
        match expected {
            Some(n) if n != got => Some(Err(std::io::Error::other(format!(
                "the layer is {got} bytes, the source named {n}"
            )))),
            _ => None,
        }
    })
    .filter_map(|item| async move { item });
    Box::pin(body.chain(end))
}

/// Stores the source's tag as this registry's copy, with its record.
async fn copy_tag(
    storage: &dyn Storage,
    name: &RepositoryName,
    tag: &Tag,
    image: &ImageId,
) -> Result<()> {
    legacy::put_tag_copy(storage, name, tag, image).await?;
    let record = TagChecked {
        image: image.to_string(),
        checked_ms: now_ms(),
    };
    write_record(storage, &layout::v1_tag_checked(name, tag), &record).await;
    Ok(())
}

/// Removes a copied tag the source no longer has, and its record.
async fn forget_tag(storage: &dyn Storage, name: &RepositoryName, tag: &Tag) -> Result<()> {
    // The source decides what its tags are: no rule holds a copy.
    let none = crate::registry::rules::Rules::default();
    match legacy::delete_tag(storage, &none, name, tag).await {
        Ok(()) | Err(legacy::Error::TagToDeleteNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    remove_if_present(storage, &layout::v1_tag_checked(name, tag)).await
}

/// A tag pushed or deleted here is this registry's own from then on: its
/// record goes, and the source's tag never replaces it.
pub async fn forget_copy(storage: &dyn Storage, name: &RepositoryName, tag: &Tag) -> Result<()> {
    remove_if_present(storage, &layout::v1_tag_checked(name, tag)).await
}

/// A repository deleted here: its records go with it (a pull afterwards
/// asks the source afresh, as for a repository never pulled).
pub async fn forget_repository(storage: &dyn Storage, name: &RepositoryName) -> Result<()> {
    remove_if_present(storage, &layout::v1_repository(name)).await
}

/// The tags of a repository that are copies (have a record).
async fn copied_tags(storage: &dyn Storage, name: &RepositoryName) -> Result<Vec<String>> {
    match storage.list(&layout::v1_tags_checked(name)).await {
        Ok(files) => Ok(files
            .into_iter()
            .map(|f| crate::storage::layout::legacy::unescape(&f))
            .collect()),
        Err(StorageError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(legacy::Error::from(e).into()),
    }
}

async fn read_record<T: serde::de::DeserializeOwned>(
    storage: &dyn Storage,
    path: &str,
) -> Result<Option<T>> {
    match storage.get(path).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(legacy::Error::from(e).into()),
    }
}

/// Writes a record; a failure only means the source is asked sooner.
async fn write_record<T: serde::Serialize>(storage: &dyn Storage, path: &str, record: &T) {
    let bytes = Bytes::from(serde_json::to_vec(record).unwrap_or_default());
    if let Err(e) = storage.put(path, bytes).await {
        log::warn!("v1 mirror: recording {path}: {e}");
    }
}

async fn remove_if_present(storage: &dyn Storage, path: &str) -> Result<()> {
    match storage.remove(path).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(legacy::Error::from(e).into()),
    }
}

/// The copy when the source cannot be asked (said in the log); the
/// source's failure when there is none.
fn stale_or<T>(
    local: legacy::Result<T>,
    name: &RepositoryName,
    error: Error,
) -> Result<(T, Option<Freshness>)> {
    match local {
        Ok(value) => {
            log::warn!("v1 mirror: {error}; serving the cached tags of {name}");
            Ok((value, Some(Freshness::Stale)))
        }
        Err(_) => Err(error),
    }
}

fn count(source: &Cached, kind: &str, result: &str) {
    crate::metrics::get()
        .mirror_requests
        .with_label_values(&[source.settings.name.as_str(), kind, result])
        .inc();
}

fn count_error(source: &Cached, error: &UpstreamError) {
    crate::metrics::get()
        .mirror_errors
        .with_label_values(&[source.settings.name.as_str(), error.kind()])
        .inc();
}

fn upstream_error(source: &Cached, error: UpstreamError) -> Error {
    count_error(source, &error);
    Error::Upstream {
        upstream: source.settings.url.clone(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_read_from_one_value_or_a_printed_list() {
        let hex = "a".repeat(64);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-docker-checksum-payload",
            format!("['sha256:{hex}', 'tarsum+sha256:{}']", "b".repeat(64))
                .parse()
                .unwrap(),
        );
        assert_eq!(
            named_checksums(&headers),
            vec![
                format!("sha256:{hex}"),
                format!("sha256:{}", "b".repeat(64))
            ]
        );
        headers.insert("x-docker-checksum-payload", "sha256:12".parse().unwrap());
        assert!(named_checksums(&headers).is_empty());
    }

    #[test]
    fn path_parts_are_escaped() {
        let name = |n: &str| RepositoryName::parse(n).unwrap();
        assert_eq!(
            repository_path(&name("ns/app")).as_deref(),
            Some("/v1/repositories/ns/app")
        );
        assert_eq!(repository_path(&name("ns/..")), None);
        assert_eq!(repository_path(&name("../app")), None);
        assert_eq!(part("a-b.c_d"), "a-b.c_d");
        assert_eq!(part("../x"), "..%2Fx");
        assert_eq!(part("é"), "%C3%A9");
    }
}
