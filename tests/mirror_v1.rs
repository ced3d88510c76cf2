//! The v1 pull-through cache (issue 27): the old `mirroring` section in
//! front of a source that speaks only v1. The source is the real old
//! Python registry (the legacy peer, `.ci/install-legacy-peer.sh`), which
//! these tests start themselves; registry-v1 in front of it with
//! `MIRROR_SOURCE`, pulled from as docker 1.x pulls (tags, ancestry, then
//! each image's json and layer). Faults the peer cannot make on purpose (a
//! layer cut off mid-body, a layer that is not what its checksum says)
//! come from a source of the test's own.

mod common;
mod v2_support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use v2_support::*;

const BASE: &str = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";
const CHILD: &str = "46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457";

/// A v1 image as a client pushes it.
#[derive(Clone)]
struct V1Image {
    id: String,
    json: Vec<u8>,
    layer: Vec<u8>,
}

impl V1Image {
    fn upload(&self) -> common::V1Upload<'_> {
        common::V1Upload {
            id: &self.id,
            json: &self.json,
            layer: &self.layer,
        }
    }
}

fn image(id: &str, parent: Option<&str>, json: Value, layer: Vec<u8>) -> V1Image {
    V1Image {
        id: id.to_owned(),
        json: common::v1_json(json, id, parent),
        layer,
    }
}

fn random_id() -> String {
    hex_of(&sha256(&unique_bytes("id", 32))).to_owned()
}

/// The two fixtures (real tars, so the v2 bridge can serve them).
fn chain() -> Vec<V1Image> {
    let (base_json, base_tar) = common::v1_fixture(BASE);
    let (child_json, child_tar) = common::v1_fixture(CHILD);
    vec![
        image(BASE, None, base_json, base_tar),
        image(CHILD, Some(BASE), child_json, child_tar),
    ]
}

/// The old Python registry on a free port and a folder of the test's;
/// stopped when dropped. Started as the peer's `start.sh` starts it (same
/// settings, one worker), but as this test's own child: the peer's
/// `stop.sh` stops whichever peer its one pid file names, which may be
/// another test's.
struct LegacyPeer {
    child: Option<Child>,
    port: u16,
    _run: tempfile::TempDir,
}

impl LegacyPeer {
    /// Where the peer is built (`LEGACY_PEER_ROOT`, as tests/v1_bridge.rs
    /// reads it), or `None` (skipped; under CI a failure).
    fn root() -> Option<std::path::PathBuf> {
        let root = std::path::PathBuf::from(
            std::env::var("LEGACY_PEER_ROOT").unwrap_or_else(|_| "/tmp/peers/pyreg".into()),
        );
        if root.join("venv/bin/gunicorn").exists() {
            return Some(root);
        }
        let install = ".ci/install-legacy-peer.sh";
        if std::env::var_os("CI").is_some() {
            panic!("the legacy peer is required under CI (build it with {install})");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: the legacy peer is not built (build it with {install})\n"
        );
        None
    }

    fn start(root: &std::path::Path, storage: &std::path::Path) -> LegacyPeer {
        let run = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let db = run.path().join("peer.db");
        let log = std::fs::File::create(run.path().join("peer.log")).unwrap();
        let mut command = Command::new(root.join("venv/bin/gunicorn"));
        command
            .args(["--access-logfile", "-", "--error-logfile", "-"])
            .args(["-k", "gevent", "-w", "1", "-t", "60"])
            .args(["-b", &format!("127.0.0.1:{port}")])
            .arg("docker_registry.wsgi:application")
            // toolkit.exclusive_lock writes its lock file in the cwd.
            .current_dir(run.path())
            .env("SETTINGS_FLAVOR", "dev")
            .env(
                "DOCKER_REGISTRY_CONFIG",
                root.join("src/config/config_sample.yml"),
            )
            .env("STORAGE_PATH", storage)
            .env("SEARCH_BACKEND", "sqlalchemy")
            .env(
                "SQLALCHEMY_INDEX_DATABASE",
                format!("sqlite:///{}", db.display()),
            )
            .env("PYTHONPATH", root.join("src"))
            .env("PYTHONWARNINGS", "ignore::DeprecationWarning")
            // The peer is the source, never a mirror itself.
            .env_remove("MIRROR_SOURCE")
            .env_remove("MIRROR_SOURCE_INDEX")
            .env_remove("MIRROR_TAGS_CACHE_TTL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut peer = LegacyPeer {
            child: Some(command.spawn().expect("start the legacy peer")),
            port,
            _run: run,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = common::client().get(peer.url("/_ping")).send() {
                if resp.status() == 200 {
                    return peer;
                }
            }
            if let Some(Ok(Some(status))) = peer.child.as_mut().map(Child::try_wait) {
                panic!("legacy peer exited with {status}: {}", peer.log());
            }
            assert!(
                Instant::now() < deadline,
                "legacy peer did not answer: {}",
                peer.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._run.path().join("peer.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops it (gunicorn's master takes its worker along on SIGTERM).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LegacyPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// docker 1.x's push of `images` to the v1 API at `base`.
fn push(base: &dyn Fn(&str) -> String, repo: &str, images: &[V1Image], tag: &str) {
    let uploads: Vec<_> = images.iter().map(V1Image::upload).collect();
    common::push_v1(base, repo, &uploads, tag);
}

fn get(registry: &common::Registry, path: &str) -> reqwest::blocking::Response {
    common::client().get(registry.url(path)).send().unwrap()
}

fn get_json(registry: &common::Registry, path: &str) -> Value {
    let resp = get(registry, path);
    assert_eq!(resp.status(), 200, "{path}: {}", registry.log());
    resp.json().unwrap()
}

/// docker 1.x's pull of `repo:tag`: the tag, the ancestry of the image it
/// names, then each image's json and layer, base first. Returns the
/// images, base first, as (id, json, layer).
fn pull(registry: &common::Registry, repo: &str, tag: &str) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let tags = get_json(registry, &format!("/v1/repositories/{repo}/tags"));
    let top = get_json(registry, &format!("/v1/repositories/{repo}/tags/{tag}"));
    assert_eq!(tags[tag], top, "the list and the tag agree");
    let top = top.as_str().unwrap().to_owned();
    let ancestry = get_json(registry, &format!("/v1/images/{top}/ancestry"));
    let mut images = Vec::new();
    for id in ancestry.as_array().unwrap().iter().rev() {
        let id = id.as_str().unwrap();
        let resp = get(registry, &format!("/v1/images/{id}/json"));
        assert_eq!(resp.status(), 200, "json of {id}: {}", registry.log());
        let size: u64 = header(&resp, "x-docker-size").unwrap().parse().unwrap();
        let json = resp.bytes().unwrap().to_vec();
        let resp = get(registry, &format!("/v1/images/{id}/layer"));
        assert_eq!(resp.status(), 200, "layer of {id}: {}", registry.log());
        let layer = resp.bytes().unwrap().to_vec();
        assert_eq!(layer.len() as u64, size);
        images.push((id.to_owned(), json, layer));
    }
    images
}

fn image_files(backend: &Backend, id: &str) -> Vec<String> {
    let prefix = format!("images/{id}/");
    let mut files: Vec<String> = backend
        .stored_keys()
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    files.sort();
    files
}

/// The old section as the original's sample has it, in front of the old
/// registry: a first pull fetches and stores each image (json, ancestry,
/// layer, checksum) through the steps of a push; the tag is kept for
/// `tags_cache_ttl`, then asked again and seen moved; search merges the
/// source's answers with this registry's own; today's clients pull the
/// copy over v2; with the source stopped, what was pulled is still served,
/// a tag too, and what was not is a 502 with a JSON error.
#[test]
fn a_v1_source_is_mirrored_as_the_old_mirror_did() {
    let Some(root) = LegacyPeer::root() else {
        return;
    };
    let started = Instant::now();
    let peer_store = tempfile::tempdir().unwrap();
    let mut peer = LegacyPeer::start(&root, peer_store.path());
    let chain = chain();
    let peer_url = |p: &str| peer.url(p);
    push(&peer_url, "ns/app", &chain, "latest");
    push(&peer_url, "ns/app", &chain, "stable");
    push(&peer_url, "ns/shared", &chain[..1], "latest");

    let ttl = 2;
    let store = Backend::local();
    let source = peer.url("");
    let registry = store.start(&[
        ("MIRROR_SOURCE", source.as_str()),
        ("MIRROR_TAGS_CACHE_TTL", &ttl.to_string()),
    ]);

    // The first pull goes to the source and keeps each image.
    let cached_at = Instant::now();
    let pulled = pull(&registry, "ns/app", "latest");
    assert_eq!(pulled.len(), chain.len());
    for ((id, json, layer), image) in pulled.iter().zip(&chain) {
        assert_eq!((id, json, layer), (&image.id, &image.json, &image.layer));
        assert_eq!(
            image_files(&store, id),
            ["_checksum", "_v2", "ancestry", "json", "layer"],
            "{id} stored complete"
        );
        let kept: Value = serde_json::from_slice(
            &store
                .read_stored(&format!("images/{id}/_checksum"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            kept,
            json!([common::v1_checksum(&image.json, &image.layer)])
        );
    }
    assert_eq!(
        store.read_stored("repositories/ns/app/tag_latest").unwrap(),
        chain[1].id.as_bytes()
    );

    // The stand-in index's image list comes from the source's index.
    let images = get_json(&registry, "/v1/repositories/ns/app/images");
    assert!(images.is_array(), "{images}");

    // Today's clients pull the copy over v2, as any v1 image here.
    let v2 = V2::new(&registry);
    let resp = v2.get_manifest("/v2/ns/app/manifests/latest");
    assert_eq!(resp.status(), 200, "{}", registry.log());
    let manifest: Value = resp.json().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), chain.len());
    let digest = layers[0]["digest"].as_str().unwrap();
    let resp = v2.get(&format!("/v2/ns/app/blobs/{digest}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(sha256(&resp.bytes().unwrap()), digest);

    // Search: this registry's own repositories and the source's, each once.
    push(&|p: &str| registry.url(p), "ns/shared", &chain[..1], "mine");
    push(
        &|p: &str| registry.url(p),
        "local/app",
        &chain[..1],
        "latest",
    );
    assert_eq!(
        common::search_names(&registry, ""),
        ["local/app", "ns/app", "ns/shared"]
    );
    let found = get_json(&registry, "/v1/search?q=app");
    let mut names: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["local/app", "ns/app"]);
    assert_eq!(found["num_results"], 2);
    // A repository pushed here is this registry's own: its list is not
    // the source's (the old mirror asked the source only on a 404).
    let tags = get_json(&registry, "/v1/repositories/ns/shared/tags");
    assert_eq!(tags, json!({"mine": BASE}));

    // A tag pushed here is this registry's own: the source's never
    // replaces it.
    push(&|p: &str| registry.url(p), "ns/app", &chain[..1], "stable");

    // The tag moves at the source: the copy stands for `tags_cache_ttl`,
    // then the move is seen, in the list too.
    let moved = image(
        &random_id(),
        Some(CHILD),
        common::v1_fixture(CHILD).0,
        chain[1].layer.clone(),
    );
    push(
        &peer_url,
        "ns/app",
        &[&chain[..], std::slice::from_ref(&moved)].concat(),
        "latest",
    );
    let resp = get(&registry, "/v1/repositories/ns/app/tags/latest");
    let state = header(&resp, "x-registry-cache");
    let tag: Value = resp.json().unwrap();
    if cached_at.elapsed() < Duration::from_secs(ttl) {
        assert_eq!(tag, json!(chain[1].id), "the copy stands within the ttl");
        assert_eq!(state.as_deref(), Some("hit"));
    }
    // This registry's own tag says nothing of a cache.
    let resp = get(&registry, "/v1/repositories/ns/app/tags/stable");
    assert_eq!(header(&resp, "x-registry-cache"), None);
    std::thread::sleep(Duration::from_secs(ttl).saturating_sub(cached_at.elapsed()));
    std::thread::sleep(Duration::from_millis(200));
    let resp = get(&registry, "/v1/repositories/ns/app/tags/latest");
    assert_eq!(header(&resp, "x-registry-cache").as_deref(), Some("miss"));
    assert_eq!(resp.json::<Value>().unwrap(), json!(moved.id));
    let after = pull(&registry, "ns/app", "latest");
    assert_eq!(after.last().unwrap().0, moved.id);
    assert_eq!(
        get_json(&registry, "/v1/repositories/ns/app/tags"),
        json!({"latest": moved.id, "stable": BASE})
    );
    assert_eq!(
        get_json(&registry, "/v1/repositories/ns/app/tags/stable"),
        json!(BASE)
    );

    // Asked again after the ttl, unmoved: confirmed.
    std::thread::sleep(Duration::from_millis(ttl * 1000 + 200));
    let resp = get(&registry, "/v1/repositories/ns/app/tags/latest");
    assert_eq!(
        header(&resp, "x-registry-cache").as_deref(),
        Some("revalidated")
    );
    assert_eq!(resp.json::<Value>().unwrap(), json!(moved.id));

    // The source stops: what was pulled is served, the tag too (stale);
    // what was not is a 502 with the v1 API's JSON error.
    peer.stop();
    std::thread::sleep(Duration::from_secs(ttl));
    let resp = get(&registry, "/v1/repositories/ns/app/tags/latest");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-registry-cache").as_deref(), Some("stale"));
    assert!(header(&resp, "warning").is_some_and(|w| w.starts_with("110 ")));
    let again = pull(&registry, "ns/app", "latest");
    let ids: Vec<&str> = again.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, [BASE, CHILD, moved.id.as_str()]);
    assert!(registry.log().contains("serving the cached tags of ns/app"));
    let unknown = random_id();
    let resp = get(&registry, &format!("/v1/images/{unknown}/json"));
    assert_eq!(resp.status(), 502);
    let error: Value = resp.json().unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("Mirror source unavailable"),
        "{error}"
    );
    assert!(image_files(&store, &unknown).is_empty());
    // Search answers with this registry's own (`ns/app` since its tag was
    // pushed here), and says why in the log.
    assert_eq!(
        common::search_names(&registry, "app"),
        ["local/app", "ns/app"]
    );
    assert_eq!(common::search_names(&registry, "shared"), ["ns/shared"]);
    assert!(registry.log().contains("answering with local results"));
    eprintln!(
        "a_v1_source_is_mirrored_as_the_old_mirror_did: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Today's clients (v2) pull from a v1 source through the cache with no
/// v1 pull before: the tag and every image of its ancestry are fetched
/// and stored in the v1 tree, and the bridge serves their v2 form; again
/// with the source stopped.
#[test]
fn a_v2_pull_fetches_from_a_v1_source() {
    let Some(root) = LegacyPeer::root() else {
        return;
    };
    let started = Instant::now();
    let peer_store = tempfile::tempdir().unwrap();
    let mut peer = LegacyPeer::start(&root, peer_store.path());
    let chain = chain();
    push(&|p: &str| peer.url(p), "ns/app", &chain, "v1");
    let store = Backend::local();
    let source = peer.url("");
    let registry = store.start(&[("MIRROR_SOURCE", source.as_str())]);
    let v2 = V2::new(&registry);
    let fetch = |v2: &V2| {
        let resp = v2.get_manifest("/v2/ns/app/manifests/v1");
        assert_eq!(resp.status(), 200, "{}", registry.log());
        let digest = header(&resp, "docker-content-digest").unwrap();
        let bytes = resp.bytes().unwrap();
        assert_eq!(sha256(&bytes), digest);
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
        for layer in manifest["layers"].as_array().unwrap() {
            blobs.push(layer["digest"].as_str().unwrap().to_owned());
        }
        assert_eq!(blobs.len(), chain.len() + 1);
        for digest in &blobs {
            let resp = v2.get(&format!("/v2/ns/app/blobs/{digest}"));
            assert_eq!(resp.status(), 200, "{digest}: {}", registry.log());
            assert_eq!(&sha256(&resp.bytes().unwrap()), digest);
        }
        digest
    };
    // The tag list over v2: the source's, copied as a v1 list copies it.
    let tags_list = |v2: &V2| {
        let resp = v2.get("/v2/ns/app/tags/list");
        assert_eq!(resp.status(), 200, "{}", registry.log());
        resp.json::<Value>().unwrap()
    };
    assert_eq!(tags_list(&v2), json!({"name": "ns/app", "tags": ["v1"]}));
    let first = fetch(&v2);
    for image in &chain {
        // The v1 image, and the bridge's v2 form of it (`_v2*`).
        let files = image_files(&store, &image.id);
        let v1: Vec<&String> = files.iter().filter(|f| !f.starts_with("_v2")).collect();
        assert_eq!(v1, ["_checksum", "ancestry", "json", "layer"]);
    }
    // What the source does not have is the v2 API's 404.
    v2.expect_error(
        v2.get_manifest("/v2/ns/app/manifests/nope"),
        404,
        "MANIFEST_UNKNOWN",
        "a tag the source does not have",
    );
    peer.stop();
    assert_eq!(fetch(&v2), first, "served again with the source stopped");
    assert_eq!(tags_list(&v2), json!({"name": "ns/app", "tags": ["v1"]}));
    // With the source stopped, a tag never fetched cannot be known: 502.
    v2.expect_error(
        v2.get_manifest("/v2/ns/app/manifests/nope"),
        502,
        "UNKNOWN",
        "a tag never fetched, the source stopped",
    );
    eprintln!(
        "a_v2_pull_fetches_from_a_v1_source: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// --- faults on purpose: a source of the test's own --------------------------------

/// How the fake source answers the layer, by request count.
#[derive(Clone, Copy, PartialEq)]
enum Layer {
    /// Half the bytes its `Content-Length` names, then the connection closes.
    Cut,
    /// Whole, but not what the json's checksum names.
    Wrong,
    /// Whole and right.
    Right,
    /// Whole and right, after a pause (requests overlap meanwhile).
    Slow,
}

/// A v1-only source serving one image, its layer answered as `plan` says,
/// one entry a layer request (the last repeated).
struct FakeSource {
    port: u16,
    layer_requests: Arc<AtomicUsize>,
}

impl FakeSource {
    fn start(image: &V1Image, plan: Vec<Layer>) -> FakeSource {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let layer_requests = Arc::new(AtomicUsize::new(0));
        let count = layer_requests.clone();
        let (id, json, layer) = (image.id.clone(), image.json.clone(), image.layer.clone());
        let checksum = common::v1_checksum(&json, &layer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (id, json, layer, checksum) =
                    (id.clone(), json.clone(), layer.clone(), checksum.clone());
                let count = count.clone();
                let plan = plan.clone();
                std::thread::spawn(move || {
                    serve(stream, &id, &json, &layer, &checksum, &count, &plan)
                });
            }
        });
        FakeSource {
            port,
            layer_requests,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(
    mut stream: TcpStream,
    id: &str,
    json: &[u8],
    layer: &[u8],
    checksum: &str,
    count: &AtomicUsize,
    plan: &[Layer],
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let answer = |stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/json\r\n{headers}\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        };
        let image = format!("/v1/images/{id}");
        if path == format!("{image}/json") {
            let headers = format!(
                "X-Docker-Size: {}\r\nX-Docker-Checksum-Payload: {checksum}\r\n",
                layer.len()
            );
            answer(&mut stream, "200 OK", &headers, json);
        } else if path == format!("{image}/ancestry") {
            answer(&mut stream, "200 OK", "", format!("[\"{id}\"]").as_bytes());
        } else if path == format!("{image}/layer") {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let step = plan[n.min(plan.len() - 1)];
            match step {
                Layer::Cut => {
                    let head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", layer.len());
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&layer[..layer.len() / 2]);
                    let _ = stream.flush();
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
                Layer::Wrong => {
                    let mut other = layer.to_vec();
                    other[0] ^= 0xff;
                    answer(&mut stream, "200 OK", "", &other);
                }
                Layer::Right => answer(&mut stream, "200 OK", "", layer),
                Layer::Slow => {
                    std::thread::sleep(Duration::from_millis(500));
                    answer(&mut stream, "200 OK", "", layer)
                }
            }
        } else {
            // `/v2/` too: this source speaks only v1.
            answer(
                &mut stream,
                "404 Not Found",
                "",
                b"{\"error\": \"Not found\"}",
            );
        }
    }
}

/// A layer cut off mid-body, then one that is not what the source's
/// checksum names: each a 502, nothing of the image kept (no json served
/// for a layer that never came); the next pull stores it whole.
#[test]
fn a_cut_or_wrong_layer_leaves_nothing_and_the_next_pull_works() {
    let started = Instant::now();
    let (json, layer) = common::v1_fixture(CHILD);
    let image = image(&random_id(), None, json, layer);
    let source = FakeSource::start(&image, vec![Layer::Cut, Layer::Wrong, Layer::Right]);
    let store = Backend::local();
    let url = source.url();
    let registry = store.start(&[("MIRROR_SOURCE", url.as_str())]);
    let id = &image.id;
    for what in ["cut", "wrong"] {
        let resp = get(&registry, &format!("/v1/images/{id}/layer"));
        assert_eq!(resp.status(), 502, "{what}: {}", registry.log());
        let error: Value = resp.json().unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("nothing was kept"),
            "{error}"
        );
        assert!(
            image_files(&store, id).is_empty(),
            "{what}: {:?}",
            image_files(&store, id)
        );
    }
    let resp = get(&registry, &format!("/v1/images/{id}/json"));
    assert_eq!(resp.status(), 200, "{}", registry.log());
    assert_eq!(resp.bytes().unwrap(), image.json);
    let resp = get(&registry, &format!("/v1/images/{id}/layer"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap(), image.layer);
    assert_eq!(source.layer_requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        image_files(&store, id),
        ["_checksum", "_v2", "ancestry", "json", "layer"]
    );
    eprintln!(
        "a_cut_or_wrong_layer_leaves_nothing_and_the_next_pull_works: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Eight clients asking at once for an image not held: one fetch from
/// the source, every client served the image.
#[test]
fn clients_pulling_one_image_at_once_cause_one_fetch() {
    let (json, layer) = common::v1_fixture(CHILD);
    let image = image(&random_id(), None, json, layer);
    let source = FakeSource::start(&image, vec![Layer::Slow]);
    let store = Backend::local();
    let url = source.url();
    let registry = store.start(&[("MIRROR_SOURCE", url.as_str())]);
    let path = format!("/v1/images/{}/layer", image.id);
    std::thread::scope(|scope| {
        let pulls: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let resp = get(&registry, &path);
                    assert_eq!(resp.status(), 200, "{}", registry.log());
                    resp.bytes().unwrap().to_vec()
                })
            })
            .collect();
        for pull in pulls {
            assert_eq!(pull.join().unwrap(), image.layer);
        }
    });
    assert_eq!(source.layer_requests.load(Ordering::SeqCst), 1);
}

/// `mirror_max_age` reaches the v1 copies too: a copied tag unused for
/// that long goes with the collector, and the images only it reached
/// after it; a tag pushed here and the images it reaches stay; the next
/// pull asks the source again and works.
#[test]
fn the_collector_evicts_v1_copies_and_keeps_pushed_tags() {
    let Some(root) = LegacyPeer::root() else {
        return;
    };
    let peer_store = tempfile::tempdir().unwrap();
    let peer = LegacyPeer::start(&root, peer_store.path());
    let chain = chain();
    let (json, layer) = common::v1_fixture(CHILD);
    let lone = image(&random_id(), None, json, layer);
    let peer_url = |p: &str| peer.url(p);
    push(&peer_url, "ns/app", &chain, "v1");
    push(&peer_url, "ns/lone", std::slice::from_ref(&lone), "v1");

    let store = Backend::local();
    let source = peer.url("");
    let registry = store.start(&[
        ("MIRROR_SOURCE", source.as_str()),
        ("MIRROR_MAX_AGE", "3"),
        ("GC_INTERVAL", "1"),
        ("GC_GRACE_PERIOD", "1"),
    ]);
    // The chain pushed here too: its images are this registry's own.
    push(&|p: &str| registry.url(p), "ns/own", &chain, "v1");
    assert_eq!(pull(&registry, "ns/app", "v1").len(), chain.len());
    assert_eq!(pull(&registry, "ns/lone", "v1")[0].2, lone.layer);
    assert!(!image_files(&store, &lone.id).is_empty());

    let copies_gone = |store: &Backend| {
        let keys = store.stored_keys();
        !keys.iter().any(|k| {
            k == "repositories/ns/app/tag_v1"
                || k == "repositories/ns/lone/tag_v1"
                || k.starts_with("_mirror/v1tags/ns/")
                || k.starts_with(&format!("images/{}/", lone.id))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !copies_gone(&store) {
        assert!(
            Instant::now() < deadline,
            "not evicted in 30 s: {:?}\n{}",
            store.stored_keys(),
            registry.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // What was pushed here stays, with every image it reaches.
    assert_eq!(
        store.read_stored("repositories/ns/own/tag_v1").unwrap(),
        chain[1].id.as_bytes()
    );
    for image in &chain {
        assert!(
            image_files(&store, &image.id).contains(&"layer".to_owned()),
            "{} kept",
            image.id
        );
    }
    let own = pull(&registry, "ns/own", "v1");
    assert_eq!(own.last().unwrap().0, chain[1].id);
    // Evicted is only forgotten: the source is asked again.
    let again = pull(&registry, "ns/lone", "v1");
    assert_eq!((&again[0].0, &again[0].2), (&lone.id, &lone.layer));
    assert!(registry.log().contains("cached repositories evicted"));
}

/// A server of fixed JSON answers by path (query included), 404 else;
/// returns its port and the paths it was asked for.
fn json_server(answers: Vec<(String, String)>) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            seen.lock().unwrap().push(path.clone());
            let (status, body) = match answers.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => ("200 OK", body.clone()),
                None => ("404 Not Found", "{\"error\": \"Not found\"}".to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, asked)
}

/// `source_index` (`MIRROR_SOURCE_INDEX`): search and the image list of a
/// repository come from the index, not from the source.
#[test]
fn search_and_image_lists_come_from_the_source_index() {
    let (source_port, source_asked) = json_server(vec![]);
    let id = random_id();
    let (index_port, index_asked) = json_server(vec![
        (
            "/v1/search?q=app&n=25&page=1".to_owned(),
            json!({"num_results": 1, "results": [{"name": "idx/app", "description": "at the index"}]})
                .to_string(),
        ),
        (
            "/v1/repositories/idx/app/images".to_owned(),
            json!([{"id": id}]).to_string(),
        ),
    ]);
    let store = Backend::local();
    let source = format!("http://127.0.0.1:{source_port}");
    let index = format!("http://127.0.0.1:{index_port}");
    let registry = store.start(&[
        ("MIRROR_SOURCE", source.as_str()),
        ("MIRROR_SOURCE_INDEX", index.as_str()),
    ]);
    let found = get_json(&registry, "/v1/search?q=app");
    assert_eq!(
        found["results"],
        json!([{"name": "idx/app", "description": "at the index", "star_count": 0,
                "is_official": false, "is_automated": false}])
    );
    assert_eq!(
        get_json(&registry, "/v1/repositories/idx/app/images"),
        json!([{"id": id}])
    );
    // The source was asked only which API it speaks.
    assert_eq!(*source_asked.lock().unwrap(), ["/v2/"]);
    assert_eq!(index_asked.lock().unwrap().len(), 2);
}

/// A v2 source (every public registry today) is never asked v1
/// questions: a v1 miss stays this registry's 404.
#[test]
fn a_v2_source_gets_no_v1_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let v1_asked = Arc::new(AtomicUsize::new(0));
    let asked = v1_asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            if line.contains(" /v1/") {
                asked.fetch_add(1, Ordering::SeqCst);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    let store = Backend::local();
    let url = format!("http://127.0.0.1:{port}");
    let registry = store.start(&[("MIRROR_SOURCE", url.as_str())]);
    let resp = get(&registry, &format!("/v1/images/{}/json", random_id()));
    assert_eq!(resp.status(), 404);
    let resp = get(&registry, "/v1/repositories/ns/app/tags/latest");
    assert_eq!(resp.status(), 404);
    assert_eq!(get_json(&registry, "/v1/search?q=x")["results"], json!([]));
    assert_eq!(v1_asked.load(Ordering::SeqCst), 0);
}
