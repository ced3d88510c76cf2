//! Reading requests and shaping answers the way v1 clients expect: the
//! JSON body bound, cache headers, the docker User-Agent. What v2 shares
//! (bodies, ranges, blob serving) is in [`crate::http`].

use std::time::{Duration, SystemTime};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponseBuilder};
use bytes::Bytes;

use super::error::{Error, Result};
use crate::names::{ImageId, RepositoryName};
use crate::storage::layout::legacy as layout;

/// The most a JSON body (image json, tag, image list, properties) may
/// weigh. Real image JSON is a few KiB; a repository's image list of
/// thousands of entries stays well under this.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// Reads a small request body whole, refusing more than `limit` bytes.
pub async fn read_body(payload: web::Payload, limit: usize) -> Result<Bytes> {
    Ok(crate::http::body::read_body(payload, limit).await?)
}

pub fn image_id(raw: &str) -> Result<ImageId> {
    ImageId::parse(raw).ok_or(Error::InvalidImageId)
}

pub fn repository(raw: &str) -> Result<RepositoryName> {
    Ok(layout::storable(RepositoryName::parse(raw)?)?)
}

/// Seconds a pulled image may be cached: images never change once pushed.
const CACHE_TTL: Duration = Duration::from_secs(31_536_000);

/// The headers of image GETs: cacheable for a year, never "modified".
pub fn cache_headers(builder: &mut HttpResponseBuilder) {
    let expires = httpdate::fmt_http_date(SystemTime::now() + CACHE_TTL);
    builder
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000"))
        .insert_header((header::EXPIRES, expires))
        .insert_header((header::LAST_MODIFIED, "Thu, 01 Jan 1970 00:00:00 GMT"));
}

/// Whether the client already has the image (any `If-Modified-Since`
/// qualifies: nothing is modified after 1970).
pub fn not_modified(req: &HttpRequest) -> bool {
    req.headers().contains_key(header::IF_MODIFIED_SINCE)
}

/// The `product/version` pairs of a docker User-Agent:
/// `docker/1.3.0 go/go1.3.3 git-commit/c78088f kernel/3.16 os/linux arch/amd64`.
pub fn user_agent_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ua.split_whitespace()
        .filter_map(|word| {
            let (k, v) = word.split_once('/')?;
            (!k.is_empty() && !v.is_empty() && !v.contains('/'))
                .then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Whether the client is a docker engine older than 0.10 (the old registry
/// meant to refuse those layer uploads; its version parse never matched).
pub fn docker_older_than_0_10(req: &HttpRequest) -> bool {
    let Some((_, version)) = user_agent_pairs(req)
        .into_iter()
        .find(|(k, _)| k == "docker")
    else {
        return false;
    };
    let version = version.split('-').next().unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) < (0, 10),
        _ => false,
    }
}

pub use crate::http::header_value;

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn old_docker_clients_are_recognised() {
        let req = |ua: &str| {
            TestRequest::default()
                .insert_header(("User-Agent", ua))
                .to_http_request()
        };
        assert!(docker_older_than_0_10(&req("docker/0.9.1 go/go1.2")));
        assert!(docker_older_than_0_10(&req("docker/0.9.1-dev go/go1.2")));
        assert!(!docker_older_than_0_10(&req("docker/0.10.0 go/go1.2")));
        assert!(!docker_older_than_0_10(&req(
            "docker/1.3.0 go/go1.3.3 kernel/3.16 os/linux arch/amd64"
        )));
        assert!(!docker_older_than_0_10(&req("curl/8.0")));
        let pairs = user_agent_pairs(&req(
            "docker/1.3.0 go/go1.3.3 kernel/3.16 os/Linux arch/AMD64",
        ));
        assert_eq!(pairs[0], ("docker".into(), "1.3.0".into()));
        assert_eq!(pairs.len(), 5);
    }
}
