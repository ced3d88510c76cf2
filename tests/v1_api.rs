//! The v1 API through the real binary, as a docker 1.x client and curl use
//! it. Every test runs against each storage driver (local disk, S3 on a real
//! S3-compatible server, a real OpenStack Swift): the routes must answer
//! identically.

#[macro_use]
mod common;
#[path = "storage_support/s3_server.rs"]
#[allow(dead_code)]
mod s3_server;
#[path = "storage_support/swift_server.rs"]
#[allow(dead_code)]
mod swift_server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use common::Registry;

const BASE: &str = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";
const CHILD: &str = "46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457";

/// A v1 image as a client pushes it.
struct Image {
    id: String,
    json: Vec<u8>,
    layer: Vec<u8>,
}

impl Image {
    /// The checksum a docker client computes: `sha256(json + "\n" + layer)`.
    fn checksum(&self) -> String {
        common::v1_checksum(&self.json, &self.layer)
    }
}

fn fixture(id: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = common::fixtures().join(id);
    (
        std::fs::read(dir.join("json")).unwrap(),
        std::fs::read(dir.join("layer.tar")).unwrap(),
    )
}

/// The base image, and a child of it (the fixture whose parent is not among
/// the fixtures, re-parented onto the base).
fn images() -> (Image, Image) {
    let (json, layer) = fixture(BASE);
    let base = Image {
        id: BASE.into(),
        json,
        layer,
    };
    let (json, layer) = fixture(CHILD);
    let mut doc: Value = serde_json::from_slice(&json).unwrap();
    doc["parent"] = json!(BASE);
    let child = Image {
        id: CHILD.into(),
        json: serde_json::to_vec(&doc).unwrap(),
        layer,
    };
    (base, child)
}

/// Where the registry under test keeps its data.
enum Backend {
    Local(tempfile::TempDir),
    S3 { bucket: String },
    Swift { container: String },
}

impl Backend {
    fn local() -> Self {
        Backend::Local(tempfile::tempdir().unwrap())
    }

    /// A fresh bucket on the shared S3-compatible server, or `None` when
    /// there is none (outside CI).
    fn s3() -> Option<Self> {
        let server = s3_server::server()?;
        let bucket = format!("v1-{}", rand_suffix());
        server.create_bucket(&bucket);
        Some(Backend::S3 { bucket })
    }

    /// A fresh container name on the shared test Swift (the registry makes
    /// it), or `None` when there is none (outside CI).
    fn swift() -> Option<Self> {
        swift_server::server()?;
        Some(Backend::Swift {
            container: format!("v1-{}", rand_suffix()),
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Local(dir) => vec![
                ("STORAGE_PATH".into(), dir.path().to_str().unwrap().into()),
                ("SETTINGS_FLAVOR".into(), "dev".into()),
            ],
            Backend::S3 { bucket } => s3_server::server().unwrap().registry_env(bucket),
            Backend::Swift { container } => swift_server::server().unwrap().registry_env(container),
        }
    }

    fn local_root(&self) -> Option<&Path> {
        match self {
            Backend::Local(dir) => Some(dir.path()),
            Backend::S3 { .. } | Backend::Swift { .. } => None,
        }
    }

    fn start(&self, extra: &[(&str, &str)]) -> Registry {
        let env = self.env();
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        Registry::start(&all)
    }
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

const DOCKER_UA: &str =
    "docker/1.3.0 go/go1.3.3 git-commit/c78088f kernel/3.16.0-4-AMD64 os/Linux arch/amd64";

/// A docker 1.x client's requests.
struct Docker<'a> {
    registry: &'a Registry,
    http: Client,
}

impl<'a> Docker<'a> {
    fn new(registry: &'a Registry) -> Self {
        Self {
            registry,
            http: common::client(),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Response {
        let mut req = self
            .http
            .request(method.parse().unwrap(), self.registry.url(path))
            .header("User-Agent", DOCKER_UA);
        if let Some(body) = body {
            req = req.body(body);
        }
        req.send().unwrap()
    }

    fn get(&self, path: &str) -> Response {
        self.send("GET", path, None)
    }

    fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> Response {
        self.send("PUT", path, Some(body.into()))
    }

    fn delete(&self, path: &str) -> Response {
        self.send("DELETE", path, None)
    }

    fn put_checksum(&self, id: &str, checksum: &str) -> Response {
        self.http
            .put(self.registry.url(&format!("/v1/images/{id}/checksum")))
            .header("X-Docker-Checksum-Payload", checksum)
            .send()
            .unwrap()
    }

    /// One image, as `docker push` sends it.
    fn push_image(&self, image: &Image) {
        let id = &image.id;
        assert_eq!(self.get(&format!("/v1/images/{id}/json")).status(), 404);
        expect_true(self.put(&format!("/v1/images/{id}/json"), image.json.clone()));
        expect_true(self.put(&format!("/v1/images/{id}/layer"), image.layer.clone()));
        expect_true(self.put_checksum(id, &image.checksum()));
    }
}

fn expect_true(resp: Response) {
    let status = resp.status();
    let body = resp.text().unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "true"));
}

/// Status and `error` message of an answer, checking it is a JSON error.
fn error_of(resp: Response) -> (u16, String) {
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let body: Value = resp.json().unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

fn err(status: u16, message: &str) -> (u16, String) {
    (status, message.to_owned())
}

// --- The tests, each run against every backend --------------------------------

fn push_and_pull_like_docker(backend: Backend) {
    let registry = backend.start(&[]);
    let docker = Docker::new(&registry);
    let (base, child) = images();

    // Push.
    let resp = docker.put("/v1/repositories/ns/app/", b"[]".to_vec());
    assert_eq!(resp.status(), 200);
    let token = resp.headers()["x-docker-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("Token signature="), "{token}");
    assert!(
        token.ends_with(r#",repository="ns/app",access=write"#),
        "{token}"
    );
    assert_eq!(resp.headers()["www-authenticate"], token.as_str());
    assert_eq!(
        resp.headers()["x-docker-endpoints"],
        format!("127.0.0.1:{}", registry.port).as_str()
    );
    docker.push_image(&base);
    docker.push_image(&child);
    expect_true(docker.put(
        "/v1/repositories/ns/app/tags/latest",
        format!("\"{CHILD}\""),
    ));
    let images = json!([{"id": BASE, "checksum": base.checksum()}, {"id": CHILD, "checksum": child.checksum()}]);
    assert_eq!(
        docker
            .put("/v1/repositories/ns/app/images", images.to_string())
            .status(),
        204
    );

    // Pull.
    let resp = docker.get("/v1/repositories/ns/app/images");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["x-docker-token"]
        .to_str()
        .unwrap()
        .ends_with("access=read"));
    let listed: Value = resp.json().unwrap();
    assert_eq!(listed, images);
    let tags: Value = docker.get("/v1/repositories/ns/app/tags").json().unwrap();
    assert_eq!(tags, json!({"latest": CHILD}));
    let ancestry: Value = docker
        .get(&format!("/v1/images/{CHILD}/ancestry"))
        .json()
        .unwrap();
    assert_eq!(ancestry, json!([CHILD, BASE]));
    for image in [&child, &base] {
        let resp = docker.get(&format!("/v1/images/{}/json", image.id));
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        assert_eq!(h["x-docker-size"], image.layer.len().to_string().as_str());
        assert_eq!(h["x-docker-checksum-payload"], image.checksum().as_str());
        assert_eq!(h["cache-control"], "public, max-age=31536000");
        assert_eq!(h["last-modified"], "Thu, 01 Jan 1970 00:00:00 GMT");
        assert!(h.contains_key("expires"));
        assert_eq!(resp.bytes().unwrap(), image.json, "json served as pushed");

        let resp = docker.get(&format!("/v1/images/{}/layer", image.id));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/octet-stream");
        assert_eq!(resp.headers()["accept-ranges"], "bytes");
        assert_eq!(
            resp.headers()["content-length"],
            image.layer.len().to_string().as_str()
        );
        assert_eq!(resp.bytes().unwrap(), image.layer, "layer served as pushed");
    }

    // A download that broke off resumes with Range.
    let len = child.layer.len();
    let resp = docker
        .http
        .get(registry.url(&format!("/v1/images/{CHILD}/layer")))
        .header("Range", "bytes=1000-")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1000-{}/{len}", len - 1).as_str()
    );
    assert_eq!(resp.bytes().unwrap(), child.layer[1000..]);
    for (range, first, last) in [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=-5", len - 5, len - 1),
    ] {
        let resp = docker
            .http
            .get(registry.url(&format!("/v1/images/{CHILD}/layer")))
            .header("Range", range)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 206, "{range}");
        assert_eq!(resp.bytes().unwrap(), child.layer[first..=last], "{range}");
    }
    let resp = docker
        .http
        .get(registry.url(&format!("/v1/images/{CHILD}/layer")))
        .header("Range", format!("bytes={len}-"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );

    // The files of the layer, listed and cached.
    let files: Value = docker
        .get(&format!("/v1/images/{CHILD}/files"))
        .json()
        .unwrap();
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert!(names.contains(&"dev/core"), "{names:?}");
    let again: Value = docker
        .get(&format!("/v1/images/{CHILD}/files"))
        .json()
        .unwrap();
    assert_eq!(files, again);

    // Tag and repository JSON record the client.
    let tag_json: Value = docker
        .get("/v1/repositories/ns/app/tags/latest/json")
        .json()
        .unwrap();
    assert_eq!(tag_json["docker_version"], "1.3.0");
    assert_eq!(tag_json["docker_go_version"], "go1.3.3");
    assert_eq!(tag_json["kernel"], "3.16.0-4-amd64");
    assert_eq!(tag_json["os"], "linux");
    assert_eq!(tag_json["arch"], "amd64");
    let repo_json: Value = docker.get("/v1/repositories/ns/app/json").json().unwrap();
    assert_eq!(repo_json, tag_json);

    if let Some(root) = backend.local_root() {
        let dir = root.join("images").join(CHILD);
        assert!(!dir.join("_inprogress").exists());
        assert_eq!(std::fs::read(dir.join("layer")).unwrap(), child.layer);
        let checksums: Value =
            serde_json::from_slice(&std::fs::read(dir.join("_checksum")).unwrap()).unwrap();
        assert_eq!(checksums, json!([child.checksum()]));
        assert_eq!(
            std::fs::read_to_string(root.join("repositories/ns/app/tag_latest")).unwrap(),
            CHILD
        );
    }
}

fn image_errors(backend: Backend) {
    let registry = backend.start(&[]);
    let docker = Docker::new(&registry);
    let (base, child) = images();
    let id = &base.id;

    assert_eq!(
        error_of(docker.get("/v1/images/xyz/json")),
        err(404, "Invalid image ID")
    );
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{id}/json"))),
        err(404, "Image not found")
    );
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{id}/layer"))),
        err(404, "Image not found")
    );
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{id}/ancestry"))),
        err(404, "Image not found")
    );
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{id}/files"))),
        err(404, "Image not found")
    );

    let put_json =
        |body: &[u8]| error_of(docker.put(&format!("/v1/images/{id}/json"), body.to_vec()));
    assert_eq!(put_json(b"not json"), err(400, "Invalid JSON"));
    assert_eq!(put_json(b"[1, 2]"), err(400, "Invalid JSON"));
    assert_eq!(
        put_json(br#"{"parent": "x"}"#),
        err(400, "Missing key `id' in JSON")
    );
    assert_eq!(
        put_json(format!(r#"{{"id": "{CHILD}"}}"#).as_bytes()),
        err(400, "JSON data contains invalid id")
    );
    let orphan = format!(r#"{{"id": "{id}", "parent": "{CHILD}"}}"#);
    assert_eq!(
        put_json(orphan.as_bytes()),
        err(400, "Image depends on a non existing parent")
    );

    assert_eq!(
        error_of(docker.put(&format!("/v1/images/{id}/layer"), base.layer.clone())),
        err(404, "Image not found")
    );
    let old = docker
        .http
        .put(registry.url(&format!("/v1/images/{id}/layer")))
        .header("User-Agent", "docker/0.9.1 go/go1.2")
        .body(base.layer.clone())
        .send()
        .unwrap();
    assert_eq!(error_of(old).0, 412);

    // Half pushed: not visible yet.
    expect_true(docker.put(&format!("/v1/images/{id}/json"), base.json.clone()));
    let in_progress = err(400, "Image is being uploaded, retry later");
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{id}/json"))),
        in_progress
    );
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{id}/layer"))),
        in_progress
    );
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{id}/ancestry"))),
        in_progress
    );
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{id}/files"))),
        in_progress
    );
    // The json may be pushed again while the image is in progress.
    expect_true(docker.put(&format!("/v1/images/{id}/json"), base.json.clone()));
    expect_true(docker.put(&format!("/v1/images/{id}/layer"), base.layer.clone()));

    let no_header = docker
        .http
        .put(registry.url(&format!("/v1/images/{id}/checksum")))
        .send()
        .unwrap();
    let (status, message) = error_of(no_header);
    assert_eq!(status, 412);
    assert!(message.contains("upgrade to version 0.10"), "{message}");
    assert_eq!(
        error_of(docker.put_checksum(id, "")),
        err(400, "Missing Image's checksum")
    );
    assert_eq!(
        error_of(docker.put_checksum(CHILD, "sha256:00")),
        err(404, "Image not found")
    );
    assert_eq!(
        error_of(docker.put_checksum(id, "sha256:00")),
        err(400, "Checksum mismatch")
    );
    expect_true(docker.put_checksum(id, &base.checksum()));
    assert_eq!(
        error_of(docker.put_checksum(id, &base.checksum())),
        err(409, "Cannot set this image checksum")
    );

    // Complete: it cannot be overwritten.
    assert_eq!(
        error_of(docker.put(&format!("/v1/images/{id}/json"), base.json.clone())),
        err(409, "Image already exists")
    );
    assert_eq!(
        error_of(docker.put(&format!("/v1/images/{id}/layer"), base.layer.clone())),
        err(409, "Image already exists")
    );

    // A client that has the image gets 304.
    for what in ["json", "layer", "ancestry"] {
        let resp = docker
            .http
            .get(registry.url(&format!("/v1/images/{id}/{what}")))
            .header("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")
            .send()
            .unwrap();
        assert_eq!(resp.status(), 304, "{what}");
        assert_eq!(
            resp.headers()["last-modified"],
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert!(resp.bytes().unwrap().is_empty());
    }

    // A layer that is no tar cannot be listed.
    docker.push_image(&Image {
        id: child.id.clone(),
        json: {
            let mut doc: Value = serde_json::from_slice(&child.json).unwrap();
            doc.as_object_mut().unwrap().remove("parent");
            serde_json::to_vec(&doc).unwrap()
        },
        layer: b"definitely not a tar archive".repeat(40),
    });
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{CHILD}/files"))),
        err(400, "Layer format not supported")
    );

    // Bodies of JSON routes are bounded.
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(
        error_of(docker.put(&format!("/v1/images/{CHILD}/json"), huge)).0,
        413
    );
}

fn tag_and_repository_errors(backend: Backend) {
    let registry = backend.start(&[]);
    let docker = Docker::new(&registry);
    let (base, _) = images();

    assert_eq!(
        error_of(docker.get("/v1/repositories/ns/none/tags")),
        err(404, "Repository not found")
    );
    assert_eq!(
        error_of(docker.delete("/v1/repositories/ns/none/")),
        err(404, "Repository not found")
    );
    assert_eq!(
        error_of(docker.get("/v1/repositories/ns/none/tags/latest")),
        err(404, "Tag not found")
    );
    assert_eq!(
        error_of(docker.put("/v1/repositories/ns/app/tags/latest", format!("\"{BASE}\""))),
        err(404, "Image not found")
    );
    docker.push_image(&base);
    assert_eq!(
        error_of(docker.put("/v1/repositories/ns/app/tags/.bad", format!("\"{BASE}\""))),
        err(400, r"Invalid tag name (must match ^[\w][\w.-]{0,127}$)")
    );
    assert_eq!(
        error_of(docker.put("/v1/repositories/ns/app/tags/latest", b"{}".to_vec())),
        err(400, "Invalid data")
    );
    expect_true(docker.put("/v1/repositories/ns/app/tags/v1.0", format!("\"{BASE}\"")));
    expect_true(docker.put(
        "/v1/repositories/library/solo/tags/latest",
        format!("\"{BASE}\""),
    ));

    // One component means `library`; a trailing slash is ignored.
    let tags: Value = docker.get("/v1/repositories/solo/tags").json().unwrap();
    assert_eq!(tags, json!({"latest": BASE}));
    let tag: Value = docker
        .get("/v1/repositories/ns/app/tags/v1.0")
        .json()
        .unwrap();
    assert_eq!(tag, json!(BASE));

    // Defaults for JSON that was never written.
    let defaults = json!({"last_update": null, "docker_version": null, "docker_go_version": null,
                          "arch": "amd64", "os": "linux", "kernel": null});
    let none: Value = docker.get("/v1/repositories/ns/app/json").json().unwrap();
    assert_eq!(none, defaults);
    let none: Value = docker
        .get("/v1/repositories/ns/app/tags/nope/json")
        .json()
        .unwrap();
    assert_eq!(none, defaults);

    // Properties.
    let access =
        |d: &Docker| -> Value { d.get("/v1/repositories/ns/app/properties").json().unwrap() };
    assert_eq!(access(&docker), json!({"access": "public"}));
    expect_true(docker.put(
        "/v1/repositories/ns/app/properties",
        br#"{"access": "private"}"#.to_vec(),
    ));
    assert_eq!(access(&docker), json!({"access": "private"}));
    expect_true(docker.put(
        "/v1/repositories/ns/app/properties",
        br#"{"access": "public"}"#.to_vec(),
    ));
    assert_eq!(access(&docker), json!({"access": "public"}));
    assert_eq!(
        error_of(docker.put("/v1/repositories/ns/app/properties", b"[]".to_vec())),
        err(400, "Invalid data")
    );

    // Deleting.
    assert_eq!(
        error_of(docker.delete("/v1/repositories/ns/app/tags/nope")),
        err(404, "Tag not found: nope")
    );
    expect_true(docker.delete("/v1/repositories/ns/app/tags/v1.0"));
    assert_eq!(
        error_of(docker.get("/v1/repositories/ns/app/tags/v1.0")),
        err(404, "Tag not found")
    );
    expect_true(docker.delete("/v1/repositories/solo/tags"));
    assert_eq!(
        error_of(docker.get("/v1/repositories/solo/tags")),
        err(404, "Repository not found")
    );
    // The image stays: other repositories may use it.
    assert_eq!(docker.get(&format!("/v1/images/{BASE}/json")).status(), 200);
}

fn stand_in_index(backend: Backend) {
    let registry = backend.start(&[]);
    let docker = Docker::new(&registry);
    for path in ["/v1/users", "/v1/users/"] {
        let resp = docker.get(path);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().unwrap(), r#""OK""#);
        let resp = docker.send("POST", path, Some(br#"{"username": "me"}"#.to_vec()));
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.text().unwrap(), r#""User Created""#);
        assert_eq!(
            error_of(docker.send("POST", path, Some(b"{nope".to_vec()))),
            err(400, "Error Decoding JSON")
        );
    }
    assert_eq!(docker.put("/v1/users/me/", b"{}".to_vec()).status(), 204);
    assert_eq!(
        docker
            .put("/v1/repositories/ns/app/auth", b"".to_vec())
            .text()
            .unwrap(),
        r#""OK""#
    );

    assert_eq!(
        error_of(docker.get("/v1/repositories/ns/app/images")),
        err(404, "images not found")
    );
    assert_eq!(
        error_of(docker.put("/v1/repositories/ns/app/", b"{".to_vec())),
        err(400, "Error Decoding JSON")
    );
    assert_eq!(
        error_of(docker.put("/v1/repositories/ns/app/", b"{}".to_vec())),
        err(400, "Invalid data")
    );
    let first = json!([{"id": "a"}, {"id": "b", "checksum": "sha256:b1"}]);
    let resp = docker.put("/v1/repositories/ns/app", first.to_string());
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), r#""""#);
    let second = json!([{"id": "a", "checksum": "sha256:a2"}, {"id": "b"}, {"id": "c"}]);
    assert_eq!(
        docker
            .put("/v1/repositories/ns/app/images", second.to_string())
            .status(),
        204
    );
    let merged: Value = docker.get("/v1/repositories/ns/app/images").json().unwrap();
    assert_eq!(
        merged,
        json!([{"id": "a", "checksum": "sha256:a2"}, {"id": "b", "checksum": "sha256:b1"}, {"id": "c"}])
    );
    let resp = docker.delete("/v1/repositories/ns/app/images");
    assert_eq!(resp.status(), 204);
    assert!(resp.headers()["x-docker-token"]
        .to_str()
        .unwrap()
        .ends_with("access=delete"));
}

fn interrupted_upload_then_retry(backend: Backend) {
    let registry = backend.start(&[]);
    let docker = Docker::new(&registry);
    let (base, _) = images();
    expect_true(docker.put(&format!("/v1/images/{BASE}/json"), base.json.clone()));

    // Announce the whole layer, send half, hang up.
    let mut conn = TcpStream::connect(("127.0.0.1", registry.port)).unwrap();
    let head = format!(
        "PUT /v1/images/{BASE}/layer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        base.layer.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&base.layer[..base.layer.len() / 2]).unwrap();
    conn.flush().unwrap();
    drop(conn);
    std::thread::sleep(std::time::Duration::from_millis(300));

    // Still incomplete: not pullable, and the checksum cannot complete it.
    assert_eq!(
        error_of(docker.get(&format!("/v1/images/{BASE}/layer"))).0,
        400
    );
    assert_eq!(error_of(docker.put_checksum(BASE, &base.checksum())).0, 400);
    if let Some(root) = backend.local_root() {
        assert!(
            !root.join("images").join(BASE).join("layer").exists(),
            "no half layer"
        );
    }
    // A retry succeeds.
    expect_true(docker.put(&format!("/v1/images/{BASE}/layer"), base.layer.clone()));
    expect_true(docker.put_checksum(BASE, &base.checksum()));
    assert_eq!(
        docker
            .get(&format!("/v1/images/{BASE}/layer"))
            .bytes()
            .unwrap(),
        base.layer
    );
}

fn concurrent_pushes_of_one_image(backend: Backend) {
    let registry = backend.start(&[]);
    let (_, child) = images();
    // A bigger layer, so that the uploads overlap.
    let layer: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let image = Image {
        id: CHILD.into(),
        json: {
            let mut doc: Value = serde_json::from_slice(&child.json).unwrap();
            doc.as_object_mut().unwrap().remove("parent");
            serde_json::to_vec(&doc).unwrap()
        },
        layer,
    };
    let docker = Docker::new(&registry);
    expect_true(docker.put(&format!("/v1/images/{CHILD}/json"), image.json.clone()));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let d = Docker::new(&registry);
                let status = d
                    .put(&format!("/v1/images/{CHILD}/layer"), image.layer.clone())
                    .status();
                assert!(status == 200 || status == 409, "{status}");
                let status = d.put_checksum(CHILD, &image.checksum()).status();
                assert!(status == 200 || status == 409, "{status}");
            });
        }
    });
    let resp = docker.get(&format!("/v1/images/{CHILD}/layer"));
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().unwrap() == image.layer, "one whole layer");
    let json = docker.get(&format!("/v1/images/{CHILD}/json"));
    assert_eq!(
        json.headers()["x-docker-checksum-payload"],
        image.checksum().as_str()
    );
}

fn names_with_special_characters(backend: Backend) {
    let registry = backend.start(&[]);
    let docker = Docker::new(&registry);
    let (base, _) = images();
    docker.push_image(&base);
    for (url_name, folder) in [
        ("abc%25%24_-test", "library/abc%2525%2524_-test"),
        ("ns/with%20space%2Bplus", "ns/with%2Bspace%252Bplus"),
    ] {
        expect_true(docker.put(
            &format!("/v1/repositories/{url_name}/tags/latest"),
            format!("\"{BASE}\""),
        ));
        let tags: Value = docker
            .get(&format!("/v1/repositories/{url_name}/tags"))
            .json()
            .unwrap();
        assert_eq!(tags, json!({"latest": BASE}));
        if let Some(root) = backend.local_root() {
            let dir = root.join("repositories").join(folder);
            assert!(
                dir.join("tag_latest").is_file(),
                "{} missing",
                dir.display()
            );
        }
    }
    // Nothing a client sends leaves the storage root.
    for evil in [
        "%2E%2E/%2E%2E",
        "..%2F..%2Fetc/x",
        "%2Fabs/x",
        "a%5Cb/x",
        "ns/%00",
    ] {
        let resp = docker.put(
            &format!("/v1/repositories/{evil}/tags/latest"),
            format!("\"{BASE}\""),
        );
        assert!(
            resp.status() == 200 || resp.status() == 404 || resp.status() == 400,
            "{evil}: {}",
            resp.status()
        );
    }
    if let Some(root) = backend.local_root() {
        let outside: Vec<PathBuf> = walk(root.parent().unwrap(), 1)
            .into_iter()
            .filter(|p| !p.starts_with(root))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("tag_"))
            })
            .collect();
        assert!(outside.is_empty(), "{outside:?}");
        for path in walk(root, 8) {
            assert!(path.starts_with(root));
        }
    }
}

fn walk(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path, depth - 1));
            }
            out.push(path);
        }
    }
    out
}

for_each_backend!(
    push_and_pull_like_docker,
    image_errors,
    tag_and_repository_errors,
    stand_in_index,
    interrupted_upload_then_retry,
    concurrent_pushes_of_one_image,
    names_with_special_characters,
);

// --- Settings that only make sense for one backend -----------------------------

#[test]
fn unknown_routes_are_json_404s() {
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let resp = common::client()
        .get(registry.url("/v0/nothing"))
        .send()
        .unwrap();
    assert_eq!(error_of(resp).0, 404);
}

#[test]
fn raw_socket_answers_keep_alive() {
    // A sanity check of the HTTP framing of a streamed layer: the length we
    // announce is the length we send.
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let docker = Docker::new(&registry);
    let (base, _) = images();
    docker.push_image(&base);
    let mut conn = TcpStream::connect(("127.0.0.1", registry.port)).unwrap();
    let req =
        format!("GET /v1/images/{BASE}/layer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&raw[split..], &base.layer[..]);
}

#[test]
fn storage_redirect_sends_clients_to_the_bucket() {
    let Some(backend) = Backend::s3() else { return };
    let registry = backend.start(&[("STORAGE_REDIRECT", "true")]);
    let docker = Docker::new(&registry);
    let (base, _) = images();
    docker.push_image(&base);
    let resp = docker.get(&format!("/v1/images/{BASE}/layer"));
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature"), "{location}");
    let fetched = common::client().get(&location).send().unwrap();
    assert_eq!(fetched.status(), 200, "{location}");
    assert_eq!(fetched.bytes().unwrap(), base.layer);
}
