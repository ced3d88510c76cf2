//! `GET /v2/`: the version check every client makes first.

use actix_web::HttpResponse;

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
