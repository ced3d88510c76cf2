//! Deterministic bytes addressable by offset: large bodies are generated
//! and checked on the fly, never held whole in memory.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The bytes of a seed repeat with this period: a prime, so that no
/// buffer, batch or part size (powers of two) lines up with it and a
/// block at a wrong offset shows.
const PERIOD: usize = 1_048_573;

/// One period of a seed's bytes, made once: filling is then copying, fast
/// even in the unoptimized test build.
fn table(seed: u64) -> Arc<Vec<u8>> {
    static TABLES: Mutex<BTreeMap<u64, Arc<Vec<u8>>>> = Mutex::new(BTreeMap::new());
    let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    tables
        .entry(seed)
        .or_insert_with(|| {
            let mut t = Vec::with_capacity(PERIOD + 8);
            let mut i = 0u64;
            while t.len() < PERIOD {
                t.extend_from_slice(&splitmix(seed.wrapping_mul(0x1_0000_0001) ^ i).to_le_bytes());
                i += 1;
            }
            t.truncate(PERIOD);
            Arc::new(t)
        })
        .clone()
}

/// The bytes `seed` has at `offset..offset + buf.len()`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let t = table(seed);
    let mut pos = (offset % PERIOD as u64) as usize;
    let mut i = 0;
    while i < buf.len() {
        let n = (PERIOD - pos).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&t[pos..pos + n]);
        i += n;
        pos = 0;
    }
}

pub fn bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(seed, offset, &mut v);
    v
}

/// Chunk sizes a client might send: odd, tiny and large mixed, so batch
/// and part boundaries fall everywhere.
const CHUNKS: &[usize] = &[65_536, 1, 300_007, 8_192, 1_048_576, 13, 2_000_003];

/// `len` bytes of `seed` as a request body, generated chunk by chunk.
pub fn stream(seed: u64, len: u64) -> impl Stream<Item = io::Result<Bytes>> {
    futures_util::stream::unfold((0u64, 0usize), move |(offset, i)| async move {
        if offset >= len {
            return None;
        }
        let n = (CHUNKS[i % CHUNKS.len()] as u64).min(len - offset) as usize;
        let chunk = Bytes::from(bytes(seed, offset, n));
        Some((Ok(chunk), (offset + n as u64, i + 1)))
    })
}

/// Like [`stream`], but yielding to other tasks between chunks so that
/// concurrent writers interleave.
pub fn slow_stream(seed: u64, len: u64) -> impl Stream<Item = io::Result<Bytes>> {
    stream(seed, len).then(|chunk| async move {
        tokio::task::yield_now().await;
        chunk
    })
}

/// Checks a downloaded body against `seed` from `offset`, chunk by chunk;
/// returns the number of bytes checked.
pub async fn verify(
    seed: u64,
    offset: u64,
    mut body: impl Stream<Item = io::Result<Bytes>> + Unpin,
) -> Result<u64, String> {
    let mut pos = offset;
    let mut expected = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("body broke off at {pos}: {e}"))?;
        expected.resize(chunk.len(), 0);
        fill(seed, pos, &mut expected);
        if chunk[..] != expected[..] {
            let at = chunk.iter().zip(&expected).position(|(a, b)| a != b);
            return Err(format!(
                "bytes differ near offset {}",
                pos + at.unwrap_or(0) as u64
            ));
        }
        pos += chunk.len() as u64;
    }
    Ok(pos - offset)
}
