//! An htpasswd file of bcrypt entries (`user:$2y$...`, what `htpasswd -B`
//! writes and distribution accepts), re-read when its modification time or
//! size changes (one `stat` a login; cheap next to bcrypt).
//!
//! bcrypt takes 50-250 ms by design: it runs on a blocking thread, at most
//! one per core at once (a flood of guesses, before the limiter has
//! counted them as failures, waits rather than takes every CPU), and a
//! check that succeeded is remembered for [`CACHE_TTL`], keyed by a salted
//! SHA-256 of user, password and stored hash (never the password itself;
//! a changed entry changes the key).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// How long a successful check is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// The most remembered checks.
const CACHE_MAX: usize = 4096;

pub struct Htpasswd {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    /// Makes the cache keys of this process its own.
    salt: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Permits to run bcrypt, one per core.
    hashing: tokio::sync::Semaphore,
    /// A hash of a password nobody has, at the cost of the file's
    /// entries, checked for unknown users so that they take as long as
    /// known ones.
    decoy: String,
}

struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    entries: Arc<HashMap<String, String>>,
}

impl Htpasswd {
    /// Reads the file; the error names `auth_htpasswd` and the path.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let (stamp, entries) =
            read(path).with_context(|| format!("auth_htpasswd: cannot read {}", path.display()))?;
        if entries.is_empty() {
            log::warn!(
                "auth_htpasswd: {} has no bcrypt entry: nobody can log in",
                path.display()
            );
        }
        let cost = entries
            .values()
            .find_map(|h| h.get(4..6)?.parse::<u32>().ok())
            .filter(|c| (4..=31).contains(c))
            .unwrap_or(bcrypt::DEFAULT_COST);
        let nobody: [u8; 16] = rand::random();
        let decoy = bcrypt::hash(nobody, cost).context("auth_htpasswd: bcrypt unavailable")?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            hashing: tokio::sync::Semaphore::new(cores.max(2)),
            decoy,
            path: path.to_owned(),
            loaded: Mutex::new(Loaded {
                stamp,
                entries: Arc::new(entries),
            }),
            salt: rand::random(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The entries, read again when the file changed. A file that cannot
    /// be read now keeps the last entries (an editor replacing it).
    fn entries(&self) -> Arc<HashMap<String, String>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp_of(&self.path);
        if now.is_some() && now != loaded.stamp {
            match read(&self.path) {
                Ok((stamp, entries)) => {
                    log::info!(
                        "auth_htpasswd: {} re-read, {} entries",
                        self.path.display(),
                        entries.len()
                    );
                    loaded.stamp = stamp;
                    loaded.entries = Arc::new(entries);
                }
                Err(e) => log::warn!(
                    "auth_htpasswd: {} not re-read, keeping the last entries: {e}",
                    self.path.display()
                ),
            }
        }
        loaded.entries.clone()
    }

    /// Whether `password` is `user`'s.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let entries = self.entries();
        let hash = entries.get(user).cloned();
        let key = self.cache_key(user, password, hash.as_deref().unwrap_or(""));
        if hash.is_some() && self.remembered(&key) {
            return true;
        }
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy.clone());
        let password = password.to_owned();
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map(|r| r.unwrap_or(false))
            .unwrap_or(false)
            && known;
        if ok {
            self.remember(key);
        }
        ok
    }

    fn cache_key(&self, user: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        for part in [user, password, hash] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).is_some_and(|at| at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, at| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, Instant::now());
    }
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

type Read = (Option<(SystemTime, u64)>, HashMap<String, String>);

/// The bcrypt entries of the file. Other lines (comments, blank lines,
/// entries hashed otherwise) are skipped; the skipped entries are named
/// by line number, never by content.
fn read(path: &Path) -> std::io::Result<Read> {
    let stamp = stamp_of(path);
    let text = std::fs::read_to_string(path)?;
    let mut entries = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, hash))
                if !user.is_empty()
                    && ["$2y$", "$2a$", "$2b$", "$2x$"]
                        .iter()
                        .any(|p| hash.starts_with(p)) =>
            {
                entries.insert(user.to_owned(), hash.to_owned());
            }
            _ => log::warn!(
                "auth_htpasswd: {} line {}: not user:bcrypt-hash (htpasswd -B), skipped",
                path.display(),
                n + 1
            ),
        }
    }
    Ok((stamp, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, password: &str) -> String {
        // The lowest cost: the tests check behaviour, not strength.
        format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
    }

    #[actix_web::test]
    async fn bcrypt_entries_verify_and_changes_are_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let text = format!(
            "# users\n{}\nmd5:$apr1$abc$def\n{}",
            entry("alice", "wonder land"),
            entry("bob", "builder")
        );
        std::fs::write(&path, text).unwrap();
        let file = Htpasswd::open(&path).unwrap();
        assert!(file.verify("alice", "wonder land").await);
        assert!(file.verify("alice", "wonder land").await, "cached");
        assert!(!file.verify("alice", "wonder").await);
        assert!(
            !file.verify("md5", "x").await,
            "non-bcrypt entries are skipped"
        );
        assert!(!file.verify("carol", "builder").await);
        assert!(file.verify("bob", "builder").await);

        // A new password for alice (and the remembered check is not used).
        std::fs::write(&path, entry("alice", "new one")).unwrap();
        // Same size and second is possible: make the stamp differ.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!file.verify("alice", "wonder land").await);
        assert!(file.verify("alice", "new one").await);
        assert!(!file.verify("bob", "builder").await, "bob is gone");

        // A file gone missing keeps the last entries.
        std::fs::remove_file(&path).unwrap();
        assert!(file.verify("alice", "new one").await);
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let e = Htpasswd::open(Path::new("/nonexistent/htpasswd"))
            .err()
            .unwrap();
        let text = format!("{e:#}");
        assert!(
            text.contains("auth_htpasswd") && text.contains("/nonexistent/htpasswd"),
            "{text}"
        );
    }

    #[test]
    fn the_decoy_costs_what_the_entries_cost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, entry("alice", "x")).unwrap();
        let file = Htpasswd::open(&path).unwrap();
        assert!(file.decoy.starts_with("$2b$04$"), "{}", file.decoy);
    }
}
