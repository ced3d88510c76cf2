//! Races and hostile names on the v1 API through the real binary (issue
//! 11): concurrent pushes of a repository's image list, a slow layer upload
//! racing the image's completion, and names no storage path can hold.

mod common;
#[path = "storage_support/s3_server.rs"]
#[allow(dead_code)]
mod s3_server;

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use common::Registry;

fn local(dir: &std::path::Path) -> Registry {
    Registry::start(&[
        ("STORAGE_PATH", dir.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "dev"),
    ])
}

/// `threads` clients at once, each putting a list of one id of its own,
/// `rounds` times on fresh repositories; the ids missing from the lists
/// afterwards. `targets` are the registries the clients are spread over.
fn lost_ids(targets: &[&Registry], threads: usize, rounds: usize) -> usize {
    let mut lost = 0;
    for round in 0..rounds {
        let repo = format!("race/r{round}");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let url = targets[i % targets.len()].url(&if i % 2 == 0 {
                    format!("/v1/repositories/{repo}/images")
                } else {
                    format!("/v1/repositories/{repo}/")
                });
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let body = json!([{"id": format!("{i:016x}")}]).to_string();
                    let http = common::client();
                    barrier.wait();
                    let status = http.put(url).body(body).send().unwrap().status();
                    assert!(status.is_success(), "{status}");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let list: Value = common::client()
            .get(targets[0].url(&format!("/v1/repositories/{repo}/images")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let ids: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        lost += (0..threads)
            .filter(|i| !ids.contains(&format!("{i:016x}").as_str()))
            .count();
    }
    lost
}

#[test]
fn concurrent_image_lists_lose_no_id_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let registry = local(dir.path());
    let lost = lost_ids(&[&registry], 8, 20);
    assert_eq!(lost, 0, "{lost} of 160 ids lost");
}

#[test]
fn concurrent_image_lists_lose_no_id_across_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let a = local(dir.path());
    let b = local(dir.path());
    let lost = lost_ids(&[&a, &b], 8, 20);
    assert_eq!(lost, 0, "{lost} of 160 ids lost");
}

/// Two registry processes on one S3 bucket: the lock is per process there,
/// the conditional writes (`put_if`) keep every id.
#[test]
fn concurrent_image_lists_lose_no_id_across_two_processes_on_s3() {
    let Some(server) = s3_server::server() else {
        return;
    };
    let bucket = format!("races-{}", std::process::id());
    server.create_bucket(&bucket);
    let env = server.registry_env(&bucket);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = Registry::start(&env);
    let b = Registry::start(&env);
    let lost = lost_ids(&[&a, &b], 8, 10);
    assert_eq!(lost, 0, "{lost} of 80 ids lost");
}

/// A body that sends its first part at once and the rest only when told.
struct Held {
    first: Vec<u8>,
    rest: Vec<u8>,
    go: mpsc::Receiver<()>,
    sent_first: bool,
    released: bool,
}

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.sent_first {
            self.sent_first = true;
            let n = self.first.len().min(buf.len());
            let rest = self.first.split_off(n);
            let out = std::mem::replace(&mut self.first, rest);
            buf[..n].copy_from_slice(&out);
            if !self.first.is_empty() {
                self.sent_first = false;
            }
            return Ok(n);
        }
        if !self.rest.is_empty() {
            if !self.released {
                self.released = true;
                let _ = self.go.recv_timeout(Duration::from_secs(10));
            }
            let n = self.rest.len().min(buf.len());
            let tail = self.rest.split_off(n);
            let out = std::mem::replace(&mut self.rest, tail);
            buf[..n].copy_from_slice(&out);
            return Ok(n);
        }
        Ok(0)
    }
}

#[test]
fn a_slow_layer_cannot_replace_a_completed_image() {
    let dir = tempfile::tempdir().unwrap();
    let registry = local(dir.path());
    let http = common::client();
    let id = "0123456789abcdef";
    let image_json = json!({"id": id}).to_string();
    let url = |p: &str| registry.url(&format!("/v1/images/{id}/{p}"));
    assert!(http
        .put(url("json"))
        .body(image_json.clone())
        .send()
        .unwrap()
        .status()
        .is_success());
    let layer_a = vec![b'A'; 100_000];
    assert!(http
        .put(url("layer"))
        .body(layer_a.clone())
        .send()
        .unwrap()
        .status()
        .is_success());
    let checksum_a = common::v1_checksum(image_json.as_bytes(), &layer_a);

    let (go, wait) = mpsc::channel();
    let body = Held {
        first: vec![b'B'; 50_000],
        rest: vec![b'B'; 80_000],
        go: wait,
        sent_first: false,
        released: false,
    };
    let layer_url = url("layer");
    let slow = std::thread::spawn(move || {
        common::client()
            .put(layer_url)
            .body(reqwest::blocking::Body::new(body))
            .send()
            .unwrap()
            .status()
    });
    std::thread::sleep(Duration::from_millis(500));
    let status = http
        .put(url("checksum"))
        .header("X-Docker-Checksum-Payload", &checksum_a)
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    go.send(()).unwrap();
    let slow = slow.join().unwrap();
    assert_eq!(slow, 409, "the slow layer replaced a complete image");

    let layer = http.get(url("layer")).send().unwrap().bytes().unwrap();
    assert!(layer == layer_a, "GET layer serves another layer");
    let resp = http.get(url("json")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["X-Docker-Checksum-Payload"]
            .to_str()
            .unwrap(),
        checksum_a
    );
    assert_eq!(resp.headers()["X-Docker-Size"].to_str().unwrap(), "100000");
    let left: Vec<String> = std::fs::read_dir(dir.path().join("images").join(id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".registry-v1-tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// Every repository route, as `(method, suffix after the name)`; not
/// `PUT .../auth`, which reads no name (always `200 "OK"`).
const REPOSITORY_ROUTES: &[(&str, &str)] = &[
    ("GET", "/tags"),
    ("DELETE", "/tags"),
    ("GET", "/tags/latest"),
    ("PUT", "/tags/latest"),
    ("DELETE", "/tags/latest"),
    ("GET", "/tags/latest/json"),
    ("GET", "/json"),
    ("GET", "/properties"),
    ("PUT", "/properties"),
    ("GET", "/images"),
    ("PUT", "/images"),
    ("DELETE", "/images"),
    ("PUT", "/"),
    ("DELETE", "/"),
];

fn send(registry: &Registry, method: &str, path: &str) -> reqwest::blocking::Response {
    common::client()
        .request(method.parse().unwrap(), registry.url(path))
        .header("X-Docker-Token", "true")
        .body("[]")
        .send()
        .unwrap()
}

fn error_of(resp: reqwest::blocking::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_name_too_long_to_store_is_a_400_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let registry = local(dir.path());
    let long = "a".repeat(10_000);
    for (method, suffix) in REPOSITORY_ROUTES {
        for name in [format!("ns/{long}"), format!("{long}/app"), long.clone()] {
            let (status, error) = error_of(send(
                &registry,
                method,
                &format!("/v1/repositories/{name}{suffix}"),
            ));
            assert_eq!(status, 400, "{method} {suffix}: {error}");
            assert!(
                error.starts_with("Invalid repository name: ") && error.contains("255 bytes"),
                "{method} {suffix}: {error}"
            );
        }
    }
    let log = registry.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2_000, "a log line of {longest} bytes");
    assert!(!log.contains(&"a".repeat(1_000)), "the long name is logged");
}

#[test]
fn names_that_would_break_the_token_header_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = local(dir.path());
    for name in [
        "ns/x%22,access=delete,y=%22",
        "ns/x%0D%0AX-Evil:%201",
        "ns/x%0A",
        "ns/a,b",
    ] {
        for (method, suffix) in [("PUT", "/"), ("GET", "/images"), ("PUT", "/images")] {
            let resp = send(
                &registry,
                method,
                &format!("/v1/repositories/{name}{suffix}"),
            );
            assert!(resp.headers().get("X-Docker-Token").is_none(), "{name}");
            assert!(resp.headers().get("X-Evil").is_none(), "{name}");
            let (status, error) = error_of(resp);
            assert_eq!(status, 400, "{method} {name}{suffix}: {error}");
            assert!(error.starts_with("Invalid repository name: "), "{error}");
        }
    }
    // A plain name still gets its token.
    let resp = send(&registry, "PUT", "/v1/repositories/ns/plain/");
    assert!(resp.status().is_success());
    let token = resp.headers()["X-Docker-Token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(token.contains(r#"repository="ns/plain""#), "{token}");
}

#[test]
fn names_that_are_no_utf8_are_a_400_not_one_repository() {
    let dir = tempfile::tempdir().unwrap();
    let registry = local(dir.path());
    for name in ["ns/%ff", "ns/%fe", "%ff/app", "ns/a%c3"] {
        for (method, suffix) in [("PUT", "/"), ("GET", "/tags"), ("PUT", "/tags/latest")] {
            let (status, error) = error_of(send(
                &registry,
                method,
                &format!("/v1/repositories/{name}{suffix}"),
            ));
            assert_eq!(status, 400, "{method} {name}{suffix}: {error}");
            assert!(error.contains("UTF-8"), "{error}");
        }
    }
    let repositories = dir.path().join("repositories");
    let stored: Vec<_> = std::fs::read_dir(&repositories)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "{stored:?}");
}

/// The v2 uploads do not repeat failure 1: an upload's bytes become a blob
/// only under their own verified digest, and a blob already stored keeps
/// its bytes (and file) when an upload of the same content completes.
#[test]
fn a_v2_upload_never_replaces_a_stored_blob() {
    let dir = tempfile::tempdir().unwrap();
    let registry = local(dir.path());
    let http = common::client();
    let a = vec![b'A'; 70_000];
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&a)));
    let hex_part = &digest["sha256:".len()..];
    let resp = http
        .post(registry.url(&format!("/v2/ns/app/blobs/uploads/?digest={digest}")))
        .body(a.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let file = dir
        .path()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex_part[..2])
        .join(hex_part)
        .join("data");
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();

    let upload = |bytes: Vec<u8>| {
        let resp = http
            .post(registry.url("/v2/ns/app/blobs/uploads/"))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 202);
        let location = resp.headers()["Location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            registry.url(&location)
        } else {
            location
        };
        let resp = http
            .patch(&location)
            .header("Content-Type", "application/octet-stream")
            .body(bytes)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 202);
        let sep = if location.contains('?') { '&' } else { '?' };
        http.put(format!("{location}{sep}digest={digest}"))
            .send()
            .unwrap()
            .status()
    };
    // Other bytes under A's digest: refused, A stays.
    assert_eq!(upload(vec![b'B'; 90_000]), 400);
    // The same bytes again: accepted, the stored file untouched.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(upload(a.clone()), 201);
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        before
    );
    let served = http
        .get(registry.url(&format!("/v2/ns/app/blobs/{digest}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(served == a, "another blob is served");
}
