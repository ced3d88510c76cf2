//! What both APIs share on the wire, below their handlers and above the
//! model: bounded request bodies ([`body`]), the hashing tap on a body on
//! its way to storage ([`tap`]), `Range` headers ([`range`]) and serving a
//! stored file ([`blob`]: ranges, redirects, X-Accel-Redirect, streaming),
//! the auth [`gate`] every gated route passes before its handler, the
//! headers that say how the pull-through [`cache`] made an answer, and the
//! [`health`] probes, which belong to neither API; what a notification
//! says of a request ([`activity`]); deleting a tag or a manifest with
//! what follows it ([`deletes`]), for the APIs and the pages alike.
//!
//! Nothing here knows an API's error shape: each function returns a small
//! error of its own, which v1 and v2 map to their wire errors.

pub mod activity;
pub mod blob;
pub mod body;
pub mod cache;
pub mod deletes;
pub mod gate;
pub mod health;
pub mod range;

/// The hashing tap on a body stream; the model computes digests with it too.
pub use crate::registry::tap;

use actix_web::http::header::HeaderValue;

/// A header value from text we produced; `None` if it cannot be one.
pub fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(s).ok()
}
