//! `GET /v2/`: the version check every client makes first.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use super::Error;

/// 200 with an empty JSON object: this registry speaks v2.
pub async fn check() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{}")
}

/// A path under `/v2` that no route takes.
pub async fn not_found() -> Result<HttpResponse, Error> {
    Err(Error::UnknownEndpoint)
}

/// A method the endpoint does not offer; `allow` lists those it does.
pub async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    unsupported("method not allowed on this endpoint", allow)
}

/// The 405 `UNSUPPORTED` of a method the endpoint does not offer (or not
/// here: deletes switched off), with the `Allow` that RFC 9110 requires.
pub fn unsupported(detail: &str, allow: &'static str) -> HttpResponse {
    let mut resp = Error::Unsupported(detail.into()).error_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}
