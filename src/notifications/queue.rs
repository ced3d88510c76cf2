//! One endpoint's queue of events in the storage (see
//! [`crate::storage::layout::notifications`]), written before the request
//! that caused an event answers, and emptied as the endpoint takes them:
//! on a folder or a bucket alike, so that a kill, a restart or another
//! instance on the same storage loses nothing.
//!
//! Two shapes: on a local folder, lines appended to a segment
//! ([`journal`](super::journal)); on an object store, which cannot append,
//! a file an event.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::journal::{self, Journal};
use crate::storage::layout::notifications as layout;
use crate::storage::{Storage, StorageError};

/// The queue of one endpoint.
#[derive(Clone)]
pub enum Queue {
    Files(Files),
    Journal(Arc<Journal>),
}

impl Queue {
    /// The queue of `endpoint` in `storage`, for the process `instance`.
    pub fn open(storage: Arc<dyn Storage>, endpoint: &str, instance: &str) -> Self {
        match storage.local_path(&layout::journal(endpoint)) {
            Some(dir) => Queue::Journal(Arc::new(Journal::new(dir, instance))),
            None => Queue::Files(Files {
                storage,
                endpoint: endpoint.to_owned(),
                namer: Arc::new(Namer::new(instance)),
            }),
        }
    }

    /// Queues `event` (JSON); durable once this returns.
    pub async fn push(&self, event: Bytes) -> Result<(), StorageError> {
        let ms = crate::storage::lease::now_ms();
        match self {
            Queue::Files(files) => {
                let name = files.namer.next(ms);
                files
                    .storage
                    .put(&layout::event(&files.endpoint, &name), event)
                    .await
            }
            Queue::Journal(journal) => journal
                .append(ms, event)
                .await
                .map_err(|e| journal_error(journal, e)),
        }
    }

    /// What waits, for the instance that delivers it.
    pub async fn backlog(&self) -> Result<Box<dyn Backlog>, StorageError> {
        Ok(match self {
            Queue::Files(files) => Box::new(FileBacklog {
                files: files.clone(),
                names: Vec::new(),
            }),
            Queue::Journal(journal) => {
                let dir = journal.dir().to_owned();
                let reader = tokio::task::spawn_blocking(move || journal::Reader::open(dir))
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))
                    .and_then(|r| r)
                    .map_err(|e| journal_error(journal, e))?;
                Box::new(JournalBacklog {
                    reader: Some(reader),
                    journal: journal.clone(),
                })
            }
        })
    }
}

fn journal_error(journal: &Journal, source: io::Error) -> StorageError {
    StorageError::Io {
        path: journal.dir().display().to_string(),
        source,
    }
}

/// An event waiting to be sent.
pub struct Waiting {
    /// When it was queued (Unix milliseconds; 0: unknown).
    pub ms: u64,
    pub event: Bytes,
    place: Place,
}

enum Place {
    File(String),
    Line(journal::Position),
}

/// The events a queue holds, oldest first, as its deliverer sees them.
#[async_trait(?Send)]
pub trait Backlog {
    /// Looks again; returns how many events wait.
    async fn refresh(&mut self) -> Result<usize, StorageError>;
    /// The `n` oldest (events another instance took meanwhile left out).
    async fn oldest(&mut self, n: usize) -> Result<Vec<Waiting>, StorageError>;
    /// Removes `events`, the oldest ones, once sent (or dropped).
    async fn remove(&mut self, events: &[Waiting]) -> Result<(), StorageError>;
    /// Drops the `n` oldest unsent; returns how many went.
    async fn drop_oldest(&mut self, n: usize) -> Result<usize, StorageError>;
}

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

    /// The name of an event queued at `ms`: never before the last one,
    /// whatever the clock does.
    pub fn next(&self, ms: u64) -> String {
        let mut last = self.last_ms.lock().unwrap_or_else(|e| e.into_inner());
        let ms = ms.max(*last);
        *last = ms;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        layout::event_name(ms, seq, &self.instance)
    }
}

/// A file an event, on an object store.
#[derive(Clone)]
pub struct Files {
    storage: Arc<dyn Storage>,
    endpoint: String,
    namer: Arc<Namer>,
}

impl Files {
    async fn read(&self, name: &str) -> Result<Option<Bytes>, StorageError> {
        match self.storage.get(&layout::event(&self.endpoint, name)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// At once: on S3 each is a request of its own.
    async fn remove(&self, names: &[&String]) -> Result<(), StorageError> {
        let removed = futures_util::future::join_all(names.iter().map(|name| async move {
            let path = layout::event(&self.endpoint, name);
            self.storage.remove(&path).await
        }))
        .await;
        for result in removed {
            match result {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

struct FileBacklog {
    files: Files,
    /// As last listed, oldest first.
    names: Vec<String>,
}

#[async_trait(?Send)]
impl Backlog for FileBacklog {
    async fn refresh(&mut self) -> Result<usize, StorageError> {
        self.names = match self
            .files
            .storage
            .list(&layout::queue(&self.files.endpoint))
            .await
        {
            Ok(mut names) => {
                names.retain(|n| layout::is_event(n));
                names.sort();
                names
            }
            Err(StorageError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(self.names.len())
    }

    async fn oldest(&mut self, n: usize) -> Result<Vec<Waiting>, StorageError> {
        let mut found = Vec::new();
        for name in self.names.iter().take(n) {
            // `None`: taken meanwhile (another holder before this one).
            if let Some(event) = self.files.read(name).await? {
                found.push(Waiting {
                    ms: name.get(..13).and_then(|t| t.parse().ok()).unwrap_or(0),
                    event,
                    place: Place::File(name.clone()),
                });
            }
        }
        Ok(found)
    }

    async fn remove(&mut self, events: &[Waiting]) -> Result<(), StorageError> {
        let names: Vec<&String> = events
            .iter()
            .filter_map(|w| match &w.place {
                Place::File(name) => Some(name),
                Place::Line(_) => None,
            })
            .collect();
        self.files.remove(&names).await
    }

    async fn drop_oldest(&mut self, n: usize) -> Result<usize, StorageError> {
        let over: Vec<String> = self.names.drain(..n.min(self.names.len())).collect();
        for chunk in over.chunks(64) {
            self.files.remove(&chunk.iter().collect::<Vec<_>>()).await?;
        }
        Ok(over.len())
    }
}

struct JournalBacklog {
    /// Taken by the blocking task while it works.
    reader: Option<journal::Reader>,
    journal: Arc<Journal>,
}

impl JournalBacklog {
    /// Runs `work` on the reader off the async workers (it reads files).
    async fn with<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut journal::Reader) -> io::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let Some(mut reader) = self.reader.take() else {
            return Err(journal_error(
                &self.journal,
                io::Error::other("an earlier read of the journal did not end"),
            ));
        };
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut reader);
            (reader, result)
        })
        .await
        .map_err(|e| journal_error(&self.journal, io::Error::other(e.to_string())))?;
        self.reader = Some(reader);
        result.map_err(|e| journal_error(&self.journal, e))
    }
}

#[async_trait(?Send)]
impl Backlog for JournalBacklog {
    async fn refresh(&mut self) -> Result<usize, StorageError> {
        self.with(|r| r.refresh()).await
    }

    async fn oldest(&mut self, n: usize) -> Result<Vec<Waiting>, StorageError> {
        let lines = self.with(move |r| r.oldest(n)).await?;
        Ok(lines
            .into_iter()
            .map(|line| Waiting {
                ms: line.ms,
                event: line.event,
                place: Place::Line(line.position),
            })
            .collect())
    }

    async fn remove(&mut self, events: &[Waiting]) -> Result<(), StorageError> {
        let Some(Place::Line(last)) = events.last().map(|w| &w.place) else {
            return Ok(());
        };
        let last = last.clone();
        self.with(move |r| r.delivered(&last)).await
    }

    async fn drop_oldest(&mut self, n: usize) -> Result<usize, StorageError> {
        self.with(move |r| r.drop_oldest(n)).await
    }
}
