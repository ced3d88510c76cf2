//! `registry-v1 reindex`: the search index brought in line with storage,
//! for registries whose index missed repositories (pushed while search was
//! off, copied in by hand, or deleted behind the registry's back).

use std::io::IsTerminal;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Database, DatabaseLocation};
use crate::config::{SearchBackend, Settings};

/// Walks storage and updates the index: a progress bar on a terminal, and a
/// summary line (found, added, removed) on standard output. Safe while
/// registries serve from the same database.
pub async fn reindex_command(settings: Settings) -> anyhow::Result<()> {
    if settings.search.backend == SearchBackend::Disabled {
        anyhow::bail!(
            "search is off in flavor `{}` (search_backend is empty): there is no index \
             to rebuild; set search_backend to sqlalchemy",
            settings.flavor
        );
    }
    let location = super::database_location(&settings)?;
    if location == DatabaseLocation::Memory {
        anyhow::bail!(
            "the search index of flavor `{}` is in memory (sqlite://): each registry \
             process builds its own from storage when it starts, there is nothing to rebuild",
            settings.flavor
        );
    }
    let storage = crate::storage::from_settings(&settings).await?;
    let progress = progress_bar();
    let (database, built) = Database::open(&location, storage.as_ref(), &progress).await?;
    let summary = match built {
        Some(built) => built,
        None => database
            .reindex(storage.as_ref(), &progress)
            .await
            .with_context(|| format!("search index {location}"))?,
    };
    progress.finish_and_clear();
    println!(
        "search index {location}: {} repositories in storage, {} added, {} removed",
        summary.found, summary.added, summary.removed
    );
    Ok(())
}

/// Namespaces walked, on standard error when it is a terminal.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "walking storage {bar:40} {pos}/{len} namespaces, {msg} ({elapsed})",
    ) {
        bar.set_style(style);
    }
    bar
}
