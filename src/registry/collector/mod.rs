//! Online garbage collection of both trees, while the registry serves.
//!
//! One run: take the lease (one collector a store, [`crate::storage::lease`]),
//! **mark** everything reachable ([`oci`]: from every v2 tag, or every
//! manifest unless untagged ones go; [`legacy`]: every v1 image on the
//! ancestry of a v1 tag or behind a digest the bridge handed out), list
//! what nothing reaches and is older than the grace period, then **sweep**
//! it in short batches ([`batch`]) that each first read the push records
//! ([`records`]) and keep what a push in flight references. Then report.
//!
//! Deletion order makes a crash (kill -9) at any point harmless: what goes
//! is first made unreachable (a manifest's revision and tag links before
//! its bytes, a blob's repository links before its data, a v1 image's
//! `json` before its folder), and only what the mark proved unreachable is
//! ever deleted; the next run finds what is left and finishes the job.

pub mod batch;
pub mod cache;
pub mod legacy;
pub mod oci;
pub mod records;

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use indicatif::ProgressBar;

use crate::events::{Event, Events};
use crate::names::RepositoryName;
use crate::storage::layout::collection as layout;
use crate::storage::lease::{self, Acquired, Lease};
use crate::storage::{Storage, StorageError};

/// How long the lease lasts unless renewed; the run renews it well before.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// How long a run waits for the removal of old push records
/// ([`records::prune`]) to give the lease back.
pub const PRUNER_WAIT: Duration = Duration::from_secs(30);

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// List what would go, delete nothing.
    pub dry_run: bool,
    /// Manifests no tag points at go too (else every manifest is kept).
    pub delete_untagged: bool,
    /// Nothing younger than this is swept.
    pub grace_period: Duration,
    /// Uploads started longer ago than this are removed.
    pub upload_max_age: Duration,
    pub lease_ttl: Duration,
    /// A progress bar on standard error (when it is a terminal).
    pub progress: bool,
    /// What the pull-through cache keeps.
    pub cache: cache::Eviction,
    /// The operator's rules: retention says what goes, immutable tags
    /// what never does.
    pub rules: std::sync::Arc<crate::registry::rules::Rules>,
}

impl Options {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            dry_run: false,
            delete_untagged: settings.gc.delete_untagged,
            grace_period: settings.gc.grace_period,
            upload_max_age: settings.gc.upload_max_age,
            lease_ttl: LEASE_TTL,
            progress: false,
            cache: cache::Eviction::from_settings(&settings.mirror),
            rules: std::sync::Arc::new(crate::registry::rules::Rules::new(&settings.rules)),
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Tags a rule's retention removed.
    pub tags: u64,
    /// Manifests removed from a repository (untagged: `delete_untagged`,
    /// or a rule's retention).
    pub manifests: u64,
    /// Blobs (layers, configs, manifest bytes) deleted.
    pub blobs: u64,
    pub v1_images: u64,
    pub uploads: u64,
    pub bytes: u64,
    /// Kept back by a push in flight (its record) after the mark.
    pub kept_for_pushes: u64,
    /// Copies of the pull-through cache evicted whole.
    pub cached_repositories: u64,
    pub elapsed: Duration,
    /// Dry run: one line per item that would go.
    pub listed: Vec<String>,
    /// The v2 repositories whose last manifest this run removed: the
    /// search index is told of those no tree holds any longer
    /// ([`left_registry`]).
    pub emptied: Vec<String>,
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gc{}: {} manifests, {} blobs, {} v1 images, {} uploads {}, {} bytes {} in {:.1} s",
            if self.dry_run { " (dry run)" } else { "" },
            self.manifests,
            self.blobs,
            self.v1_images,
            self.uploads,
            if self.dry_run { "would go" } else { "deleted" },
            self.bytes,
            if self.dry_run { "to free" } else { "freed" },
            self.elapsed.as_secs_f64()
        )?;
        if self.tags > 0 {
            let verb = if self.dry_run {
                "would be removed"
            } else {
                "removed"
            };
            write!(f, "; {} tags {verb} by retention rules", self.tags)?;
        }
        if self.cached_repositories > 0 {
            write!(
                f,
                "; {} cached repositories evicted",
                self.cached_repositories
            )?;
        }
        Ok(())
    }
}

/// What reaches what: the digests of every kept manifest and blob, the
/// ids of every kept v1 image.
#[derive(Debug, Default)]
pub struct Marks {
    pub blobs: HashSet<crate::registry::oci::Digest>,
    pub images: HashSet<String>,
}

/// The result of asking for a run.
#[derive(Debug)]
pub enum Outcome {
    Done(GcReport),
    /// Another collector holds the store.
    Busy {
        holder: String,
        until: SystemTime,
    },
}

/// Errors of a run, all storage failures but one.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the collector's lease was lost (expired and taken over): run stopped")]
    LeaseLost,
}

impl From<crate::registry::oci::Error> for GcError {
    fn from(e: crate::registry::oci::Error) -> Self {
        match e {
            crate::registry::oci::Error::Storage(e) => GcError::Storage(e),
            other => GcError::Storage(StorageError::Unavailable(other.to_string())),
        }
    }
}

impl From<crate::registry::rules::quota::Error> for GcError {
    fn from(e: crate::registry::rules::quota::Error) -> Self {
        match e {
            crate::registry::rules::quota::Error::Storage(e) => GcError::Storage(e),
            other => GcError::Storage(StorageError::Unavailable(other.to_string())),
        }
    }
}

impl From<crate::registry::legacy::Error> for GcError {
    fn from(e: crate::registry::legacy::Error) -> Self {
        match e {
            crate::registry::legacy::Error::Storage(e) => GcError::Storage(e),
            other => GcError::Storage(StorageError::Unavailable(other.to_string())),
        }
    }
}

pub type Result<T, E = GcError> = std::result::Result<T, E>;

/// One run's state: the storage, its lease, what is marked.
pub struct Run<'a> {
    pub storage: &'a dyn Storage,
    pub options: Options,
    pub marks: Marks,
    pub started: SystemTime,
    /// The v1 copies of the pull-through cache that go this run, found
    /// with the v2 ones (one size bound for both).
    pub v1_evicted: Vec<cache::V1Copy>,
    /// Each quota rule's count as the walk finds it: its key, the usage's
    /// `added` when the run began, and the bytes counted so far.
    pub quotas: std::collections::HashMap<String, (u64, u64)>,
    lease: Option<Lease>,
    renewed: Instant,
    pub progress: ProgressBar,
}

impl Run<'_> {
    /// Renews the lease when a third of it has passed; call it often.
    pub async fn tick(&mut self) -> Result<()> {
        if self.renewed.elapsed() < self.options.lease_ttl / 3 {
            return Ok(());
        }
        if let Some(lease) = &mut self.lease {
            if !lease.renew(self.storage).await? {
                return Err(GcError::LeaseLost);
            }
        }
        self.renewed = Instant::now();
        Ok(())
    }

    /// Whether something last written at `modified` is old enough to go.
    pub fn old_enough(&self, modified: SystemTime) -> bool {
        self.started
            .duration_since(modified)
            .is_ok_and(|age| age >= self.options.grace_period)
    }
}

/// One collection: lease, mark, sweep, report.
pub async fn collect(storage: &dyn Storage, options: Options) -> Result<Outcome> {
    let clock = Instant::now();
    let holder = lease::token();
    // `serve` removing old push records holds the lease for moments: wait
    // for it, within bounds, as for no other holder.
    let wait_until = Instant::now() + PRUNER_WAIT;
    let lease = loop {
        match Lease::acquire(storage, &layout::lease(), &holder, options.lease_ttl).await? {
            Acquired::Held(lease) => break lease,
            Acquired::Busy { holder, .. }
                if holder.starts_with(records::PRUNER) && Instant::now() < wait_until =>
            {
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            Acquired::Busy { holder, until } => return Ok(Outcome::Busy { holder, until }),
        }
    };
    let progress = if options.progress {
        crate::registry::bridge::digests::progress_bar("gc")
    } else {
        ProgressBar::hidden()
    };
    let mut run = Run {
        storage,
        options,
        marks: Marks::default(),
        started: SystemTime::now(),
        v1_evicted: Vec::new(),
        quotas: Default::default(),
        lease: Some(lease),
        renewed: Instant::now(),
        progress,
    };
    let result = collect_held(&mut run).await;
    run.progress.finish_and_clear();
    // Given back whatever happened; a failure here only delays the next
    // run until the lease expires.
    if let Some(lease) = run.lease.take() {
        if let Err(e) = lease.release(storage).await {
            log::warn!("gc: releasing the lease: {e}");
        }
    }
    let mut report = result?;
    report.elapsed = clock.elapsed();
    Ok(Outcome::Done(report))
}

async fn collect_held(run: &mut Run<'_>) -> Result<GcReport> {
    // Before the walk: what pushes add from now on is added to its count.
    for quota in run.options.rules.quotas() {
        let usage = crate::registry::rules::quota::usage(run.storage, quota).await?;
        run.quotas.insert(quota.key.clone(), (usage.added, 0));
    }
    run.progress.set_message("marking v2");
    let v2 = oci::mark(run).await?;
    run.progress.set_message("marking v1");
    let v1 = legacy::mark(run).await?;
    let mut items = v2;
    items.extend(v1);
    let mut report = GcReport {
        dry_run: run.options.dry_run,
        ..Default::default()
    };
    let touched = batch::sweep(run, items, &mut report).await?;
    for repository in touched {
        let Ok(name) = crate::registry::oci::Name::parse(&repository) else {
            continue;
        };
        // Asked after the sweep, not counted during it: a push may have
        // brought a manifest back meanwhile.
        match crate::registry::oci::manifests::has_any_revision(run.storage, &name).await {
            Ok(true) => {}
            Ok(false) => report.emptied.push(repository),
            Err(e) => log::warn!("gc: whether {repository} holds a manifest is unknown ({e})"),
        }
    }
    if !run.options.dry_run {
        remove_old_records(run).await?;
        reconcile_quotas(run).await?;
    }
    Ok(report)
}

/// Sets a repository's quota markers (`marked`: each one's key and size)
/// to what the walk counted (`sizes`): a marker of what it no longer
/// counts goes, unless made since the run began (its push is counted on
/// top); a missing one is written.
pub(super) async fn set_quota_markers<K: Eq + std::hash::Hash>(
    run: &Run<'_>,
    marked: Vec<(K, u64)>,
    sizes: &std::collections::HashMap<K, u64>,
    path: impl Fn(&K) -> String,
) -> Result<()> {
    let storage = run.storage;
    let marked: std::collections::HashSet<K> = marked.into_iter().map(|(key, _)| key).collect();
    for key in marked.iter().filter(|key| !sizes.contains_key(*key)) {
        match storage.stat(&path(key)).await {
            Ok(info) if info.modified < run.started => match storage.remove(&path(key)).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Ok(_) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (key, size) in sizes.iter().filter(|(key, _)| !marked.contains(*key)) {
        let marker = crate::registry::rules::quota::marker(*size);
        storage.put_unsynced(&path(key), marker).await?;
    }
    Ok(())
}

/// Sets each quota's usage to what the walk counted, plus what pushes
/// added since it began.
async fn reconcile_quotas(run: &mut Run<'_>) -> Result<()> {
    for quota in run.options.rules.quotas() {
        let Some(&(added_at_start, bytes)) = run.quotas.get(&quota.key) else {
            continue;
        };
        let usage =
            crate::registry::rules::quota::reconcile(run.storage, quota, bytes, added_at_start)
                .await?;
        log::info!("gc: {quota}: {} bytes used", usage.bytes);
    }
    Ok(())
}

/// The repositories a run took out of the registry: emptied of manifests
/// in the v2 tree, and held by no tree any longer (the v1 tree's folder
/// stays whatever the collector removes, which is never a tag; see
/// [`crate::registry::bridge::still_held`]). What search must forget.
pub async fn left_registry(storage: &dyn Storage, report: &GcReport) -> Vec<RepositoryName> {
    let mut gone = Vec::new();
    for repository in &report.emptied {
        // The name search and the events know it by (`x` is `library/x`).
        let Ok(name) = RepositoryName::parse(repository) else {
            log::warn!("gc: {repository} has no v1 name; search not told it left");
            continue;
        };
        if !crate::registry::bridge::still_held(storage, &name).await {
            gone.push(name);
        }
    }
    gone
}

/// Unix milliseconds of a time (0 before the epoch or when unknown).
pub(crate) fn millis(time: Option<SystemTime>) -> u64 {
    time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Push records that no longer count (older than their window before
/// this run, and than the grace period).
async fn remove_old_records(run: &mut Run<'_>) -> Result<()> {
    let keep = run.options.grace_period.max(records::WINDOW);
    let cutoff = millis(run.started.checked_sub(keep));
    let storage = run.storage;
    records::remove_before(storage, cutoff, async || -> Result<bool> {
        run.tick().await?;
        Ok(true)
    })
    .await?;
    Ok(())
}

/// `registry-v1 gc`: one run, the summary on standard output.
pub async fn command(settings: crate::config::Settings, options: Options) -> anyhow::Result<()> {
    let storage = crate::storage::from_settings(&settings).await?;
    match collect(&*storage, options).await? {
        Outcome::Done(report) => {
            for line in &report.listed {
                println!("{line}");
            }
            let gone = left_registry(&*storage, &report).await;
            if !gone.is_empty() {
                crate::search::forget_beside_serve("gc", &settings, &*storage, &gone).await;
            }
            println!("{report}");
            Ok(())
        }
        Outcome::Busy { holder, until } => {
            let left = until
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs();
            anyhow::bail!(
                "another garbage collection ({holder}) holds this storage for {left} s more \
                 (its lease: _gc/lease); try again later"
            )
        }
    }
}

/// `gc_interval` inside `serve`: a run every `interval`, on this instance
/// (another one holding the lease makes this one skip its turn). The
/// repositories a run takes out of the registry are published as deleted,
/// as the API's deletes are, so that search forgets them.
pub async fn periodic(
    storage: std::sync::Arc<dyn Storage>,
    events: Events,
    options: Options,
    interval: Duration,
) {
    loop {
        actix_web::rt::time::sleep(interval).await;
        let metrics = crate::metrics::get();
        match collect(&*storage, options.clone()).await {
            Ok(Outcome::Done(report)) => {
                log::info!("{report}");
                report.count(metrics);
                for name in left_registry(&*storage, &report).await {
                    log::info!("gc: {name} left the registry (no tree holds it)");
                    events.publish(Event::RepositoryDeleted { name }).await;
                }
            }
            Ok(Outcome::Busy { .. }) => {
                log::info!("gc: another collector holds the storage; skipped");
                metrics.gc_runs.with_label_values(&["busy"]).inc();
            }
            Err(e) => {
                log::warn!("gc failed: {e}");
                metrics.gc_runs.with_label_values(&["failed"]).inc();
            }
        }
    }
}

impl GcReport {
    /// Adds a finished run to the process's metrics.
    fn count(&self, metrics: &crate::metrics::Metrics) {
        metrics.gc_runs.with_label_values(&["done"]).inc();
        for (kind, n) in [
            ("manifests", self.manifests),
            ("blobs", self.blobs),
            ("v1_images", self.v1_images),
            ("uploads", self.uploads),
        ] {
            metrics.gc_deleted.with_label_values(&[kind]).inc_by(n);
        }
        metrics.gc_freed_bytes.inc_by(self.bytes);
        metrics.gc_last_duration.set(self.elapsed.as_secs_f64());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        metrics.gc_last_success.set(now.as_secs_f64());
    }
}
