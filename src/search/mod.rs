//! Repository search: one [`SearchIndex`] trait, the two databases behind
//! `search_backend: sqlalchemy` (SQLite for one host, PostgreSQL shared by
//! several), and the empty index when search is off.
//!
//! The index follows the registry through the [`Event`]s the v1 API
//! publishes (see [`subscriber`]); the first start over a storage that
//! already holds repositories, and `registry-v1 reindex`, fill it by walking
//! `repositories/<ns>/<repo>` (see [`walk`]).

mod database_url;
pub mod postgres;
mod reindex;
pub mod sqlite;
pub mod walk;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{SearchBackend, Settings};
use crate::events::{Event, Subscriber};
use crate::names::RepositoryName;
use crate::storage::Storage;

pub use database_url::{DatabaseLocation, DatabaseUrlError, PostgresUrl};
pub use reindex::reindex_command;

/// `n` when the client gives none (the old Docker Hub API's default).
pub const DEFAULT_PAGE_SIZE: u32 = 25;
/// The largest `n` a client may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The longest term searched. SQLite refuses `LIKE` patterns over 50,000
/// bytes; no name (95 characters in the schema) or description (100) can
/// hold a longer term anyway.
pub const MAX_TERM_CHARS: usize = 1000;

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The term, matched as a substring of name or description (ASCII
    /// case-insensitive, `%` and `_` literally); empty matches everything.
    pub term: String,
    /// From 1; a page past the last (up to `u64::MAX`) is empty.
    pub page: u64,
    /// 1 to 100.
    pub per_page: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// `<namespace>/<repository>`.
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Every match, not only this page's.
    pub total: u64,
    pub hits: Vec<SearchHit>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Another process held the database longer than the busy timeout.
    #[error("search index busy: {0}")]
    Busy(String),
    #[error("search index unavailable: {0}")]
    Unavailable(String),
}

/// A place that answers searches and follows the registry's repositories.
#[async_trait]
pub trait SearchIndex: Send + Sync {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError>;
    /// Adds a repository (with `description`, or `""` when `None`), or
    /// updates its description (`None`: keep it).
    async fn upsert(&self, name: &str, description: Option<&str>) -> Result<(), SearchError>;
    async fn remove(&self, name: &str) -> Result<(), SearchError>;
}

/// What a walk of storage changed in the index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Repositories in storage.
    pub found: u64,
    /// Rows added for repositories the index did not know.
    pub added: u64,
    /// Rows removed for repositories storage no longer holds.
    pub removed: u64,
}

/// `%term%`, with `%`, `_` and the escape character itself matched
/// literally (the old registry let them act as wildcards).
pub(crate) fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// An index kept in a database: it answers searches, and can be brought in
/// line with storage.
#[derive(Clone)]
pub enum Database {
    Sqlite(Arc<sqlite::SqliteIndex>),
    Postgres(Arc<postgres::PostgresIndex>),
}

impl Database {
    /// Opens (and on first use builds from `storage`) the index at
    /// `location`: what building found, if it was built now.
    pub async fn open(
        location: &DatabaseLocation,
        storage: &dyn Storage,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<(Self, Option<Reconciled>)> {
        match location {
            DatabaseLocation::Postgres(url) => {
                let (index, built) = postgres::PostgresIndex::open(url, storage, progress).await?;
                Ok((Self::Postgres(Arc::new(index)), built))
            }
            DatabaseLocation::File(_) | DatabaseLocation::Memory => {
                let opened = sqlite::SqliteIndex::open(location, storage, progress).await?;
                Ok((Self::Sqlite(Arc::new(opened.index)), opened.built))
            }
        }
    }

    pub fn search_index(&self) -> Arc<dyn SearchIndex> {
        match self {
            Self::Sqlite(index) => index.clone(),
            Self::Postgres(index) => index.clone(),
        }
    }

    /// Adds the repositories of storage the index misses; removes nothing.
    pub async fn catch_up(
        &self,
        storage: &dyn Storage,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<Reconciled> {
        match self {
            Self::Sqlite(index) => index.catch_up(storage, progress).await,
            Self::Postgres(index) => index.catch_up(storage, progress).await,
        }
    }

    /// Adds what the index misses and removes what storage no longer holds.
    pub async fn reindex(
        &self,
        storage: &dyn Storage,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<Reconciled> {
        match self {
            Self::Sqlite(index) => index.reindex(storage, progress).await,
            Self::Postgres(index) => index.reindex(storage, progress).await,
        }
    }
}

/// Search is off (`search_backend` empty): no results, nothing indexed.
struct Disabled;

#[async_trait]
impl SearchIndex for Disabled {
    async fn search(&self, _query: &SearchQuery) -> Result<SearchPage, SearchError> {
        Ok(SearchPage {
            total: 0,
            hits: Vec::new(),
        })
    }
    async fn upsert(&self, _name: &str, _description: Option<&str>) -> Result<(), SearchError> {
        Ok(())
    }
    async fn remove(&self, _name: &str) -> Result<(), SearchError> {
        Ok(())
    }
}

/// The index the settings ask for. With `sqlalchemy`, the database is opened
/// (and built from `storage` on first start) before the server listens.
pub async fn from_settings(
    settings: &Settings,
    storage: Arc<dyn Storage>,
) -> anyhow::Result<Arc<dyn SearchIndex>> {
    match settings.search.backend {
        SearchBackend::Disabled => Ok(Arc::new(Disabled)),
        SearchBackend::Sqlalchemy => {
            let location = database_location(settings)?;
            let (database, built) = Database::open(
                &location,
                storage.as_ref(),
                &indicatif::ProgressBar::hidden(),
            )
            .await?;
            let index = database.search_index();
            match built {
                Some(built) => log::info!(
                    "search index {location} built from storage: {} repositories",
                    built.added
                ),
                None => catch_up_in_background(database, storage, location),
            }
            Ok(index)
        }
    }
}

/// How long the walk that catches the index up at start may take; past it,
/// the walk is abandoned (logged) and `registry-v1 reindex` is the remedy.
pub const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// At start over an index built before: the repositories a crash left in
/// storage but not in the index are added (see [`Database::catch_up`]),
/// while the server already serves; found, added and the time taken logged.
fn catch_up_in_background(index: Database, storage: Arc<dyn Storage>, location: DatabaseLocation) {
    actix_web::rt::spawn(async move {
        let started = std::time::Instant::now();
        let progress = indicatif::ProgressBar::hidden();
        let walk = index.catch_up(storage.as_ref(), &progress);
        match tokio::time::timeout(CATCH_UP_TIMEOUT, walk).await {
            Ok(Ok(done)) if done.added > 0 => log::warn!(
                "search index {location} caught up with storage: {} repositories in storage, \
                 {} were missing (added), {:.1?}",
                done.found,
                done.added,
                started.elapsed()
            ),
            Ok(Ok(done)) => log::info!(
                "search index {location} in step with storage: {} repositories, {:.1?}",
                done.found,
                started.elapsed()
            ),
            Ok(Err(e)) => log::error!(
                "search index {location} not caught up with storage: {e:#} \
                 (run `registry-v1 reindex`)"
            ),
            Err(_) => log::error!(
                "search index {location} not caught up with storage within {:?} \
                 (run `registry-v1 reindex`)",
                CATCH_UP_TIMEOUT
            ),
        }
    });
}

/// The index a command run beside `serve` (`registry-v1 gc`) updates: the
/// configured database, when search is on and it exists already; `None`
/// when there is nothing to update (search off, or a SQLite file not made
/// yet, which the first `serve` builds from storage as it then is). An
/// index in memory belongs to each `serve` process: no other can reach it,
/// an error that says so.
pub async fn open_existing(
    settings: &Settings,
    storage: &dyn Storage,
) -> anyhow::Result<Option<Database>> {
    if settings.search.backend == SearchBackend::Disabled {
        return Ok(None);
    }
    let location = database_location(settings)?;
    match &location {
        DatabaseLocation::Memory => anyhow::bail!(
            "the search index of flavor `{}` is in memory (sqlite://): each registry process \
             has its own, which only it updates (or its restart rebuilds)",
            settings.flavor
        ),
        DatabaseLocation::File(path) if !path.exists() => return Ok(None),
        _ => {}
    }
    let (database, _) =
        Database::open(&location, storage, &indicatif::ProgressBar::hidden()).await?;
    Ok(Some(database))
}

/// A command run beside `serve` (`registry-v1 gc`, `delete-repository`,
/// named by `command`): the repositories that left the registry leave the
/// search index `serve` answers from, each said on standard output. The
/// command's work is done whatever happens here: an index out of reach is
/// a warning, and `registry-v1 reindex` the remedy.
pub async fn forget_beside_serve(
    command: &str,
    settings: &Settings,
    storage: &dyn Storage,
    gone: &[RepositoryName],
) {
    let names = gone
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let index = match open_existing(settings, storage).await {
        Ok(Some(index)) => index.search_index(),
        Ok(None) => return,
        Err(e) => {
            log::warn!(
                "{command}: search not updated ({e:#}): it lists {names}, which no longer pull, \
                 until `registry-v1 reindex`"
            );
            return;
        }
    };
    for name in gone {
        match index.remove(&name.to_string()).await {
            Ok(()) => println!("{name}: no tree holds it any longer, removed from search"),
            Err(e) => log::warn!(
                "{command}: search not updated for {name} ({e}): it lists it, which no longer \
                 pulls, until `registry-v1 reindex`"
            ),
        }
    }
}

/// Where `sqlalchemy_index_database` points, or why it cannot be used.
fn database_location(settings: &Settings) -> anyhow::Result<DatabaseLocation> {
    let url = settings.search.database.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "search_backend is sqlalchemy but sqlalchemy_index_database is not set \
             (flavor `{}`, {})",
            settings.flavor,
            settings.source
        )
    })?;
    DatabaseLocation::parse(url).map_err(|e| {
        anyhow::anyhow!(
            "sqlalchemy_index_database of flavor `{}` ({}): {e}",
            settings.flavor,
            settings.source
        )
    })
}

/// Keeps `index` in step with the repositories the API creates, pushes to,
/// describes and deletes.
pub fn subscriber(index: Arc<dyn SearchIndex>) -> Arc<dyn Subscriber> {
    Arc::new(IndexFollower(index))
}

struct IndexFollower(Arc<dyn SearchIndex>);

#[async_trait(?Send)]
impl Subscriber for IndexFollower {
    async fn on_event(&self, event: &Event) {
        let (name, result) = match event {
            // A repository made anew starts with the description it was
            // created with, or none, whatever a stale row said.
            Event::RepositoryCreated { name, description } => (
                name,
                self.0
                    .upsert(
                        &name.to_string(),
                        Some(description.as_deref().unwrap_or("")),
                    )
                    .await,
            ),
            // A push again keeps the description; setting one replaces it.
            Event::RepositoryUpdated { name, description } => (
                name,
                self.0
                    .upsert(&name.to_string(), description.as_deref())
                    .await,
            ),
            Event::RepositoryDeleted { name } => (name, self.0.remove(&name.to_string()).await),
            // A tag in either tree makes the repository pullable: back in
            // search if a delete in one tree took it out, its description
            // kept otherwise.
            Event::TagPushed { name, .. } => (name, self.0.upsert(&name.to_string(), None).await),
            Event::TagDeleted { .. } => return,
        };
        if let Err(e) = result {
            log::error!("search index not updated for {name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Events;

    async fn index_with_events() -> (Arc<sqlite::SqliteIndex>, Events, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let location = DatabaseLocation::File(dir.path().join("index.db"));
        let storage = walk::tests::MemoryStorage::default();
        let opened =
            sqlite::SqliteIndex::open(&location, &storage, &indicatif::ProgressBar::hidden())
                .await
                .unwrap();
        let index = Arc::new(opened.index);
        let events = Events::new();
        events.subscribe(subscriber(index.clone()));
        (index, events, dir)
    }

    async fn all(index: &sqlite::SqliteIndex) -> Vec<(String, Option<String>)> {
        let page = index
            .search(&SearchQuery {
                term: String::new(),
                page: 1,
                per_page: 100,
            })
            .await
            .unwrap();
        page.hits
            .into_iter()
            .map(|h| (h.name, h.description))
            .collect()
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[actix_web::test]
    async fn events_of_the_api_drive_the_index() {
        let (index, events, _dir) = index_with_events().await;
        let app = RepositoryName::parse("me/app").unwrap();
        let other = RepositoryName::parse("tool").unwrap();

        events
            .publish(Event::RepositoryCreated {
                name: app.clone(),
                description: None,
            })
            .await;
        events
            .publish(Event::RepositoryCreated {
                name: other.clone(),
                description: Some("A tool".into()),
            })
            .await;
        assert_eq!(
            all(&index).await,
            [
                ("library/tool".into(), some("A tool")),
                ("me/app".into(), some(""))
            ]
        );

        // Describing, then pushing again: the description stays.
        events
            .publish(Event::RepositoryUpdated {
                name: app.clone(),
                description: Some("My app".into()),
            })
            .await;
        events
            .publish(Event::RepositoryUpdated {
                name: app.clone(),
                description: None,
            })
            .await;
        events
            .publish(Event::TagPushed {
                name: app.clone(),
                tag: crate::names::Tag::parse("latest").unwrap(),
                target: crate::events::TagTarget::Image(
                    crate::names::ImageId::parse("0123456789abcdef").unwrap(),
                ),
            })
            .await;
        assert_eq!(all(&index).await[1], ("me/app".into(), some("My app")));
        let found = index
            .search(&SearchQuery {
                term: "my ap".into(),
                page: 1,
                per_page: 25,
            })
            .await
            .unwrap();
        assert_eq!(found.total, 1);
        assert_eq!(found.hits[0].name, "me/app");

        events
            .publish(Event::RepositoryDeleted { name: app.clone() })
            .await;
        assert_eq!(all(&index).await, [("library/tool".into(), some("A tool"))]);

        // Created again: a fresh repository, without the old description.
        events
            .publish(Event::RepositoryUpdated {
                name: app.clone(),
                description: Some("stale".into()),
            })
            .await;
        events
            .publish(Event::RepositoryCreated {
                name: app.clone(),
                description: None,
            })
            .await;
        assert_eq!(all(&index).await[1], ("me/app".into(), some("")));

        // A tag pushed (in either tree) to a repository search does not
        // hold brings it back.
        events
            .publish(Event::RepositoryDeleted {
                name: other.clone(),
            })
            .await;
        events
            .publish(Event::TagPushed {
                name: other.clone(),
                tag: crate::names::Tag::parse("v2").unwrap(),
                target: crate::events::TagTarget::Image(
                    crate::names::ImageId::parse("0123456789abcdef").unwrap(),
                ),
            })
            .await;
        assert_eq!(all(&index).await[0], ("library/tool".into(), some("")));
    }

    #[actix_web::test]
    async fn search_off_answers_nothing() {
        let page = Disabled
            .search(&SearchQuery {
                term: String::new(),
                page: 1,
                per_page: 25,
            })
            .await
            .unwrap();
        assert_eq!(page.total, 0);
        assert!(page.hits.is_empty());
    }
}
