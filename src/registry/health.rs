//! Readiness: whether the backends a request needs answer now.
//!
//! Each check is one cheap round trip (a `HEAD` of one key on S3, a stat on
//! disk, a one-row search), bounded by [`CHECK_TIMEOUT`], so that a probe
//! learns of a hung backend before its own timeout gives up on us.

use std::time::Duration;

use crate::registry::AppState;
use crate::search::SearchQuery;

/// How long one backend may take to answer a readiness check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One backend's answer: `None` when it is ready, else why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub storage: Option<String>,
    pub search: Option<String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.storage.is_none() && self.search.is_none()
    }
}

/// Asks the storage backend and the search index at once.
pub async fn readiness(state: &AppState) -> Readiness {
    let storage = async {
        // A key no layout writes at the root: found or not, the backend
        // answered.
        match tokio::time::timeout(CHECK_TIMEOUT, state.storage.exists("_readiness")).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        }
    };
    let search = async {
        let query = SearchQuery {
            term: String::new(),
            page: 1,
            per_page: 1,
        };
        match tokio::time::timeout(CHECK_TIMEOUT, state.search.search(&query)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        }
    };
    let (storage, search) = futures_util::join!(storage, search);
    Readiness { storage, search }
}
