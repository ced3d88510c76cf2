//! Push records: how a push and a sweep meet without losing either.
//!
//! A push that makes something reachable (a v2 manifest PUT, a v1 tag PUT,
//! a v1 image json PUT) first writes a record of what it references under
//! `_gc/pushes/`, then, while a deletion batch runs (`_gc/sweeping`), waits
//! for it to end, and only then checks that what it references exists.
//! The collector sets `sweeping` before it reads the records for a batch,
//! and keeps whatever they name. So either the collector read the record
//! (what it names is kept), or the record came after the flag was set,
//! and the push sees the flag and waits until the batch is over: its
//! check then sees what the batch deleted (`MANIFEST_BLOB_UNKNOWN`, the
//! client uploads again). A stored manifest never names a deleted blob.
//!
//! A record counts for [`WINDOW`] after it was written: the push it
//! stands for has ended by then, and its result is what a mark sees.
//!
//! The flag carries the time it stops counting, so a collector killed
//! mid-batch holds pushes up for at most [`FLAG_LIFETIME`].
//!
//! Records that no longer count are removed by the collector at the end of
//! each run, and, so that they do not pile up when no collection runs
//! (`gc_interval` off, the default), by [`prune`] inside `serve` after
//! pushes. Removing a record is safe only where no run could still need
//! it: a run that began at `S` counts the records written from
//! `S - WINDOW` on, and reads them in every batch until its end. So a
//! record is removed only while holding the collector's own lease (no run
//! is under way; one that stalled past its lease finds it lost and stops),
//! and only when older than [`WINDOW`] (and the grace period, as the
//! collector does) before the lease was taken: every run that begins
//! later counts only younger ones.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::storage::layout::collection as layout;
use crate::storage::lease::{now_ms, token, Acquired, Lease};
use crate::storage::{Storage, StorageError};

/// The longest a manifest PUT goes between its record and its check; past
/// it, the push writes a record anew (see `oci::manifests::put`).
pub const PUT_BOUND: Duration = Duration::from_secs(5);
/// How long a record counts: longer than a push takes from its record to
/// its last write (the PUT bound and the writes after it). A push that
/// ended before a run began is seen by that run's mark.
pub const WINDOW: Duration = Duration::from_secs(15);

/// How long a deletion batch may run: a push waits at most about this.
pub const BATCH_TIME: Duration = Duration::from_secs(2);
/// How long a `sweeping` flag counts after it was set: longer than a batch,
/// so that a live batch always ends first.
pub const FLAG_LIFETIME: Duration = Duration::from_secs(3);

/// What one push references: v2 manifests (whose own references count
/// too), v2 blobs, v1 images (with their ancestry).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    #[serde(default)]
    pub manifests: BTreeSet<String>,
    #[serde(default)]
    pub blobs: BTreeSet<String>,
    #[serde(default)]
    pub images: BTreeSet<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Flag {
    until_ms: u64,
}

/// A record was written since [`keep_pruned`] last looked: only then is
/// there anything new to prune (an idle registry lists nothing).
static WRITTEN: AtomicBool = AtomicBool::new(false);

/// How often [`keep_pruned`] looks, when pushes came.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// How the lease holder's name starts while [`prune`] holds it: a
/// collection that finds it waits for it (a few seconds) rather than
/// reporting another collector.
pub const PRUNER: &str = "prune-";

/// Writes the record, then waits while a deletion batch runs. The caller
/// checks what it references only after this returns.
pub async fn announce(storage: &dyn Storage, record: &Record) -> Result<(), StorageError> {
    let data = Bytes::from(serde_json::to_vec(record).unwrap_or_default());
    storage.put(&layout::push(now_ms(), &token()), data).await?;
    WRITTEN.store(true, Ordering::Relaxed);
    let give_up = std::time::Instant::now() + FLAG_LIFETIME + Duration::from_millis(500);
    while let Some(until) = sweeping_until(storage).await? {
        if until <= now_ms() || std::time::Instant::now() >= give_up {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// When the running batch's flag stops counting; `None` without one.
async fn sweeping_until(storage: &dyn Storage) -> Result<Option<u64>, StorageError> {
    match storage.get(&layout::sweeping()).await {
        // A flag that does not parse counts for its lifetime from now.
        Ok(bytes) => Ok(Some(
            serde_json::from_slice::<Flag>(&bytes)
                .map_or(now_ms() + FLAG_LIFETIME.as_millis() as u64, |f| f.until_ms),
        )),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets the flag for one batch; returns when it stops counting.
pub async fn start_batch(storage: &dyn Storage) -> Result<u64, StorageError> {
    let until_ms = now_ms() + FLAG_LIFETIME.as_millis() as u64;
    let data = Bytes::from(serde_json::to_vec(&Flag { until_ms }).unwrap_or_default());
    storage.put(&layout::sweeping(), data).await?;
    Ok(until_ms)
}

pub async fn end_batch(storage: &dyn Storage) -> Result<(), StorageError> {
    match storage.remove(&layout::sweeping()).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the records older than `keep` (at least [`WINDOW`]) under the
/// collector's lease (see the module comment); `None` when a collection
/// holds it (that run removes them at its end).
pub async fn prune(storage: &dyn Storage, keep: Duration) -> Result<Option<u64>, StorageError> {
    let holder = format!("{PRUNER}{}", token());
    let ttl = super::LEASE_TTL;
    let mut lease = match Lease::acquire(storage, &layout::lease(), &holder, ttl).await? {
        Acquired::Held(lease) => lease,
        Acquired::Busy { .. } => return Ok(None),
    };
    // After the lease is ours: a run that begins later counts only
    // records younger than this.
    let cutoff = now_ms().saturating_sub(keep.max(WINDOW).as_millis() as u64);
    let mut renewed = std::time::Instant::now();
    let result = remove_before(storage, cutoff, async || {
        if renewed.elapsed() > ttl / 3 {
            // Expired and taken over by a collection: it goes on.
            if !lease.renew(storage).await? {
                return Ok(false);
            }
            renewed = std::time::Instant::now();
        }
        Ok(true)
    })
    .await;
    if let Err(e) = lease.release(storage).await {
        log::warn!("push records: releasing the collector's lease: {e}");
    }
    result.map(Some)
}

/// Inside `serve`: every [`PRUNE_EVERY`] after a push of this process,
/// the records older than `keep` go ([`prune`]), so that they stay bounded
/// (by the pushes of the last `keep` and a little) without a collection.
pub async fn keep_pruned(storage: std::sync::Arc<dyn Storage>, keep: Duration) {
    loop {
        actix_web::rt::time::sleep(PRUNE_EVERY).await;
        if !WRITTEN.swap(false, Ordering::Relaxed) {
            continue;
        }
        match prune(&*storage, keep).await {
            Ok(Some(0) | None) => {}
            Ok(Some(n)) => log::debug!("push records: {n} old ones removed"),
            Err(e) => {
                // Tried again after the next push.
                WRITTEN.store(true, Ordering::Relaxed);
                log::warn!("push records: removing old ones: {e}");
            }
        }
    }
}

/// Removes the records written before `cutoff` (Unix milliseconds, read
/// from their names: nothing is read but the listing), a few at once (a
/// round trip each on S3). Between batches `go_on` is asked, where the
/// caller renews its lease: `false` stops, with what was removed so far.
pub async fn remove_before<E: From<StorageError>>(
    storage: &dyn Storage,
    cutoff: u64,
    mut go_on: impl AsyncFnMut() -> Result<bool, E>,
) -> Result<u64, E> {
    let names = match storage.list(&layout::pushes()).await {
        Ok(names) => names,
        Err(StorageError::NotFound(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let old: Vec<String> = names
        .into_iter()
        .filter(|file| layout::push_time(file).is_some_and(|time| time < cutoff))
        .collect();
    let mut removed = 0;
    for chunk in old.chunks(8) {
        if !go_on().await? {
            break;
        }
        let removals = chunk.iter().map(|file| async move {
            match storage
                .remove(&format!("{}/{file}", layout::pushes()))
                .await
            {
                Ok(()) => Ok(1),
                Err(StorageError::NotFound(_)) => Ok(0),
                Err(e) => Err(e),
            }
        });
        for done in futures_util::future::join_all(removals).await {
            removed += done?;
        }
    }
    Ok(removed)
}

/// Every record there is, with the time it was written; records that do
/// not parse name nothing.
pub async fn read_all(storage: &dyn Storage) -> Result<Vec<(String, u64, Record)>, StorageError> {
    let names = match storage.list(&layout::pushes()).await {
        Ok(names) => names,
        Err(StorageError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records = Vec::with_capacity(names.len());
    for file in names {
        let Some(time) = layout::push_time(&file) else {
            continue;
        };
        let path = format!("{}/{file}", layout::pushes());
        match storage.get(&path).await {
            Ok(bytes) => {
                let record = serde_json::from_slice(&bytes).unwrap_or_default();
                records.push((path, time, record));
            }
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    #[actix_web::test]
    async fn a_push_waits_for_the_batch_and_not_for_a_dead_one() {
        let storage = MemoryStorage::new();
        let record = Record {
            blobs: ["sha256:ab".to_owned()].into(),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        announce(&storage, &record).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
        let records = read_all(&storage).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].2, record);

        // A live batch: the push waits until it ends.
        start_batch(&storage).await.unwrap();
        let ender = async {
            actix_web::rt::time::sleep(Duration::from_millis(600)).await;
            end_batch(&storage).await.unwrap();
        };
        let started = std::time::Instant::now();
        let (pushed, ()) = futures_util::join!(announce(&storage, &record), ender);
        pushed.unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(600), "{waited:?}");
        assert!(waited < Duration::from_millis(1500), "{waited:?}");

        // A flag left by a killed collector holds pushes up for its lifetime at most.
        storage
            .put(
                &layout::sweeping(),
                Bytes::from_static(b"{\"until_ms\": 1}"),
            )
            .await
            .unwrap();
        let started = std::time::Instant::now();
        announce(&storage, &record).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(read_all(&storage).await.unwrap().len(), 3);
    }

    #[actix_web::test]
    async fn old_records_go_without_a_collection_but_not_during_one() {
        let storage = MemoryStorage::new();
        let old = now_ms() - WINDOW.as_millis() as u64 - 1000;
        for i in 0..50 {
            let path = layout::push(old - i, &token());
            storage.put(&path, Bytes::from_static(b"{}")).await.unwrap();
        }
        announce(&storage, &Record::default()).await.unwrap();
        // A collection under way may still need them: they stay.
        let lease = match Lease::acquire(
            &storage,
            &layout::lease(),
            "collector",
            super::super::LEASE_TTL,
        )
        .await
        .unwrap()
        {
            Acquired::Held(lease) => lease,
            Acquired::Busy { .. } => panic!("lease busy"),
        };
        assert_eq!(prune(&storage, Duration::ZERO).await.unwrap(), None);
        assert_eq!(read_all(&storage).await.unwrap().len(), 51);
        lease.release(&storage).await.unwrap();
        // Then only the one that still counts is left, and the lease is free.
        assert_eq!(prune(&storage, Duration::ZERO).await.unwrap(), Some(50));
        let left = read_all(&storage).await.unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].1 >= old + 1000);
        assert!(matches!(
            Lease::acquire(&storage, &layout::lease(), "next", WINDOW)
                .await
                .unwrap(),
            Acquired::Held(_)
        ));
    }

    #[actix_web::test]
    async fn a_collection_waits_for_the_pruner_not_for_another_collector() {
        use super::super::{collect, Options, Outcome};
        let storage = MemoryStorage::new();
        let options = Options {
            dry_run: true,
            delete_untagged: false,
            grace_period: Duration::ZERO,
            upload_max_age: Duration::ZERO,
            lease_ttl: super::super::LEASE_TTL,
            progress: false,
            cache: Default::default(),
            rules: Default::default(),
        };
        let held_by = |holder: &str| {
            let until = now_ms() + 800;
            Bytes::from(format!(
                "{{\"holder\":\"{holder}\",\"expires_ms\":{until}}}"
            ))
        };
        storage
            .put(&layout::lease(), held_by(&format!("{PRUNER}x")))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let outcome = collect(&storage, options.clone()).await.unwrap();
        assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
        assert!(started.elapsed() >= Duration::from_millis(500));
        storage
            .put(&layout::lease(), held_by("collector"))
            .await
            .unwrap();
        let outcome = collect(&storage, options).await.unwrap();
        assert!(matches!(outcome, Outcome::Busy { .. }), "{outcome:?}");
    }
}
