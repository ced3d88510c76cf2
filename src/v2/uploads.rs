//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (a new upload, a
//! monolithic push with `?digest=`, a mount with `?mount=&from=`) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::range_header;
use super::error::Result;
use super::{name, Error};
use crate::events::Action;
use crate::http::body;
use crate::registry::oci::uploads::{self, Chunk, Upload, UploadId};
use crate::registry::oci::{self, blobs, Algorithm, Digest, Name};
use crate::registry::AppState;

/// The first value of each query parameter we read.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(req: &HttpRequest) -> Self {
        // A query that does not parse is treated as no query: nothing we
        // read from it is required but `digest`, checked where needed.
        Self(
            web::Query::<Vec<(String, String)>>::from_query(req.query_string())
                .map(|q| q.into_inner())
                .unwrap_or_default(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `digest` a completing request must carry.
    fn digest(&self) -> Result<Digest> {
        let text = self
            .get("digest")
            .ok_or_else(|| Error::DigestInvalid("the digest parameter is missing".into()))?;
        Ok(Digest::parse(text)?)
    }
}

/// `Content-Length`, when the request has one.
fn content_length(req: &HttpRequest) -> Result<Option<u64>> {
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Error::SizeInvalid("Content-Length is not a number".into())),
    }
}

/// What `Content-Range` (`<first>-<last>`, as the spec writes it; a
/// `bytes` prefix is tolerated) and `Content-Length` say about the body.
/// `Err(())` for a `Content-Range` that does not parse: the caller answers
/// 416 with where the upload stands.
fn chunk(req: &HttpRequest) -> Result<std::result::Result<Chunk, ()>> {
    let length = content_length(req)?;
    let Some(value) = req.headers().get(header::CONTENT_RANGE) else {
        return Ok(Ok(Chunk {
            start: None,
            length,
        }));
    };
    let parsed = value.to_str().ok().and_then(|v| {
        let v = v.trim();
        let v = v
            .strip_prefix("bytes=")
            .or_else(|| v.strip_prefix("bytes "))
            .unwrap_or(v);
        let (first, last) = v.split_once('-')?;
        let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
        // No panic on `0-18446744073709551615`: the length must fit.
        let length = last.checked_sub(first)?.checked_add(1)?;
        Some((first, length))
    });
    let Some((first, length)) = parsed else {
        return Ok(Err(()));
    };
    // The range's length is checked against the body as it streams in
    // (after the start, so that a chunk out of order is a 416 whatever
    // its length): a `Content-Length` that differs fails there.
    Ok(Ok(Chunk {
        start: Some(first),
        length: Some(length),
    }))
}

fn location(name: &Name, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// Where an upload stands: `Location`, its id, and `Range`.
fn in_progress(
    mut resp: actix_web::HttpResponseBuilder,
    name: &Name,
    id: &UploadId,
    size: u64,
) -> HttpResponse {
    resp.insert_header((header::LOCATION, location(name, id)))
        .insert_header(("Docker-Upload-UUID", id.as_str()))
        .insert_header((header::RANGE, range_header(size)))
        .finish()
}

/// A blob now in the repository: 201 with its location and digest.
fn created(name: &Name, digest: &Digest) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v2/{name}/blobs/{digest}")))
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .finish()
}

/// Tells the notifications of a blob pushed.
async fn pushed(
    state: &AppState,
    req: &HttpRequest,
    name: &Name,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let path = format!("blobs/{digest}");
    let target = super::blob_target(digest, Some(size));
    super::record(state, req, Action::Push, name, &path, target).await
}

/// The upload a route names.
async fn open<'a>(req: &HttpRequest, state: &'a AppState, name: &'a Name) -> Result<Upload<'a>> {
    let id = UploadId::parse(req.match_info().get("uuid").unwrap_or_default())?;
    Ok(Upload::open(&*state.storage, name, id).await?)
}

/// `POST`: a mount, a monolithic push, or a new upload (202).
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let name = name(&req)?;
    let query = Query::of(&req);
    let storage = &*state.storage;
    // What the upload will be finished with, when the client says: it is
    // hashed so from the first byte (see `registry::oci::uploads`).
    let mut algorithm = match query.get("digest-algorithm") {
        Some(text) => Algorithm::parse(text)?,
        None => Algorithm::Sha256,
    };
    if let Some(mount) = query.get("mount") {
        // A mount that cannot be done (bad digest, unknown or missing
        // `from`, blob not there) falls back to a plain upload, as the
        // spec asks.
        let from = query.get("from").and_then(|f| Name::parse(f).ok());
        if let Ok(digest) = Digest::parse(mount) {
            if let Some(from) = from {
                if blobs::mount(storage, &from, &name, &digest).await? {
                    let target = crate::events::Target {
                        from_repository: Some(from.to_string()),
                        ..super::blob_target(&digest, None)
                    };
                    let path = format!("blobs/{digest}");
                    super::record(&state, &req, Action::Mount, &name, &path, target).await?;
                    return Ok(created(&name, &digest));
                }
            }
            // The client pushes that blob next.
            algorithm = digest.algorithm();
        }
    } else if query.get("digest").is_some() {
        let digest = query.digest()?;
        let length = content_length(&req)?;
        // A blob that could not fit in the quota is refused before a byte.
        if let Some(length) = length {
            oci::quota::room_for(storage, &state.rules, &name, length).await?;
        }
        let size =
            uploads::push(storage, &name, &digest, length, body::stream(payload), None).await?;
        pushed(&state, &req, &name, &digest, size).await?;
        return Ok(created(&name, &digest));
    }
    // Counted before the upload exists: a refused POST writes nothing.
    let slot = state.upload_sessions.reserve(storage, &name).await?;
    let upload = Upload::start_hashing(storage, &name, algorithm).await?;
    slot.opened(upload.id());
    Ok(in_progress(HttpResponse::Accepted(), &name, upload.id(), 0))
}

/// `GET`: where the upload stands (204).
pub async fn status(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let name = name(&req)?;
    let upload = open(&req, &state, &name).await?;
    let size = upload.offset().await?;
    Ok(in_progress(
        HttpResponse::NoContent(),
        &name,
        upload.id(),
        size,
    ))
}

/// `PATCH`: a chunk (with `Content-Range`) or a stream (without): 202.
pub async fn patch(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let name = name(&req)?;
    let upload = open(&req, &state, &name).await?;
    let appended = async {
        let Ok(chunk) = chunk(&req)? else {
            let size = upload.offset().await?;
            return Err(Error::RangeNotSatisfiable { size });
        };
        Ok(upload.append(chunk, body::stream(payload)).await?)
    };
    match appended.await {
        Ok(size) => Ok(in_progress(
            HttpResponse::Accepted(),
            &name,
            upload.id(),
            size,
        )),
        Err(e) => located(e, &name, upload.id()),
    }
}

/// A 416 also names the upload, as the spec shows it: the client resumes
/// from its `Range`.
fn located(error: Error, name: &Name, id: &UploadId) -> Result<HttpResponse> {
    if !matches!(error, Error::RangeNotSatisfiable { .. }) {
        return Err(error);
    }
    let mut resp = actix_web::ResponseError::error_response(&error);
    let headers = resp.headers_mut();
    if let Some(v) = crate::http::header_value(&location(name, id)) {
        headers.insert(header::LOCATION, v);
    }
    if let Some(v) = crate::http::header_value(id.as_str()) {
        headers.insert(header::HeaderName::from_static("docker-upload-uuid"), v);
    }
    Ok(resp)
}

/// `PUT ?digest=`: the last bytes, if any, then the blob is stored (201).
pub async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let name = name(&req)?;
    let upload = open(&req, &state, &name).await?;
    let digest = Query::of(&req).digest()?;
    let id = upload.id().clone();
    let completed = async {
        let Ok(chunk) = chunk(&req)? else {
            let size = upload.offset().await?;
            return Err(Error::RangeNotSatisfiable { size });
        };
        Ok(upload
            .complete(&digest, chunk, body::stream(payload))
            .await?)
    };
    match completed.await {
        Ok(size) => {
            state.upload_sessions.closed(&name, &id);
            pushed(&state, &req, &name, &digest, size).await?;
            Ok(created(&name, &digest))
        }
        Err(e) => located(e, &name, &id),
    }
}

/// `DELETE`: the upload and its bytes are gone (204).
pub async fn cancel(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let name = name(&req)?;
    let upload = open(&req, &state, &name).await?;
    let id = upload.id().clone();
    upload.cancel().await?;
    state.upload_sessions.closed(&name, &id);
    Ok(HttpResponse::NoContent().finish())
}
