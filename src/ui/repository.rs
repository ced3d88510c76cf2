//! A repository's page: its tags, newest push first or by name, each with
//! what it names.

use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use super::error::Error;
use super::page::{self, Page};
use crate::registry::oci::{self, Name, Reference};
use crate::registry::{bridge, inspect, AppState};

/// Tags a page shows (each costs a manifest and a config read).
const PER_PAGE: usize = 100;
/// Summaries read at once, in the order shown.
const SUMMARIES_AT_ONCE: usize = 8;

#[derive(Deserialize)]
struct Params {
    sort: Option<String>,
    page: Option<usize>,
}

pub struct Row {
    pub tag: String,
    pub digest: String,
    pub short_digest: String,
    pub size: String,
    pub platforms: String,
    pub created: String,
    pub pushed: String,
}

#[derive(Template)]
#[template(path = "ui/repository.html")]
struct TagsPage {
    page: Page,
    name: String,
    pull_tag: String,
    total: usize,
    sort: &'static str,
    rows: Vec<Row>,
    previous: Option<usize>,
    next: Option<usize>,
}

/// `GET /repository/<name>?sort=pushed|name&page=N`. Both read every tag
/// with its push time in one listing (see `Storage::folders_holding_with_times`).
pub async fn tags(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let params = web::Query::<Params>::from_query(req.query_string())
        .map_err(|e| Error::BadRequest(format!("Bad query: {e}")))?
        .into_inner();
    let by_name = match params.sort.as_deref() {
        None | Some("pushed") => false,
        Some("name") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "Cannot sort by {other:?}: by name or pushed."
            )))
        }
    };
    let name = Name::parse(req.match_info().get("name").unwrap_or_default())
        .map_err(|e| Error::NotFound(e.to_string()))?;
    let storage = &*state.storage;
    let number = params.page.unwrap_or(1).max(1);
    let skip = (number - 1).saturating_mul(PER_PAGE);
    // Newest first; by name, the same listing sorted again.
    let mut all = bridge::tags_pushed(storage, &name).await?;
    if by_name {
        all.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let total = all.len();
    let shown: Vec<(String, SystemTime)> = all.into_iter().skip(skip).take(PER_PAGE).collect();
    // Read a few at once: each summary is a link, a manifest and a config
    // read, and one after another they were half the page's time.
    let named = &name;
    let summaries: Vec<_> = stream::iter(shown)
        .map(|(tag, pushed)| async move {
            let summary = match Reference::parse(&tag) {
                Ok(reference) => inspect::summary(storage, named, &reference).await,
                Err(e) => Err(oci::Error::ManifestUnknown(e.to_string())),
            };
            (tag, pushed, summary)
        })
        .buffered(SUMMARIES_AT_ONCE)
        .collect()
        .await;
    let mut rows = Vec::with_capacity(summaries.len());
    for (tag, pushed, summary) in summaries {
        let summary = match summary {
            Ok(summary) => summary,
            // Gone since the listing: left out.
            Err(oci::Error::ManifestUnknown(_) | oci::Error::NameUnknown(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let digest = summary.digest.to_string();
        rows.push(Row {
            short_digest: page::short_digest(&digest),
            digest,
            size: summary.size.map(page::size).unwrap_or_default(),
            platforms: match (&summary.artifact_type, summary.platforms.is_empty()) {
                (Some(artifact), true) => artifact.clone(),
                _ => summary.platforms.join(", "),
            },
            created: summary
                .created
                .as_deref()
                .map(page::created)
                .unwrap_or_default(),
            pushed: page::time(pushed),
            tag,
        });
    }
    let pull_tag = rows
        .first()
        .map_or_else(|| "latest".to_owned(), |r| r.tag.clone());
    page::html(&TagsPage {
        page: Page::of(&state, &req),
        name: name.to_string(),
        pull_tag,
        total,
        sort: if by_name { "name" } else { "pushed" },
        rows,
        previous: (number > 1).then(|| number - 1),
        next: (skip.saturating_add(PER_PAGE) < total)
            .then(|| number.checked_add(1))
            .flatten(),
    })
}
