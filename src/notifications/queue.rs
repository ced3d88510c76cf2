//! One endpoint's queue of events in the storage (see
//! [`crate::storage::layout::notifications`]): a file an event, written
//! whole before the request that caused it answers, removed once the
//! endpoint took it. On a folder or a bucket alike, so that a kill, a
//! restart or another instance on the same bucket loses nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::storage::layout::notifications as layout;
use crate::storage::{Storage, StorageError};

/// Names events in the order this process queued them.
pub struct Namer {
    instance: String,
    seq: AtomicU64,
    last_ms: Mutex<u64>,
}

impl Namer {
    pub fn new(instance: &str) -> Self {
        Self {
            instance: instance.to_owned(),
            seq: AtomicU64::new(0),
            last_ms: Mutex::new(0),
        }
    }

    /// The next name: never before the last one, whatever the clock does.
    pub fn next(&self) -> String {
        let mut last = self.last_ms.lock().unwrap_or_else(|e| e.into_inner());
        let ms = crate::storage::lease::now_ms().max(*last);
        *last = ms;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        layout::event_name(ms, seq, &self.instance)
    }
}

/// The queue of one endpoint.
#[derive(Clone)]
pub struct Queue {
    storage: Arc<dyn Storage>,
    endpoint: String,
}

impl Queue {
    pub fn new(storage: Arc<dyn Storage>, endpoint: &str) -> Self {
        Self {
            storage,
            endpoint: endpoint.to_owned(),
        }
    }

    /// Writes `event` (JSON) as `name`; durable once this returns.
    pub async fn push(&self, name: &str, event: Bytes) -> Result<(), StorageError> {
        self.storage
            .put(&layout::event(&self.endpoint, name), event)
            .await
    }

    /// The names of the waiting events, oldest first.
    pub async fn pending(&self) -> Result<Vec<String>, StorageError> {
        match self.storage.list(&layout::queue(&self.endpoint)).await {
            Ok(mut names) => {
                names.retain(|n| layout::is_event(n));
                names.sort();
                Ok(names)
            }
            Err(StorageError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The event `name`; `None` when it is gone (taken by another
    /// instance, or dropped).
    pub async fn read(&self, name: &str) -> Result<Option<Bytes>, StorageError> {
        match self.storage.get(&layout::event(&self.endpoint, name)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the event `name` (delivered, or dropped).
    pub async fn remove(&self, name: &str) -> Result<(), StorageError> {
        match self
            .storage
            .remove(&layout::event(&self.endpoint, name))
            .await
        {
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
