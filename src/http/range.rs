//! The `Range` header of a download.

use actix_web::http::header::{self, HeaderMap};

use crate::storage::ByteRange;

/// A well-formed range that lies outside the file: a 416, whose
/// `Content-Range: bytes */<size>` names the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range not satisfiable in {size} bytes")]
pub struct Unsatisfiable {
    pub size: u64,
}

/// The single byte range a `Range` header asks of a `size`-byte file.
///
/// `Ok(None)`: serve the whole file (no header, a header we do not
/// understand, or several ranges: HTTP lets a server ignore those).
pub fn byte_range(headers: &HeaderMap, size: u64) -> Result<Option<ByteRange>, Unsatisfiable> {
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
    let unsatisfiable = Err(Unsatisfiable { size });
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn range(h: &str, size: u64) -> Result<Option<ByteRange>, Unsatisfiable> {
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
        assert_eq!(range("bytes=0-0", 10), Ok(r(0, 0)));
        assert_eq!(range("bytes=0-9", 10), Ok(r(0, 9)));
        assert_eq!(range("bytes=5-", 10), Ok(r(5, 9)));
        assert_eq!(range("bytes=5-100", 10), Ok(r(5, 9)));
        assert_eq!(range("bytes=-3", 10), Ok(r(7, 9)));
        assert_eq!(range("bytes=-30", 10), Ok(r(0, 9)));
        assert_eq!(range("bytes=9-9", 10), Ok(r(9, 9)));
    }

    #[test]
    fn ranges_outside_the_file_are_unsatisfiable() {
        for h in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
            assert_eq!(range(h, 10), Err(Unsatisfiable { size: 10 }), "{h}");
        }
        assert_eq!(range("bytes=0-", 0), Err(Unsatisfiable { size: 0 }));
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
            assert_eq!(range(h, 10), Ok(None), "{h}");
        }
    }
}
