//! The `swift` driver: both trees in an OpenStack Swift container, keyed
//! as the old registry's Swift driver keyed them (`storage_path` without
//! its leading `/`, then the path), so an existing container reads as it
//! is.
//!
//! - **Large files** are Static Large Objects: segments in the container
//!   `<container>_segments` (never listed with the tree), under
//!   `<key>/<upload>/<number>`, then the manifest PUT at the key, so that a
//!   file appears whole or not at all. A body shorter than one segment is
//!   one PUT. Each manifest owns its segments: a rename moves the manifest
//!   alone, a copy copies the segments, a delete takes them along.
//! - **Writers** (uploads across requests) keep their segments and the
//!   closed bytes too few for one in a state object beside the file
//!   (`<path>.writer`), as on S3: any instance resumes from it.
//! - **`put_if`**: Swift has no compare-and-swap, and `If-None-Match: *`
//!   is not atomic (two creates at the same instant both succeed). The
//!   driver holds a short lock object instead (see [`lock`]).
//! - **Tokens** are renewed before they expire ([`auth`]).

mod auth;
mod lock;
mod writer;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::*;
use crate::config::SwiftSettings;

/// Bytes of the first segments; every [`SEGMENTS_PER_STEP`] segments they
/// grow by this much, so that Swift's 1,000 segments a manifest reach
/// some 43 GiB while a common layer holds only one segment in memory.
pub const SEGMENT_SIZE: usize = 8 * 1024 * 1024;
const SEGMENTS_PER_STEP: usize = 100;

/// Swift's default `max_manifest_segments`.
pub const MAX_SEGMENTS: usize = 1000;

/// Segments uploaded while the next one is read from the body.
const SEGMENTS_IN_FLIGHT: usize = 2;

/// A writer keeps fewer closed bytes than this in its state object; more
/// become a segment.
pub const MIN_SEGMENT: usize = 5 * 1024 * 1024;

/// The mark a Static Large Object gets before its manifest is moved: its
/// segments are then the target's, and a delete leaves them.
const MOVED_TO: &str = "X-Object-Meta-Registry-Moved-To";

/// Suffix of the state object of a writer, beside its file.
pub const WRITER_SUFFIX: &str = ".writer";

/// Names a listing gives at most (Swift's `container_listing_limit`).
const LISTING_LIMIT: usize = 10_000;

/// Names one bulk delete removes at most.
const BULK_DELETE_LIMIT: usize = 10_000;

/// How long the segments of a large object written over stay: longer than
/// any pull of it that began before (a layer of many GB on a slow link).
pub const REPLACED_SEGMENT_LIFE: Duration = Duration::from_secs(24 * 60 * 60);

/// Segments given their end date at once, each one request.
const RETIRED_AT_ONCE: usize = 8;

/// Requests with a small body or none.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
/// One segment.
const SEGMENT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a temp URL of `storage_redirect` is valid (as S3's).
pub const REDIRECT_EXPIRY_SECS: u64 = 1200;

/// What a key keeps as it is in a URL; the rest is percent-encoded (a
/// `%` the layout wrote travels as `%25`).
const KEY_CHARS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

#[derive(Clone)]
pub struct SwiftStorage(Arc<Inner>);

struct Inner {
    client: reqwest::Client,
    settings: SwiftSettings,
    container: String,
    segments: String,
    /// `storage_path` without its slashes, plus `/`; or empty.
    prefix: String,
    session: tokio::sync::Mutex<Option<auth::Session>>,
    /// The account's temp-URL key (the setting, or read from the account).
    temp_url_key: std::sync::Mutex<Option<String>>,
    locks: KeyedLocks,
    /// Names a listing asks for: Swift's default most, lowered to the
    /// cluster's own when it refuses that.
    listing_limit: AtomicUsize,
}

/// A request body: small files and whole segments, held so that a request
/// refused for its token can be sent again.
type Body = Option<Bytes>;

impl SwiftStorage {
    /// A driver for the container `settings` name, keys under
    /// `storage_path`. Nothing is sent yet; see [`SwiftStorage::check`].
    pub fn new(settings: &SwiftSettings, storage_path: &str) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A download that stalls this long is given up.
            .read_timeout(Duration::from_secs(300))
            // Never the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = &settings.cacert {
            let pem = std::fs::read(path)?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)? {
                client = client.add_root_certificate(certificate);
            }
        }
        let trimmed = storage_path.trim_matches('/');
        Ok(SwiftStorage(Arc::new(Inner {
            client: client.build()?,
            container: settings.container.clone(),
            segments: format!("{}_segments", settings.container),
            prefix: if trimmed.is_empty() {
                String::new()
            } else {
                format!("{trimmed}/")
            },
            session: tokio::sync::Mutex::new(None),
            temp_url_key: std::sync::Mutex::new(settings.temp_url_key.clone()),
            settings: settings.clone(),
            locks: KeyedLocks::default(),
            listing_limit: AtomicUsize::new(LISTING_LIMIT),
        })))
    }

    /// Logs in and makes both containers where they are missing, so that
    /// a wrong setting stops the server at startup; reads the account's
    /// temp-URL key when none is set.
    pub async fn check(&self) -> Result<()> {
        for container in [&self.0.container, &self.0.segments] {
            let response = self.send(Method::HEAD, container, &[], None).await?;
            match response.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => {
                    let made = self.send(Method::PUT, container, &[], None).await?;
                    if !made.status().is_success() {
                        return Err(StorageError::Unavailable(format!(
                            "the container {container:?} does not exist and could not be made: {}",
                            made.status()
                        )));
                    }
                    log::info!("swift: made the container {container:?}");
                }
                status => {
                    return Err(StorageError::Unavailable(format!(
                        "the container {container:?} answered {status}"
                    )))
                }
            }
        }
        let missing = self
            .0
            .temp_url_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none();
        if missing {
            let account = self.send(Method::HEAD, "", &[], None).await?;
            let key = account
                .headers()
                .get("X-Account-Meta-Temp-Url-Key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            *self
                .0
                .temp_url_key
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = key;
        }
        Ok(())
    }

    /// Whether downloads can be redirected to temp URLs (the account has
    /// a key, or the settings give one).
    pub fn redirects(&self) -> bool {
        self.0
            .temp_url_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The object name of a storage path.
    fn key(&self, path: &str) -> Result<String> {
        check_path(path)?;
        Ok(format!("{}{path}", self.0.prefix))
    }

    /// `container/key`, encoded for a URL.
    fn object(container: &str, key: &str) -> String {
        format!("{container}/{}", utf8_percent_encode(key, KEY_CHARS))
    }

    fn main_object(&self, key: &str) -> String {
        Self::object(&self.0.container, key)
    }

    /// A token good for a while yet: the one held, or a new one.
    async fn session(&self, refused: Option<&str>) -> Result<auth::Session> {
        let mut held = self.0.session.lock().await;
        if let Some(session) = &*held {
            if session.fresh() && refused != Some(session.token.as_str()) {
                return Ok(session.clone());
            }
        }
        let session = auth::login(&self.0.client, &self.0.settings)
            .await
            .map_err(StorageError::Unavailable)?
            .renewed(held.as_ref().filter(|_| refused.is_none()));
        *held = Some(session.clone());
        Ok(session)
    }

    /// Sends a request to `tail` (below the storage URL: `container/key?..`,
    /// or empty for the account), logging in again and sending it once
    /// more when the token is refused.
    async fn send(
        &self,
        method: Method,
        tail: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<reqwest::Response> {
        self.send_within(method, tail, headers, body, Some(CONTROL_TIMEOUT))
            .await
    }

    async fn send_within(
        &self,
        method: Method,
        tail: &str,
        headers: &[(&str, &str)],
        body: Body,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response> {
        let mut refused = None;
        loop {
            let session = self.session(refused.as_deref()).await?;
            let url = if tail.is_empty() {
                session.storage_url.clone()
            } else {
                format!("{}/{tail}", session.storage_url)
            };
            let mut request = self
                .0
                .client
                .request(method.clone(), &url)
                .header("X-Auth-Token", &session.token);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            match &body {
                Some(body) => {
                    // Swift wants a length even for an empty body.
                    request = request
                        .header("Content-Length", body.len())
                        .body(body.clone());
                }
                None if method == Method::PUT || method == Method::POST => {
                    request = request.header("Content-Length", "0");
                }
                None => {}
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            let response = request
                .send()
                .await
                .map_err(|e| StorageError::Unavailable(format!("swift {method} {tail}: {e}")))?;
            if response.status() != StatusCode::UNAUTHORIZED || refused.is_some() {
                return Ok(response);
            }
            refused = Some(session.token);
        }
    }

    /// The error for an answer that was not a success.
    fn status_error(path: &str, status: StatusCode) -> StorageError {
        match status {
            StatusCode::NOT_FOUND => StorageError::NotFound(path.to_owned()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                StorageError::Unavailable(format!("swift refused the request for {path}: {status}"))
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                StorageError::Unavailable(format!("swift answered {status} for {path}"))
            }
            status => StorageError::Io {
                path: path.to_owned(),
                source: io::Error::other(format!("swift answered {status}")),
            },
        }
    }

    async fn expect_success(path: &str, response: reqwest::Response) -> Result<reqwest::Response> {
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(Self::status_error(path, response.status()))
        }
    }

    async fn put_key(&self, path: &str, key: &str, data: Bytes) -> Result<()> {
        let response = self
            .send(
                Method::PUT,
                &self.main_object(key),
                &[("Content-Type", "application/octet-stream")],
                Some(data),
            )
            .await?;
        Self::expect_success(path, response).await.map(|_| ())
    }

    async fn head_key(&self, path: &str, key: &str) -> Result<reqwest::header::HeaderMap> {
        let response = self
            .send(Method::HEAD, &self.main_object(key), &[], None)
            .await?;
        Ok(Self::expect_success(path, response)
            .await?
            .headers()
            .clone())
    }

    async fn delete_object(&self, path: &str, object: &str) -> Result<()> {
        let response = self.send(Method::DELETE, object, &[], None).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(StorageError::NotFound(path.to_owned())),
            s => Err(Self::status_error(path, s)),
        }
    }

    /// Deletes a Static Large Object and its segments. Swift answers 200
    /// whatever happened and tells in the body: read it.
    async fn delete_large(&self, path: &str, object: &str) -> Result<()> {
        let response = self
            .send(
                Method::DELETE,
                &format!("{object}?multipart-manifest=delete"),
                &[("Accept", "application/json")],
                None,
            )
            .await?;
        let response = Self::expect_success(path, response).await?;
        let answer: BulkAnswer = response
            .json()
            .await
            .map_err(|e| StorageError::Unavailable(format!("swift delete of {path}: {e}")))?;
        if answer.status.starts_with("404") {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        if !answer.status.starts_with('2') || !answer.errors.is_empty() {
            return Err(StorageError::Unavailable(format!(
                "swift could not delete {path}: {} {:?}",
                answer.status,
                answer.errors.first()
            )));
        }
        Ok(())
    }

    /// Deletes the object at `key` and, for a large object, its segments.
    async fn delete_key(&self, path: &str, key: &str) -> Result<()> {
        let headers = self.head_key(path, key).await?;
        self.delete_as(path, key, &headers).await
    }

    /// Deletes the object at `key`, which `headers` describe, with what it
    /// owns: a Static Large Object's segments, a Dynamic Large Object's
    /// (distribution 2.8 writes every blob as one, its segments under a
    /// prefix of their own), a writer state's segments.
    async fn delete_as(
        &self,
        path: &str,
        key: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<()> {
        let object = self.main_object(key);
        if is_large(headers) {
            if headers.contains_key(MOVED_TO) {
                // Its segments are another manifest's now.
                return self.delete_object(path, &object).await;
            }
            return self.delete_large(path, &object).await;
        }
        if let Some(state) = key.strip_suffix(WRITER_SUFFIX) {
            writer::drop_segments(self, path, state).await?;
        }
        self.delete_object(path, &object).await?;
        if let Some((container, prefix)) = self.segment_area(key, headers) {
            let names = self.list_all(&container, &prefix, false).await?;
            let names: Vec<String> = names.iter().map(|l| l.name().to_owned()).collect();
            self.bulk_delete(path, &container, &names).await?;
        }
        Ok(())
    }

    /// One page of names in `container` under `prefix`, after `marker`,
    /// and the most the page could hold (a shorter one is the last).
    async fn list_page(
        &self,
        container: &str,
        prefix: &str,
        delimiter: bool,
        marker: Option<&str>,
    ) -> Result<(Vec<Listed>, usize)> {
        let (response, limit) = loop {
            let limit = self.0.listing_limit.load(Ordering::Relaxed);
            let mut query = format!(
                "{container}?format=json&limit={limit}&prefix={}",
                utf8_percent_encode(prefix, NON_ALPHANUMERIC)
            );
            if delimiter {
                query.push_str("&delimiter=%2F");
            }
            if let Some(marker) = marker {
                query.push_str("&marker=");
                query.extend(utf8_percent_encode(marker, NON_ALPHANUMERIC));
            }
            let response = self.send(Method::GET, &query, &[], None).await?;
            if response.status() != StatusCode::PRECONDITION_FAILED {
                break (response, limit);
            }
            // A cluster whose `container_listing_limit` is lower than
            // Swift's default says its own: "Maximum limit is N".
            let answer = response.text().await.unwrap_or_default();
            match answer
                .trim()
                .strip_prefix("Maximum limit is ")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 0 && n < limit)
            {
                Some(lower) => {
                    log::info!("swift: listings ask {lower} names a page, the cluster's limit");
                    self.0.listing_limit.store(lower, Ordering::Relaxed);
                }
                None => return Err(Self::status_error(prefix, StatusCode::PRECONDITION_FAILED)),
            }
        };
        let response = Self::expect_success(prefix, response).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok((Vec::new(), limit));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| StorageError::Unavailable(format!("swift listing of {prefix}: {e}")))?;
        let page = serde_json::from_slice(&bytes).map_err(|e| StorageError::Io {
            path: prefix.to_owned(),
            source: io::Error::other(format!("a listing that does not parse: {e}")),
        })?;
        Ok((page, limit))
    }

    /// Every name in `container` under `prefix`, page after page.
    async fn list_all(
        &self,
        container: &str,
        prefix: &str,
        delimiter: bool,
    ) -> Result<Vec<Listed>> {
        let mut all: Vec<Listed> = Vec::new();
        loop {
            let marker = all.last().map(|l| l.name().to_owned());
            let (page, limit) = self
                .list_page(container, prefix, delimiter, marker.as_deref())
                .await?;
            let full = page.len() >= limit;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// Deletes `names` of `container` (plain objects), 10,000 a request.
    async fn bulk_delete(&self, path: &str, container: &str, names: &[String]) -> Result<()> {
        for batch in names.chunks(BULK_DELETE_LIMIT) {
            let mut body = String::new();
            for name in batch {
                body.push('/');
                body.push_str(&Self::object(container, name));
                body.push('\n');
            }
            let response = self
                .send(
                    Method::POST,
                    "?bulk-delete",
                    &[
                        ("Content-Type", "text/plain"),
                        ("Accept", "application/json"),
                    ],
                    Some(Bytes::from(body)),
                )
                .await?;
            let response = Self::expect_success(path, response).await?;
            let answer: BulkAnswer = response
                .json()
                .await
                .map_err(|e| StorageError::Unavailable(format!("swift bulk delete: {e}")))?;
            // The status of the request says nothing: each name's is in
            // the body; a name already gone is no error.
            if !answer.status.is_empty() && !answer.status.starts_with('2') {
                return Err(StorageError::Unavailable(format!(
                    "swift bulk delete while removing {path}: {}",
                    answer.status
                )));
            }
            if let Some((name, status)) = answer.errors.first() {
                return Err(StorageError::Unavailable(format!(
                    "swift could not delete {name} ({status}) while removing {path}"
                )));
            }
        }
        Ok(())
    }

    /// The segments a Static Large Object at `key` is made of, as
    /// `container/name` paths; none for any other object or none at all.
    async fn segments_of(&self, path: &str, key: &str) -> Result<Vec<String>> {
        self.owned_segments(path, key, false).await
    }

    /// What a write over `key` leaves unused, as `container/name` paths:
    /// a Static Large Object's segments in the segments container, or a
    /// Dynamic Large Object's (distribution's blobs) in its segment area;
    /// none of a manifest moved elsewhere (they are the moved one's).
    async fn replaced_segments(&self, path: &str, key: &str) -> Result<Vec<String>> {
        self.owned_segments(path, key, true).await
    }

    async fn owned_segments(&self, path: &str, key: &str, replaced: bool) -> Result<Vec<String>> {
        // A HEAD first: a plain object's GET would be its bytes.
        let manifest = format!("{}?multipart-manifest=get", self.main_object(key));
        let response = self.send(Method::HEAD, &manifest, &[], None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let response = Self::expect_success(path, response).await?;
        if replaced && response.headers().contains_key(MOVED_TO) {
            return Ok(Vec::new());
        }
        if !is_large(response.headers()) {
            let area = self
                .segment_area(key, response.headers())
                .filter(|_| replaced);
            return match area {
                Some((container, prefix)) => Ok(self
                    .list_all(&container, &prefix, false)
                    .await?
                    .iter()
                    .map(|l| format!("{container}/{}", l.name()))
                    .collect()),
                None => Ok(Vec::new()),
            };
        }
        let response = self.send(Method::GET, &manifest, &[], None).await?;
        let response = Self::expect_success(path, response).await?;
        let listed: Vec<ManifestEntry> = response
            .json()
            .await
            .map_err(|e| StorageError::Unavailable(format!("swift manifest of {path}: {e}")))?;
        let ours = format!("{}/", self.0.segments);
        Ok(listed
            .into_iter()
            .filter_map(|e| e.name.strip_prefix('/').map(str::to_owned))
            // What a write over it may retire: only segments, never a
            // file of the tree a foreign manifest names as one.
            .filter(|name| !replaced || name.starts_with(&ours))
            .collect())
    }

    /// Where a Dynamic Large Object at `key` keeps its segments, when that
    /// is a segment area this driver may clear with it: in one of its
    /// containers, under a `segments/` folder (distribution's
    /// `<prefix>/segments/...`), covering neither the object itself nor
    /// the registry's tree. `None` for any other object: its manifest is
    /// left to whoever wrote it.
    fn segment_area(
        &self,
        key: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> Option<(String, String)> {
        let (container, prefix) = dynamic_segments(headers)?;
        let ours = container == self.0.container || container == self.0.segments;
        let below_segments = prefix
            .split('/')
            .skip_while(|part| *part != "segments")
            .nth(1)
            .is_some_and(|part| !part.is_empty());
        let covers = key.starts_with(&prefix)
            || (container == self.0.container && self.0.prefix.starts_with(&prefix));
        (ours && below_segments && !covers).then_some((container, prefix))
    }

    /// Deletes segments named `container/name` (of this driver's segments
    /// container; others are left).
    async fn delete_segments(&self, path: &str, segments: &[String]) -> Result<()> {
        let names: Vec<String> = segments
            .iter()
            .filter_map(|s| Some(s.strip_prefix(&format!("{}/", self.0.segments))?.to_owned()))
            .collect();
        self.bulk_delete(path, &self.0.segments, &names).await
    }

    /// Deletes every segment an upload of `key` sent.
    async fn drop_upload(&self, path: &str, key: &str, upload: &str) -> Result<()> {
        let prefix = format!("{key}/{upload}/");
        let names: Vec<String> = self
            .list_all(&self.0.segments, &prefix, false)
            .await?
            .iter()
            .map(|l| l.name().to_owned())
            .collect();
        self.bulk_delete(path, &self.0.segments, &names).await
    }

    /// Writes `data` whole at `path`, and drops the segments of a large
    /// object it replaces (a blob written again).
    async fn replace(&self, path: &str, data: Bytes) -> Result<()> {
        let key = self.key(path)?;
        let replaced = self.replaced_segments(path, &key).await?;
        self.put_key(path, &key, data).await?;
        self.retire_replaced(path, &replaced).await;
        Ok(())
    }

    /// Uploads one segment; its etag, as the manifest names it.
    async fn put_segment(&self, path: &str, name: &str, data: Bytes) -> Result<Segment> {
        let size = data.len() as u64;
        let object = Self::object(&self.0.segments, name);
        let response = self
            .send_within(Method::PUT, &object, &[], Some(data), Some(SEGMENT_TIMEOUT))
            .await?;
        let response = Self::expect_success(path, response).await?;
        let etag = response
            .headers()
            .get("Etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        Ok(Segment {
            path: format!("/{}/{name}", self.0.segments),
            etag,
            size,
        })
    }

    /// Writes the manifest of `segments` at `key`: the file appears whole.
    /// Segments an object there before used are deleted after.
    async fn put_manifest(&self, path: &str, key: &str, segments: &[Segment]) -> Result<()> {
        let replaced = self.replaced_segments(path, key).await?;
        let manifest: Vec<serde_json::Value> = segments
            .iter()
            .map(|s| serde_json::json!({"path": s.path, "etag": s.etag, "size_bytes": s.size}))
            .collect();
        let body = serde_json::to_vec(&manifest).expect("plain JSON");
        let response = self
            .send(
                Method::PUT,
                &format!("{}?multipart-manifest=put", self.main_object(key)),
                &[("Content-Type", "application/octet-stream")],
                Some(Bytes::from(body)),
            )
            .await?;
        Self::expect_success(path, response).await?;
        let kept: Vec<&str> = segments
            .iter()
            .map(|s| s.path.trim_start_matches('/'))
            .collect();
        let unused: Vec<String> = replaced
            .into_iter()
            .filter(|name| !kept.contains(&name.as_str()))
            .collect();
        self.retire_replaced(path, &unused).await;
        Ok(())
    }

    /// Gives the segments of a replaced large object [`REPLACED_SEGMENT_LIFE`]
    /// more (Swift's object expirer removes them then): a pull that began
    /// before the replacement reads them as the old manifest names them,
    /// to its end. Best-effort once the file is written: a failure leaves
    /// them for good, and is logged.
    async fn retire_replaced(&self, path: &str, segments: &[String]) {
        let life = REPLACED_SEGMENT_LIFE.as_secs().to_string();
        let life = life.as_str();
        let failed = futures_util::stream::iter(segments)
            // Only in the containers of this registry.
            .filter_map(|segment| async {
                segment
                    .split_once('/')
                    .filter(|(c, _)| *c == self.0.segments || *c == self.0.container)
            })
            .map(|(container, name)| async move {
                let object = Self::object(container, name);
                match self
                    .send(Method::POST, &object, &[("X-Delete-After", life)], None)
                    .await
                {
                    Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => None,
                    Ok(r) => Some(format!("{name}: {}", r.status())),
                    Err(e) => Some(format!("{name}: {e}")),
                }
            })
            .buffer_unordered(RETIRED_AT_ONCE)
            .filter_map(|failure| async { failure })
            .collect::<Vec<String>>()
            .await;
        if let Some(first) = failed.first() {
            log::warn!(
                "swift: {} of the segments {path} no longer uses are left for good ({first})",
                failed.len()
            );
        }
    }

    /// Deletes segments no manifest names, nor ever named (sent twice by
    /// a writer that resumed), once the file is written: a failure leaves
    /// them (the file is whole either way), and is logged.
    async fn drop_unused(&self, path: &str, segments: &[String]) {
        if let Err(e) = self.delete_segments(path, segments).await {
            log::warn!(
                "swift: {} segments {path} no longer uses are left: {e}",
                segments.len()
            );
        }
    }

    /// Copies `from_key` to `to_key` on the server, `manifest_only` for a
    /// large object whose segments move with it.
    async fn copy_key(
        &self,
        from: &str,
        from_key: &str,
        to_key: &str,
        manifest_only: bool,
    ) -> Result<()> {
        let source = format!("/{}", Self::object(&self.0.container, from_key));
        // `multipart-manifest=get` on the copy's own URL: the manifest is
        // copied, not the bytes it joins.
        let target = if manifest_only {
            format!("{}?multipart-manifest=get", self.main_object(to_key))
        } else {
            self.main_object(to_key)
        };
        let replaced = self.replaced_segments(from, to_key).await?;
        // A rename tried again finds `to` already naming `from`'s segments.
        let moving = if manifest_only {
            self.segments_of(from, from_key).await?
        } else {
            Vec::new()
        };
        let response = self
            .send_within(
                Method::PUT,
                &target,
                // The moved manifest does not carry `from`'s mark.
                &[("X-Copy-From", &source), ("X-Fresh-Metadata", "true")],
                None,
                Some(SEGMENT_TIMEOUT),
            )
            .await?;
        Self::expect_success(from, response).await?;
        let unused: Vec<String> = replaced
            .into_iter()
            .filter(|name| !moving.contains(name))
            .collect();
        self.retire_replaced(from, &unused).await;
        Ok(())
    }

    /// A copy of a large object with segments of its own: each segment is
    /// copied on the server (a plain copy makes one object, which Swift
    /// refuses past 5 GiB).
    async fn copy_large(&self, from: &str, from_key: &str, to_key: &str) -> Result<()> {
        let upload = super::lease::token();
        let mut copied = Vec::new();
        for (i, segment) in self.segments_of(from, from_key).await?.iter().enumerate() {
            let name = segment_name(to_key, &upload, i);
            let object = Self::object(&self.0.segments, &name);
            let response = self
                .send_within(
                    Method::PUT,
                    &object,
                    &[(
                        "X-Copy-From",
                        &format!("/{}", utf8_percent_encode(segment, KEY_CHARS)),
                    )],
                    None,
                    Some(SEGMENT_TIMEOUT),
                )
                .await?;
            let response = Self::expect_success(from, response).await?;
            let size = self.segment_size(from, &name).await?;
            copied.push(Segment {
                path: format!("/{}/{name}", self.0.segments),
                etag: response
                    .headers()
                    .get("Etag")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_matches('"').to_owned())
                    .unwrap_or_default(),
                size,
            });
        }
        self.put_manifest(from, to_key, &copied).await
    }

    async fn segment_size(&self, path: &str, name: &str) -> Result<u64> {
        let response = self
            .send(
                Method::HEAD,
                &Self::object(&self.0.segments, name),
                &[],
                None,
            )
            .await?;
        let response = Self::expect_success(path, response).await?;
        Ok(content_length(response.headers()))
    }

    /// A temp URL for GET of `key`, signed with the account's key.
    fn temp_url(&self, storage_url: &str, key: &str) -> Option<String> {
        use hmac::{Hmac, KeyInit, Mac};
        let secret = self
            .0
            .temp_url_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let url = reqwest::Url::parse(storage_url).ok()?;
        let expires =
            SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() + REDIRECT_EXPIRY_SECS;
        // Signed over the path as Swift decodes it.
        let path = format!(
            "{}/{}/{key}",
            percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy(),
            self.0.container
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(format!("GET\n{expires}\n{path}").as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        Some(format!(
            "{storage_url}/{}?temp_url_sig={signature}&temp_url_expires={expires}",
            self.main_object(key)
        ))
    }
}

/// The segments of a [`Storage::put_stream`] not joined by a manifest
/// yet. Dropped before it ended (the request's future dropped: a client
/// gone), it stops their uploads and removes what they sent, in the
/// background.
struct Unjoined {
    storage: SwiftStorage,
    path: String,
    key: String,
    upload: String,
    sending: VecDeque<JoinHandle<Result<Segment>>>,
    ended: bool,
}

impl Drop for Unjoined {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (storage, path, key, upload, sending) = (
            self.storage.clone(),
            std::mem::take(&mut self.path),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload),
            std::mem::take(&mut self.sending),
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            log::warn!("swift: segments of an abandoned write of {path} left: no runtime");
            return;
        };
        runtime.spawn(async move {
            // Segments on their way land first (each is held whole).
            for handle in sending {
                let _ = handle.await;
            }
            if let Err(e) = storage.drop_upload(&path, &key, &upload).await {
                log::warn!("swift: segments of an abandoned write of {path} left: {e}");
            }
        });
    }
}

/// The segment a spawned upload sent.
/// The oldest of `sending`, once sent; taken off only then, so that a
/// request dropped meanwhile still waits for it before its clean-up.
async fn joined(sending: &mut VecDeque<JoinHandle<Result<Segment>>>) -> Result<Segment> {
    let Some(handle) = sending.front_mut() else {
        return Err(StorageError::Unavailable(
            "no segment upload to wait for".to_owned(),
        ));
    };
    let sent = handle.await;
    sending.pop_front();
    sent.map_err(|e| StorageError::Unavailable(format!("a segment upload ended: {e}")))?
}

/// A segment of a large object, as its manifest names it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Segment {
    /// `/<container>/<name>`.
    path: String,
    etag: String,
    size: u64,
}

/// The name of segment `index` of an upload of `key`.
fn segment_name(key: &str, upload: &str, index: usize) -> String {
    format!("{key}/{upload}/{index:08}")
}

/// The size of segment `index`, counting from 0.
fn segment_size(index: usize) -> usize {
    SEGMENT_SIZE * (1 + index / SEGMENTS_PER_STEP)
}

fn is_large(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get("X-Static-Large-Object")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The container and name prefix of a Dynamic Large Object's segments
/// (`X-Object-Manifest: <container>/<prefix>`, as distribution 2.8 writes
/// its blobs); `None` for any other object.
fn dynamic_segments(headers: &reqwest::header::HeaderMap) -> Option<(String, String)> {
    let value = headers.get("X-Object-Manifest")?.to_str().ok()?;
    let value = percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()?;
    let (container, prefix) = value.split_once('/')?;
    // An empty prefix would name the whole container.
    (!container.is_empty() && !prefix.is_empty()).then(|| (container.to_owned(), prefix.to_owned()))
}

fn content_length(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("Content-Length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// When an object was written: `X-Timestamp` (to the microsecond), else
/// `Last-Modified` (to the second).
fn modified(headers: &reqwest::header::HeaderMap) -> SystemTime {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(seconds) = header("X-Timestamp").and_then(|t| t.parse::<f64>().ok()) {
        if let Ok(since) = Duration::try_from_secs_f64(seconds) {
            return UNIX_EPOCH + since;
        }
    }
    header("Last-Modified")
        .and_then(|t| httpdate::parse_http_date(t).ok())
        .unwrap_or(UNIX_EPOCH)
}

/// An entry of a JSON listing: an object, or a folder (`subdir`) when
/// listed with a delimiter.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Listed {
    Folder {
        subdir: String,
    },
    Object {
        name: String,
        /// A Dynamic Large Object lists 0.
        #[serde(default)]
        bytes: u64,
        /// `2026-12-07T17:28:55.688750`, UTC.
        last_modified: String,
        /// Set for a Static Large Object.
        #[serde(default)]
        slo_etag: Option<String>,
    },
}

impl Listed {
    fn name(&self) -> &str {
        match self {
            Listed::Folder { subdir } => subdir,
            Listed::Object { name, .. } => name,
        }
    }
}

/// When a listed object was written.
fn listed_time(text: &str) -> Option<SystemTime> {
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    let at = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(SystemTime::from(at))
}

#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(rename = "Response Status", default)]
    status: String,
    #[serde(rename = "Errors", default)]
    errors: Vec<(String, String)>,
}

/// A segment as `?multipart-manifest=get` lists it.
#[derive(Deserialize)]
struct ManifestEntry {
    /// `/<container>/<name>`.
    name: String,
}

#[async_trait(?Send)]
impl Storage for SwiftStorage {
    fn name(&self) -> &'static str {
        "swift"
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let key = self.key(path)?;
        let response = self
            .send(Method::GET, &self.main_object(&key), &[], None)
            .await?;
        let response = Self::expect_success(path, response).await?;
        response
            .bytes()
            .await
            .map_err(|e| StorageError::Unavailable(format!("swift GET {path}: {e}")))
    }

    /// One PUT: the small files written so (links, tags, json) never
    /// replace a large object, so no look for segments to drop, which
    /// would double the requests of a push. Bodies written as blobs go
    /// through [`SwiftStorage::replace`].
    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let key = self.key(path)?;
        self.put_key(path, &key, data).await
    }

    async fn put_if(&self, path: &str, data: Bytes, expected: Option<&Version>) -> Result<bool> {
        let key = self.key(path)?;
        let _here = self.0.locks.lock(&format!("{path}.put_if")).await;
        let held = lock::Held::take(self, path, &key).await?;
        let swapped = async {
            let current = match self.get(path).await {
                Ok(bytes) => Some(Version::of(&bytes)),
                Err(StorageError::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            // A lock held too long may be another's by now: as if the
            // file had changed, so that the caller reads it again.
            if current.as_ref() != expected || !held.fresh() {
                return Ok(false);
            }
            self.put_key(path, &key, data).await?;
            Ok(true)
        }
        .await;
        held.release(self).await;
        swapped
    }

    async fn put_stream(&self, path: &str, body: ByteStream) -> Result<u64> {
        let key = self.key(path)?;
        let mut blocks = Blocks::new(body);
        let first = blocks.next(segment_size(0)).await?.unwrap_or_default();
        if first.len() < segment_size(0) {
            self.replace(path, first.freeze()).await?;
            return Ok(blocks.total());
        }
        let mut upload = Unjoined {
            storage: self.clone(),
            path: path.to_owned(),
            key: key.clone(),
            upload: super::lease::token(),
            sending: VecDeque::new(),
            ended: false,
        };
        let mut segments = Vec::new();
        let sent = async {
            let mut block = Some(first);
            let mut index = 0;
            while let Some(data) = block.take() {
                if index >= MAX_SEGMENTS {
                    return Err(StorageError::Io {
                        path: path.to_owned(),
                        source: io::Error::other(format!(
                            "larger than {MAX_SEGMENTS} segments, the most Swift joins"
                        )),
                    });
                }
                if upload.sending.len() >= SEGMENTS_IN_FLIGHT {
                    segments.push(joined(&mut upload.sending).await?);
                }
                // Sent while the next one is read from the body.
                let (storage, name, owner) = (
                    self.clone(),
                    segment_name(&key, &upload.upload, index),
                    path.to_owned(),
                );
                upload.sending.push_back(tokio::spawn(async move {
                    storage.put_segment(&owner, &name, data.freeze()).await
                }));
                index += 1;
                block = blocks.next(segment_size(index)).await?;
            }
            while !upload.sending.is_empty() {
                segments.push(joined(&mut upload.sending).await?);
            }
            // From here the segments may be named by a manifest in place:
            // a request dropped now leaves them rather than risk that.
            upload.ended = true;
            self.put_manifest(path, &key, &segments).await
        }
        .await;
        upload.ended = true;
        if let Err(e) = sent {
            // What was sent goes, once every segment on its way has
            // landed; the file is as it was.
            for handle in std::mem::take(&mut upload.sending) {
                let _ = handle.await;
            }
            if let Err(left) = self.drop_upload(path, &key, &upload.upload).await {
                log::warn!("swift: segments of a failed write of {path} left: {left}");
            }
            return Err(e);
        }
        Ok(blocks.total())
    }

    async fn get_stream(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
        let key = self.key(path)?;
        let range_header = range.map(|r| format!("bytes={}-{}", r.first, r.last.max(r.first)));
        let headers: Vec<(&str, &str)> = range_header
            .as_deref()
            .map(|r| ("Range", r))
            .into_iter()
            .collect();
        let response = self
            .send_within(Method::GET, &self.main_object(&key), &headers, None, None)
            .await?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let size = self.size(path).await?;
                return Err(StorageError::InvalidRange {
                    path: path.to_owned(),
                    size,
                });
            }
            s => return Err(Self::status_error(path, s)),
        }
        Ok(Box::pin(
            response
                .bytes_stream()
                .map_err(io::Error::other)
                .map_ok(|chunk| futures_util::stream::iter(super::s3::sliced(chunk).map(Ok)))
                .try_flatten(),
        ))
    }

    async fn size(&self, path: &str) -> Result<u64> {
        Ok(self.stat(path).await?.size)
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        match self.stat(path).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let prefix = format!("{}/", self.key(path)?);
        let mut names: Vec<String> = self
            .list_all(&self.0.container, &prefix, true)
            .await?
            .iter()
            .filter_map(|listed| {
                let name = listed.name().strip_prefix(&prefix)?.trim_end_matches('/');
                (!name.is_empty()).then(|| name.to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(names)
    }

    /// One listing, as on S3: Swift lists each object with its time.
    async fn folders_holding_with_times(
        &self,
        path: &str,
        file: &str,
    ) -> Result<Vec<(String, SystemTime)>> {
        let prefix = format!("{}/", self.key(path)?);
        check_path(file)?;
        let suffix = format!("/{file}");
        let listed = self.list_all(&self.0.container, &prefix, false).await?;
        if listed.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        let mut held = Vec::new();
        for entry in listed {
            let Listed::Object {
                name,
                last_modified,
                ..
            } = entry
            else {
                continue;
            };
            let Some(child) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(&suffix))
                .filter(|child| !child.is_empty() && !child.contains('/'))
            else {
                continue;
            };
            let at = match listed_time(&last_modified) {
                Some(at) => at,
                None => self.stat(&format!("{path}/{child}/{file}")).await?.modified,
            };
            held.push((child.to_owned(), at));
        }
        held.sort();
        Ok(held)
    }

    async fn remove(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        match self.delete_key(path, &key).await {
            Ok(()) => return Ok(()),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let listed = self
            .list_all(&self.0.container, &format!("{key}/"), false)
            .await?;
        if listed.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        let mut plain = Vec::new();
        let mut owners = Vec::new();
        for entry in listed {
            if let Listed::Object {
                name,
                slo_etag,
                bytes,
                ..
            } = entry
            {
                // What may own segments: a Static Large Object, a writer's
                // state, and an object listed empty (a Dynamic Large
                // Object lists so; a HEAD tells). Older Swift releases
                // list no `slo_etag`: there any object of a segment or
                // more may be one (ours never are smaller).
                if slo_etag.is_some()
                    || name.ends_with(WRITER_SUFFIX)
                    || bytes == 0
                    || bytes >= MIN_SEGMENT as u64
                {
                    owners.push(name);
                } else {
                    plain.push(name);
                }
            }
        }
        // One by one, what they own with them.
        futures_util::stream::iter(owners)
            .map(|name| async move {
                match self.delete_key(path, &name).await {
                    Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        self.bulk_delete(path, &self.0.container, &plain).await
    }

    async fn writer(&self, path: &str, resume: Option<u64>) -> Result<Box<dyn FileWriter>> {
        writer::open(self, path, resume).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let from_key = self.key(from)?;
        let to_key = self.key(to)?;
        let headers = self.head_key(from, &from_key).await?;
        if from_key == to_key {
            return Ok(());
        }
        // A Static Large Object's manifest alone moves: its segments
        // become `to`'s, and a plain delete of `from` leaves them. Anything
        // else is copied whole (a Dynamic Large Object's bytes joined into
        // one object) and goes with what it owned.
        if is_large(&headers) {
            // Marked first: should the delete below not happen (a crash,
            // an error), a later delete of `from` leaves the segments `to`
            // now names.
            let marked = self
                .send(
                    Method::POST,
                    &self.main_object(&from_key),
                    &[(MOVED_TO, &to_key)],
                    None,
                )
                .await?;
            Self::expect_success(from, marked).await?;
            self.copy_key(from, &from_key, &to_key, true).await?;
            return self.delete_object(from, &self.main_object(&from_key)).await;
        }
        self.copy_key(from, &from_key, &to_key, false).await?;
        self.delete_as(from, &from_key, &headers).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let from_key = self.key(from)?;
        let to_key = self.key(to)?;
        let headers = self.head_key(from, &from_key).await?;
        if from_key == to_key {
            return Ok(());
        }
        if is_large(&headers) {
            self.copy_large(from, &from_key, &to_key).await
        } else {
            self.copy_key(from, &from_key, &to_key, false).await
        }
    }

    async fn lock(&self, path: &str) -> Result<Lock> {
        // As on S3: this process's holders only; `put_if` holds a lock
        // object across instances.
        check_path(path)?;
        Ok(Lock::new(self.0.locks.lock(path).await, None))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let key = self.key(path)?;
        let headers = self.head_key(path, &key).await?;
        Ok(FileInfo {
            size: content_length(&headers),
            modified: modified(&headers),
        })
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>> {
        let key = self.key(path)?;
        self.head_key(path, &key).await?;
        let session = self.session(None).await?;
        Ok(self.temp_url(&session.storage_url, &key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_grow_to_reach_large_objects() {
        assert_eq!(segment_size(0), SEGMENT_SIZE);
        assert_eq!(segment_size(99), SEGMENT_SIZE);
        assert_eq!(segment_size(100), 2 * SEGMENT_SIZE);
        let largest: u64 = (0..MAX_SEGMENTS).map(|i| segment_size(i) as u64).sum();
        assert!(largest > 40 << 30, "{largest}");
    }

    #[test]
    fn keys_travel_encoded() {
        assert_eq!(
            SwiftStorage::object("c", "registry/images/a%2Bb/json"),
            "c/registry/images/a%252Bb/json"
        );
        assert_eq!(SwiftStorage::object("c", "a b/ü"), "c/a%20b/%C3%BC");
    }

    #[test]
    fn listed_times_are_utc() {
        let at = listed_time("2026-12-07T17:28:55.688750").unwrap();
        let expected: jiff::Timestamp = "2026-12-07T17:28:55.688750Z".parse().unwrap();
        assert_eq!(at, SystemTime::from(expected));
        assert!(listed_time("yesterday").is_none());
    }
}
