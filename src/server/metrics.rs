//! Metrics of every request, and the listener a scrape reaches them on.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use bytes::Bytes;
use prometheus::IntCounter;

use crate::config::MetricsSettings;

/// The `api` label of a request path.
pub fn api_of(path: &str) -> &'static str {
    if path == "/v2" || path.starts_with("/v2/") {
        "v2"
    } else if path.starts_with("/v1/") || path == "/_ping" || path == "/" {
        "v1"
    } else {
        "other"
    }
}

/// A route pattern as a label: `/v2/{name:.+}/blobs/{digest}` reads
/// `/v2/{name}/blobs/{digest}`.
fn route_label(pattern: &str) -> String {
    let mut label = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        label.push(c);
        if c != '{' {
            continue;
        }
        // The segment's name, then skip its regex up to the brace that
        // closes the segment (regexes may hold braces of their own).
        let mut depth = 1;
        let mut in_name = true;
        for c in chars.by_ref() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 1 => in_name = false,
                _ => {}
            }
            if depth == 0 {
                label.push('}');
                break;
            }
            if in_name {
                label.push(c);
            }
        }
    }
    label
}

/// The `method` label: the methods the APIs have, others counted as one.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts the request, its latency and its bytes. Request bytes are
/// counted by the body limits (which already wrap the payload), response
/// bytes as the body is sent.
pub async fn measure(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let api = api_of(req.path());
    let method = method_label(req.method());
    let metrics = crate::metrics::get();
    let resp = next.call(req).await?;
    let route = resp
        .request()
        .match_pattern()
        .map_or_else(|| "unmatched".to_owned(), |p| route_label(&p));
    let status = resp.status();
    metrics
        .requests
        .with_label_values(&[api, &route, method, status.as_str()])
        .inc();
    metrics
        .latency
        .with_label_values(&[api, &route, method])
        .observe(started.elapsed().as_secs_f64());
    let sent = metrics.bytes_out.with_label_values(&[api]);
    Ok(resp.map_body(|_, body| {
        BoxBody::new(Counted {
            body: body.boxed(),
            sent,
        })
    }))
}

/// A response body that counts what it yields.
struct Counted {
    body: BoxBody,
    sent: IntCounter,
}

impl MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let poll = Pin::new(&mut self.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &poll {
            self.sent.inc_by(chunk.len() as u64);
        }
        poll
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // Whole bodies stay whole: actix writes them without polling.
        let Counted { body, sent } = self;
        match body.try_into_bytes() {
            Ok(bytes) => {
                sent.inc_by(bytes.len() as u64);
                Ok(bytes)
            }
            Err(body) => Err(Counted { body, sent }),
        }
    }
}

/// The scrape listener: one worker of its own, so that a scrape is
/// answered at once however busy the registry's workers are.
pub fn server(settings: &MetricsSettings) -> anyhow::Result<actix_web::dev::Server> {
    let path = settings.path.clone();
    let server = HttpServer::new(move || {
        App::new()
            .route(&path, web::get().to(scrape))
            .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
    })
    .workers(1)
    .disable_signals()
    .bind(&settings.address)
    .with_context(|| format!("metrics_address: cannot listen on {}", settings.address))?;
    Ok(server.run())
}

async fn scrape() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::get().render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_lose_their_regexes() {
        assert_eq!(
            route_label("/v2/{name:.+}/blobs/{digest}"),
            "/v2/{name}/blobs/{digest}"
        );
        assert_eq!(route_label("/v1/x/{a:[a-z]{2,3}}/y"), "/v1/x/{a}/y");
        assert_eq!(route_label("/v2/"), "/v2/");
    }

    #[test]
    fn paths_belong_to_their_api() {
        assert_eq!(api_of("/v2/"), "v2");
        assert_eq!(api_of("/v1/search"), "v1");
        assert_eq!(api_of("/_ping"), "v1");
        assert_eq!(api_of("/readyz"), "other");
    }
}
