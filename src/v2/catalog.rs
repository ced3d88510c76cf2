//! `GET /v2/_catalog`, with `n`, `last` and the `Link` header.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::Result;
use super::tags::{next_link, paging};
use crate::registry::{bridge, AppState};

/// The most names one answer holds: the walk is the costly part, so a
/// page is bounded whatever `n` says (the `Link` header leads on).
const PAGE_MAX: usize = 1000;

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let (n, last) = paging(&req)?;
    let n = n.unwrap_or(PAGE_MAX).min(PAGE_MAX);
    // The v2 tree's repositories and the v1 ones.
    let page = bridge::catalog(&*state.storage, Some(n), last.as_deref()).await?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CONTENT_TYPE, "application/json"));
    if let (true, Some(last)) = (page.more, page.items.last()) {
        resp.insert_header(next_link("/v2/_catalog", n, last));
    }
    Ok(resp.body(json!({ "repositories": page.items }).to_string()))
}
