//! Reading requests and shaping answers the way v1 clients expect:
//! bounded bodies, byte ranges, cache headers, the docker User-Agent.

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponseBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::error::{Error, Result};
use crate::names::{ImageId, RepositoryName};
use crate::registry::AppState;
use crate::storage::ByteRange;

/// The most a JSON body (image json, tag, image list, properties) may
/// weigh. Real image JSON is a few KiB; a repository's image list of
/// thousands of entries stays well under this.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// Reads a small request body whole, refusing more than `limit` bytes
/// before reading them.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Error::Interrupted)?;
        if body.len() + chunk.len() > limit {
            return Err(Error::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

pub fn image_id(raw: &str) -> Result<ImageId> {
    ImageId::parse(raw).ok_or(Error::InvalidImageId)
}

pub fn repository(raw: &str) -> Result<RepositoryName> {
    RepositoryName::parse(raw).map_err(|_| Error::InvalidRepositoryName)
}

/// The repository a request names, once the request is allowed on it.
pub async fn authorised_repository(
    state: &AppState,
    req: &HttpRequest,
    raw: &str,
) -> Result<RepositoryName> {
    let name = repository(raw)?;
    state.auth.check(req, &*state.storage, Some(&name)).await?;
    Ok(name)
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

/// The single byte range a `Range` header asks of a `size`-byte file.
///
/// `Ok(None)`: serve the whole file (no header, a header we do not
/// understand, or several ranges: HTTP lets a server ignore those).
/// `Err(RangeNotSatisfiable)`: a well-formed range outside the file.
pub fn byte_range(headers: &HeaderMap, size: u64) -> Result<Option<ByteRange>> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let unsatisfiable = Err(Error::RangeNotSatisfiable { size });
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        // `bytes=a-b` and `bytes=a-`
        (false, _) => {
            let Some(first) = parse(first) else {
                return Ok(None);
            };
            let last = if last.trim().is_empty() {
                size.saturating_sub(1)
            } else {
                match parse(last) {
                    Some(l) if l >= first => l.min(size.saturating_sub(1)),
                    _ => return Ok(None),
                }
            };
            if first >= size {
                return unsatisfiable;
            }
            ByteRange { first, last }
        }
        // `bytes=-n`: the last n bytes.
        (true, false) => match parse(last) {
            Some(0) => return unsatisfiable,
            Some(n) if size > 0 => ByteRange {
                first: size.saturating_sub(n),
                last: size - 1,
            },
            Some(_) => return unsatisfiable,
            None => return Ok(None),
        },
        (true, true) => return Ok(None),
    };
    Ok(Some(range))
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

/// A header value from text we produced; `None` if it cannot be one.
pub fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn range(h: &str, size: u64) -> Result<Option<ByteRange>> {
        let req = TestRequest::default()
            .insert_header(("Range", h))
            .to_http_request();
        byte_range(req.headers(), size)
    }

    fn r(first: u64, last: u64) -> Option<ByteRange> {
        Some(ByteRange { first, last })
    }

    #[test]
    fn ranges_follow_the_http_standard() {
        assert_eq!(range("bytes=0-0", 10).unwrap(), r(0, 0));
        assert_eq!(range("bytes=0-9", 10).unwrap(), r(0, 9));
        assert_eq!(range("bytes=5-", 10).unwrap(), r(5, 9));
        assert_eq!(range("bytes=5-100", 10).unwrap(), r(5, 9));
        assert_eq!(range("bytes=-3", 10).unwrap(), r(7, 9));
        assert_eq!(range("bytes=-30", 10).unwrap(), r(0, 9));
        assert_eq!(range("bytes=9-9", 10).unwrap(), r(9, 9));
    }

    #[test]
    fn ranges_outside_the_file_are_unsatisfiable() {
        for h in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
            assert!(matches!(
                range(h, 10),
                Err(Error::RangeNotSatisfiable { size: 10 })
            ));
        }
        assert!(range("bytes=0-", 0).is_err());
    }

    #[test]
    fn ranges_we_do_not_understand_are_ignored() {
        for h in [
            "items=0-1",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=0-1,3-4",
            "bytes=-",
            "bytes=3",
        ] {
            assert_eq!(range(h, 10).unwrap(), None, "{h}");
        }
    }

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
