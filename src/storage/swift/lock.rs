//! The lock object `put_if` holds across instances while it reads,
//! compares and writes: Swift has no compare-and-swap of its own.
//!
//! A lock is an object `_locks/<key>` in the segments container (never
//! listed with the tree), created with `If-None-Match: *` and a random
//! token, expiring by itself after [`TTL_SECS`] (`X-Delete-After`: an
//! expired object counts as absent at once, so a holder that died holds
//! nothing for long). `If-None-Match: *` is not atomic: two creates at the
//! same instant can both succeed, and the later write wins. So the
//! creator reads the lock back after [`SETTLE`]: only the one whose token
//! it finds holds it; the other waits its turn. Safe as long as no create
//! takes longer than [`SETTLE`] to land after another one's answered, and
//! no holder takes longer than [`TTL_SECS`] between taking the lock and
//! releasing it (a read and a write of a small file).

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode};

use super::SwiftStorage;
use crate::storage::{Result, StorageError};

/// How long a lock lasts at most.
pub const TTL_SECS: u64 = 10;

/// How long a creator waits before reading its lock back.
pub const SETTLE: Duration = Duration::from_millis(30);

/// How long `put_if` waits for a lock before it gives up.
const WAIT: Duration = Duration::from_secs(30);

/// A lock held; [`Held::release`] gives it back.
pub struct Held {
    object: String,
    token: String,
    taken: Instant,
}

impl Held {
    /// Takes the lock of `key` (the object of storage path `path`).
    pub async fn take(storage: &SwiftStorage, path: &str, key: &str) -> Result<Held> {
        let object = SwiftStorage::object(&storage.0.segments, &format!("_locks/{key}"));
        let ttl = TTL_SECS.to_string();
        let deadline = Instant::now() + WAIT;
        loop {
            let token = crate::storage::lease::token();
            let response = storage
                .send(
                    Method::PUT,
                    &object,
                    &[("If-None-Match", "*"), ("X-Delete-After", &ttl)],
                    Some(bytes::Bytes::from(token.clone())),
                )
                .await?;
            match response.status() {
                s if s.is_success() => {
                    actix_web::rt::time::sleep(SETTLE).await;
                    let read = storage.send(Method::GET, &object, &[], None).await?;
                    if read.status().is_success() {
                        let found = read.bytes().await.unwrap_or_default();
                        if found == token.as_bytes() {
                            return Ok(Held {
                                object,
                                token,
                                taken: Instant::now(),
                            });
                        }
                    }
                    // Another create landed after ours: it holds the lock.
                }
                StatusCode::PRECONDITION_FAILED => {}
                status => return Err(SwiftStorage::status_error(path, status)),
            }
            if Instant::now() > deadline {
                return Err(StorageError::Unavailable(format!(
                    "swift: the lock of {path} stayed taken for {} s",
                    WAIT.as_secs()
                )));
            }
            let pause = rand::thread_rng().gen_range(5..25);
            actix_web::rt::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// Whether the lock is still surely held: taken less than half its
    /// lifetime ago (a holder slowed down past that writes nothing).
    pub fn fresh(&self) -> bool {
        self.taken.elapsed() < Duration::from_secs(TTL_SECS) / 2
    }

    /// Gives the lock back, if it is still ours (one that expired may be
    /// another holder's now); one that cannot be deleted expires by itself.
    pub async fn release(self, storage: &SwiftStorage) {
        match storage.send(Method::GET, &self.object, &[], None).await {
            Ok(r) if r.status().is_success() => {
                if r.bytes().await.unwrap_or_default() != self.token.as_bytes() {
                    return;
                }
            }
            _ => return,
        }
        match storage.send(Method::DELETE, &self.object, &[], None).await {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {}
            Ok(r) => log::warn!("swift: a lock left to expire: {}", r.status()),
            Err(e) => log::warn!("swift: a lock left to expire: {e}"),
        }
    }
}
