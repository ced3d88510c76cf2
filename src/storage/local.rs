//! The `local` (also `file`) driver: `storage_path` is a folder on disk.
//!
//! Every write goes to a temporary file in the destination folder and is
//! renamed into place once complete and synced, so a reader (and a restart
//! after a crash) sees the old file or the new one, never a part.
//!
//! Where a file call runs is chosen by its cost. Lookups (open, stat, a
//! folder listing) and reads of small files run on the calling thread, as
//! nginx does them: served from the kernel's caches they take a few
//! microseconds, less than a round trip to tokio's blocking pool (which
//! doubled the CPU of an image-json request, BENCHMARKS.md). Whatever may
//! take long runs on the blocking pool in large batches: layer reads in
//! [`READ_CHUNK`] blocks with one block read ahead, writes in
//! [`WRITE_BATCH`] batches with one batch in flight while the next arrives,
//! syncs, renames, removals, and reads of files over [`INLINE_READ`].

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use tempfile::{NamedTempFile, TempPath};
use tokio::task::JoinHandle;

use super::*;

/// Bytes read from disk per blocking call when streaming a file out.
pub const READ_CHUNK: usize = 1024 * 1024;

/// Bytes collected from a request body before one blocking write.
pub const WRITE_BATCH: usize = 1024 * 1024;

/// Largest file [`Storage::get`] reads on the calling thread, and the
/// largest stream [`Storage::get_stream`] reads there whole (a config
/// blob, a manifest fetched as a blob).
pub const INLINE_READ: u64 = 64 * 1024;

/// Bytes written to a layer between two early flushes to disk.
pub const FLUSH_EVERY: usize = 32 * 1024 * 1024;

/// Temporary files start with this, so that a crash's leftovers are never
/// listed as content (a listing skips such files, not folders: a
/// repository may have any name).
const TEMP_PREFIX: &str = ".registry-v1-tmp-";

/// The folder under the root holding the files [`Storage::lock`] locks.
const LOCK_DIR: &str = ".registry-v1-locks";

/// The folder under the root that a folder being removed is first renamed
/// into (one `rename`: readers see it whole or gone), then deleted there.
/// What a crash leaves in it is out of every tree already; the start-up
/// sweep empties it.
const TRASH_DIR: &str = ".registry-v1-trash";

pub struct LocalStorage {
    root: PathBuf,
    locks: KeyedLocks,
}

impl LocalStorage {
    /// Opens (creating it if needed) the folder `root`.
    pub fn new(root: &str) -> anyhow::Result<Self> {
        if root.is_empty() {
            anyhow::bail!("storage_path is empty");
        }
        let root = PathBuf::from(root);
        fs::create_dir_all(&root)
            .map_err(|e| anyhow::anyhow!("cannot create storage_path {}: {e}", root.display()))?;
        if !root.is_dir() {
            anyhow::bail!("storage_path {} is not a folder", root.display());
        }
        Ok(LocalStorage {
            root,
            locks: KeyedLocks::default(),
        })
    }

    /// The folder every path lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str) -> Result<PathBuf> {
        check_path(path)?;
        Ok(self.root.join(path))
    }
}

impl LocalStorage {
    /// [`Storage::get_stream`], or with `copied` its
    /// [`Storage::get_stream_copied`]: mapped where it can be.
    fn stream_out(&self, path: &str, range: Option<ByteRange>, copied: bool) -> Result<ByteStream> {
        let full = self.resolve(path)?;
        let (file, size) = quick(path, || open_file(&full))?;
        let (offset, remaining) = match range {
            Some(r) if r.first >= size || r.last < r.first => {
                return Err(StorageError::InvalidRange {
                    path: path.to_owned(),
                    size,
                })
            }
            Some(r) => (r.first, r.len().min(size - r.first)),
            None => (0, size),
        };
        if remaining <= INLINE_READ {
            // Ready at the first poll, so the answer's head and body leave
            // in one write, with no round trip to the blocking pool.
            let block = quick(path, || read_block(&file, offset, remaining as usize))?;
            if (block.len() as u64) < remaining {
                return Err(io_error(path, shrank(path, remaining - block.len() as u64)));
            }
            if block.is_empty() {
                return Ok(Box::pin(futures_util::stream::empty()));
            }
            return Ok(Box::pin(futures_util::stream::once(async { Ok(block) })));
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        let file = match copied {
            true => match mapped::stream(file, path, offset, remaining) {
                Ok(stream) => return Ok(stream),
                Err(file) => file,
            },
            false => file,
        };
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let _ = copied;
        Ok(BlockReader {
            file: Arc::new(file),
            path: path.to_owned(),
            offset,
            remaining,
            ahead: None,
        }
        .into_stream())
    }
}

/// Maps an I/O error on `path` to the error kinds the HTTP layer tells apart.
fn io_error(path: &str, e: io::Error) -> StorageError {
    match e.kind() {
        // A folder where a file was asked for, or a file where a folder was,
        // means the asked-for thing is not there.
        io::ErrorKind::NotFound | io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory => {
            StorageError::NotFound(path.to_owned())
        }
        _ => StorageError::Io {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// Runs a quick file call (a lookup, a small read) on the calling thread.
fn quick<T>(path: &str, work: impl FnOnce() -> io::Result<T>) -> Result<T> {
    work().map_err(|e| io_error(path, e))
}

/// A held lock of [`Storage::lock`]: an exclusive `flock` on a file of
/// [`LOCK_DIR`], which is removed when the lock is given back, so that the
/// folder holds a file only per lock held (or waited for) now, not one per
/// path ever locked.
///
/// Removing a lock file is safe only this way: the holder removes it while
/// it still holds it, and whoever takes a lock checks, once it holds the
/// `flock`, that the file it locked is still the one at the path (same
/// device and inode). A process that opened the file before it was removed
/// and then got its `flock` holds a lock on a file no one else will open:
/// it sees that and starts again on the file there now (created anew if
/// need be). So the file at the path changes only in the hands of the one
/// holding its lock, and whoever holds the lock on the file at the path
/// holds it alone, across every process on the folder. (A build from
/// before this change, which neither removes nor checks, must not share
/// the folder with this one: stop it before starting this one.)
struct LockFile {
    path: PathBuf,
    handle: Option<File>,
}

impl LockFile {
    fn open(path: &Path) -> io::Result<File> {
        let open = || {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
        };
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(path.parent().expect("lock folder"))?;
                open()
            }
            other => other,
        }
    }

    /// The lock at once, where no other process holds it (the usual case:
    /// this process's holders wait in `Locks` first); `None` otherwise.
    fn try_acquire(path: &Path) -> io::Result<Option<Self>> {
        use fs4::fs_std::FileExt;
        let handle = Self::open(path)?;
        match handle.try_lock_exclusive() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
        if !same_file(&handle, path)? {
            return Ok(None);
        }
        Ok(Some(LockFile {
            path: path.to_owned(),
            handle: Some(handle),
        }))
    }

    fn acquire(path: PathBuf) -> io::Result<Self> {
        use fs4::fs_std::FileExt;
        loop {
            let handle = Self::open(&path)?;
            handle.lock_exclusive()?;
            if same_file(&handle, &path)? {
                return Ok(LockFile {
                    path,
                    handle: Some(handle),
                });
            }
            // Removed by the holder we waited for: closing gives back a
            // lock on a file no one else will take.
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Still locked while it goes; closing the handle then unlocks. A
        // failure only leaves the file for the next holder to remove.
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("lock file {}: not removed: {e}", self.path.display());
            }
        }
        drop(self.handle.take());
    }
}

/// Whether the open file is the one at `path` now.
fn same_file(handle: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = handle.metadata()?;
    match fs::metadata(path) {
        Ok(now) => Ok(held.dev() == now.dev() && held.ino() == now.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the lock files no one holds (left by a build that kept them,
/// or by a crash), each under its own lock, as [`LockFile`] does; a file
/// someone holds is left to them. Returns how many went.
fn remove_idle_lock_files(root: &Path) -> u64 {
    use fs4::fs_std::FileExt;
    let Ok(entries) = fs::read_dir(root.join(LOCK_DIR)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(handle) = fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if handle.try_lock_exclusive().is_ok() && same_file(&handle, &path).unwrap_or(false) {
            drop(LockFile {
                path,
                handle: Some(handle),
            });
            removed += 1;
        }
    }
    removed
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    path: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|e| io_error(path, e)),
        Err(join) => Err(StorageError::Io {
            path: path.to_owned(),
            source: io::Error::other(join.to_string()),
        }),
    }
}

/// Children of a folder from which `folders_holding_with_times`
/// shares its stats among the cores.
const STATS_TO_SHARE: usize = 2048;

/// A stat's modification time, as `Metadata::modified` reads it (a time
/// the clock cannot hold: the epoch).
fn modified(stat: &rustix::fs::Stat) -> std::time::SystemTime {
    let seconds = std::time::Duration::from_secs(stat.st_mtime.unsigned_abs());
    // Unsigned on Linux x86-64, signed on other targets.
    #[allow(clippy::useless_conversion)]
    let nanos = std::time::Duration::from_nanos(u64::try_from(stat.st_mtime_nsec).unwrap_or(0));
    let whole = if stat.st_mtime >= 0 {
        std::time::UNIX_EPOCH.checked_add(seconds)
    } else {
        std::time::UNIX_EPOCH.checked_sub(seconds)
    };
    whole
        .and_then(|t| t.checked_add(nanos))
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// Removes a folder at once: renamed into `trash` (a folder's removal
/// file by file, cut by a crash, would leave a part that reads as a
/// whole: a tag without its link, a repository with some tags), then
/// deleted there. Where the rename cannot be made (another filesystem
/// mounted inside storage_path), deleted where it is.
fn remove_folder(full: &Path, trash: &Path) -> io::Result<()> {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let aside = trash.join(format!(
        "{}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        rand::random::<u32>()
    ));
    let moved = match fs::rename(full, &aside) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !trash.is_dir() => {
            fs::create_dir_all(trash)?;
            fs::rename(full, &aside)
        }
        other => other,
    };
    match moved {
        Ok(()) => {
            // Out of the tree already: what cannot be deleted now waits
            // for the next start.
            if let Err(e) = fs::remove_dir_all(&aside) {
                log::warn!("{}: left for the start-up sweep: {e}", aside.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => fs::remove_dir_all(full),
        Err(e) => Err(e),
    }
}

/// Deletes what removals cut short left in `trash`; returns how many
/// folders went.
fn empty_trash(trash: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(trash) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let result = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("{}: not removed: {e}", path.display()),
        }
    }
    removed
}

/// Walks the tree under `root` (not following links) and removes the
/// temporary files last modified more than `older_than` ago. A folder that
/// cannot be read, or a file that vanished, is skipped (logged).
fn remove_stale_temporaries(root: &Path, older_than: std::time::Duration) -> u64 {
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) => {
                log::warn!("{}: not swept for temporary files: {e}", folder.display());
                continue;
            }
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                folders.push(entry.path());
                continue;
            }
            if !kind.is_file()
                || !entry
                    .file_name()
                    .as_encoded_bytes()
                    .starts_with(TEMP_PREFIX.as_bytes())
            {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > older_than);
            if stale {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => log::warn!("{}: not removed: {e}", entry.path().display()),
                }
            }
        }
    }
    removed
}

/// A temporary file next to `dest` (its folder created as needed).
fn temp_beside(dest: &Path) -> io::Result<NamedTempFile> {
    let dir = dest
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent folder"))?;
    let create = || {
        folders_for(dir)?;
        tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            // What a plain create gives (0666 less the umask), as the old
            // registry's files have: a temporary file's default 0600 would
            // hide layers from an nginx serving them (`nginx_x_accel_redirect`).
            .permissions(fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)
    };
    match create() {
        // The folder was removed (a concurrent delete of the image or
        // repository) between its creation and the file's: once more.
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(),
        other => other,
    }
}

/// Syncs a finished temporary file and renames it over `dest`.
fn commit(file: File, temp: TempPath, dest: &Path) -> io::Result<()> {
    // Without the sync a power loss right after the rename could leave a
    // complete-looking name over empty or partial data.
    file.sync_data()?;
    drop(file);
    temp.persist(dest).map_err(|e| e.error)
}

/// Syncs a folder, so that names created or moved in it survive a power
/// loss as the files' data does.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all`, which fails with `AlreadyExists` when a concurrent
/// remove takes a folder away between its `mkdir` and its check that the
/// folder is there: once more then.
fn folders_for(dir: &Path) -> io::Result<()> {
    while_removed(io::ErrorKind::AlreadyExists, || fs::create_dir_all(dir))
}

/// Runs `attempt` again while it fails with `kind`, what a concurrent
/// remove of its folder makes it fail with, up to [`GONE_ATTEMPTS`] times.
fn while_removed<T>(
    kind: io::ErrorKind,
    mut attempt: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt() {
            Err(e) if e.kind() == kind && attempts < GONE_ATTEMPTS => {}
            other => return other,
        }
    }
}

/// [`sync_dir`], unless a concurrent remove took the folder away.
fn sync_dir_if_there(dir: &Path) -> io::Result<()> {
    match sync_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// How often a write whose folder a concurrent remove took away (between
/// the folder's creation and the file's rename into it) is tried.
const GONE_ATTEMPTS: u32 = 8;

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent folder"))
}

/// Opens the file a [`LocalWriter`] appends to: a new, empty one (its
/// folder created as needed), or an existing one cut to its first
/// `resume` bytes.
fn open_for_writing(full: &Path, resume: Option<u64>) -> io::Result<(File, Option<u64>)> {
    match resume {
        None => {
            let dir = parent(full)?;
            let create = || {
                folders_for(dir)?;
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o666)
                    .open(full)
            };
            let file = match create() {
                // The folder was removed meanwhile (see `temp_beside`).
                Err(e) if e.kind() == io::ErrorKind::NotFound => create()?,
                other => other?,
            };
            lock_for_writing(&file, full)?;
            file.set_len(0)?;
            Ok((file, None))
        }
        Some(n) => {
            let mut file = fs::OpenOptions::new().write(true).open(full)?;
            lock_for_writing(&file, full)?;
            let meta = file.metadata()?;
            if meta.is_dir() {
                return Err(io::Error::from(io::ErrorKind::IsADirectory));
            }
            if meta.len() < n {
                return Ok((file, Some(meta.len())));
            }
            if meta.len() > n {
                // Bytes an abandoned writer left after the last close.
                file.set_len(n)?;
            }
            file.seek(SeekFrom::Start(n))?;
            Ok((file, None))
        }
    }
}

/// How long a new writer waits for the writes of an earlier one to land.
const WRITER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes the file's exclusive lock, held until the writer's last handle
/// closes. A writer's batch may still be in flight on the blocking pool
/// when its request breaks off; the lock makes the next writer (which
/// cuts the file back to the acknowledged offset) wait for it, so that no
/// byte of the earlier writer lands after the cut. A file system without
/// locks goes without.
fn lock_for_writing(file: &File, full: &Path) -> io::Result<()> {
    let deadline = std::time::Instant::now() + WRITER_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
                return Ok(())
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::other(format!(
                    "{} is still being written by another writer",
                    full.display()
                )))
            }
        }
    }
}

fn file_size(path: &Path) -> io::Result<u64> {
    let meta = fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::from(io::ErrorKind::IsADirectory));
    }
    Ok(meta.len())
}

/// Opens a file for reading, with its size; a folder is not a file.
fn open_file(path: &Path) -> io::Result<(File, u64)> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::from(io::ErrorKind::IsADirectory));
    }
    Ok((file, meta.len()))
}

/// Reads up to `len` bytes at `offset`, short only at the end of the file.
///
/// The buffer is not zeroed first: `read_to_end` reads straight into its
/// spare capacity (zeroing a fresh block cost as much CPU as copying it in,
/// see BENCHMARKS.md). One read at a time per file, so the shared cursor
/// is safe to move.
fn read_block(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// The file shrank under a reader (someone outside the registry truncated
/// it): said so rather than ending short silently.
fn shrank(path: &str, missing: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{path} ended {missing} bytes early"),
    )
}

/// A file streamed out block by block, the next block read while the
/// current one is being sent.
struct BlockReader {
    file: Arc<File>,
    path: String,
    offset: u64,
    remaining: u64,
    ahead: Option<JoinHandle<io::Result<Bytes>>>,
}

impl BlockReader {
    fn spawn_read(&self, offset: u64, remaining: u64) -> Option<JoinHandle<io::Result<Bytes>>> {
        if remaining == 0 {
            return None;
        }
        let file = self.file.clone();
        let len = remaining.min(READ_CHUNK as u64) as usize;
        Some(tokio::task::spawn_blocking(move || {
            read_block(&file, offset, len)
        }))
    }

    fn into_stream(mut self) -> ByteStream {
        self.ahead = self.spawn_read(self.offset, self.remaining);
        Box::pin(futures_util::stream::unfold(self, |mut s| async move {
            let pending = s.ahead.take()?;
            let block = match pending.await {
                Ok(Ok(block)) => block,
                Ok(Err(e)) => return Some((Err(e), s.finished())),
                Err(join) => return Some((Err(io::Error::other(join.to_string())), s.finished())),
            };
            if block.is_empty() {
                let e = shrank(&s.path, s.remaining);
                return Some((Err(e), s.finished()));
            }
            s.offset += block.len() as u64;
            s.remaining -= block.len() as u64;
            s.ahead = s.spawn_read(s.offset, s.remaining);
            Some((Ok(block), s))
        }))
    }

    fn finished(mut self) -> Self {
        self.remaining = 0;
        self.ahead = None;
        self
    }
}

/// A file written in place, appended to across requests: what is written
/// is collected into [`WRITE_BATCH`] batches, each written on the blocking
/// pool while the next one arrives, and flushed to disk every
/// [`FLUSH_EVERY`] bytes, as [`Storage::put_stream`] does, so that a close
/// waits for the tail only.
struct LocalWriter {
    path: String,
    full: PathBuf,
    root: PathBuf,
    /// Here between writes, taken by the write in flight; gone after a
    /// failed write.
    file: Option<File>,
    in_flight: Option<JoinHandle<io::Result<File>>>,
    /// The early flush under way, on a second handle of the file.
    flushing: Option<JoinHandle<io::Result<()>>>,
    unflushed: usize,
    pending: BytesMut,
    size: u64,
    /// A file this writer created: its folder entry is synced once, at the
    /// first close.
    new_entry: bool,
}

impl LocalWriter {
    /// The file, once the write in flight (if any) is done.
    async fn settle(&mut self) -> Result<File> {
        if let Some(write) = self.in_flight.take() {
            return join_write(&self.path, write).await;
        }
        self.file.take().ok_or_else(|| failed_before(&self.path))
    }

    /// Hands `data` to the blocking pool and returns without waiting for
    /// it: the caller goes on reading the body meanwhile.
    async fn write_out(&mut self, data: Bytes) -> Result<()> {
        let mut file = self.settle().await?;
        self.unflushed += data.len();
        if self.unflushed >= FLUSH_EVERY && self.flushing.as_ref().is_none_or(|f| f.is_finished()) {
            if let Some(done) = self.flushing.take() {
                join_flush(&self.path, done).await?;
            }
            let handle = file.try_clone().map_err(|e| io_error(&self.path, e))?;
            self.flushing = Some(tokio::task::spawn_blocking(move || {
                start_writeback(&handle)
            }));
            self.unflushed = 0;
        }
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            file.write_all(&data)?;
            Ok(file)
        }));
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.pending).freeze();
        self.write_out(data).await
    }

    /// Writes out what is pending and syncs it (and a new file's name).
    async fn sync(&mut self) -> Result<u64> {
        self.flush().await?;
        let file = self.settle().await?;
        if let Some(done) = self.flushing.take() {
            join_flush(&self.path, done).await?;
        }
        let full = self.full.clone();
        let new_entry = std::mem::take(&mut self.new_entry);
        blocking(&self.path, move || {
            file.sync_data()?;
            if new_entry {
                sync_dir(parent(&full)?)?;
            }
            Ok(())
        })
        .await?;
        Ok(self.size)
    }
}

/// Starts putting what is written to `file` on disk, without waiting for
/// it: the early flush of a large file, so that its sync at the end waits
/// for the tail only. Not a sync: on Linux, `sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`, which, unlike `fdatasync`, takes no lock on the
/// file, so the writes that follow never wait for the disk (they did
/// while 2 GiB of another file's writeback kept the disk busy: a pull
/// through the cache fell from 750-800 to 300-400 MB/s). Elsewhere, a
/// sync.
fn start_writeback(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the whole call (`file` is
        // borrowed), and the call reads no memory of ours.
        let done =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if done == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        file.sync_data()
    }
}

/// A writer whose earlier write failed: what is on disk is unknown.
fn failed_before(path: &str) -> StorageError {
    StorageError::Io {
        path: path.to_owned(),
        source: io::Error::other("an earlier write to this file failed"),
    }
}

#[async_trait(?Send)]
impl FileWriter for LocalWriter {
    fn size(&self) -> u64 {
        self.size
    }

    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        if self.pending.len() + data.len() < WRITE_BATCH {
            self.pending.extend_from_slice(&data);
            return Ok(());
        }
        self.flush().await?;
        if data.len() >= WRITE_BATCH {
            self.write_out(data).await
        } else {
            self.pending.extend_from_slice(&data);
            Ok(())
        }
    }

    async fn close(mut self: Box<Self>) -> Result<u64> {
        self.sync().await
    }

    async fn commit(mut self: Box<Self>) -> Result<u64> {
        // The file is already at its path.
        self.sync().await
    }

    async fn cancel(mut self: Box<Self>) -> Result<()> {
        // A write still in flight lands in the removed file, never in one
        // a new writer creates at the path.
        self.file = None;
        let full = self.full.clone();
        let root = self.root.clone();
        blocking(&self.path, move || {
            match fs::remove_file(&full) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // The folders the file was alone in go too, as they would in a
            // bucket: an upload cancelled leaves nothing to list. Only empty
            // folders are removed, and a writer creating a file in one
            // meanwhile creates it again (see `open_for_writing`).
            for dir in full.ancestors().skip(1) {
                if dir == root || !dir.starts_with(&root) || fs::remove_dir(dir).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .await
    }
}

#[async_trait(?Send)]
impl Storage for LocalStorage {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let full = self.resolve(path)?;
        // No stat first: reading a folder fails as reading a missing file
        // does, and a file's first bytes tell whether it is small.
        let (file, mut data) = quick(path, || {
            let file = File::open(&full)?;
            let mut head = Vec::with_capacity(8 * 1024);
            (&file).take(INLINE_READ + 1).read_to_end(&mut head)?;
            Ok((file, head))
        })?;
        if data.len() as u64 > INLINE_READ {
            data = blocking(path, move || {
                (&file).read_to_end(&mut data)?;
                Ok(data)
            })
            .await?;
        }
        Ok(Bytes::from(data))
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let dest = self.resolve(path)?;
        blocking(path, move || {
            // The folder, and the temporary file in it, removed before the
            // rename (a link the collector deletes while a push writes it
            // again): the bytes are at hand, so once more.
            while_removed(io::ErrorKind::NotFound, || {
                let (mut file, temp) = temp_beside(&dest)?.into_parts();
                file.write_all(&data)?;
                commit(file, temp, &dest)
            })
        })
        .await
    }

    async fn put_unsynced(&self, path: &str, data: Bytes) -> Result<()> {
        let dest = self.resolve(path)?;
        // A few bytes and no sync: as quick as a small read, so on the
        // calling thread too (a hop to the blocking pool cost more).
        quick(path, || {
            while_removed(io::ErrorKind::NotFound, || {
                let (mut file, temp) = temp_beside(&dest)?.into_parts();
                file.write_all(&data)?;
                drop(file);
                temp.persist(&dest).map_err(|e| e.error)
            })
        })
    }

    async fn put_if_unsynced(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&Version>,
    ) -> Result<bool> {
        put_if_locked(self, path, data, expected, false).await
    }

    async fn put_stream(&self, path: &str, body: ByteStream) -> Result<u64> {
        let dest = self.resolve(path)?;
        let d = dest.clone();
        let (file, temp) = blocking(path, move || temp_beside(&d)).await?.into_parts();
        // Dropping `temp` (an error below, or the request future dropped
        // when the client goes away) deletes the temporary file; the old
        // content at `dest` is never touched before the final rename.
        let mut file = Some(file);
        let mut in_flight: Option<JoinHandle<io::Result<File>>> = None;
        let mut flushing: Option<JoinHandle<io::Result<()>>> = None;
        let mut unflushed = 0usize;
        let mut blocks = Blocks::new(body);
        while let Some(data) = blocks.next(WRITE_BATCH).await? {
            // Wait for the previous batch, then hand this one to the pool
            // and go on reading the body while it is written.
            if let Some(previous) = in_flight.take() {
                file = Some(join_write(path, previous).await?);
            }
            let mut f = file.take().ok_or_else(|| lost(path))?;
            unflushed += data.len();
            // Start putting what is written on disk while the body still
            // arrives (one flush at a time, on a second handle), so that the
            // sync before the rename waits for the tail only, not for the
            // whole layer.
            if unflushed >= FLUSH_EVERY && flushing.as_ref().is_none_or(|f| f.is_finished()) {
                if let Some(done) = flushing.take() {
                    join_flush(path, done).await?;
                }
                let handle = f.try_clone().map_err(|e| io_error(path, e))?;
                flushing = Some(tokio::task::spawn_blocking(move || {
                    start_writeback(&handle)
                }));
                unflushed = 0;
            }
            in_flight = Some(tokio::task::spawn_blocking(move || {
                f.write_all(&data)?;
                Ok(f)
            }));
        }
        let last = in_flight.take().map(|w| join_write(path, w));
        let file = match last {
            Some(w) => w.await?,
            None => file.take().ok_or_else(|| lost(path))?,
        };
        if let Some(done) = flushing.take() {
            join_flush(path, done).await?;
        }
        blocking(path, move || commit(file, temp, &dest)).await?;
        Ok(blocks.total())
    }

    async fn get_stream(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
        self.stream_out(path, range, false)
    }

    async fn get_stream_copied(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
        self.stream_out(path, range, true)
    }

    async fn size(&self, path: &str) -> Result<u64> {
        let full = self.resolve(path)?;
        quick(path, || file_size(&full))
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        let full = self.resolve(path)?;
        quick(path, || match fs::metadata(full) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let full = self.resolve(path)?;
        let names = quick(path, || {
            let mut names = Vec::new();
            for entry in fs::read_dir(full)? {
                let entry = entry?;
                // Names on disk that are not UTF-8 were not written by a
                // registry: they cannot be a path the registry asks for.
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with(TEMP_PREFIX) && !entry.file_type()?.is_dir() {
                    continue;
                }
                names.push(name);
            }
            names.sort();
            Ok(names)
        })?;
        if names.is_empty() {
            // As in the old registry, and as in a bucket where an empty
            // folder cannot exist.
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(names)
    }

    async fn folders_holding_with_times(
        &self,
        path: &str,
        file: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>> {
        let full = self.resolve(path)?;
        check_path(file)?;
        let file = file.to_owned();
        // One readdir, then a stat per child in a few tasks of the blocking
        // pool (one per core for a large folder, not one per child), and
        // nothing below the file asked about is read (a tag's history can
        // hold thousands of links). Each stat is relative to the folder,
        // opened once: a full path would be walked again from `/` for every
        // child, and that walk was most of a 10,000-tag listing's time.
        let (folder, children) = blocking(path, move || {
            use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
            // A folder or an error at once (a FIFO there would block an
            // open without O_DIRECTORY); its entries read from this same
            // handle, so the listing and the stats see one folder.
            let folder = rustix::fs::open(
                &full,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut children = Vec::new();
            for entry in Dir::read_from(&folder)? {
                let entry = entry?;
                let Ok(name) = entry.file_name().to_str() else {
                    continue;
                };
                if name == "." || name == ".." {
                    continue;
                }
                if name.starts_with(TEMP_PREFIX) {
                    let kind = match entry.file_type() {
                        // Filesystems that do not say in the entry.
                        FileType::Unknown => {
                            let stat =
                                rustix::fs::statat(&folder, name, AtFlags::SYMLINK_NOFOLLOW)?;
                            FileType::from_raw_mode(stat.st_mode)
                        }
                        kind => kind,
                    };
                    if kind != FileType::Directory {
                        continue;
                    }
                }
                children.push(name.to_owned());
            }
            Ok((Arc::new(folder), children))
        })
        .await?;
        let any = !children.is_empty();
        let parts = if children.len() < STATS_TO_SHARE {
            1
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        };
        let per_part = children.len().div_ceil(parts).max(1);
        let mut tasks = Vec::with_capacity(parts);
        for part in children.chunks(per_part) {
            let (folder, part, file) = (folder.clone(), part.to_vec(), file.clone());
            tasks.push(blocking(path, move || {
                let mut holding = Vec::with_capacity(part.len());
                for name in part {
                    let below = format!("{name}/{file}");
                    match rustix::fs::statat(&*folder, below.as_str(), rustix::fs::AtFlags::empty())
                    {
                        Ok(stat) if rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file() => {
                            holding.push((name, modified(&stat)))
                        }
                        Ok(_) | Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(holding)
            }));
        }
        let mut holding = Vec::with_capacity(children.len());
        for part in futures_util::future::try_join_all(tasks).await? {
            holding.extend(part);
        }
        if !any {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        holding.sort();
        Ok(holding)
    }

    async fn remove(&self, path: &str) -> Result<()> {
        let full = self.resolve(path)?;
        let trash = self.root.join(TRASH_DIR);
        blocking(path, move || {
            let meta = fs::symlink_metadata(&full)?;
            if meta.is_dir() {
                remove_folder(&full, &trash)
            } else {
                fs::remove_file(&full)
            }
        })
        .await
    }

    async fn writer(&self, path: &str, resume: Option<u64>) -> Result<Box<dyn FileWriter>> {
        let full = self.resolve(path)?;
        let f = full.clone();
        let (file, short) = blocking(path, move || open_for_writing(&f, resume)).await?;
        if let Some(size) = short {
            return Err(StorageError::InvalidRange {
                path: path.to_owned(),
                size,
            });
        }
        Ok(Box::new(LocalWriter {
            path: path.to_owned(),
            full,
            root: self.root.clone(),
            file: Some(file),
            in_flight: None,
            flushing: None,
            unflushed: 0,
            pending: BytesMut::new(),
            size: resume.unwrap_or(0),
            new_entry: resume.is_none(),
        }))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let source = self.resolve(from)?;
        let dest = self.resolve(to)?;
        blocking(from, move || {
            if fs::metadata(&source)?.is_dir() {
                return Err(io::Error::from(io::ErrorKind::IsADirectory));
            }
            let dir = parent(&dest)?;
            // The destination's folder can be removed between its creation
            // and the rename (the collector deleting a blob an upload
            // stores again): the source is still there, so once more.
            // (A source that is gone fails the same way, the last time too.)
            while_removed(io::ErrorKind::NotFound, || {
                folders_for(dir)?;
                fs::rename(&source, &dest)
            })?;
            // A folder removed since the rename took the file along, as a
            // remove right after it would have: nothing left to sync.
            sync_dir_if_there(dir)?;
            let source_dir = parent(&source)?;
            if source_dir != dir {
                sync_dir_if_there(source_dir)?;
            }
            Ok(())
        })
        .await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let source = self.resolve(from)?;
        let dest = self.resolve(to)?;
        blocking(from, move || {
            if fs::metadata(&source)?.is_dir() {
                return Err(io::Error::from(io::ErrorKind::IsADirectory));
            }
            let dir = parent(&dest)?;
            // A temporary name first (its file removed, the name kept
            // free), so that `to` appears whole or not at all.
            let temp = temp_beside(&dest)?.into_temp_path();
            let linked = temp.to_path_buf();
            fs::remove_file(&linked)?;
            match fs::hard_link(&source, &linked) {
                Ok(()) => {
                    if let Err(e) = fs::rename(&linked, &dest) {
                        let _ = fs::remove_file(&linked);
                        return Err(e);
                    }
                    drop(temp);
                }
                // Another filesystem, or one without links: the bytes.
                Err(_) => {
                    drop(temp);
                    let mut input = File::open(&source)?;
                    let mut copy = temp_beside(&dest)?;
                    io::copy(&mut input, copy.as_file_mut())?;
                    let (file, path) = copy.into_parts();
                    commit(file, path, &dest)?;
                }
            }
            sync_dir(dir)
        })
        .await
    }

    async fn remove_stale_temporary_files(&self, older_than: std::time::Duration) -> Result<u64> {
        let root = self.root.clone();
        blocking("", move || {
            let locks = remove_idle_lock_files(&root);
            if locks > 0 {
                log::info!("removed {locks} idle lock files of {LOCK_DIR}");
            }
            let trashed = empty_trash(&root.join(TRASH_DIR));
            Ok(trashed + remove_stale_temporaries(&root, older_than))
        })
        .await
    }

    async fn lock(&self, path: &str) -> Result<Lock> {
        check_path(path)?;
        let in_process = self.locks.lock(path).await;
        // The lock file's name is a digest of the path, so that a path of
        // any length (or depth) names one short file, in a folder no
        // listing reaches (paths from the layout never start with a dot).
        let name = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(path.as_bytes())[..16]);
        let file = self.root.join(LOCK_DIR).join(name);
        // Waiting for another process's lock blocks: only then a thread
        // of the blocking pool.
        let held = match quick(path, || LockFile::try_acquire(&file))? {
            Some(held) => held,
            None => blocking(path, move || LockFile::acquire(file)).await?,
        };
        Ok(Lock::new(in_process, Some(Box::new(held))))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let full = self.resolve(path)?;
        quick(path, || {
            let meta = fs::metadata(full)?;
            if meta.is_dir() {
                return Err(io::Error::from(io::ErrorKind::IsADirectory));
            }
            Ok(FileInfo {
                size: meta.len(),
                modified: meta.modified()?,
            })
        })
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>> {
        check_path(path)?;
        Ok(None)
    }

    fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.resolve(path).ok()
    }

    fn removes_folders_at_once(&self) -> bool {
        true
    }
}

/// The temporary file is owned by the one write in flight, or by
/// `put_stream` between writes; it cannot go missing.
fn lost(path: &str) -> StorageError {
    StorageError::Io {
        path: path.to_owned(),
        source: io::Error::other("temporary file lost between writes"),
    }
}

async fn join_flush(path: &str, flush: JoinHandle<io::Result<()>>) -> Result<()> {
    match flush.await {
        Ok(result) => result.map_err(|e| io_error(path, e)),
        Err(join) => Err(StorageError::Io {
            path: path.to_owned(),
            source: io::Error::other(join.to_string()),
        }),
    }
}

async fn join_write(path: &str, write: JoinHandle<io::Result<File>>) -> Result<File> {
    match write.await {
        Ok(result) => result.map_err(|e| io_error(path, e)),
        Err(join) => Err(StorageError::Io {
            path: path.to_owned(),
            source: io::Error::other(join.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_start_removes_the_lock_files_no_one_holds() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().to_str().unwrap()).unwrap();
        let locks = dir.path().join(LOCK_DIR);
        fs::create_dir_all(&locks).unwrap();
        // Left by a build that kept one per path ever locked.
        for i in 0..5 {
            fs::write(locks.join(format!("old{i}")), b"").unwrap();
        }
        let held = storage.lock("images/x/_inprogress").await.unwrap();
        assert_eq!(fs::read_dir(&locks).unwrap().count(), 6);
        let age = std::time::Duration::from_secs(3600);
        storage.remove_stale_temporary_files(age).await.unwrap();
        // The one held stays with its holder, and still excludes.
        assert_eq!(fs::read_dir(&locks).unwrap().count(), 1);
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            LocalStorage::new(dir.path().to_str().unwrap())
                .unwrap()
                .lock("images/x/_inprogress"),
        )
        .await;
        assert!(waiting.is_err(), "a second holder got the lock");
        drop(held);
        // The waiter given up on above still takes the lock once, on the
        // blocking pool, and gives it back.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fs::read_dir(&locks).unwrap().count() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(fs::read_dir(&locks).unwrap().count(), 0);
    }
}
