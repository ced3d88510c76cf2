//! The shape of every v1 JSON answer, in one place (the server's JSON 404
//! for unknown routes uses it too).
//!
//! The old registry sent `Cache-Control: no-cache`, `Pragma: no-cache` and
//! `Expires: -1` with every JSON answer, errors included, and
//! `{"error": "<message>"}` for every error; clients and proxies rely on it.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;

/// A response builder with the JSON content type and the no-cache headers.
pub fn json_builder(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .insert_header((header::EXPIRES, HeaderValue::from_static("-1")));
    builder
}

/// `value` as JSON with the no-cache headers.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> HttpResponse {
    json_on(json_builder(status), value)
}

/// `value` as JSON on `builder` (one of [`json_builder`], with headers of
/// its own added).
pub fn json_on<T: Serialize + ?Sized>(mut builder: HttpResponseBuilder, value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => builder.body(body),
        // Our own types always serialize; this is a bug, not a client error.
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Internal error: {e}"),
        ),
    }
}

/// Bytes that already are JSON (stored documents), sent as they are.
pub fn json_raw(status: StatusCode, body: impl Into<bytes::Bytes>) -> HttpResponse {
    json_builder(status).body(body.into())
}

/// The JSON `true` the old registry answered a success with nothing to say.
pub fn ok_true() -> HttpResponse {
    json_raw(StatusCode::OK, "true")
}

/// `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn errors_are_json_with_no_cache_headers() {
        let resp = error(StatusCode::NOT_FOUND, "Image not found");
        assert_eq!(resp.status(), 404);
        let h = resp.headers();
        assert_eq!(h.get("content-type").unwrap(), "application/json");
        assert_eq!(h.get("cache-control").unwrap(), "no-cache");
        assert_eq!(h.get("pragma").unwrap(), "no-cache");
        assert_eq!(h.get("expires").unwrap(), "-1");
        let body = to_bytes(resp.into_body()).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"Image not found"}"#);
    }
}
