//! `registry-v1 bridge-digests`: the v2 form of every v1 tag of an existing
//! storage computed ahead of the first pull (the layers' digests, then each
//! tag's manifest), with a progress bar. Safe while registries serve from
//! the same storage: every file it writes is written whole, and is the
//! same whoever writes it.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::{layer, tagged_image, v1_repositories};
use crate::config::Settings;
use crate::names::ImageId;
use crate::registry::legacy;
use crate::storage::layout::legacy as v1_layout;
use crate::storage::{Storage, StorageError};

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub images: u64,
    /// Layers whose digests were computed by this run.
    pub computed: u64,
    /// Layers that could not be read as tars (named in the log).
    pub failed: u64,
    pub tags: u64,
    /// Tags whose image has no v2 form (named in the log).
    pub tags_failed: u64,
}

/// A progress bar on standard error when it is a terminal.
pub fn progress_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let template = format!("{what} {{bar:40}} {{pos}}/{{len}} {{msg}} ({{elapsed}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Records the digests of every complete image's layer that has none, then
/// builds the v2 form of every v1 tag.
pub async fn record_all(
    storage: &dyn Storage,
    progress: &ProgressBar,
) -> Result<Summary, StorageError> {
    let mut summary = Summary::default();
    let ids = match storage.list(v1_layout::IMAGES).await {
        Ok(ids) => ids,
        Err(StorageError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    progress.set_length(ids.len() as u64);
    progress.set_message("layers");
    for id in ids {
        progress.inc(1);
        let Some(id) = ImageId::parse(&id) else {
            continue;
        };
        summary.images += 1;
        if storage.exists(&v1_layout::image_mark(&id)).await? {
            continue;
        }
        let kept = layer::kept(storage, &id).await?;
        let size = match storage.size(&v1_layout::image_layer(&id)).await {
            Ok(size) => size,
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        if kept.is_some_and(|k| k.size == size) {
            continue;
        }
        match layer::record(storage, &id).await {
            Ok(_) => summary.computed += 1,
            Err(layer::LayerError::Storage(e)) => return Err(e),
            Err(e) => {
                log::warn!("{e}");
                summary.failed += 1;
            }
        }
    }
    let repositories = v1_repositories(storage, |_| {}).await?;
    progress.set_position(0);
    progress.set_length(repositories.len() as u64);
    progress.set_message("repositories");
    for (_, name) in repositories {
        progress.inc(1);
        let tags = match legacy::tags(storage, &name).await {
            Ok(tags) => tags,
            Err(legacy::Error::Storage(e)) => return Err(e),
            Err(_) => continue,
        };
        for (tag, image) in tags {
            summary.tags += 1;
            let Some(image) = ImageId::parse(image.trim()) else {
                log::warn!("{name}:{tag} names no image id");
                summary.tags_failed += 1;
                continue;
            };
            match tagged_image(storage, &name, &image).await {
                Ok(_) => {}
                Err(super::ImageError::Storage(e)) => return Err(e),
                Err(e) => {
                    log::warn!("{name}:{tag}: {e}");
                    summary.tags_failed += 1;
                }
            }
        }
    }
    Ok(summary)
}

/// The command: storage from the settings, a summary on standard output.
pub async fn command(settings: Settings) -> anyhow::Result<()> {
    let storage = crate::storage::from_settings(&settings).await?;
    let progress = progress_bar("recording v2 digests");
    let summary = record_all(storage.as_ref(), &progress).await?;
    progress.finish_and_clear();
    println!(
        "{} images: {} layers' digests computed now, {} layers unreadable; \
         {} tags: {} without a v2 form (see the log)",
        summary.images, summary.computed, summary.failed, summary.tags, summary.tags_failed
    );
    Ok(())
}
