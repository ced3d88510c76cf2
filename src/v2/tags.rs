//! `GET /v2/<name>/tags/list`, with `n`, `last` and the `Link` header.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::{Error, Result};
use crate::registry::AppState;

/// `n` and `last` from the query string.
pub(crate) fn paging(req: &HttpRequest) -> Result<(Option<usize>, Option<String>)> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Error::BadQuery(e.to_string()))?
        .into_inner();
    let mut n = None;
    let mut last = None;
    for (key, value) in pairs {
        match key.as_str() {
            "n" => {
                n = Some(value.parse::<usize>().map_err(|_| {
                    Error::BadQuery(format!("n must be a non-negative integer, not {value:?}"))
                })?)
            }
            "last" if !value.is_empty() => last = Some(value),
            _ => {}
        }
    }
    Ok((n, last))
}

/// The `Link` header to the page after `last`.
pub(crate) fn next_link(path: &str, n: usize, last: &str) -> (&'static str, String) {
    ("Link", format!("<{path}?n={n}&last={last}>; rel=\"next\""))
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let name = super::name(&req)?;
    let (n, last) = paging(&req)?;
    // The v2 tree's tags and the v1 repository's, else the upstream's.
    let ns = super::namespace(&req);
    let listed = state
        .mirror
        .tags(&*state.storage, &name, ns.as_deref(), n, last.as_deref())
        .await?;
    let page = listed.page;
    let mut resp = HttpResponse::Ok();
    super::cache_headers(&mut resp, None, listed.namespace.as_deref());
    resp.insert_header((header::CONTENT_TYPE, "application/json"));
    if let (true, Some(n), Some(last)) = (page.more, n, page.items.last()) {
        resp.insert_header(next_link(&format!("/v2/{name}/tags/list"), n, last));
    }
    Ok(resp.body(json!({ "name": name.as_str(), "tags": page.items }).to_string()))
}
