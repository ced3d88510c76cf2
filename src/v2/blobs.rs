//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::Result;
use super::{name, Error};
use crate::http::blob::{BlobError, Serving};
use crate::registry::oci::{blobs, links, Digest};
use crate::registry::AppState;

/// The digest a blob route names.
pub(crate) fn digest(req: &HttpRequest) -> Result<Digest> {
    Ok(Digest::parse(
        req.match_info().get("digest").unwrap_or_default(),
    )?)
}

/// A blob, whole or one `Range` of it (HEAD: its headers only).
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let name = name(&req)?;
    let digest = digest(&req)?;
    let info = blobs::stat(&*state.storage, &name, &digest).await?;
    let serving = Serving::from_settings(&state.settings.storage, &*state.storage);
    let text = digest.to_string();
    let resp = serving
        .serve(
            &req,
            &links::blob_data(&digest),
            info.size,
            StatusCode::TEMPORARY_REDIRECT,
            |b| {
                b.insert_header(("Docker-Content-Digest", text.as_str()))
                    .insert_header((header::ETAG, format!("\"{text}\"")))
                    // Content-addressed: the bytes behind a digest never change.
                    .insert_header((header::CACHE_CONTROL, "max-age=31536000"));
            },
        )
        .await;
    match resp {
        Ok(resp) => Ok(resp),
        Err(BlobError::Range(r)) => Err(Error::RangeInvalid { size: r.size }),
        // Collected between the stat and the read.
        Err(BlobError::Storage(crate::storage::StorageError::NotFound(_))) => {
            Err(Error::BlobUnknown(text))
        }
        Err(BlobError::Storage(e)) => Err(e.into()),
    }
}

/// Removes the blob from the repository (its bytes stay for the
/// collector): 202.
pub async fn delete(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let name = name(&req)?;
    let digest = digest(&req)?;
    if !state.settings.delete_enabled {
        return Ok(super::base::unsupported(
            "deletes are disabled on this registry",
            "GET, HEAD",
        ));
    }
    blobs::delete(&*state.storage, &name, &digest).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .finish())
}
