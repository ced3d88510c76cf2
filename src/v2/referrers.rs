//! `GET /v2/<name>/referrers/<digest>`, with the `artifactType` filter.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{Error, Result};
use crate::registry::oci::{referrers, Digest};
use crate::registry::AppState;

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let name = super::name(&req)?;
    let subject = Digest::parse(req.match_info().get("digest").unwrap_or_default())?;
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Error::BadQuery(e.to_string()))?
        .into_inner();
    let param = |key: &str| {
        query
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let artifact_type = param("artifactType");
    let page = referrers::page(
        &*state.storage,
        &name,
        &subject,
        artifact_type,
        param("last"),
        referrers::PAGE_READS,
        referrers::PAGE_BYTES,
    )
    .await?;
    let body = serde_json::to_string(&page.index).map_err(|e| {
        log::error!("referrers of {subject} in {name} not serialized: {e}");
        Error::Internal
    })?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CONTENT_TYPE, referrers::MEDIA_TYPE));
    if artifact_type.is_some() {
        resp.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    if let Some(last) = &page.next {
        // The same query, after the last digest this page looked at.
        let mut next = format!("/v2/{name}/referrers/{subject}?last={last}");
        if let Some(t) = artifact_type {
            let t = percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC);
            next.push_str(&format!("&artifactType={t}"));
        }
        resp.insert_header(("Link", format!("<{next}>; rel=\"next\"")));
    }
    Ok(resp.body(body))
}
