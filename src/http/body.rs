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

/// The body as it reaches the handlers, ended by an error when the client
/// sends no byte for `idle` (a slow or stalled client cannot hold a
/// connection and a temporary file forever). The error reads as a broken
/// body everywhere: `read_body` answers `Interrupted`, a storage driver
/// removes its temporary file, a v2 upload does not acknowledge the
/// request's bytes.
pub fn idle_timeout<S>(
    body: S,
    idle: std::time::Duration,
    what: String,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>>
where
    S: futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>> + Unpin,
{
    futures_util::stream::unfold(Some(body), move |body| {
        let what = what.clone();
        async move {
            let mut body = body?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(item)) => Some((item, Some(body))),
                Ok(None) => None,
                Err(_) => {
                    log::warn!("{what}: no byte of the body for {idle:?}, request ended");
                    let e = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no byte of the request body for {idle:?}"),
                    );
                    Some((Err(actix_web::error::PayloadError::Io(e)), None))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[actix_web::test]
    async fn a_body_that_stalls_ends_in_an_error() {
        let chunks = futures_util::stream::iter([Ok(Bytes::from_static(b"ab"))])
            .chain(futures_util::stream::pending());
        let mut body = Box::pin(idle_timeout(
            Box::pin(chunks),
            Duration::from_millis(50),
            "test".into(),
        ));
        assert_eq!(body.next().await.unwrap().unwrap(), "ab");
        let started = std::time::Instant::now();
        assert!(body.next().await.unwrap().is_err());
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(body.next().await.is_none());
    }

    #[actix_web::test]
    async fn a_body_that_keeps_coming_is_whole() {
        let chunks = futures_util::stream::iter([
            Ok(Bytes::from_static(b"a")),
            Ok(Bytes::from_static(b"b")),
        ]);
        let body = idle_timeout(chunks, Duration::from_millis(50), "test".into());
        let all: Vec<_> = body.collect().await;
        assert_eq!(all.len(), 2);
    }
}
