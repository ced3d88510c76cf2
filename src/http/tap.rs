//! The hashing tap: a body stream that shows every chunk to a hasher on its
//! way to storage, so that a digest is computed while the body streams in
//! and never by reading the stored file back.
//!
//! Generic over the hasher and how it is fed, so that any digest crate (and
//! any version of one) fits:
//! ```ignore
//! let (body, tap) = tap::tap(body, Sha256::new(), |h, bytes| h.update(bytes));
//! storage.put_stream(&path, body).await?;
//! let (hasher, length) = tap.finish();
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;

use crate::storage::ByteStream;

/// What the stream and its [`Tap`] share. Single-threaded: a request and
/// its body live on one worker.
struct Seen<H> {
    hasher: H,
    length: u64,
}

/// The caller's end of a tapped stream.
pub struct Tap<H> {
    seen: Rc<RefCell<Seen<H>>>,
}

/// Wraps `body` so that `feed(&mut hasher, chunk)` sees each chunk, in
/// order, before the consumer does. Chunks that are errors are not fed.
pub fn tap<H, F>(body: ByteStream, hasher: H, mut feed: F) -> (ByteStream, Tap<H>)
where
    H: 'static,
    F: FnMut(&mut H, &[u8]) + 'static,
{
    let seen = Rc::new(RefCell::new(Seen { hasher, length: 0 }));
    let shared = seen.clone();
    let tapped: ByteStream = Box::pin(body.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            let mut seen = shared.borrow_mut();
            seen.length += bytes.len() as u64;
            feed(&mut seen.hasher, bytes);
        }
        chunk
    }));
    (tapped, Tap { seen })
}

impl<H: Clone> Tap<H> {
    /// The hasher, fed every chunk the consumer took, and the number of
    /// bytes in them. Call it once the consumer is done with the stream.
    pub fn finish(self) -> (H, u64) {
        match Rc::try_unwrap(self.seen) {
            Ok(seen) => {
                let seen = seen.into_inner();
                (seen.hasher, seen.length)
            }
            // The consumer still holds the stream (it did not drop it on
            // returning): what it has taken so far is what was hashed.
            Err(shared) => {
                let seen = shared.borrow();
                (seen.hasher.clone(), seen.length)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sha2::{Digest, Sha256, Sha512};

    fn body(chunks: &[&'static [u8]]) -> ByteStream {
        let items: Vec<std::io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn drain(mut stream: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[actix_web::test]
    async fn the_digest_is_the_one_of_the_bytes_that_passed() {
        let (stream, sha256) = tap(body(&[b"hello ", b"", b"world"]), Sha256::new(), |h, b| {
            h.update(b)
        });
        assert_eq!(drain(stream).await, b"hello world");
        let (hasher, length) = sha256.finish();
        assert_eq!(length, 11);
        assert_eq!(hasher.finalize()[..], Sha256::digest(b"hello world")[..]);
    }

    #[actix_web::test]
    async fn any_hasher_fits() {
        let (stream, sha512) = tap(body(&[b"abc"]), Sha512::new(), |h, b| h.update(b));
        drain(stream).await;
        assert_eq!(sha512.finish().0.finalize()[..], Sha512::digest(b"abc")[..]);
        let (mut stream, sizes) = tap(body(&[b"ab", b"cd"]), Vec::new(), |v, b| v.push(b.len()));
        // Only what the consumer took so far, while it still holds the stream.
        stream.next().await;
        assert_eq!(sizes.finish(), (vec![2], 2));
    }
}
