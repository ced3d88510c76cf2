//! The stand-in index, served when `standalone` is true: what a docker 1.x
//! client asks of an index (users, repository image lists, tokens) answered
//! locally, so that push and pull work against the registry alone.

use actix_web::http::header::{self, HeaderName};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{Error, Result};
use super::http::{self, JSON_BODY_LIMIT};
use super::response;
use crate::events::Event;
use crate::names::RepositoryName;
use crate::registry::auth::stand_in_token;
use crate::registry::legacy::{self as store, IndexUpdate};
use crate::registry::AppState;

pub async fn get_users() -> HttpResponse {
    response::json(StatusCode::OK, "OK")
}

pub async fn post_users(payload: web::Payload) -> Result<HttpResponse> {
    let body = http::read_body(payload, JSON_BODY_LIMIT).await?;
    serde_json::from_slice::<serde_json::Value>(&body).map_err(|_| Error::JsonDecoding)?;
    Ok(response::json(StatusCode::CREATED, "User Created"))
}

pub async fn put_user() -> HttpResponse {
    response::json_builder(StatusCode::NO_CONTENT).finish()
}

pub async fn put_auth() -> HttpResponse {
    response::json(StatusCode::OK, "OK")
}

/// `X-Docker-Endpoints`, `X-Docker-Token` and `WWW-Authenticate`, the way a
/// docker 1.x client expects them from an index.
fn with_token(
    mut resp: HttpResponse,
    state: &AppState,
    req: &HttpRequest,
    name: &RepositoryName,
    access: &str,
) -> HttpResponse {
    let endpoints = state
        .settings
        .registry_endpoints
        .clone()
        .unwrap_or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        });
    let token = stand_in_token(name, access);
    let headers = resp.headers_mut();
    if let Some(v) = http::header_value(&endpoints) {
        headers.insert(HeaderName::from_static("x-docker-endpoints"), v);
    }
    if let Some(v) = http::header_value(&token) {
        headers.insert(HeaderName::from_static("x-docker-token"), v.clone());
        headers.insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// `PUT /v1/repositories/<ns>/<repo>/` (200) and `.../images` (204): the
/// image list of a push, merged into what the repository had.
async fn put_images_with(
    state: &AppState,
    req: &HttpRequest,
    raw: &str,
    payload: web::Payload,
    status: StatusCode,
) -> Result<HttpResponse> {
    let name = http::repository(raw)?;
    let body = http::read_body(payload, JSON_BODY_LIMIT).await?;
    let event = match store::update_index_images(&*state.storage, &name, body).await? {
        IndexUpdate::Created => Event::RepositoryCreated {
            name: name.clone(),
            description: None,
        },
        IndexUpdate::Updated => Event::RepositoryUpdated {
            name: name.clone(),
            description: None,
        },
    };
    state.events.publish(event).await;
    let resp = if status == StatusCode::NO_CONTENT {
        response::json_builder(status).finish()
    } else {
        response::json(status, "")
    };
    Ok(with_token(resp, state, req, &name, "write"))
}

pub async fn put_repository(
    state: web::Data<AppState>,
    req: HttpRequest,
    repo: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    put_images_with(&state, &req, &repo, payload, StatusCode::OK).await
}

pub async fn put_images(
    state: web::Data<AppState>,
    req: HttpRequest,
    repo: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    put_images_with(&state, &req, &repo, payload, StatusCode::NO_CONTENT).await
}

pub async fn get_images(
    state: web::Data<AppState>,
    req: HttpRequest,
    repo: web::Path<String>,
) -> Result<HttpResponse> {
    let name = http::repository(&repo)?;
    let images = match store::index_images(&*state.storage, &name).await {
        // None here: the mirror's source index may know it (passed on,
        // with this registry's own endpoints and token, as the old mirror
        // answered).
        Err(store::Error::IndexImagesNotFound) => {
            match state.mirror.v1_index_images(&name).await? {
                Some(images) => images,
                None => return Err(store::Error::IndexImagesNotFound.into()),
            }
        }
        other => other?,
    };
    let resp = response::json_raw(StatusCode::OK, images);
    Ok(with_token(resp, &state, &req, &name, "read"))
}

pub async fn delete_images(
    state: web::Data<AppState>,
    req: HttpRequest,
    repo: web::Path<String>,
) -> Result<HttpResponse> {
    let name = http::repository(&repo)?;
    let resp = response::json_builder(StatusCode::NO_CONTENT).finish();
    Ok(with_token(resp, &state, &req, &name, "delete"))
}
