//! A client of one upstream registry, for the pull-through cache: the v2
//! requests a pull makes (the API check, a manifest, its digest, a blob),
//! logged in the way the upstream asks (anonymously, Basic, or the Bearer
//! token flow of Docker Hub, ghcr.io and quay.io), bounded in time and in
//! requests at once.
//!
//! Only the upstream's own URL (and the token service and blob locations
//! its answers name) is ever asked: what a client sends picks an upstream
//! among the configured ones, never a host.

mod challenge;
pub mod token;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use challenge::Challenge;

/// The largest manifest read from an upstream (the size the OCI model
/// takes from a push).
pub const MAX_MANIFEST: usize = 4 << 20;

/// The most pages of a tag list followed (Docker Hub's are 100 tags).
pub const MAX_TAG_PAGES: usize = 100;

/// How to reach one upstream.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// `http(s)://host[:port]`, no trailing `/`.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// To connect, to answer, and between two blocks of a body.
    pub timeout: Duration,
    /// Requests in flight at once (a blob's until its body is read).
    pub max_concurrent: usize,
}

/// Which API the upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V2,
    V1,
}

/// What went wrong asking the upstream, in the cache's words.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("not found upstream")]
    NotFound,
    /// Refused after logging in as configured.
    #[error("refused by the upstream: {0}")]
    Denied(String),
    #[error("the upstream's rate limit was hit")]
    TooManyRequests(Option<Duration>),
    /// Down, slow, or answering 5xx.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// An answer that breaks the protocol.
    #[error("invalid answer from the upstream: {0}")]
    Invalid(String),
    /// `max_concurrent` requests were in flight for longer than the timeout.
    #[error("too many requests to the upstream in flight")]
    Busy,
}

impl UpstreamError {
    /// A label for metrics and logs: one word a kind.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::NotFound => "not_found",
            UpstreamError::Denied(_) => "denied",
            UpstreamError::TooManyRequests(_) => "too_many_requests",
            UpstreamError::Unavailable(_) => "unavailable",
            UpstreamError::Invalid(_) => "invalid",
            UpstreamError::Busy => "busy",
        }
    }
}

pub type Result<T, E = UpstreamError> = std::result::Result<T, E>;

/// A manifest as the upstream sent it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    /// `Docker-Content-Digest`, when sent.
    pub digest: Option<String>,
}

/// A blob body on its way from the upstream.
pub struct Blob {
    /// `Content-Length`, when sent.
    pub length: Option<u64>,
    pub stream: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
}

/// One upstream registry. Cheap to share behind an `Arc`.
pub struct Upstream {
    config: UpstreamConfig,
    http: reqwest::Client,
    slots: Arc<Semaphore>,
    tokens: token::Tokens,
    /// The upstream asked for Basic once: send it from then on.
    basic: AtomicBool,
    /// 0 unknown, 1 v2, 2 v1.
    api: AtomicU8,
}

impl Upstream {
    /// How long any one step with this upstream may take
    /// (`mirror_timeout`).
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    pub fn new(config: UpstreamConfig) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| anyhow::anyhow!("upstream URL {}: {e}", config.url))?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            anyhow::bail!("upstream URL {} is not an http(s) address", config.url);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            // Redirects (to a CDN for blobs) are the upstream's choice;
            // reqwest drops our Authorization when one leaves the host.
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("registry-v1/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            tokens: token::Tokens::default(),
            basic: AtomicBool::new(false),
            api: AtomicU8::new(0),
            http,
            config,
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// `GET /v2/`: a v2 registry answers 200, or 401 with its challenge; a
    /// v1-only one (the old Python registry) 404. Remembered once known.
    pub async fn api(&self) -> Result<Api> {
        match self.api.load(Ordering::Relaxed) {
            1 => return Ok(Api::V2),
            2 => return Ok(Api::V1),
            _ => {}
        }
        let _slot = self.slot().await?;
        let url = format!("{}/v2/", self.config.url);
        let resp = self.timed(self.http.get(&url).send()).await?;
        let v2 = resp
            .headers()
            .contains_key("docker-distribution-api-version")
            || resp.headers().contains_key(header::WWW_AUTHENTICATE);
        let api = match resp.status() {
            s if s.is_success() => Api::V2,
            StatusCode::UNAUTHORIZED if v2 => Api::V2,
            StatusCode::NOT_FOUND => Api::V1,
            s => return Err(status_error(s, resp.headers())),
        };
        self.api
            .store(if api == Api::V2 { 1 } else { 2 }, Ordering::Relaxed);
        Ok(api)
    }

    /// `GET /v2/<repo>/manifests/<reference>`, at most [`MAX_MANIFEST`].
    pub async fn manifest(&self, repo: &str, reference: &str, accept: &str) -> Result<Manifest> {
        let _slot = self.slot().await?;
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self.send(Method::GET, &path, repo, accept).await?;
        let media_type = header_text(resp.headers(), header::CONTENT_TYPE.as_str())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let digest = header_text(resp.headers(), "docker-content-digest");
        Ok(Manifest {
            bytes: self.read_bounded(resp, "a manifest").await?,
            media_type,
            digest,
        })
    }

    /// Every tag of `repo` (`GET /v2/<repo>/tags/list`), following the
    /// upstream's `Link` pages on its own host, at most [`MAX_TAG_PAGES`]
    /// of them, each at most [`MAX_MANIFEST`] bytes.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let _slot = self.slot().await?;
        let mut path = format!("/v2/{repo}/tags/list");
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let resp = self
                .send(Method::GET, &path, repo, "application/json")
                .await?;
            let next = header_text(resp.headers(), header::LINK.as_str())
                .and_then(|link| next_page(&link, repo));
            let body = self.read_bounded(resp, "a tag list").await?;
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| UpstreamError::Invalid(format!("a tag list: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => path = next,
                None => return Ok(tags),
            }
        }
        log::warn!(
            "upstream {}: the tags of {repo} run past {MAX_TAG_PAGES} pages; listing the first",
            self.config.url
        );
        Ok(tags)
    }

    /// A body of at most [`MAX_MANIFEST`] bytes, each block within the
    /// timeout.
    async fn read_bounded(&self, resp: reqwest::Response, what: &str) -> Result<Bytes> {
        let too_large =
            || UpstreamError::Invalid(format!("{what} of more than {MAX_MANIFEST} bytes"));
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST as u64)
        {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        let mut stream = std::pin::pin!(self.idle_bounded(resp.bytes_stream()));
        while let Some(block) = stream.next().await {
            let block = block.map_err(UpstreamError::Unavailable)?;
            if body.len() + block.len() > MAX_MANIFEST {
                return Err(too_large());
            }
            body.extend_from_slice(&block);
        }
        Ok(body.freeze())
    }

    /// `HEAD /v2/<repo>/manifests/<reference>`: the digest the upstream
    /// names now, without a GET (Docker Hub counts GETs against its pull
    /// limit, not HEADs). `None` when it sends no digest.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
        accept: &str,
    ) -> Result<Option<String>> {
        let _slot = self.slot().await?;
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self.send(Method::HEAD, &path, repo, accept).await?;
        Ok(header_text(resp.headers(), "docker-content-digest"))
    }

    /// `GET /v2/<repo>/blobs/<digest>`, its body streamed as it comes; the
    /// request holds its slot until the body is read or dropped.
    pub async fn blob(&self, repo: &str, digest: &str) -> Result<Blob> {
        let slot = self.slot().await?;
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self.send(Method::GET, &path, repo, "*/*").await?;
        Ok(self.streamed(resp, slot))
    }

    /// The body of `resp` as it comes, each block within the timeout,
    /// holding `slot` until the body is read or dropped.
    fn streamed(&self, resp: reqwest::Response, slot: OwnedSemaphorePermit) -> Blob {
        let length = resp.content_length();
        let stream = self.idle_bounded(resp.bytes_stream()).map(move |block| {
            // The slot goes when the stream does.
            let _held: &OwnedSemaphorePermit = &slot;
            block.map_err(|e| std::io::Error::other(e.to_string()))
        });
        Blob {
            length,
            stream: Box::pin(stream),
        }
    }

    /// `GET <base><path_and_query>` of the v1 API (the old Python
    /// registry): a body of at most [`MAX_MANIFEST`] bytes and the
    /// answer's headers. `base` is this upstream's URL or its configured
    /// index (`source_index`), never a host a request named. Basic
    /// credentials go along when configured: the v1 API knows no Bearer
    /// flow of this kind.
    pub async fn v1_get(&self, base: &str, path_and_query: &str) -> Result<(HeaderMap, Bytes)> {
        let _slot = self.slot().await?;
        let resp = self.v1_send(base, path_and_query).await?;
        let headers = resp.headers().clone();
        Ok((headers, self.read_bounded(resp, "a v1 answer").await?))
    }

    /// `GET <path>` of the v1 API on this upstream, its body streamed as
    /// it comes (a layer); the slot is held until the body is read or
    /// dropped, as for [`Upstream::blob`].
    pub async fn v1_stream(&self, path: &str) -> Result<Blob> {
        let slot = self.slot().await?;
        let base = self.config.url.clone();
        let resp = self.v1_send(&base, path).await?;
        Ok(self.streamed(resp, slot))
    }

    async fn v1_send(&self, base: &str, path_and_query: &str) -> Result<reqwest::Response> {
        let url = format!("{base}{path_and_query}");
        let mut request = self
            .http
            .get(&url)
            .header(header::ACCEPT, "application/json, */*");
        if let Some(value) = self.basic_value() {
            request = request.header(header::AUTHORIZATION, value);
        }
        let resp = self.timed(request.send()).await?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::UNAUTHORIZED => Err(UpstreamError::Denied(format!(
                "{base} answered 401 to a v1 request"
            ))),
            s => Err(status_error(s, resp.headers())),
        }
    }

    /// A request slot, waited for at most the timeout.
    async fn slot(&self) -> Result<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.config.timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(UpstreamError::Busy),
        }
    }

    /// A request's answer within the timeout; a failure to connect or to
    /// answer in time is the upstream being unavailable.
    async fn timed(
        &self,
        send: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    ) -> Result<reqwest::Response> {
        match tokio::time::timeout(self.config.timeout, send).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(UpstreamError::Unavailable(without_url(&e))),
            Err(_) => Err(UpstreamError::Unavailable(format!(
                "no answer within {} s",
                self.config.timeout.as_secs()
            ))),
        }
    }

    /// A body whose blocks must each come within the timeout.
    fn idle_bounded<S>(&self, stream: S) -> impl Stream<Item = Result<Bytes, String>> + Send
    where
        S: Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    {
        let timeout = self.config.timeout;
        futures_util::stream::unfold(Some(Box::pin(stream)), move |state| async move {
            let mut stream = state?;
            match tokio::time::timeout(timeout, stream.next()).await {
                Ok(Some(Ok(block))) => Some((Ok(block), Some(stream))),
                Ok(Some(Err(e))) => Some((Err(without_url(&e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(format!("the body stalled for {} s", timeout.as_secs())),
                    None,
                )),
            }
        })
    }

    /// Sends a request for `path` of repository `repo`, logging in as the
    /// upstream asks: with the credentials or token it asked for last, and
    /// once more with a fresh one when it answers 401.
    async fn send(
        &self,
        method: Method,
        path: &str,
        repo: &str,
        accept: &str,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.config.url);
        let default_scope = format!("repository:{repo}:pull");
        let mut authorization = self.known_authorization(&default_scope);
        let mut retried = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header(header::ACCEPT, accept);
            if let Some(value) = &authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let resp = self.timed(request.send()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return match resp.status() {
                    s if s.is_success() => Ok(resp),
                    s => Err(status_error(s, resp.headers())),
                };
            }
            if retried {
                return Err(UpstreamError::Denied(format!(
                    "{} answered 401 to the credentials it asked for",
                    self.config.url
                )));
            }
            retried = true;
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(challenge::parse)
                .collect();
            authorization = Some(self.answer(&challenges, &default_scope).await?);
        }
    }

    /// What to send before being asked: a token still fresh for the
    /// scope, or Basic once the upstream has asked for it.
    fn known_authorization(&self, scope: &str) -> Option<String> {
        if let Some(token) = self.tokens.fresh(scope) {
            return Some(format!("Bearer {token}"));
        }
        self.basic
            .load(Ordering::Relaxed)
            .then(|| self.basic_value())
            .flatten()
    }

    fn basic_value(&self) -> Option<String> {
        use base64::Engine;
        let (user, password) = self
            .config
            .username
            .as_ref()
            .zip(self.config.password.as_ref())?;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(format!("Basic {encoded}"))
    }

    /// The `Authorization` that answers the upstream's challenges.
    async fn answer(&self, challenges: &[Challenge], default_scope: &str) -> Result<String> {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer.param("realm").ok_or_else(|| {
                UpstreamError::Invalid("a Bearer challenge without a realm".into())
            })?;
            let scope = bearer.param("scope").unwrap_or(default_scope);
            let token = self
                .tokens
                .fetch(
                    &self.http,
                    token::Request {
                        realm,
                        service: bearer.param("service"),
                        scope,
                        basic: self.basic_value(),
                        timeout: self.config.timeout,
                    },
                )
                .await?;
            // Cached under the scope the next request will look it up by too.
            if scope != default_scope {
                self.tokens.alias(default_scope, scope);
            }
            return Ok(format!("Bearer {token}"));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match self.basic_value() {
                Some(value) => {
                    self.basic.store(true, Ordering::Relaxed);
                    Ok(value)
                }
                None => Err(UpstreamError::Denied(format!(
                    "{} asks for a login and none is configured",
                    self.config.url
                ))),
            };
        }
        Err(UpstreamError::Denied(format!(
            "{} answered 401 without a challenge this registry can answer",
            self.config.url
        )))
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The path of the page a `Link: <...>; rel="next"` names, when it is a
/// page of the same repository's tags on the same host: a link elsewhere
/// is not followed.
fn next_page(link: &str, repo: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    if !params.contains("rel=\"next\"") {
        return None;
    }
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    let wanted = format!("/v2/{repo}/tags/list?");
    target.starts_with(&wanted).then(|| target.to_owned())
}

/// The error of a status other than success and 401.
fn status_error(status: StatusCode, headers: &HeaderMap) -> UpstreamError {
    match status {
        StatusCode::NOT_FOUND => UpstreamError::NotFound,
        StatusCode::FORBIDDEN => UpstreamError::Denied(format!("answered {status}")),
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::TooManyRequests(
            header_text(headers, "retry-after")
                .and_then(|s| s.trim().parse().ok())
                .map(Duration::from_secs),
        ),
        s if s.is_server_error() => UpstreamError::Unavailable(format!("answered {s}")),
        s => UpstreamError::Invalid(format!("answered {s}")),
    }
}

/// reqwest's message, without the URL it may carry (a token service's
/// query can hold a scope; never credentials, but keep logs plain).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body broke off"
    } else if e.is_redirect() {
        "too many redirects"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn only_the_next_page_of_the_same_tags_on_the_same_host_is_followed() {
        let repo = "library/busybox";
        assert_eq!(
            next_page(
                "</v2/library/busybox/tags/list?last=1.36&n=100>; rel=\"next\"",
                repo
            )
            .as_deref(),
            Some("/v2/library/busybox/tags/list?last=1.36&n=100")
        );
        for link in [
            "<https://evil.example/v2/library/busybox/tags/list?n=1>; rel=\"next\"",
            "<//evil.example/v2/library/busybox/tags/list?n=1>; rel=\"next\"",
            "</v2/other/tags/list?n=1>; rel=\"next\"",
            "</v2/library/busybox/tags/list?n=1>; rel=\"prev\"",
            "garbage",
        ] {
            assert_eq!(next_page(link, repo), None, "{link}");
        }
    }
}
