//! Large local files streamed out of memory mappings instead of reads.
//!
//! Why: a read copies the file from the page cache into a buffer, and the
//! HTTP/1 writer then copies that buffer into its own; from a mapping the
//! writer copies straight out of the page cache, one copy less per byte
//! (BENCHMARKS.md, "Layer pull"). Each window of the file is mapped on the
//! blocking pool while the one before is sent, and the kernel told to read
//! it in when it is not in the page cache, so the writer's copy seldom
//! waits for the disk.
//!
//! A mapped file that shrinks under a reader raises SIGBUS at the next
//! touch of a page past its new end, which by default kills the process.
//! What the registry serves never shrinks (every file is written aside and
//! renamed into place: a writer makes a new file, the mapped one stays
//! whole, and a removed one lives on until unmapped), but an operator
//! truncating a blob by hand, another host on a network filesystem or a
//! failing disk still can. So each window is registered with a SIGBUS
//! handler that maps a page of zeros where the page went and marks the
//! window; the process goes on, and the stream ends in an error before its
//! last bytes, which it reads (not maps) only once every window sent before
//! them came back clean. A client never gets a whole answer with zeros in
//! it, as long as the consumer copies each chunk before asking for the next
//! (what [`super::Storage::get_stream_copied`] promises). A SIGBUS outside
//! the windows goes to the handler there was before, or kills as it would.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::ByteStream;

/// Bytes mapped at a time (a window), handed to the consumer as one chunk.
/// Measured (BENCHMARKS.md): 1 MiB windows cost less CPU than 4 MiB ones
/// sliced into 1 MiB chunks, or 1 MiB ones in 256 KiB chunks, and keep the
/// resident size low: mapped pages count in it while mapped.
pub const WINDOW: usize = 1 << 20;

/// Bytes at the end read rather than mapped (see the module's comment).
const TAIL: u64 = 64 << 10;

/// Windows mapped at once in the process; past it a window is read.
const SLOTS: usize = if cfg!(test) { 4 } else { 512 };

/// A mapped window the SIGBUS handler knows: its address range, and
/// whether a page of it went missing.
struct Slot {
    /// 0: free; 1: being claimed; else the window's first byte.
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

const CLAIMING: usize = 1;

static WINDOWS: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        faulted: AtomicBool::new(false),
    }
}; SLOTS];

static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// Pages of zeros the handler put in, since the start.
static REPLACED: AtomicUsize = AtomicUsize::new(0);

/// The SIGBUS action before ours, `None` when ours could not be set.
static PREVIOUS: OnceLock<Option<libc::sigaction>> = OnceLock::new();

/// Sets the handler once; false when it cannot be set (then nothing is
/// mapped).
fn guarded() -> bool {
    PREVIOUS.get_or_init(install).is_some()
}

fn install() -> Option<libc::sigaction> {
    // SAFETY: plain libc calls on zeroed C structs; the handler only does
    // what a signal handler may (atomics, mmap, sigaction).
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE);
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &action, &mut previous) != 0 {
            log::warn!(
                "large files are read, not mapped: no SIGBUS handler ({})",
                io::Error::last_os_error()
            );
            return None;
        }
        Some(previous)
    }
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel hands a valid siginfo; only atomics, mmap and
    // sigaction are used, all safe in a signal handler; errno is kept for
    // the code the signal interrupted.
    unsafe {
        let errno = *libc::__errno_location();
        let address = (*info).si_addr() as usize;
        let page = PAGE.load(Ordering::Relaxed);
        for slot in &WINDOWS {
            let start = slot.start.load(Ordering::Acquire);
            let len = slot.len.load(Ordering::Acquire);
            if start <= CLAIMING || slot.start.load(Ordering::Acquire) != start {
                continue;
            }
            if address >= start && address < start + len {
                let zeros = libc::mmap(
                    (address & !(page - 1)) as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
                if zeros != libc::MAP_FAILED {
                    slot.faulted.store(true, Ordering::Release);
                    REPLACED.fetch_add(1, Ordering::Relaxed);
                    *libc::__errno_location() = errno;
                    return;
                }
            }
        }
        // Not a window of ours: whoever handled SIGBUS before, or the
        // default (the access faults again and the process ends as it
        // would have without us).
        match PREVIOUS.get() {
            Some(Some(previous))
                if previous.sa_sigaction != libc::SIG_DFL
                    && previous.sa_sigaction != libc::SIG_IGN =>
            {
                if previous.sa_flags & libc::SA_SIGINFO != 0 {
                    let handler: extern "C" fn(
                        libc::c_int,
                        *mut libc::siginfo_t,
                        *mut libc::c_void,
                    ) = std::mem::transmute(previous.sa_sigaction);
                    handler(signal, info, context);
                } else {
                    let handler: extern "C" fn(libc::c_int) =
                        std::mem::transmute(previous.sa_sigaction);
                    handler(signal);
                }
            }
            _ => {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
            }
        }
        *libc::__errno_location() = errno;
    }
}

/// A mapped window, registered with the handler while it lives.
struct Window {
    map: memmap2::Mmap,
    slot: usize,
    /// The stream's: set when this window lost a page.
    faulted: Arc<AtomicBool>,
}

impl Window {
    /// Maps `len` bytes of `file` at `offset`, and has the kernel read
    /// them in if they are not in the page cache yet (a read the
    /// consumer's copy then waits for less, or not at all); `None` when
    /// every slot is taken. The pages are not faulted in here: the copy
    /// maps them itself, a fault for 16 of them at a time, which cost less
    /// than faulting them in beforehand (`MAP_POPULATE`, measured).
    fn map(
        file: &File,
        offset: u64,
        len: usize,
        faulted: &Arc<AtomicBool>,
    ) -> io::Result<Option<Self>> {
        let Some(slot) = WINDOWS.iter().position(|slot| {
            slot.start
                .compare_exchange(0, CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) else {
            return Ok(None);
        };
        // SAFETY: the mapping is read only, and a file that shrinks under
        // it is what the SIGBUS handler is for; the slot is registered
        // before any byte of it is touched by anyone but the kernel.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(file)
        };
        let registered = &WINDOWS[slot];
        let map = match map {
            Ok(map) => map,
            Err(e) => {
                registered.start.store(0, Ordering::Release);
                return Err(e);
            }
        };
        registered.faulted.store(false, Ordering::Relaxed);
        registered.len.store(map.len(), Ordering::Release);
        registered
            .start
            .store(map.as_ptr() as usize, Ordering::Release);
        // Only a hint (the bytes are right without it), and only for a
        // window whose last page is not in the page cache: asked for every
        // window, it cost a tenth of the CPU of a download from the cache.
        if !last_page_cached(&map) {
            let _ = map.advise(memmap2::Advice::WillNeed);
        }
        Ok(Some(Self {
            map,
            slot,
            faulted: faulted.clone(),
        }))
    }
}

/// Whether the page holding the last byte of `map` is in the page cache.
fn last_page_cached(map: &memmap2::Mmap) -> bool {
    let page = PAGE.load(Ordering::Relaxed);
    let last = (map.as_ptr() as usize + map.len().saturating_sub(1)) & !(page - 1);
    let mut resident = 0u8;
    // SAFETY: `last` is the start of a page of the mapping (mappings start
    // on a page), and one byte of result is written for one page.
    let asked = unsafe { libc::mincore(last as *mut libc::c_void, 1, &mut resident) };
    asked == 0 && resident & 1 == 1
}

impl AsRef<[u8]> for Window {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        let slot = &WINDOWS[self.slot];
        if slot.faulted.swap(false, Ordering::AcqRel) {
            self.faulted.store(true, Ordering::Release);
        }
        slot.start.store(0, Ordering::Release);
        // The mapping (with any page of zeros in it) goes after this.
    }
}

/// `remaining` bytes of `file` from `offset`, as mapped windows and a
/// read tail; the file back when it is not to be mapped (no more than
/// [`TAIL`] bytes, or no SIGBUS handler).
pub fn stream(file: File, path: &str, offset: u64, remaining: u64) -> Result<ByteStream, File> {
    if remaining <= TAIL || !guarded() {
        return Err(file);
    }
    let mut reader = Reader {
        file: Arc::new(file),
        path: path.to_owned(),
        offset,
        mapped: remaining - TAIL,
        ahead: None,
        faulted: Arc::new(AtomicBool::new(false)),
        done: false,
    };
    reader.ahead = reader.map_next();
    Ok(Box::pin(futures_util::stream::unfold(
        reader,
        |mut r| async move {
            if r.done {
                return None;
            }
            let item = r.next().await;
            if item.is_err() {
                r.done = true;
            }
            Some((item, r))
        },
    )))
}

struct Reader {
    file: Arc<File>,
    path: String,
    /// Where the next window starts.
    offset: u64,
    /// Bytes still to map from `offset` on (the tail not counted).
    mapped: u64,
    ahead: Option<JoinHandle<io::Result<Bytes>>>,
    faulted: Arc<AtomicBool>,
    done: bool,
}

impl Reader {
    /// Maps the next window on the blocking pool; reads it instead when no
    /// slot is free or the filesystem maps nothing.
    fn map_next(&mut self) -> Option<JoinHandle<io::Result<Bytes>>> {
        if self.mapped == 0 {
            return None;
        }
        let len = self.mapped.min(WINDOW as u64) as usize;
        let (file, offset, faulted) = (self.file.clone(), self.offset, self.faulted.clone());
        self.offset += len as u64;
        self.mapped -= len as u64;
        Some(tokio::task::spawn_blocking(move || {
            match Window::map(&file, offset, len, &faulted) {
                Ok(Some(window)) => Ok(Bytes::from_owner(window)),
                Ok(None) | Err(_) => read_exact_at(&file, offset, len),
            }
        }))
    }

    async fn next(&mut self) -> io::Result<Bytes> {
        if self.faulted.load(Ordering::Acquire) {
            return Err(self.shrank());
        }
        if let Some(window) = self.ahead.take() {
            let window = window.await.map_err(io::Error::other)??;
            self.ahead = self.map_next();
            return Ok(window);
        }
        // Every window was handed out and, by the consumer's promise,
        // copied: the tail is read only if none of them lost a page.
        self.done = true;
        let (file, offset) = (self.file.clone(), self.offset);
        let tail = tokio::task::spawn_blocking(move || read_exact_at(&file, offset, TAIL as usize))
            .await
            .map_err(io::Error::other)?;
        if self.faulted.load(Ordering::Acquire) {
            return Err(self.shrank());
        }
        tail.map_err(|_| self.shrank())
    }

    fn shrank(&self) -> io::Error {
        log::error!(
            "{} shrank while it was being sent (cut short on disk?): the download is ended",
            self.path
        );
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} shrank while it was being sent", self.path),
        )
    }
}

fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;

    /// A file of `len` bytes none of which is zero (a page of zeros put
    /// in by the handler shows).
    fn file(dir: &tempfile::TempDir, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        (path, data)
    }

    /// Takes the stream as an HTTP/1 writer does: each chunk copied and
    /// dropped before the next is asked for; `between` runs after the
    /// first chunk.
    async fn copy_out(
        mut stream: ByteStream,
        between: impl FnOnce(),
    ) -> (Vec<u8>, Option<io::Error>) {
        let mut out = Vec::new();
        let mut between = Some(between);
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(e) => return (out, Some(e)),
            }
            if let Some(run) = between.take() {
                run();
            }
        }
        (out, None)
    }

    fn open(path: &std::path::Path) -> File {
        File::open(path).unwrap()
    }

    /// One test at a time holds the few slots of a test build, so that
    /// each gets the windows it expects mapped.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn a_whole_file_and_a_range_come_out_as_they_are() {
        let _serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = file(&dir, 3 * WINDOW + 12_345);
        let whole = stream(open(&path), "blob", 0, data.len() as u64)
            .ok()
            .unwrap();
        let (out, error) = copy_out(whole, || {}).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(out, data);

        let (first, len) = (WINDOW as u64 - 7, WINDOW as u64 + 100_001);
        let ranged = stream(open(&path), "blob", first, len).ok().unwrap();
        let (out, error) = copy_out(ranged, || {}).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(out, &data[first as usize..(first + len) as usize]);

        // No more than the tail: read, not mapped.
        assert!(stream(open(&path), "blob", 0, TAIL).is_err());
    }

    #[tokio::test]
    async fn a_file_truncated_under_the_stream_ends_it_in_an_error() {
        let _serial = SERIAL.lock().await;
        for cut in [0, WINDOW as u64 + 5, 3 * WINDOW as u64] {
            let replaced = REPLACED.load(Ordering::Relaxed);
            let dir = tempfile::tempdir().unwrap();
            let (path, data) = file(&dir, 4 * WINDOW + 999);
            let s = stream(open(&path), "blob", 0, data.len() as u64)
                .ok()
                .unwrap();
            let truncate = || {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(cut).unwrap();
            };
            // The process lives through the pages that went (SIGBUS),
            // and the stream never ends as if whole.
            let (out, error) = copy_out(s, truncate).await;
            let error = error.unwrap_or_else(|| panic!("cut at {cut}: ended whole"));
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
            assert!(out.len() < data.len());
            let sent = out.len().min(cut as usize);
            assert_eq!(&out[..sent], &data[..sent], "cut at {cut}");
            // The pages went from under mapped windows, not from reads.
            assert!(REPLACED.load(Ordering::Relaxed) > replaced, "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn a_file_removed_under_the_stream_is_sent_whole() {
        let _serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = file(&dir, 3 * WINDOW + 1);
        let s = stream(open(&path), "blob", 0, data.len() as u64)
            .ok()
            .unwrap();
        let (out, error) = copy_out(s, || std::fs::remove_file(&path).unwrap()).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn windows_past_the_slots_are_read() {
        let _serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = file(&dir, 2 * WINDOW + 10);
        // Each stream holds its window and the one ahead: more streams
        // than slots, each held at its first chunk.
        let mut streams = Vec::new();
        let mut held = Vec::new();
        for _ in 0..SLOTS {
            let mut s = stream(open(&path), "blob", 0, data.len() as u64)
                .ok()
                .unwrap();
            held.push(s.next().await.unwrap().unwrap());
            streams.push(s);
        }
        for (first, s) in held.into_iter().zip(streams) {
            let (rest, error) = copy_out(s, || {}).await;
            assert!(error.is_none(), "{error:?}");
            assert_eq!([&first[..], &rest[..]].concat(), data);
        }
    }
}
