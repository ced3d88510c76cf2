//! `GET /v1/search?q=<term>&n=<page size>&page=<page>`: what `docker search`
//! and registry UIs call.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::error::Error;
use super::response;
use crate::registry::mirror::legacy::SourceSearch;
use crate::registry::AppState;
use crate::search::{SearchIndex, SearchQuery, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_TERM_CHARS};

/// The answer, in the fields `docker search` reads (the old Docker Hub's).
#[derive(Debug, Serialize)]
struct Answer<'a> {
    query: &'a str,
    num_results: u64,
    num_pages: u64,
    page: u64,
    page_size: u32,
    results: Vec<Hit>,
}

#[derive(Debug, Serialize)]
struct Hit {
    name: String,
    description: Option<String>,
    star_count: u32,
    is_official: bool,
    is_automated: bool,
}

pub async fn search(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let query = parse(req.query_string()).map_err(Error::BadQuery)?;
    // A v1 mirror source's answers for the same page are added (see
    // `registry::mirror::legacy`); none when it cannot answer.
    let source = state
        .mirror
        .v1_search(&query.term, query.page, query.per_page)
        .await;
    answer(state.search.as_ref(), query, source).await
}

async fn answer(
    index: &dyn SearchIndex,
    query: SearchQuery,
    source: Option<SourceSearch>,
) -> Result<HttpResponse, Error> {
    let page = index.search(&query).await.inspect_err(|e| {
        log::error!("search for {:?}: {e}", query.term);
    })?;
    let page_size = u64::from(query.per_page);
    let mut results: Vec<Hit> = page
        .hits
        .into_iter()
        .map(|hit| Hit {
            name: hit.name,
            description: hit.description,
            star_count: 0,
            is_official: false,
            is_automated: false,
        })
        .collect();
    let mut total = page.total;
    if let Some(source) = source {
        // Merged by name, this registry's own first: a repository both
        // hold is one result (the old mirror did the same, by name).
        let mut added = 0u64;
        let mut shared = 0u64;
        // At most a page of the source's: an answer stays within twice
        // the page size, whatever the source sends.
        for hit in source.results.into_iter().take(query.per_page as usize) {
            if results.iter().any(|r| r.name == hit.name) {
                shared += 1;
                continue;
            }
            added += 1;
            results.push(Hit {
                name: hit.name,
                description: hit.description,
                star_count: 0,
                is_official: false,
                is_automated: false,
            });
        }
        total = total
            .saturating_add(source.num_results)
            .saturating_sub(shared)
            .max(page.total + added);
    }
    Ok(response::json(
        StatusCode::OK,
        &Answer {
            query: &query.term,
            num_results: total,
            num_pages: total.div_ceil(page_size),
            page: query.page,
            page_size: query.per_page,
            results,
        },
    ))
}

/// `q` (default empty), `n` (1 to 100, default 25), `page` (from 1,
/// default 1); the first of each when repeated, as Flask read them.
fn parse(query_string: &str) -> std::result::Result<SearchQuery, String> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query_string)
        .map_err(|_| "Invalid query string".to_owned())?
        .into_inner();
    let first = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let term = first("q").unwrap_or_default().to_owned();
    if term.chars().count() > MAX_TERM_CHARS {
        return Err(format!("Invalid q: at most {MAX_TERM_CHARS} characters"));
    }
    let per_page = match first("n") {
        None => DEFAULT_PAGE_SIZE,
        Some(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| format!("Invalid n: must be an integer from 1 to {MAX_PAGE_SIZE}"))?,
    };
    let page = match first("page") {
        None => 1,
        // Any count of digits: a page past `u64::MAX` is as empty as any
        // other page past the last.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u64>() {
                Ok(0) => return Err("Invalid page: must be an integer from 1".to_owned()),
                Ok(p) => p,
                Err(_) if p.trim_start_matches('0').is_empty() => {
                    return Err("Invalid page: must be an integer from 1".to_owned())
                }
                Err(_) => u64::MAX,
            }
        }
        Some(_) => return Err("Invalid page: must be an integer from 1".to_owned()),
    };
    Ok(SearchQuery {
        term,
        page,
        per_page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(term: &str, page: u64, per_page: u32) -> SearchQuery {
        SearchQuery {
            term: term.into(),
            page,
            per_page,
        }
    }

    #[test]
    fn parameters_and_their_defaults() {
        assert_eq!(parse(""), Ok(q("", 1, 25)));
        assert_eq!(parse("q=busy+box&n=100&page=3"), Ok(q("busy box", 3, 100)));
        assert_eq!(parse("q=%25_%C3%A9&n=1"), Ok(q("%_é", 1, 1)));
        assert_eq!(parse("q=a&q=b"), Ok(q("a", 1, 25)));
        assert_eq!(parse("q="), Ok(q("", 1, 25)));
        assert_eq!(parse("other=1&q=x"), Ok(q("x", 1, 25)));
    }

    #[test]
    fn bad_page_sizes_and_pages_are_refused() {
        for bad in ["n=0", "n=101", "n=abc", "n=", "n=-1", "n=2.5"] {
            assert!(parse(bad).unwrap_err().starts_with("Invalid n"), "{bad}");
        }
        for bad in [
            "page=0", "page=x", "page=", "page=-2", "page=+3", "page=000",
        ] {
            assert!(parse(bad).unwrap_err().starts_with("Invalid page"), "{bad}");
        }
        // Past 2^32 and past u64: an empty page, not a refusal.
        assert_eq!(parse("page=99999999999"), Ok(q("", 99_999_999_999, 25)));
        assert_eq!(parse("page=4294967297"), Ok(q("", 4_294_967_297, 25)));
        assert_eq!(
            parse(&format!("page={}", "9".repeat(40))),
            Ok(q("", u64::MAX, 25))
        );
        let long = format!("q={}", "a".repeat(MAX_TERM_CHARS + 1));
        assert!(parse(&long).unwrap_err().starts_with("Invalid q"));
        assert!(parse(&format!("q={}", "é".repeat(MAX_TERM_CHARS))).is_ok());
    }

    use crate::search::sqlite::SqliteIndex;
    use crate::search::walk::tests::MemoryStorage;
    use crate::search::DatabaseLocation;
    use actix_web::body::to_bytes;
    use serde_json::{json, Value};

    async fn index(rows: &[(&str, Option<&str>)]) -> SqliteIndex {
        let folders: Vec<&str> = rows.iter().map(|(name, _)| *name).collect();
        let storage = MemoryStorage::with_repositories(&folders);
        let index = SqliteIndex::open(
            &DatabaseLocation::Memory,
            &storage,
            &indicatif::ProgressBar::hidden(),
        )
        .await
        .unwrap()
        .index;
        for (name, description) in rows {
            if let Some(d) = description {
                index.upsert(name, Some(d)).await.unwrap();
            }
        }
        index
    }

    async fn get(index: &SqliteIndex, query_string: &str) -> (u16, Value) {
        get_merged(index, query_string, None).await
    }

    async fn get_merged(
        index: &SqliteIndex,
        query_string: &str,
        source: Option<SourceSearch>,
    ) -> (u16, Value) {
        let resp = match parse(query_string) {
            Ok(query) => answer(index, query, source).await,
            Err(e) => Err(Error::BadQuery(e)),
        }
        .unwrap_or_else(|e| actix_web::ResponseError::error_response(&e));
        let status = resp.status().as_u16();
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/json"
        );
        assert_eq!(resp.headers().get("cache-control").unwrap(), "no-cache");
        let body = to_bytes(resp.into_body()).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn names(body: &Value) -> Vec<&str> {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect()
    }

    #[actix_web::test]
    async fn the_answer_docker_search_reads() {
        let index = index(&[("library/busybox", None), ("me/busy", Some("Busy app"))]).await;
        let (status, body) = get(&index, "q=busy&n=25").await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({
                "query": "busy",
                "num_results": 2,
                "num_pages": 1,
                "page": 1,
                "page_size": 25,
                "results": [
                    {"name": "library/busybox", "description": null, "star_count": 0,
                     "is_official": false, "is_automated": false},
                    {"name": "me/busy", "description": "Busy app", "star_count": 0,
                     "is_official": false, "is_automated": false},
                ]
            })
        );
        let (_, none) = get(&index, "q=nothing").await;
        assert_eq!(
            none,
            json!({"query": "nothing", "num_results": 0, "num_pages": 0, "page": 1,
                   "page_size": 25, "results": []})
        );
    }

    #[actix_web::test]
    async fn a_mirror_sources_answers_are_merged_by_name() {
        use crate::registry::mirror::legacy::SourceHit;
        let index = index(&[("library/busybox", None), ("me/busy", Some("Busy app"))]).await;
        let hit = |name: &str, description: &str| SourceHit {
            name: name.into(),
            description: Some(description.into()),
        };
        let source = SourceSearch {
            num_results: 2,
            results: vec![hit("me/busy", "the source's"), hit("up/busy", "upstream")],
        };
        let (status, body) = get_merged(&index, "q=busy", Some(source)).await;
        assert_eq!(status, 200);
        assert_eq!(names(&body), ["library/busybox", "me/busy", "up/busy"]);
        // This registry's own description wins for a name both hold.
        assert_eq!(body["results"][1]["description"], "Busy app");
        assert_eq!(
            (body["num_results"].as_u64(), body["num_pages"].as_u64()),
            (Some(3), Some(1))
        );
    }

    #[actix_web::test]
    async fn pagination_edges() {
        let rows: Vec<String> = (0..7).map(|i| format!("ns/app{i}")).collect();
        let rows: Vec<(&str, Option<&str>)> = rows.iter().map(|r| (r.as_str(), None)).collect();
        let index = index(&rows).await;
        let (_, body) = get(&index, "q=app&n=3&page=3").await;
        assert_eq!(
            (body["num_results"].as_u64(), body["num_pages"].as_u64()),
            (Some(7), Some(3))
        );
        assert_eq!(names(&body), ["ns/app6"]);
        let (_, body) = get(&index, "q=app&n=3&page=4").await;
        assert_eq!(body["num_results"], 7);
        assert_eq!(body["page"], 4);
        assert!(names(&body).is_empty());
        let (_, body) = get(&index, "n=7").await;
        assert_eq!(
            (body["num_pages"].as_u64(), names(&body).len()),
            (Some(1), 7)
        );
        let (_, body) = get(&index, "n=1&page=7").await;
        assert_eq!(names(&body), ["ns/app6"]);
        assert_eq!(body["num_pages"], 7);
        for bad in ["n=0", "n=101", "page=0", "n=x", "page=-1"] {
            let (status, body) = get(&index, bad).await;
            assert_eq!(status, 400, "{bad}");
            assert!(
                body["error"].as_str().unwrap().starts_with("Invalid"),
                "{bad}"
            );
        }
    }

    #[actix_web::test]
    async fn wildcards_are_literal_and_letters_beyond_ascii_match_exactly() {
        let index = index(&[
            ("a/50%_off", Some("sale")),
            ("a/50x-off", Some("no sale")),
            ("b/cafe", Some("Crème brûlée")),
        ])
        .await;
        let (_, body) = get(&index, "q=%25").await;
        assert_eq!(names(&body), ["a/50%_off"]);
        let (_, body) = get(&index, "q=_off").await;
        assert_eq!(names(&body), ["a/50%_off"]);
        let (_, body) = get(&index, "q=CR%C3%88ME").await;
        assert!(names(&body).is_empty());
        let (_, body) = get(&index, "q=CR%C3%A8ME+BR%C3%BBL").await;
        assert_eq!(body["query"], "CRèME BRûL");
        assert_eq!(names(&body), ["b/cafe"]);
    }
}
