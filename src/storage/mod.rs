//! Where images, layers and tags live: one [`Storage`] trait, the legacy
//! path [`layout`], and a driver a file.
//!
//! Paths given to a driver are relative, `/`-separated and already escaped
//! by [`layout`]; a driver still refuses any path that could leave its root
//! (see [`check_path`]), so a bug above cannot reach outside `storage_path`.

pub mod cache;
pub mod layout;
pub mod lease;
pub mod local;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub mod mapped;
pub mod memory;
pub mod s3;
pub mod swift;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::config::{Settings, StorageKind};

/// Files [`Storage::folders_holding`] asks about at once by default.
pub const FOLDERS_CHECKED: usize = 16;

/// A body on its way in or out. Not `Send`: actix request payloads are not,
/// and handlers run on their own worker thread anyway.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>>>>;

/// A byte range, both ends inclusive, as HTTP spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What can go wrong below the HTTP layer, typed so that the HTTP layer maps
/// each kind to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found: {0}")]
    NotFound(String),
    /// A path that could leave the storage root, or that the backend cannot
    /// name. Never produced for paths built by [`layout`].
    #[error("invalid storage path: {0:?}")]
    InvalidPath(String),
    /// The request body broke off (client gone, bad chunking): nothing was
    /// stored.
    #[error("upload interrupted: {0}")]
    Interrupted(io::Error),
    /// A range that starts past the end of the file (it changed between
    /// [`Storage::size`] and [`Storage::get_stream`]).
    #[error("range not satisfiable for {path} of {size} bytes")]
    InvalidRange { path: String, size: u64 },
    /// The backend is unreachable or refused the credentials.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    #[error("storage I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Size and modification time of a stored file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// A file written across several requests (an upload in progress).
///
/// What a reader sees at the writer's path before `commit` depends on the
/// driver (local: the bytes written so far; memory and S3: nothing new),
/// and S3 lists the writer's state (`<name>.writer`) beside it: callers
/// write in-progress files to folders of their own. One writer at a time
/// per path; a second one's close replaces the first one's.
#[async_trait(?Send)]
pub trait FileWriter {
    /// Bytes in the file so far; the next write appends after them.
    fn size(&self) -> u64;
    /// Appends bytes (the caller passes blocks; the driver may buffer up to
    /// one backend part, e.g. 5 MiB on S3, never more).
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Makes everything written so far durable and ends this writer. A
    /// later `writer(path, Some(self.size()))` continues at that offset,
    /// in this process, after a restart, or (S3) on another instance.
    async fn close(self: Box<Self>) -> Result<u64>;
    /// Ends the file: it becomes a plain file at its path, readable by
    /// get/get_stream/size (S3: completes the multipart upload; a file
    /// under 5 MiB may be put whole). Returns its size.
    async fn commit(self: Box<Self>) -> Result<u64>;
    /// Throws away the file and any state the driver kept for it.
    async fn cancel(self: Box<Self>) -> Result<()>;
}

/// The operations the registry needs from a place to keep blobs.
///
/// Every write is atomic: a reader sees the old content or the new one,
/// whole, never a part; a failed write leaves the old content.
#[async_trait(?Send)]
pub trait Storage: Send + Sync {
    /// A short name for logs and errors (`local`, `s3`, ...).
    fn name(&self) -> &'static str;

    /// Reads a small file whole (json, tags, checksums).
    async fn get(&self, path: &str) -> Result<Bytes>;

    /// Writes a small file whole.
    async fn put(&self, path: &str, data: Bytes) -> Result<()>;

    /// Streams a body into `path`, never holding it whole in memory.
    /// Returns the number of bytes written.
    async fn put_stream(&self, path: &str, body: ByteStream) -> Result<u64>;

    /// Streams `path` out, or the given range of it (which the caller has
    /// checked against [`Storage::size`]).
    async fn get_stream(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream>;

    /// As [`Storage::get_stream`], for a consumer that copies each chunk
    /// and drops it before it asks for the next (an HTTP/1 answer): the
    /// local driver then hands out slices of memory mappings, which such a
    /// consumer alone can be told apart from a file that shrank
    /// ([`mapped`]).
    async fn get_stream_copied(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
        self.get_stream(path, range).await
    }

    /// The size in bytes of a file.
    async fn size(&self, path: &str) -> Result<u64>;

    /// Whether a file (not a folder) exists.
    async fn exists(&self, path: &str) -> Result<bool>;

    /// The names (not paths) of the direct children of a folder, files and
    /// folders alike, sorted. A folder that does not exist is `NotFound`.
    async fn list(&self, path: &str) -> Result<Vec<String>>;

    /// The names of the direct children of the folder `path` that hold the
    /// file `file` (a path relative to each child, `current/link`), sorted.
    /// A folder that does not exist is `NotFound`, as for [`Storage::list`].
    /// [`Storage::folders_holding_with_times`] without the times: a driver
    /// overrides that one.
    async fn folders_holding(&self, path: &str, file: &str) -> Result<Vec<String>> {
        let held = self.folders_holding_with_times(path, file).await?;
        Ok(held.into_iter().map(|(child, _)| child).collect())
    }

    /// [`Storage::folders_holding`], each child with when its `file` was
    /// last written (a tag with the time of its push), sorted by child.
    /// Asks only about the file named, not about all a child holds: the
    /// default lists the folder and asks [`Storage::stat`] for each child,
    /// [`FOLDERS_CHECKED`] at once; local disk does those checks in one
    /// task of the blocking pool, memory under one lock, S3 in one listing
    /// (one request per 1,000 keys, each with its `LastModified`) rather
    /// than a request per child.
    async fn folders_holding_with_times(
        &self,
        path: &str,
        file: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>> {
        let children = self.list(path).await?;
        let stated: Vec<Result<Option<(String, std::time::SystemTime)>>> =
            futures_util::stream::iter(children)
                .map(|child| async move {
                    // A folder where the file would be is no file: NotFound.
                    match self.stat(&format!("{path}/{child}/{file}")).await {
                        Ok(info) => Ok(Some((child, info.modified))),
                        Err(StorageError::NotFound(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffered(FOLDERS_CHECKED)
                .collect()
                .await;
        let mut held = Vec::with_capacity(stated.len());
        for child in stated {
            held.extend(child?);
        }
        Ok(held)
    }

    /// Removes a file, or a folder and everything under it. A file goes at
    /// once on every driver; a folder at once on local disk (renamed out
    /// of the tree first) and in memory, key by key on S3: there a caller
    /// that needs a folder to go at once removes first the one file that
    /// makes it count (a tag's `current/link`), and its readers skip a
    /// folder without that file.
    async fn remove(&self, path: &str) -> Result<()>;

    /// Whether [`Storage::remove`] takes a folder away at once (local disk,
    /// memory), so that a caller may remove a whole tree in one call
    /// rather than in an order that keeps each step readable (S3).
    fn removes_folders_at_once(&self) -> bool {
        false
    }

    /// A writer for `path`. `None`: a new file (anything there before is
    /// dropped). `Some(n)`: continue a file whose first `n` bytes an
    /// earlier writer closed; bytes written after its last close are
    /// dropped. `NotFound` when there is no such file in progress,
    /// `InvalidRange { .. }` when fewer than `n` bytes were closed. Its
    /// `size` is the furthest offset, at most `n`, a resume can continue
    /// at: the closed size, or on S3, where a part once sent cannot be
    /// cut, the end of the last part before `n` when `n` falls inside one.
    async fn writer(&self, path: &str, resume: Option<u64>) -> Result<Box<dyn FileWriter>>;

    /// Moves a plain file to `to`, replacing it atomically (local: rename;
    /// S3: copy then delete). `NotFound` when `from` is missing.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Gives `to` the bytes of the plain file `from`, replacing it
    /// atomically; `from` stays. Local: a hard link where the filesystem
    /// allows (no second copy of the bytes; every write here replaces a
    /// file by a rename, so neither name ever changes the other), else a
    /// copy; S3: a server-side copy. `NotFound` when `from` is missing.
    /// The default streams the bytes through this process.
    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let body = self.get_stream(from, None).await?;
        self.put_stream(to, body).await.map(|_| ())
    }

    /// Size and modification time of a file. `NotFound` when missing.
    async fn stat(&self, path: &str) -> Result<FileInfo>;

    /// An exclusive lock on `path` (a name: no file need exist there),
    /// held until the returned [`Lock`] is dropped, for a read-modify-write
    /// of a small file or a check-then-write. It excludes every holder in
    /// this process; local: also other processes on the same folder (a file
    /// lock); memory and S3: this process only.
    async fn lock(&self, path: &str) -> Result<Lock>;

    /// Reads a small file whole with its [`Version`], for [`Storage::put_if`].
    /// The default versions a file by a digest of its bytes.
    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)> {
        let data = self.get(path).await?;
        let version = Version::of(&data);
        Ok((data, version))
    }

    /// Writes a small file whole only if it is still at `expected` (`None`:
    /// only if there is no file): a compare-and-swap. `Ok(false)` when it
    /// changed meanwhile; nothing was written then. Atomic against other
    /// `put_if`s (the default: under this driver's lock on the path's
    /// `.put_if` name; S3: `If-Match`/`If-None-Match`, across instances),
    /// not against a plain `put`.
    async fn put_if(&self, path: &str, data: Bytes, expected: Option<&Version>) -> Result<bool> {
        put_if_locked(self, path, data, expected, true).await
    }

    /// [`Storage::put`] of a count that a power cut may take back to an
    /// earlier value or leave empty, because the garbage collector sets it
    /// right (a quota's usage and markers): local disk leaves out the
    /// sync, which would cost a push more than the count is worth; a
    /// crash of the process loses nothing of it. Elsewhere, `put`.
    async fn put_unsynced(&self, path: &str, data: Bytes) -> Result<()> {
        self.put(path, data).await
    }

    /// [`Storage::put_if`] as [`Storage::put_unsynced`] writes.
    async fn put_if_unsynced(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&Version>,
    ) -> Result<bool> {
        self.put_if(path, data, expected).await
    }

    /// A URL a client can download `path` from directly, where the backend
    /// offers one (`storage_redirect`).
    async fn redirect_url(&self, _path: &str) -> Result<Option<String>> {
        Ok(None)
    }

    /// The file on the local filesystem behind `path`, for drivers that have
    /// one (serving shortcuts such as `nginx_x_accel_redirect`).
    fn local_path(&self, _path: &str) -> Option<PathBuf> {
        None
    }

    /// Removes the temporary files a crash left behind, those last written
    /// more than `older_than` ago; returns how many went. Drivers without
    /// temporary files (S3 writes objects whole) have nothing to remove.
    async fn remove_stale_temporary_files(&self, _older_than: std::time::Duration) -> Result<u64> {
        Ok(0)
    }
}

/// How old a crash's temporary file must be to be removed at start: no
/// write of a live request (of this process or another one sharing the
/// folder) pauses that long.
pub const STALE_TEMPORARY_FILE_AGE: std::time::Duration =
    std::time::Duration::from_secs(24 * 60 * 60);

/// [`Storage::put_if`] under the driver's lock on the path's `.put_if`
/// name: the default, and local disk's unsynced one (`synced: false`).
pub(crate) async fn put_if_locked<S: Storage + ?Sized>(
    storage: &S,
    path: &str,
    data: Bytes,
    expected: Option<&Version>,
    synced: bool,
) -> Result<bool> {
    let _lock = storage.lock(&format!("{path}.put_if")).await?;
    let current = match storage.get(path).await {
        Ok(bytes) => Some(Version::of(&bytes)),
        Err(StorageError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    if current.as_ref() != expected {
        return Ok(false);
    }
    if synced {
        storage.put(path, data).await?;
    } else {
        storage.put_unsynced(path, data).await?;
    }
    Ok(true)
}

/// The version of a small file [`Storage::get_versioned`] read: opaque, an
/// ETag on S3, a digest of the bytes elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

impl Version {
    /// The version of these bytes (drivers without versions of their own).
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest;
        Version(hex::encode(sha2::Sha256::digest(data)))
    }
}

/// A lock from [`Storage::lock`], released when dropped.
pub struct Lock {
    /// A driver's lock beyond this process (local: a locked file; closing
    /// it releases the lock). Declared first, so dropped first: the next
    /// holder in this process then finds it given back.
    _beyond: Option<Box<dyn Send + Sync>>,
    _in_process: tokio::sync::OwnedMutexGuard<()>,
}

impl Lock {
    pub fn new(
        in_process: tokio::sync::OwnedMutexGuard<()>,
        beyond: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        Self {
            _in_process: in_process,
            _beyond: beyond,
        }
    }
}

/// One async mutex per path, made on first use and forgotten once no one
/// holds or waits for it: the in-process half of [`Storage::lock`].
#[derive(Clone, Default)]
pub struct KeyedLocks(Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>);

impl KeyedLocks {
    pub async fn lock(&self, path: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(path).and_then(Weak::upgrade) {
                Some(mutex) => mutex,
                None => {
                    if map.len() >= 64 {
                        map.retain(|_, weak| weak.strong_count() > 0);
                    }
                    let mutex = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(path.to_owned(), Arc::downgrade(&mutex));
                    mutex
                }
            }
        };
        mutex.lock_owned().await
    }
}

/// A request body cut into blocks of a chosen size, the unit a driver
/// writes in (a disk write, a multipart part), so that each driver batches
/// the same way and a body that breaks off is told apart in one place.
pub struct Blocks {
    body: ByteStream,
    /// What a chunk brought beyond the last block: kept as a slice of the
    /// chunk, not copied, until the next block takes it.
    carry: Option<Bytes>,
    /// The body said it was done: a stream must not be polled again then.
    ended: bool,
    total: u64,
}

impl Blocks {
    pub fn new(body: ByteStream) -> Self {
        Self {
            body,
            carry: None,
            ended: false,
            total: 0,
        }
    }

    /// The next `size` bytes of the body (fewer only at its end), or `None`
    /// after the end. A body that fails is [`StorageError::Interrupted`].
    pub async fn next(&mut self, size: usize) -> Result<Option<bytes::BytesMut>> {
        let mut block = bytes::BytesMut::with_capacity(size);
        while block.len() < size {
            let chunk = match self.carry.take() {
                Some(chunk) => chunk,
                None if self.ended => break,
                None => match self.body.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => return Err(StorageError::Interrupted(e)),
                    None => {
                        self.ended = true;
                        break;
                    }
                },
            };
            let room = size - block.len();
            if chunk.len() > room {
                block.extend_from_slice(&chunk[..room]);
                self.carry = Some(chunk.slice(room..));
            } else {
                block.extend_from_slice(&chunk);
            }
        }
        self.total += block.len() as u64;
        Ok((!block.is_empty()).then_some(block))
    }

    /// The bytes handed out so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Where a writer on an object store resumes at offset `n`, from the
/// sizes of the parts (S3) or segments (Swift) it sent and the closed tail
/// kept in its state: how many parts to keep and how many bytes of the
/// tail. A part once sent cannot be cut, so inside the parts a resume is
/// possible only where one ends: `Err` names the furthest offset, at most
/// `n`, that can be resumed at (the size of an `InvalidRange`).
pub(crate) fn resume_point(
    parts: impl Iterator<Item = u64>,
    tail: u64,
    n: u64,
) -> std::result::Result<(usize, u64), u64> {
    let sizes: Vec<u64> = parts.collect();
    let sent: u64 = sizes.iter().sum();
    if n >= sent && n - sent <= tail {
        return Ok((sizes.len(), n - sent));
    }
    let (mut end, mut keep) = (0, 0);
    for size in &sizes {
        if end + size > n {
            break;
        }
        end += size;
        keep += 1;
    }
    if n > sent {
        end = sent + tail;
    }
    if end == n {
        Ok((keep, 0))
    } else {
        Err(end)
    }
}

/// Refuses a relative storage path that is empty, absolute, or has a
/// component that is empty, `.`, `..`, or holds a `\` or a NUL byte.
pub fn check_path(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.contains(['\\', '\0']));
    if bad {
        Err(StorageError::InvalidPath(path.to_owned()))
    } else {
        Ok(())
    }
}

/// The drivers this build offers, for error messages.
pub const DRIVERS: &[&str] = &["local (file)", "s3", "gcs", "swift"];

/// Builds the driver the settings ask for.
pub async fn from_settings(settings: &Settings) -> anyhow::Result<Arc<dyn Storage>> {
    let driver = driver(settings).await?;
    let Some(cache) = &settings.cache else {
        return Ok(driver);
    };
    // Instances share the cache of one storage: its keys name the store.
    let namespace = match (&settings.storage.s3, &settings.storage.swift) {
        (Some(s3), _) => format!(
            "{}:{}:{}",
            settings.storage.kind, s3.bucket, settings.storage.path
        ),
        (None, Some(swift)) => format!(
            "{}:{}:{}",
            settings.storage.kind, swift.container, settings.storage.path
        ),
        (None, None) => format!("{}:{}", settings.storage.kind, settings.storage.path),
    };
    let redis = cache::RedisCache::new(cache, &namespace)?;
    log::info!("cache: small files in Redis at {}", redis.address());
    Ok(Arc::new(cache::CachedStorage::new(
        driver,
        Arc::new(redis),
        layout::immutable,
    )))
}

async fn driver(settings: &Settings) -> anyhow::Result<Arc<dyn Storage>> {
    match &settings.storage.kind {
        StorageKind::Local => Ok(Arc::new(local::LocalStorage::new(&settings.storage.path)?)),
        StorageKind::S3 | StorageKind::Gcs => {
            let s3 = settings.storage.s3.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "storage `{}` of flavor `{}` needs a bucket (s3_bucket or boto_bucket)",
                    settings.storage.kind,
                    settings.flavor
                )
            })?;
            let storage = s3::S3Storage::new(&settings.storage.kind, s3, &settings.storage.path)?;
            storage.check().await.map_err(|e| {
                anyhow::anyhow!(
                    "storage `{}` of flavor `{}` is not usable: {e}",
                    settings.storage.kind,
                    settings.flavor
                )
            })?;
            Ok(Arc::new(storage))
        }
        StorageKind::Swift => {
            let swift = settings.storage.swift.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "storage `swift` of flavor `{}` needs swift_authurl (with swift_user and \
                     swift_password), or swift_auth_token with swift_object_storage_url",
                    settings.flavor
                )
            })?;
            let storage = swift::SwiftStorage::new(swift, &settings.storage.path)?;
            storage.check().await.map_err(|e| {
                anyhow::anyhow!(
                    "storage `swift` of flavor `{}` is not usable: {e}",
                    settings.flavor
                )
            })?;
            if settings.storage.redirect && !storage.redirects() {
                log::warn!(
                    "storage_redirect: not acted on: the Swift account has no temp-URL key \
                     (X-Account-Meta-Temp-URL-Key) and swift_temp_url_key is not set; layers \
                     are served by the registry"
                );
            }
            Ok(Arc::new(storage))
        }
        StorageKind::Unsupported(name) if name == "glance" => anyhow::bail!(
            "storage `glance` (flavor `{}`) is not offered by this build of registry-v1: it \
             kept images in OpenStack Glance. Tags and layers can live in Swift: `storage: \
             swift` with the same swift_* settings holds what `glance-swift` kept in Swift \
             (tags, repository indexes) and the layers too; images in Glance need exporting \
             into that tree (docs: Storage, \"From glance\")",
            settings.flavor
        ),
        StorageKind::Unsupported(name) if name == "elliptics" => anyhow::bail!(
            "storage `elliptics` (flavor `{}`) is not offered by this build of registry-v1; \
             move its data to one this build offers ({}), e.g. by pushing the images again",
            settings.flavor,
            DRIVERS.join(", ")
        ),
        StorageKind::Unsupported(name) => anyhow::bail!(
            "storage `{name}` (flavor `{}`) is not offered by this build of registry-v1; \
             it offers: {}",
            settings.flavor,
            DRIVERS.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Environment, S3Settings};

    fn settings(kind: StorageKind, path: &str, s3: Option<S3Settings>) -> Settings {
        let env = Environment {
            docker_registry_config: None,
            settings_flavor: "dev".into(),
            registry_host: "127.0.0.1".into(),
            registry_port: 5000,
            gunicorn_workers: None,
        };
        let mut settings = crate::config::load(&env).expect("settings");
        settings.storage.kind = kind;
        settings.storage.path = path.into();
        settings.storage.s3 = s3;
        settings
    }

    #[tokio::test]
    async fn drivers_are_built_from_settings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new").join("registry");
        let local = from_settings(&settings(StorageKind::Local, root.to_str().unwrap(), None))
            .await
            .unwrap();
        assert_eq!(local.name(), "local");
        assert!(root.is_dir(), "storage_path is created");

        let err = from_settings(&settings(StorageKind::S3, "/registry", None))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("needs a bucket"), "{err}");

        // Nobody listens on the port: the server does not start, and says
        // which bucket and flavor, never the keys.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s3 = S3Settings {
            bucket: "the-bucket".into(),
            region: None,
            access_key: Some("AKIDSECRETLOOKING".into()),
            secret_key: Some("very-secret-key".into()),
            encrypt: false,
            secure: false,
            host: Some("127.0.0.1".into()),
            port: Some(port),
        };
        let err = from_settings(&settings(StorageKind::Gcs, "/registry", Some(s3)))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("the-bucket") && err.contains("`dev`"), "{err}");
        assert!(
            !err.contains("very-secret-key") && !err.contains("AKID"),
            "{err}"
        );

        let err = from_settings(&settings(
            StorageKind::Unsupported("swift".into()),
            "/registry",
            None,
        ))
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("swift") && err.contains("local (file)"),
            "{err}"
        );
    }

    fn body(chunks: &[&'static [u8]], fail: bool) -> ByteStream {
        let mut items: Vec<io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        if fail {
            items.push(Err(io::Error::other("client gone")));
        }
        // `unfold` panics when polled after its end, as actix payloads may
        // misbehave: the test catches a second poll.
        Box::pin(futures_util::stream::unfold(
            items.into_iter(),
            |mut it| async move { it.next().map(|item| (item, it)) },
        ))
    }

    #[actix_web::test]
    async fn blocks_have_the_asked_size_whatever_the_chunks() {
        let mut blocks = Blocks::new(body(&[b"abc", b"defgh", b"", b"ijklmnop", b"q"], false));
        let mut seen = Vec::new();
        while let Some(block) = blocks.next(4).await.unwrap() {
            seen.push(String::from_utf8(block.to_vec()).unwrap());
        }
        assert_eq!(seen, ["abcd", "efgh", "ijkl", "mnop", "q"]);
        assert_eq!(blocks.total(), 17);
        assert!(blocks.next(4).await.unwrap().is_none());
        // The size may change from one block to the next.
        let mut blocks = Blocks::new(body(&[b"abcdefgh"], false));
        assert_eq!(&blocks.next(3).await.unwrap().unwrap()[..], b"abc");
        assert_eq!(&blocks.next(10).await.unwrap().unwrap()[..], b"defgh");
    }

    #[actix_web::test]
    async fn a_body_that_breaks_off_is_interrupted() {
        let mut blocks = Blocks::new(body(&[b"abcdef"], true));
        assert_eq!(&blocks.next(4).await.unwrap().unwrap()[..], b"abcd");
        assert!(matches!(
            blocks.next(4).await,
            Err(StorageError::Interrupted(_))
        ));
        let mut empty = Blocks::new(body(&[], false));
        assert!(empty.next(4).await.unwrap().is_none());
    }

    #[test]
    fn writers_resume_inside_the_tail_or_where_a_part_ends() {
        let parts = || [8u64, 8, 4].into_iter();
        // Inside the closed tail of 3 bytes after 20 sent.
        assert_eq!(resume_point(parts(), 3, 22), Ok((3, 2)));
        assert_eq!(resume_point(parts(), 3, 20), Ok((3, 0)));
        // Where a part ends: the later parts go.
        assert_eq!(resume_point(parts(), 3, 8), Ok((1, 0)));
        assert_eq!(resume_point(parts(), 3, 0), Ok((0, 0)));
        // Inside a part: the furthest offset before it.
        assert_eq!(resume_point(parts(), 3, 12), Err(8));
        // Past what was closed: all of it.
        assert_eq!(resume_point(parts(), 3, 30), Err(23));
    }

    #[test]
    fn paths_that_could_escape_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "images/abc/json",
            "repositories/library/%2E%2E/tag_x",
            "a.b/..c",
        ] {
            assert!(check_path(good).is_ok(), "{good:?} refused");
        }
    }

    /// The memory driver with the trait's defaults where it has its own:
    /// what a driver without a faster way gets.
    struct Defaults(memory::MemoryStorage);

    #[async_trait(?Send)]
    impl Storage for Defaults {
        fn name(&self) -> &'static str {
            "defaults"
        }
        async fn get(&self, path: &str) -> Result<Bytes> {
            self.0.get(path).await
        }
        async fn put(&self, path: &str, data: Bytes) -> Result<()> {
            self.0.put(path, data).await
        }
        async fn lock(&self, path: &str) -> Result<Lock> {
            self.0.lock(path).await
        }
        async fn put_stream(&self, path: &str, body: ByteStream) -> Result<u64> {
            self.0.put_stream(path, body).await
        }
        async fn get_stream(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
            self.0.get_stream(path, range).await
        }
        async fn size(&self, path: &str) -> Result<u64> {
            self.0.size(path).await
        }
        async fn exists(&self, path: &str) -> Result<bool> {
            self.0.exists(path).await
        }
        async fn list(&self, path: &str) -> Result<Vec<String>> {
            self.0.list(path).await
        }
        async fn remove(&self, path: &str) -> Result<()> {
            self.0.remove(path).await
        }
        async fn writer(&self, path: &str, resume: Option<u64>) -> Result<Box<dyn FileWriter>> {
            self.0.writer(path, resume).await
        }
        async fn rename(&self, from: &str, to: &str) -> Result<()> {
            self.0.rename(from, to).await
        }
        async fn stat(&self, path: &str) -> Result<FileInfo> {
            self.0.stat(path).await
        }
    }

    /// The default answers as the drivers' own do (the shared suite's
    /// `folders_holding` checks those), past [`FOLDERS_CHECKED`] folders.
    #[actix_web::test]
    async fn folders_holding_by_default_asks_each_folder() {
        let s = Defaults(memory::MemoryStorage::new());
        let mut expected = Vec::new();
        for i in 0..40 {
            let tag = format!("t{i:02}");
            s.put(&format!("fh/{tag}/index/sha256/ab/link"), Bytes::new())
                .await
                .unwrap();
            if i % 3 != 0 {
                s.put(&format!("fh/{tag}/current/link"), Bytes::new())
                    .await
                    .unwrap();
                expected.push(tag);
            }
        }
        s.put("fh/t99/current/link/deeper", Bytes::new())
            .await
            .unwrap();
        s.put("fh/current/link", Bytes::new()).await.unwrap();
        assert_eq!(
            s.folders_holding("fh", "current/link").await.unwrap(),
            expected
        );
        assert_eq!(
            s.0.folders_holding("fh", "current/link").await.unwrap(),
            expected
        );
        assert!(matches!(
            s.folders_holding("none", "current/link").await,
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(
            s.folders_holding("fh", "../x").await,
            Err(StorageError::InvalidPath(_))
        ));
    }
}
