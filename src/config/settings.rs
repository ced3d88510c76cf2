//! The typed settings the rest of the code reads.
//!
//! Built once from the resolved flavor tree (see [`super::load`]); nothing
//! else looks settings up by string. The tree itself is kept in
//! [`Settings::raw`] so that keys we do not use survive (`registry-v1 config`
//! prints them).
//!
//! Typing is strict where the old registry compared with `is True`: a
//! boolean setting takes a YAML boolean (or null: false), never a string.

use std::fmt;
use std::path::PathBuf;

use serde_yaml::{Mapping, Value};

use super::env::{key_text, Origins};
use super::ConfigError;

/// `body_idle_timeout` when unset, in seconds (nginx's
/// `client_body_timeout`).
pub const DEFAULT_BODY_IDLE_TIMEOUT: u64 = 60;
/// `max_concurrent_uploads` when unset.
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: u64 = 100;

/// Everything the server needs, typed.
#[derive(Clone)]
pub struct Settings {
    /// The flavor the settings come from (`SETTINGS_FLAVOR`).
    pub flavor: String,
    /// Where the configuration came from: a file path, or the built-in sample.
    pub source: ConfigSource,
    pub loglevel: LogLevel,
    /// `/_ping` shows versions and host details, and responses carry
    /// `X-Docker-Registry-Config: <flavor>`.
    pub debug: bool,
    /// The JSON text served at `GET /`.
    pub issue: String,
    /// No central index: the stand-in index routes are served.
    pub standalone: bool,
    /// The index that checks tokens when not standalone (no trailing `/`).
    pub index_endpoint: Option<String>,
    pub disable_token_auth: bool,
    /// The v2 API's `DELETE` routes (blobs, manifests, tags) are served;
    /// off, they answer 405 `UNSUPPORTED`. Unset: on. v1 deletes are the
    /// old registry's contract and are not affected.
    pub delete_enabled: bool,
    /// A request body that sends no byte for this long fails (its
    /// temporary file removed). Unset: 60 s.
    pub body_idle_timeout: std::time::Duration,
    /// Uploads (v1 image json and layer PUTs, v2 blob upload requests)
    /// served at once; more are refused (429). Unset: 100.
    pub max_concurrent_uploads: usize,
    /// RSA public key (PEM) whose `X-Signature`s are authorised.
    pub privileged_key: Option<PathBuf>,
    /// Value of `X-Docker-Endpoints`; `None`: the request's Host header.
    pub registry_endpoints: Option<String>,
    pub storage: StorageSettings,
    pub search: SearchSettings,
    pub cors: CorsSettings,
    /// Garbage collection (`gc_*`).
    pub gc: GcSettings,
    /// Open v2 upload sessions (`max_upload_sessions*`).
    pub upload_sessions: UploadSessionSettings,
    /// `mirroring.source` is set: `/_ping` says `mirror`.
    pub mirroring: bool,
    /// The pull-through cache: the old `mirroring` section's source and the
    /// `upstreams`, with the bounds on what is asked of them.
    pub mirror: MirrorSettings,
    /// Logins of the v2 era (htpasswd or token service); off by default.
    pub login: LoginSettings,
    /// `tls_*`: https instead of plain http; `None`: plain http.
    pub tls: Option<TlsSettings>,
    /// `metrics_*`: the Prometheus listener; `None`: no metrics served.
    pub metrics: Option<MetricsSettings>,
    /// `cache` (or else `cache_lru`): the Redis cache of small files;
    /// `None`: no cache.
    pub cache: Option<CacheSettings>,
    /// `email_exceptions` (or the older top-level `smtp_host`...): server
    /// errors mailed; `None`: off.
    pub email: Option<EmailSettings>,
    /// `notifications`: webhooks, in the shape of distribution's section.
    pub notifications: NotificationSettings,
    /// `rules`: what the operator sets once for the repositories a pattern
    /// names (immutable tags).
    pub rules: Vec<RuleSettings>,
    /// `web_ui`, `web_ui_prefix`: the pages for people.
    pub web_ui: WebUiSettings,
    /// What the configuration holds that is not acted on (unknown keys,
    /// settings this build ignores), said once at startup and by
    /// `config --check`.
    pub notices: Vec<super::keys::Notice>,
    /// The resolved tree of the flavor, unknown keys included.
    pub raw: serde_yaml::Value,
}

impl fmt::Debug for Settings {
    // Secrets never reach a log, even through `{:?}`: the raw tree is shown
    // masked, as `registry-v1 config` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("flavor", &self.flavor)
            .field("source", &self.source)
            .field("loglevel", &self.loglevel)
            .field("debug", &self.debug)
            .field("issue", &self.issue)
            .field("standalone", &self.standalone)
            .field("index_endpoint", &self.index_endpoint)
            .field("disable_token_auth", &self.disable_token_auth)
            .field("delete_enabled", &self.delete_enabled)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("privileged_key", &self.privileged_key)
            .field("registry_endpoints", &self.registry_endpoints)
            .field("storage", &self.storage)
            .field("search", &self.search)
            .field("cors", &self.cors)
            .field("gc", &self.gc)
            .field("upload_sessions", &self.upload_sessions)
            .field("mirroring", &self.mirroring)
            .field("mirror", &self.mirror)
            .field("login", &self.login)
            .field("tls", &self.tls)
            .field("metrics", &self.metrics)
            .field("cache", &self.cache)
            .field("email", &self.email)
            .field("notifications", &self.notifications)
            .field("rules", &self.rules)
            .field("web_ui", &self.web_ui)
            .field("notices", &self.notices)
            .field("raw", &super::mask(&self.raw))
            .finish()
    }
}

/// The web pages (`web_ui`, `web_ui_prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebUiSettings {
    /// Pages are served; unset: on.
    pub enabled: bool,
    /// Where the pages live: `""` (the root; unset) or `/a/b`, no trailing
    /// `/`, never under `/v1` or `/v2`.
    pub prefix: String,
}

/// Garbage collection: `registry-v1 gc` and the periodic run in `serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSettings {
    /// `gc_interval`: a collection this often inside `serve`; `None`: off (0).
    pub interval: Option<std::time::Duration>,
    /// `gc_grace_period`: nothing written more recently is swept.
    pub grace_period: std::time::Duration,
    /// `gc_upload_max_age`: uploads started longer ago are removed.
    pub upload_max_age: std::time::Duration,
    /// `gc_delete_untagged`: manifests no tag points at go too.
    pub delete_untagged: bool,
}

/// How many v2 upload sessions (`POST .../blobs/uploads/` not yet
/// completed, cancelled or older than `gc_upload_max_age`) may be open;
/// beyond, a `POST` answers 429 `TOOMANYREQUESTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSessionSettings {
    /// `max_upload_sessions_per_repository`: in one repository, counted from
    /// storage (every instance's).
    pub per_repository: usize,
    /// `max_upload_sessions`: in all, counted by each process.
    pub total: usize,
}

/// `max_upload_sessions_per_repository` when unset: a push opens a few sessions at
/// once (docker 3 to 5, containerd and buildkit more), so a hundred pushes
/// into one repository at once, or a week of failed ones, fit.
pub const DEFAULT_MAX_UPLOAD_SESSIONS_PER_REPOSITORY: u64 = 1_000;
/// `max_upload_sessions` when unset: ten full repositories; each session costs a
/// folder and two small files before its bytes.
pub const DEFAULT_MAX_UPLOAD_SESSIONS: u64 = 10_000;

/// https (`tls_*`): the files are read at startup and again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `tls_certificate`: PEM, the server's certificate first, then the
    /// chain.
    pub certificate: PathBuf,
    /// `tls_key`: PEM, the certificate's private key (PKCS#8, RSA or EC).
    pub key: PathBuf,
    /// `tls_client_ca`: PEM certificates; when set, clients must present
    /// a certificate they signed.
    pub client_ca: Option<PathBuf>,
}

/// One of `rules`: the repositories it covers, and what it sets for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSettings {
    /// `repositories`: a pattern or a list of them, on the repository's
    /// name (`namespace/repo` for v1, the name as pushed for v2).
    pub repositories: Vec<super::Pattern>,
    /// `immutable_tags`: tags that, once pushed, are never moved to
    /// another manifest or image, nor deleted.
    pub immutable_tags: Vec<super::Pattern>,
    /// What the collector keeps of the repositories, when the rule says.
    pub retention: Option<RetentionSettings>,
    /// `quota`: bytes the repositories the rule covers may hold between
    /// them.
    pub quota: Option<u64>,
}

/// What a retention rule keeps whenever it was pushed, unless the rule
/// lists its own `keep_tags`.
pub const DEFAULT_KEEP_TAGS: &str = "latest";

/// The retention keys of a rule (`keep_last`, `keep_within`, `keep_tags`,
/// `untagged_after`), applied by the garbage collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// `keep_last`: the tags most recently pushed that stay.
    pub keep_last: Option<usize>,
    /// `keep_within`: tags pushed this recently stay.
    pub keep_within: Option<std::time::Duration>,
    /// `keep_tags`: tags that stay whenever they were pushed; `latest`
    /// when unset.
    pub keep_tags: Vec<super::Pattern>,
    /// `untagged_after`: manifests no tag reaches go once their push is
    /// this old.
    pub untagged_after: Option<std::time::Duration>,
}

impl RetentionSettings {
    /// Whether the rule removes tags (else only untagged manifests).
    pub fn prunes_tags(&self) -> bool {
        self.keep_last.is_some() || self.keep_within.is_some()
    }
}

/// `notifications`: where events are sent, in the shape of distribution's
/// section, so that an operator can carry theirs over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotificationSettings {
    /// `endpoints`, those with `disabled: true` left out.
    pub endpoints: Vec<EndpointSettings>,
    /// `events.includereferences`: a manifest's event lists its config
    /// and layers, or an index's manifests.
    pub include_references: bool,
}

/// One of `notifications.endpoints`.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSettings {
    /// `name`: the metrics' label and the folder of its queue.
    pub name: String,
    /// `url`: where envelopes are POSTed (http or https).
    pub url: String,
    /// `headers`: sent with every request, one entry a value.
    pub headers: Vec<(String, String)>,
    /// `timeout`: how long one delivery may take.
    pub timeout: std::time::Duration,
    /// `backoff`: the first wait after a failed delivery, doubled after
    /// each further failure up to [`MAX_NOTIFICATION_BACKOFF`].
    pub backoff: std::time::Duration,
    /// `ignoredmediatypes` and `ignore.mediatypes`.
    pub ignored_media_types: Vec<String>,
    /// `ignore.actions`.
    pub ignored_actions: Vec<String>,
    /// `pulls`: pulls are sent too (they are many; off by default).
    pub pulls: bool,
    /// `queue_limit`: events kept for the endpoint while it does not take
    /// them; beyond, the oldest are dropped.
    pub queue_limit: usize,
}

impl fmt::Debug for EndpointSettings {
    // Header values carry tokens, and a webhook's path often does too:
    // header names and the URL's origin only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, _)| format!("{name}: {}", super::MASK))
            .collect();
        f.debug_struct("EndpointSettings")
            .field("name", &self.name)
            .field("url", &super::masked_url(&self.url))
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("ignored_media_types", &self.ignored_media_types)
            .field("ignored_actions", &self.ignored_actions)
            .field("pulls", &self.pulls)
            .field("queue_limit", &self.queue_limit)
            .finish()
    }
}

/// `timeout` of an endpoint when unset.
pub const DEFAULT_NOTIFICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// `backoff` of an endpoint when unset.
pub const DEFAULT_NOTIFICATION_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest wait between two deliveries to a failing endpoint.
pub const MAX_NOTIFICATION_BACKOFF: std::time::Duration = std::time::Duration::from_secs(60);
/// `queue_limit` of an endpoint when unset.
pub const DEFAULT_NOTIFICATION_QUEUE_LIMIT: u64 = 100_000;

/// Prometheus metrics (`metrics_*`), on a listener of their own so that a
/// scrape never queues behind layer transfers, and so that they can stay
/// on an address the registry's clients do not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `metrics_address`: `host:port` to listen on.
    pub address: String,
    /// `metrics_path`: where the text format is served.
    pub path: String,
}

/// A Redis server, as the old registry's `cache` and `cache_lru` name it.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// `cache.host`
    pub host: String,
    /// `cache.port`; unset: 6379.
    pub port: u16,
    /// `cache.db`; unset: 0.
    pub db: i64,
    /// `cache.password`
    pub password: Option<String>,
    /// Which section it came from (`cache` or `cache_lru`), for messages.
    pub section: &'static str,
}

impl fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field(
                "password",
                &self.password.as_ref().map(|_| super::render::MASK),
            )
            .field("section", &self.section)
            .finish()
    }
}

/// Server errors mailed (`email_exceptions`), as the old registry's
/// logging `SMTPHandler` mailed them.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailSettings {
    /// `smtp_host`
    pub host: String,
    /// `smtp_port`; unset: 25.
    pub port: u16,
    /// `smtp_login` and `smtp_password`: both, or no login.
    pub login: Option<(String, String)>,
    /// `smtp_secure`: STARTTLS, required.
    pub secure: bool,
    /// `smtp_ca`: PEM certificates trusted for STARTTLS besides the
    /// public roots (a company's own CA).
    pub ca: Option<PathBuf>,
    /// `from_addr`
    pub from: String,
    /// `to_addr`: one address, a list, or comma-separated addresses.
    pub to: Vec<String>,
    /// `min_interval`: at most one mail this often; the errors in between
    /// go into the next mail. Unset: 60 s.
    pub min_interval: std::time::Duration,
    /// Where the keys were: `email_exceptions.`, or empty for the older
    /// style of keys directly in the flavor.
    pub prefix: &'static str,
}

impl fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "login",
                &self.login.as_ref().map(|(l, _)| (l, super::render::MASK)),
            )
            .field("secure", &self.secure)
            .field("ca", &self.ca)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("min_interval", &self.min_interval)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `email_exceptions.min_interval` when unset, in seconds.
pub const DEFAULT_EMAIL_MIN_INTERVAL: u64 = 60;

/// `metrics_path` when unset.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";

/// `gc_grace_period` when unset: an hour, far longer than any push.
pub const DEFAULT_GC_GRACE_PERIOD: u64 = 3600;
/// `gc_upload_max_age` when unset: a week.
pub const DEFAULT_GC_UPLOAD_MAX_AGE: u64 = 604_800;

/// The pull-through cache (issue 27): registries whose images this one
/// serves as copies, fetched on first pull.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MirrorSettings {
    /// `mirroring.source` first (as upstream `mirroring`), then each of
    /// `upstreams` in the file's order.
    pub upstreams: Vec<UpstreamSettings>,
    /// `mirror_timeout`: how long an upstream may take to connect, to
    /// answer, and between two blocks of a body.
    pub timeout: std::time::Duration,
    /// `mirror_max_concurrent`: requests in flight to one upstream; more
    /// wait (at most `timeout`), so that a burst of clients cannot turn
    /// into a burst against the upstream's limits.
    pub max_concurrent: usize,
    /// Cached repositories not fetched into nor confirmed with their
    /// upstream for this long go at the next collection.
    pub max_age: Option<std::time::Duration>,
    /// Cached repositories beyond this many bytes go at the next
    /// collection, least recently fetched first.
    pub max_size: Option<u64>,
}

impl MirrorSettings {
    /// The upstream that requests naming no other are sent to.
    pub fn default_upstream(&self) -> Option<&UpstreamSettings> {
        self.upstreams.iter().find(|u| u.default)
    }
}

/// `mirror_timeout` when unset, in seconds.
pub const DEFAULT_MIRROR_TIMEOUT: u64 = 30;
/// `mirror_max_concurrent` when unset.
pub const DEFAULT_MIRROR_MAX_CONCURRENT: u64 = 16;
/// A week, as distribution's proxy `ttl` and Harbor's proxy cache keep.
pub const DEFAULT_MIRROR_MAX_AGE: u64 = 604_800;
/// `upstreams.<name>.tag_ttl` when unset: a tag moved upstream is seen
/// within five minutes, and a pipeline pulling the same tag all day asks
/// the upstream once every five minutes, with a HEAD.
pub const DEFAULT_UPSTREAM_TAG_TTL: u64 = 300;
/// `mirroring.tags_cache_ttl` when unset, as in the old registry: two days.
pub const DEFAULT_TAGS_CACHE_TTL: u64 = 172_800;

/// One upstream registry of the pull-through cache.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Its key under `upstreams`, or `mirroring` for the old section.
    pub name: String,
    /// Where it answers (`https://registry-1.docker.io`), without a
    /// trailing `/`.
    pub url: String,
    /// `mirroring.source_index`: the old index of a v1 source.
    pub index_url: Option<String>,
    /// The repositories it fills are stored under this name
    /// (`docker.io/library/busybox`), and clients may ask for them by it.
    pub prefix: String,
    /// The `?ns=` values (containerd's registry host) that pick it.
    pub namespaces: Vec<String>,
    /// Basic credentials, and what its token service is asked with.
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long a tag is served as cached before the upstream is asked
    /// again (`tag_ttl`; `mirroring.tags_cache_ttl`).
    pub tag_ttl: std::time::Duration,
    /// Requests that name no upstream (no `ns`, no prefix) and miss this
    /// registry's own repositories go here (the docker engine's
    /// `registry-mirrors`).
    pub default: bool,
}

impl fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("index_url", &self.index_url)
            .field("prefix", &self.prefix)
            .field("namespaces", &self.namespaces)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| super::MASK))
            .field("tag_ttl", &self.tag_ttl)
            .field("default", &self.default)
            .finish()
    }
}

/// The registry host Docker Hub's images are named by (`docker.io/...`),
/// and the hosts its API answers on.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_HOSTS: &[&str] = &["registry-1.docker.io", "index.docker.io", "docker.io"];

/// Whether `url` is Docker Hub's registry, whose one-part names stand for
/// `library/<name>`.
pub fn is_docker_hub(url: &str) -> bool {
    let host = url_host(url).unwrap_or_default();
    let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
    DOCKER_HUB_HOSTS.contains(&bare)
}

/// The host (and port) of an http(s) URL; `None` when it is not one.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split('/').next()?;
    (!host.is_empty() && !host.contains(['?', '#', '@', ' '])).then_some(host)
}

/// The name under which an upstream's images are known: `docker.io` for
/// Docker Hub, else its host (without the port: a `:` is not allowed in a
/// repository name).
fn natural_prefix(url: &str) -> String {
    let host = url_host(url).unwrap_or_default();
    let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if DOCKER_HUB_HOSTS.contains(&bare) {
        DOCKER_HUB.to_owned()
    } else {
        bare.to_ascii_lowercase()
    }
}

/// What containerd sends as `ns` for an upstream at `url`: the registry
/// host as the image names it, port included.
fn natural_namespace(url: &str) -> String {
    let host = url_host(url).unwrap_or_default();
    let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if DOCKER_HUB_HOSTS.contains(&bare) {
        DOCKER_HUB.to_owned()
    } else {
        host.to_ascii_lowercase()
    }
}

/// Where the configuration file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// The `config_sample.yml` built into the binary.
    BuiltIn,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::BuiltIn => f.write_str("built-in config_sample.yml"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// The old registry's `critical`: only errors get through.
    Critical,
}

impl LogLevel {
    pub fn as_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Error | LogLevel::Critical => log::LevelFilter::Error,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub kind: StorageKind,
    /// Root folder (local) or key prefix (object stores), as configured.
    pub path: String,
    /// Redirect layer downloads to a presigned URL of the object store.
    pub redirect: bool,
    /// Local storage: answer layer downloads with
    /// `X-Accel-Redirect: <prefix>/images/<id>/layer` and no body.
    pub nginx_x_accel_redirect: Option<String>,
    /// Set for `s3` and `gcs` (GCS through its S3-compatible interface).
    pub s3: Option<S3Settings>,
    /// Set for `swift`.
    pub swift: Option<SwiftSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    /// `local` or `file`.
    Local,
    S3,
    Gcs,
    /// OpenStack Swift.
    Swift,
    /// A storage the old registry knew (swift, glance, elliptics, azureblob,
    /// oss, ...): its configuration loads, `serve` refuses to start.
    Unsupported(String),
}

impl fmt::Display for StorageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageKind::Local => f.write_str("local"),
            StorageKind::S3 => f.write_str("s3"),
            StorageKind::Gcs => f.write_str("gcs"),
            StorageKind::Swift => f.write_str("swift"),
            StorageKind::Unsupported(name) => f.write_str(name),
        }
    }
}

/// An S3 (or S3-compatible: Ceph, MinIO, GCS interop) bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// `None`: the endpoint's default (`us-east-1` for AWS).
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Server-side encryption of stored objects.
    pub encrypt: bool,
    /// https (true) or http to a custom endpoint.
    pub secure: bool,
    /// A custom endpoint (`boto_host`/`boto_port`): path-style addressing.
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl fmt::Debug for S3Settings {
    // Keys never reach a log, even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &mask(&self.access_key))
            .field("secret_key", &mask(&self.secret_key))
            .field("encrypt", &self.encrypt)
            .field("secure", &self.secure)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

/// An OpenStack Swift container, and how to log in to its account.
#[derive(Clone)]
pub struct SwiftSettings {
    /// `swift_container` (default `dev_container`, as the old driver's).
    pub container: String,
    pub auth: SwiftAuth,
    /// `swift_region_name`: the catalog's region (any when unset).
    pub region: Option<String>,
    /// `swift_endpoint_type`: `public` (default), `internal` or `admin`.
    pub endpoint_type: String,
    /// `swift_object_storage_url`: the storage URL to use rather than the
    /// catalog's (needed with `swift_auth_token`).
    pub storage_url: Option<String>,
    /// `swift_temp_url_key`: the account's temp-URL key, for
    /// `storage_redirect`; unset: read from the account, when it has one.
    pub temp_url_key: Option<String>,
    /// `swift_cacert`: a PEM file of the certificates the auth and storage
    /// servers' chains end in, besides the system's.
    pub cacert: Option<PathBuf>,
}

/// How the driver logs in (`swift_auth_version`, or the auth URL's path).
#[derive(Clone)]
pub enum SwiftAuth {
    /// tempauth, swauth: `X-Auth-User`/`X-Auth-Key`.
    V1 {
        url: String,
        user: String,
        key: String,
    },
    /// Keystone v2.0 (the old driver's default).
    V2 {
        url: String,
        user: String,
        password: String,
        tenant: Option<String>,
    },
    /// Keystone v3: user and project in `domain` (`swift_domain_name`,
    /// default `Default`).
    V3 {
        url: String,
        user: String,
        password: String,
        project: Option<String>,
        domain: String,
    },
    /// `swift_auth_token` with `swift_object_storage_url`: no login.
    Preset { token: String, storage_url: String },
}

impl fmt::Debug for SwiftSettings {
    // Passwords and tokens never reach a log, even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            SwiftAuth::V1 { url, user, .. } => format!("v1 {url} as {user}"),
            SwiftAuth::V2 {
                url, user, tenant, ..
            } => {
                format!("Keystone v2.0 {url} as {user} (tenant {tenant:?})")
            }
            SwiftAuth::V3 {
                url,
                user,
                project,
                domain,
                ..
            } => format!("Keystone v3 {url} as {user} (project {project:?}, domain {domain})"),
            SwiftAuth::Preset { storage_url, .. } => format!("a set token for {storage_url}"),
        };
        f.debug_struct("SwiftSettings")
            .field("container", &self.container)
            .field("auth", &auth)
            .field("region", &self.region)
            .field("endpoint_type", &self.endpoint_type)
            .field("storage_url", &self.storage_url)
            .field("temp_url_key", &self.temp_url_key.as_ref().map(|_| "***"))
            .field("cacert", &self.cacert)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct SearchSettings {
    pub backend: SearchBackend,
    /// `sqlalchemy_index_database`, as configured (`sqlite:////abs.db`, ...).
    pub database: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchBackend {
    /// `search_backend` null or empty: searches answer with no results.
    Disabled,
    /// `sqlalchemy`: the SQL index (SQLite here).
    Sqlalchemy,
}

/// The `cors` settings, in the terms of the old flask-cors.
#[derive(Debug, Clone, Default)]
pub struct CorsSettings {
    /// `None`: CORS off. `["*"]`: any origin.
    pub origins: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub supports_credentials: bool,
    pub max_age: Option<u64>,
}

/// `auth_max_failed_logins` when unset: failed logins a client address
/// may make in a minute before its logins answer 429.
pub const DEFAULT_MAX_FAILED_LOGINS: u64 = 10;
/// `auth_realm` when unset.
pub const DEFAULT_AUTH_REALM: &str = "registry-v1";

/// Who must log in, and how (`auth_*`). No mode: nobody logs in (the v1
/// `standalone`/`index_endpoint`/`privileged_key` policy alone decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    pub mode: Option<LoginMode>,
    /// `auth_required`: which requests need a login.
    pub required: LoginRequired,
    /// `auth_realm`: the realm of the `Basic` challenge.
    pub realm: String,
    /// `auth_max_failed_logins`: failed logins per client address and
    /// minute; beyond, 429 until the minute is over.
    pub max_failed_logins: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMode {
    /// `auth_htpasswd`: a file of bcrypt entries.
    Htpasswd(PathBuf),
    /// `auth_token_*`: bearer tokens of a token service.
    Token(TokenSettings),
}

/// A token service as docker's token specification describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `auth_token_realm`: the URL clients get tokens from.
    pub realm: String,
    /// `auth_token_service`: the audience tokens must name.
    pub service: String,
    /// `auth_token_issuer`: the issuer tokens must name.
    pub issuer: String,
    /// `auth_token_rootcertbundle`: PEM certificates or public keys whose
    /// keys sign tokens.
    pub rootcertbundle: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRequired {
    /// `all`: every request of a gated route.
    All,
    /// `write`: pushes and deletes (and `GET /v2/`, where `docker login`
    /// checks credentials); pulls are anonymous.
    Write,
}

/// The text served at `GET /` when `issue` is not set.
pub const DEFAULT_ISSUE: &str = "\"docker-registry server\"";

/// Storages the old registry offered through drivers this build does not
/// have: their configuration loads, `serve` refuses to start.
pub const UNSUPPORTED_STORAGES: &[&str] = &["glance", "elliptics", "azureblob", "oss", "dumb"];

/// The GCS interoperability (S3-compatible) endpoint.
pub const GCS_HOST: &str = "storage.googleapis.com";

impl LogLevel {
    /// The old registry's level names (Python's), in any case.
    pub fn parse(name: &str) -> Option<LogLevel> {
        match name.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            "critical" | "fatal" => Some(LogLevel::Critical),
            _ => None,
        }
    }
}

/// Every key [`Settings::from_tree`] reads, as a dotted path (`cors.origins`
/// is `origins` in the `cors` mapping). A key read below must be listed
/// here too, one line, or `config::tests::every_key_read_is_known` fails;
/// a key missing here draws "unknown setting" at startup. Keys of the old
/// registry that this build does not read are in `keys::LEGACY`.
pub const KNOWN_KEYS: &[&str] = &[
    "loglevel",
    "debug",
    "issue",
    "standalone",
    "index_endpoint",
    "disable_token_auth",
    "delete_enabled",
    "web_ui",
    "web_ui_prefix",
    "body_idle_timeout",
    "max_concurrent_uploads",
    "max_upload_sessions_per_repository",
    "max_upload_sessions",
    "privileged_key",
    "registry_endpoints",
    "storage",
    "storage_path",
    "storage_redirect",
    "nginx_x_accel_redirect",
    "s3_bucket",
    "boto_bucket",
    "s3_region",
    "s3_access_key",
    "s3_secret_key",
    "s3_encrypt",
    "s3_secure",
    "boto_host",
    "boto_port",
    "gs_access_key",
    "gs_secret_key",
    "gs_secure",
    "swift_authurl",
    "swift_container",
    "swift_user",
    "swift_password",
    "swift_tenant_name",
    "swift_region_name",
    "swift_auth_version",
    "swift_domain_name",
    "swift_endpoint_type",
    "swift_object_storage_url",
    "swift_auth_token",
    "swift_temp_url_key",
    "swift_cacert",
    "search_backend",
    "sqlalchemy_index_database",
    "cors.origins",
    "cors.methods",
    "cors.headers",
    "cors.expose_headers",
    "cors.supports_credentials",
    "cors.max_age",
    "mirroring.source",
    "mirroring.source_index",
    "mirroring.tags_cache_ttl",
    "mirroring.username",
    "mirroring.password",
    // `upstreams.<name>.<key>`: any name, these keys.
    "upstreams.*.url",
    "upstreams.*.prefix",
    "upstreams.*.namespaces",
    "upstreams.*.username",
    "upstreams.*.password",
    "upstreams.*.tag_ttl",
    "upstreams.*.default",
    "mirror_timeout",
    "mirror_max_concurrent",
    "mirror_max_age",
    "mirror_max_size",
    "gc_interval",
    "gc_grace_period",
    "gc_upload_max_age",
    "gc_delete_untagged",
    "auth_required",
    "auth_realm",
    "auth_max_failed_logins",
    "auth_htpasswd",
    "auth_token_realm",
    "auth_token_service",
    "auth_token_issuer",
    "auth_token_rootcertbundle",
    "tls_certificate",
    "tls_key",
    "tls_client_ca",
    "metrics_path",
    "metrics_address",
    "cache.host",
    "cache.port",
    "cache.db",
    "cache.password",
    "cache_lru.host",
    "cache_lru.port",
    "cache_lru.db",
    "cache_lru.password",
    "email_exceptions.smtp_host",
    "email_exceptions.smtp_port",
    "email_exceptions.smtp_login",
    "email_exceptions.smtp_password",
    "email_exceptions.smtp_secure",
    "email_exceptions.from_addr",
    "email_exceptions.to_addr",
    "email_exceptions.min_interval",
    "email_exceptions.smtp_ca",
    // The older style: the same keys directly in the flavor.
    "smtp_host",
    "smtp_port",
    "smtp_login",
    "smtp_password",
    "smtp_secure",
    "from_addr",
    "to_addr",
    // `notifications.endpoints` is a list; `*` stands for each item.
    "notifications.endpoints",
    "notifications.events",
    "notifications.endpoints.*.name",
    "notifications.endpoints.*.disabled",
    "notifications.endpoints.*.url",
    "notifications.endpoints.*.headers",
    "notifications.endpoints.*.timeout",
    "notifications.endpoints.*.threshold",
    "notifications.endpoints.*.backoff",
    "notifications.endpoints.*.ignoredmediatypes",
    "notifications.endpoints.*.ignore",
    "notifications.endpoints.*.ignore.mediatypes",
    "notifications.endpoints.*.ignore.actions",
    "notifications.endpoints.*.pulls",
    "notifications.endpoints.*.queue_limit",
    "notifications.events.includereferences",
    // `rules` is a list too.
    "rules",
    "rules.*.repositories",
    "rules.*.immutable_tags",
    "rules.*.keep_last",
    "rules.*.keep_within",
    "rules.*.keep_tags",
    "rules.*.untagged_after",
    "rules.*.quota",
];

impl Settings {
    /// Types the resolved tree of one flavor. `origins` tells which settings
    /// came from which environment variable, for the error messages.
    pub(super) fn from_tree(
        flavor: String,
        source: ConfigSource,
        raw: Value,
        origins: &Origins,
    ) -> Result<Settings, ConfigError> {
        let empty = Mapping::new();
        let context = Context {
            flavor: &flavor,
            source: &source,
            origins,
        };
        let top = Section {
            map: raw.as_mapping().unwrap_or(&empty),
            prefix: String::new(),
            context: &context,
        };
        let loglevel = top.loglevel()?;
        let debug = top.bool("debug")?;
        let issue = top
            .string("issue")?
            .unwrap_or_else(|| DEFAULT_ISSUE.to_owned());
        let standalone = top.bool("standalone")?;
        let index_endpoint = top
            .nonempty("index_endpoint")?
            .map(|e| e.trim_end_matches('/').to_owned());
        let disable_token_auth = top.bool("disable_token_auth")?;
        // Files written for the old registry have no such key; deletes
        // were always possible there, so unset means on.
        let delete_enabled = top.bool_or("delete_enabled", true)?;
        let web_ui = top.web_ui()?;
        let body_idle_timeout = std::time::Duration::from_secs(top.bounded_or(
            "body_idle_timeout",
            DEFAULT_BODY_IDLE_TIMEOUT,
            1..=86_400,
            "a whole number of seconds from 1 to 86400",
        )?);
        let max_concurrent_uploads = top.bounded_or(
            "max_concurrent_uploads",
            DEFAULT_MAX_CONCURRENT_UPLOADS,
            1..=1_000_000,
            "a whole number from 1 to 1000000",
        )? as usize;
        let privileged_key = top.privileged_key()?;
        let registry_endpoints = top.nonempty("registry_endpoints")?;
        let storage = top.storage()?;
        let search = top.search()?;
        let cors = top.section("cors")?.cors()?;
        let mirroring = top.section("mirroring")?.nonempty("source")?.is_some();
        let mirror = top.mirror()?;
        let seconds = "a whole number of seconds from 0 to 31536000";
        let year = 0..=31_536_000;
        let interval = top.bounded_or("gc_interval", 0, year.clone(), seconds)?;
        let gc = GcSettings {
            interval: (interval > 0).then(|| std::time::Duration::from_secs(interval)),
            grace_period: std::time::Duration::from_secs(top.bounded_or(
                "gc_grace_period",
                DEFAULT_GC_GRACE_PERIOD,
                year.clone(),
                seconds,
            )?),
            upload_max_age: std::time::Duration::from_secs(top.bounded_or(
                "gc_upload_max_age",
                DEFAULT_GC_UPLOAD_MAX_AGE,
                year,
                seconds,
            )?),
            delete_untagged: top.bool("gc_delete_untagged")?,
        };
        let upload_sessions = UploadSessionSettings {
            per_repository: top.bounded_or(
                "max_upload_sessions_per_repository",
                DEFAULT_MAX_UPLOAD_SESSIONS_PER_REPOSITORY,
                1..=1_000_000,
                "a whole number from 1 to 1000000",
            )? as usize,
            total: top.bounded_or(
                "max_upload_sessions",
                DEFAULT_MAX_UPLOAD_SESSIONS,
                1..=10_000_000,
                "a whole number from 1 to 10000000",
            )? as usize,
        };
        let login = top.login()?;
        let tls = top.tls()?;
        let metrics = top.metrics()?;
        // Both were Redis caches of small files in the old registry: one
        // cache here, `cache` first.
        let cache = match top.section("cache")?.cache("cache")? {
            Some(cache) => Some(cache),
            None => top.section("cache_lru")?.cache("cache_lru")?,
        };
        let mut notices = Vec::new();
        let notifications = top.section("notifications")?.notifications(&mut notices)?;
        let rules = top.rules(&mut notices)?;
        // The older style (keys directly in the flavor) when the section
        // names no host.
        let email = match top
            .section("email_exceptions")?
            .email("email_exceptions.", &mut notices)?
        {
            Some(email) => Some(email),
            None => top.email("", &mut notices)?,
        };
        Ok(Settings {
            flavor,
            source,
            loglevel,
            debug,
            issue,
            standalone,
            index_endpoint,
            disable_token_auth,
            delete_enabled,
            body_idle_timeout,
            max_concurrent_uploads,
            privileged_key,
            registry_endpoints,
            storage,
            search,
            cors,
            gc,
            upload_sessions,
            mirroring,
            mirror,
            login,
            tls,
            metrics,
            cache,
            email,
            notifications,
            rules,
            web_ui,
            notices,
            raw,
        })
    }
}

/// No two upstreams may claim the same requests: one default at most, each
/// prefix and each namespace once, and no prefix inside another.
fn check_upstreams(top: &Section, upstreams: &[UpstreamSettings]) -> Result<(), ConfigError> {
    let key = |u: &UpstreamSettings, field: &str| match u.name.as_str() {
        "mirroring" => "mirroring.source".to_owned(),
        name => format!("upstreams.{name}.{field}"),
    };
    for (i, a) in upstreams.iter().enumerate() {
        for b in &upstreams[..i] {
            let clash = |field: &str, what: String| {
                Err(top.invalid(
                    &key(a, field),
                    format!(
                        "{what}, and so does `{}`: each request must pick one upstream",
                        key(b, field)
                    ),
                ))
            };
            if a.default && b.default {
                return clash("default", "makes it the default upstream".to_owned());
            }
            let nested = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
            if nested(&a.prefix, &b.prefix) || nested(&b.prefix, &a.prefix) {
                return clash("prefix", format!("stores under the prefix `{}`", a.prefix));
            }
            if let Some(ns) = a.namespaces.iter().find(|n| b.namespaces.contains(n)) {
                return clash("namespaces", format!("answers the namespace `{ns}`"));
            }
        }
    }
    Ok(())
}

struct Context<'a> {
    flavor: &'a str,
    source: &'a ConfigSource,
    origins: &'a Origins,
}

/// One mapping of the tree (the flavor, or `cors`, ...), read key by key.
struct Section<'a> {
    map: &'a Mapping,
    /// Dotted path of this mapping (`cors.`), empty at the top.
    prefix: String,
    context: &'a Context<'a>,
}

impl<'a> Section<'a> {
    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value of `key`; absent and null are the same.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn invalid(&self, key: &str, message: String) -> ConfigError {
        self.invalid_with(key, message, "")
    }

    /// `message`, then where the value came from, then `hint`.
    fn invalid_with(&self, key: &str, message: String, hint: &str) -> ConfigError {
        let path = self.path(key);
        let from = match self.context.origins.get(&path) {
            Some(u) if u.set => format!(" (from the environment variable {})", u.var),
            Some(u) => format!(" (the default given with _env:{})", u.var),
            None => String::new(),
        };
        ConfigError::Setting {
            key: path,
            flavor: self.context.flavor.to_owned(),
            origin: self.context.source.to_string(),
            message: format!("{message}{from}{hint}"),
        }
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) -> ConfigError {
        let secret = super::render::is_secret_path(&self.path(key));
        // A quoted `"true"` or `"9000"` is text; say so when that is the slip.
        let quoted = match found {
            Value::String(s) => !secret && !super::yaml::parse(s).is_ok_and(|v| v.is_string()),
            _ => false,
        };
        let hint = if quoted {
            "; a quoted value is a string: write it without quotes"
        } else {
            ""
        };
        self.invalid_with(
            key,
            format!("must be {expected}, not {}", describe(found, secret)),
            hint,
        )
    }

    /// `web_ui` and `web_ui_prefix`.
    fn web_ui(&self) -> Result<WebUiSettings, ConfigError> {
        let enabled = self.bool_or("web_ui", true)?;
        let prefix = self.string("web_ui_prefix")?.unwrap_or_default();
        let prefix = prefix.trim_end_matches('/');
        let safe = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
        let api = ["/v1", "/v2", "/_ping"]
            .iter()
            .any(|api| prefix == *api || prefix.starts_with(&format!("{api}/")));
        if !prefix.is_empty()
            && (!prefix.starts_with('/')
                || !prefix.chars().all(safe)
                || prefix.contains("//")
                || api)
        {
            return Err(self.invalid_with(
                "web_ui_prefix",
                format!("must be a URL path such as /registry-ui, not {prefix:?}"),
                " (letters, digits and - . _ ~ between slashes; not under /v1, /v2 or /_ping)",
            ));
        }
        Ok(WebUiSettings {
            enabled,
            prefix: prefix.to_owned(),
        })
    }

    /// Null and absent are false, as `is True` had it in the old registry.
    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        self.bool_or(key, false)
    }

    /// A boolean whose unset (or null) value is `default`.
    fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong(key, "true or false (or yes/no, on/off)", other)),
        }
    }

    /// A string; an integer is taken as its decimal text (a bucket or a
    /// password may be all digits).
    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    /// A string where empty means unset.
    fn nonempty(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.string(key)?.filter(|s| !s.is_empty()))
    }

    fn port(&self, key: &str) -> Result<Option<u16>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n > 0)
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a port number (1-65535)", v)),
        }
    }

    /// A whole number in `range`; unset (or null) is `default`.
    fn bounded_or(
        &self,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
        expected: &str,
    ) -> Result<u64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| range.contains(n))
                .ok_or_else(|| self.wrong(key, expected, v)),
        }
    }

    fn seconds(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a whole number of seconds", v)),
        }
    }

    /// A list of strings, or one string of comma-separated items (as an
    /// environment variable gives it).
    fn list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let expected = "a list of strings (or one comma-separated string)";
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.wrong(key, expected, item)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.wrong(key, expected, other)),
        }
    }

    fn section(&self, key: &str) -> Result<Section<'a>, ConfigError> {
        static EMPTY: std::sync::LazyLock<Mapping> = std::sync::LazyLock::new(Mapping::new);
        let map = match self.get(key) {
            None => &*EMPTY,
            Some(Value::Mapping(m)) => m,
            Some(other) => return Err(self.wrong(key, "a mapping", other)),
        };
        Ok(Section {
            map,
            prefix: format!("{}.", self.path(key)),
            context: self.context,
        })
    }

    /// The list at `key`, each item a mapping, as sections (`key[i].`);
    /// none when it is absent. `list` and `item` say what is expected.
    fn sections(&self, key: &str, list: &str, item: &str) -> Result<Vec<Section<'a>>, ConfigError> {
        let items = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Sequence(items)) => items,
            Some(other) => return Err(self.wrong(key, list, other)),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, value)| match value {
                Value::Mapping(map) => Ok(Section {
                    map,
                    prefix: self.path(&format!("{key}[{i}].")),
                    context: self.context,
                }),
                other => Err(self.wrong(&format!("{key}[{i}]"), item, other)),
            })
            .collect()
    }

    /// This section as `notifications`.
    fn notifications(
        &self,
        notices: &mut Vec<super::keys::Notice>,
    ) -> Result<NotificationSettings, ConfigError> {
        let items = self.sections(
            "endpoints",
            "a list of endpoints (each with a name and a url)",
            "a mapping (name, url, ...)",
        )?;
        let mut endpoints: Vec<EndpointSettings> = Vec::new();
        for (i, endpoint) in items.iter().enumerate() {
            let name = endpoint.nonempty("name")?.ok_or_else(|| {
                endpoint.invalid("name", "must be set: the endpoint's name".to_owned())
            })?;
            if endpoint.bool("disabled")? {
                notices.push(super::keys::Notice::ignored(format!(
                    "notifications endpoint `{name}` is disabled: nothing is queued or sent for it"
                )));
                continue;
            }
            if endpoint.get("threshold").is_some() {
                notices.push(super::keys::Notice::ignored(format!(
                    "setting `notifications.endpoints[{i}].threshold` is read but not acted \
                     on: every failed delivery waits `backoff` (doubled after each further \
                     failure), and events are kept until delivered"
                )));
            }
            let ep = endpoint.endpoint(name)?;
            if let Some(other) = endpoints.iter().find(|e| e.name == ep.name) {
                return Err(endpoint.invalid(
                    "name",
                    format!(
                        "`{}` names two endpoints: each needs a name of its own",
                        other.name
                    ),
                ));
            }
            endpoints.push(ep);
        }
        let events = self.section("events")?;
        Ok(NotificationSettings {
            endpoints,
            include_references: events.bool_or("includereferences", true)?,
        })
    }

    /// `rules`: a list, each rule naming the repositories it covers.
    fn rules(
        &self,
        notices: &mut Vec<super::keys::Notice>,
    ) -> Result<Vec<RuleSettings>, ConfigError> {
        let items = self.sections(
            "rules",
            "a list of rules (each with repositories)",
            "a mapping (repositories, immutable_tags, keep_last, keep_within, keep_tags, \
             untagged_after, quota)",
        )?;
        let mut rules = Vec::new();
        for (i, rule) in items.iter().enumerate() {
            let repositories = rule.patterns("repositories")?;
            if repositories.is_empty() {
                return Err(rule.invalid(
                    "repositories",
                    "must be set: the repository names the rule covers, e.g. prod/* (a glob) \
                     or regex:prod/.+"
                        .to_owned(),
                ));
            }
            let immutable_tags = rule.patterns("immutable_tags")?;
            let retention = rule.retention()?;
            let quota = rule.size("quota")?;
            if immutable_tags.is_empty() && retention.is_none() && quota.is_none() {
                notices.push(super::keys::Notice::ignored(format!(
                    "rule `rules[{i}]` sets nothing for the repositories it covers"
                )));
            }
            rules.push(RuleSettings {
                repositories,
                immutable_tags,
                retention,
                quota,
            });
        }
        Ok(rules)
    }

    /// A rule's retention keys, when it sets any. `keep_tags` alone keeps
    /// what nothing removes: it needs `keep_last` or `keep_within`.
    fn retention(&self) -> Result<Option<RetentionSettings>, ConfigError> {
        let keep_last = match self.get("keep_last") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| self.wrong("keep_last", "a whole number from 1 to 1000000", v))?
                    as usize,
            ),
        };
        let keep_within = self.window("keep_within")?;
        let keep_tags = self.patterns("keep_tags")?;
        let untagged_after = self.window("untagged_after")?;
        let any_key = ["keep_last", "keep_within", "keep_tags", "untagged_after"]
            .iter()
            .any(|k| self.get(k).is_some());
        if !any_key {
            return Ok(None);
        }
        let retention = RetentionSettings {
            keep_last,
            keep_within,
            keep_tags: if self.get("keep_tags").is_some() {
                keep_tags
            } else {
                vec![super::Pattern::parse(DEFAULT_KEEP_TAGS).expect("a glob")]
            },
            untagged_after,
        };
        if self.get("keep_tags").is_some() && !retention.prunes_tags() {
            return Err(self.invalid(
                "keep_tags",
                "keeps tags from keep_last or keep_within, and neither is set: set one, or \
                 remove keep_tags"
                    .to_owned(),
            ));
        }
        Ok(Some(retention))
    }

    /// A size: a whole number of bytes, or a number and its unit, `KB`,
    /// `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB`
    /// (powers of 1024), from a byte to an exbibyte.
    fn size(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        let expected = "a size, e.g. 50MiB, 10GB or a whole number of bytes";
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let bytes = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(text) => {
                let text = text.trim();
                let digits = text
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(text.len());
                let (number, unit) = text.split_at(digits);
                let scale: Option<u64> = match unit.trim() {
                    "" | "B" => Some(1),
                    "KB" | "kB" => Some(1_000),
                    "MB" => Some(1_000_000),
                    "GB" => Some(1_000_000_000),
                    "TB" => Some(1_000_000_000_000),
                    "KiB" => Some(1 << 10),
                    "MiB" => Some(1 << 20),
                    "GiB" => Some(1 << 30),
                    "TiB" => Some(1 << 40),
                    _ => None,
                };
                number
                    .parse::<u64>()
                    .ok()
                    .zip(scale)
                    .and_then(|(n, scale)| n.checked_mul(scale))
            }
            _ => None,
        };
        bytes
            .filter(|b| (1..=1 << 60).contains(b))
            .map(Some)
            .ok_or_else(|| self.wrong(key, expected, value))
    }

    /// A span of time for a retention rule: a number and its unit (`90m`,
    /// `12h`, `30d`, `2w`, or combined, `1d 12h`), a day being 24 hours,
    /// from a minute to 100 years.
    fn window(&self, key: &str) -> Result<Option<std::time::Duration>, ConfigError> {
        let expected = "a span of time with its unit, e.g. 12h, 30d or 2w";
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let Value::String(text) = value else {
            return Err(self.wrong(key, expected, value));
        };
        let bounds =
            std::time::Duration::from_secs(60)..=std::time::Duration::from_secs(100 * 365 * 86_400);
        text.trim()
            .parse::<jiff::Span>()
            .ok()
            .and_then(|span| {
                span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()
            })
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .filter(|d| bounds.contains(d))
            .map(Some)
            .ok_or_else(|| self.wrong(key, expected, value))
    }

    /// Patterns: one string (never split: a glob's `{a,b}` holds commas),
    /// or a list of them.
    fn patterns(&self, key: &str) -> Result<Vec<super::Pattern>, ConfigError> {
        let expected = "a pattern, or a list of patterns";
        let texts: Vec<&Value> = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Sequence(items)) => items.iter().collect(),
            Some(one) => vec![one],
        };
        texts
            .into_iter()
            .map(|value| match value {
                Value::String(text) => {
                    super::Pattern::parse(text).map_err(|why| self.invalid(key, why))
                }
                other => Err(self.wrong(key, expected, other)),
            })
            .collect()
    }

    /// This section as one of `notifications.endpoints`.
    fn endpoint(&self, name: String) -> Result<EndpointSettings, ConfigError> {
        let valid = name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !name.starts_with('.');
        if !valid {
            return Err(self.invalid(
                "name",
                format!(
                    "`{name}` is not a valid endpoint name: up to 64 letters, digits, `-`, `_` \
                     and `.` (it names the endpoint's queue and its metrics)"
                ),
            ));
        }
        let Some(url) = self.nonempty("url")? else {
            return Err(self.invalid(
                "url",
                "must be set: where events are POSTed, e.g. https://ci.example.com/events"
                    .to_owned(),
            ));
        };
        let parsed = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if parsed.is_none() {
            return Err(self.invalid(
                "url",
                format!("`{url}` is not an http:// or https:// address"),
            ));
        }
        let mut headers = Vec::new();
        match self.get("headers") {
            None => {}
            Some(Value::Mapping(map)) => {
                for (key, value) in map {
                    let header = key_text(key);
                    let values = match value {
                        Value::Sequence(items) => items.clone(),
                        other => vec![other.clone()],
                    };
                    let path = format!("headers.{header}");
                    if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        return Err(self.invalid(&path, "is not a valid header name".to_owned()));
                    }
                    for value in values {
                        let Value::String(text) = value else {
                            // The value is not shown: headers hold tokens.
                            return Err(self.invalid(
                                &path,
                                "must be a string or a list of strings".to_owned(),
                            ));
                        };
                        if reqwest::header::HeaderValue::from_str(&text).is_err() {
                            return Err(self.invalid(
                                &path,
                                "holds a character a header value cannot carry".to_owned(),
                            ));
                        }
                        headers.push((header.clone(), text));
                    }
                }
            }
            Some(_) => {
                return Err(self.invalid(
                    "headers",
                    "must be a mapping of header names to a value or a list of values".to_owned(),
                ))
            }
        }
        let ignore = self.section("ignore")?;
        let mut ignored_media_types = self.list("ignoredmediatypes")?.unwrap_or_default();
        ignored_media_types.extend(ignore.list("mediatypes")?.unwrap_or_default());
        let ignored_actions = ignore.list("actions")?.unwrap_or_default();
        if let Some(action) = ignored_actions
            .iter()
            .find(|a| !["push", "pull", "delete", "mount"].contains(&a.as_str()))
        {
            return Err(ignore.invalid(
                "actions",
                format!("`{action}` is not an action: push, pull, delete or mount"),
            ));
        }
        Ok(EndpointSettings {
            name,
            url,
            headers,
            timeout: self
                .duration("timeout")?
                .unwrap_or(DEFAULT_NOTIFICATION_TIMEOUT),
            backoff: self
                .duration("backoff")?
                .unwrap_or(DEFAULT_NOTIFICATION_BACKOFF),
            ignored_media_types,
            ignored_actions,
            pulls: self.bool("pulls")?,
            queue_limit: self.bounded_or(
                "queue_limit",
                DEFAULT_NOTIFICATION_QUEUE_LIMIT,
                1..=10_000_000,
                "a whole number from 1 to 10000000",
            )? as usize,
        })
    }

    /// A duration as distribution writes it (`500ms`, `1s`, `2m`), from
    /// a millisecond to a day.
    fn duration(&self, key: &str) -> Result<Option<std::time::Duration>, ConfigError> {
        let expected = "a duration with its unit, e.g. 500ms, 1s or 2m";
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let Value::String(text) = value else {
            return Err(self.wrong(key, expected, value));
        };
        text.trim()
            .parse::<jiff::SignedDuration>()
            .ok()
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .filter(|d| {
                (std::time::Duration::from_millis(1)..=std::time::Duration::from_secs(86_400))
                    .contains(d)
            })
            .map(Some)
            .ok_or_else(|| self.wrong(key, expected, value))
    }

    /// The pull-through cache: `mirroring` (the old section) and
    /// `upstreams`, checked against each other.
    fn mirror(&self) -> Result<MirrorSettings, ConfigError> {
        let mut upstreams = Vec::new();
        let old = self.section("mirroring")?;
        if let Some(url) = old.nonempty("source")? {
            let url = old.upstream_url("source", &url)?;
            let index_url = match old.nonempty("source_index")? {
                Some(index) => Some(old.upstream_url("source_index", &index)?),
                None => None,
            };
            let (username, password) = old.credentials()?;
            upstreams.push(UpstreamSettings {
                name: "mirroring".to_owned(),
                prefix: natural_prefix(&url),
                namespaces: vec![natural_namespace(&url)],
                index_url,
                username,
                password,
                tag_ttl: std::time::Duration::from_secs(old.bounded_or(
                    "tags_cache_ttl",
                    DEFAULT_TAGS_CACHE_TTL,
                    0..=31_536_000,
                    "a whole number of seconds from 0 to 31536000",
                )?),
                // The old mirror answered every request it could not.
                default: true,
                url,
            });
        }
        let listed = match self.get("upstreams") {
            None => Mapping::new(),
            Some(Value::Mapping(m)) => m.clone(),
            Some(other) => {
                return Err(self.wrong(
                    "upstreams",
                    "a mapping of upstream names to their settings",
                    other,
                ))
            }
        };
        for name in listed.keys() {
            let name = key_text(name);
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
            if !valid {
                return Err(self.invalid(
                    &format!("upstreams.{name}"),
                    "is not a valid upstream name: letters, digits, `-` and `_` only".to_owned(),
                ));
            }
            upstreams.push(self.section("upstreams")?.section(&name)?.upstream(name)?);
        }
        check_upstreams(self, &upstreams)?;
        Ok(MirrorSettings {
            upstreams,
            timeout: std::time::Duration::from_secs(self.bounded_or(
                "mirror_timeout",
                DEFAULT_MIRROR_TIMEOUT,
                1..=3600,
                "a whole number of seconds from 1 to 3600",
            )?),
            max_concurrent: self.bounded_or(
                "mirror_max_concurrent",
                DEFAULT_MIRROR_MAX_CONCURRENT,
                1..=10_000,
                "a whole number from 1 to 10000",
            )? as usize,
            max_age: match self.bounded_or(
                "mirror_max_age",
                DEFAULT_MIRROR_MAX_AGE,
                0..=3_153_600_000,
                "a whole number of seconds (0: kept however old)",
            )? {
                0 => None,
                secs => Some(std::time::Duration::from_secs(secs)),
            },
            max_size: match self.bounded_or(
                "mirror_max_size",
                0,
                0..=u64::MAX,
                "a whole number of bytes (0: no bound)",
            )? {
                0 => None,
                bytes => Some(bytes),
            },
        })
    }

    /// This section as `upstreams.<name>`.
    fn upstream(&self, name: String) -> Result<UpstreamSettings, ConfigError> {
        let Some(url) = self.nonempty("url")? else {
            return Err(self.invalid(
                "url",
                "must be set: the upstream registry's address, e.g. https://ghcr.io".to_owned(),
            ));
        };
        let url = self.upstream_url("url", &url)?;
        let prefix = match self.nonempty("prefix")? {
            Some(prefix) => {
                let prefix = prefix.trim_matches('/').to_owned();
                let component = regex::Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
                    .expect("a valid pattern");
                if prefix.is_empty() || !prefix.split('/').all(|c| component.is_match(c)) {
                    return Err(self.invalid(
                        "prefix",
                        format!(
                            "`{prefix}` is not the start of a repository name (lower-case \
                             letters, digits and . _ - between them, parts separated by /)"
                        ),
                    ));
                }
                prefix
            }
            None => natural_prefix(&url),
        };
        let namespaces = match self.list("namespaces")? {
            Some(list) => list.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
            None => vec![natural_namespace(&url)],
        };
        let (username, password) = self.credentials()?;
        Ok(UpstreamSettings {
            name,
            url,
            index_url: None,
            prefix,
            namespaces,
            username,
            password,
            tag_ttl: std::time::Duration::from_secs(self.bounded_or(
                "tag_ttl",
                DEFAULT_UPSTREAM_TAG_TTL,
                0..=31_536_000,
                "a whole number of seconds from 0 to 31536000",
            )?),
            default: self.bool("default")?,
        })
    }

    /// `username` and `password`, both or neither.
    fn credentials(&self) -> Result<(Option<String>, Option<String>), ConfigError> {
        match (self.nonempty("username")?, self.nonempty("password")?) {
            (Some(user), Some(password)) => Ok((Some(user), Some(password))),
            (None, None) => Ok((None, None)),
            (Some(_), None) => Err(self.invalid(
                "password",
                "must be set too: the upstream is logged in to with both".to_owned(),
            )),
            (None, Some(_)) => Err(self.invalid(
                "username",
                "must be set too: a password is only sent with a user name".to_owned(),
            )),
        }
    }

    /// An http(s) URL with a host and nothing after its path, without a
    /// trailing `/`.
    fn upstream_url(&self, key: &str, url: &str) -> Result<String, ConfigError> {
        let trimmed = url.trim_end_matches('/');
        if url_host(trimmed).is_none() || trimmed.contains(['?', '#']) {
            return Err(self.invalid(
                key,
                format!(
                    "`{url}` is not an http:// or https:// URL of a registry (e.g. \
                     https://registry-1.docker.io)"
                ),
            ));
        }
        Ok(trimmed.to_owned())
    }

    fn loglevel(&self) -> Result<LogLevel, ConfigError> {
        let expected = "one of debug, info, warn (warning), error, critical";
        match self.get("loglevel") {
            None => Ok(LogLevel::Info),
            Some(Value::String(s)) => LogLevel::parse(s).ok_or_else(|| {
                self.invalid(
                    "loglevel",
                    format!("must be {expected} (in any case), not {s:?}"),
                )
            }),
            Some(other) => Err(self.wrong("loglevel", expected, other)),
        }
    }

    /// The key is read by whoever checks signatures; a path that cannot be
    /// read is a startup error, as it was in the old registry.
    fn privileged_key(&self) -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = self.nonempty("privileged_key")? else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(path)),
            Ok(_) => Err(self.invalid(
                "privileged_key",
                format!("names {}, which is not a file", path.display()),
            )),
            Err(e) => Err(self.invalid(
                "privileged_key",
                format!(
                    "names the file {}, which cannot be read: {e}",
                    path.display()
                ),
            )),
        }
    }

    /// This section as a Redis server; `None` without a host.
    fn cache(&self, section: &'static str) -> Result<Option<CacheSettings>, ConfigError> {
        let Some(host) = self.nonempty("host")? else {
            return Ok(None);
        };
        let port = self.port("port")?.unwrap_or(6379);
        let db = self.bounded_or("db", 0, 0..=65_535, "a database number from 0 to 65535")? as i64;
        let password = self.nonempty("password")?;
        Ok(Some(CacheSettings {
            host,
            port,
            db,
            password,
            section,
        }))
    }

    /// This section as `email_exceptions`; `None` without `smtp_host`.
    fn email(
        &self,
        prefix: &'static str,
        notices: &mut Vec<super::keys::Notice>,
    ) -> Result<Option<EmailSettings>, ConfigError> {
        let Some(host) = self.nonempty("smtp_host")? else {
            return Ok(None);
        };
        let port = self.port("smtp_port")?.unwrap_or(25);
        let login = match (
            self.nonempty("smtp_login")?,
            self.nonempty("smtp_password")?,
        ) {
            (Some(login), Some(password)) => Some((login, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.invalid(
                    "smtp_password",
                    "must be set too: smtp_login logs in to the SMTP server, which needs the \
                     password"
                        .to_owned(),
                ))
            }
            (None, Some(_)) => {
                return Err(self.invalid(
                    "smtp_login",
                    "must be set too: smtp_password is only sent with a login".to_owned(),
                ))
            }
        };
        // The old registry also took a key file, or a mapping of keyfile and
        // certfile, handed to STARTTLS as a client certificate.
        let secure = match self.get("smtp_secure") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(_) | Value::Mapping(_)) => {
                notices.push(super::keys::Notice::ignored(format!(
                    "setting `{}` of flavor `{}` in {} names a client key or certificate: \
                     registry-v1 uses STARTTLS without presenting one",
                    self.path("smtp_secure"),
                    self.context.flavor,
                    self.context.source
                )));
                true
            }
            Some(other) => {
                return Err(self.wrong("smtp_secure", "true or false (true: STARTTLS)", other))
            }
        };
        let address = |key: &str| -> Result<Vec<String>, ConfigError> {
            let list = self.list(key)?.unwrap_or_default();
            if list.is_empty() {
                return Err(self.invalid(
                    key,
                    "must be set too: smtp_host turns the mailing of server errors on".to_owned(),
                ));
            }
            for addr in &list {
                if addr.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(self.invalid(
                        key,
                        format!("must be a mail address (name@example.com), not {addr:?}"),
                    ));
                }
            }
            Ok(list)
        };
        let from = address("from_addr")?;
        if from.len() > 1 {
            return Err(self.invalid("from_addr", "must be one mail address".to_owned()));
        }
        let to = address("to_addr")?;
        // Only in the section: the older style had no such keys.
        let ca = if prefix.is_empty() {
            None
        } else {
            self.readable_file("smtp_ca")?
        };
        if ca.is_some() && !secure {
            return Err(self.invalid(
                "smtp_ca",
                "is for STARTTLS: set smtp_secure: true too, or remove it".to_owned(),
            ));
        }
        let min_interval = if prefix.is_empty() {
            DEFAULT_EMAIL_MIN_INTERVAL
        } else {
            self.bounded_or(
                "min_interval",
                DEFAULT_EMAIL_MIN_INTERVAL,
                1..=86_400,
                "a whole number of seconds from 1 to 86400",
            )?
        };
        let min_interval = std::time::Duration::from_secs(min_interval);
        Ok(Some(EmailSettings {
            host,
            port,
            login,
            secure,
            ca,
            from: from.into_iter().next().expect("one address"),
            to,
            min_interval,
            prefix,
        }))
    }

    fn tls(&self) -> Result<Option<TlsSettings>, ConfigError> {
        let certificate = self.readable_file("tls_certificate")?;
        let key = self.readable_file("tls_key")?;
        let client_ca = self.readable_file("tls_client_ca")?;
        match (certificate, key) {
            (Some(certificate), Some(key)) => Ok(Some(TlsSettings {
                certificate,
                key,
                client_ca,
            })),
            (None, None) if client_ca.is_none() => Ok(None),
            (None, None) => Err(self.invalid(
                "tls_client_ca",
                "needs tls_certificate and tls_key: client certificates are asked for over https"
                    .to_owned(),
            )),
            (Some(_), None) => Err(self.invalid(
                "tls_key",
                "must be set too: tls_certificate turns https on, which needs the key".to_owned(),
            )),
            (None, Some(_)) => Err(self.invalid(
                "tls_certificate",
                "must be set too: tls_key turns https on, which needs the certificate".to_owned(),
            )),
        }
    }

    fn metrics(&self) -> Result<Option<MetricsSettings>, ConfigError> {
        let path = self
            .nonempty("metrics_path")?
            .unwrap_or_else(|| DEFAULT_METRICS_PATH.to_owned());
        if !path.starts_with('/') || path.contains(|c: char| c.is_whitespace() || c == '?') {
            return Err(self.invalid(
                "metrics_path",
                format!("must be a path starting with /, not {path:?}"),
            ));
        }
        let Some(address) = self.nonempty("metrics_address")? else {
            return Ok(None);
        };
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(self.invalid(
                "metrics_address",
                format!("must be host:port (127.0.0.1:9090, [::1]:9090), not {address:?}"),
            ));
        }
        Ok(Some(MetricsSettings { address, path }))
    }

    fn login(&self) -> Result<LoginSettings, ConfigError> {
        let required = match self
            .nonempty("auth_required")?
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("all") => LoginRequired::All,
            Some("write") => LoginRequired::Write,
            Some(other) => {
                return Err(self.invalid(
                    "auth_required",
                    format!("must be all or write, not {other:?}"),
                ))
            }
        };
        let realm = self
            .header_word("auth_realm")?
            .unwrap_or_else(|| DEFAULT_AUTH_REALM.to_owned());
        let max_failed_logins = self.bounded_or(
            "auth_max_failed_logins",
            DEFAULT_MAX_FAILED_LOGINS,
            1..=1_000_000,
            "a whole number from 1 to 1000000",
        )? as u32;
        let htpasswd = self.readable_file("auth_htpasswd")?;
        let token_realm = self.header_word("auth_token_realm")?;
        if let Some(url) = &token_realm {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(self.invalid(
                    "auth_token_realm",
                    format!("must be the http(s):// URL of the token service, not {url:?}"),
                ));
            }
        }
        let service = self.header_word("auth_token_service")?;
        let issuer = self.nonempty("auth_token_issuer")?;
        let bundle = self.readable_file("auth_token_rootcertbundle")?;
        let token_set = [
            ("auth_token_realm", token_realm.is_some()),
            ("auth_token_service", service.is_some()),
            ("auth_token_issuer", issuer.is_some()),
            ("auth_token_rootcertbundle", bundle.is_some()),
        ];
        let token = match (token_realm, service, issuer, bundle) {
            (Some(realm), Some(service), Some(issuer), Some(rootcertbundle)) => {
                Some(TokenSettings {
                    realm,
                    service,
                    issuer,
                    rootcertbundle,
                })
            }
            (None, None, None, None) => None,
            _ => {
                let (missing, _) = token_set
                    .iter()
                    .find(|(_, set)| !set)
                    .expect("one is unset");
                let (given, _) = token_set.iter().find(|(_, set)| *set).expect("one is set");
                return Err(self.invalid(
                    missing,
                    format!(
                        "must be set too: {given} turns token auth on, which needs \
                         auth_token_realm, auth_token_service, auth_token_issuer and \
                         auth_token_rootcertbundle"
                    ),
                ));
            }
        };
        let mode = match (htpasswd, token) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "auth_htpasswd",
                    "cannot be combined with token auth (auth_token_realm): choose one".to_owned(),
                ))
            }
            (Some(path), None) => Some(LoginMode::Htpasswd(path)),
            (None, Some(token)) => Some(LoginMode::Token(token)),
            (None, None) => None,
        };
        Ok(LoginSettings {
            mode,
            required,
            realm,
            max_failed_logins,
        })
    }

    /// A string that goes into a `WWW-Authenticate` parameter: no double
    /// quotes, backslashes or control characters.
    fn header_word(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let value = self.nonempty(key)?;
        if let Some(v) = &value {
            if v.contains(|c: char| c == '"' || c == '\\' || c.is_control()) {
                return Err(self.invalid(
                    key,
                    "must not hold double quotes, backslashes or control characters (it goes \
                     into the WWW-Authenticate header)"
                        .to_owned(),
                ));
            }
        }
        Ok(value)
    }

    /// A file the server reads; one that cannot be read is a startup error.
    fn readable_file(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = self.nonempty(key)? else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        match std::fs::File::open(&path).and_then(|f| f.metadata()) {
            Ok(meta) if meta.is_file() => Ok(Some(path)),
            Ok(_) => Err(self.invalid(
                key,
                format!("names {}, which is not a file", path.display()),
            )),
            Err(e) => Err(self.invalid(
                key,
                format!(
                    "names the file {}, which cannot be read: {e}",
                    path.display()
                ),
            )),
        }
    }

    fn storage(&self) -> Result<StorageSettings, ConfigError> {
        let name = self.nonempty("storage")?.map(|s| s.to_ascii_lowercase());
        let kind = match name.as_deref() {
            // No storage at all: the local disk, which a newcomer expects.
            None | Some("local") | Some("file") => StorageKind::Local,
            Some("s3") => StorageKind::S3,
            Some("gcs") => StorageKind::Gcs,
            Some("swift") => StorageKind::Swift,
            Some(other) if UNSUPPORTED_STORAGES.contains(&other) => {
                StorageKind::Unsupported(other.to_owned())
            }
            Some(other) => {
                return Err(self.invalid(
                    "storage",
                    format!(
                        "names an unknown storage {other:?}: this build offers local (also \
                         called file), s3, gcs and swift; the old registry also knew {}",
                        UNSUPPORTED_STORAGES.join(", ")
                    ),
                ))
            }
        };
        // Unset, the old drivers' own defaults: `./tmp` on disk, `/test` in
        // a bucket, `/` in a Swift container; an existing store keeps being
        // found.
        let path = self.nonempty("storage_path")?.unwrap_or_else(|| {
            match kind {
                StorageKind::Local => "./tmp",
                StorageKind::Swift => "/",
                _ => "/test",
            }
            .to_owned()
        });
        let s3 = match kind {
            StorageKind::S3 => self.s3()?,
            StorageKind::Gcs => self.gcs()?,
            _ => None,
        };
        let swift = match kind {
            StorageKind::Swift => self.swift()?,
            _ => None,
        };
        Ok(StorageSettings {
            kind,
            path,
            redirect: self.bool("storage_redirect")?,
            nginx_x_accel_redirect: self.nonempty("nginx_x_accel_redirect")?,
            s3,
            swift,
        })
    }

    /// `None` without an auth URL or a set token: the configuration loads,
    /// `serve` says what is missing.
    fn swift(&self) -> Result<Option<SwiftSettings>, ConfigError> {
        let url = self.nonempty("swift_authurl")?;
        let storage_url = self.nonempty("swift_object_storage_url")?;
        let token = self.nonempty("swift_auth_token")?;
        let user = self.nonempty("swift_user")?;
        let password = self.nonempty("swift_password")?;
        let tenant = self.nonempty("swift_tenant_name")?;
        let version = match self.get("swift_auth_version") {
            None => None,
            Some(v) => match v
                .as_u64()
                .map(|n| n.to_string())
                // `2.0` unquoted is a number: 2.
                .or_else(|| v.as_f64().map(|f| f.to_string()))
                .or_else(|| v.as_str().map(str::to_owned))
            {
                Some(n) if ["1", "1.0", "2", "2.0", "3"].contains(&n.as_str()) => {
                    Some(n.chars().next().unwrap_or('2'))
                }
                _ => return Err(self.wrong("swift_auth_version", "1, 2 or 3", v)),
            },
        };
        let auth = match (token, url) {
            (Some(token), _) => {
                let Some(storage_url) = storage_url.clone() else {
                    return Err(self.invalid(
                        "swift_auth_token",
                        "needs swift_object_storage_url, the storage URL the token is good for"
                            .to_owned(),
                    ));
                };
                SwiftAuth::Preset { token, storage_url }
            }
            (None, None) => return Ok(None),
            (None, Some(url)) => {
                let (Some(user), Some(password)) = (user, password) else {
                    return Err(self.invalid(
                        "swift_authurl",
                        "needs swift_user and swift_password (or set swift_auth_token and \
                         swift_object_storage_url instead)"
                            .to_owned(),
                    ));
                };
                // Unset, the URL's path tells; else Keystone v2.0, the old
                // driver's default.
                let path = url.trim_end_matches('/');
                let version =
                    version.unwrap_or(if path.ends_with("/v1.0") || path.ends_with("/auth") {
                        '1'
                    } else if path.ends_with("/v3") || path.ends_with("/v3/auth/tokens") {
                        '3'
                    } else {
                        '2'
                    });
                match version {
                    '1' => SwiftAuth::V1 {
                        url,
                        user,
                        key: password,
                    },
                    '3' => SwiftAuth::V3 {
                        url,
                        user,
                        password,
                        project: tenant,
                        domain: self
                            .nonempty("swift_domain_name")?
                            .unwrap_or_else(|| "Default".to_owned()),
                    },
                    _ => SwiftAuth::V2 {
                        url,
                        user,
                        password,
                        tenant,
                    },
                }
            }
        };
        let endpoint_type = self
            .nonempty("swift_endpoint_type")?
            .unwrap_or_else(|| "public".to_owned());
        if ![
            "public",
            "internal",
            "admin",
            "publicURL",
            "internalURL",
            "adminURL",
        ]
        .contains(&endpoint_type.as_str())
        {
            return Err(self.invalid(
                "swift_endpoint_type",
                format!("is {endpoint_type:?}: public, internal or admin"),
            ));
        }
        let container = self
            .nonempty("swift_container")?
            .unwrap_or_else(|| "dev_container".to_owned());
        if container.contains(['/', '?', '#']) || container.len() > 256 {
            return Err(self.invalid(
                "swift_container",
                format!("is {container:?}: a container name has no `/`, `?` or `#` and at most 256 bytes"),
            ));
        }
        Ok(Some(SwiftSettings {
            container,
            auth,
            region: self.nonempty("swift_region_name")?,
            endpoint_type,
            storage_url,
            temp_url_key: self.nonempty("swift_temp_url_key")?,
            cacert: self.readable_file("swift_cacert")?,
        }))
    }

    /// `None` without a bucket: the configuration loads, `serve` says what
    /// is missing.
    fn s3(&self) -> Result<Option<S3Settings>, ConfigError> {
        let s3_bucket = self.nonempty("s3_bucket")?;
        let boto_bucket = self.nonempty("boto_bucket")?;
        let settings = S3Settings {
            bucket: String::new(),
            region: self.nonempty("s3_region")?,
            access_key: self.nonempty("s3_access_key")?,
            secret_key: self.nonempty("s3_secret_key")?,
            encrypt: self.bool("s3_encrypt")?,
            secure: self.bool("s3_secure")?,
            host: self.nonempty("boto_host")?,
            port: self.port("boto_port")?,
        };
        Ok(s3_bucket
            .or(boto_bucket)
            .map(|bucket| S3Settings { bucket, ..settings }))
    }

    /// GCS through its S3-compatible interface, with HMAC keys.
    fn gcs(&self) -> Result<Option<S3Settings>, ConfigError> {
        let bucket = self.nonempty("boto_bucket")?;
        let settings = S3Settings {
            bucket: String::new(),
            region: None,
            access_key: self.nonempty("gs_access_key")?,
            secret_key: self.nonempty("gs_secret_key")?,
            encrypt: false,
            secure: self.bool("gs_secure")?,
            host: Some(GCS_HOST.to_owned()),
            port: None,
        };
        Ok(bucket.map(|bucket| S3Settings { bucket, ..settings }))
    }

    fn search(&self) -> Result<SearchSettings, ConfigError> {
        let backend = match self
            .nonempty("search_backend")?
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None => SearchBackend::Disabled,
            Some("sqlalchemy") => SearchBackend::Sqlalchemy,
            Some(other) => {
                return Err(self.invalid(
                    "search_backend",
                    format!(
                        "names an unknown search backend {other:?}: use sqlalchemy, or leave it \
                         empty to turn search off"
                    ),
                ))
            }
        };
        let database = self.nonempty("sqlalchemy_index_database")?;
        if backend == SearchBackend::Sqlalchemy && database.is_none() {
            return Err(self.invalid(
                "sqlalchemy_index_database",
                "must name the database when search_backend is sqlalchemy (for example \
                 sqlite:////var/lib/docker-registry/search.db)"
                    .to_owned(),
            ));
        }
        Ok(SearchSettings { backend, database })
    }

    fn cors(&self) -> Result<CorsSettings, ConfigError> {
        Ok(CorsSettings {
            origins: self.list("origins")?.filter(|o| !o.is_empty()),
            methods: self.list("methods")?.filter(|m| !m.is_empty()),
            headers: self
                .list("headers")?
                .unwrap_or_else(|| vec!["Content-Type".to_owned()]),
            expose_headers: self.list("expose_headers")?.unwrap_or_default(),
            supports_credentials: self.bool("supports_credentials")?,
            max_age: self.seconds("max_age")?,
        })
    }
}

/// A value as a message shows it; a secret's text never appears.
pub(super) fn describe(value: &Value, secret: bool) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("the number {n}"),
        Value::Number(n) => format!("the integer {n}"),
        Value::String(_) if secret => "a string (not shown: a secret)".to_owned(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(m) if m.is_empty() => "an empty mapping".to_owned(),
        Value::Mapping(m) => {
            let keys: Vec<String> = m.keys().map(key_text).take(5).collect();
            format!("a mapping (of {})", keys.join(", "))
        }
        Value::Tagged(_) => "a tagged value".to_owned(),
    }
}
