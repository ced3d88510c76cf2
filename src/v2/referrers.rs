//! `GET /v2/<name>/referrers/<digest>`, with the `artifactType` filter.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{Error, Result};
use crate::registry::oci::{referrers, Digest};
use crate::registry::AppState;

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let name = super::name(&req)?;
    let subject = Digest::parse(req.match_info().get("digest").unwrap_or_default())?;
    let artifact_type = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Error::BadQuery(e.to_string()))?
        .into_inner()
        .into_iter()
        .find(|(k, v)| k == "artifactType" && !v.is_empty())
        .map(|(_, v)| v);
    let index = referrers::list(&*state.storage, &name, &subject, artifact_type.as_deref()).await?;
    let body = serde_json::to_string(&index).map_err(|e| {
        log::error!("referrers of {subject} in {name} not serialized: {e}");
        Error::Internal
    })?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CONTENT_TYPE, referrers::MEDIA_TYPE));
    if artifact_type.is_some() {
        resp.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    Ok(resp.body(body))
}
