//! The mark of the v1 tree: every image on the ancestry of a v1 tag, and,
//! unless untagged ones go, every image behind a manifest digest the
//! bridge handed out (`_v2_digests`: a v2 client may pull it by digest, as
//! it may an untagged v2 manifest). The bridge serves nothing but files in
//! the images' own folders, so a kept image keeps every blob it serves.
//! Then what nothing reaches: images, and digest entries naming them.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use serde_json::Value;

use super::batch::Item;
use super::oci::list;
use super::{Result, Run};
use crate::names::{ImageId, RepositoryName, Tag};
use crate::registry::legacy::quota;
use crate::registry::rules::retention::PushedTag;
use crate::storage::layout::legacy as layout;
use crate::storage::StorageError;

/// Marks image `id` and its whole ancestry.
pub(super) async fn mark_image(run: &mut Run<'_>, id: &str) -> Result<()> {
    let Some(id) = ImageId::parse(id.trim().trim_matches('"')) else {
        return Ok(());
    };
    if !run.marks.images.insert(id.to_string()) {
        return Ok(());
    }
    match run.storage.get(&layout::image_ancestry(&id)).await {
        Ok(bytes) => {
            if let Ok(Value::Array(ids)) = serde_json::from_slice::<Value>(&bytes) {
                for ancestor in ids.iter().filter_map(Value::as_str) {
                    run.marks.images.insert(ancestor.to_owned());
                }
            }
        }
        Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The tags of a v1 repository its retention removes (as
/// [`super::oci`] does for v2): by the time each tag file was written,
/// never one a rule holds immutable nor one within the grace period.
async fn expired_tags(
    run: &mut Run<'_>,
    name: &RepositoryName,
    tags: &[(String, Tag)],
) -> Result<Vec<Item>> {
    let rules = run.options.rules.clone();
    let repository = name.to_string();
    let Some(retention) = rules.retention(&repository).filter(|r| r.prunes_tags()) else {
        return Ok(Vec::new());
    };
    let mut pushed = Vec::with_capacity(tags.len());
    for (path, tag) in tags {
        match run.storage.stat(path).await {
            Ok(info) => pushed.push(PushedTag {
                tag: tag.as_str().to_owned(),
                pushed: info.modified,
            }),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let removals = retention.removals(&pushed, run.started, |tag| {
        rules.immutable(&repository, tag).is_some()
    });
    Ok(removals
        .into_iter()
        .filter(|r| run.old_enough(r.pushed))
        .filter_map(|r| {
            let (path, tag) = tags.iter().find(|(_, t)| t.as_str() == r.tag)?;
            Some(Item::V1Tag {
                repository: repository.clone(),
                tag: r.tag,
                path: path.clone(),
                json: layout::tag_json(name, tag),
                pushed: r.pushed,
                why: r.why,
            })
        })
        .collect())
}

/// What repository `name` counts in its quota once this run is done (as
/// [`super::oci`] counts for v2): the layer of every image on the
/// lineage of the images its kept tags name, each once. Not dry, its
/// `_counted` markers are set to match (a marker made since the run
/// began stays: its push is counted on top).
async fn count_quota(run: &mut Run<'_>, name: &RepositoryName, tagged: &[String]) -> Result<()> {
    let rules = run.options.rules.clone();
    let Some(quota) = rules.quota(&name.to_string()) else {
        return Ok(());
    };
    let storage = run.storage;
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for id in tagged {
        let Some(id) = ImageId::parse(id.trim().trim_matches('"')) else {
            continue;
        };
        for image in quota::lineage(storage, &id).await? {
            if sizes.contains_key(image.as_str()) {
                continue;
            }
            match storage.stat(&layout::image_layer(&image)).await {
                Ok(info) => {
                    sizes.insert(image.to_string(), info.size);
                }
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        run.tick().await?;
    }
    if !run.options.dry_run {
        let marked = quota::counted(storage, name).await?;
        super::set_quota_markers(run, marked, &sizes, |id| layout::counted(name, id)).await?;
    }
    if let Some((_, counted)) = run.quotas.get_mut(&quota.key) {
        *counted += sizes.values().sum::<u64>();
    }
    Ok(())
}

/// Marks the v1 tree; returns what nothing reaches and may go.
pub async fn mark(run: &mut Run<'_>) -> Result<Vec<Item>> {
    let storage = run.storage;
    // The tags of evicted copies reach nothing (their files go first), and
    // neither do the bridge's digests of the images they named.
    let evicted = std::mem::take(&mut run.v1_evicted);
    let evicted_tags: HashSet<&str> = evicted
        .iter()
        .flat_map(|copy| copy.tags.iter().map(|t| t.file.as_str()))
        .collect();
    let evicted_images: HashMap<&str, HashSet<&str>> = evicted
        .iter()
        .map(|copy| {
            let images = copy.tags.iter().filter_map(|t| t.image.as_deref());
            (copy.tree.as_str(), images.collect())
        })
        .collect();
    let mut items: Vec<Item> = evicted
        .iter()
        .cloned()
        .map(Item::CachedV1Repository)
        .collect();
    // (entry path, image id) of every `_v2_digests` entry.
    let mut entries = Vec::new();
    for namespace in list(storage, layout::REPOSITORIES).await? {
        let namespace_dir = format!("{}/{namespace}", layout::REPOSITORIES);
        for repository in list(storage, &namespace_dir).await? {
            let dir = format!("{namespace_dir}/{repository}");
            let files = match storage.list(&dir).await {
                Ok(files) => files,
                // A file where a folder is expected, or gone meanwhile.
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let gone_images = evicted_images.get(dir.as_str());
            let mut tags = Vec::new();
            for file in &files {
                let Some(tag) = layout::tag_from_file_name(file) else {
                    continue;
                };
                let path = format!("{dir}/{file}");
                if !evicted_tags.contains(path.as_str()) {
                    tags.push((path, tag));
                }
            }
            let name = RepositoryName::parse(&format!(
                "{}/{}",
                layout::unescape(&namespace),
                layout::unescape(&repository)
            ));
            if let Ok(name) = &name {
                let expired = expired_tags(run, name, &tags).await?;
                tags.retain(|(path, _)| !expired.iter().any(|item| item.path() == Some(path)));
                items.extend(expired);
            }
            let mut tagged = Vec::with_capacity(tags.len());
            for (path, _) in tags {
                match storage.get(&path).await {
                    Ok(id) => {
                        let id = String::from_utf8_lossy(&id).into_owned();
                        mark_image(run, &id).await?;
                        tagged.push(id);
                    }
                    Err(StorageError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Ok(name) = name {
                count_quota(run, &name, &tagged).await?;
            }
            if files.iter().any(|f| f == "_v2_digests") {
                let digests = format!("{dir}/_v2_digests");
                for algorithm in list(storage, &digests).await? {
                    for hex in list(storage, &format!("{digests}/{algorithm}")).await? {
                        let path = format!("{digests}/{algorithm}/{hex}");
                        let entry: Value = match storage.get(&path).await {
                            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                            Err(StorageError::NotFound(_)) => continue,
                            Err(e) => return Err(e.into()),
                        };
                        let Some(image) = entry["image"].as_str().map(str::to_owned) else {
                            continue;
                        };
                        let evicted = gone_images.is_some_and(|g| g.contains(image.as_str()));
                        if entry["kind"] == "manifest" && !run.options.delete_untagged && !evicted {
                            mark_image(run, &image).await?;
                        }
                        entries.push((path, image));
                    }
                }
            }
            run.tick().await?;
        }
    }
    let mut gone = HashSet::new();
    for id in list(storage, layout::IMAGES).await? {
        if run.marks.images.contains(&id) {
            continue;
        }
        let Some(image) = ImageId::parse(&id) else {
            continue;
        };
        // A push writes `_inprogress` first, then `json`: the newer counts.
        let mut newest: Option<SystemTime> = None;
        let mut size = 0;
        for path in [layout::image_mark(&image), layout::image_json(&image)] {
            match storage.stat(&path).await {
                Ok(info) => {
                    newest = newest.max(Some(info.modified));
                    size += info.size;
                }
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if newest.is_some_and(|t| !run.old_enough(t)) {
            continue;
        }
        match storage.stat(&layout::image_layer(&image)).await {
            Ok(info) => size += info.size,
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        gone.insert(id.clone());
        items.push(Item::Image { id, size });
        run.tick().await?;
    }
    for (path, image) in entries {
        if gone.contains(&image) {
            items.push(Item::DigestEntry { path, image });
        }
    }
    Ok(items)
}
