//! A kill -9 of the registry in the middle of a chunked upload. After a
//! restart on the same storage the upload either resumes from an offset
//! the registry acknowledged (or the one the interrupted chunk would have
//! reached, had its answer been lost) or is unknown; it then completes
//! with the right digest, and no blob that was not completed is ever
//! served. A few iterations on each storage, each killed at a random
//! point of a slow PATCH.
//!
//! Then kill -9 during a stream of deletes (v2 tags, v1 repositories): a
//! tag listed after the restart always pulls, a repository is whole or
//! gone where the storage can rename (local), and what a cut leaves goes
//! with the next delete.

mod common;
mod v2_support;

#[path = "storage_support/redis_server.rs"]
mod redis_server;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;

use v2_support::*;

const CHUNK: usize = 64 * 1024;
const SLOW: usize = 1024 * 1024;
const ITERATIONS: usize = 3;

/// A body that trickles out: 16 KiB every 5 ms, so that the kill lands
/// while the request is in flight.
struct Trickle {
    data: Vec<u8>,
    at: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(5));
        let n = buf.len().min(16 * 1024).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn patch(v2: &V2, location: &str, data: &[u8], from: usize) -> reqwest::blocking::Response {
    let to = from + data.len() - 1;
    v2.send(
        v2.request("PATCH", location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{from}-{to}"))
            .header("content-length", data.len().to_string())
            .body(data.to_vec()),
    )
}

fn assert_not_served(v2: &V2, name: &str, digests: &[String], when: &str) {
    for digest in digests {
        let resp = v2.head(&format!("/v2/{name}/blobs/{digest}"));
        assert_eq!(resp.status(), 404, "{when}: {digest} is served");
    }
}

fn kill_mid_upload(backend: Backend) {
    let mut rng = rand::thread_rng();
    for iteration in 0..ITERATIONS {
        let name = format!("crash/it{iteration}");
        let chunks = rng.gen_range(2..5);
        let total = chunks * CHUNK + SLOW + 1000;
        let data = unique_bytes(&format!("crash {iteration}"), total);
        let digest = sha256(&data);

        let registry = backend.start(&[]);
        let v2 = V2::new(&registry);
        let mut location = v2.start_upload(&name);
        let mut acknowledged = vec![0usize];
        for i in 0..chunks {
            let from = i * CHUNK;
            let resp = patch(&v2, &location, &data[from..from + CHUNK], from);
            assert_eq!(resp.status(), 202, "chunk {i}");
            assert_eq!(
                header(&resp, "range"),
                Some(format!("0-{}", from + CHUNK - 1))
            );
            location = header(&resp, "location").unwrap();
            acknowledged.push(from + CHUNK);
        }
        let offset = chunks * CHUNK;
        // Had the slow chunk been stored whole, only its answer lost.
        let whole = offset + SLOW;

        // The slow chunk, killed at a random point of its transfer.
        let url = v2.url(&location);
        let slow = data[offset..whole].to_vec();
        let sender = std::thread::spawn(move || {
            let body = reqwest::blocking::Body::sized(Trickle { data: slow, at: 0 }, SLOW as u64);
            common::client()
                .patch(url)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{}", whole - 1))
                .body(body)
                .send()
                .map(|r| r.status().as_u16())
        });
        // The whole chunk takes some 320 ms to send.
        let delay = Duration::from_millis(rng.gen_range(10..350));
        let started = Instant::now();
        std::thread::sleep(delay);
        let killed = Command::new("kill")
            .args(["-9", &registry.pid().to_string()])
            .status()
            .expect("kill -9");
        assert!(killed.success());
        let answer = sender.join().unwrap();
        let path = path_of(&location);
        drop(registry);

        let registry = backend.start(&[]);
        let v2 = V2::new(&registry);
        let partial = [
            digest.clone(),
            sha256(&data[..offset]),
            sha256(&data[..whole]),
        ];
        assert_not_served(&v2, &name, &partial, "after the kill");

        let resp = v2.get(&path);
        let status = resp.status().as_u16();
        let resume_at = match status {
            204 => {
                let range = header(&resp, "range").expect("Range of the status");
                let end: usize = range
                    .strip_prefix("0-")
                    .and_then(|e| e.parse().ok())
                    .unwrap_or_else(|| panic!("Range {range:?}"));
                // An empty upload may say 0-0 (distribution does).
                let at = if end == 0 && !acknowledged.contains(&1) {
                    0
                } else {
                    end + 1
                };
                assert!(
                    acknowledged.contains(&at) || at == whole,
                    "iteration {iteration}, killed after {:?} (answer {answer:?}): resumes at \
                     {at}, acknowledged {acknowledged:?} or {whole}",
                    started.elapsed()
                );
                location = header(&resp, "location").unwrap_or(path.clone());
                Some(at)
            }
            404 => {
                let codes = error_codes_of(&resp.bytes().unwrap(), "status after the kill");
                assert!(
                    codes.iter().any(|c| c == "BLOB_UPLOAD_UNKNOWN"),
                    "{codes:?}"
                );
                None
            }
            other => panic!("status of the upload after the kill: {other}"),
        };
        if let Ok(202) = answer {
            assert_eq!(resume_at, Some(whole), "an acknowledged chunk was lost");
        }

        let from = match resume_at {
            Some(at) => at,
            None => {
                location = v2.start_upload(&name);
                0
            }
        };
        if from < data.len() - 1 {
            let resp = patch(&v2, &location, &data[from..data.len() - 1], from);
            assert_eq!(resp.status(), 202, "resume at {from}");
            location = header(&resp, "location").unwrap();
        }
        assert_not_served(&v2, &name, &partial, "before the closing PUT");
        let resp = v2.send(
            v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
                .header("content-range", format!("{}-{}", total - 1, total - 1))
                .body(data[total - 1..].to_vec()),
        );
        assert_eq!(resp.status(), 201, "complete after resuming at {from}");
        let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().unwrap() == data, "the completed blob is whole");
        assert_not_served(&v2, &name, &partial[1..], "after completion");
    }
}

mod local {
    #[test]
    fn kill_mid_upload() {
        super::kill_mid_upload(super::Backend::local());
    }
}

mod s3 {
    #[test]
    fn kill_mid_upload() {
        if let Some(backend) = super::Backend::s3() {
            super::kill_mid_upload(backend);
        }
    }
}

mod swift {
    #[test]
    fn kill_mid_upload() {
        if let Some(backend) = super::Backend::swift() {
            super::kill_mid_upload(backend);
        }
    }
}

// --- deletes cut short --------------------------------------------------------

/// Tags each pushed `versions` times (a history entry each, so that a
/// delete has a folder of some size to remove): returns the tags.
fn push_tags(v2: &V2, name: &str, tags: usize, versions: usize) -> Vec<String> {
    let blobs = ImageBlobs::new(name, "amd64");
    blobs.push(v2, name);
    let mut manifest: serde_json::Value = serde_json::from_slice(&blobs.oci_manifest()).unwrap();
    let mut pushed = Vec::new();
    for t in 0..tags {
        let tag = format!("t{t:02}");
        for version in 0..versions {
            manifest["annotations"] = serde_json::json!({ "version": format!("{tag}.{version}") });
            v2.push_manifest(name, &tag, OCI_MANIFEST, &manifest_bytes(&manifest));
        }
        pushed.push(tag);
    }
    pushed
}

fn listed_tags(v2: &V2, name: &str) -> Vec<String> {
    let resp = v2.get(&format!("/v2/{name}/tags/list"));
    assert_eq!(resp.status(), 200, "tags/list of {name}");
    let body: serde_json::Value = resp.json().unwrap();
    body["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What a listing promises: every tag listed pulls, every other one is
/// unknown.
fn assert_listed_tags_pull(v2: &V2, name: &str, all: &[String], when: &str) -> Vec<String> {
    let listed = listed_tags(v2, name);
    for tag in all {
        let status = v2
            .get_manifest(&format!("/v2/{name}/manifests/{tag}"))
            .status()
            .as_u16();
        let expected = if listed.contains(tag) { 200 } else { 404 };
        assert_eq!(
            status, expected,
            "{when}: {name}:{tag} (listed: {listed:?})"
        );
    }
    listed
}

/// The state a delete cut short leaves (the tag's current link gone, its
/// history not yet): the tag is neither listed nor served, and a push of
/// the same tag makes it whole again.
fn a_cut_delete_leaves_no_tag_listed(backend: Backend, env: &[(&str, &str)]) {
    let registry = backend.start(env);
    let v2 = V2::new(&registry);
    let name = format!("cut/{}", rand_suffix());
    let tags = push_tags(&v2, &name, 3, 2);
    backend.remove_stored(&format!(
        "{V2_ROOT}/repositories/{name}/_manifests/tags/t01/current/link"
    ));
    assert_eq!(
        assert_listed_tags_pull(&v2, &name, &tags, "cut"),
        ["t00", "t02"]
    );
    let resp = v2.delete(&format!("/v2/{name}/manifests/t01"));
    v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", "delete of a cut tag");
    push_tags(&v2, &name, 2, 1);
    assert_eq!(
        assert_listed_tags_pull(&v2, &name, &tags, "pushed again"),
        tags
    );
}

const DELETE_ROUNDS: usize = 4;

/// The bound on the rounds' time: a hang, not a slow machine, should fail
/// them. On Swift under CI, two test binaries at a time, they took 146 s.
const ROUNDS_WITHIN: Duration = Duration::from_secs(360);

/// Kills the registry (kill -9) during the request after the `k`th a
/// client has seen answered (`done`), at a random point of it: a delay up
/// to the time the last one took (`last_us`, microseconds).
fn kill_into_the_next(
    registry: &common::Registry,
    done: &std::sync::atomic::AtomicUsize,
    last_us: &std::sync::atomic::AtomicU64,
    k: usize,
    rng: &mut impl Rng,
) {
    use std::sync::atomic::Ordering;
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) < k && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let span = last_us.load(Ordering::SeqCst).max(500);
    std::thread::sleep(Duration::from_micros(rng.gen_range(0..span)));
    let killed = Command::new("kill")
        .args(["-9", &registry.pid().to_string()])
        .status()
        .expect("kill -9");
    assert!(killed.success());
}

/// A kill -9 at a random moment of a stream of tag deletes: after a
/// restart on the same storage every listed tag pulls, no acknowledged
/// delete is undone, and the rest delete as usual.
fn kill_mid_deletes(backend: Backend, env: &[(&str, &str)]) {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut rng = rand::thread_rng();
    let started = Instant::now();
    for round in 0..DELETE_ROUNDS {
        let name = format!("deletes/r{round}-{}", rand_suffix());
        let registry = backend.start(env);
        let v2 = V2::new(&registry);
        let tags = push_tags(&v2, &name, 5, 20);

        let (done, last) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
        let deleter = {
            let (done, last, tags) = (done.clone(), last.clone(), tags.clone());
            let base = registry.url(&format!("/v2/{name}/manifests/"));
            std::thread::spawn(move || {
                let http = common::client();
                let mut acknowledged = Vec::new();
                for tag in tags {
                    let sent = Instant::now();
                    match http.delete(format!("{base}{tag}")).send() {
                        Ok(resp) if resp.status() == 202 => acknowledged.push(tag),
                        Ok(resp) => panic!("DELETE {tag}: {}", resp.status()),
                        Err(_) => break,
                    }
                    last.store(sent.elapsed().as_micros() as u64, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                }
                acknowledged
            })
        };
        let k = rng.gen_range(0..tags.len() - 1);
        kill_into_the_next(&registry, &done, &last, k, &mut rng);
        let acknowledged = deleter.join().unwrap();
        drop(registry);

        let registry = backend.start(env);
        let v2 = V2::new(&registry);
        let when = format!("round {round}, killed after {k} deletes");
        let listed = assert_listed_tags_pull(&v2, &name, &tags, &when);
        for tag in &acknowledged {
            assert!(!listed.contains(tag), "{when}: deleted {tag} listed again");
        }
        for tag in &listed {
            let resp = v2.delete(&format!("/v2/{name}/manifests/{tag}"));
            assert_eq!(resp.status(), 202, "{when}: delete {tag} after the restart");
        }
        assert!(listed_tags(&v2, &name).is_empty(), "{when}");
        // A tag whose delete was cut pushes and pulls again.
        push_tags(&v2, &name, 1, 1);
        assert_eq!(assert_listed_tags_pull(&v2, &name, &tags, &when), ["t00"]);
    }
    assert!(
        started.elapsed() < ROUNDS_WITHIN,
        "took {:?}",
        started.elapsed()
    );
}

mod deletes_local {
    #[test]
    fn a_cut_delete_leaves_no_tag_listed() {
        super::a_cut_delete_leaves_no_tag_listed(super::Backend::local(), &[]);
    }

    #[test]
    fn kill_mid_deletes() {
        super::kill_mid_deletes(super::Backend::local(), &[]);
    }
}

mod deletes_s3 {
    #[test]
    fn a_cut_delete_leaves_no_tag_listed() {
        if let Some(backend) = super::Backend::s3() {
            super::a_cut_delete_leaves_no_tag_listed(backend, &[]);
        }
    }

    #[test]
    fn kill_mid_deletes() {
        if let Some(backend) = super::Backend::s3() {
            super::kill_mid_deletes(backend, &[]);
        }
    }
}

mod deletes_swift {
    #[test]
    fn a_cut_delete_leaves_no_tag_listed() {
        if let Some(backend) = super::Backend::swift() {
            super::a_cut_delete_leaves_no_tag_listed(backend, &[]);
        }
    }

    #[test]
    fn kill_mid_deletes() {
        if let Some(backend) = super::Backend::swift() {
            super::kill_mid_deletes(backend, &[]);
        }
    }
}

/// S3 behind the Redis cache of small files (tag histories are cached).
mod deletes_cached_s3 {
    fn env() -> Option<Vec<(&'static str, String)>> {
        Some(super::redis_server::shared()?.env())
    }

    #[test]
    fn a_cut_delete_leaves_no_tag_listed() {
        let (Some(backend), Some(env)) = (super::Backend::s3(), env()) else {
            return;
        };
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        super::a_cut_delete_leaves_no_tag_listed(backend, &env);
    }

    #[test]
    fn kill_mid_deletes() {
        let (Some(backend), Some(env)) = (super::Backend::s3(), env()) else {
            return;
        };
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        super::kill_mid_deletes(backend, &env);
    }
}

// --- v1 repository deletes cut short ------------------------------------------

const V1_TAGS: usize = 8;

/// An image, then `repositories` v1 repositories of [`V1_TAGS`] tags each
/// pointing at it; returns the repositories' paths.
fn push_v1_repositories(registry: &common::Registry, ns: &str, repositories: usize) -> Vec<String> {
    let http = common::client();
    let ok = |resp: reqwest::blocking::Response, what: &str| {
        assert!(resp.status().is_success(), "{what}: {}", resp.status());
    };
    let id = hex_of(&sha256(&unique_bytes(ns, 32))).to_owned();
    let doc = serde_json::to_vec(&serde_json::json!({ "id": id })).unwrap();
    let layer = unique_bytes(&id, 2000);
    let url = |p: &str| registry.url(p);
    ok(
        http.put(url(&format!("/v1/images/{id}/json")))
            .body(doc.clone())
            .send()
            .unwrap(),
        "json",
    );
    ok(
        http.put(url(&format!("/v1/images/{id}/layer")))
            .body(layer.clone())
            .send()
            .unwrap(),
        "layer",
    );
    ok(
        http.put(url(&format!("/v1/images/{id}/checksum")))
            .header(
                "X-Docker-Checksum-Payload",
                common::v1_checksum(&doc, &layer),
            )
            .send()
            .unwrap(),
        "checksum",
    );
    let mut paths = Vec::new();
    for r in 0..repositories {
        let path = format!("{ns}/r{r:02}");
        let images = format!("[{{\"id\": \"{id}\"}}]");
        ok(
            http.put(url(&format!("/v1/repositories/{path}/")))
                .body(images)
                .send()
                .unwrap(),
            "repository",
        );
        for t in 0..V1_TAGS {
            ok(
                http.put(url(&format!("/v1/repositories/{path}/tags/t{t}")))
                    .body(format!("\"{id}\""))
                    .send()
                    .unwrap(),
                "tag",
            );
        }
        paths.push(path);
    }
    paths
}

/// The v1 tags a repository lists (`None`: the repository is unknown),
/// each checked to resolve.
fn v1_tags(registry: &common::Registry, path: &str, when: &str) -> Option<Vec<String>> {
    let http = common::client();
    let resp = http
        .get(registry.url(&format!("/v1/repositories/{path}/tags")))
        .send()
        .unwrap();
    if resp.status() == 404 {
        return None;
    }
    assert_eq!(resp.status(), 200, "{when}: tags of {path}");
    let tags: serde_json::Map<String, serde_json::Value> = resp.json().unwrap();
    for tag in tags.keys() {
        let resp = http
            .get(registry.url(&format!("/v1/repositories/{path}/tags/{tag}")))
            .send()
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{when}: {path}:{tag} listed, not served"
        );
    }
    let images = http
        .get(registry.url(&format!("/v1/repositories/{path}/images")))
        .send()
        .unwrap();
    if !tags.is_empty() {
        assert_eq!(images.status(), 200, "{when}: images of {path}");
    }
    Some(tags.keys().cloned().collect())
}

/// A kill -9 at a random moment of a stream of `DELETE
/// /v1/repositories/...`: on local disk each repository is then whole or
/// gone; on S3 (no rename) each tag left is whole and served, with the
/// repository's image list; a delete again finishes it.
fn kill_mid_repository_deletes(backend: Backend) {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut rng = rand::thread_rng();
    let started = Instant::now();
    for round in 0..DELETE_ROUNDS {
        let ns = format!("v1del{round}{}", rand_suffix().replace('-', ""));
        let registry = backend.start(&[]);
        let paths = push_v1_repositories(&registry, &ns, 8);

        let (done, last) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
        let deleter = {
            let (done, last, paths) = (done.clone(), last.clone(), paths.clone());
            let base = registry.url("/v1/repositories/");
            std::thread::spawn(move || {
                let http = common::client();
                let mut acknowledged = Vec::new();
                for path in paths {
                    let sent = Instant::now();
                    match http.delete(format!("{base}{path}/")).send() {
                        Ok(resp) if resp.status() == 200 => acknowledged.push(path),
                        Ok(resp) => panic!("DELETE {path}: {}", resp.status()),
                        Err(_) => break,
                    }
                    last.store(sent.elapsed().as_micros() as u64, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                }
                acknowledged
            })
        };
        let k = rng.gen_range(0..paths.len() - 1);
        kill_into_the_next(&registry, &done, &last, k, &mut rng);
        let acknowledged = deleter.join().unwrap();
        drop(registry);

        let registry = backend.start(&[]);
        let when = format!("round {round}, killed after {k} deletes");
        let all: Vec<String> = (0..V1_TAGS).map(|t| format!("t{t}")).collect();
        for path in &paths {
            let tags = v1_tags(&registry, path, &when);
            if acknowledged.contains(path) {
                assert_eq!(tags, None, "{when}: deleted {path} is back");
                continue;
            }
            if !backend.is_s3() {
                assert!(
                    tags.as_ref().is_none_or(|t| *t == all),
                    "{when}: {path} neither whole nor gone: {tags:?}"
                );
            }
            if tags.is_some() {
                let resp = common::client()
                    .delete(registry.url(&format!("/v1/repositories/{path}/")))
                    .send()
                    .unwrap();
                assert_eq!(resp.status(), 200, "{when}: delete {path} again");
                assert_eq!(v1_tags(&registry, path, &when), None, "{when}");
            }
        }
    }
    assert!(
        started.elapsed() < ROUNDS_WITHIN,
        "took {:?}",
        started.elapsed()
    );
}

mod v1_deletes_local {
    #[test]
    fn kill_mid_repository_deletes() {
        super::kill_mid_repository_deletes(super::Backend::local());
    }
}

mod v1_deletes_s3 {
    #[test]
    fn kill_mid_repository_deletes() {
        if let Some(backend) = super::Backend::s3() {
            super::kill_mid_repository_deletes(backend);
        }
    }
}

mod v1_deletes_swift {
    #[test]
    fn kill_mid_repository_deletes() {
        if let Some(backend) = super::Backend::swift() {
            super::kill_mid_repository_deletes(backend);
        }
    }
}
