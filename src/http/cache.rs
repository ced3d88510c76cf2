//! How an answer of the pull-through cache was made, on the wire, the same
//! for both APIs: `X-Registry-Cache: hit|miss|revalidated|stale`, and a
//! `Warning` (RFC 9111's 110) with a stale copy.

use actix_web::http::header::WARNING;
use actix_web::HttpResponseBuilder;

use crate::registry::mirror::Freshness;

/// Adds the headers; `None` (this registry's own content) adds none.
pub fn freshness(resp: &mut HttpResponseBuilder, freshness: Option<Freshness>) {
    let Some(freshness) = freshness else {
        return;
    };
    resp.insert_header(("X-Registry-Cache", freshness.as_str()));
    if freshness == Freshness::Stale {
        resp.insert_header((
            WARNING,
            "110 registry-v1 \"Response is Stale: the upstream could not be asked\"",
        ));
    }
}
