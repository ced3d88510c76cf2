//! The Redis cache of small files (`cache`, or `cache_lru`, as the old
//! registry named them), in front of any driver, shared by every registry
//! instance that names the same Redis.
//!
//! What is cached: whole small files read with [`Storage::get`] whose path
//! a predicate accepts (the registry's: the files no write ever changes
//! but to delete them, [`super::layout::immutable`]), at most
//! [`MAX_CACHED`] bytes, for [`ENTRY_TTL`]; `exists` and `size` of such a
//! file are answered from its entry too. Layers never pass through here:
//! they stream.
//!
//! Every instance sees every write at once, by tombstones: before a write
//! or remove of path `p`, the key of `p` is set to a tombstone for
//! [`TOMBSTONE_TTL`]; after it, a small file written whole (`put`) is
//! written through (the key gets the new bytes), anything else gets its
//! tombstone again. A reader first asks for the key of the file and of
//! each folder above it (one `MGET`): a tombstone on any of them means
//! "changed lately", read storage and cache nothing. A reader fills the
//! cache with a script that sets the key only if neither it nor a folder
//! above holds anything, so a reader that read the old bytes just before a
//! write can never put them back after it. A folder removed is one
//! tombstone, however many files it held.
//!
//! Redis down, or slower than [`OP_TIMEOUT`]: requests go to storage, the
//! log says so once, and Redis is tried again every [`RETRY_AFTER`]. The
//! tombstones this instance could not write meanwhile are kept (up to
//! [`MAX_MISSED`] paths; beyond, every key of this storage is dropped) and
//! written before this instance reads from Redis again. Another instance
//! that still reached Redis may serve a file this one deleted during the
//! outage until then: only deletes can be missed, since cached files are
//! never rewritten with other bytes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::{ByteRange, ByteStream, FileInfo, FileWriter, Lock, Result, Storage, Version};
use crate::config::CacheSettings;

/// Files larger than this are not cached (manifests, image json and link
/// files are far smaller).
pub const MAX_CACHED: usize = 1 << 20;
/// How long a cached file stays: a day, refreshed by nothing (Redis's own
/// memory policy may drop it sooner).
pub const ENTRY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a tombstone stays: longer than any read of a small file takes
/// between its storage read and its fill.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(120);
/// One Redis round trip, at most; beyond, Redis counts as down.
pub const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis is left alone after it failed.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Tombstones kept for writing once Redis answers again.
pub const MAX_MISSED: usize = 10_000;

const DATA: u8 = b'v';
const TOMBSTONE: &[u8] = b"t";

/// Sets `KEYS[1]` to `ARGV[1]` for `ARGV[2]` seconds unless it or any of
/// the other keys (the folders above) holds anything: a fill never beats a
/// tombstone.
const FILL: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

/// The connection to Redis and what an outage left to do.
pub struct RedisCache {
    client: redis::Client,
    /// Where it is, for the log (never the password).
    address: String,
    /// Keys start with this: one storage's files, whoever else uses Redis.
    prefix: String,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    down: AtomicBool,
    retry_at: Mutex<Instant>,
    /// Paths whose tombstones could not be written; `None`: too many.
    missed: Mutex<Option<HashSet<String>>>,
    fill: redis::Script,
}

impl RedisCache {
    /// `namespace` tells this storage from others on the same Redis (the
    /// driver and its root or bucket).
    pub fn new(settings: &CacheSettings, namespace: &str) -> anyhow::Result<Self> {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(settings.host.clone(), settings.port),
            redis: redis::RedisConnectionInfo {
                db: settings.db,
                username: None,
                password: settings.password.clone(),
                protocol: redis::ProtocolVersion::RESP2,
            },
        };
        let client = redis::Client::open(info).map_err(|e| {
            anyhow::anyhow!(
                "{}: Redis at {}:{}: {e}",
                settings.section,
                settings.host,
                settings.port
            )
        })?;
        Ok(Self {
            client,
            address: format!("{}:{} (db {})", settings.host, settings.port, settings.db),
            prefix: format!("registry-v1:{namespace}:"),
            connection: tokio::sync::Mutex::new(None),
            down: AtomicBool::new(false),
            retry_at: Mutex::new(Instant::now()),
            missed: Mutex::new(Some(HashSet::new())),
            fill: redis::Script::new(FILL),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The path as it is: only paths the driver accepted are ever
    /// stored, so a spelling it refuses (`/x`, `x//y`) never finds one.
    fn key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    /// The key of `path`, then the keys of the folders above it.
    fn keys_up(&self, path: &str) -> Vec<String> {
        let mut keys = vec![self.key(path)];
        let mut rest = path;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            keys.push(self.key(parent));
            rest = parent;
        }
        keys
    }

    /// A connection, unless Redis is down and not due for another try.
    /// Coming back, the tombstones missed meanwhile are written first.
    async fn connection(&self) -> Option<ConnectionManager> {
        if self.down.load(Ordering::Acquire) {
            let now = Instant::now();
            {
                let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
                if now < *retry_at {
                    return None;
                }
                // One request tries; the others keep away meanwhile.
                *retry_at = now + RETRY_AFTER;
            }
            let mut connection = self.connect(true).await?;
            if let Err(e) = self.catch_up(&mut connection).await {
                self.failed(&e);
                return None;
            }
            self.down.store(false, Ordering::Release);
            log::warn!(
                "cache: Redis at {} answers again; cache in use",
                self.address
            );
            return Some(connection);
        }
        self.connect(false).await
    }

    /// The connection manager, made on first use. `recovering`: the one
    /// request that tries Redis again after a failure; the others never
    /// wait for a connection attempt that just failed.
    async fn connect(&self, recovering: bool) -> Option<ConnectionManager> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Some(connection.clone());
        }
        if !recovering && self.down.load(Ordering::Acquire) {
            return None;
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(OP_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT)
            .set_number_of_retries(1);
        let made = tokio::time::timeout(
            OP_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await;
        match made {
            Ok(Ok(connection)) => {
                *slot = Some(connection.clone());
                Some(connection)
            }
            Ok(Err(e)) => {
                drop(slot);
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                drop(slot);
                self.failed("no answer");
                None
            }
        }
    }

    /// Redis failed: said once, until it answers again.
    fn failed(&self, why: &str) {
        *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + RETRY_AFTER;
        if !self.down.swap(true, Ordering::AcqRel) {
            log::warn!(
                "cache: Redis at {} unavailable ({why}); reading storage until it answers",
                self.address
            );
        }
    }

    /// Runs one command; `None` (and Redis marked down) when it fails.
    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(OP_TIMEOUT, command.query_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed("no answer");
                None
            }
        }
    }

    /// The cached bytes of `path`, `None` on a miss, a tombstone, or Redis
    /// down. `fillable`: whether a miss may be filled.
    async fn lookup(&self, path: &str) -> (Option<Bytes>, bool) {
        let keys = self.keys_up(path);
        let mut command = redis::cmd("MGET");
        command.arg(&keys);
        let Some(values) = self.run::<Vec<Option<Vec<u8>>>>(&command).await else {
            count("unavailable");
            return (None, false);
        };
        if values.iter().skip(1).any(Option::is_some) {
            count("tombstone");
            return (None, false);
        }
        match values.into_iter().next().flatten() {
            Some(v) if v.first() == Some(&DATA) => {
                count("hit");
                let mut data = Bytes::from(v);
                let _ = data.split_to(1);
                (Some(data), false)
            }
            Some(_) => {
                count("tombstone");
                (None, false)
            }
            None => {
                count("miss");
                (None, true)
            }
        }
    }

    async fn fill(&self, path: &str, data: &Bytes) {
        if data.len() > MAX_CACHED {
            return;
        }
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let mut value = Vec::with_capacity(data.len() + 1);
        value.push(DATA);
        value.extend_from_slice(data);
        let mut invocation = self.fill.prepare_invoke();
        for key in self.keys_up(path) {
            invocation.key(key);
        }
        invocation.arg(value).arg(ENTRY_TTL.as_secs());
        let done =
            tokio::time::timeout(OP_TIMEOUT, invocation.invoke_async::<i64>(&mut connection)).await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => self.failed(&e.to_string()),
            Err(_) => self.failed("no answer"),
        }
    }

    /// Writes a tombstone on `path`; remembered for later when Redis is
    /// down.
    async fn invalidate(&self, path: &str) {
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(path))
            .arg(TOMBSTONE)
            .arg("EX")
            .arg(TOMBSTONE_TTL.as_secs());
        if self.run::<()>(&command).await.is_none() {
            self.missed(path);
        }
    }

    /// The bytes just written to `path`, whatever the key held (a
    /// tombstone, an older fill); too large: a tombstone.
    async fn store(&self, path: &str, data: &Bytes) {
        if data.len() > MAX_CACHED {
            return self.invalidate(path).await;
        }
        let mut value = Vec::with_capacity(data.len() + 1);
        value.push(DATA);
        value.extend_from_slice(data);
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(path))
            .arg(value)
            .arg("EX")
            .arg(ENTRY_TTL.as_secs());
        if self.run::<()>(&command).await.is_none() {
            self.missed(path);
        }
    }

    /// A tombstone to write once Redis answers again.
    fn missed(&self, path: &str) {
        let mut missed = self.missed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(paths) = missed.as_mut() {
            paths.insert(path.to_owned());
            if paths.len() > MAX_MISSED {
                *missed = None;
            }
        }
    }

    /// The tombstones an outage kept back, written; too many of them: every
    /// key of this storage dropped instead.
    async fn catch_up(
        &self,
        connection: &mut ConnectionManager,
    ) -> std::result::Result<(), String> {
        let missed = self
            .missed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(HashSet::new());
        let result = match &missed {
            Some(paths) => {
                // A PING first: an empty pipeline would succeed unsent.
                let mut pipe = redis::pipe();
                pipe.cmd("PING").ignore();
                for path in paths {
                    pipe.cmd("SET")
                        .arg(self.key(path))
                        .arg(TOMBSTONE)
                        .arg("EX")
                        .arg(TOMBSTONE_TTL.as_secs())
                        .ignore();
                }
                pipe.query_async::<()>(connection)
                    .await
                    .map_err(|e| e.to_string())
            }
            None => self.drop_all(connection).await,
        };
        if result.is_err() {
            // Kept for the next try.
            let mut slot = self.missed.lock().unwrap_or_else(|e| e.into_inner());
            match (slot.as_mut(), missed) {
                (Some(now), Some(before)) => now.extend(before),
                _ => *slot = None,
            }
        }
        result
    }

    async fn drop_all(
        &self,
        connection: &mut ConnectionManager,
    ) -> std::result::Result<(), String> {
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(connection)
                .await
                .map_err(|e| e.to_string())?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(connection)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

fn count(result: &str) {
    crate::metrics::get()
        .cache
        .with_label_values(&[result])
        .inc();
}

/// A driver with the cache in front of it.
pub struct CachedStorage {
    inner: Arc<dyn Storage>,
    cache: Arc<RedisCache>,
    cacheable: fn(&str) -> bool,
}

impl CachedStorage {
    pub fn new(
        inner: Arc<dyn Storage>,
        cache: Arc<RedisCache>,
        cacheable: fn(&str) -> bool,
    ) -> Self {
        Self {
            inner,
            cache,
            cacheable,
        }
    }

    /// A write of `path` (a file, or a folder for removes) is about to
    /// happen, or just did.
    async fn changed(&self, path: &str, folder_too: bool) {
        if folder_too || (self.cacheable)(path) {
            self.cache.invalidate(path).await;
        }
    }
}

#[async_trait(?Send)]
impl Storage for CachedStorage {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        if !(self.cacheable)(path) {
            return self.inner.get(path).await;
        }
        let (cached, fillable) = self.cache.lookup(path).await;
        if let Some(data) = cached {
            return Ok(data);
        }
        let data = self.inner.get(path).await?;
        if fillable {
            self.cache.fill(path, &data).await;
        }
        Ok(data)
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        if !(self.cacheable)(path) {
            return self.inner.put(path, data).await;
        }
        self.cache.invalidate(path).await;
        let result = self.inner.put(path, data.clone()).await;
        match &result {
            Ok(()) => self.cache.store(path, &data).await,
            Err(_) => self.cache.invalidate(path).await,
        }
        result
    }

    async fn put_stream(&self, path: &str, body: ByteStream) -> Result<u64> {
        self.changed(path, false).await;
        let result = self.inner.put_stream(path, body).await;
        self.changed(path, false).await;
        result
    }

    async fn get_stream(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
        self.inner.get_stream(path, range).await
    }

    async fn get_stream_copied(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
        self.inner.get_stream_copied(path, range).await
    }

    // A cached file exists, with its length: no round trip to storage.
    async fn size(&self, path: &str) -> Result<u64> {
        if (self.cacheable)(path) {
            if let (Some(data), _) = self.cache.lookup(path).await {
                return Ok(data.len() as u64);
            }
        }
        self.inner.size(path).await
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        if (self.cacheable)(path) {
            if let (Some(_), _) = self.cache.lookup(path).await {
                return Ok(true);
            }
        }
        self.inner.exists(path).await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        self.inner.list(path).await
    }

    async fn folders_holding_with_times(
        &self,
        path: &str,
        file: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>> {
        self.inner.folders_holding_with_times(path, file).await
    }

    async fn remove(&self, path: &str) -> Result<()> {
        self.changed(path, true).await;
        let result = self.inner.remove(path).await;
        self.changed(path, true).await;
        result
    }

    async fn writer(&self, path: &str, resume: Option<u64>) -> Result<Box<dyn FileWriter>> {
        let inner = self.inner.writer(path, resume).await?;
        if !(self.cacheable)(path) {
            return Ok(inner);
        }
        Ok(Box::new(CachedWriter {
            inner,
            cache: self.cache.clone(),
            path: path.to_owned(),
        }))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.changed(from, false).await;
        self.changed(to, false).await;
        let result = self.inner.rename(from, to).await;
        self.changed(from, false).await;
        self.changed(to, false).await;
        result
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.changed(to, false).await;
        let result = self.inner.copy(from, to).await;
        self.changed(to, false).await;
        result
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        self.inner.stat(path).await
    }

    async fn lock(&self, path: &str) -> Result<Lock> {
        self.inner.lock(path).await
    }

    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)> {
        self.inner.get_versioned(path).await
    }

    async fn put_if(&self, path: &str, data: Bytes, expected: Option<&Version>) -> Result<bool> {
        self.changed(path, false).await;
        let result = self.inner.put_if(path, data, expected).await;
        self.changed(path, false).await;
        result
    }

    async fn put_unsynced(&self, path: &str, data: Bytes) -> Result<()> {
        self.changed(path, false).await;
        let result = self.inner.put_unsynced(path, data).await;
        self.changed(path, false).await;
        result
    }

    async fn put_if_unsynced(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&Version>,
    ) -> Result<bool> {
        self.changed(path, false).await;
        let result = self.inner.put_if_unsynced(path, data, expected).await;
        self.changed(path, false).await;
        result
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>> {
        self.inner.redirect_url(path).await
    }

    fn local_path(&self, path: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(path)
    }

    fn removes_folders_at_once(&self) -> bool {
        self.inner.removes_folders_at_once()
    }

    async fn remove_stale_temporary_files(&self, older_than: Duration) -> Result<u64> {
        self.inner.remove_stale_temporary_files(older_than).await
    }
}

/// A writer of a cached path: its commit changes the file.
struct CachedWriter {
    inner: Box<dyn FileWriter>,
    cache: Arc<RedisCache>,
    path: String,
}

#[async_trait(?Send)]
impl FileWriter for CachedWriter {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.inner.write(data).await
    }

    async fn close(self: Box<Self>) -> Result<u64> {
        self.inner.close().await
    }

    async fn commit(self: Box<Self>) -> Result<u64> {
        let CachedWriter { inner, cache, path } = *self;
        cache.invalidate(&path).await;
        let result = inner.commit().await;
        cache.invalidate(&path).await;
        result
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        self.inner.cancel().await
    }
}
