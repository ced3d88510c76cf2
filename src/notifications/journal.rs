//! One endpoint's queue on a local folder: events appended as lines to a
//! segment this process holds (see
//! [`crate::storage::layout::notifications`] for the tree and the rules
//! that make a segment sealed).
//!
//! Why not a file an event, as on an object store: on a local filesystem a
//! new file is an inode to allocate, a name to add and a folder to change
//! besides the data, several times the cost of a line added to a file
//! already open. Lines of concurrent requests share one `fdatasync`
//! (group commit): a request answers once a sync that began after its line
//! was written has ended. A segment is written full of zeros when it is
//! made, so that a line later overwrites blocks already on disk: its sync
//! writes that data alone, not the file's size and block map besides. The
//! lines end at the first zero byte (JSON never holds one unescaped).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::storage::layout::notifications as layout;

/// A segment's size, written once (zeros) when it is made; rolled to the
/// next when a line no longer fits (some 1 400 events a segment). A line
/// longer than a segment gets one of its own, grown to fit.
const SEGMENT_BYTES: u64 = 1 << 20;

/// How much of a segment a reader reads at a time while looking for the
/// end of its lines.
const SCAN_CHUNK: usize = 64 << 10;

/// A `.open-` segment nobody holds for this long was left by a writer
/// that died between creating and naming it.
const ABANDONED_OPENING: Duration = Duration::from_secs(60);

/// The writing side, shared by the requests of this process.
pub struct Journal {
    dir: PathBuf,
    instance: String,
    appending: Mutex<Appending>,
    /// Whether a sync runs: one at a time, and those who wait for it to end
    /// often find their line synced by it.
    syncing: Mutex<bool>,
    synced: Condvar,
}

#[derive(Default)]
struct Appending {
    segment: Option<Arc<Segment>>,
    made: u64,
    last_ms: u64,
}

/// A segment this process appends to. Closing the file (the last `Arc`
/// dropped, once its lines are synced) lets go of its lock: it is sealed.
struct Segment {
    file: File,
    name: String,
    /// Bytes written.
    size: AtomicU64,
    /// Bytes known durable.
    synced: AtomicU64,
    /// A write or a sync failed: no line past `synced` may be trusted.
    failed: AtomicBool,
}

impl Journal {
    pub fn new(dir: PathBuf, instance: &str) -> Self {
        Self {
            dir,
            instance: instance.to_owned(),
            appending: Mutex::new(Appending::default()),
            syncing: Mutex::new(false),
            synced: Condvar::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `event` (one line of JSON), stamped with `ms`; durable once
    /// this returns `Ok`.
    pub async fn append(self: &Arc<Self>, ms: u64, event: Bytes) -> io::Result<()> {
        let mut line = Vec::with_capacity(event.len() + 15);
        line.extend_from_slice(format!("{ms:013} ").as_bytes());
        line.extend_from_slice(&event);
        line.push(b'\n');
        let journal = self.clone();
        // Write and sync on one thread of the blocking pool: a hop between
        // threads costs a push as much as the write.
        blocking(move || {
            let (segment, end) = journal.write(ms, &line)?;
            journal.sync(&segment, end)
        })
        .await
    }

    /// Returns once `segment` is durable up to `end`: synced by this
    /// thread, or by a sync that began after the line was written.
    fn sync(&self, segment: &Arc<Segment>, end: u64) -> io::Result<()> {
        let mut syncing = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if segment.synced.load(Ordering::Acquire) >= end {
                return Ok(());
            }
            if segment.failed.load(Ordering::Acquire) {
                return Err(io::Error::other(
                    "the notification journal could not be synced",
                ));
            }
            if !*syncing {
                break;
            }
            syncing = self.synced.wait(syncing).unwrap_or_else(|e| e.into_inner());
        }
        *syncing = true;
        drop(syncing);
        let upto = segment.size.load(Ordering::Acquire);
        let result = segment.file.sync_data();
        match &result {
            Ok(()) => {
                segment.synced.fetch_max(upto, Ordering::AcqRel);
            }
            Err(_) => self.abandon(segment),
        }
        *self.syncing.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.synced.notify_all();
        result
    }

    /// Writes `line` to the segment being appended to (a new one when
    /// there is none, or it is full); returns it and where the line ends.
    fn write(&self, ms: u64, line: &[u8]) -> io::Result<(Arc<Segment>, u64)> {
        let mut appending = self.appending.lock().unwrap_or_else(|e| e.into_inner());
        let full = appending.segment.as_ref().is_none_or(|s| {
            let size = s.size.load(Ordering::Acquire);
            size > 0 && size + line.len() as u64 > SEGMENT_BYTES
        });
        if full {
            let ms = ms.max(appending.last_ms);
            appending.last_ms = ms;
            let name = layout::segment_name(ms, &self.instance, appending.made);
            appending.made += 1;
            // The full one is dropped here by this process; it is closed,
            // and so sealed, once the requests that wrote to it synced it.
            appending.segment = Some(Arc::new(self.create(name)?));
        }
        let segment = appending.segment.clone().expect("a segment was just made");
        let at = segment.size.load(Ordering::Acquire);
        if let Err(e) = segment.file.write_all_at(line, at) {
            // Part of the line may be there: nothing more goes after it.
            segment.failed.store(true, Ordering::Release);
            appending.segment = None;
            return Err(e);
        }
        let end = at + line.len() as u64;
        segment.size.store(end, Ordering::Release);
        Ok((segment, end))
    }

    /// A new segment, locked before it takes its name.
    fn create(&self, name: String) -> io::Result<Segment> {
        fs::create_dir_all(&self.dir)?;
        let opening = self.dir.join(layout::opening_segment_name(&name));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&opening)?;
        let zeros = vec![0; SCAN_CHUNK];
        let named = file
            .try_lock()
            .map_err(io::Error::from)
            .and_then(|()| {
                let mut at = 0;
                while at < SEGMENT_BYTES {
                    file.write_all_at(&zeros, at)?;
                    at += zeros.len() as u64;
                }
                file.sync_all()
            })
            .and_then(|()| fs::rename(&opening, self.dir.join(&name)))
            .and_then(|()| File::open(&self.dir)?.sync_all());
        if let Err(e) = named {
            let _ = fs::remove_file(&opening);
            return Err(e);
        }
        Ok(Segment {
            file,
            name,
            size: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        })
    }

    /// After a failed sync nothing is appended to `segment` again.
    fn abandon(&self, segment: &Arc<Segment>) {
        segment.failed.store(true, Ordering::Release);
        let mut appending = self.appending.lock().unwrap_or_else(|e| e.into_inner());
        if appending
            .segment
            .as_ref()
            .is_some_and(|s| s.name == segment.name)
        {
            appending.segment = None;
        }
    }
}

/// Where an event ends: the segment, and the offset past its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    segment: String,
    end: u64,
}

/// An event read from a journal.
pub struct Line {
    pub position: Position,
    /// When it was queued (Unix milliseconds), 0 when the line is damaged.
    pub ms: u64,
    pub event: Bytes,
}

/// The delivering side: what each segment holds that was not delivered.
pub struct Reader {
    dir: PathBuf,
    segments: BTreeMap<String, Tail>,
    /// The cursor as read at the start, for segments not yet listed.
    saved: BTreeMap<String, u64>,
}

struct Tail {
    /// Everything before this was delivered (or dropped).
    delivered: u64,
    /// Everything before this was read into `lines`.
    scanned: u64,
    /// Complete lines after `delivered`: where each starts and ends
    /// (past its newline).
    lines: VecDeque<(u64, u64)>,
    /// Bytes of a line not (yet) ended after `scanned`.
    partial: u64,
}

impl Reader {
    /// Opens the journal in `dir` where the last delivery left it.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        let saved = match fs::read(dir.join(layout::CURSOR)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                // Everything is sent again: at least once.
                log::warn!(
                    "notification cursor {} unreadable ({e}): the journal is sent from its start",
                    dir.display()
                );
                BTreeMap::new()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            dir,
            segments: BTreeMap::new(),
            saved,
        })
    }

    /// Reads what was appended since the last look; returns how many
    /// events wait.
    pub fn refresh(&mut self) -> io::Result<usize> {
        let mut listed = Vec::new();
        match fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries {
                    let name = entry?.file_name().to_string_lossy().into_owned();
                    if layout::is_segment(&name) {
                        listed.push(name);
                    } else if name.starts_with(".open-") {
                        self.clear_opening(&name);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.segments.retain(|name, _| listed.contains(name));
        for name in listed {
            let delivered = self.saved.get(&name).copied().unwrap_or(0);
            let tail = self.segments.entry(name.clone()).or_insert(Tail {
                delivered,
                scanned: delivered,
                lines: VecDeque::new(),
                partial: 0,
            });
            match File::open(self.dir.join(&name)) {
                Ok(file) => scan(&file, tail)?,
                // Removed by an earlier holder of the lease.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.waiting())
    }

    /// How many events wait.
    pub fn waiting(&self) -> usize {
        self.segments.values().map(|t| t.lines.len()).sum()
    }

    /// The `n` oldest events, oldest first.
    pub fn oldest(&self, n: usize) -> io::Result<Vec<Line>> {
        let mut found = Vec::new();
        for (name, tail) in &self.segments {
            if found.len() == n {
                break;
            }
            let Some(&(first, _)) = tail.lines.front() else {
                continue;
            };
            let file = File::open(self.dir.join(name))?;
            let taken: Vec<(u64, u64)> = tail.lines.iter().take(n - found.len()).copied().collect();
            let last = taken.last().map_or(first, |&(_, end)| end);
            let mut bytes = vec![0; (last - first) as usize];
            file.read_exact_at(&mut bytes, first)?;
            let bytes = Bytes::from(bytes);
            for (start, end) in taken {
                // Without its newline.
                let line = bytes.slice((start - first) as usize..(end - first - 1) as usize);
                let (ms, event) = parse(line);
                found.push(Line {
                    position: Position {
                        segment: name.clone(),
                        end,
                    },
                    ms,
                    event,
                });
            }
        }
        Ok(found)
    }

    /// Marks everything up to `position` delivered, saves the cursor and
    /// removes the sealed segments that are done.
    pub fn delivered(&mut self, position: &Position) -> io::Result<()> {
        for (name, tail) in self.segments.iter_mut() {
            if *name > position.segment {
                break;
            }
            let upto = if *name == position.segment {
                position.end
            } else {
                tail.scanned
            };
            while tail.lines.front().is_some_and(|&(_, end)| end <= upto) {
                tail.lines.pop_front();
            }
            tail.delivered = tail.delivered.max(upto);
        }
        self.save()?;
        self.collect()
    }

    /// Drops the `n` oldest events undelivered; returns how many went.
    pub fn drop_oldest(&mut self, n: usize) -> io::Result<usize> {
        let Some(last) = self.nth_position(n) else {
            return Ok(0);
        };
        let before = self.waiting();
        self.delivered(&last)?;
        Ok(before - self.waiting())
    }

    /// Where the `n`th oldest waiting event ends (the last, when fewer wait).
    fn nth_position(&self, n: usize) -> Option<Position> {
        let mut left = n;
        let mut last = None;
        for (name, tail) in &self.segments {
            if left == 0 {
                break;
            }
            let taken = tail.lines.len().min(left);
            if taken > 0 {
                left -= taken;
                last = Some(Position {
                    segment: name.clone(),
                    end: tail.lines[taken - 1].1,
                });
            }
        }
        last
    }

    fn save(&self) -> io::Result<()> {
        let cursor: BTreeMap<&String, u64> = self
            .segments
            .iter()
            .map(|(name, tail)| (name, tail.delivered))
            .collect();
        let temp = self.dir.join(format!(".{}.new", layout::CURSOR));
        // Not synced: a cursor lost to a power loss sends events again,
        // it loses none.
        fs::write(
            &temp,
            serde_json::to_vec(&cursor).map_err(io::Error::other)?,
        )?;
        fs::rename(&temp, self.dir.join(layout::CURSOR))
    }

    /// Removes the segments delivered to their end whose writer let go.
    fn collect(&mut self) -> io::Result<()> {
        let done: Vec<String> = self
            .segments
            .iter()
            .filter(|(_, t)| t.lines.is_empty() && t.delivered >= t.scanned)
            .map(|(name, _)| name.clone())
            .collect();
        let mut removed = false;
        for name in done {
            let path = self.dir.join(&name);
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.segments.remove(&name);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if file.try_lock().is_err() {
                // Still being appended to.
                continue;
            }
            let tail = self.segments.get_mut(&name).expect("listed above");
            // Lines written between the last look and the writer letting go.
            scan(&file, tail)?;
            if !tail.lines.is_empty() {
                continue;
            }
            if tail.partial > 0 {
                // Its writer died while writing it: its request never
                // answered.
                log::warn!(
                    "notification journal {}: {} bytes of an event cut off by a crash dropped",
                    path.display(),
                    tail.partial
                );
            }
            fs::remove_file(&path)?;
            self.segments.remove(&name);
            removed = true;
        }
        if removed {
            self.save()?;
        }
        Ok(())
    }

    /// Removes a segment left by a writer that died before naming it.
    fn clear_opening(&self, name: &str) {
        let path = self.dir.join(name);
        let Ok(file) = File::open(&path) else {
            return;
        };
        let old = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > ABANDONED_OPENING);
        if old && file.try_lock().is_ok() {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Reads the complete lines appended to `file` since `tail.scanned`, up
/// to the first zero byte (the part of the segment not yet written).
fn scan(file: &File, tail: &mut Tail) -> io::Result<()> {
    let mut chunk = vec![0; SCAN_CHUNK];
    let mut at = tail.scanned;
    let mut start = tail.scanned;
    loop {
        let read = file.read_at(&mut chunk, at)?;
        let written = chunk[..read].iter().position(|b| *b == 0).unwrap_or(read);
        for (i, _) in chunk[..written]
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
        {
            let end = at + i as u64 + 1;
            tail.lines.push_back((start, end));
            start = end;
        }
        at += written as u64;
        if written < chunk.len() {
            break;
        }
    }
    tail.scanned = start;
    tail.partial = at - start;
    Ok(())
}

/// A line's time and event; a damaged line is given whole, at time 0
/// (the sender drops what is not JSON).
fn parse(line: Bytes) -> (u64, Bytes) {
    let ms = line
        .get(..13)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok());
    match ms {
        Some(ms) if line.get(13) == Some(&b' ') => (ms, line.slice(14..)),
        _ => (0, line),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> Bytes {
        Bytes::from(format!("{{\"n\":{i}}}"))
    }

    fn numbers(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.event).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn lines_are_read_in_order_and_delivered_ones_not_again() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::new(dir.path().join("j"), "abc"));
        for i in 0..5 {
            journal.append(1_000 + i as u64, event(i)).await.unwrap();
        }
        let mut reader = Reader::open(journal.dir().to_owned()).unwrap();
        assert_eq!(reader.refresh().unwrap(), 5);
        let first = reader.oldest(2).unwrap();
        assert_eq!(numbers(&first), ["{\"n\":0}", "{\"n\":1}"]);
        assert_eq!(first[1].ms, 1_001);
        reader.delivered(&first[1].position).unwrap();
        assert_eq!(reader.waiting(), 3);

        // A new holder starts where the cursor says.
        journal.append(2_000, event(5)).await.unwrap();
        let mut again = Reader::open(journal.dir().to_owned()).unwrap();
        assert_eq!(again.refresh().unwrap(), 4);
        assert_eq!(numbers(&again.oldest(10).unwrap())[0], "{\"n\":2}");
        assert_eq!(again.drop_oldest(3).unwrap(), 3);
        assert_eq!(numbers(&again.oldest(10).unwrap()), ["{\"n\":5}"]);
    }

    #[tokio::test]
    async fn a_segment_goes_once_sealed_and_delivered_a_torn_line_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Arc::new(Journal::new(path.clone(), "abc"));
        journal.append(1, event(1)).await.unwrap();
        let mut reader = Reader::open(path.clone()).unwrap();
        reader.refresh().unwrap();
        let lines = reader.oldest(1).unwrap();
        reader.delivered(&lines[0].position).unwrap();
        // Its writer holds it: it stays.
        let segments = || {
            fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| layout::is_segment(n))
                .count()
        };
        assert_eq!(segments(), 1);

        // The writer dies in the middle of a line.
        let Position { segment, end } = lines[0].position.clone();
        drop(journal);
        let file = OpenOptions::new()
            .write(true)
            .open(path.join(&segment))
            .unwrap();
        file.write_all_at(b"0000000000002 {\"n\":", end).unwrap();
        assert_eq!(reader.refresh().unwrap(), 0);
        assert_eq!(reader.segments[&segment].partial, 19);
        reader.delivered(&lines[0].position).unwrap();
        assert_eq!(segments(), 0);
    }

    #[tokio::test]
    async fn concurrent_appends_all_land_whole() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::new(dir.path().join("j"), "abc"));
        let appends = (0..200).map(|i| {
            let journal = journal.clone();
            tokio::spawn(async move { journal.append(7, event(i)).await })
        });
        for done in futures_util::future::join_all(appends).await {
            done.unwrap().unwrap();
        }
        let mut reader = Reader::open(journal.dir().to_owned()).unwrap();
        assert_eq!(reader.refresh().unwrap(), 200);
        let mut seen: Vec<String> = numbers(&reader.oldest(200).unwrap());
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 200);
    }

    #[test]
    fn a_full_segment_rolls_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("j"), "abc");
        let big = vec![b'x'; (SEGMENT_BYTES / 2) as usize];
        let (a, _) = journal.write(1, &big).unwrap();
        let (b, _) = journal.write(1, &big).unwrap();
        let (c, _) = journal.write(1, &big).unwrap();
        assert_eq!(a.name, b.name);
        assert_ne!(b.name, c.name);
        assert!(a.name < c.name);
        // The first is sealed once nobody holds it; the second is held.
        let first = a.name.clone();
        drop((a, b));
        let sealed = File::open(journal.dir().join(first)).unwrap();
        assert!(sealed.try_lock().is_ok());
        let held = File::open(journal.dir().join(&c.name)).unwrap();
        assert!(held.try_lock().is_err());
    }
}
