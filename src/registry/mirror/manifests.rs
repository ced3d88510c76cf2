//! Manifests through the cache. By digest: the copy, once stored, is the
//! manifest for good (its bytes are its name). By tag: the copy is trusted
//! for the upstream's `tag_ttl`, then checked with a HEAD, which costs no
//! pull on Docker Hub's limits; a tag that moved is fetched anew; an
//! upstream that cannot answer leaves the copy served, said to be stale.

use bytes::Bytes;

use super::{Error, Freshness, Mirror, Pick, Result, Route};
use crate::registry::bridge;
use crate::registry::oci::{self, manifests, Algorithm, Digest, Name, Reference, Tag};
use crate::storage::layout::mirror as layout;
use crate::storage::{Storage, StorageError};
use crate::upstream::UpstreamError;

/// A manifest to answer with, and how the cache made it (`None`: this
/// registry's own).
pub struct Served {
    pub stored: manifests::Stored,
    pub freshness: Option<Freshness>,
    /// The `ns` the request named and this answer is for.
    pub namespace: Option<String>,
    /// The cached repository this answer fetched into, for the API to
    /// tell search (a copy is found as a pushed repository is).
    pub fetched_into: Option<Name>,
}

/// When a cached tag was last checked, and what it pointed at then.
#[derive(serde::Serialize, serde::Deserialize)]
struct Checked {
    digest: String,
    checked_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Mirror {
    /// `GET`/`HEAD /v2/<name>/manifests/<reference>[?ns=]`: this
    /// registry's own manifest (or a v1 tag's, through the bridge), else
    /// the cached copy of the upstream the request picks.
    pub async fn manifest(
        &self,
        storage: &dyn Storage,
        name: &Name,
        ns: Option<&str>,
        reference: &Reference,
        accept: &str,
    ) -> Result<Served> {
        let route = match self.pick(name, ns)? {
            Pick::Local => None,
            Pick::Cache(route) => Some(route),
            Pick::Fallback(route) => {
                // Found or not is all this needs: which of the repository or
                // the manifest is unknown here would cost a listing on every
                // request the cache answers.
                let found = match bridge::find_manifest(storage, name, reference).await {
                    Ok(found) => found,
                    Err(oci::Error::ManifestUnknown(_) | oci::Error::NameUnknown(_)) => None,
                    Err(e) => return Err(e.into()),
                };
                // A default upstream that speaks only v1 (the old Python
                // registry): its tags through the v1 cache, which stores
                // them in the v1 tree the bridge serves (see `legacy`).
                if let Reference::Tag(tag) = reference {
                    let missed = found.is_none();
                    if let Some(stored) = self.v1_manifest(storage, name, tag, missed).await? {
                        return Ok(Served {
                            stored,
                            freshness: Some(Freshness::Miss),
                            namespace: None,
                            fetched_into: None,
                        });
                    }
                }
                match found {
                    Some(stored) => {
                        return Ok(Served {
                            stored,
                            freshness: None,
                            namespace: None,
                            fetched_into: None,
                        })
                    }
                    None => Some(route),
                }
            }
        };
        let Some(route) = route else {
            return Ok(Served {
                stored: bridge::manifest(storage, name, reference).await?,
                freshness: None,
                namespace: None,
                fetched_into: None,
            });
        };
        let (stored, freshness) = match reference {
            Reference::Digest(digest) => by_digest(storage, &route, digest, accept).await?,
            Reference::Tag(tag) => by_tag(storage, &route, tag, accept).await?,
        };
        route.count("manifest", freshness);
        Ok(Served {
            stored,
            freshness: Some(freshness),
            namespace: route.namespace.clone(),
            fetched_into: (freshness == Freshness::Miss).then(|| route.local.clone()),
        })
    }
}

async fn by_digest(
    storage: &dyn Storage,
    route: &Route<'_>,
    digest: &Digest,
    accept: &str,
) -> Result<(manifests::Stored, Freshness)> {
    let reference = Reference::Digest(digest.clone());
    match manifests::get(storage, &route.local, &reference).await {
        Ok(stored) => return Ok((stored, Freshness::Hit)),
        Err(oci::Error::ManifestUnknown(_) | oci::Error::NameUnknown(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let fetched = fetch(route, &digest.to_string(), accept).await?;
    if Digest::of(digest.algorithm(), &fetched.bytes) != *digest {
        return Err(route.upstream_error(UpstreamError::Invalid(format!(
            "the manifest sent for {digest} has another digest"
        ))));
    }
    Ok((
        keep(storage, route, &reference, fetched).await?,
        Freshness::Miss,
    ))
}

async fn by_tag(
    storage: &dyn Storage,
    route: &Route<'_>,
    tag: &Tag,
    accept: &str,
) -> Result<(manifests::Stored, Freshness)> {
    let reference = Reference::Tag(tag.clone());
    let cached = match manifests::get(storage, &route.local, &reference).await {
        Ok(stored) => Some(stored),
        Err(oci::Error::ManifestUnknown(_) | oci::Error::NameUnknown(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let record_path = layout::tag_checked(route.local.as_str(), tag.as_str());
    if let Some(stored) = &cached {
        let ttl = route.upstream.settings.tag_ttl.as_millis() as u64;
        if let Some(checked) = read_checked(storage, &record_path).await? {
            let fresh = now_ms().saturating_sub(checked.checked_ms) < ttl;
            if fresh && checked.digest == stored.digest.to_string() {
                return Ok((stored.clone(), Freshness::Hit));
            }
        }
    }
    let client = &route.upstream.client;
    let upstream_digest = match client
        .manifest_digest(&route.remote, tag.as_str(), accept)
        .await
    {
        Ok(digest) => digest,
        Err(UpstreamError::NotFound) => {
            return Err(oci::Error::ManifestUnknown(tag.to_string()).into())
        }
        Err(error) => return stale_or(route, tag, cached, error),
    };
    if let Some(stored) = cached
        .as_ref()
        .filter(|s| upstream_digest.as_deref() == Some(&s.digest.to_string()))
    {
        write_checked(storage, &record_path, &stored.digest).await;
        return Ok((stored.clone(), Freshness::Revalidated));
    }
    let fetched = match fetch(route, tag.as_str(), accept).await {
        Ok(fetched) => fetched,
        Err(Error::Upstream { error, .. }) if !matches!(error, UpstreamError::NotFound) => {
            return stale_or(route, tag, cached, error)
        }
        Err(e) => return Err(e),
    };
    let digest = Digest::of(Algorithm::Sha256, &fetched.bytes);
    if let Some(sent) = &fetched.digest {
        // An upstream that names another algorithm: trust the bytes.
        if sent.starts_with("sha256:") && *sent != digest.to_string() {
            return Err(route.upstream_error(UpstreamError::Invalid(format!(
                "the manifest of {tag} is {digest}, not the {sent} its header says"
            ))));
        }
    }
    let stored = keep(storage, route, &reference, fetched).await?;
    write_checked(storage, &record_path, &digest).await;
    Ok((stored, Freshness::Miss))
}

/// Stores the upstream's manifest as the copy of `reference`.
async fn keep(
    storage: &dyn Storage,
    route: &Route<'_>,
    reference: &Reference,
    fetched: crate::upstream::Manifest,
) -> Result<manifests::Stored> {
    let media_type = Some(fetched.media_type.as_str()).filter(|t| !t.is_empty());
    manifests::put_copy(storage, &route.local, reference, media_type, fetched.bytes).await?;
    Ok(manifests::get(storage, &route.local, reference).await?)
}

/// The cached copy when the upstream cannot be asked; the upstream's
/// error when there is none.
fn stale_or(
    route: &Route<'_>,
    tag: &Tag,
    cached: Option<manifests::Stored>,
    error: UpstreamError,
) -> Result<(manifests::Stored, Freshness)> {
    route.count_error(&error);
    match cached {
        Some(stored) => {
            log::warn!(
                "upstream {} could not confirm {}:{tag} ({error}): serving the cached copy",
                route.upstream.settings.url,
                route.local
            );
            Ok((stored, Freshness::Stale))
        }
        None => Err(Error::Upstream {
            upstream: route.upstream.settings.url.clone(),
            error,
        }),
    }
}

async fn fetch(
    route: &Route<'_>,
    reference: &str,
    accept: &str,
) -> Result<crate::upstream::Manifest> {
    route
        .upstream
        .client
        .manifest(&route.remote, reference, accept)
        .await
        .map_err(|e| match e {
            UpstreamError::NotFound => {
                Error::Model(oci::Error::ManifestUnknown(reference.to_owned()))
            }
            e => route.upstream_error(e),
        })
}

async fn read_checked(storage: &dyn Storage, path: &str) -> Result<Option<Checked>> {
    match storage.get(path).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(oci::Error::from(e).into()),
    }
}

/// Records a check; a failure only means the next request asks again.
async fn write_checked(storage: &dyn Storage, path: &str, digest: &Digest) {
    let record = Checked {
        digest: digest.to_string(),
        checked_ms: now_ms(),
    };
    let bytes = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
    if let Err(e) = storage.put(path, bytes).await {
        log::warn!("pull-through cache: recording the check of {path}: {e}");
    }
}
