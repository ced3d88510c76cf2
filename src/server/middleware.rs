//! Cross-cutting concerns: the access log, CORS, the debug header, body
//! limits.

use actix_cors::Cors;
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::{Condition, DefaultHeaders, Logger};
use actix_web::{HttpMessage, HttpResponse};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::config::{CorsSettings, Settings};
use crate::v1::response;

/// Uploads being served, across the workers.
#[derive(Clone, Default)]
pub struct Uploads(Arc<AtomicUsize>);

/// One upload counted in [`Uploads`], until dropped.
struct UploadSlot(Arc<AtomicUsize>);

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::get().uploads.dec();
    }
}

impl Uploads {
    fn take(&self, cap: usize) -> Option<UploadSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| {
                crate::metrics::get().uploads.inc();
                UploadSlot(self.0.clone())
            })
    }
}

/// Whether a request is an upload counted against `max_concurrent_uploads`:
/// v1 image json and layer PUTs, v2 blob upload POSTs, PATCHes and PUTs.
fn is_upload(method: &Method, path: &str) -> bool {
    if let Some(rest) = path.strip_prefix("/v1/images/") {
        return *method == Method::PUT && (rest.ends_with("/layer") || rest.ends_with("/json"));
    }
    path.starts_with("/v2/")
        && (path.contains("/blobs/uploads/") || path.ends_with("/blobs/uploads"))
        && matches!(*method, Method::POST | Method::PATCH | Method::PUT)
}

/// Bodies with an idle timeout (`body_idle_timeout`) on every request, and
/// at most `max_concurrent_uploads` uploads at once: beyond, 429 (v1: its
/// JSON error; v2: `TOOMANYREQUESTS`), with `Retry-After`.
pub async fn body_limits(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Only PUT, POST and PATCH handlers read a body (and uploads are among
    // them): the others, most requests, pass untouched.
    if !matches!(*req.method(), Method::PUT | Method::POST | Method::PATCH) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<actix_web::web::Data<crate::registry::AppState>>() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let settings = state.settings.clone();
    let uploads = req.app_data::<Uploads>().cloned().unwrap_or_default();
    let slot = if is_upload(req.method(), req.path()) {
        match uploads.take(settings.max_concurrent_uploads) {
            Some(slot) => Some(slot),
            None => {
                let cap = settings.max_concurrent_uploads;
                let path: String = req.path().chars().take(200).collect();
                log::warn!("{} {path}: refused, {cap} uploads already", req.method());
                let message = format!("too many uploads at once (at most {cap}); retry later");
                let mut resp = if req.path().starts_with("/v2/") {
                    actix_web::ResponseError::error_response(
                        &crate::v2::error::Error::TooManyRequests(message),
                    )
                } else {
                    response::error(StatusCode::TOO_MANY_REQUESTS, &message)
                };
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                return Ok(req.into_response(resp));
            }
        }
    } else {
        None
    };
    let path: String = req.path().chars().take(200).collect();
    let what = format!("{} {path}", req.method());
    // Counted only where something scrapes the count.
    let api = settings
        .metrics
        .is_some()
        .then(|| super::metrics::api_of(req.path()));
    let body = idle_timeout_payload(req.take_payload(), settings.body_idle_timeout, what, api);
    req.set_payload(body);
    let resp = next.call(req).await;
    drop(slot);
    Ok(resp?.map_into_boxed_body())
}

/// The body, with an idle timeout, and its bytes counted for the metrics
/// of `api` when given.
fn idle_timeout_payload(
    payload: Payload,
    idle: std::time::Duration,
    what: String,
    api: Option<&'static str>,
) -> Payload {
    use futures_util::StreamExt;
    let stream = crate::http::body::idle_timeout(payload, idle, what);
    let Some(api) = api else {
        return Payload::Stream {
            payload: Box::pin(stream),
        };
    };
    let read = crate::metrics::get().bytes_in.with_label_values(&[api]);
    Payload::Stream {
        payload: Box::pin(stream.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                read.inc_by(chunk.len() as u64);
            }
        })),
    }
}

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
pub(super) fn bounded_request_line(
    method: &str,
    target: &str,
    version: actix_web::http::Version,
) -> String {
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
