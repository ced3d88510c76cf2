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

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::storage::layout::collection as layout;
use crate::storage::lease::{now_ms, token};
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

/// Writes the record, then waits while a deletion batch runs. The caller
/// checks what it references only after this returns.
pub async fn announce(storage: &dyn Storage, record: &Record) -> Result<(), StorageError> {
    let data = Bytes::from(serde_json::to_vec(record).unwrap_or_default());
    storage.put(&layout::push(now_ms(), &token()), data).await?;
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
}
