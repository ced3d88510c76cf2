//! Request bodies: read whole under a bound, or passed on as a stream.

use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::storage::ByteStream;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than the caller's bound (the bound is given).
    #[error("request body too large (at most {0} bytes)")]
    TooLarge(usize),
    /// The client broke off or sent a body that does not parse as HTTP.
    #[error("request body interrupted")]
    Interrupted,
}

/// The body length a request announces (`Content-Length`), if it does: a
/// body known to be too large is refused before a byte of it is read.
pub fn declared_length(headers: &actix_web::http::header::HeaderMap) -> Option<u64> {
    headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads a small request body whole, refusing more than `limit` bytes
/// before holding them.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, BodyError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Interrupted)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The body as the stream a storage driver consumes; a broken body shows
/// up as an error item, which the drivers report as `Interrupted`.
pub fn stream(payload: web::Payload) -> ByteStream {
    Box::pin(payload.map(|chunk| chunk.map_err(std::io::Error::other)))
}
