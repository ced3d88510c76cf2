//! The typed settings the rest of the code reads.
//!
//! Built once from the resolved flavor tree (see [`super::load`]); nothing
//! else looks settings up by string. The tree itself is kept in
//! [`Settings::raw`] so that keys we do not use survive (`registry-v1 config`
//! prints them).

use std::fmt;
use std::path::PathBuf;

/// Everything the server needs, typed.
#[derive(Debug, Clone)]
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
    /// RSA public key (PEM) whose `X-Signature`s are authorised.
    pub privileged_key: Option<PathBuf>,
    /// Value of `X-Docker-Endpoints`; `None`: the request's Host header.
    pub registry_endpoints: Option<String>,
    pub storage: StorageSettings,
    pub search: SearchSettings,
    pub cors: CorsSettings,
    /// `mirroring.source` is set: `/_ping` says `mirror`.
    pub mirroring: bool,
    /// The resolved tree of the flavor, unknown keys included.
    pub raw: serde_yaml::Value,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    /// `local` or `file`.
    Local,
    S3,
    Gcs,
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
