//! Serving a stored file (a v1 layer, a v2 blob) the one way both APIs
//! serve one: `X-Accel-Redirect` to nginx, a redirect to the object store,
//! or a stream from the driver, whole or one `Range` of it.
//!
//! ```ignore
//! let serving = Serving::from_settings(&state.settings.storage, &*state.storage);
//! let resp = serving
//!     .serve(&req, &path, size, StatusCode::TEMPORARY_REDIRECT, |b| {
//!         b.insert_header(("Docker-Content-Digest", digest.as_str()));
//!     })
//!     .await?; // BlobError -> the API's own wire error
//! ```

use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use super::range::{byte_range, Unsatisfiable};
use crate::config::StorageSettings;
use crate::storage::{Storage, StorageError};

/// Why a stored file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Range(#[from] Unsatisfiable),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How files are served: the driver and the two serving shortcuts of the
/// settings.
pub struct Serving<'a> {
    pub storage: &'a dyn Storage,
    /// `nginx_x_accel_redirect`: the location prefix nginx serves the
    /// storage folder under (local storage only).
    pub x_accel_prefix: Option<&'a str>,
    /// `storage_redirect`: send clients to the driver's own URL.
    pub redirect: bool,
}

impl<'a> Serving<'a> {
    pub fn from_settings(settings: &'a StorageSettings, storage: &'a dyn Storage) -> Self {
        Self {
            storage,
            x_accel_prefix: settings.nginx_x_accel_redirect.as_deref(),
            redirect: settings.redirect,
        }
    }

    /// Answers a GET or HEAD of the `size`-byte file at storage `path`.
    ///
    /// `headers` adds the caller's own headers (cache headers, digests) to
    /// every answer but the redirect, which carries only `Location`, with
    /// `redirect_status` (v1 answers 302, v2 307). A HEAD is answered
    /// with the headers and `Content-Length` of the GET, and the file is
    /// not opened.
    pub async fn serve(
        &self,
        req: &HttpRequest,
        path: &str,
        size: u64,
        redirect_status: StatusCode,
        headers: impl Fn(&mut HttpResponseBuilder),
    ) -> Result<HttpResponse, BlobError> {
        if let Some(prefix) = self.x_accel_prefix {
            if self.storage.local_path(path).is_some() {
                let target = format!("{}/{path}", prefix.trim_end_matches('/'));
                let mut builder = HttpResponse::Ok();
                headers(&mut builder);
                return Ok(builder
                    .content_type("application/octet-stream")
                    .insert_header(("X-Accel-Redirect", target))
                    .finish());
            }
            log::warn!(
                "nginx_x_accel_redirect is set, but storage {} has no local files",
                self.storage.name()
            );
        }
        if self.redirect {
            if let Some(url) = self.storage.redirect_url(path).await? {
                return Ok(HttpResponse::build(redirect_status)
                    .insert_header((header::LOCATION, url))
                    .finish());
            }
        }

        let range = byte_range(req.headers(), size)?;
        let mut builder = match range {
            Some(r) => {
                let mut b = HttpResponse::PartialContent();
                b.insert_header((
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{size}", r.first, r.last),
                ));
                b
            }
            None => HttpResponse::Ok(),
        };
        builder
            .content_type("application/octet-stream")
            .insert_header((header::ACCEPT_RANGES, "bytes"));
        headers(&mut builder);
        let length = range.map_or(size, |r| r.len());
        if length == 0 {
            return Ok(builder.finish());
        }
        if req.method() == Method::HEAD {
            // actix writes the Content-Length of a sized body and sends no
            // body for a HEAD; an empty stream keeps the file unopened.
            let nothing = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
            return Ok(builder.no_chunking(length).streaming(nothing));
        }
        // HTTP/1 copies each chunk into its write buffer before it asks for
        // the next; HTTP/2 queues chunks and copies them later.
        let stream = if req.version() < actix_web::http::Version::HTTP_2 {
            self.storage.get_stream_copied(path, range).await?
        } else {
            self.storage.get_stream(path, range).await?
        };
        Ok(builder.no_chunking(length).streaming(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStorage;
    use actix_web::body::to_bytes;
    use actix_web::test::TestRequest;

    const PATH: &str = "blobs/one";

    async fn storage() -> (tempfile::TempDir, LocalStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().to_str().unwrap()).unwrap();
        storage
            .put(PATH, bytes::Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        (dir, storage)
    }

    fn plain(storage: &dyn Storage) -> Serving<'_> {
        Serving {
            storage,
            x_accel_prefix: None,
            redirect: true,
        }
    }

    async fn serve(serving: &Serving<'_>, req: TestRequest) -> Result<HttpResponse, BlobError> {
        let req = req.to_http_request();
        serving
            .serve(&req, PATH, 10, StatusCode::TEMPORARY_REDIRECT, |b| {
                b.insert_header(("X-Extra", "yes"));
            })
            .await
    }

    async fn body(resp: HttpResponse) -> Vec<u8> {
        to_bytes(resp.into_body()).await.unwrap().to_vec()
    }

    #[actix_web::test]
    async fn whole_files_and_ranges_stream_with_the_callers_headers() {
        let (_dir, storage) = storage().await;
        let serving = plain(&storage);
        let resp = serve(&serving, TestRequest::get()).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get("x-extra").unwrap(), "yes");
        assert_eq!(resp.headers().get("accept-ranges").unwrap(), "bytes");
        assert_eq!(body(resp).await, b"0123456789");

        let ranged = TestRequest::get().insert_header(("Range", "bytes=2-4"));
        let resp = serve(&serving, ranged).await.unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(resp.headers().get("content-range").unwrap(), "bytes 2-4/10");
        assert_eq!(resp.headers().get("x-extra").unwrap(), "yes");
        assert_eq!(body(resp).await, b"234");

        let outside = TestRequest::get().insert_header(("Range", "bytes=10-"));
        assert!(matches!(
            serve(&serving, outside).await,
            Err(BlobError::Range(Unsatisfiable { size: 10 }))
        ));
    }

    #[actix_web::test]
    async fn a_head_has_the_length_and_no_body() {
        let (_dir, storage) = storage().await;
        let serving = plain(&storage);
        let head = TestRequest::default().method(Method::HEAD);
        let resp = serve(&serving, head).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            actix_web::body::MessageBody::size(resp.body()),
            actix_web::body::BodySize::Sized(10)
        );
        assert!(body(resp).await.is_empty());
    }

    #[actix_web::test]
    async fn nginx_serves_local_files() {
        let (_dir, storage) = storage().await;
        let serving = Serving {
            x_accel_prefix: Some("/internal/"),
            ..plain(&storage)
        };
        let resp = serve(&serving, TestRequest::get()).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers().get("x-accel-redirect").unwrap(),
            "/internal/blobs/one"
        );
        assert_eq!(resp.headers().get("x-extra").unwrap(), "yes");
        assert!(body(resp).await.is_empty());
    }

    #[actix_web::test]
    async fn a_missing_file_is_the_drivers_not_found() {
        let (_dir, storage) = storage().await;
        let serving = plain(&storage);
        let req = TestRequest::get().to_http_request();
        let result = serving
            .serve(&req, "blobs/none", 3, StatusCode::FOUND, |_| {})
            .await;
        assert!(matches!(
            result,
            Err(BlobError::Storage(StorageError::NotFound(_)))
        ));
    }
}
