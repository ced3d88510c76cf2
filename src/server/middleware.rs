//! Cross-cutting concerns: the access log, CORS, the debug header.

use actix_cors::Cors;
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::{Condition, DefaultHeaders, Logger};
use actix_web::HttpResponse;

use crate::config::{CorsSettings, Settings};
use crate::v1::response;

/// One line per request, in the common log format plus time taken; a
/// request line longer than [`LOGGED_REQUEST_MAX`] bytes is cut.
pub fn access_log() -> Logger {
    Logger::new(r#"%a "%{request}xi" %s %b "%{User-Agent}i" %Dms"#).custom_request_replace(
        "request",
        |req| {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            bounded_request_line(req.method().as_str(), target, req.version())
        },
    )
}

/// The most bytes of a request line the access log keeps.
pub const LOGGED_REQUEST_MAX: usize = 512;

/// `%r` of the common log format (`GET /path?query HTTP/1.1`), its target
/// cut to [`LOGGED_REQUEST_MAX`] bytes with the length it had.
fn bounded_request_line(method: &str, target: &str, version: actix_web::http::Version) -> String {
    if target.len() <= LOGGED_REQUEST_MAX {
        return format!("{method} {target} {version:?}");
    }
    let mut end = LOGGED_REQUEST_MAX;
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{method} {}...({} bytes) {version:?}",
        &target[..end],
        target.len()
    )
}

/// `X-Docker-Registry-Config: <flavor>` on every answer when `debug` is on.
pub fn debug_header(settings: &Settings) -> Condition<DefaultHeaders> {
    Condition::new(
        settings.debug,
        DefaultHeaders::new().add(("X-Docker-Registry-Config", settings.flavor.clone())),
    )
}

/// CORS as the old flask-cors settings describe it; off without `origins`.
pub fn cors(settings: &CorsSettings) -> Condition<Cors> {
    let Some(origins) = &settings.origins else {
        return Condition::new(false, Cors::default());
    };
    let mut cors = Cors::default();
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors = match &settings.methods {
        Some(methods) => cors.allowed_methods(
            methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()),
        ),
        None => cors.allow_any_method(),
    };
    let headers: Vec<header::HeaderName> = settings
        .headers
        .iter()
        .filter_map(|h| header::HeaderName::try_from(h.as_str()).ok())
        .collect();
    if !headers.is_empty() {
        cors = cors.allowed_headers(headers);
    }
    if !settings.expose_headers.is_empty() {
        cors = cors.expose_headers(
            settings
                .expose_headers
                .iter()
                .filter_map(|h| header::HeaderName::try_from(h.as_str()).ok()),
        );
    }
    if settings.supports_credentials {
        cors = cors.supports_credentials();
    }
    cors = cors.max_age(settings.max_age.map(|s| s as usize));
    Condition::new(true, cors)
}

/// Unknown routes: a JSON 404 like every other error.
pub async fn not_found() -> HttpResponse {
    response::error(StatusCode::NOT_FOUND, "Not found")
}
