//! How many upload sessions may be open: per repository and in all.
//!
//! A `POST /v2/<name>/blobs/uploads/` leaves a folder that stays until the
//! upload completes, is cancelled, or is older than `gc_upload_max_age`
//! (then a collection, or the next `POST` here, removes it). Without a
//! bound, any client allowed to push makes as many as it likes.
//!
//! **Per repository**, the count comes from storage: each `POST` lists the
//! repository's `_uploads/` (one listing; on S3 one request), so uploads
//! opened, completed or cancelled through any instance on the same bucket
//! count, and so do those left from before a restart. Uploads past their
//! maximum age do not count, and that `POST` removes them (the collector's
//! own rule): with `gc_interval` off, abandoned uploads still go, and a
//! repository's folder holds at most the bound plus the expired ones not
//! yet seen.
//!
//! **In all**, counting from storage would mean walking every repository
//! on every `POST`; the total is instead the sum of what this process last
//! saw in each repository it opened uploads in (its own `POST`s, completions
//! and cancels kept exact as they happen, expiries by the start times it
//! read). What other instances completed meanwhile is seen when the total
//! is reached: the repositories counted are listed again (at most once per
//! [`RESYNC`], for at most [`RESYNC_TIME`], those listed longest ago
//! first) before a `POST` is refused. They are also listed again when
//! this process knows of as many uploads as the total, expired ones
//! included: so expired uploads of repositories no `POST` comes back to
//! are removed too, and what this process keeps in memory stays within
//! about the total. So the total is per process: with several instances on
//! one bucket, each has its own.
//!
//! Two `POST`s at once on one repository each see the other's upload once
//! it exists; those in flight in this process are counted as they go. Two
//! instances may each let one through at the same moment: the bound may be
//! passed by the number of `POST`s in flight at once across instances.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::error::{Error, Result};
use super::name::Name;
use super::uploads::UploadId;
use crate::storage::layout::distribution as layout;
use crate::storage::{Storage, StorageError};

/// The shortest time between two listings of every counted repository when
/// the total is reached: a flood of refused `POST`s costs at most that.
pub const RESYNC: Duration = Duration::from_secs(10);

/// The longest one `POST` spends listing repositories again.
pub const RESYNC_TIME: Duration = Duration::from_secs(1);

/// The bounds and when an upload stops counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_repository: usize,
    pub total: usize,
    /// `gc_upload_max_age`: older uploads do not count, and go.
    pub max_age: Duration,
}

/// The open upload sessions this process knows of.
#[derive(Debug)]
pub struct Sessions {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    repositories: HashMap<String, Repository>,
    /// The last time every counted repository was listed again.
    resynced: Option<Instant>,
}

impl State {
    /// Forgets `repo` once nothing of it is counted any more, so memory
    /// follows the open uploads, not every name ever pushed to.
    fn forget_if_idle(&mut self, repo: &str) {
        if self
            .repositories
            .get(repo)
            .is_some_and(|r| r.open.is_empty() && r.pending == 0)
        {
            self.repositories.remove(repo);
        }
    }
}

#[derive(Debug, Default)]
struct Repository {
    /// Each open upload: when it started, and when this process learnt of it.
    open: HashMap<String, (SystemTime, Instant)>,
    /// `POST`s let through whose upload is not written yet.
    pending: usize,
    /// When its `_uploads/` was last listed.
    synced: Option<Instant>,
}

impl Repository {
    fn live(&self, now: SystemTime, max_age: Duration) -> usize {
        self.open
            .values()
            .filter(|(started, _)| !expired(*started, now, max_age))
            .count()
            + self.pending
    }
}

fn expired(started: SystemTime, now: SystemTime, max_age: Duration) -> bool {
    now.duration_since(started).is_ok_and(|age| age >= max_age)
}

/// A `POST` let through: count it until its upload exists ([`Slot::opened`])
/// or the `POST` fails (dropped).
pub struct Slot<'a> {
    sessions: &'a Sessions,
    repository: String,
    done: bool,
}

impl Slot<'_> {
    /// The upload is written: it counts as open from now on.
    pub fn opened(mut self, id: &UploadId) {
        let mut state = self.sessions.lock();
        let repo = state
            .repositories
            .entry(self.repository.clone())
            .or_default();
        repo.pending = repo.pending.saturating_sub(1);
        repo.open
            .insert(id.as_str().to_owned(), (SystemTime::now(), Instant::now()));
        self.done = true;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.sessions.lock();
        if let Some(repo) = state.repositories.get_mut(&self.repository) {
            repo.pending = repo.pending.saturating_sub(1);
        }
        state.forget_if_idle(&self.repository);
    }
}

impl Sessions {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Room for one more upload in `name`: a [`Slot`], or
    /// [`Error::TooManyUploads`] when the repository or the total is full.
    pub async fn reserve(&self, storage: &dyn Storage, name: &Name) -> Result<Slot<'_>> {
        let repo = name.as_str();
        self.sync(storage, repo).await?;
        let now = SystemTime::now();
        let max_age = self.limits.max_age;
        let refused = |state: &State| {
            let here = state
                .repositories
                .get(repo)
                .map_or(0, |r| r.live(now, max_age));
            if here >= self.limits.per_repository {
                return Some((
                    false,
                    Error::TooManyUploads(format!(
                        "{here} uploads are open in repository {repo}, the most there may be \
                     (max_upload_sessions_per_repository); complete or cancel some, or wait until \
                     they are older than gc_upload_max_age"
                    )),
                ));
            }
            let total: usize = state
                .repositories
                .values()
                .map(|r| r.live(now, max_age))
                .sum();
            (total >= self.limits.total).then(|| {
                (
                    true,
                    Error::TooManyUploads(format!(
                        "{total} uploads are open on this registry, the most there may be \
                     (max_upload_sessions); complete or cancel some, or wait until they are older \
                     than gc_upload_max_age"
                    )),
                )
            })
        };
        let resync = {
            let state = self.lock();
            let recent = state.resynced.is_some_and(|t| t.elapsed() < RESYNC);
            // Expired uploads stay known until their repository is listed
            // again: so many, and they are looked for (and removed).
            let known: usize = state.repositories.values().map(|r| r.open.len()).sum();
            match refused(&state) {
                None => known >= self.limits.total && !recent,
                // The repository was just listed: its count is storage's.
                Some((false, e)) => return Err(e),
                Some((true, e)) if recent => return Err(e),
                Some((true, _)) => true,
            }
        };
        if resync {
            // Full: what other instances (or a collection) ended meanwhile
            // is seen only in storage; what expired goes.
            self.lock().resynced = Some(Instant::now());
            // Those listed longest ago first, a few at once, for at most
            // RESYNC_TIME: the POST that does it waits that long at most,
            // and the next one goes on where it stopped.
            let mut counted: Vec<(Option<Instant>, String)> = self
                .lock()
                .repositories
                .iter()
                .map(|(name, r)| (r.synced, name.clone()))
                .collect();
            counted.sort();
            let until = Instant::now() + RESYNC_TIME;
            for chunk in counted.chunks(8) {
                if Instant::now() >= until {
                    break;
                }
                let syncs = chunk.iter().map(|(_, other)| self.sync(storage, other));
                for done in futures_util::future::join_all(syncs).await {
                    done?;
                }
            }
        }
        let mut state = self.lock();
        if let Some((_, e)) = refused(&state) {
            return Err(e);
        }
        state
            .repositories
            .entry(repo.to_owned())
            .or_default()
            .pending += 1;
        Ok(Slot {
            sessions: self,
            repository: repo.to_owned(),
            done: false,
        })
    }

    /// An upload of `name` completed or was cancelled here: its slot is free.
    pub fn closed(&self, name: &Name, id: &UploadId) {
        let mut state = self.lock();
        if let Some(repo) = state.repositories.get_mut(name.as_str()) {
            repo.open.remove(id.as_str());
        }
        state.forget_if_idle(name.as_str());
    }

    /// Counts the uploads of `repo` from storage, and removes those past
    /// their maximum age.
    async fn sync(&self, storage: &dyn Storage, repo: &str) -> Result<()> {
        let listed_at = Instant::now();
        let ids: HashSet<String> = match storage.list(&layout::uploads(repo)).await {
            Ok(names) => names,
            Err(StorageError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        }
        .into_iter()
        .filter(|id| UploadId::parse(id).is_ok())
        .collect();
        // The start time of uploads seen for the first time (another
        // instance's, or from before a restart) is read once.
        let unknown: Vec<String> = {
            let state = self.lock();
            let known = state.repositories.get(repo);
            ids.iter()
                .filter(|id| known.is_none_or(|r| !r.open.contains_key(*id)))
                .cloned()
                .collect()
        };
        let mut found = Vec::with_capacity(unknown.len());
        for id in unknown {
            let started = match storage.stat(&layout::upload_started_at(repo, &id)).await {
                Ok(info) => info.modified,
                // Being written, or left without its start time by a crash:
                // it counts from now, and expires from now.
                Err(StorageError::NotFound(_)) => SystemTime::now(),
                Err(e) => return Err(e.into()),
            };
            found.push((id, started));
        }
        let now = SystemTime::now();
        let max_age = self.limits.max_age;
        let stale: Vec<String> = {
            let mut state = self.lock();
            let entry = state.repositories.entry(repo.to_owned()).or_default();
            entry.synced = Some(listed_at);
            for (id, started) in found {
                entry.open.entry(id).or_insert((started, Instant::now()));
            }
            // Gone from storage (completed, cancelled, collected, here or
            // elsewhere), unless it was opened here after the listing.
            entry
                .open
                .retain(|id, (_, learnt)| *learnt > listed_at || ids.contains(id));
            let stale = entry
                .open
                .iter()
                .filter(|(_, (started, _))| expired(*started, now, max_age))
                .map(|(id, _)| id.clone())
                .collect();
            state.forget_if_idle(repo);
            stale
        };
        for id in stale {
            match storage.remove(&layout::upload(repo, &id)).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let mut state = self.lock();
            if let Some(entry) = state.repositories.get_mut(repo) {
                entry.open.remove(&id);
            }
            state.forget_if_idle(repo);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::oci::uploads::Upload;
    use crate::storage::memory::MemoryStorage;

    fn sessions(per_repository: usize, total: usize, max_age: u64) -> Sessions {
        Sessions::new(Limits {
            per_repository,
            total,
            max_age: Duration::from_secs(max_age),
        })
    }

    async fn open<'a>(
        sessions: &Sessions,
        storage: &'a dyn Storage,
        name: &'a Name,
    ) -> Result<Upload<'a>> {
        let slot = sessions.reserve(storage, name).await?;
        let upload = Upload::start(storage, name).await?;
        slot.opened(upload.id());
        Ok(upload)
    }

    #[actix_web::test]
    async fn each_repository_and_the_total_are_bounded() {
        let storage = MemoryStorage::new();
        let sessions = sessions(2, 3, 3600);
        let (a, b) = (Name::parse("a").unwrap(), Name::parse("b").unwrap());
        let first = open(&sessions, &storage, &a).await.unwrap();
        open(&sessions, &storage, &a).await.unwrap();
        let refused = open(&sessions, &storage, &a).await.err().unwrap();
        assert!(refused.to_string().contains("repository a"), "{refused}");
        open(&sessions, &storage, &b).await.unwrap();
        let refused = open(&sessions, &storage, &b).await.err().unwrap();
        assert!(
            refused.to_string().contains("on this registry"),
            "{refused}"
        );
        // A cancel frees its slot at once.
        let id = first.id().clone();
        first.cancel().await.unwrap();
        sessions.closed(&a, &id);
        open(&sessions, &storage, &b).await.unwrap();
        // A refused POST wrote nothing.
        assert_eq!(storage.list(&layout::uploads("a")).await.unwrap().len(), 1);
    }

    #[actix_web::test]
    async fn uploads_ended_elsewhere_or_expired_free_their_slot() {
        let storage = MemoryStorage::new();
        let name = Name::parse("a").unwrap();
        let here = sessions(2, 10, 3600);
        // Another instance (its own count) opens two, and completes one.
        let elsewhere = sessions(2, 10, 3600);
        let one = open(&elsewhere, &storage, &name).await.unwrap();
        open(&elsewhere, &storage, &name).await.unwrap();
        assert!(open(&here, &storage, &name).await.is_err());
        one.cancel().await.unwrap();
        open(&here, &storage, &name).await.unwrap();
        assert!(open(&here, &storage, &name).await.is_err());

        // Past their maximum age, uploads neither count nor stay.
        let young = sessions(2, 10, 0);
        open(&young, &storage, &name).await.unwrap();
        assert_eq!(storage.list(&layout::uploads("a")).await.unwrap().len(), 1);

        // Expired ones in repositories no POST comes back to go too, once
        // as many are known as the total allows.
        let tiny = sessions(2, 3, 0);
        let names: Vec<Name> = (0..4)
            .map(|i| Name::parse(&format!("e{i}")).unwrap())
            .collect();
        for name in &names {
            open(&tiny, &storage, name).await.unwrap();
        }
        let mut left = 0;
        for name in &names {
            left += storage
                .list(&layout::uploads(name.as_str()))
                .await
                .map_or(0, |l| l.len());
        }
        assert_eq!(left, 1, "expired uploads left");
        assert_eq!(tiny.lock().repositories.len(), 1);
    }
}
