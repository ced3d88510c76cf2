//! The referrers API: the manifests of a repository whose `subject` is a
//! given manifest. Each push with a subject leaves a link under the subject
//! (`_referrers/`, a folder of ours: see the layout), so that listing reads
//! the referrers of one subject, never every manifest of the repository.

use std::collections::BTreeMap;

use serde::Serialize;

use super::digest::Digest;
use super::error::Result;
use super::links;
use super::manifests::{list_or_empty, remove_if_present, Manifest, OCI_INDEX};
use super::name::Name;
use crate::storage::layout::distribution as layout;
use crate::storage::{Storage, StorageError};

/// The media type of the answer.
pub const MEDIA_TYPE: &str = OCI_INDEX;

/// The answer of the referrers API: an OCI index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: &'static str,
    pub manifests: Vec<Referrer>,
}

/// The descriptor of one referrer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Records that manifest `referrer` names `subject` as its subject.
pub async fn record(
    storage: &dyn Storage,
    name: &Name,
    subject: &Digest,
    referrer: &Digest,
) -> Result<()> {
    links::write(storage, &links::referrer(name, subject, referrer), referrer).await
}

/// Drops that record (the referrer was deleted).
pub async fn forget(
    storage: &dyn Storage,
    name: &Name,
    subject: &Digest,
    referrer: &Digest,
) -> Result<()> {
    let link = links::referrer(name, subject, referrer);
    remove_if_present(storage, link.trim_end_matches("/link")).await
}

/// The most referrer manifests one answer reads, and the most bytes of
/// descriptors it holds: a subject may have any number of referrers, each
/// up to 4 MiB of annotations, so an answer is a page (the spec lets the
/// registry paginate, with a `Link` to the next one).
pub const PAGE_READS: usize = 1000;
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// One page of the referrers of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub index: Index,
    /// The last digest this page looked at, when more follow: the next
    /// page starts after it.
    pub next: Option<String>,
}

/// The referrers of `subject` in the repository, sorted by digest; only
/// those of `artifact_type` when it is given. A subject that is not there
/// (or a repository that is not) has none: the spec forbids a 404 here,
/// which clients would take for a registry without the API.
pub async fn list(
    storage: &dyn Storage,
    name: &Name,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Index> {
    Ok(page(
        storage,
        name,
        subject,
        artifact_type,
        None,
        usize::MAX,
        usize::MAX,
    )
    .await?
    .index)
}

/// A page of the referrers after digest `last`: at most `reads`
/// manifests read and about `bytes` of descriptors (at least one).
pub async fn page(
    storage: &dyn Storage,
    name: &Name,
    subject: &Digest,
    artifact_type: Option<&str>,
    last: Option<&str>,
    reads: usize,
    bytes: usize,
) -> Result<Page> {
    let folder = layout::referrers(name.as_str(), subject.algorithm().as_str(), subject.hex());
    let mut recorded = Vec::new();
    for algorithm in list_or_empty(storage, &folder).await? {
        for hex in list_or_empty(storage, &format!("{folder}/{algorithm}")).await? {
            if let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) {
                recorded.push(digest);
            }
        }
    }
    // Sorted by their text, the order of the answer.
    recorded.sort_by_cached_key(|d| d.to_string());
    let mut after = recorded
        .into_iter()
        .filter(|d| last.is_none_or(|l| d.to_string().as_str() > l))
        .peekable();
    let mut manifests = Vec::new();
    let (mut read, mut held) = (0, 0);
    let mut seen = None;
    loop {
        if read >= reads || (held >= bytes && !manifests.is_empty()) {
            break;
        }
        let Some(digest) = after.next() else {
            break;
        };
        read += 1;
        if let Some(referrer) = describe(storage, name, subject, &digest).await? {
            if artifact_type.is_none_or(|t| referrer.artifact_type.as_deref() == Some(t)) {
                held += serde_json::to_vec(&referrer).map_or(0, |v| v.len());
                manifests.push(referrer);
            }
        }
        seen = Some(digest.to_string());
    }
    let next = after.peek().is_some().then_some(seen).flatten();
    Ok(Page {
        index: Index {
            schema_version: 2,
            media_type: OCI_INDEX,
            manifests,
        },
        next,
    })
}

/// The descriptor of a recorded referrer; `None` when it is no longer in
/// the repository (deleted by another registry on the same storage) or no
/// longer names the subject.
async fn describe(
    storage: &dyn Storage,
    name: &Name,
    subject: &Digest,
    digest: &Digest,
) -> Result<Option<Referrer>> {
    if !links::has_revision(storage, name, digest).await? {
        return Ok(None);
    }
    let bytes = match storage.get(&links::blob_data(digest)).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Ok(manifest) = Manifest::parse(None, &bytes) else {
        log::warn!("referrer {digest} of {name} is not a manifest we can read");
        return Ok(None);
    };
    if manifest.subject.as_ref().map(|s| &s.digest) != Some(subject) {
        return Ok(None);
    }
    Ok(Some(Referrer {
        media_type: manifest.media_type,
        digest: digest.to_string(),
        size: bytes.len() as u64,
        artifact_type: manifest.artifact_type,
        annotations: manifest.annotations,
    }))
}
