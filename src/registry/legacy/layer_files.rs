//! The file listing of a layer (`GET /v1/images/<id>/files`): one entry a
//! member of the layer's tar, `[path, type, deleted, size, mtime, mode, uid,
//! gid]`, for plain, gzip- and xz-compressed tars.
//!
//! A layer can be gigabytes: it is streamed to a temporary file (never held
//! in memory) and read there by a blocking thread, off the async workers.
//!
//! A hostile layer cannot make a listing unbounded: at most [`MAX_ENTRIES`]
//! members, [`MAX_LISTING_BYTES`] of JSON and [`MAX_TAR_BYTES`] of
//! (decompressed) tar are read, beyond which the listing fails with
//! [`Error::ListingTooLarge`]; and at most [`MAX_CONCURRENT`] listings are
//! computed at once, a request waiting at most [`QUEUE_WAIT`] for its turn
//! ([`Error::ListingBusy`] after that).

use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use tokio::sync::SemaphorePermit;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{Error, Result};
use crate::storage::{ByteStream, StorageError};

/// The most members a listing holds.
pub const MAX_ENTRIES: usize = 100_000;
/// The most bytes of JSON a listing takes (long names add up).
pub const MAX_LISTING_BYTES: usize = 16 * 1024 * 1024;
/// The most bytes of tar read, after decompression (4 GiB).
pub const MAX_TAR_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Listings computed at once, over the whole process.
pub const MAX_CONCURRENT: usize = 2;
/// How long a request waits for a listing slot before `ListingBusy`.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT);

/// Lists the members of the layer `layer` streams.
pub async fn list(layer: ByteStream) -> Result<Bytes> {
    let _slot = slot(&SLOTS, QUEUE_WAIT).await?;
    list_now(layer).await
}

/// A permit of `slots`, waiting at most `wait` for it.
async fn slot(slots: &tokio::sync::Semaphore, wait: Duration) -> Result<SemaphorePermit<'_>> {
    tokio::time::timeout(wait, slots.acquire())
        .await
        .map_err(|_| Error::ListingBusy)?
        .map_err(|_| Error::ListingBusy)
}

async fn list_now(mut layer: ByteStream) -> Result<Bytes> {
    let mut file = tempfile::tempfile().map_err(local_io)?;
    // Writes to a temporary file are page-cache copies; doing them inline
    // keeps the code simple and the layer out of memory.
    while let Some(chunk) = layer.next().await {
        let chunk = chunk.map_err(|e| Error::Storage(StorageError::Unavailable(e.to_string())))?;
        file.write_all(&chunk).map_err(local_io)?;
    }
    actix_web::rt::task::spawn_blocking(move || {
        file.seek(SeekFrom::Start(0))?;
        list_tar(file)
    })
    .await
    .map_err(|e| local_io(io::Error::other(e)))?
    .map_err(|e| match Limit::of(&e) {
        Some(limit) => Error::ListingTooLarge(limit.to_string()),
        None => {
            log::debug!("layer is not a tar we can read: {e}");
            Error::LayerFormat
        }
    })
}

/// Which bound a listing ran into.
#[derive(Debug, Clone, Copy)]
enum Limit {
    Entries(usize),
    ListingBytes(usize),
    TarBytes(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Entries(n) => write!(f, "more than {n} entries"),
            Limit::ListingBytes(n) => write!(f, "a listing over {n} bytes"),
            Limit::TarBytes(n) => write!(f, "over {n} bytes of tar"),
        }
    }
}

impl std::error::Error for Limit {}

impl Limit {
    fn error(self) -> io::Error {
        io::Error::other(self)
    }

    /// The limit `e` reports, however deep the tar reader wrapped it.
    fn of(e: &io::Error) -> Option<Limit> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
        while let Some(err) = source {
            if let Some(limit) = err.downcast_ref::<Limit>() {
                return Some(*limit);
            }
            if let Some(io) = err.downcast_ref::<io::Error>() {
                source = io.get_ref().map(|r| r as _);
            } else {
                source = err.source();
            }
        }
        None
    }
}

/// A reader that fails once more than `left` bytes went through.
struct Bounded<R> {
    inner: R,
    limit: u64,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a tar that ends right at the bound from
            // one that goes on.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(Limit::TarBytes(self.limit).error()),
            };
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn local_io(source: io::Error) -> Error {
    Error::Storage(StorageError::Io {
        path: "(temporary layer copy)".into(),
        source,
    })
}

/// The bounds of a listing.
struct Limits {
    entries: usize,
    listing_bytes: usize,
    tar_bytes: u64,
}

const LIMITS: Limits = Limits {
    entries: MAX_ENTRIES,
    listing_bytes: MAX_LISTING_BYTES,
    tar_bytes: MAX_TAR_BYTES,
};

/// Reads a tar, decompressing it first if its magic says so.
fn list_tar(file: std::fs::File) -> io::Result<Bytes> {
    list_tar_within(file, &LIMITS)
}

fn list_tar_within(file: std::fs::File, limits: &Limits) -> io::Result<Bytes> {
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut reader, &mut magic)?;
    reader.seek(SeekFrom::Start(0))?;
    // An empty file is no tar (an empty layer still has its two zero end
    // blocks, which the reader accepts).
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty layer"));
    }
    let magic = &magic[..n];
    if magic.starts_with(&[0x1f, 0x8b]) {
        entries(flate2::read::MultiGzDecoder::new(reader), limits)
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        entries(xz2::read::XzDecoder::new_multi_decoder(reader), limits)
    } else {
        entries(reader, limits)
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The listing as JSON, written entry by entry within the bounds.
fn entries(reader: impl Read, limits: &Limits) -> io::Result<Bytes> {
    let mut archive = tar::Archive::new(Bounded {
        inner: reader,
        limit: limits.tar_bytes,
        left: limits.tar_bytes,
    });
    let mut out = Vec::with_capacity(4096);
    out.push(b'[');
    let mut count = 0usize;
    for entry in archive.entries()? {
        if let Some(item) = describe(&entry?)? {
            count += 1;
            if count > limits.entries {
                return Err(Limit::Entries(limits.entries).error());
            }
            if count > 1 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(&super::json::to_bytes(&item));
            if out.len() > limits.listing_bytes {
                return Err(Limit::ListingBytes(limits.listing_bytes).error());
            }
        }
    }
    out.push(b']');
    Ok(Bytes::from(out))
}

/// One member as `[path, type, deleted, size, mtime, mode, uid, gid]`, or
/// `None` for members that are metadata (whiteout markers of the union
/// filesystem itself, pax and GNU extension headers).
fn describe<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<Option<Value>> {
    let header = entry.header();
    let kind = header.entry_type();
    if kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink()
    {
        return Ok(None);
    }
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let is_dir = kind.is_dir() || ((kind.is_file()) && raw.ends_with('/') && raw.len() > 1);
    let mut path = if is_dir && raw.len() > 1 {
        raw.trim_end_matches('/').to_owned()
    } else {
        raw
    };
    if path == "." {
        path = "/".to_owned();
    } else if let Some(rest) = path.strip_prefix("./") {
        path = format!("/{rest}");
    }
    // `.wh.<name>` marks <name> deleted in this layer; `.wh..wh.*` are the
    // union filesystem's own bookkeeping and not files of the image.
    let (dir, base) = match path.rfind('/') {
        Some(i) => path.split_at(i + 1),
        None => ("", path.as_str()),
    };
    let mut deleted = false;
    if let Some(target) = base.strip_prefix(".wh.") {
        if target.starts_with(".wh.") {
            return Ok(None);
        }
        path = format!("{dir}{target}");
        deleted = true;
    }
    let type_letter = if is_dir {
        "d"
    } else {
        match header.entry_type().as_byte() {
            b'0' | b'\0' => "f",
            b'1' => "l",
            b'2' => "s",
            b'3' => "c",
            b'4' => "b",
            b'5' => "d",
            b'6' => "i",
            b'7' => "t",
            _ => "u",
        }
    };
    Ok(Some(json!([
        path,
        type_letter,
        deleted,
        header.size()?,
        header.mtime()?,
        // The header's mode field as it is, file-type bits included, as the
        // old registry (Python's tarfile) reported it.
        header.mode()?,
        header.uid()?,
        header.gid()?,
    ])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(members: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_400_000_000);
            header.set_uid(1);
            header.set_gid(2);
            if kind.is_symlink() {
                header.set_link_name("target").unwrap();
            }
            // Raw names: the builder's own path setter would drop the `./`
            // that real layers carry.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn listing(bytes: Vec<u8>) -> io::Result<Value> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        Ok(serde_json::from_slice(&list_tar(file)?).unwrap())
    }

    fn sample() -> Vec<u8> {
        layer(&[
            ("./", tar::EntryType::Directory, b""),
            ("./etc/", tar::EntryType::Directory, b""),
            (
                "./etc/hosts",
                tar::EntryType::Regular,
                b"127.0.0.1 localhost\n",
            ),
            ("./etc/.wh.motd", tar::EntryType::Regular, b""),
            ("./.wh..wh.plnk", tar::EntryType::Directory, b""),
            ("./bin/sh", tar::EntryType::Symlink, b""),
            ("./dev/fifo", tar::EntryType::Fifo, b""),
        ])
    }

    #[test]
    fn members_are_listed_like_the_old_registry() {
        let list = listing(sample()).unwrap();
        assert_eq!(
            list,
            json!([
                ["/", "d", false, 0, 1_400_000_000, 0o644, 1, 2],
                ["/etc", "d", false, 0, 1_400_000_000, 0o644, 1, 2],
                ["/etc/hosts", "f", false, 20, 1_400_000_000, 0o644, 1, 2],
                ["/etc/motd", "f", true, 0, 1_400_000_000, 0o644, 1, 2],
                ["/bin/sh", "s", false, 0, 1_400_000_000, 0o644, 1, 2],
                ["/dev/fifo", "i", false, 0, 1_400_000_000, 0o644, 1, 2],
            ])
        );
    }

    #[test]
    fn compressed_layers_are_read_too() {
        let plain = listing(sample()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&sample()).unwrap();
        assert_eq!(listing(gz.finish().unwrap()).unwrap(), plain);
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&sample()).unwrap();
        assert_eq!(listing(xz.finish().unwrap()).unwrap(), plain);
    }

    fn limited(bytes: Vec<u8>, limits: Limits) -> io::Result<Bytes> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        list_tar_within(file, &limits)
    }

    fn limit_of(result: io::Result<Bytes>) -> Option<String> {
        Limit::of(&result.unwrap_err()).map(|l| l.to_string())
    }

    #[test]
    fn listings_stop_at_their_bounds() {
        let size = sample().len() as u64;
        let xz = |bytes: Vec<u8>| {
            let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
            xz.write_all(&bytes).unwrap();
            xz.finish().unwrap()
        };
        // Six listed members: six fit, five do not.
        let at = |entries, listing_bytes, tar_bytes| Limits {
            entries,
            listing_bytes,
            tar_bytes,
        };
        assert!(limited(sample(), at(6, 1 << 20, size)).is_ok());
        assert!(limited(xz(sample()), at(6, 1 << 20, size)).is_ok());
        assert_eq!(
            limit_of(limited(sample(), at(5, 1 << 20, size))).as_deref(),
            Some("more than 5 entries")
        );
        assert_eq!(
            limit_of(limited(xz(sample()), at(6, 100, size))).as_deref(),
            Some("a listing over 100 bytes")
        );
        assert_eq!(
            limit_of(limited(xz(sample()), at(6, 1 << 20, 1024))).as_deref(),
            Some("over 1024 bytes of tar")
        );
        // What is no tar is no limit.
        assert_eq!(limit_of(limited(b"nope".repeat(200), LIMITS)), None);
    }

    #[tokio::test]
    async fn a_listing_waits_its_turn_a_bounded_time() {
        let slots = tokio::sync::Semaphore::new(1);
        let held = slot(&slots, Duration::from_millis(10)).await.unwrap();
        assert!(matches!(
            slot(&slots, Duration::from_millis(50)).await,
            Err(Error::ListingBusy)
        ));
        drop(held);
        assert!(slot(&slots, Duration::from_millis(50)).await.is_ok());
    }

    #[test]
    fn what_is_no_tar_is_refused() {
        assert!(listing(b"this is not a tar archive, not at all. ".repeat(20)).is_err());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"compressed garbage that is no tar either")
            .unwrap();
        assert!(listing(gz.finish().unwrap()).is_err());
    }

    #[test]
    fn the_fixture_layers_list() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/v1-images");
        for id in [
            "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158",
            "xattr",
        ] {
            let bytes = std::fs::read(dir.join(id).join("layer.tar")).unwrap();
            assert!(listing(bytes).unwrap().is_array());
        }
    }
}
