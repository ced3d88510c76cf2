//! Blob uploads: a session in `_uploads/<id>/` that may span many requests,
//! a restart of the registry, and (S3) several instances on one bucket.
//!
//! The bytes go through the storage's resumable [`FileWriter`] at
//! `_uploads/<id>/data` and are hashed as they stream in, never read
//! back. After each request that adds bytes, the writer is closed (made
//! durable) and only then is the hash state saved at
//! `hashstates/<alg>/<offset>`: the newest saved state *is* the offset the
//! registry acknowledged. A crash between the two leaves the older state
//! newest, and resuming at its offset drops the bytes past it, so the data
//! and the hash always agree.
//!
//! An upload is hashed with one algorithm, fixed when it starts: sha512
//! when the `POST` says so (`?digest-algorithm=sha512`, or the mount of a
//! sha512 blob that fell back to an upload), else sha256, the digest
//! nearly every client pushes with. Hashing every upload both ways would
//! cost sha512's CPU on every layer. The algorithm is written into the
//! upload's id (see [`UploadId::algorithm`]), so every request, on any
//! instance, knows it without a storage call. A request that brings the
//! whole blob with its digest is hashed with that digest's algorithm. An
//! upload finished with a digest of the other algorithm (a client that
//! said nothing at `POST`, then a sha512 digest) is read back once, after
//! its last byte, to be verified: that client pays for the second hash,
//! the others never do.
//!
//! A completed blob appears atomically: the writer commits the data in the
//! upload's folder, which is then renamed to the blob's path.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::blobs;
use super::digest::{Algorithm, Digest, Hasher};
use super::error::{Error, OrNotFound, Result};
use super::links;
use super::name::Name;
use crate::storage::layout::distribution as layout;
use crate::storage::{Blocks, ByteStream, FileWriter, Storage, StorageError};

/// The largest blob we take. Generous (the largest layers seen in the wild
/// are tens of GiB), but a bound: no client fills the disk with one push.
pub const MAX_BLOB: u64 = 64 << 30;

/// The unit bodies are hashed and written in: one disk batch of the local
/// driver, well under an S3 part, and all a request holds at a time.
const BLOCK: usize = 1024 * 1024;

/// The algorithm chunks are hashed with unless the client asks for
/// another (see the module comment).
const CHUNKED: Algorithm = Algorithm::Sha256;

/// An upload's id: UUID text, as distribution writes them. Anything else
/// is an unknown upload, so the id is safe as a path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id (a version 4 UUID).
    pub fn random() -> Self {
        Self::random_for(CHUNKED)
    }

    /// A fresh random id of an upload hashed with `algorithm`: a version 4
    /// UUID for sha256 (as distribution's), a version 8 UUID (RFC 9562's
    /// custom one, random bits otherwise) for sha512.
    pub fn random_for(algorithm: Algorithm) -> Self {
        let version = match algorithm {
            Algorithm::Sha256 => 0x40,
            Algorithm::Sha512 => 0x80,
        };
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | version;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        Self(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ))
    }

    /// The id of a request path; [`Error::UploadUnknown`] when it cannot
    /// be one of ours or distribution's.
    pub fn parse(text: &str) -> Result<Self> {
        let groups: Vec<&str> = text.split('-').collect();
        let well_formed = groups.len() == 5
            && groups
                .iter()
                .zip([8, 4, 4, 4, 12])
                .all(|(g, len)| g.len() == len)
            && text
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'));
        if well_formed {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::UploadUnknown)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The algorithm the upload is hashed with, from the UUID's version
    /// (see [`UploadId::random_for`]); distribution's ids are version 4.
    pub fn algorithm(&self) -> Algorithm {
        if self.0.as_bytes().get(14) == Some(&b'8') {
            Algorithm::Sha512
        } else {
            CHUNKED
        }
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The uploads a request of this process is writing to right now.
///
/// Two requests writing one upload at once would each resume from the same
/// offset and hash state and interleave their bytes: the data would then
/// differ from the hash that vouches for it. One writer at a time, and a
/// second request is refused at once rather than held for as long as the
/// first one's body takes.
static BUSY: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// The right to write one upload, given back when dropped.
struct Busy(String);

impl Busy {
    fn take(name: &Name, id: &UploadId) -> Result<Self> {
        let key = format!("{name}/{id}");
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(key.clone()) {
            return Err(Error::UploadInvalid(
                "another request is writing to this upload; send its chunks one after another"
                    .into(),
            ));
        }
        Ok(Busy(key))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// What a request says about the bytes it brings, from `Content-Range`
/// and `Content-Length`. Both optional: a streamed PATCH has neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chunk {
    /// Where the bytes start in the blob; must be where the upload stands.
    pub start: Option<u64>,
    /// How many bytes the body holds.
    pub length: Option<u64>,
}

/// One upload of one repository.
pub struct Upload<'a> {
    storage: &'a dyn Storage,
    name: &'a Name,
    id: UploadId,
}

impl<'a> Upload<'a> {
    /// Starts a new upload in repository `name`.
    pub async fn start(storage: &'a dyn Storage, name: &'a Name) -> Result<Upload<'a>> {
        Self::start_hashing(storage, name, CHUNKED).await
    }

    /// Starts a new upload whose bytes are hashed with `algorithm`.
    pub async fn start_hashing(
        storage: &'a dyn Storage,
        name: &'a Name,
        algorithm: Algorithm,
    ) -> Result<Upload<'a>> {
        let id = UploadId::random_for(algorithm);
        let upload = Upload { storage, name, id };
        storage
            .put(
                &upload.path(layout::upload_started_at),
                Bytes::from(rfc3339(SystemTime::now())),
            )
            .await?;
        Ok(upload)
    }

    /// An upload in progress; [`Error::UploadUnknown`] when there is none
    /// with that id in that repository.
    pub async fn open(
        storage: &'a dyn Storage,
        name: &'a Name,
        id: UploadId,
    ) -> Result<Upload<'a>> {
        let upload = Upload { storage, name, id };
        if !storage
            .exists(&upload.path(layout::upload_started_at))
            .await?
        {
            return Err(Error::UploadUnknown);
        }
        Ok(upload)
    }

    pub fn id(&self) -> &UploadId {
        &self.id
    }

    fn path(&self, f: fn(&str, &str) -> String) -> String {
        f(self.name.as_str(), self.id.as_str())
    }

    fn data(&self) -> String {
        self.path(layout::upload_data)
    }

    fn state_path(&self, algorithm: Algorithm, offset: u64) -> String {
        layout::upload_hash_state(
            self.name.as_str(),
            self.id.as_str(),
            algorithm.as_str(),
            offset,
        )
    }

    /// The offsets hash states were saved at, in ascending order.
    async fn saved(&self) -> Result<Vec<u64>> {
        let folder = layout::upload_hash_states(
            self.name.as_str(),
            self.id.as_str(),
            self.id.algorithm().as_str(),
        );
        match self.storage.list(&folder).await {
            Ok(names) => {
                let mut offsets: Vec<u64> = names.iter().filter_map(|n| n.parse().ok()).collect();
                offsets.sort_unstable();
                Ok(offsets)
            }
            Err(StorageError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The acknowledged size: the offset of the newest hash state, 0 before
    /// the first chunk.
    pub async fn offset(&self) -> Result<u64> {
        Ok(self.saved().await?.last().copied().unwrap_or(0))
    }

    /// A writer at the acknowledged `offset` and the hash of the bytes
    /// before it.
    async fn resume(&self, offset: u64) -> Result<(Box<dyn FileWriter>, Hasher)> {
        if offset == 0 {
            let writer = self.storage.writer(&self.data(), None).await?;
            return Ok((writer, self.id.algorithm().hasher()));
        }
        let writer = self
            .storage
            .writer(&self.data(), Some(offset))
            .await
            .or_not_found(|| Error::UploadUnknown)?;
        let back = writer.size();
        if back < offset {
            // S3 cannot cut a part it sent past the acknowledged offset (a
            // crash between a close and the save of its hash state): the
            // upload goes back to where the writer can continue, if a hash
            // state was saved there, and the client resends from there.
            drop(writer);
            let saved = self.saved().await?;
            if back > 0 && !saved.contains(&back) {
                log::warn!(
                    "upload {} of {}: the data can resume at {back}, no hash state can",
                    self.id,
                    self.name
                );
                return Err(Error::UploadUnknown);
            }
            // Newest first: a crash midway still leaves the newest state
            // at an offset the data holds.
            for later in saved.iter().rev().filter(|&&o| o > back) {
                match self
                    .storage
                    .remove(&self.state_path(self.id.algorithm(), *later))
                    .await
                {
                    Ok(()) | Err(StorageError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Err(Error::RangeNotSatisfiable { size: back });
        }
        let state = self
            .storage
            .get(&self.state_path(self.id.algorithm(), offset))
            .await
            .or_not_found(|| Error::UploadUnknown)?;
        let Some(hasher) = Hasher::restore(self.id.algorithm(), &state) else {
            // Another implementation's state (distribution writes Go's):
            // the upload cannot go on here, the client starts again.
            log::warn!(
                "upload {} of {}: hash state at {offset} is not ours",
                self.id,
                self.name
            );
            return Err(Error::UploadUnknown);
        };
        Ok((writer, hasher))
    }

    /// Appends a body (a chunked PATCH with its `Content-Range`, or a
    /// streamed one without) and returns the new acknowledged size.
    pub async fn append(&self, chunk: Chunk, body: ByteStream) -> Result<u64> {
        let _busy = Busy::take(self.name, &self.id)?;
        let offset = self.offset().await?;
        check_start(chunk, offset)?;
        let (mut writer, mut hasher) = self.resume(offset).await?;
        // On any failure below the writer is dropped unclosed: the bytes
        // of this request are not acknowledged and a later resume drops
        // them.
        feed(&mut *writer, &mut hasher, chunk, body).await?;
        let size = writer.close().await?;
        // Every state is kept, as distribution keeps them: on S3 a resume
        // may have to go back to an earlier one (see `resume`).
        if size != offset {
            self.storage
                .put(
                    &self.state_path(self.id.algorithm(), size),
                    Bytes::from(hasher.save()),
                )
                .await?;
        }
        Ok(size)
    }

    /// Ends the upload with its last bytes (possibly none): the content
    /// must have `digest`. The blob is then stored (unless it already was:
    /// the stored bytes stay), linked into the repository, and the upload
    /// is gone. On a digest or size mismatch the upload is removed too, as
    /// distribution does: the client starts again.
    pub async fn complete(self, digest: &Digest, chunk: Chunk, body: ByteStream) -> Result<u64> {
        self.complete_telling(digest, chunk, body, None).await
    }

    /// [`Upload::complete`], telling `checked` as soon as the content is
    /// known to have `digest`, before it is made durable and linked.
    async fn complete_telling(
        self,
        digest: &Digest,
        chunk: Chunk,
        body: ByteStream,
        checked: Option<oneshot::Sender<()>>,
    ) -> Result<u64> {
        let _busy = Busy::take(self.name, &self.id)?;
        let offset = self.offset().await?;
        check_start(chunk, offset)?;
        let (mut writer, mut hasher) = if offset == 0 {
            // The whole blob comes in this request: hash it as named.
            let writer = self.storage.writer(&self.data(), None).await?;
            (writer, digest.algorithm().hasher())
        } else {
            self.resume(offset).await?
        };
        let fed = feed(&mut *writer, &mut hasher, chunk, body).await;
        if let Err(e) = fed {
            if matches!(e, Error::SizeInvalid(_) | Error::TooLarge { .. }) {
                self.drop_writer(writer).await;
                self.remove().await?;
            }
            return Err(e);
        }
        let size = writer.size();
        let blob = links::blob_data(digest);
        if hasher.algorithm() == digest.algorithm() {
            let got = hasher.finish();
            if &got != digest {
                self.drop_writer(writer).await;
                return Err(self.mismatch(got, digest).await);
            }
            if let Some(checked) = checked {
                let _ = checked.send(());
            }
            if self.storage.exists(&blob).await? {
                // Someone stored these bytes first: they are the same bytes.
                self.drop_writer(writer).await;
            } else {
                writer.commit().await?;
                self.storage.rename(&self.data(), &blob).await?;
            }
        } else {
            // Hashed as the other algorithm: the bytes, now whole at the
            // upload's `data`, are read back once to be verified.
            writer.commit().await?;
            let got = self.rehash(digest.algorithm()).await?;
            if &got != digest {
                return Err(self.mismatch(got, digest).await);
            }
            if let Some(checked) = checked {
                let _ = checked.send(());
            }
            if !self.storage.exists(&blob).await? {
                self.storage.rename(&self.data(), &blob).await?;
            }
        }
        blobs::link(self.storage, self.name, digest).await?;
        self.remove().await?;
        Ok(size)
    }

    /// The content has another digest than the client named: the upload
    /// goes (its writer already ended), and the client starts again.
    async fn mismatch(&self, got: Digest, digest: &Digest) -> Error {
        if let Err(e) = self.remove().await {
            return e;
        }
        Error::DigestInvalid(format!("the content has digest {got}, not {digest}"))
    }

    /// The digest of the upload's committed `data`, read back block by
    /// block.
    async fn rehash(&self, algorithm: Algorithm) -> Result<Digest> {
        let mut hasher = algorithm.hasher();
        let mut blocks = Blocks::new(self.storage.get_stream(&self.data(), None).await?);
        while let Some(block) = blocks.next(BLOCK).await? {
            hasher.update(&block);
        }
        Ok(hasher.finish())
    }

    /// Throws the upload away, bytes and writer state.
    pub async fn cancel(self) -> Result<()> {
        let _busy = Busy::take(self.name, &self.id)?;
        let offset = self.offset().await?;
        match self.storage.writer(&self.data(), Some(offset)).await {
            Ok(writer) => self.drop_writer(writer).await,
            Err(StorageError::NotFound(_) | StorageError::InvalidRange { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.remove().await
    }

    /// Cancels a writer whose bytes we no longer want; a failure only
    /// leaves garbage in a folder about to be removed.
    async fn drop_writer(&self, writer: Box<dyn FileWriter>) {
        if let Err(e) = writer.cancel().await {
            log::warn!(
                "upload {} of {}: cancelling the writer: {e}",
                self.id,
                self.name
            );
        }
    }

    async fn remove(&self) -> Result<()> {
        match self.storage.remove(&self.path(layout::upload)).await {
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Stores a whole blob sent in one request with its digest (the
/// monolithic `POST ?digest=`), through the same path as an upload; no
/// session is left behind whatever happens. `checked` hears as soon as the
/// bytes are known to be the blob, before they are durable (the
/// pull-through cache hands a client the last block then).
pub async fn push(
    storage: &dyn Storage,
    name: &Name,
    digest: &Digest,
    length: Option<u64>,
    body: ByteStream,
    checked: Option<oneshot::Sender<()>>,
) -> Result<u64> {
    let upload = Upload::start(storage, name).await?;
    let folder = upload.path(layout::upload);
    let chunk = Chunk {
        start: None,
        length,
    };
    let result = upload.complete_telling(digest, chunk, body, checked).await;
    if result.is_err() {
        match storage.remove(&folder).await {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => log::warn!("monolithic upload into {name}: removing {folder}: {e}"),
        }
    }
    result
}

/// A chunk must start where the upload stands.
fn check_start(chunk: Chunk, offset: u64) -> Result<()> {
    match chunk.start {
        Some(start) if start != offset => Err(Error::RangeNotSatisfiable { size: offset }),
        _ => Ok(()),
    }
}

/// Streams `body` through the hash into the writer, block by block, within
/// [`MAX_BLOB`] and the length the request announced.
async fn feed(
    writer: &mut dyn FileWriter,
    hasher: &mut Hasher,
    chunk: Chunk,
    body: ByteStream,
) -> Result<()> {
    if let Some(length) = chunk.length {
        if writer.size().saturating_add(length) > MAX_BLOB {
            return Err(Error::TooLarge { limit: MAX_BLOB });
        }
    }
    let mut blocks = Blocks::new(body);
    while let Some(block) = blocks.next(BLOCK).await? {
        if writer.size() + block.len() as u64 > MAX_BLOB {
            return Err(Error::TooLarge { limit: MAX_BLOB });
        }
        if chunk.length.is_some_and(|l| blocks.total() > l) {
            break;
        }
        hasher.update(&block);
        writer.write(block.freeze()).await?;
    }
    match chunk.length {
        Some(length) if length != blocks.total() => Err(Error::SizeInvalid(format!(
            "the request announced {length} bytes and brought {} or more",
            blocks.total()
        ))),
        _ => Ok(()),
    }
}

/// `2006-01-02T15:04:05Z`: RFC 3339 in UTC, as distribution writes
/// `startedat`.
fn rfc3339(time: SystemTime) -> String {
    // A clock before 1970 or past 9999 is no time to date an upload by.
    let time = jiff::Timestamp::try_from(time).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStorage;
    use crate::storage::memory::MemoryStorage;

    /// Each case runs on the memory driver and on local disk, whose
    /// writers differ (the local one writes in place).
    async fn on_each_driver<F>(case: F)
    where
        F: AsyncFn(&dyn Storage),
    {
        case(&MemoryStorage::new()).await;
        let dir = tempfile::tempdir().unwrap();
        case(&LocalStorage::new(dir.path().to_str().unwrap()).unwrap()).await;
    }

    fn body(parts: &[&[u8]]) -> ByteStream {
        let items: Vec<std::io::Result<Bytes>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        Box::pin(futures_util::stream::iter(items))
    }

    fn repo(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    fn at(start: u64, length: u64) -> Chunk {
        Chunk {
            start: Some(start),
            length: Some(length),
        }
    }

    fn sha256(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    async fn reopen<'a>(
        storage: &'a dyn Storage,
        name: &'a Name,
        id: &UploadId,
    ) -> Result<Upload<'a>> {
        Upload::open(storage, name, id.clone()).await
    }

    #[actix_web::test]
    async fn one_request_at_a_time_writes_an_upload() {
        let storage = MemoryStorage::new();
        let name = repo("library/x");
        let upload = Upload::start(&storage, &name).await.unwrap();
        // The first request's body stops halfway until `go` fires: the
        // second arrives while the first is still writing.
        let go = std::rc::Rc::new(tokio::sync::Notify::new());
        let wait = go.clone();
        let slow: ByteStream = Box::pin(futures_util::stream::unfold(0, move |step| {
            let wait = wait.clone();
            async move {
                match step {
                    0 => Some((Ok(Bytes::from_static(b"first ")), 1)),
                    1 => {
                        wait.notified().await;
                        Some((Ok(Bytes::from_static(b"half")), 2))
                    }
                    _ => None,
                }
            }
        }));
        let first = upload.append(Chunk::default(), slow);
        let second = async {
            tokio::task::yield_now().await;
            let refused = upload.append(Chunk::default(), body(&[b"other"])).await;
            go.notify_one();
            refused
        };
        let (first, second) = tokio::join!(first, second);
        assert!(matches!(second, Err(Error::UploadInvalid(_))), "{second:?}");
        assert_eq!(first.unwrap(), 10);
        // Once the first is done, the next request goes through.
        assert_eq!(
            upload
                .append(Chunk::default(), body(&[b"!"]))
                .await
                .unwrap(),
            11
        );
        let digest = Digest::of(Algorithm::Sha256, b"first half!");
        assert_eq!(
            upload
                .complete(&digest, Chunk::default(), body(&[]))
                .await
                .unwrap(),
            11
        );
        assert_eq!(
            &storage.get(&links::blob_data(&digest)).await.unwrap()[..],
            b"first half!"
        );
    }

    #[actix_web::test]
    async fn chunks_in_order_then_a_stream_make_the_blob() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("library/x");
            let upload = Upload::start(storage, &name).await.unwrap();
            let id = upload.id().clone();
            let started = storage
                .get(&upload.path(layout::upload_started_at))
                .await
                .unwrap();
            assert_eq!(started.len(), "2006-01-02T15:04:05Z".len());
            assert_eq!(upload.offset().await.unwrap(), 0);

            assert_eq!(
                upload
                    .append(at(0, 5), body(&[b"he", b"llo"]))
                    .await
                    .unwrap(),
                5
            );
            for start in [0, 3, 6] {
                assert!(matches!(
                    upload.append(at(start, 5), body(&[b"hello"])).await,
                    Err(Error::RangeNotSatisfiable { size: 5 })
                ));
            }
            // Streamed: no Content-Range, no length.
            let upload = reopen(storage, &name, &id).await.unwrap();
            let streamed = upload.append(Chunk::default(), body(&[b" wor", b"ld"]));
            assert_eq!(streamed.await.unwrap(), 11);
            assert_eq!(upload.offset().await.unwrap(), 11);
            // Every hash state is kept; the newest is the acknowledged size.
            let states = layout::upload_hash_states(name.as_str(), id.as_str(), "sha256");
            assert_eq!(storage.list(&states).await.unwrap(), ["11", "5"]);

            let digest = sha256(b"hello world");
            let size = upload.complete(&digest, Chunk::default(), body(&[])).await;
            assert_eq!(size.unwrap(), 11);
            let stored = storage.get(&links::blob_data(&digest)).await.unwrap();
            assert_eq!(&stored[..], b"hello world");
            assert_eq!(blobs::stat(storage, &name, &digest).await.unwrap().size, 11);
            assert!(matches!(
                reopen(storage, &name, &id).await,
                Err(Error::UploadUnknown)
            ));
        })
        .await;
    }

    #[actix_web::test]
    async fn the_last_chunk_may_come_with_the_put() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("a");
            let upload = Upload::start(storage, &name).await.unwrap();
            let id = upload.id().clone();
            upload.append(at(0, 3), body(&[b"abc"])).await.unwrap();
            let digest = sha256(b"abcdef");
            assert!(matches!(
                upload.complete(&digest, at(4, 3), body(&[b"def"])).await,
                Err(Error::RangeNotSatisfiable { size: 3 })
            ));
            let upload = reopen(storage, &name, &id).await.unwrap();
            upload
                .complete(&digest, at(3, 3), body(&[b"def"]))
                .await
                .unwrap();
            assert!(links::has_layer(storage, &name, &digest).await.unwrap());
        })
        .await;
    }

    #[actix_web::test]
    async fn a_wrong_digest_or_size_ends_the_upload() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("a");
            let upload = Upload::start(storage, &name).await.unwrap();
            let id = upload.id().clone();
            upload.append(at(0, 3), body(&[b"abc"])).await.unwrap();
            let wrong = sha256(b"abd");
            assert!(matches!(
                upload.complete(&wrong, Chunk::default(), body(&[])).await,
                Err(Error::DigestInvalid(_))
            ));
            assert!(!storage.exists(&links::blob_data(&wrong)).await.unwrap());
            assert!(matches!(
                reopen(storage, &name, &id).await,
                Err(Error::UploadUnknown)
            ));

            // A PATCH whose body is not what it announced is not acknowledged.
            let upload = Upload::start(storage, &name).await.unwrap();
            assert!(matches!(
                upload.append(at(0, 4), body(&[b"abc"])).await,
                Err(Error::SizeInvalid(_))
            ));
            assert_eq!(upload.offset().await.unwrap(), 0);
            let too_big = Chunk {
                start: None,
                length: Some(MAX_BLOB + 1),
            };
            assert!(matches!(
                upload.append(too_big, body(&[b"abc"])).await,
                Err(Error::TooLarge { .. })
            ));
        })
        .await;
    }

    #[actix_web::test]
    async fn sha512_blobs_come_whole() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("a");
            let digest = Digest::of(Algorithm::Sha512, b"whole");
            let size = push(
                storage,
                &name,
                &digest,
                Some(5),
                body(&[b"who", b"le"]),
                None,
            )
            .await;
            assert_eq!(size.unwrap(), 5);
            assert_eq!(blobs::stat(storage, &name, &digest).await.unwrap().size, 5);
            assert!(links::blob_data(&digest).contains("/blobs/sha512/"));

            // A monolithic push that fails leaves no upload behind.
            let bad = push(storage, &name, &digest, Some(9), body(&[b"whole"]), None).await;
            assert!(matches!(bad, Err(Error::SizeInvalid(_))));
            let left = storage.list(&layout::uploads(name.as_str())).await;
            assert!(left.as_ref().map_or(true, |l| l.is_empty()), "{left:?}");
        })
        .await;
    }

    #[actix_web::test]
    async fn a_push_tells_when_its_bytes_check_out() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("a");
            // Several blocks, cut at odd places so that blocks straddle the
            // body's chunks.
            let content: Vec<u8> = (0..(3 * BLOCK + 12_345)).map(|i| (i % 251) as u8).collect();
            let chunks: Vec<&[u8]> = content.chunks(300_007).collect();
            let digest = Digest::of(Algorithm::Sha256, &content);
            let (checked, heard) = oneshot::channel();
            let size = push(storage, &name, &digest, None, body(&chunks), Some(checked)).await;
            assert_eq!(size.unwrap(), content.len() as u64);
            assert!(heard.await.is_ok(), "a blob that checks out is told");
            let stored = storage.get(&links::blob_data(&digest)).await.unwrap();
            assert!(stored[..] == content[..]);

            // Not the blob named: never told, nothing kept.
            let other = Digest::of(Algorithm::Sha256, b"something else");
            let (checked, heard) = oneshot::channel();
            let bad = push(storage, &name, &other, None, body(&chunks), Some(checked)).await;
            assert!(matches!(bad, Err(Error::DigestInvalid(_))), "{bad:?}");
            assert!(heard.await.is_err());
            assert!(!storage.exists(&links::blob_data(&other)).await.unwrap());
        })
        .await;
    }

    #[actix_web::test]
    async fn an_upload_hashed_as_sha256_is_read_back_for_a_sha512_digest() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("a");
            let upload = Upload::start(storage, &name).await.unwrap();
            assert_eq!(upload.id().algorithm(), Algorithm::Sha256);
            upload.append(at(0, 5), body(&[b"chunk"])).await.unwrap();
            let chunked = Digest::of(Algorithm::Sha512, b"chunked");
            let size = upload.complete(&chunked, at(5, 2), body(&[b"ed"])).await;
            assert_eq!(size.unwrap(), 7);
            let stored = storage.get(&links::blob_data(&chunked)).await.unwrap();
            assert_eq!(&stored[..], b"chunked");
            assert!(links::has_layer(storage, &name, &chunked).await.unwrap());

            // A wrong one read back ends the upload, and stores nothing.
            let upload = Upload::start(storage, &name).await.unwrap();
            let id = upload.id().clone();
            upload.append(at(0, 5), body(&[b"chunk"])).await.unwrap();
            let wrong = Digest::of(Algorithm::Sha512, b"other");
            assert!(matches!(
                upload.complete(&wrong, Chunk::default(), body(&[])).await,
                Err(Error::DigestInvalid(_))
            ));
            assert!(!storage.exists(&links::blob_data(&wrong)).await.unwrap());
            assert!(matches!(
                reopen(storage, &name, &id).await,
                Err(Error::UploadUnknown)
            ));
        })
        .await;
    }

    #[actix_web::test]
    async fn an_upload_started_as_sha512_is_hashed_so_across_requests() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("a");
            let upload = Upload::start_hashing(storage, &name, Algorithm::Sha512)
                .await
                .unwrap();
            let id = upload.id().clone();
            assert_eq!(id.algorithm(), Algorithm::Sha512);
            assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
            upload.append(at(0, 3), body(&[b"abc"])).await.unwrap();
            // Another request (or instance) knows the algorithm by the id.
            let upload = reopen(storage, &name, &id).await.unwrap();
            upload
                .append(Chunk::default(), body(&[b"de"]))
                .await
                .unwrap();
            let states = layout::upload_hash_states(name.as_str(), id.as_str(), "sha512");
            assert_eq!(storage.list(&states).await.unwrap(), ["3", "5"]);
            let digest = Digest::of(Algorithm::Sha512, b"abcdef");
            let upload = reopen(storage, &name, &id).await.unwrap();
            upload
                .complete(&digest, at(5, 1), body(&[b"f"]))
                .await
                .unwrap();
            let stored = storage.get(&links::blob_data(&digest)).await.unwrap();
            assert_eq!(&stored[..], b"abcdef");

            // Finished with sha256 after all: read back, verified as that.
            let upload = Upload::start_hashing(storage, &name, Algorithm::Sha512)
                .await
                .unwrap();
            upload.append(at(0, 3), body(&[b"xyz"])).await.unwrap();
            let digest = sha256(b"xyz");
            upload
                .complete(&digest, Chunk::default(), body(&[]))
                .await
                .unwrap();
            assert!(links::has_layer(storage, &name, &digest).await.unwrap());
        })
        .await;
    }

    #[actix_web::test]
    async fn after_a_crash_the_upload_resumes_at_the_newest_hash_state() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("a");
            let upload = Upload::start(storage, &name).await.unwrap();
            let id = upload.id().clone();
            upload.append(at(0, 3), body(&[b"abc"])).await.unwrap();
            let data = layout::upload_data(name.as_str(), id.as_str());
            // A request that died after the writer closed, before its hash
            // state was saved: not acknowledged.
            let mut w = storage.writer(&data, Some(3)).await.unwrap();
            w.write(Bytes::from_static(b"XYZ")).await.unwrap();
            w.close().await.unwrap();
            // And one that died mid-body.
            let mut w = storage.writer(&data, Some(3)).await.unwrap();
            w.write(Bytes::from_static(b"QQ")).await.unwrap();
            drop(w);

            let upload = reopen(storage, &name, &id).await.unwrap();
            assert_eq!(upload.offset().await.unwrap(), 3);
            upload.append(at(3, 3), body(&[b"def"])).await.unwrap();
            let digest = sha256(b"abcdef");
            upload
                .complete(&digest, Chunk::default(), body(&[]))
                .await
                .unwrap();
            let stored = storage.get(&links::blob_data(&digest)).await.unwrap();
            assert_eq!(&stored[..], b"abcdef");
        })
        .await;
    }

    #[actix_web::test]
    async fn a_blob_stored_before_keeps_its_bytes() {
        on_each_driver(async |storage: &dyn Storage| {
            let (a, b) = (repo("a"), repo("b"));
            let digest = sha256(b"same");
            push(storage, &a, &digest, None, body(&[b"same"]), None)
                .await
                .unwrap();
            let before = storage.stat(&links::blob_data(&digest)).await.unwrap();
            push(storage, &b, &digest, None, body(&[b"sa", b"me"]), None)
                .await
                .unwrap();
            let after = storage.stat(&links::blob_data(&digest)).await.unwrap();
            assert_eq!(before, after);
            assert!(links::has_layer(storage, &b, &digest).await.unwrap());
        })
        .await;
    }

    #[actix_web::test]
    async fn a_cancelled_upload_is_gone() {
        on_each_driver(async |storage: &dyn Storage| {
            let name = repo("a");
            let upload = Upload::start(storage, &name).await.unwrap();
            let id = upload.id().clone();
            upload
                .append(Chunk::default(), body(&[b"abc"]))
                .await
                .unwrap();
            upload.cancel().await.unwrap();
            assert!(matches!(
                reopen(storage, &name, &id).await,
                Err(Error::UploadUnknown)
            ));
            let folder = layout::upload(name.as_str(), id.as_str());
            assert!(storage.list(&folder).await.is_err());
            // A cancelled upload with no bytes yet, too.
            let upload = Upload::start(storage, &name).await.unwrap();
            upload.cancel().await.unwrap();
        })
        .await;
    }

    /// The memory driver, resuming as S3 does after a close past the
    /// offset asked: at the start of the part that holds it.
    struct Parts {
        inner: MemoryStorage,
        part: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait(?Send)]
    impl Storage for Parts {
        fn name(&self) -> &'static str {
            "parts"
        }
        async fn get(&self, path: &str) -> crate::storage::Result<Bytes> {
            self.inner.get(path).await
        }
        async fn put(&self, path: &str, data: Bytes) -> crate::storage::Result<()> {
            self.inner.put(path, data).await
        }
        async fn lock(&self, path: &str) -> crate::storage::Result<crate::storage::Lock> {
            self.inner.lock(path).await
        }
        async fn put_stream(&self, path: &str, body: ByteStream) -> crate::storage::Result<u64> {
            self.inner.put_stream(path, body).await
        }
        async fn get_stream(
            &self,
            path: &str,
            range: Option<crate::storage::ByteRange>,
        ) -> crate::storage::Result<ByteStream> {
            self.inner.get_stream(path, range).await
        }
        async fn size(&self, path: &str) -> crate::storage::Result<u64> {
            self.inner.size(path).await
        }
        async fn exists(&self, path: &str) -> crate::storage::Result<bool> {
            self.inner.exists(path).await
        }
        async fn list(&self, path: &str) -> crate::storage::Result<Vec<String>> {
            self.inner.list(path).await
        }
        async fn remove(&self, path: &str) -> crate::storage::Result<()> {
            self.inner.remove(path).await
        }
        async fn writer(
            &self,
            path: &str,
            resume: Option<u64>,
        ) -> crate::storage::Result<Box<dyn FileWriter>> {
            let part = self.part.load(std::sync::atomic::Ordering::Relaxed);
            let resume = resume.map(|n| n.checked_div(part).map_or(n, |parts| parts * part));
            self.inner.writer(path, resume).await
        }
        async fn rename(&self, from: &str, to: &str) -> crate::storage::Result<()> {
            self.inner.rename(from, to).await
        }
        async fn stat(&self, path: &str) -> crate::storage::Result<crate::storage::FileInfo> {
            self.inner.stat(path).await
        }
    }

    #[actix_web::test]
    async fn a_resume_that_cannot_cut_a_part_goes_back_to_a_saved_state() {
        let storage = Parts {
            inner: MemoryStorage::new(),
            part: 0.into(),
        };
        let name = repo("a");
        let upload = Upload::start(&storage, &name).await.unwrap();
        let id = upload.id().clone();
        upload.append(at(0, 4), body(&[b"abcd"])).await.unwrap();
        upload.append(at(4, 3), body(&[b"efg"])).await.unwrap();
        // Bytes past 7 were closed into a part, then the registry died.
        storage.part.store(4, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            upload.append(at(7, 3), body(&[b"hij"])).await,
            Err(Error::RangeNotSatisfiable { size: 4 })
        ));
        assert_eq!(upload.offset().await.unwrap(), 4);
        storage.part.store(0, std::sync::atomic::Ordering::Relaxed);
        let upload = reopen(&storage, &name, &id).await.unwrap();
        upload.append(at(4, 6), body(&[b"efghij"])).await.unwrap();
        let digest = sha256(b"abcdefghij");
        upload
            .complete(&digest, Chunk::default(), body(&[]))
            .await
            .unwrap();
        let stored = storage.get(&links::blob_data(&digest)).await.unwrap();
        assert_eq!(&stored[..], b"abcdefghij");

        // No hash state where the data can resume: the upload is unknown.
        let upload = Upload::start(&storage, &name).await.unwrap();
        upload.append(at(0, 4), body(&[b"abcd"])).await.unwrap();
        storage.part.store(3, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            upload.append(at(4, 1), body(&[b"e"])).await,
            Err(Error::UploadUnknown)
        ));
    }

    #[test]
    fn ids_are_uuids_and_nothing_else() {
        let id = UploadId::random();
        assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
        assert_eq!(&id.as_str()[14..15], "4");
        assert_ne!(UploadId::random(), id);
        for bad in [
            "",
            "..",
            "abc",
            "../../../../etc/passwd",
            "0123456789ABCDEF0123456789ABCDEF0123",
            "01234567-89ab-cdef-0123-456789abcdef/x",
            "01234567-89ab-cdef-0123-456789abcde.",
        ] {
            assert!(UploadId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(UploadId::parse("01234567-89ab-cdef-0123-456789abcdef").is_ok());
    }

    #[test]
    fn started_at_is_rfc3339_utc() {
        let at = |secs| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
