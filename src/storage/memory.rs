//! The `memory` driver: files in a map, gone with the process. For tests
//! and tools that need a storage without a disk or a server; it keeps the
//! contract of the other drivers (the same errors, atomic writes, folders
//! that exist while they hold a file, as in a bucket).
//!
//! It holds every file whole in memory by nature: not for serving layers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::BytesMut;

use super::*;

/// Bytes per chunk when a file is streamed out, as a disk driver would
/// hand them (slices of the stored file, not copies).
const STREAM_CHUNK: usize = 64 * 1024;

#[derive(Default, Clone)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
    locks: KeyedLocks,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, Stored>,
    /// Files in progress: the bytes their writers closed. Not visible as
    /// files until committed, as on an object store.
    writing: BTreeMap<String, Bytes>,
    /// Bodies being received by `put_stream`, per path.
    receiving: BTreeMap<String, usize>,
}

/// Counts a body being received while it lives, so that an upload dropped
/// midway is seen to leave nothing.
struct Receiving {
    storage: MemoryStorage,
    path: String,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        let mut state = self.storage.lock();
        if let Some(count) = state.receiving.get_mut(&self.path) {
            *count -= 1;
            if *count == 0 {
                state.receiving.remove(&self.path);
            }
        }
    }
}

#[derive(Clone)]
struct Stored {
    data: Bytes,
    modified: SystemTime,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// A storage holding these files.
    pub fn with_files<P: Into<String>>(
        files: impl IntoIterator<Item = (P, Bytes)>,
    ) -> Result<Self> {
        let storage = Self::new();
        {
            let mut state = storage.lock();
            for (path, data) in files {
                let path = path.into();
                state.store(&path, data)?;
            }
        }
        Ok(storage)
    }

    /// Paths with a write under way: bodies being received, and files in
    /// progress (a writer's, until committed or cancelled).
    pub fn unfinished(&self) -> Vec<String> {
        let state = self.lock();
        state
            .receiving
            .keys()
            .chain(state.writing.keys())
            .cloned()
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while the lock was held leaves no half-made
        // change: every change below is one map operation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Whether some file lives under `path/`.
    fn is_folder(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Stores a whole file, refusing what a filesystem would: a file where
    /// a folder is, or below a file.
    fn store(&mut self, path: &str, data: Bytes) -> Result<()> {
        check_path(path)?;
        let below_a_file = path
            .match_indices('/')
            .any(|(at, _)| self.files.contains_key(&path[..at]));
        if below_a_file || self.is_folder(path) {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        self.files.insert(
            path.to_owned(),
            Stored {
                data,
                modified: SystemTime::now(),
            },
        );
        Ok(())
    }

    fn file(&self, path: &str) -> Result<&Stored> {
        check_path(path)?;
        self.files
            .get(path)
            .ok_or_else(|| StorageError::NotFound(path.to_owned()))
    }
}

/// A file in progress: the bytes an earlier writer closed (if resumed)
/// followed by what this one was given.
struct MemoryWriter {
    storage: MemoryStorage,
    path: String,
    data: BytesMut,
}

#[async_trait(?Send)]
impl FileWriter for MemoryWriter {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.data.extend_from_slice(&data);
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<u64> {
        let size = self.size();
        let mut state = self.storage.lock();
        // A file cancelled or committed meanwhile is not brought back.
        let closed = state
            .writing
            .get_mut(&self.path)
            .ok_or_else(|| StorageError::NotFound(self.path.clone()))?;
        *closed = self.data.freeze();
        Ok(size)
    }

    async fn commit(self: Box<Self>) -> Result<u64> {
        let size = self.size();
        let mut state = self.storage.lock();
        if !state.writing.contains_key(&self.path) {
            return Err(StorageError::NotFound(self.path.clone()));
        }
        state.store(&self.path, self.data.freeze())?;
        state.writing.remove(&self.path);
        Ok(size)
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        self.storage.lock().writing.remove(&self.path);
        Ok(())
    }
}

#[async_trait(?Send)]
impl Storage for MemoryStorage {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        Ok(self.lock().file(path)?.data.clone())
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.lock().store(path, data)
    }

    async fn put_stream(&self, path: &str, body: ByteStream) -> Result<u64> {
        check_path(path)?;
        *self.lock().receiving.entry(path.to_owned()).or_default() += 1;
        let _receiving = Receiving {
            storage: self.clone(),
            path: path.to_owned(),
        };
        // Stored only once whole: a body that breaks off changes nothing.
        let mut blocks = Blocks::new(body);
        let mut data = BytesMut::new();
        while let Some(block) = blocks.next(STREAM_CHUNK).await? {
            data.extend_from_slice(&block);
        }
        self.lock().store(path, data.freeze())?;
        Ok(blocks.total())
    }

    async fn get_stream(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
        let data = self.lock().file(path)?.data.clone();
        let size = data.len() as u64;
        let data = match range {
            Some(r) if r.first >= size || r.last < r.first => {
                return Err(StorageError::InvalidRange {
                    path: path.to_owned(),
                    size,
                })
            }
            Some(r) => data.slice(r.first as usize..=r.last.min(size - 1) as usize),
            None => data,
        };
        let chunks: Vec<io::Result<Bytes>> = (0..data.len())
            .step_by(STREAM_CHUNK)
            .map(|at| Ok(data.slice(at..(at + STREAM_CHUNK).min(data.len()))))
            .collect();
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }

    async fn size(&self, path: &str) -> Result<u64> {
        Ok(self.lock().file(path)?.data.len() as u64)
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        check_path(path)?;
        Ok(self.lock().files.contains_key(path))
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        check_path(path)?;
        let prefix = format!("{path}/");
        let state = self.lock();
        let mut names: Vec<String> = state
            .files
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .map(|k| {
                let rest = &k[prefix.len()..];
                rest.split('/').next().unwrap_or(rest).to_owned()
            })
            .collect();
        names.dedup();
        if names.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(names)
    }

    async fn folders_holding_with_times(
        &self,
        path: &str,
        file: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>> {
        check_path(path)?;
        check_path(file)?;
        let prefix = format!("{path}/");
        let suffix = format!("/{file}");
        let state = self.lock();
        let mut any = false;
        let mut holding = Vec::new();
        for (key, stored) in state
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            any = true;
            if let Some(child) = key[prefix.len()..].strip_suffix(&suffix) {
                if !child.contains('/') {
                    holding.push((child.to_owned(), stored.modified));
                }
            }
        }
        if !any {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        holding.sort();
        Ok(holding)
    }

    // Under one lock: a folder goes at once.
    fn removes_folders_at_once(&self) -> bool {
        true
    }

    async fn remove(&self, path: &str) -> Result<()> {
        check_path(path)?;
        let mut state = self.lock();
        if state.files.remove(path).is_some() {
            return Ok(());
        }
        let prefix = format!("{path}/");
        let before = state.files.len();
        state.files.retain(|k, _| !k.starts_with(&prefix));
        if state.files.len() == before {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(())
    }

    async fn writer(&self, path: &str, resume: Option<u64>) -> Result<Box<dyn FileWriter>> {
        check_path(path)?;
        let mut state = self.lock();
        let data = match resume {
            None => {
                state.writing.insert(path.to_owned(), Bytes::new());
                BytesMut::new()
            }
            Some(n) => {
                let closed = state
                    .writing
                    .get(path)
                    .ok_or_else(|| StorageError::NotFound(path.to_owned()))?;
                if (closed.len() as u64) < n {
                    return Err(StorageError::InvalidRange {
                        path: path.to_owned(),
                        size: closed.len() as u64,
                    });
                }
                BytesMut::from(&closed[..n as usize])
            }
        };
        Ok(Box::new(MemoryWriter {
            storage: self.clone(),
            path: path.to_owned(),
            data,
        }))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        check_path(from)?;
        check_path(to)?;
        let mut state = self.lock();
        let stored = state.file(from)?.clone();
        if from == to {
            return Ok(());
        }
        state.store(to, stored.data)?;
        if let Some(moved) = state.files.get_mut(to) {
            // A rename keeps the file's time, as on a filesystem.
            moved.modified = stored.modified;
        }
        state.files.remove(from);
        Ok(())
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        check_path(from)?;
        check_path(to)?;
        let mut state = self.lock();
        let stored = state.file(from)?.clone();
        state.store(to, stored.data)
    }

    async fn lock(&self, path: &str) -> Result<Lock> {
        check_path(path)?;
        Ok(Lock::new(self.locks.lock(path).await, None))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let state = self.lock();
        let stored = state.file(path)?;
        Ok(FileInfo {
            size: stored.data.len() as u64,
            modified: stored.modified,
        })
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>> {
        check_path(path)?;
        Ok(None)
    }
}
