//! Repository search: one [`SearchIndex`] trait, the SQLite index behind
//! `search_backend: sqlalchemy`, and the empty index when search is off.
//!
//! OWNER: the search work (issue 5) fills this module in.

use async_trait::async_trait;

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The term, matched as a substring of name or description (ASCII
    /// case-insensitive); empty matches everything.
    pub term: String,
    /// From 1.
    pub page: u32,
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
    #[error("search index unavailable: {0}")]
    Unavailable(String),
}

/// A place that answers searches and follows the registry's repositories.
#[async_trait]
pub trait SearchIndex: Send + Sync {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError>;
    /// Adds a repository, or updates its description (`None`: keep it).
    async fn upsert(&self, name: &str, description: Option<&str>) -> Result<(), SearchError>;
    async fn remove(&self, name: &str) -> Result<(), SearchError>;
}

/// INTERIM: replaced by the search work. Search is off: no results.
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

/// INTERIM
pub async fn from_settings(
    _settings: &crate::config::Settings,
    _storage: std::sync::Arc<dyn crate::storage::Storage>,
) -> anyhow::Result<std::sync::Arc<dyn SearchIndex>> {
    Ok(std::sync::Arc::new(Disabled))
}

/// INTERIM
pub fn subscriber(
    index: std::sync::Arc<dyn SearchIndex>,
) -> std::sync::Arc<dyn crate::events::Subscriber> {
    struct Sub(std::sync::Arc<dyn SearchIndex>);
    #[async_trait]
    impl crate::events::Subscriber for Sub {
        async fn on_event(&self, _event: &crate::events::Event) {
            let _ = &self.0;
        }
    }
    std::sync::Arc::new(Sub(index))
}

/// INTERIM
pub async fn reindex_command(_settings: crate::config::Settings) -> anyhow::Result<()> {
    anyhow::bail!("reindex: search index not built yet")
}
