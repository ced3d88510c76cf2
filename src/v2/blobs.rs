//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::Result;
use super::{name, Error};
use crate::events::Action;
use crate::http::blob::{BlobError, Serving};
use crate::registry::oci::{blobs, Digest};
use crate::registry::{bridge, mirror, AppState};

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
    // A blob of the v2 tree, else a v1 layer or config (`registry::bridge`),
    // else the pull-through cache's.
    let whole =
        req.method() == actix_web::http::Method::GET && !req.headers().contains_key(header::RANGE);
    let ns = super::namespace(&req);
    let (answer, freshness, namespace) = state
        .mirror
        .blob(&state.storage, &name, ns.as_deref(), &digest, whole)
        .await?;
    let text = digest.to_string();
    if whole {
        let size = match &answer {
            mirror::blobs::Answer::Stored(source) => Some(source.size),
            mirror::blobs::Answer::Streaming { length, .. } => *length,
        };
        let path = format!("blobs/{digest}");
        let target = super::blob_target(&digest, size);
        super::record(&state, &req, Action::Pull, &name, &path, target).await?;
    }
    let source = match answer {
        mirror::blobs::Answer::Stored(source) => source,
        mirror::blobs::Answer::Streaming { length, body } => {
            let mut resp = HttpResponse::Ok();
            super::cache_headers(&mut resp, freshness, namespace.as_deref());
            resp.content_type("application/octet-stream")
                .insert_header(("Docker-Content-Digest", text.as_str()))
                .insert_header((header::ETAG, format!("\"{text}\"")));
            if let Some(length) = length {
                resp.no_chunking(length);
            }
            return Ok(resp.streaming(body));
        }
    };
    serve_stored(
        &req,
        &state,
        &source,
        &text,
        freshness,
        namespace.as_deref(),
    )
    .await
}

/// A stored blob (or v1 layer), whole or one range of it.
async fn serve_stored(
    req: &HttpRequest,
    state: &AppState,
    source: &bridge::BlobSource,
    text: &str,
    freshness: Option<mirror::Freshness>,
    namespace: Option<&str>,
) -> Result<HttpResponse> {
    if source.xz {
        return xz_layer(req, state, source, text).await;
    }
    let serving = Serving::from_settings(&state.settings.storage, &*state.storage);
    let resp = serving
        .serve(
            req,
            &source.path,
            source.size,
            StatusCode::TEMPORARY_REDIRECT,
            |b| {
                super::cache_headers(b, freshness, namespace);
                b.insert_header(("Docker-Content-Digest", text))
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
            Err(Error::BlobUnknown(text.to_owned()))
        }
        Err(BlobError::Storage(e)) => Err(e.into()),
    }
}

/// A v1 layer stored as xz, which no v2 client reads: the tar inside it,
/// whole (a `Range` is not honoured: the offsets are the tar's, and only
/// decompressing from the start reaches them).
async fn xz_layer(
    req: &HttpRequest,
    state: &AppState,
    source: &bridge::BlobSource,
    digest: &str,
) -> Result<HttpResponse> {
    let mut resp = HttpResponse::Ok();
    resp.content_type("application/octet-stream")
        .insert_header(("Docker-Content-Digest", digest))
        .insert_header((header::ETAG, format!("\"{digest}\"")))
        .insert_header((header::CACHE_CONTROL, "max-age=31536000"))
        .no_chunking(source.size);
    if req.method() == actix_web::http::Method::HEAD {
        let nothing = futures_util::stream::empty::<std::io::Result<bytes::Bytes>>();
        return Ok(resp.streaming(nothing));
    }
    let stream = bridge::xz_stream(&*state.storage, &source.path)
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::NotFound(_) => Error::BlobUnknown(digest.to_owned()),
            e => e.into(),
        })?;
    Ok(resp.streaming(stream))
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
    let path = format!("blobs/{digest}");
    let target = super::blob_target(&digest, None);
    super::record(&state, &req, Action::Delete, &name, &path, target).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .finish())
}
