//! A v1 layer as a v2 blob: the digest of the stored bytes, the `diff_id`
//! of the tar inside them, their sizes and compression, and whether the
//! tar is empty. Computed in one pass over the bytes (while a push streams
//! in, or once from storage) and kept in the image's `_v2` file, so that no
//! pull ever reads a layer to learn its digests.
//!
//! Compression is told by the first bytes, never by what a client said:
//! docker 1.x pushed gzip, other v1 clients plain tars, some xz. v2 clients
//! read gzip and plain tars but not xz, so an xz layer is served as the
//! plain tar inside it (its digest is then its `diff_id`).

use std::io::{self, Write};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::names::digest::Digest;
use crate::names::ImageId;
use crate::storage::layout::legacy;
use crate::storage::{ByteStream, Storage, StorageError};

pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// How a stored layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Xz,
}

/// What the bridge knows of a stored layer (the `_v2` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// sha256 of the stored bytes.
    pub digest: String,
    /// Bytes stored.
    pub size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    pub compression: Compression,
    /// The tar holds no member (all its bytes are zero): no layer of the
    /// manifest, an `empty_layer` entry of the history.
    pub empty: bool,
}

impl LayerRecord {
    /// The digest, size and media type the layer is served under.
    pub fn served(&self) -> (Digest, u64, &'static str) {
        let (digest, size, media_type) = match self.compression {
            Compression::Gzip => (&self.digest, self.size, OCI_LAYER_GZIP),
            Compression::None => (&self.digest, self.size, OCI_LAYER_TAR),
            Compression::Xz => (&self.diff_id, self.uncompressed_size, OCI_LAYER_TAR),
        };
        let digest = Digest::parse(digest).unwrap_or_else(|_| {
            // Written by us from a sha256; a record edited by hand is
            // recomputed by `record` before it gets here.
            Digest::of(crate::names::digest::Algorithm::Sha256, b"")
        });
        (digest, size, media_type)
    }

    fn valid(&self) -> bool {
        Digest::parse(&self.digest).is_ok() && Digest::parse(&self.diff_id).is_ok()
    }
}

/// Why a layer has no v2 form.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("the layer of image {0} is not stored")]
    Missing(ImageId),
    #[error("the layer of image {id} cannot be read as a tar: {reason}")]
    Format { id: ImageId, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The uncompressed side: hashed, counted, and watched for a non-zero byte.
struct Tar {
    /// `None` for a plain tar: its digest is the stored bytes' own, which
    /// is computed anyway (hashing it twice would double a push's CPU).
    sha: Option<Sha256>,
    size: u64,
    nonzero: bool,
}

impl Write for Tar {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(sha) = &mut self.sha {
            sha.update(buf);
        }
        self.size += buf.len() as u64;
        if !self.nonzero {
            self.nonzero = buf.iter().any(|b| *b != 0);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    /// The first bytes, until there are enough to tell the compression.
    Undecided(Vec<u8>),
    Plain(Tar),
    Gzip(Box<flate2::write::MultiGzDecoder<Tar>>),
    Xz(Box<xz2::write::XzDecoder<Tar>>),
    Failed(String),
}

/// The longest magic number looked at (xz's).
const MAGIC_LEN: usize = 6;

/// Computes a [`LayerRecord`] from the stored bytes, fed in order.
pub struct Digester {
    sha: Sha256,
    size: u64,
    decoder: Decoder,
}

impl Default for Digester {
    fn default() -> Self {
        Self::new()
    }
}

fn tar() -> Tar {
    Tar {
        sha: Some(Sha256::new()),
        size: 0,
        nonzero: false,
    }
}

impl Digester {
    pub fn new() -> Self {
        Self {
            sha: Sha256::new(),
            size: 0,
            decoder: Decoder::Undecided(Vec::with_capacity(MAGIC_LEN)),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.size += bytes.len() as u64;
        let mut rest = bytes;
        if let Decoder::Undecided(head) = &mut self.decoder {
            let take = (MAGIC_LEN - head.len()).min(rest.len());
            head.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if head.len() < MAGIC_LEN {
                return;
            }
            let head = std::mem::take(head);
            self.decide(&head);
        }
        self.feed(rest);
    }

    fn decide(&mut self, head: &[u8]) {
        self.decoder = if head.starts_with(&[0x1f, 0x8b]) {
            Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(tar())))
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Decoder::Xz(Box::new(xz2::write::XzDecoder::new(tar())))
        } else if head.starts_with(b"BZh") {
            Decoder::Failed("bzip2 layers are not offered to v2 clients".into())
        } else {
            Decoder::Plain(Tar { sha: None, ..tar() })
        };
        self.feed(head);
    }

    fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let result = match &mut self.decoder {
            Decoder::Plain(tar) => tar.write_all(bytes),
            Decoder::Gzip(d) => d.write_all(bytes),
            Decoder::Xz(d) => d.write_all(bytes),
            Decoder::Undecided(_) | Decoder::Failed(_) => Ok(()),
        };
        if let Err(e) = result {
            self.decoder = Decoder::Failed(e.to_string());
        }
    }

    /// The record of the bytes fed, or why they are no tar a v2 client
    /// can take.
    pub fn finish(mut self) -> Result<LayerRecord, String> {
        if let Decoder::Undecided(head) = &mut self.decoder {
            let head = std::mem::take(head);
            self.decide(&head);
        }
        let (compression, tar) = match self.decoder {
            Decoder::Plain(tar) => (Compression::None, tar),
            Decoder::Gzip(d) => (Compression::Gzip, d.finish().map_err(|e| e.to_string())?),
            Decoder::Xz(mut d) => (Compression::Xz, d.finish().map_err(|e| e.to_string())?),
            Decoder::Failed(reason) => return Err(reason),
            Decoder::Undecided(_) => unreachable!("decided above"),
        };
        let digest = format!("sha256:{}", hex::encode(self.sha.finalize()));
        let diff_id = match tar.sha {
            Some(sha) => format!("sha256:{}", hex::encode(sha.finalize())),
            None => digest.clone(),
        };
        Ok(LayerRecord {
            digest,
            size: self.size,
            diff_id,
            uncompressed_size: tar.size,
            compression,
            empty: !tar.nonzero,
        })
    }
}

/// What a body streaming in (a v1 layer push) tells of its layer,
/// computed on a thread of the blocking pool while the body goes on to
/// storage: the push's own worker only hands each chunk over (it waits,
/// never blocks, when the digester lags by more than a few chunks).
pub struct Alongside {
    worker: tokio::task::JoinHandle<Result<LayerRecord, String>>,
}

impl Alongside {
    /// Wraps `body`; the record comes from [`Alongside::record`] once the
    /// wrapped stream has been read to its end and dropped.
    pub fn new(body: ByteStream) -> (ByteStream, Alongside) {
        /// Chunks the digester may lag behind by.
        const LAG: usize = 32;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(LAG);
        let worker = actix_web::rt::task::spawn_blocking(move || {
            let mut digester = Digester::new();
            while let Some(chunk) = rx.blocking_recv() {
                digester.update(&chunk);
            }
            digester.finish()
        });
        // The sender goes at the body's end, so the digester finishes then,
        // however long the consumer keeps the stream.
        let stream: ByteStream = Box::pin(futures_util::stream::unfold(
            (body, Some(tx)),
            |(mut body, mut tx)| async move {
                let chunk = body.next().await;
                match (&chunk, &tx) {
                    (Some(Ok(bytes)), Some(sender)) => {
                        // The digester gone (it cannot be) only costs the
                        // record: the push goes on.
                        let _ = sender.send(bytes.clone()).await;
                    }
                    (None, _) => tx = None,
                    _ => {}
                }
                chunk.map(|chunk| (chunk, (body, tx)))
            },
        ));
        (stream, Alongside { worker })
    }

    /// The record of every byte the stream passed on, or why there is none.
    pub async fn record(self) -> Result<LayerRecord, String> {
        self.worker.await.map_err(|e| e.to_string())?
    }
}

/// Keeps the record of an image's layer.
pub async fn save(
    storage: &dyn Storage,
    id: &ImageId,
    record: &LayerRecord,
) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(record).unwrap_or_default();
    storage
        .put(&legacy::image_v2_layer(id), Bytes::from(bytes))
        .await
}

/// The record of an image's layer: the one kept, or computed now (and
/// kept) when there is none or the layer's size says it is another's.
pub async fn record(storage: &dyn Storage, id: &ImageId) -> Result<LayerRecord, LayerError> {
    let size = match storage.size(&legacy::image_layer(id)).await {
        Ok(size) => size,
        Err(StorageError::NotFound(_)) => return Err(LayerError::Missing(id.clone())),
        Err(e) => return Err(e.into()),
    };
    if let Some(kept) = kept(storage, id).await? {
        if kept.size == size {
            return Ok(kept);
        }
        log::info!("layer of {id} changed since its digests were recorded: recomputing");
    }
    let record = compute(storage, id).await?;
    save(storage, id, &record).await?;
    Ok(record)
}

/// The record kept for an image, if there is a readable one.
pub async fn kept(
    storage: &dyn Storage,
    id: &ImageId,
) -> Result<Option<LayerRecord>, StorageError> {
    match storage.get(&legacy::image_v2_layer(id)).await {
        Ok(bytes) => Ok(serde_json::from_slice::<LayerRecord>(&bytes)
            .ok()
            .filter(LayerRecord::valid)),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the layer once, hashing and decompressing on the blocking pool
/// (a block at a time, so the worker thread keeps serving).
async fn compute(storage: &dyn Storage, id: &ImageId) -> Result<LayerRecord, LayerError> {
    let mut stream = match storage.get_stream(&legacy::image_layer(id), None).await {
        Ok(stream) => stream,
        Err(StorageError::NotFound(_)) => return Err(LayerError::Missing(id.clone())),
        Err(e) => return Err(e.into()),
    };
    let mut digester = Digester::new();
    let path = legacy::image_layer(id);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| StorageError::Io {
            path: path.clone(),
            source,
        })?;
        digester = actix_web::rt::task::spawn_blocking(move || {
            digester.update(&chunk);
            digester
        })
        .await
        .map_err(|e| StorageError::Io {
            path: path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
    }
    let started = std::time::Instant::now();
    let record = digester.finish().map_err(|reason| LayerError::Format {
        id: id.clone(),
        reason,
    })?;
    log::debug!(
        "digests of layer {id} recorded ({} bytes, {:?}) in {:?}",
        record.size,
        record.compression,
        started.elapsed()
    );
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn sha(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    fn digest_in_pieces(data: &[u8], piece: usize) -> LayerRecord {
        let mut d = Digester::new();
        for chunk in data.chunks(piece.max(1)) {
            d.update(chunk);
        }
        d.finish().unwrap()
    }

    #[test]
    fn plain_gzip_and_xz_give_the_same_diff_id() {
        let tar = tar_of(&[("etc/hello", b"hello\n"), ("bin/x", &[7u8; 5000])]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&tar).unwrap();
        let xz = xz.finish().unwrap();
        for (bytes, compression) in [
            (&tar, Compression::None),
            (&gz, Compression::Gzip),
            (&xz, Compression::Xz),
        ] {
            // Pieces smaller than the magic number, and one piece.
            for piece in [1, 3, 4096, bytes.len()] {
                let r = digest_in_pieces(bytes, piece);
                assert_eq!(r.compression, compression);
                assert_eq!(r.digest, sha(bytes));
                assert_eq!(r.size, bytes.len() as u64);
                assert_eq!(r.diff_id, sha(&tar));
                assert_eq!(r.uncompressed_size, tar.len() as u64);
                assert!(!r.empty);
            }
        }
        // xz is served as the tar inside it.
        let r = digest_in_pieces(&xz, 100);
        let (digest, size, media_type) = r.served();
        assert_eq!(
            (digest.to_string(), size, media_type),
            (sha(&tar), tar.len() as u64, OCI_LAYER_TAR)
        );
    }

    #[test]
    fn an_empty_tar_is_an_empty_layer() {
        let empty = tar_of(&[]);
        assert!(digest_in_pieces(&empty, 512).empty);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&empty).unwrap();
        assert!(digest_in_pieces(&gz.finish().unwrap(), 7).empty);
        // A zero-byte layer too.
        let r = Digester::new().finish().unwrap();
        assert!(r.empty && r.size == 0 && r.compression == Compression::None);
    }

    #[test]
    fn broken_and_unsupported_compression_is_said() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar_of(&[("a", b"abc")])).unwrap();
        let gz = gz.finish().unwrap();
        let mut d = Digester::new();
        d.update(&gz[..gz.len() / 2]);
        d.update(&[0xff; 64]);
        assert!(d.finish().is_err());
        let mut d = Digester::new();
        d.update(b"BZh91AY&SY");
        assert!(d.finish().unwrap_err().contains("bzip2"));
    }
}
