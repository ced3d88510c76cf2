//! An expiring lease in the storage itself: at most one holder at a time
//! among every process and instance that shares the folder or bucket,
//! built on [`Storage::get_versioned`] and [`Storage::put_if`] (a
//! compare-and-swap: S3's conditional writes, a file lock on disk).
//!
//! A holder that dies stops renewing; once its lease has expired, the next
//! one takes it over. Times are wall-clock milliseconds: instances on one
//! bucket must agree on the time to within a small part of the lease.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Result, Storage, StorageError, Version};

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    holder: String,
    expires_ms: u64,
}

/// What [`Lease::acquire`] found.
#[derive(Debug)]
pub enum Acquired {
    Held(Lease),
    /// Another holder has it until this time.
    Busy {
        holder: String,
        until: SystemTime,
    },
}

/// A lease held at `path` until [`Lease::release`] or its expiry.
#[derive(Debug)]
pub struct Lease {
    path: String,
    holder: String,
    ttl: Duration,
    version: Version,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn encode(holder: &str, expires_ms: u64) -> Bytes {
    let record = Record {
        holder: holder.to_owned(),
        expires_ms,
    };
    Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
}

/// A token naming one holder: random, so two processes never share one.
pub fn token() -> String {
    use rand::Rng;
    hex::encode(rand::thread_rng().gen::<[u8; 12]>())
}

impl Lease {
    /// Takes the lease at `path` for `ttl` when it is free or expired.
    pub async fn acquire(
        storage: &dyn Storage,
        path: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Acquired> {
        let current = match storage.get_versioned(path).await {
            Ok((bytes, version)) => Some((serde_json::from_slice::<Record>(&bytes).ok(), version)),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some((Some(record), _)) = &current {
            if record.holder != holder && record.expires_ms > now_ms() {
                return Ok(Acquired::Busy {
                    holder: record.holder.clone(),
                    until: UNIX_EPOCH + Duration::from_millis(record.expires_ms),
                });
            }
        }
        // A record that does not parse is no one's: taken over.
        let expected = current.as_ref().map(|(_, v)| v);
        let data = encode(holder, now_ms() + ttl.as_millis() as u64);
        if !storage.put_if(path, data, expected).await? {
            // Someone else wrote it between the read and the write.
            return Box::pin(Self::acquire(storage, path, holder, ttl)).await;
        }
        let (_, version) = storage.get_versioned(path).await?;
        Ok(Acquired::Held(Lease {
            path: path.to_owned(),
            holder: holder.to_owned(),
            ttl,
            version,
        }))
    }

    /// Extends the lease by its ttl from now. `Ok(false)`: it was lost
    /// (expired and taken over); the holder must stop.
    pub async fn renew(&mut self, storage: &dyn Storage) -> Result<bool> {
        let data = encode(&self.holder, now_ms() + self.ttl.as_millis() as u64);
        if !storage
            .put_if(&self.path, data, Some(&self.version))
            .await?
        {
            return Ok(false);
        }
        self.version = storage.get_versioned(&self.path).await?.1;
        Ok(true)
    }

    /// Gives the lease back (it expires at once), unless it was lost.
    pub async fn release(self, storage: &dyn Storage) -> Result<()> {
        storage
            .put_if(&self.path, encode(&self.holder, 0), Some(&self.version))
            .await
            .map(|_| ())
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }
}
