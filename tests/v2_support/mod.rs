//! Support for the v2 tests: where the registry under test keeps its data
//! (local disk, or a bucket of the local S3 server), a client speaking the
//! v2 API that checks what every answer must carry, digests, and the small
//! images the tests push.
#![allow(dead_code)]

pub mod containerd;
pub mod distribution;
#[path = "../storage_support/s3_server.rs"]
pub mod s3_server;
#[path = "../storage_support/swift_server.rs"]
pub mod swift_server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};

use crate::common::{self, Registry};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// What a client that takes every manifest type sends in `Accept`.
pub const ALL_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";
pub const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The prefix every v2 key has below `storage_path`.
pub const V2_ROOT: &str = "docker/registry/v2";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// The hex part of a digest.
pub fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, h)| h)
}

/// Bytes that differ from test to test and run to run, so that blobs of
/// parallel tests (and of earlier runs on a shared bucket) never collide.
pub fn unique_bytes(label: &str, len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    let tag = label.as_bytes();
    let n = tag.len().min(len);
    data[..n].copy_from_slice(&tag[..n]);
    data
}

pub fn rand_suffix() -> String {
    use rand::Rng;
    format!(
        "{}-{:08x}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    )
}

/// Where the registry under test keeps its data.
pub enum Backend {
    /// `storage_path` is `<dir>/data/storage`: whatever a request manages
    /// to write outside it lands in `<dir>` where the tests look.
    Local {
        dir: tempfile::TempDir,
    },
    S3 {
        bucket: String,
        port: u16,
    },
    /// A container of its own on the shared test Swift, made by the
    /// registry at its start.
    Swift {
        container: String,
    },
}

impl Backend {
    pub fn local() -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data/storage")).expect("storage dir");
        Backend::Local { dir }
    }

    /// A fresh bucket on the shared S3-compatible server, or `None` when
    /// there is none (outside CI; under CI a missing server fails).
    pub fn s3() -> Option<Backend> {
        let server = s3_server::server()?;
        let bucket = format!("v2-{}", rand_suffix());
        server.create_bucket(&bucket);
        Some(Backend::S3 {
            bucket,
            port: server.port,
        })
    }

    /// A fresh container name on the shared test Swift, or `None` when
    /// there is none (outside CI; under CI a missing server fails).
    pub fn swift() -> Option<Backend> {
        swift_server::server()?;
        Some(Backend::Swift {
            container: format!("v2-{}", rand_suffix()),
        })
    }

    /// Whether the storage is an object store (S3 or Swift) rather than a
    /// local folder.
    pub fn is_s3(&self) -> bool {
        matches!(self, Backend::S3 { .. } | Backend::Swift { .. })
    }

    /// The local `storage_path`.
    pub fn storage_path(&self) -> Option<PathBuf> {
        match self {
            Backend::Local { dir } => Some(dir.path().join("data/storage")),
            Backend::S3 { .. } | Backend::Swift { .. } => None,
        }
    }

    /// The storage keys of a flavor of one's own on this backend, the
    /// values taken from [`Backend::env`] (`_env:`), indented for a flavor.
    pub fn flavor_storage(&self) -> &'static str {
        if let Backend::Swift { .. } = self {
            "  storage: swift\n  swift_authurl: _env:OS_AUTH_URL\n  swift_container: _env:OS_CONTAINER\n  \
             swift_user: _env:OS_USERNAME\n  swift_password: _env:OS_PASSWORD\n  \
             storage_path: /registry\n"
        } else if self.is_s3() {
            "  storage: s3\n  s3_bucket: _env:AWS_BUCKET\n  s3_access_key: _env:AWS_KEY\n  \
             s3_secret_key: _env:AWS_SECRET\n  s3_region: _env:AWS_REGION\n  \
             boto_host: _env:AWS_HOST\n  boto_port: _env:AWS_PORT\n  s3_secure: false\n  \
             s3_encrypt: false\n  storage_path: /registry\n"
        } else {
            "  storage: local\n  storage_path: _env:STORAGE_PATH\n"
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Local { .. } => vec![
                (
                    "STORAGE_PATH".into(),
                    self.storage_path().unwrap().to_str().unwrap().into(),
                ),
                ("SETTINGS_FLAVOR".into(), "dev".into()),
            ],
            Backend::S3 { bucket, .. } => s3_server::server().unwrap().registry_env(bucket),
            Backend::Swift { container } => swift_server::server().unwrap().registry_env(container),
        }
    }

    /// Starts the registry on this storage, with extra environment.
    pub fn start(&self, extra: &[(&str, &str)]) -> Registry {
        let env = self.env();
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        Registry::start(&all)
    }

    /// Every stored file or key, relative to `storage_path`.
    pub fn stored_keys(&self) -> Vec<String> {
        match self {
            Backend::Local { .. } => {
                let root = self.storage_path().unwrap();
                walk(&root)
                    .into_iter()
                    .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
                    .collect()
            }
            Backend::S3 { .. } | Backend::Swift { .. } => self
                .bucket_keys()
                .into_iter()
                .filter_map(|k| k.strip_prefix("registry/").map(str::to_owned))
                .collect(),
        }
    }

    /// A stored file by its path relative to `storage_path`.
    pub fn read_stored(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Backend::Local { .. } => std::fs::read(self.storage_path().unwrap().join(key)).ok(),
            Backend::S3 { .. } => {
                let bucket = self.bucket();
                let key = format!("registry/{key}");
                let resp = block_on(bucket.get_object(&key)).ok()?;
                (resp.status_code() == 200).then(|| resp.bytes().to_vec())
            }
            Backend::Swift { container } => {
                let (token, url) = swift_server::server().unwrap().login();
                let resp = Client::new()
                    .get(format!("{url}/{container}/registry/{key}"))
                    .header("X-Auth-Token", token)
                    .send()
                    .ok()?;
                resp.status()
                    .is_success()
                    .then(|| resp.bytes().unwrap().to_vec())
            }
        }
    }

    /// Whatever exists outside `storage_path`: must stay empty.
    pub fn outside(&self) -> Vec<String> {
        match self {
            Backend::Local { dir } => {
                let root = self.storage_path().unwrap();
                walk(dir.path())
                    .into_iter()
                    .filter(|p| !p.starts_with(&root))
                    .map(|p| p.display().to_string())
                    .collect()
            }
            Backend::S3 { .. } | Backend::Swift { .. } => self
                .bucket_keys()
                .into_iter()
                .filter(|k| !k.starts_with("registry/"))
                .collect(),
        }
    }

    /// The bucket, reached with signed requests (moto refuses anonymous
    /// reads of objects).
    fn bucket(&self) -> Box<s3::Bucket> {
        let Backend::S3 { bucket, port } = self else {
            panic!("not an S3 backend");
        };
        let region = s3::Region::Custom {
            region: "us-east-1".to_owned(),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let creds = s3::creds::Credentials::new(Some("testing"), Some("testing"), None, None, None)
            .expect("credentials");
        s3::Bucket::new(bucket, region, creds)
            .expect("bucket")
            .with_path_style()
    }

    fn bucket_keys(&self) -> Vec<String> {
        if let Backend::Swift { container } = self {
            return swift_server::server().unwrap().names(container);
        }
        block_on(self.bucket().list(String::new(), None))
            .expect("list the bucket")
            .into_iter()
            .flat_map(|page| page.contents)
            .map(|o| o.key)
            .collect()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Every file (not folder) under `dir`, following no symlinks.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// A v2 client of one registry (ours or distribution), checking on every
/// answer the header the API promises.
pub struct V2 {
    pub base: String,
    pub http: Client,
}

/// The header every answer of the v2 API carries, errors included.
pub fn assert_version_header(resp: &Response, what: &str) {
    assert_eq!(
        resp.headers()
            .get("docker-distribution-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("registry/2.0"),
        "Docker-Distribution-Api-Version on {what} ({})",
        resp.status()
    );
}

/// A response header as text.
pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Adds a query parameter to a URL that may already have a query.
pub fn with_query(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// The path and query of a URL, absolute or not.
pub fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned()),
        None => location.to_owned(),
    }
}

/// The spec's error body: every entry has a code (upper case and
/// underscores) and a message; `detail` is free. Returns the codes.
pub fn error_codes_of(body: &[u8], what: &str) -> Vec<String> {
    let doc: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{what}: error body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    let errors = doc["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors array in {doc}"));
    assert!(!errors.is_empty(), "{what}: empty errors array");
    errors
        .iter()
        .map(|e| {
            let code = e["code"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: error without a code: {e}"));
            assert!(
                !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{what}: code {code:?}"
            );
            assert!(e["message"].is_string(), "{what}: message of {e}");
            code.to_owned()
        })
        .collect()
}

impl V2 {
    pub fn new(registry: &Registry) -> V2 {
        V2::at(registry.url(""))
    }

    /// A client of any registry at `base` (`http://127.0.0.1:PORT`).
    pub fn at(base: String) -> V2 {
        V2 {
            base,
            http: common::client(),
        }
    }

    /// The URL of a path, or a Location the registry answered.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn request(&self, method: &str, path: &str) -> RequestBuilder {
        self.http.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            self.url(path),
        )
    }

    /// Sends a request and checks the version header of its answer.
    pub fn send(&self, req: RequestBuilder) -> Response {
        let req = req.build().expect("request");
        let what = format!("{} {}", req.method(), req.url());
        let resp = self
            .http
            .execute(req)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_version_header(&resp, &what);
        resp
    }

    pub fn get(&self, path: &str) -> Response {
        self.send(self.request("GET", path))
    }

    pub fn head(&self, path: &str) -> Response {
        self.send(self.request("HEAD", path))
    }

    /// GET of a manifest, accepting every type as real clients do.
    pub fn get_manifest(&self, path: &str) -> Response {
        self.send(self.request("GET", path).header("accept", ALL_MANIFESTS))
    }

    /// HEAD of a manifest, accepting every type.
    pub fn head_manifest(&self, path: &str) -> Response {
        self.send(self.request("HEAD", path).header("accept", ALL_MANIFESTS))
    }

    pub fn delete(&self, path: &str) -> Response {
        self.send(self.request("DELETE", path))
    }

    /// Expects an error answer with `status` and `code` among its codes.
    pub fn expect_error(&self, resp: Response, status: u16, code: &str, what: &str) {
        let got = resp.status().as_u16();
        let body = resp.bytes().unwrap();
        assert_eq!(
            got,
            status,
            "{what}: status; body {}",
            String::from_utf8_lossy(&body)
        );
        let codes = error_codes_of(&body, what);
        assert!(
            codes.iter().any(|c| c == code),
            "{what}: expected {code}, got {codes:?}"
        );
    }

    /// Starts an upload session; returns its Location.
    pub fn start_upload(&self, name: &str) -> String {
        let resp = self.send(
            self.request("POST", &format!("/v2/{name}/blobs/uploads/"))
                .header("content-length", "0"),
        );
        assert_eq!(resp.status(), 202, "POST upload to {name}");
        header(&resp, "location").expect("Location of a new upload")
    }

    /// Pushes a blob with POST then PUT (what every registry supports);
    /// returns its sha256 digest.
    pub fn push_blob(&self, name: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let location = self.start_upload(name);
        let resp = self.send(
            self.request("PUT", &with_query(&location, &format!("digest={digest}")))
                .header("content-type", "application/octet-stream")
                .body(data.to_vec()),
        );
        assert_eq!(resp.status(), 201, "PUT blob {digest} to {name}");
        digest
    }

    /// PUTs a manifest and returns the answer as it is.
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.send(
            self.request("PUT", &format!("/v2/{name}/manifests/{reference}"))
                .header("content-type", media_type)
                .body(body.to_vec()),
        )
    }

    /// PUTs a manifest that must be accepted; returns its digest.
    pub fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self.put_manifest(name, reference, media_type, body);
        let status = resp.status();
        let digest = header(&resp, "docker-content-digest");
        let text = resp.text().unwrap_or_default();
        assert_eq!(status, 201, "PUT manifest {name}:{reference}: {text}");
        assert_eq!(digest.as_deref(), Some(sha256(body).as_str()));
        sha256(body)
    }
}

/// A descriptor of pushed content.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// Pretty JSON with a trailing newline: bytes a registry could only give
/// back unchanged by keeping them, never by serializing its own model.
pub fn manifest_bytes(doc: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(doc).unwrap();
    out.extend_from_slice(b"\n");
    out
}

/// The blobs of a small image: a config for the platform and one layer.
pub struct ImageBlobs {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
}

impl ImageBlobs {
    pub fn new(label: &str, arch: &str) -> ImageBlobs {
        let layer = unique_bytes(label, 1500);
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Env": [format!("LABEL={label}")]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
        }))
        .unwrap();
        ImageBlobs { config, layer }
    }

    pub fn push(&self, v2: &V2, name: &str) {
        v2.push_blob(name, &self.config);
        v2.push_blob(name, &self.layer);
    }

    /// An OCI image manifest of these blobs.
    pub fn oci_manifest(&self) -> Vec<u8> {
        manifest_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &self.config),
            "layers": [descriptor(OCI_LAYER, &self.layer)],
        }))
    }

    /// A docker schema 2 manifest of these blobs.
    pub fn docker_manifest(&self) -> Vec<u8> {
        manifest_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(DOCKER_CONFIG, &self.config),
            "layers": [descriptor(DOCKER_LAYER, &self.layer)],
        }))
    }
}

/// An index (OCI or docker manifest list) of manifests, one per platform.
pub fn index_of(media_type: &str, children: &[(&str, &[u8], &str)]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(child_type, body, arch)| {
            let mut d = descriptor(child_type, body);
            d["platform"] = json!({"architecture": arch, "os": "linux"});
            d
        })
        .collect();
    manifest_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
}

/// A request written by hand on a socket, for targets an HTTP library
/// would normalize (`..`, `%2e%2e`). Returns the status and the body.
pub fn raw_request(port: u16, method: &str, target: &str, body: &[u8]) -> (u16, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: no status line in {text:?}"));
    (status, text)
}

/// Whether a test that needs `tool` should run: true when it is installed;
/// under CI a missing tool fails the test; elsewhere the skip is printed
/// (straight to stderr, which the harness does not capture).
pub fn tool_available(tool: &str, install: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is required under CI (install it with {install})");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\nSKIPPED: {tool} not installed (install it with {install})\n"
    );
    false
}

impl Backend {
    /// Removes a stored file behind the registry's back (a collector, an
    /// operator), by its path relative to `storage_path`.
    pub fn remove_stored(&self, key: &str) {
        match self {
            Backend::Local { .. } => {
                std::fs::remove_file(self.storage_path().unwrap().join(key)).expect("remove file")
            }
            Backend::S3 { .. } => {
                let key = format!("registry/{key}");
                block_on(self.bucket().delete_object(&key)).expect("delete object");
            }
            Backend::Swift { container } => {
                let (token, url) = swift_server::server().unwrap().login();
                let status = Client::new()
                    .delete(format!("{url}/{container}/registry/{key}"))
                    .header("X-Auth-Token", token)
                    .send()
                    .expect("delete object")
                    .status();
                assert!(status.is_success(), "delete {key}: {status}");
            }
        }
    }
}

/// A tar of a few small files (a rootfs of nothing much), unique per call.
pub fn rootfs_tar(label: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut head = tar::Header::new_gnu();
        head.set_size(data.len() as u64);
        head.set_mode(mode);
        head.set_mtime(1_700_000_000);
        head.set_cksum();
        builder.append_data(&mut head, path, data).unwrap();
    };
    add("etc/hostname", format!("{label}\n").as_bytes(), 0o644);
    add(
        "hello.txt",
        format!("hello from {label} {}\n", rand_suffix()).as_bytes(),
        0o644,
    );
    add("bin/true", b"#!/bin/sh\nexit 0\n", 0o755);
    builder.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
