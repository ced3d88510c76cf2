//! The sweep: deletions in short batches. Each batch sets `_gc/sweeping`,
//! reads the push records that arrived since the last one and keeps what
//! they name, then deletes for at most [`records::BATCH_TIME`] and clears
//! the flag: a push waits for one batch at most (see [`records`]).
//!
//! Items are deleted in an order that keeps every kept image served after
//! a crash: manifests (their links; the bytes are a blob) and digest
//! entries first, then blobs (their links, then the data), v1 images,
//! uploads.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::records;
use super::{GcReport, Marks, Result, Run};
use crate::registry::oci::{links, Digest};
use crate::storage::layout::distribution as layout;
use crate::storage::layout::legacy as v1_layout;
use crate::storage::lease::now_ms;
use crate::storage::{Storage, StorageError};

/// Deletions under way at once: a round trip each on S3, and a chunk must
/// end well within a batch even on a store that serves one at a time.
const CHUNK: usize = 8;

/// Something the mark found unreachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A tag a rule's retention removes, unless it was pushed again since
    /// the mark (its current link no longer as it was).
    Tag {
        repository: String,
        tag: String,
        digest: Digest,
        pushed: std::time::SystemTime,
        why: String,
    },
    /// A v1 tag a rule's retention removes (its file and its JSON), unless
    /// it was pushed again since the mark.
    V1Tag {
        repository: String,
        tag: String,
        path: String,
        json: String,
        pushed: std::time::SystemTime,
        why: String,
    },
    /// An untagged manifest of one repository: its revision link, the tag
    /// histories that name it, its referrer record.
    Manifest {
        repository: String,
        digest: Digest,
        tags: Vec<String>,
        subject: Option<Digest>,
        why: String,
        /// A rule's retention removes it (else `delete_untagged`).
        by_rule: bool,
    },
    /// A `_v2_digests` entry naming an image that goes.
    DigestEntry {
        path: String,
        image: String,
    },
    /// A blob's data, and the repository links to it.
    Blob {
        digest: Digest,
        size: u64,
        repositories: Vec<String>,
    },
    Image {
        id: String,
        size: u64,
    },
    Upload {
        repository: String,
        id: String,
    },
    /// The history of a tag without a current link: what a tag delete cut
    /// short on S3 leaves (see `oci::tags::remove`).
    TagLeftover {
        repository: String,
        tag: String,
    },
    /// A copy of the pull-through cache, evicted whole ([`super::cache`]).
    CachedRepository {
        repository: String,
    },
    /// The tags a v1 repository copied from a v1 source, evicted together.
    CachedV1Repository(super::cache::V1Copy),
}

impl Item {
    /// The file a v1 tag item removes.
    pub(super) fn path(&self) -> Option<&String> {
        match self {
            Item::V1Tag { path, .. } => Some(path),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            // A tag before the manifest it points at: never a tag that
            // serves nothing.
            Item::Tag { .. } | Item::V1Tag { .. } => 0,
            Item::Manifest { .. }
            | Item::TagLeftover { .. }
            | Item::CachedRepository { .. }
            | Item::CachedV1Repository(_) => 1,
            Item::DigestEntry { .. } => 2,
            Item::Blob { .. } => 3,
            Item::Image { .. } => 4,
            Item::Upload { .. } => 5,
        }
    }

    /// Whether a push record marked it since the mark.
    fn kept(&self, marks: &Marks) -> bool {
        match self {
            Item::Manifest { digest, .. } | Item::Blob { digest, .. } => {
                marks.blobs.contains(digest)
            }
            Item::Image { id, .. } => marks.images.contains(id),
            Item::DigestEntry { image, .. } => marks.images.contains(image),
            // Another tag may keep its manifest: a push of the tag itself
            // since the mark is what counts, which its delete checks.
            // A copy cached again since the mark is fetched again.
            Item::Tag { .. }
            | Item::V1Tag { .. }
            | Item::Upload { .. }
            | Item::TagLeftover { .. }
            | Item::CachedRepository { .. }
            | Item::CachedV1Repository(_) => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Item::Tag {
                repository,
                tag,
                digest,
                why,
                ..
            } => format!("tag {repository}:{tag} ({digest}): {why}"),
            Item::V1Tag {
                repository,
                tag,
                why,
                ..
            } => format!("v1 tag {repository}:{tag}: {why}"),
            Item::Manifest {
                repository,
                digest,
                why,
                ..
            } => format!("manifest {repository}@{digest}: {why}"),
            Item::DigestEntry { path, .. } => format!("v1 bridge entry {path}"),
            Item::Blob { digest, size, .. } => format!("blob {digest} {size} bytes"),
            Item::Image { id, size } => format!("v1 image {id} {size} bytes"),
            Item::Upload { repository, id } => format!("upload {repository}/{id}"),
            Item::TagLeftover { repository, tag } => {
                format!("history of {repository}:{tag}, whose delete was cut short")
            }
            Item::CachedRepository { repository } => {
                format!("cached repository {repository} (a copy of its upstream's)")
            }
            Item::CachedV1Repository(copy) => format!(
                "cached v1 repository {} ({} tags copied from the v1 source)",
                copy.name,
                copy.tags.len()
            ),
        }
    }

    fn count(&self, report: &mut GcReport) {
        match self {
            Item::Tag { .. } | Item::V1Tag { .. } => report.tags += 1,
            Item::Manifest { .. } => report.manifests += 1,
            Item::DigestEntry { .. } => {}
            Item::Blob { size, .. } => {
                report.blobs += 1;
                report.bytes += size;
            }
            Item::Image { size, .. } => {
                report.v1_images += 1;
                report.bytes += size;
            }
            Item::Upload { .. } => report.uploads += 1,
            Item::TagLeftover { .. } => {}
            Item::CachedRepository { .. } | Item::CachedV1Repository(_) => {
                report.cached_repositories += 1
            }
        }
    }

    /// Links before data: a crash between the two leaves data nothing
    /// names, which the next run finds again.
    async fn delete(&self, storage: &dyn Storage) -> Result<()> {
        match self {
            Item::Tag {
                repository,
                tag,
                digest,
                pushed,
                why,
            } => {
                let link = layout::tag_current_link(repository, tag);
                let unchanged = match storage.stat(&link).await {
                    Ok(info) if info.modified == *pushed => {
                        let now = storage.get(&link).await?;
                        now.as_ref() == digest.to_string().as_bytes()
                    }
                    Ok(_) | Err(StorageError::NotFound(_)) => false,
                    Err(e) => return Err(e.into()),
                };
                if !unchanged {
                    return Ok(());
                }
                // Its current link first where a folder does not go at
                // once: the instant it stops serving (`oci::tags::remove`).
                if !storage.removes_folders_at_once() {
                    remove(storage, &link).await?;
                }
                remove(storage, &layout::tag(repository, tag)).await?;
                log::info!("retention: tag {repository}:{tag} removed ({why})");
                crate::registry::rules::count("retention", "removed_tag");
                Ok(())
            }
            Item::V1Tag {
                repository,
                tag,
                path,
                json,
                pushed,
                why,
            } => {
                match storage.stat(path).await {
                    Ok(info) if info.modified == *pushed => {}
                    Ok(_) | Err(StorageError::NotFound(_)) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
                remove(storage, path).await?;
                remove(storage, json).await?;
                log::info!("retention: v1 tag {repository}:{tag} removed ({why})");
                crate::registry::rules::count("retention", "removed_tag");
                Ok(())
            }
            Item::Manifest {
                repository,
                digest,
                tags,
                subject,
                why,
                by_rule,
            } => {
                let (algorithm, hex) = (digest.algorithm().as_str(), digest.hex());
                for tag in tags {
                    let link = layout::tag_index_link(repository, tag, algorithm, hex);
                    remove(storage, link.trim_end_matches("/link")).await?;
                }
                if let Some(subject) = subject {
                    let link = layout::referrer_link(
                        repository,
                        subject.algorithm().as_str(),
                        subject.hex(),
                        algorithm,
                        hex,
                    );
                    remove(storage, link.trim_end_matches("/link")).await?;
                }
                let revision = layout::revision_link(repository, algorithm, hex);
                remove(storage, revision.trim_end_matches("/link")).await?;
                if *by_rule {
                    log::info!("retention: manifest {repository}@{digest} removed ({why})");
                    crate::registry::rules::count("retention", "removed_manifest");
                }
                Ok(())
            }
            Item::DigestEntry { path, .. } => remove(storage, path).await,
            Item::Blob {
                digest,
                repositories,
                ..
            } => {
                for repository in repositories {
                    let folder =
                        layout::layer(repository, digest.algorithm().as_str(), digest.hex());
                    remove(storage, &folder).await?;
                }
                let data = links::blob_data(digest);
                remove(storage, data.trim_end_matches("/data")).await
            }
            Item::Image { id, .. } => {
                let dir = format!("{}/{}", v1_layout::IMAGES, v1_layout::escape(id));
                // `json` first: without it the image does not exist for a
                // tag PUT, whatever a crash leaves of the rest.
                remove(storage, &format!("{dir}/json")).await?;
                remove(storage, &dir).await
            }
            Item::Upload { repository, id } => {
                remove(storage, &layout::upload(repository, id)).await
            }
            Item::TagLeftover { repository, tag } => {
                // Pushed again since the mark: a tag again, history and all.
                if storage
                    .exists(&layout::tag_current_link(repository, tag))
                    .await?
                {
                    return Ok(());
                }
                remove(storage, &format!("{}/index", layout::tag(repository, tag))).await
            }
            Item::CachedRepository { repository } => {
                super::cache::remove(storage, repository).await
            }
            Item::CachedV1Repository(copy) => super::cache::remove_v1(storage, copy).await,
        }
    }
}

async fn remove(storage: &dyn Storage, path: &str) -> Result<()> {
    match storage.remove(path).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Marks what the records not seen yet name.
async fn read_records(run: &mut Run<'_>, seen: &mut HashSet<String>) -> Result<()> {
    let counts_from = super::millis(run.started.checked_sub(records::WINDOW));
    for (path, time, record) in records::read_all(run.storage).await? {
        if time >= counts_from && seen.insert(path) {
            super::oci::mark_record(run, &record).await?;
            for image in &record.images {
                super::legacy::mark_image(run, image).await?;
            }
        }
    }
    Ok(())
}

/// Deletes (or, dry, lists) the items, in batches; returns the
/// repositories that lost a manifest (none when dry).
pub async fn sweep(
    run: &mut Run<'_>,
    mut items: Vec<Item>,
    report: &mut GcReport,
) -> Result<BTreeSet<String>> {
    items.sort_by_key(Item::rank);
    run.progress.set_message("sweeping");
    run.progress.set_position(0);
    run.progress.set_length(items.len() as u64);
    let mut seen = HashSet::new();
    if run.options.dry_run {
        read_records(run, &mut seen).await?;
        for item in &items {
            if item.kept(&run.marks) {
                report.kept_for_pushes += 1;
                continue;
            }
            item.count(report);
            report.listed.push(item.describe());
        }
        return Ok(BTreeSet::new());
    }
    let mut touched = BTreeSet::new();
    let mut queue = items.into_iter().peekable();
    while queue.peek().is_some() {
        let until = records::start_batch(run.storage).await?;
        let started = Instant::now();
        let result = async {
            read_records(run, &mut seen).await?;
            // Stop well before the flag stops counting.
            while queue.peek().is_some()
                && started.elapsed() < records::BATCH_TIME
                && now_ms() + 1000 < until
            {
                // A few deletions at once, all of one rank, so that the
                // order between ranks holds even across a crash.
                let mut chunk = Vec::with_capacity(CHUNK);
                while let Some(item) = queue.next_if(|next| {
                    chunk.len() < CHUNK
                        && chunk.first().is_none_or(|f: &Item| f.rank() == next.rank())
                }) {
                    if item.kept(&run.marks) {
                        report.kept_for_pushes += 1;
                    } else {
                        chunk.push(item);
                    }
                }
                let storage = run.storage;
                let mut deletions = futures_util::stream::iter(chunk)
                    .map(|item| async move { item.delete(storage).await.map(|()| item) })
                    .buffer_unordered(CHUNK);
                while let Some(done) = deletions.next().await {
                    let item = done?;
                    if let Item::Manifest { repository, .. }
                    | Item::CachedRepository { repository } = &item
                    {
                        touched.insert(repository.clone());
                    }
                    item.count(report);
                    run.progress.inc(1);
                }
            }
            Ok::<_, super::GcError>(())
        }
        .await;
        records::end_batch(run.storage).await?;
        result?;
        run.tick().await?;
        // Room between batches for the pushes that waited.
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(touched)
}
