//! The `s3` driver (flavors `s3`, `prod`, `ceph-s3`) and the `gcs` driver,
//! which is the same one talking to Google Cloud Storage's S3-compatible XML
//! interface with HMAC keys.
//!
//! Keys are `storage_path` without its leading `/`, then `/`, then the
//! path, as the old registry's boto drivers wrote them, so an existing
//! bucket reads as it is. A custom endpoint (`boto_host`/`boto_port`: Ceph,
//! MinIO, GCS, any S3-compatible store) is addressed path-style.
//!
//! A [`FileWriter`] is one multipart upload, started when the writer is
//! and recorded, with its closed parts and the closed bytes too few for a
//! part, in one object beside the file (`<path>.writer`); any instance can
//! resume it from there. `rename` is a server-side copy (CopyObject, in
//! parts past 5 GiB) and a delete.
//!
//! rust-s3's `fail-on-err` feature is off: every response's status is
//! checked here and mapped to a [`StorageError`].

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use ::s3::command::{Command, Multipart};
use ::s3::creds::Credentials;
use ::s3::error::S3Error;
use ::s3::request::tokio_backend::ReqwestRequest;
use ::s3::request::Request;
use ::s3::serde_types::{ListBucketResult, Part};
use ::s3::{Bucket, Region};
use bytes::BytesMut;
use futures_util::{StreamExt, TryStreamExt};
use tokio::task::JoinHandle;

use super::*;
use crate::config::S3Settings;

/// Bytes of a multipart upload part; S3 wants 5 MiB or more for every part
/// but the last. Parts grow by this much every [`PARTS_PER_STEP`] parts so
/// that the 10,000-part limit allows objects of over 400 GiB.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
const PARTS_PER_STEP: u32 = 1000;
const MAX_PARTS: u32 = 10_000;

/// Parts being uploaded while the next one is read from the body: the
/// memory an upload holds is at most `(PARTS_IN_FLIGHT + 1)` parts.
pub const PARTS_IN_FLIGHT: usize = 3;

/// The smallest part S3 takes, for every part but the last: a writer
/// keeps fewer closed bytes than this in its state object instead.
pub const MIN_PART: usize = 5 * 1024 * 1024;

/// Suffix of the object, beside a file in progress, that keeps its
/// writer's state: the multipart upload, its closed parts, then the closed
/// bytes too few for a part. One object, so that a close is one atomic PUT.
pub const WRITER_SUFFIX: &str = ".writer";

/// The largest object one CopyObject copies; larger ones are copied in
/// parts (UploadPartCopy).
pub const COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// Bytes a part of a copy in parts holds, at least: few requests, and
/// 10,000 of them reach S3's largest object.
pub const COPY_PART: u64 = 512 * 1024 * 1024;

/// How long a presigned download URL stays valid (as the old registry).
pub const REDIRECT_EXPIRY_SECS: u32 = 1200;

/// Largest piece of an object's body handed on at once. The HTTP client
/// yields what one socket read gave (up to some 400 KiB); actix-http copies
/// each piece into its write buffer and, once that buffer has grown past
/// 128 KiB, drops it after every write, so a large piece costs a fresh
/// allocation and a copy into cold memory. Slices share the client's bytes
/// (no copy) and keep that buffer under 128 KiB (at most 32 KiB waiting
/// plus one slice), so it is reused: half the CPU of a one-client pull
/// (bench/findings.md).
const BODY_SLICE: usize = 96 * 1024;

/// Requests with a small body or none.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
/// One part of a multipart upload.
const PART_TIMEOUT: Duration = Duration::from_secs(300);

/// Deletes sent at once when a folder is removed. One request per object:
/// GCS's XML interface has no multi-object delete.
const DELETES_IN_FLIGHT: usize = 16;

#[derive(Clone)]
pub struct S3Storage {
    name: &'static str,
    /// Key prefix: `storage_path` without its slashes, plus `/`; or empty.
    prefix: String,
    /// `bucket` at `endpoint`, for messages.
    place: String,
    /// Small requests.
    control: Box<Bucket>,
    /// Object creation (PUT, initiate multipart): carries the
    /// server-side encryption header when `encrypt` is set, which S3 refuses
    /// on other requests.
    create: Box<Bucket>,
    /// Multipart parts.
    parts: Box<Bucket>,
    /// Downloads: no overall timeout, a layer may take long to reach a slow
    /// client.
    streaming: Box<Bucket>,
    /// [`Storage::lock`]: this process only (see docs/src/storage.md).
    locks: KeyedLocks,
}

impl S3Storage {
    /// A driver for the bucket `s3` names, keys under `storage_path`.
    /// `gcs` selects Google's endpoint when no `host` is set. Nothing is
    /// sent to the backend yet; see [`S3Storage::check`].
    pub fn new(kind: &StorageKind, s3: &S3Settings, storage_path: &str) -> anyhow::Result<Self> {
        let gcs = *kind == StorageKind::Gcs;
        let scheme = if s3.secure { "https" } else { "http" };
        let (region, path_style) = match (&s3.host, gcs) {
            (Some(host), _) => {
                let endpoint = match s3.port {
                    Some(port) => format!("{scheme}://{host}:{port}"),
                    None => format!("{scheme}://{host}"),
                };
                let region = s3.region.clone().unwrap_or_else(|| "us-east-1".to_owned());
                (Region::Custom { region, endpoint }, true)
            }
            (None, true) => {
                let region = s3.region.clone().unwrap_or_else(|| "auto".to_owned());
                let endpoint = format!("{scheme}://storage.googleapis.com");
                (Region::Custom { region, endpoint }, true)
            }
            (None, false) => {
                let name = s3.region.as_deref().unwrap_or("us-east-1");
                let known: Region = name.parse()?;
                let host = match known {
                    Region::Custom { .. } => format!("s3.{name}.amazonaws.com"),
                    known => known.endpoint(),
                };
                let region = Region::Custom {
                    region: name.to_owned(),
                    endpoint: format!("{scheme}://{host}"),
                };
                // Virtual-hosted names with dots do not match the TLS
                // certificate of `*.s3.amazonaws.com`.
                (region, s3.bucket.contains('.'))
            }
        };
        let endpoint = region.endpoint();
        let credentials = match (&s3.access_key, &s3.secret_key) {
            (Some(access), Some(secret)) => {
                Credentials::new(Some(access), Some(secret), None, None, None)?
            }
            (Some(_), None) | (None, Some(_)) => anyhow::bail!(
                "storage `{kind}`: an access key needs its secret key and the other way round"
            ),
            // As boto did: the environment (AWS_ACCESS_KEY_ID, ...) or the
            // profile file, else anonymous requests (a public bucket).
            (None, None) => Credentials::default().or_else(|_| {
                log::warn!("storage `{kind}`: no keys configured or found, requests are anonymous");
                Credentials::anonymous()
            })?,
        };
        let mut control = Bucket::new(&s3.bucket, region, credentials)?;
        if path_style {
            control.set_path_style();
        }
        control.set_request_timeout(Some(CONTROL_TIMEOUT));
        let mut create = control.clone();
        if s3.encrypt {
            create.add_header("x-amz-server-side-encryption", "AES256");
        }
        let mut parts = control.clone();
        parts.set_request_timeout(Some(PART_TIMEOUT));
        let mut streaming = control.clone();
        streaming.set_request_timeout(None);
        let trimmed = storage_path.trim_matches('/');
        Ok(S3Storage {
            name: if gcs { "gcs" } else { "s3" },
            prefix: if trimmed.is_empty() {
                String::new()
            } else {
                format!("{trimmed}/")
            },
            place: format!("bucket `{}` at {endpoint}", s3.bucket),
            control,
            create,
            parts,
            streaming,
            locks: KeyedLocks::default(),
        })
    }

    /// Checks that the bucket answers and takes the credentials, so that a
    /// wrong setting stops the server at startup instead of every request.
    pub async fn check(&self) -> Result<()> {
        self.list_page(&self.prefix, Some("/"), None, Some(1))
            .await
            .map(|_| ())
    }

    /// The key of a storage path.
    fn key(&self, path: &str) -> Result<String> {
        check_path(path)?;
        Ok(format!("{}{path}", self.prefix))
    }

    /// A transport-level failure (no answer, TLS, credentials lookup).
    fn failed(&self, path: &str, e: S3Error) -> StorageError {
        match e {
            S3Error::HttpFailWithBody(status, body) => {
                self.status_error(path, status, body.as_bytes())
            }
            S3Error::Reqwest(_) | S3Error::Credentials(_) | S3Error::HttpFail => {
                StorageError::Unavailable(format!("{}: {e}", self.place))
            }
            other => StorageError::Io {
                path: path.to_owned(),
                source: io::Error::other(format!("{}: {other}", self.place)),
            },
        }
    }

    /// An answer that is not a success.
    fn status_error(&self, path: &str, status: u16, body: &[u8]) -> StorageError {
        let code = error_code(body);
        match (status, code.as_deref()) {
            (404, Some("NoSuchBucket")) => {
                StorageError::Unavailable(format!("{}: the bucket does not exist", self.place))
            }
            (404, _) => StorageError::NotFound(path.to_owned()),
            (401 | 403, _) => StorageError::Unavailable(format!(
                "{} refused the credentials ({status} {})",
                self.place,
                code.as_deref().unwrap_or("")
            )),
            (500..=599, _) => StorageError::Unavailable(format!(
                "{} answered {status} {}",
                self.place,
                code.as_deref().unwrap_or("")
            )),
            _ => StorageError::Io {
                path: path.to_owned(),
                source: io::Error::other(format!(
                    "{} answered {status} {}",
                    self.place,
                    code.as_deref().unwrap_or("")
                )),
            },
        }
    }

    /// One page of a listing; a request of our own so that the status is
    /// checked before the body is read as a listing.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation_token: Option<String>,
        max_keys: Option<usize>,
    ) -> Result<ListBucketResult> {
        let command = Command::ListObjectsV2 {
            prefix: prefix.to_owned(),
            delimiter: delimiter.map(str::to_owned),
            continuation_token,
            start_after: None,
            max_keys,
        };
        let request = ReqwestRequest::new(&self.control, "/", command)
            .await
            .map_err(|e| self.failed(prefix, e))?;
        let response = request
            .response_data(false)
            .await
            .map_err(|e| self.failed(prefix, e))?;
        if !(200..300).contains(&response.status_code()) {
            return Err(self.status_error(prefix, response.status_code(), response.as_slice()));
        }
        quick_xml::de::from_reader(response.as_slice()).map_err(|e| StorageError::Io {
            path: prefix.to_owned(),
            source: io::Error::other(format!("{}: unreadable listing: {e}", self.place)),
        })
    }

    /// Every key under `prefix`, or the direct children with a delimiter.
    async fn list_all(&self, prefix: &str, delimiter: Option<&str>) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let page = self.list_page(prefix, delimiter, token, None).await?;
            for object in page.contents {
                names.push(object.key);
            }
            for common in page.common_prefixes.into_iter().flatten() {
                names.push(common.prefix);
            }
            match page.next_continuation_token {
                Some(next) if page.is_truncated => token = Some(next),
                _ => break,
            }
        }
        Ok(names)
    }

    /// The object's size, or NotFound.
    async fn head(&self, path: &str, key: &str) -> Result<u64> {
        Ok(self.head_info(path, key).await?.size)
    }

    /// The object's size and modification time, or NotFound.
    async fn head_info(&self, path: &str, key: &str) -> Result<FileInfo> {
        let (head, status) = self
            .control
            .head_object(key)
            .await
            .map_err(|e| self.failed(path, e))?;
        if !(200..300).contains(&status) {
            return Err(self.status_error(path, status, b""));
        }
        let modified = head
            .last_modified
            .as_deref()
            .and_then(|date| httpdate::parse_http_date(date).ok())
            .ok_or_else(|| StorageError::Io {
                path: path.to_owned(),
                source: io::Error::other(format!(
                    "{}: no readable Last-Modified for the object",
                    self.place
                )),
            })?;
        Ok(FileInfo {
            size: head.content_length.unwrap_or(0).max(0) as u64,
            modified,
        })
    }

    /// The `x-amz-copy-source` of a key: a URL path, where keys may hold
    /// `%`, spaces and other bytes that must be escaped.
    fn copy_source(&self, key: &str) -> String {
        format!(
            "/{}/{}",
            self.create.name(),
            percent_encoding::utf8_percent_encode(key, COPY_SOURCE)
        )
    }

    /// Copies the object at `from` (of `size` bytes) to `to` in parts of
    /// `part` bytes or more, on the server side: the way past
    /// [`COPY_LIMIT`], which [`Storage::rename`] takes for larger objects.
    /// `to` appears whole when the copy completes, or not at all.
    pub async fn copy_in_parts(&self, from: &str, to: &str, size: u64, part: u64) -> Result<()> {
        let from_key = self.key(from)?;
        let to_key = self.key(to)?;
        let part = part
            .max(size.div_ceil(u64::from(MAX_PARTS)))
            .max(MIN_PART as u64);
        let started = self
            .create
            .initiate_multipart_upload(&to_key, "application/octet-stream")
            .await
            .map_err(|e| self.failed(from, e))?;
        let id = started.upload_id;
        let mut parts = Vec::new();
        let mut first = 0;
        let mut number = 1;
        let copied = loop {
            let last = (first + part).min(size) - 1;
            match self
                .copy_part(from, &from_key, &to_key, &id, number, first, last)
                .await
            {
                Ok(etag) => parts.push(Part {
                    part_number: number,
                    etag,
                }),
                Err(e) => break Err(e),
            }
            first = last + 1;
            number += 1;
            if first >= size {
                break complete_upload(&self.control, &to_key, &id, parts)
                    .await
                    .map_err(|e| self.failed(from, e));
            }
        };
        if copied.is_err() {
            if let Err(e) = self.abort_key(from, &to_key, &id).await {
                log::warn!("could not abort the unfinished copy to {to_key}: {e}");
            }
        }
        copied
    }

    /// Copies bytes `first..=last` of `from_key` as part `number` of the
    /// upload `id`; returns the part's ETag.
    #[allow(clippy::too_many_arguments)]
    async fn copy_part(
        &self,
        path: &str,
        from_key: &str,
        to_key: &str,
        id: &str,
        number: u32,
        first: u64,
        last: u64,
    ) -> Result<String> {
        let header = |value: String| {
            reqwest::header::HeaderValue::from_str(&value).map_err(|e| StorageError::Io {
                path: path.to_owned(),
                source: io::Error::other(e),
            })
        };
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-amz-copy-source", header(self.copy_source(from_key))?);
        headers.insert(
            "x-amz-copy-source-range",
            header(format!("bytes={first}-{last}"))?,
        );
        let command = Command::PutObject {
            content: &[],
            multipart: Some(Multipart::new(number, id)),
            custom_headers: Some(headers),
            content_type: "application/octet-stream",
        };
        let request = ReqwestRequest::new(&self.parts, to_key, command)
            .await
            .map_err(|e| self.failed(path, e))?;
        let response = request
            .response_data(false)
            .await
            .map_err(|e| self.failed(path, e))?;
        let body = String::from_utf8_lossy(response.as_slice());
        let etag = body
            .find("<ETag>")
            .map(|at| &body[at + "<ETag>".len()..])
            .and_then(|rest| Some(&rest[..rest.find("</ETag>")?]));
        match etag {
            Some(etag) if (200..300).contains(&response.status_code()) => {
                // The document escapes the ETag's quotes.
                Ok(etag.replace("&quot;", "\"").replace("&#34;", "\""))
            }
            _ => Err(self.status_error(path, response.status_code().max(400), response.as_slice())),
        }
    }

    /// Copies `from_key` over `to_key` on the server side.
    async fn copy_key(&self, path: &str, from_key: &str, to_key: &str) -> Result<()> {
        let source = self.copy_source(from_key);
        let request =
            ReqwestRequest::new(&self.create, to_key, Command::CopyObject { from: &source })
                .await
                .map_err(|e| self.failed(path, e))?;
        let response = request
            .response_data(false)
            .await
            .map_err(|e| self.failed(path, e))?;
        let status = response.status_code();
        // S3 may answer 200 and still fail, with an error document.
        if !(200..300).contains(&status) || response.as_slice().windows(7).any(|w| w == b"<Error>")
        {
            return Err(self.status_error(path, status.max(400), response.as_slice()));
        }
        Ok(())
    }

    async fn put_key(&self, path: &str, key: &str, data: &[u8]) -> Result<()> {
        let response = self
            .create
            .put_object(key, data)
            .await
            .map_err(|e| self.failed(path, e))?;
        if !(200..300).contains(&response.status_code()) {
            return Err(self.status_error(path, response.status_code(), response.as_slice()));
        }
        Ok(())
    }

    /// Aborts a multipart upload; one already gone is fine.
    async fn abort_key(&self, path: &str, key: &str, id: &str) -> Result<()> {
        match self.control.abort_upload(key, id).await {
            Ok(()) | Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(self.failed(path, e)),
        }
    }

    /// The state a writer of `path` closed last, and its tail.
    async fn read_writer_state(&self, path: &str, state_key: &str) -> Result<(WriterState, Bytes)> {
        let response = self
            .control
            .get_object(state_key)
            .await
            .map_err(|e| self.failed(path, e))?;
        if !(200..300).contains(&response.status_code()) {
            return Err(self.status_error(path, response.status_code(), response.as_slice()));
        }
        WriterState::decode(response.bytes()).ok_or_else(|| StorageError::Io {
            path: path.to_owned(),
            source: io::Error::other(format!(
                "{}: unreadable writer state {state_key}",
                self.place
            )),
        })
    }

    async fn delete_key(&self, path: &str, key: &str) -> Result<()> {
        let response = self
            .control
            .delete_object(key)
            .await
            .map_err(|e| self.failed(path, e))?;
        match response.status_code() {
            200..=299 | 404 => Ok(()),
            status => Err(self.status_error(path, status, response.as_slice())),
        }
    }

    /// Streams a body to `key` in parts; the body's first `first` bytes
    /// are already read.
    async fn put_multipart(
        &self,
        path: &str,
        key: &str,
        first: BytesMut,
        mut blocks: Blocks,
    ) -> Result<u64> {
        let started = self
            .create
            .initiate_multipart_upload(key, "application/octet-stream")
            .await
            .map_err(|e| self.failed(path, e))?;
        let mut upload = Upload {
            bucket: self.parts.clone(),
            key: key.to_owned(),
            id: started.upload_id,
            parts: Vec::new(),
            in_flight: VecDeque::new(),
            next: 1,
            finished: false,
        };
        let mut part = Some(first);
        while let Some(data) = part {
            if let Err(e) = upload.send(data).await {
                upload.abort().await;
                return Err(self.failed(path, e));
            }
            part = match blocks.next(part_size(upload.next)).await {
                Ok(next) => next,
                Err(e) => {
                    upload.abort().await;
                    return Err(e);
                }
            };
        }
        upload.complete().await.map_err(|e| self.failed(path, e))?;
        Ok(blocks.total())
    }
}

/// What a key keeps unescaped in `x-amz-copy-source`: the characters
/// URL paths allow, `/` included.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn part_size(number: u32) -> usize {
    PART_SIZE * (1 + ((number.saturating_sub(1)) / PARTS_PER_STEP) as usize)
}

/// The `<Code>` of an S3 error document, else the start of whatever the
/// body is.
fn error_code(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let code = text
        .find("<Code>")
        .map(|at| &text[at + "<Code>".len()..])
        .and_then(|rest| Some(&rest[..rest.find("</Code>")?]));
    match code {
        Some(code) => Some(code.to_owned()),
        None if text.trim().is_empty() => None,
        None => Some(text.chars().take(200).collect()),
    }
}

/// A multipart upload under way. If it is dropped unfinished (an error,
/// or the request's future dropped when the client goes away), it is
/// aborted in the background so that no parts are left in the bucket and
/// the old object stays as it was.
struct Upload {
    bucket: Box<Bucket>,
    key: String,
    id: String,
    parts: Vec<Part>,
    in_flight: VecDeque<JoinHandle<Result<Part, S3Error>>>,
    next: u32,
    finished: bool,
}

impl Upload {
    /// Starts uploading the next part, first waiting for the oldest one if
    /// [`PARTS_IN_FLIGHT`] are under way.
    async fn send(&mut self, data: BytesMut) -> Result<(), S3Error> {
        if self.next > MAX_PARTS {
            return Err(S3Error::HttpFailWithBody(
                400,
                "<Code>EntityTooLarge</Code>".to_owned(),
            ));
        }
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.wait_oldest().await?;
        }
        let bucket = self.bucket.clone();
        let key = self.key.clone();
        let id = self.id.clone();
        let number = self.next;
        self.next += 1;
        self.in_flight.push_back(tokio::spawn(async move {
            bucket
                .put_multipart_chunk(
                    Vec::from(data),
                    &key,
                    number,
                    &id,
                    "application/octet-stream",
                )
                .await
        }));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<(), S3Error> {
        if let Some(handle) = self.in_flight.pop_front() {
            let part = handle
                .await
                .map_err(|e| S3Error::Io(io::Error::other(e.to_string())))??;
            self.parts.push(part);
        }
        Ok(())
    }

    async fn complete(mut self) -> Result<(), S3Error> {
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        let parts = std::mem::take(&mut self.parts);
        complete_upload(&self.bucket, &self.key, &self.id, parts).await?;
        self.finished = true;
        Ok(())
    }

    /// Aborts the upload now (the old object stays as it was).
    async fn abort(mut self) {
        self.finished = true;
        let in_flight = std::mem::take(&mut self.in_flight);
        abort_after(&self.bucket, &self.key, &self.id, in_flight).await;
    }
}

/// Makes a multipart upload the object at `key`.
async fn complete_upload(
    bucket: &Bucket,
    key: &str,
    id: &str,
    parts: Vec<Part>,
) -> Result<(), S3Error> {
    let response = match bucket.complete_multipart_upload(key, id, parts).await {
        Ok(response) => response,
        // rust-s3 wants the root element AWS sends; some compatible
        // stores name it otherwise. Only an <Error> means failure.
        Err(S3Error::HttpFailWithBody(200, body)) if !body.contains("<Error>") => return Ok(()),
        Err(e) => return Err(e),
    };
    if !(200..300).contains(&response.status_code()) {
        return Err(S3Error::HttpFailWithBody(
            response.status_code(),
            String::from_utf8_lossy(response.as_slice()).into_owned(),
        ));
    }
    Ok(())
}

/// Waits for the parts still being sent (an abort does not stop them),
/// then aborts the upload.
async fn abort_after(
    bucket: &Bucket,
    key: &str,
    id: &str,
    in_flight: VecDeque<JoinHandle<Result<Part, S3Error>>>,
) {
    for handle in in_flight {
        let _ = handle.await;
    }
    if let Err(e) = bucket.abort_upload(key, id).await {
        // A failed part aborts the upload itself; anything else leaves
        // parts that a bucket lifecycle rule must clean up.
        if !matches!(e, S3Error::HttpFailWithBody(404, _)) {
            log::warn!("could not abort the unfinished upload of {key}: {e}");
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let bucket = self.bucket.clone();
        let key = std::mem::take(&mut self.key);
        let id = std::mem::take(&mut self.id);
        let in_flight = std::mem::take(&mut self.in_flight);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { abort_after(&bucket, &key, &id, in_flight).await });
            }
            Err(_) => log::warn!("could not abort the unfinished upload of {key}: no runtime"),
        }
    }
}

/// What a writer closed: the multipart upload of its path and the parts
/// sent to it, in order.
#[derive(serde::Serialize, serde::Deserialize)]
struct WriterState {
    upload_id: String,
    parts: Vec<SentPart>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SentPart {
    number: u32,
    etag: String,
    size: u64,
}

impl WriterState {
    /// The state as one line of JSON, then the tail's bytes.
    fn encode(&self, tail: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = serde_json::to_vec(self)?;
        out.push(b'\n');
        out.extend_from_slice(tail);
        Ok(out)
    }

    fn decode(data: &Bytes) -> Option<(Self, Bytes)> {
        let end = data.iter().position(|&b| b == b'\n')?;
        let state = serde_json::from_slice(&data[..end]).ok()?;
        Some((state, data.slice(end + 1..)))
    }

    fn sent(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }
}

/// A file written across requests as one multipart upload. Bytes are
/// collected into parts of [`part_size`]; at most one part is held.
struct S3Writer {
    storage: S3Storage,
    path: String,
    key: String,
    state_key: String,
    state: WriterState,
    sent: u64,
    /// The bytes after the sent parts, fewer than one part.
    buffer: BytesMut,
}

impl S3Writer {
    fn next_number(&self) -> u32 {
        self.state.parts.last().map_or(1, |p| p.number + 1)
    }

    /// Sends the buffer as the next part. The buffer is kept until the
    /// part is in, so that a failed part can be sent again.
    async fn send_part(&mut self) -> Result<()> {
        let s = &self.storage;
        let number = self.next_number();
        if number > MAX_PARTS {
            return Err(s.status_error(&self.path, 400, b"<Code>EntityTooLarge</Code>"));
        }
        let command = Command::PutObject {
            content: &self.buffer,
            multipart: Some(Multipart::new(number, &self.state.upload_id)),
            custom_headers: None,
            content_type: "application/octet-stream",
        };
        let request = ReqwestRequest::new(&s.parts, &self.key, command)
            .await
            .map_err(|e| s.failed(&self.path, e))?;
        let response = request
            .response_data(true)
            .await
            .map_err(|e| s.failed(&self.path, e))?;
        if !(200..300).contains(&response.status_code()) {
            return Err(s.status_error(&self.path, response.status_code(), b""));
        }
        let etag = response
            .as_str()
            .map_err(|e| s.failed(&self.path, S3Error::Utf8(e)))?;
        if etag.is_empty() {
            return Err(s.status_error(&self.path, 502, b"<Code>NoETagForPart</Code>"));
        }
        let size = self.buffer.len() as u64;
        self.state.parts.push(SentPart {
            number,
            etag: etag.to_owned(),
            size,
        });
        self.sent += size;
        self.buffer.clear();
        Ok(())
    }

    /// Records the sent parts and the tail beside the path, in one PUT.
    async fn save(&self) -> Result<()> {
        let s = &self.storage;
        let state = self
            .state
            .encode(&self.buffer)
            .map_err(|e| StorageError::Io {
                path: self.path.clone(),
                source: e,
            })?;
        s.put_key(&self.path, &self.state_key, &state).await
    }
}

#[async_trait(?Send)]
impl FileWriter for S3Writer {
    fn size(&self) -> u64 {
        self.sent + self.buffer.len() as u64
    }

    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        loop {
            let target = part_size(self.next_number());
            if self.buffer.len() >= target {
                self.send_part().await?;
                continue;
            }
            if data.is_empty() {
                return Ok(());
            }
            let take = (target - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data.split_to(take));
        }
    }

    async fn close(mut self: Box<Self>) -> Result<u64> {
        // What is kept in the state object stays under one minimal part.
        if self.buffer.len() >= MIN_PART {
            self.send_part().await?;
        }
        self.save().await?;
        Ok(self.size())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64> {
        let size = self.size();
        let s = self.storage.clone();
        if self.state.parts.is_empty() {
            // Less than a part in all: one PUT, atomic by itself.
            s.put_key(&self.path, &self.key, &self.buffer).await?;
            s.abort_key(&self.path, &self.key, &self.state.upload_id)
                .await?;
        } else {
            if !self.buffer.is_empty() {
                self.send_part().await?;
            }
            let parts = self
                .state
                .parts
                .iter()
                .map(|p| Part {
                    part_number: p.number,
                    etag: p.etag.clone(),
                })
                .collect();
            complete_upload(&s.control, &self.key, &self.state.upload_id, parts)
                .await
                .map_err(|e| s.failed(&self.path, e))?;
        }
        s.delete_key(&self.path, &self.state_key).await?;
        Ok(size)
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        let s = &self.storage;
        s.abort_key(&self.path, &self.key, &self.state.upload_id)
            .await?;
        s.delete_key(&self.path, &self.state_key).await
    }
}

#[async_trait(?Send)]
impl Storage for S3Storage {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let key = self.key(path)?;
        let response = self
            .control
            .get_object(&key)
            .await
            .map_err(|e| self.failed(path, e))?;
        if !(200..300).contains(&response.status_code()) {
            return Err(self.status_error(path, response.status_code(), response.as_slice()));
        }
        Ok(response.into_bytes())
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let key = self.key(path)?;
        self.put_key(path, &key, &data).await
    }

    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)> {
        let key = self.key(path)?;
        let response = self
            .control
            .get_object(&key)
            .await
            .map_err(|e| self.failed(path, e))?;
        if !(200..300).contains(&response.status_code()) {
            return Err(self.status_error(path, response.status_code(), response.as_slice()));
        }
        let etag = response
            .headers()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
            .map(|(_, v)| v)
            .ok_or_else(|| StorageError::Io {
                path: path.to_owned(),
                source: io::Error::other("GET answered no ETag"),
            })?;
        Ok((response.into_bytes(), Version(etag)))
    }

    /// A conditional PUT: `If-Match: <etag>`, or `If-None-Match: *` for a
    /// file that must not exist yet; S3 answers 412 (or 409 for a
    /// concurrent conditional write) when the condition fails.
    async fn put_if(&self, path: &str, data: Bytes, expected: Option<&Version>) -> Result<bool> {
        let key = self.key(path)?;
        let (name, value) = match expected {
            Some(Version(etag)) => ("If-Match", etag.as_str()),
            None => ("If-None-Match", "*"),
        };
        let request = self
            .create
            .put_object_builder(&key, &data)
            .with_header(name, value)
            .map_err(|e| self.failed(path, e))?;
        let status = match request.execute().await {
            Ok(response) => response.status_code(),
            Err(S3Error::HttpFailWithBody(code, _)) if code == 412 || code == 409 => code,
            Err(e) => return Err(self.failed(path, e)),
        };
        match status {
            200..=299 => Ok(true),
            // 404: If-Match on a file removed meanwhile.
            412 | 409 | 404 => Ok(false),
            code => Err(self.status_error(path, code, b"")),
        }
    }

    async fn put_stream(&self, path: &str, body: ByteStream) -> Result<u64> {
        let key = self.key(path)?;
        // A body smaller than one part is sent in one PUT, which is atomic
        // by itself; a larger one becomes an object only when the
        // multipart upload completes.
        let mut blocks = Blocks::new(body);
        let first = blocks.next(PART_SIZE).await?.unwrap_or_default();
        if first.len() < PART_SIZE {
            self.put(path, first.freeze()).await?;
            return Ok(blocks.total());
        }
        self.put_multipart(path, &key, first, blocks).await
    }

    async fn get_stream(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
        let key = self.key(path)?;
        let command = match range {
            None => Command::GetObject,
            Some(r) => Command::GetObjectRange {
                start: r.first,
                end: Some(r.last.max(r.first)),
            },
        };
        let request = ReqwestRequest::new(&self.streaming, &key, command)
            .await
            .map_err(|e| self.failed(path, e))?;
        let mut response = request
            .response_data_to_stream()
            .await
            .map_err(|e| self.failed(path, e))?;
        match response.status_code {
            200..=299 => {}
            416 => {
                let size = self.head(path, &key).await?;
                return Err(StorageError::InvalidRange {
                    path: path.to_owned(),
                    size,
                });
            }
            status => {
                // An error document is small; read it for its code.
                let mut body = Vec::new();
                while let Some(Ok(chunk)) = response.bytes.next().await {
                    body.extend_from_slice(&chunk);
                    if body.len() > 64 * 1024 {
                        break;
                    }
                }
                return Err(self.status_error(path, status, &body));
            }
        }
        Ok(Box::pin(
            response
                .bytes
                .map_err(io::Error::other)
                .map_ok(|chunk| futures_util::stream::iter(sliced(chunk).map(Ok)))
                .try_flatten(),
        ))
    }

    async fn size(&self, path: &str) -> Result<u64> {
        let key = self.key(path)?;
        self.head(path, &key).await
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        let key = self.key(path)?;
        match self.head(path, &key).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let prefix = format!("{}/", self.key(path)?);
        let mut names: Vec<String> = self
            .list_all(&prefix, Some("/"))
            .await?
            .into_iter()
            .filter_map(|key| {
                let name = key.strip_prefix(&prefix)?.trim_end_matches('/');
                // `prefix` itself: a folder marker some tools create.
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

    /// One listing, as [`Storage::folders_holding`]: S3 lists each key
    /// with its `LastModified`, so the times cost no request of their own.
    async fn folders_holding_with_times(
        &self,
        path: &str,
        file: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>> {
        let prefix = format!("{}/", self.key(path)?);
        check_path(file)?;
        let suffix = format!("/{file}");
        let (mut any, mut held, mut token) = (false, Vec::new(), None);
        loop {
            let page = self.list_page(&prefix, None, token, None).await?;
            for object in page.contents {
                any = true;
                let Some(child) = object
                    .key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(&suffix))
                    .filter(|child| !child.is_empty() && !child.contains('/'))
                else {
                    continue;
                };
                // A store that writes the time otherwise is asked by HEAD.
                let modified = match object.last_modified.parse::<jiff::Timestamp>() {
                    Ok(at) => std::time::SystemTime::from(at),
                    Err(_) => self.stat(&format!("{path}/{child}/{file}")).await?.modified,
                };
                held.push((child.to_owned(), modified));
            }
            match page.next_continuation_token {
                Some(next) if page.is_truncated => token = Some(next),
                _ => break,
            }
        }
        if !any {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        held.sort();
        Ok(held)
    }

    async fn remove(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        match self.head(path, &key).await {
            Ok(_) => return self.delete_key(path, &key).await,
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let keys = self.list_all(&format!("{key}/"), None).await?;
        if keys.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        futures_util::stream::iter(keys)
            .map(|key| async move { self.delete_key(path, &key).await })
            .buffer_unordered(DELETES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn writer(&self, path: &str, resume: Option<u64>) -> Result<Box<dyn FileWriter>> {
        let key = self.key(path)?;
        let state_key = format!("{key}{WRITER_SUFFIX}");
        let Some(n) = resume else {
            // A file in progress here before is dropped, parts and all.
            match self.read_writer_state(path, &state_key).await {
                Ok((old, _)) => self.abort_key(path, &key, &old.upload_id).await?,
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            // Started now and recorded at once, so that parts a writer
            // sends and never closes belong to an upload that `cancel` or
            // `commit` ends, not to one nobody knows of.
            let started = self
                .create
                .initiate_multipart_upload(&key, "application/octet-stream")
                .await
                .map_err(|e| self.failed(path, e))?;
            let writer = S3Writer {
                storage: self.clone(),
                path: path.to_owned(),
                key,
                state_key,
                state: WriterState {
                    upload_id: started.upload_id,
                    parts: Vec::new(),
                },
                sent: 0,
                buffer: BytesMut::new(),
            };
            writer.save().await?;
            return Ok(Box::new(writer));
        };
        let (mut state, tail) = self.read_writer_state(path, &state_key).await?;
        let (keep, kept) = resume_point(state.parts.iter().map(|p| p.size), tail.len() as u64, n)
            .map_err(|size| StorageError::InvalidRange {
            path: path.to_owned(),
            size,
        })?;
        state.parts.truncate(keep);
        let buffer = BytesMut::from(&tail[..kept as usize]);
        Ok(Box::new(S3Writer {
            storage: self.clone(),
            path: path.to_owned(),
            key,
            state_key,
            sent: state.sent(),
            state,
            buffer,
        }))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let from_key = self.key(from)?;
        let to_key = self.key(to)?;
        // A copy is whole or nothing, so `to` never shows a part; `from`
        // goes only once the copy is there.
        let size = self.head(from, &from_key).await?;
        if from_key == to_key {
            // S3 refuses to copy an object onto itself unchanged.
            return Ok(());
        }
        if size > COPY_LIMIT {
            self.copy_in_parts(from, to, size, COPY_PART).await?;
        } else {
            self.copy_key(from, &from_key, &to_key).await?;
        }
        self.delete_key(from, &from_key).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let from_key = self.key(from)?;
        let to_key = self.key(to)?;
        let size = self.head(from, &from_key).await?;
        if from_key == to_key {
            return Ok(());
        }
        // Server-side: the bytes never pass through this process.
        if size > COPY_LIMIT {
            self.copy_in_parts(from, to, size, COPY_PART).await
        } else {
            self.copy_key(from, &from_key, &to_key).await
        }
    }

    async fn lock(&self, path: &str) -> Result<Lock> {
        // S3 has no lock: this process's holders only. Across instances,
        // `put_if` (conditional writes) is the compare-and-swap.
        check_path(path)?;
        Ok(Lock::new(self.locks.lock(path).await, None))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let key = self.key(path)?;
        self.head_info(path, &key).await
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>> {
        let key = self.key(path)?;
        self.head(path, &key).await?;
        let url = self
            .control
            .presign_get(&key, REDIRECT_EXPIRY_SECS, None)
            .await
            .map_err(|e| self.failed(path, e))?;
        Ok(Some(url))
    }
}

/// `chunk` in pieces of at most [`BODY_SLICE`] bytes, sharing its memory
/// (the Swift driver hands its bodies on the same way).
pub(super) fn sliced(chunk: Bytes) -> impl Iterator<Item = Bytes> {
    let len = chunk.len();
    (0..len.div_ceil(BODY_SLICE))
        .map(move |i| chunk.slice(i * BODY_SLICE..((i + 1) * BODY_SLICE).min(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_handed_on_in_slices_of_the_same_bytes() {
        for len in [
            0,
            1,
            BODY_SLICE - 1,
            BODY_SLICE,
            BODY_SLICE + 1,
            3 * BODY_SLICE + 5,
        ] {
            let chunk = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            let pieces: Vec<Bytes> = sliced(chunk.clone()).collect();
            assert_eq!(pieces.len(), len.div_ceil(BODY_SLICE), "{len} bytes");
            assert!(pieces
                .iter()
                .all(|p| !p.is_empty() && p.len() <= BODY_SLICE));
            assert_eq!(pieces.concat(), chunk, "{len} bytes");
        }
    }

    fn settings() -> S3Settings {
        S3Settings {
            bucket: "b".into(),
            region: None,
            access_key: Some("AK".into()),
            secret_key: Some("SK".into()),
            encrypt: false,
            secure: true,
            host: None,
            port: None,
        }
    }

    #[test]
    fn keys_are_storage_path_without_its_slashes() {
        for (storage_path, key) in [
            ("/registry", "registry/images/x/json"),
            ("/registry/", "registry/images/x/json"),
            ("registry/sub", "registry/sub/images/x/json"),
            ("/", "images/x/json"),
            ("", "images/x/json"),
        ] {
            let s = S3Storage::new(&StorageKind::S3, &settings(), storage_path).unwrap();
            assert_eq!(s.key("images/x/json").unwrap(), key, "{storage_path:?}");
        }
    }

    #[test]
    fn endpoints() {
        let s = S3Storage::new(&StorageKind::S3, &settings(), "/r").unwrap();
        assert_eq!(s.control.url(), "https://b.s3.amazonaws.com");
        let mut eu = settings();
        eu.region = Some("eu-west-1".into());
        let s = S3Storage::new(&StorageKind::S3, &eu, "/r").unwrap();
        assert_eq!(s.control.url(), "https://b.s3-eu-west-1.amazonaws.com");
        let mut ceph = settings();
        ceph.host = Some("ceph.local".into());
        ceph.port = Some(7480);
        ceph.secure = false;
        let s = S3Storage::new(&StorageKind::S3, &ceph, "/r").unwrap();
        assert_eq!(s.control.url(), "http://ceph.local:7480/b");
        let s = S3Storage::new(&StorageKind::Gcs, &settings(), "/r").unwrap();
        assert_eq!(s.control.url(), "https://storage.googleapis.com/b");
        assert_eq!(s.name(), "gcs");
    }

    #[test]
    fn part_sizes_grow_to_reach_large_objects() {
        assert_eq!(part_size(1), PART_SIZE);
        assert_eq!(part_size(1000), PART_SIZE);
        assert_eq!(part_size(1001), 2 * PART_SIZE);
        let reach: u64 = (1..=MAX_PARTS).map(|n| part_size(n) as u64).sum();
        assert!(reach > 400 * (1 << 30), "{reach}");
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        let s = S3Storage::new(&StorageKind::S3, &settings(), "/r").unwrap();
        let doc = |code: &str| format!("<Error><Code>{code}</Code></Error>");
        let kind = |status: u16, body: &str| match s.status_error("p", status, body.as_bytes()) {
            StorageError::NotFound(_) => "not found",
            StorageError::Unavailable(_) => "unavailable",
            StorageError::Io { .. } => "io",
            _ => "other",
        };
        assert_eq!(kind(404, &doc("NoSuchKey")), "not found");
        assert_eq!(kind(404, ""), "not found");
        assert_eq!(kind(404, &doc("NoSuchBucket")), "unavailable");
        assert_eq!(kind(403, &doc("SignatureDoesNotMatch")), "unavailable");
        assert_eq!(kind(403, &doc("InvalidAccessKeyId")), "unavailable");
        assert_eq!(kind(401, ""), "unavailable");
        assert_eq!(kind(503, &doc("SlowDown")), "unavailable");
        assert_eq!(kind(400, &doc("InvalidArgument")), "io");
        let msg = s
            .status_error("p", 403, doc("AccessDenied").as_bytes())
            .to_string();
        assert!(msg.contains("AccessDenied"), "{msg}");
    }

    #[test]
    fn error_codes_are_read() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>";
        assert_eq!(error_code(body).as_deref(), Some("NoSuchBucket"));
        assert_eq!(error_code(b""), None);
    }
}
