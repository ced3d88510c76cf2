//! Quotas: how many bytes the repositories a rule covers may hold between
//! them. This file keeps each rule's usage (`_quotas/<key>/usage`) and
//! refuses past the bound; what a repository counts is each model's
//! (`oci::quota` for the v2 tree, `legacy::quota` for the v1 tree), as
//! is the collector's count that sets the usage right.
//!
//! Every change is one compare-and-swap of the usage, so that two
//! instances on one store never both take the last room. `added` only
//! grows (what pushes ever added): the collector, which counts what the
//! repositories reference as of its walk, adds what pushes added
//! meanwhile, so that none is lost.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::RuleSettings;
use crate::storage::layout::quotas;
use crate::storage::{Storage, StorageError, Version};

/// How often a change is tried again when another push changed the usage
/// between its read and its write.
const TRIES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Past the bound: the message names the rule, its bound, what is used
    /// and what the push needs.
    #[error("{0}")]
    Exceeded(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A quota rule: what it covers, its bound, and the key its usage is kept
/// under, made of what it covers so that the rules may be reordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub key: String,
    pub limit: u64,
    /// `repositories: team/*`, as the messages and the metrics name it.
    pub name: String,
}

impl Quota {
    pub(super) fn new(rule: &RuleSettings, limit: u64) -> Self {
        use sha2::Digest;
        let patterns: Vec<&str> = rule.repositories.iter().map(|p| p.as_str()).collect();
        let key = hex::encode(sha2::Sha256::digest(patterns.join("\n").as_bytes()));
        Quota {
            key: key[..16].to_owned(),
            limit,
            name: format!("repositories: {}", patterns.join(", ")),
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quota `{}` of {} bytes", self.name, self.limit)
    }
}

/// What the repositories of a rule hold, and what pushes ever added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub bytes: u64,
    pub added: u64,
}

/// The usage of `quota`, and its version for a compare-and-swap.
async fn read(storage: &dyn Storage, quota: &Quota) -> Result<(Usage, Option<Version>)> {
    match storage.get_versioned(&quotas::usage(&quota.key)).await {
        // A file that does not parse counts as nothing: the collector
        // writes it whole again.
        Ok((bytes, version)) => Ok((
            serde_json::from_slice(&bytes).unwrap_or_default(),
            Some(version),
        )),
        Err(StorageError::NotFound(_)) => Ok((Usage::default(), None)),
        Err(e) => Err(e.into()),
    }
}

/// Sets the usage to what `change` makes of it, if `change` allows;
/// returns the usage written.
async fn update(
    storage: &dyn Storage,
    quota: &Quota,
    change: impl Fn(Usage) -> Result<Usage>,
) -> Result<Usage> {
    for _ in 0..TRIES {
        let (usage, version) = read(storage, quota).await?;
        let next = change(usage)?;
        let body = Bytes::from(serde_json::to_vec(&next).expect("plain numbers"));
        if storage
            .put_if_unsynced(&quotas::usage(&quota.key), body, version.as_ref())
            .await?
        {
            show(quota, next);
            return Ok(next);
        }
    }
    Err(StorageError::Unavailable(format!(
        "the usage of {quota} changed {TRIES} times during one update"
    ))
    .into())
}

/// The metrics of `quota` as of `usage`.
fn show(quota: &Quota, usage: Usage) {
    let metrics = crate::metrics::get();
    let gauge = |bytes: u64| bytes.min(i64::MAX as u64) as i64;
    metrics
        .quota_used
        .with_label_values(&[&quota.name])
        .set(gauge(usage.bytes));
    metrics
        .quota_limit
        .with_label_values(&[&quota.name])
        .set(gauge(quota.limit));
}

/// The usage of `quota` now (and the metrics set to it).
pub async fn usage(storage: &dyn Storage, quota: &Quota) -> Result<Usage> {
    let (usage, _) = read(storage, quota).await?;
    show(quota, usage);
    Ok(usage)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Logs and counts a refusal; the message for the client.
fn refuse(action: &str, quota: &Quota, used: u64, needed: u64) -> Error {
    let message = format!(
        "{quota} ({}): {} used, this push needs {} more",
        mib(quota.limit),
        mib(used),
        mib(needed)
    );
    log::warn!("{action}: {message}");
    super::count("quota", action);
    Error::Exceeded(message)
}

/// Charges `quota` with `needed` bytes a push adds, or refuses the push,
/// charging nothing, when they do not fit.
pub async fn charge(storage: &dyn Storage, quota: &Quota, needed: u64) -> Result<()> {
    if needed == 0 {
        return Ok(());
    }
    update(storage, quota, |usage| {
        if usage.bytes.saturating_add(needed) > quota.limit {
            return Err(refuse("refused_push", quota, usage.bytes, needed));
        }
        Ok(Usage {
            bytes: usage.bytes + needed,
            added: usage.added.saturating_add(needed),
        })
    })
    .await?;
    Ok(())
}

/// Refuses at once an upload of `size` bytes that could not fit whatever
/// else it shares: what `quota` has left is less.
pub async fn room_for(storage: &dyn Storage, quota: &Quota, size: u64) -> Result<()> {
    let usage = usage(storage, quota).await?;
    if usage.bytes.saturating_add(size) > quota.limit {
        return Err(refuse("refused_upload", quota, usage.bytes, size));
    }
    Ok(())
}

/// Gives `bytes` back to `quota`, once what counted them is gone (a
/// delete cut short before counts them still: never too little).
pub async fn give_back(storage: &dyn Storage, quota: &Quota, bytes: u64) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    update(storage, quota, |usage| {
        Ok(Usage {
            bytes: usage.bytes.saturating_sub(bytes),
            added: usage.added,
        })
    })
    .await?;
    Ok(())
}

/// The collector's count of `quota`: `bytes` as its walk found them, and
/// the usage's `added` when the walk began. Pushes since then are added
/// on top, so that none is lost.
pub async fn reconcile(
    storage: &dyn Storage,
    quota: &Quota,
    bytes: u64,
    added_at_start: u64,
) -> Result<Usage> {
    update(storage, quota, |usage| {
        let since = usage.added.saturating_sub(added_at_start);
        Ok(Usage {
            bytes: bytes.saturating_add(since),
            added: usage.added,
        })
    })
    .await
}

/// The size a marker file holds (its decimal text); 0 where it is not one.
pub fn marker_size(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A marker file for `size` bytes.
pub fn marker(size: u64) -> Bytes {
    Bytes::from(size.to_string())
}

/// Keeps the metrics of every quota as the store has it, for an instance
/// that does not push itself (another instance's pushes, a collection
/// run by `registry-v1 gc`): read at the start, then every `every`.
pub async fn keep_shown(
    storage: std::sync::Arc<dyn Storage>,
    quotas: Vec<Quota>,
    every: std::time::Duration,
) {
    loop {
        for quota in &quotas {
            if let Err(e) = usage(&*storage, quota).await {
                log::warn!("{quota}: its usage cannot be read: {e}");
            }
        }
        actix_web::rt::time::sleep(every).await;
    }
}
