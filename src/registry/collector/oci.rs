//! The mark of the v2 tree: every manifest reachable from a tag (or every
//! manifest of the repository, unless untagged ones go), what they name
//! (config, layers, index children, subject), and the referrers of every
//! kept manifest; then what nothing reaches: the tags a rule's retention
//! removes, untagged manifests (with `delete_untagged` or a rule's
//! retention), blobs, stale uploads.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::batch::Item;
use super::{Result, Run};
use crate::registry::oci::{links, Digest, Name};
use crate::registry::rules::retention::{PushedTag, Removal, Retention};
use crate::storage::layout::distribution as layout;
use crate::storage::{Storage, StorageError};

const ALGORITHMS: [&str; 2] = ["sha256", "sha512"];

pub(super) async fn list(storage: &dyn Storage, folder: &str) -> Result<Vec<String>> {
    match storage.list(folder).await {
        Ok(names) => Ok(names),
        Err(StorageError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The digests named by `<alg>/<hex>` folders under `folder`.
pub(super) async fn digests_under(storage: &dyn Storage, folder: &str) -> Result<Vec<Digest>> {
    let mut found = Vec::new();
    for algorithm in ALGORITHMS {
        for hex in list(storage, &format!("{folder}/{algorithm}")).await? {
            if let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) {
                found.push(digest);
            }
        }
    }
    Ok(found)
}

/// What a stored manifest names: (blobs, manifests). Read leniently, as
/// distribution stores them (schema 1's `fsLayers` included).
fn references(bytes: &[u8]) -> (Vec<Digest>, Vec<Digest>) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return (Vec::new(), Vec::new());
    };
    let digest = |d: &Value, key: &str| {
        d.get(key)
            .and_then(Value::as_str)
            .and_then(|s| Digest::parse(s).ok())
    };
    let list = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut blobs: Vec<Digest> = list("layers")
        .iter()
        .filter_map(|d| digest(d, "digest"))
        .collect();
    blobs.extend(list("fsLayers").iter().filter_map(|d| digest(d, "blobSum")));
    if let Some(config) = value.get("config") {
        blobs.extend(digest(config, "digest"));
    }
    let mut manifests: Vec<Digest> = list("manifests")
        .iter()
        .filter_map(|d| digest(d, "digest"))
        .collect();
    if let Some(subject) = value.get("subject") {
        manifests.extend(digest(subject, "digest"));
    }
    (blobs, manifests)
}

/// Marks manifest `root` and all it reaches; `kept` gathers the manifests
/// (for one repository's referrers and untagged ones).
pub(super) async fn expand(
    run: &mut Run<'_>,
    root: &Digest,
    kept: &mut HashSet<Digest>,
) -> Result<()> {
    let mut stack = vec![root.clone()];
    while let Some(digest) = stack.pop() {
        if !kept.insert(digest.clone()) {
            continue;
        }
        run.marks.blobs.insert(digest.clone());
        let bytes = match run.storage.get(&links::blob_data(&digest)).await {
            Ok(bytes) => bytes,
            // Gone already (another collector, a crash): nothing to follow.
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let (blobs, manifests) = references(&bytes);
        run.marks.blobs.extend(blobs);
        stack.extend(manifests);
        run.tick().await?;
    }
    Ok(())
}

/// Marks the v2 tree; returns what nothing reaches and may go.
pub async fn mark(run: &mut Run<'_>) -> Result<Vec<Item>> {
    let storage = run.storage;
    let (repositories, with_uploads) = walk(run).await?;
    run.progress.set_length(repositories.len() as u64);
    let mut items = Vec::new();
    let mut linked: HashMap<Digest, Vec<String>> = HashMap::new();
    let evicted = super::cache::evicted(run, &repositories).await?;
    // The v1 tree's copies are the v1 mark's to leave out.
    run.v1_evicted = evicted.v1;
    for repo in repositories {
        run.progress.inc(1);
        if evicted.v2.contains(&repo) {
            // Not marked: its blobs go with it unless another repository
            // links them.
            items.push(Item::CachedRepository { repository: repo });
            continue;
        }
        let Ok(name) = Name::parse(&repo) else {
            continue;
        };
        items.extend(mark_repository(run, &name, &mut linked).await?);
        run.tick().await?;
    }
    for repo in with_uploads {
        items.extend(stale_uploads(run, &repo).await?);
        run.tick().await?;
    }
    // Blobs last: every repository's manifests are marked by now.
    for algorithm in ALGORITHMS {
        let folder = layout::blobs(algorithm);
        for prefix in list(storage, &folder).await? {
            for hex in list(storage, &format!("{folder}/{prefix}")).await? {
                let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) else {
                    continue;
                };
                if run.marks.blobs.contains(&digest) {
                    continue;
                }
                let size = match storage.stat(&links::blob_data(&digest)).await {
                    Ok(info) if run.old_enough(info.modified) => info.size,
                    Ok(_) => continue,
                    // A folder without data: left by a crash mid-delete.
                    Err(StorageError::NotFound(_)) => 0,
                    Err(e) => return Err(e.into()),
                };
                let repositories = linked.remove(&digest).unwrap_or_default();
                items.push(Item::Blob {
                    digest,
                    size,
                    repositories,
                });
            }
            run.tick().await?;
        }
    }
    Ok(items)
}

async fn mark_repository(
    run: &mut Run<'_>,
    name: &Name,
    linked: &mut HashMap<Digest, Vec<String>>,
) -> Result<Vec<Item>> {
    let storage = run.storage;
    let repo = name.as_str();
    let mut items = Vec::new();
    let rules = run.options.rules.clone();
    let retention = rules.retention(repo);

    // Tags: what each points at now, and every manifest it ever did.
    let mut tagged = Vec::new();
    let mut history: HashMap<Digest, Vec<String>> = HashMap::new();
    for tag in list(storage, &layout::tags(repo)).await? {
        let Ok(parsed) = crate::registry::oci::Tag::parse(&tag) else {
            continue;
        };
        let now = links::read(storage, &links::tag_current(name, &parsed)).await?;
        let past = digests_under(storage, &format!("{}/index", layout::tag(repo, &tag))).await?;
        // No current link: a delete cut short (or a push between its two
        // links, hence the grace period).
        if now.is_none() && !past.is_empty() && history_is_old(run, name, &parsed, &past).await? {
            items.push(Item::TagLeftover {
                repository: repo.to_owned(),
                tag: tag.clone(),
            });
        }
        if let Some(digest) = now {
            tagged.push((tag.clone(), digest));
        }
        for digest in past {
            history.entry(digest).or_default().push(tag.clone());
        }
    }
    if let Some(retention) = retention.filter(|r| r.prunes_tags()) {
        let removed = expired_tags(run, name, &retention, &tagged).await?;
        tagged.retain(
            |(tag, digest)| match removed.iter().find(|r| r.tag == *tag) {
                Some(removal) => {
                    items.push(Item::Tag {
                        repository: repo.to_owned(),
                        tag: tag.clone(),
                        digest: digest.clone(),
                        pushed: removal.pushed,
                        why: removal.why.clone(),
                    });
                    false
                }
                None => true,
            },
        );
    }
    // Revisions: a folder whose link distribution deleted is no revision.
    let mut revisions = Vec::new();
    for digest in digests_under(
        storage,
        &format!(
            "{repo_root}/_manifests/revisions",
            repo_root = layout::repository(repo)
        ),
    )
    .await?
    {
        if links::read(storage, &links::revision(name, &digest))
            .await?
            .is_some()
        {
            revisions.push(digest);
        }
    }

    let mut kept = HashSet::new();
    for (_, digest) in &tagged {
        expand(run, digest, &mut kept).await?;
    }
    // Untagged manifests that go: with `delete_untagged` or a rule's
    // retention, those old enough. The others are kept, with all they
    // reach, before the referrers are looked at.
    let prunes = run.options.delete_untagged
        || retention.is_some_and(|r| r.prunes_tags() || r.untagged_after().is_some());
    let mut going = Vec::new();
    for digest in &revisions {
        if kept.contains(digest) {
            continue;
        }
        let why = if prunes {
            let modified = match storage.stat(&links::revision(name, digest)).await {
                Ok(info) => info.modified,
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let by_rule = || retention.and_then(|r| r.untagged_goes(modified, run.started));
            match run.old_enough(modified) {
                // Younger: a push by digest before its index.
                false => None,
                true => by_rule().map(|why| (why, true)).or_else(|| {
                    run.options
                        .delete_untagged
                        .then(|| ("untagged (gc_delete_untagged)".to_owned(), false))
                }),
            }
        } else {
            None
        };
        match why {
            Some(why) => going.push((digest.clone(), why)),
            None => expand(run, digest, &mut kept).await?,
        }
    }
    // Referrers of kept manifests are kept, until nothing more is.
    let subjects =
        digests_under(storage, &format!("{}/_referrers", layout::repository(repo))).await?;
    let mut done = HashSet::new();
    loop {
        let ready: Vec<Digest> = subjects
            .iter()
            .filter(|s| kept.contains(*s) && !done.contains(*s))
            .cloned()
            .collect();
        if ready.is_empty() {
            break;
        }
        for subject in ready {
            let folder = layout::referrers(repo, subject.algorithm().as_str(), subject.hex());
            for referrer in digests_under(storage, &folder).await? {
                expand(run, &referrer, &mut kept).await?;
            }
            done.insert(subject);
        }
    }
    // What a kept manifest reaches (an index's child, a referrer) stays.
    for (digest, (why, by_rule)) in going {
        if kept.contains(&digest) {
            continue;
        }
        let subject = match storage.get(&links::blob_data(&digest)).await {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
                v["subject"]["digest"]
                    .as_str()
                    .and_then(|d| Digest::parse(d).ok())
            }),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        items.push(Item::Manifest {
            repository: repo.to_owned(),
            tags: history.remove(&digest).unwrap_or_default(),
            digest,
            subject,
            why,
            by_rule,
        });
    }
    for digest in digests_under(storage, &layout::layers(repo)).await? {
        linked.entry(digest).or_default().push(repo.to_owned());
    }
    if let Some(quota) = rules.quota(repo) {
        let bytes = count_quota(run, name, &kept).await?;
        if let Some((_, counted)) = run.quotas.get_mut(&quota.key) {
            *counted += bytes;
        }
    }
    Ok(items)
}

/// What repository `name` counts in its quota once this run is done: the
/// manifests it keeps and the config and layers of each, every digest
/// once. Not dry, its `_counted` markers are set to match (a marker made
/// since the run began stays: its push is counted on top).
async fn count_quota(run: &mut Run<'_>, name: &Name, kept: &HashSet<Digest>) -> Result<u64> {
    let storage = run.storage;
    let mut sizes: HashMap<Digest, u64> = HashMap::new();
    for digest in kept {
        let bytes = match storage.get(&links::blob_data(digest)).await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        sizes.insert(digest.clone(), bytes.len() as u64);
        if let Ok(manifest) = crate::registry::oci::manifests::Manifest::parse(None, &bytes) {
            if let crate::registry::oci::manifests::Content::Image { config, layers } =
                manifest.content
            {
                // By the stored size, as a push charges (what a manifest
                // says of a size is the client's word).
                for blob in std::iter::once(config).chain(layers) {
                    if sizes.contains_key(&blob.digest) {
                        continue;
                    }
                    match storage.stat(&links::blob_data(&blob.digest)).await {
                        Ok(info) => {
                            sizes.insert(blob.digest, info.size);
                        }
                        Err(StorageError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        run.tick().await?;
    }
    if !run.options.dry_run {
        let marked = crate::registry::oci::quota::counted(storage, name).await?;
        let path = |d: &Digest| layout::counted(name.as_str(), d.algorithm().as_str(), d.hex());
        super::set_quota_markers(run, marked, &sizes, path).await?;
    }
    Ok(sizes.values().sum())
}

/// The tags of the repository its retention removes: by the time each
/// current link was written (the push), never one a rule holds immutable,
/// nor one pushed within the grace period.
async fn expired_tags(
    run: &mut Run<'_>,
    name: &Name,
    retention: &Retention<'_>,
    tagged: &[(String, Digest)],
) -> Result<Vec<Removal>> {
    let mut pushed = Vec::with_capacity(tagged.len());
    for (tag, _) in tagged {
        let Ok(parsed) = crate::registry::oci::Tag::parse(tag) else {
            continue;
        };
        match run.storage.stat(&links::tag_current(name, &parsed)).await {
            Ok(info) => pushed.push(PushedTag {
                tag: tag.clone(),
                pushed: info.modified,
            }),
            // Deleted since the listing.
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    run.tick().await?;
    let rules = &run.options.rules;
    let removals = retention.removals(&pushed, run.started, |tag| {
        rules.immutable(name.as_str(), tag).is_some()
    });
    Ok(removals
        .into_iter()
        .filter(|r| run.old_enough(r.pushed))
        .collect())
}

/// Every folder under `repositories/` that is a repository (holds
/// `_layers` or `_manifests`: the catalog's rule), and every one that holds
/// `_uploads`, in one walk. Uploads are looked for everywhere, not only in
/// repositories: a `POST` to a name that never got content makes a folder
/// with `_uploads` alone, and a client may open thousands of those.
async fn walk(run: &mut Run<'_>) -> Result<(Vec<String>, Vec<String>)> {
    let storage = run.storage;
    let (mut repositories, mut with_uploads) = (Vec::new(), Vec::new());
    let mut stack: Vec<String> = Vec::new();
    let children_of = crate::registry::oci::catalog::name_folders;
    stack.extend(children_of(
        "",
        list(storage, &layout::repositories()).await?,
    ));
    while let Some(path) = stack.pop() {
        let children = list(storage, &layout::repository(&path)).await?;
        if crate::registry::oci::repository::holds_repository(&children) {
            repositories.push(path.clone());
        }
        if children.iter().any(|c| c == "_uploads") {
            with_uploads.push(path.clone());
        }
        stack.extend(children_of(&path, children));
        run.tick().await?;
    }
    Ok((repositories, with_uploads))
}

/// The uploads of folder `repo` started longer ago than the maximum age.
async fn stale_uploads(run: &mut Run<'_>, repo: &str) -> Result<Vec<Item>> {
    let storage = run.storage;
    let mut items = Vec::new();
    for upload in list(storage, &layout::uploads(repo)).await? {
        let stale = match storage
            .stat(&layout::upload_started_at(repo, &upload))
            .await
        {
            Ok(info) => run
                .started
                .duration_since(info.modified)
                .is_ok_and(|age| age >= run.options.upload_max_age),
            // Not written yet (the folder appears first), or removed by
            // its own request meanwhile.
            Err(StorageError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if stale {
            items.push(Item::Upload {
                repository: repo.to_owned(),
                id: upload,
            });
        }
        run.tick().await?;
    }
    Ok(items)
}

/// Whether every history link of the tag was written before the grace
/// period.
async fn history_is_old(
    run: &Run<'_>,
    name: &Name,
    tag: &crate::registry::oci::Tag,
    past: &[Digest],
) -> Result<bool> {
    for digest in past {
        match run.storage.stat(&links::tag_index(name, tag, digest)).await {
            Ok(info) if !run.old_enough(info.modified) => return Ok(false),
            Ok(_) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Marks what a push record names (see [`super::records`]).
pub(super) async fn mark_record(run: &mut Run<'_>, record: &super::records::Record) -> Result<()> {
    for blob in &record.blobs {
        if let Ok(digest) = Digest::parse(blob) {
            run.marks.blobs.insert(digest);
        }
    }
    for manifest in &record.manifests {
        if let Ok(digest) = Digest::parse(manifest) {
            expand(run, &digest, &mut HashSet::new()).await?;
        }
    }
    Ok(())
}
