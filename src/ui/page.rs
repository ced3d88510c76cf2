//! What every page shares: where the pages live, who is looking, and how
//! figures are written for people.

use std::time::SystemTime;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use askama::Template;

use super::error::Error;
use crate::http::activity::Actor;
use crate::registry::AppState;

/// The frame of every page (`templates/ui/base.html`).
pub struct Page {
    /// `web_ui_prefix`: every link starts with it.
    pub prefix: String,
    /// The registry as clients name it (the request's host), for the pull
    /// lines.
    pub host: String,
    /// Who logged in, when someone did.
    pub user: Option<String>,
    pub version: &'static str,
}

impl Page {
    pub fn of(state: &AppState, req: &HttpRequest) -> Self {
        Self {
            prefix: state.settings.web_ui.prefix.clone(),
            host: req.connection_info().host().to_owned(),
            user: req
                .extensions()
                .get::<Actor>()
                .and_then(|actor| actor.0.clone()),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// A rendered page, 200, never stored by shared caches (what it shows
/// depends on the login).
pub fn html(template: &impl Template) -> Result<HttpResponse, Error> {
    let body = template
        .render()
        .map_err(|e| Error::Render(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .body(body))
}

/// Whether a client asks for a page rather than the JSON of `GET /`: it
/// names `text/html` in its `Accept` (browsers do; curl's `*/*` does not),
/// with a weight above 0.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let kind = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            kind.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// `/prefix` to `/prefix/`, where the list lives.
pub async fn to_home(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((
            header::LOCATION,
            format!("{}/", state.settings.web_ui.prefix),
        ))
        .finish()
}

/// `1.2 MB`: powers of 1000, as docker prints sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.2} {}", UNITS[unit])
    } else if value < 100.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `2026-12-07 14:03:05 UTC`.
pub fn time(at: SystemTime) -> String {
    jiff::Timestamp::try_from(at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// An image config's `created` (RFC 3339, any offset, as build hosts
/// wrote it), in the same form as push times; kept as written when it
/// does not parse.
pub fn created(text: &str) -> String {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| text.to_owned())
}

/// `sha256:0123456789ab`: enough to tell digests apart on a page.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => digest.chars().take(19).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn browsers_get_pages_and_clients_get_json() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_html(&headers)
        };
        assert!(accepts(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(accepts("TEXT/HTML"));
        assert!(!accepts("*/*"));
        assert!(!accepts("application/json"));
        assert!(!accepts("text/html;q=0, application/json"));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn figures_read_as_docker_prints_them() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1000), "1.00 kB");
        assert_eq!(size(52_428_800), "52.4 MB");
        assert_eq!(size(123_456_789_012), "123 GB");
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(
            created("2026-01-02T03:04:05.123+01:00"),
            "2026-01-02 02:04:05 UTC"
        );
        assert_eq!(created("yesterday"), "yesterday");
    }
}
