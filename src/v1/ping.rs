//! `GET /`, `GET /_ping`, `GET /v1/_ping`: is this a registry, and which kind.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::response;
use crate::registry::AppState;

/// The `issue` setting, as a JSON string.
pub async fn root(state: web::Data<AppState>) -> HttpResponse {
    let mut answer = response::json(StatusCode::OK, &state.settings.issue);
    // Browsers get the web pages here instead (by their Accept), so a
    // cache must keep the two answers apart.
    let ui = &state.settings.web_ui;
    if ui.enabled && ui.prefix.is_empty() {
        answer.headers_mut().insert(
            actix_web::http::header::VARY,
            actix_web::http::header::HeaderValue::from_static("Accept"),
        );
    }
    answer
}

/// `{}`; with `debug`, versions, host and launch details. The
/// `X-Docker-Registry-Standalone` header is what `docker search` and docker
/// 1.x read to decide whether to talk to an index.
pub async fn ping(state: web::Data<AppState>) -> HttpResponse {
    let settings = &state.settings;
    let standalone = if settings.mirroring {
        "mirror"
    } else if settings.standalone {
        "True"
    } else {
        "False"
    };
    let body = if settings.debug {
        json!({
            "versions": {
                "registry-v1": env!("CARGO_PKG_VERSION"),
            },
            "host": [
                std::env::consts::OS,
                hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
                std::env::consts::ARCH,
            ],
            "launch": std::env::args().collect::<Vec<_>>(),
        })
    } else {
        json!({})
    };
    let mut resp = response::json(StatusCode::OK, &body);
    resp.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("x-docker-registry-standalone"),
        actix_web::http::header::HeaderValue::from_static(standalone),
    );
    resp
}
