//! `/v1/images/<id>/{json,layer,checksum,ancestry,files}`.

use actix_web::http::header::{self, HeaderName};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{Error, Result};
use super::gate;
use super::http::{self, JSON_BODY_LIMIT};
use super::response;
use crate::http::blob::Serving;
use crate::http::body;
use crate::names::ImageId;
use crate::registry::legacy as store;
use crate::registry::AppState;
use crate::storage::layout::legacy;

type Id = web::Path<String>;

/// The image a pull names: allowed, and completely pushed; fetched from
/// the mirror's v1 source first when this registry does not hold it (see
/// `registry::mirror::legacy`).
async fn pullable(state: &AppState, raw: &str) -> Result<ImageId> {
    let id = http::image_id(raw)?;
    let storage = &*state.storage;
    store::require_complete(storage, &id).await?;
    if state.mirror.has_v1_candidate() && !store::image_exists(storage, &id).await? {
        state.mirror.v1_image(storage, &id).await?;
        store::require_complete(storage, &id).await?;
    }
    Ok(id)
}

pub async fn put_json(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Id,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let storage = &*state.storage;
    let id = http::image_id(&id)?;
    let body = http::read_body(payload, JSON_BODY_LIMIT).await?;
    if !gate::may_push_image(&req, &id) {
        return Err(Error::NotInRepository);
    }
    store::put_image_json(storage, &id, body).await?;
    Ok(response::ok_true())
}

pub async fn put_layer(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Id,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let storage = &*state.storage;
    let id = http::image_id(&id)?;
    if http::docker_older_than_0_10(&req) {
        return Err(Error::ClientTooOld);
    }
    store::put_image_layer(storage, &id, body::stream(payload)).await?;
    Ok(response::ok_true())
}

pub async fn put_checksum(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Id,
) -> Result<HttpResponse> {
    let storage = &*state.storage;
    let id = http::image_id(&id)?;
    let checksum = req
        .headers()
        .get(X_DOCKER_CHECKSUM_PAYLOAD)
        .map(|v| v.to_str().unwrap_or("").trim());
    store::put_image_checksum(storage, &id, checksum).await?;
    Ok(response::ok_true())
}

/// A 304 for a client that has the image already.
fn not_modified() -> HttpResponse {
    let mut builder = HttpResponse::NotModified();
    http::cache_headers(&mut builder);
    builder.finish()
}

pub async fn get_json(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Id,
) -> Result<HttpResponse> {
    let storage = &*state.storage;
    let id = pullable(&state, &id).await?;
    let image = store::image_json(storage, &id).await?;
    if http::not_modified(&req) {
        return Ok(not_modified());
    }
    let mut resp = cached_json(image.json);
    let headers = resp.headers_mut();
    if let Some(size) = image.layer_size {
        headers.insert(X_DOCKER_SIZE, size.into());
    }
    if let Some(value) = image.checksum.as_deref().and_then(http::header_value) {
        headers.insert(X_DOCKER_CHECKSUM_PAYLOAD, value);
    }
    Ok(resp)
}

const X_DOCKER_SIZE: HeaderName = HeaderName::from_static("x-docker-size");
const X_DOCKER_CHECKSUM_PAYLOAD: HeaderName = HeaderName::from_static("x-docker-checksum-payload");

pub async fn get_ancestry(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Id,
) -> Result<HttpResponse> {
    let storage = &*state.storage;
    let id = pullable(&state, &id).await?;
    let ancestry = store::image_ancestry(storage, &id).await?;
    if http::not_modified(&req) {
        return Ok(not_modified());
    }
    Ok(cached_json(ancestry))
}

pub async fn get_files(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Id,
) -> Result<HttpResponse> {
    let storage = &*state.storage;
    let id = pullable(&state, &id).await?;
    if !store::image_exists(storage, &id).await? {
        return Err(Error::ImageNotFound);
    }
    if http::not_modified(&req) {
        return Ok(not_modified());
    }
    Ok(cached_json(store::image_files(storage, &id).await?))
}

/// Stored JSON with the cache headers instead of the no-cache ones.
fn cached_json(body: bytes::Bytes) -> HttpResponse {
    let mut resp = response::json_builder(StatusCode::OK);
    http::cache_headers(&mut resp);
    let mut resp = resp.body(body);
    resp.headers_mut().remove(header::PRAGMA);
    resp
}

pub async fn get_layer(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Id,
) -> Result<HttpResponse> {
    let storage = &*state.storage;
    let settings = &state.settings;
    let id = pullable(&state, &id).await?;
    let size = store::layer_size(storage, &id).await?;
    if http::not_modified(&req) {
        return Ok(not_modified());
    }
    let path = legacy::image_layer(&id);
    let serving = Serving::from_settings(&settings.storage, storage);
    Ok(serving
        .serve(&req, &path, size, StatusCode::FOUND, http::cache_headers)
        .await?)
}
