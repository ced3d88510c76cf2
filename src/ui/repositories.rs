//! The repository list: every repository of both trees, found as one types
//! through the search index (`/v1/search`'s), paged; each with its tag
//! count, last push and size.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use super::error::Error;
use super::page::{self, Page};
use crate::config::SearchBackend;
use crate::registry::oci::{self, Name};
use crate::registry::{bridge, inspect, AppState};
use crate::search::{SearchQuery, MAX_TERM_CHARS};

/// Repositories a page lists.
const PER_PAGE: u32 = 50;

/// How long a page waits for the sizes of its rows. A size not counted by
/// then is shown as not known yet; what was read is kept
/// ([`inspect::Sizes`]), so that the next load counts further on.
const SIZES_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// Repositories counted at once.
const SIZES_AT_ONCE: usize = 4;

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    q: String,
    page: Option<u64>,
}

pub struct Row {
    /// As clients pull it.
    pub name: String,
    pub description: String,
    /// Tags of both trees (a listing of each).
    pub tags: usize,
    /// When its newest tag was pushed (read with the listing).
    pub pushed: String,
    /// What it holds (see [`inspect::Sizes`]), in bytes, and shown;
    /// `None` when not counted.
    pub bytes: Option<u64>,
    pub size: String,
}

/// One page of the list; the rows are also served alone, for searching as
/// one types.
pub struct Listing {
    pub term: String,
    pub total: u64,
    pub rows: Vec<Row>,
    pub previous: Option<u64>,
    pub next: Option<u64>,
}

#[derive(Template)]
#[template(path = "ui/repositories.html")]
struct ListPage {
    page: Page,
    term: String,
    list: Listing,
}

#[derive(Template)]
#[template(path = "ui/repository_rows.html")]
struct Rows {
    page: Page,
    list: Listing,
}

/// `GET /`: the list, with the search box.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let list = listing(&state, &req).await?;
    page::html(&ListPage {
        page: Page::of(&state, &req),
        term: list.term.clone(),
        list,
    })
}

/// `GET /-/search?q=`: the rows alone.
pub async fn rows(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let list = listing(&state, &req).await?;
    page::html(&Rows {
        page: Page::of(&state, &req),
        list,
    })
}

async fn listing(state: &AppState, req: &HttpRequest) -> Result<Listing, Error> {
    let params = web::Query::<Params>::from_query(req.query_string())
        .map_err(|e| Error::BadRequest(format!("Bad query: {e}")))?
        .into_inner();
    let term: String = params.q.trim().chars().take(MAX_TERM_CHARS).collect();
    let number = params.page.unwrap_or(1).max(1);
    let (total, rows) = if state.settings.search.backend == SearchBackend::Disabled {
        from_storage(state, &term, number).await?
    } else {
        from_index(state, &term, number).await?
    };
    let rows_len = rows.len() as u64;
    // Only what the viewer may pull (a token service may grant the
    // catalog and not every repository in it).
    let mut shown = Vec::with_capacity(rows.len());
    for row in rows {
        if let Ok(name) = Name::parse(&row.name) {
            if super::gate::may_pull(state, req, &name).await {
                shown.push(row);
            }
        }
    }
    // Those left out of this page are not counted (those of other pages
    // are, until someone pages there).
    let total = total.saturating_sub(rows_len - shown.len() as u64);
    let mut rows = shown;
    for row in &mut rows {
        let Ok(name) = Name::parse(&row.name) else {
            continue;
        };
        let tags = match bridge::tags_pushed(&*state.storage, &name).await {
            Ok(tags) => tags,
            // Gone since the index was written: listed with none.
            Err(oci::Error::NameUnknown(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        row.tags = tags.len();
        // Newest first.
        row.pushed = tags
            .first()
            .map(|(_, at)| page::time(*at))
            .unwrap_or_default();
    }
    let deadline = tokio::time::Instant::now() + SIZES_WAIT;
    let sizes: Vec<Option<u64>> = stream::iter(&rows)
        .map(|row| size(state, &row.name, deadline))
        .buffered(SIZES_AT_ONCE)
        .collect()
        .await;
    for (row, bytes) in rows.iter_mut().zip(sizes) {
        row.size = bytes.map(page::size).unwrap_or_default();
        row.bytes = bytes;
    }
    let shown = (number - 1)
        .saturating_mul(u64::from(PER_PAGE))
        .saturating_add(rows.len() as u64);
    Ok(Listing {
        term,
        total,
        rows,
        previous: (number > 1).then(|| number - 1),
        next: (shown < total).then(|| number.checked_add(1)).flatten(),
    })
}

/// The size of repository `name` (nothing when gone since the index was
/// written); `None` when it was not counted by `deadline` or could not be.
async fn size(state: &AppState, name: &str, deadline: tokio::time::Instant) -> Option<u64> {
    let name = Name::parse(name).ok()?;
    let counting = state.sizes.repository(&*state.storage, &name);
    match tokio::time::timeout_at(deadline, counting).await {
        Ok(Ok(bytes)) => Some(bytes.unwrap_or(0)),
        Err(_) => None,
        Ok(Err(e)) => {
            log::warn!("the size of {name} could not be counted: {e}");
            None
        }
    }
}

async fn from_index(state: &AppState, term: &str, number: u64) -> Result<(u64, Vec<Row>), Error> {
    let found = state
        .search
        .search(&SearchQuery {
            term: term.to_owned(),
            page: number,
            per_page: PER_PAGE,
        })
        .await?;
    let hits = found.hits.len() as u64;
    let mut rows = Vec::with_capacity(found.hits.len());
    for hit in found.hits {
        if let Some(name) = inspect::pull_name(&*state.storage, &hit.name).await? {
            rows.push(Row {
                name: name.to_string(),
                description: hit.description.unwrap_or_default(),
                tags: 0,
                pushed: String::new(),
                bytes: None,
                size: String::new(),
            });
        }
    }
    // A name the v2 grammar does not take is not listed, nor counted.
    let total = found.total.saturating_sub(hits - rows.len() as u64);
    Ok((total, rows))
}

/// Without a search index (`search_backend` empty), the storage's own
/// list: every repository read on each page, fine for a small registry.
async fn from_storage(state: &AppState, term: &str, number: u64) -> Result<(u64, Vec<Row>), Error> {
    let all = bridge::catalog(&*state.storage, None, None).await?.items;
    let term = term.to_ascii_lowercase();
    let matching: Vec<String> = all.into_iter().filter(|n| n.contains(&term)).collect();
    let skip =
        usize::try_from((number - 1).saturating_mul(u64::from(PER_PAGE))).unwrap_or(usize::MAX);
    let rows = matching
        .iter()
        .skip(skip)
        .take(PER_PAGE as usize)
        .map(|name| Row {
            name: name.clone(),
            description: String::new(),
            tags: 0,
            pushed: String::new(),
            bytes: None,
            size: String::new(),
        })
        .collect();
    Ok((matching.len() as u64, rows))
}
