//! Garbage collection (`registry-v1 gc`) against the real binary on local
//! disk and S3 (moto): what nothing reaches goes, what is reachable pulls
//! byte for byte (skopeo too); pushes and pulls running during a gc loop;
//! kill -9 of a collection at random points; the lease; distribution
//! 2.8.2's own garbage-collect on the same folder afterwards.

#[macro_use]
mod common;
mod v2_support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use v2_support::*;

const BASE: &str = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";
const CHILD: &str = "46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457";
const INSTALL: &str = ".ci/install-v2-clients.sh";
/// A push record protects what it names this long (`collector::records::WINDOW`)
/// and a bit: a test that wants its pushes collected waits for it.
const RECORD_WINDOW: Duration = Duration::from_secs(16);

/// Runs `registry-v1 gc` on the backend's storage; returns stdout, after
/// checking it exited 0 with its summary line.
fn gc(backend: &Backend, args: &[&str]) -> String {
    gc_with(backend, &[], args).0
}

/// [`gc`] with extra environment; returns stdout and stderr.
fn gc_with(backend: &Backend, extra: &[(&str, &str)], args: &[&str]) -> (String, String) {
    let env = backend.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let none = no_index();
    env.push(("SQLALCHEMY_INDEX_DATABASE", &none));
    env.extend_from_slice(extra);
    let mut all = vec!["gc"];
    all.extend_from_slice(args);
    let out = common::run(&all, &env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gc {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("gc") && summary.contains(" blobs") && summary.contains(" s"),
        "no summary line: {stdout}"
    );
    (stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A search index that does not exist (in a folder never made), for the
/// `gc` runs that name none: a collection emptying a repository then
/// never updates the flavor's machine-wide default
/// (`/tmp/docker-registry.db`).
fn no_index() -> String {
    let folder = std::env::temp_dir().join(format!("registry-v1-no-index-{}", rand_suffix()));
    format!("sqlite:///{}", folder.join("search.db").display())
}

/// The numbers of the summary line: manifests, blobs, v1 images, uploads, bytes.
fn figures(stdout: &str) -> [u64; 5] {
    let line = stdout.lines().last().unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let before = |what: &str| -> u64 {
        let at = words
            .iter()
            .position(|w| w.trim_end_matches(',') == what)
            .unwrap_or_else(|| panic!("no {what} in {line}"));
        words[at - 1]
            .parse()
            .unwrap_or_else(|_| panic!("no number before {what} in {line}"))
    };
    [
        before("manifests"),
        before("blobs"),
        before("v1"),
        before("uploads"),
        before("bytes"),
    ]
}

struct V1Image {
    id: String,
    json: Vec<u8>,
    layer: Vec<u8>,
}

fn v1_image(id: &str, parent: Option<&str>, fixture: &str, layer: Option<Vec<u8>>) -> V1Image {
    let (doc, tar) = common::v1_fixture(fixture);
    V1Image {
        id: id.to_owned(),
        json: common::v1_json(doc, id, parent),
        layer: layer.unwrap_or(tar),
    }
}

fn random_id() -> String {
    hex_of(&sha256(&unique_bytes("id", 32))).to_owned()
}

/// docker 1.x's push: each image not there yet in three steps, then the tag.
fn push_v1(base: &str, repo: &str, images: &[&V1Image], tag: &str) {
    let uploads: Vec<_> = images
        .iter()
        .map(|image| common::V1Upload {
            id: &image.id,
            json: &image.json,
            layer: &image.layer,
        })
        .collect();
    common::push_v1(&|path: &str| format!("{base}{path}"), repo, &uploads, tag);
}

/// A small image pushed over v2 under `tag` (or by digest when `None`).
struct Pushed {
    blobs: ImageBlobs,
    manifest: Vec<u8>,
    digest: String,
}

fn push_image(v2: &V2, name: &str, label: &str, tag: Option<&str>) -> Pushed {
    let blobs = ImageBlobs::new(label, "amd64");
    blobs.push(v2, name);
    let manifest = blobs.oci_manifest();
    let digest = sha256(&manifest);
    v2.push_manifest(name, tag.unwrap_or(&digest), OCI_MANIFEST, &manifest);
    Pushed {
        blobs,
        manifest,
        digest,
    }
}

fn blob_key(digest: &str) -> String {
    let hex = hex_of(digest);
    format!("{V2_ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// The manifest and every blob of an image pull back byte for byte.
fn assert_pulls(v2: &V2, name: &str, image: &Pushed, what: &str) {
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{}", image.digest));
    assert_eq!(resp.status(), 200, "{what}: manifest");
    assert_eq!(
        resp.bytes().unwrap().to_vec(),
        image.manifest,
        "{what}: manifest bytes"
    );
    for blob in [&image.blobs.config, &image.blobs.layer] {
        let resp = v2.get(&format!("/v2/{name}/blobs/{}", sha256(blob)));
        assert_eq!(resp.status(), 200, "{what}: blob");
        assert_eq!(&resp.bytes().unwrap()[..], &blob[..], "{what}: blob bytes");
    }
}

fn assert_gone(backend: &Backend, digest: &str, what: &str) {
    assert!(
        backend.read_stored(&blob_key(digest)).is_none(),
        "{what}: {digest} is still stored"
    );
}

fn assert_kept(backend: &Backend, digest: &str, what: &str) {
    assert!(
        backend.read_stored(&blob_key(digest)).is_some(),
        "{what}: {digest} was deleted"
    );
}

fn v1_layer_pulls(base: &str, image: &V1Image) {
    let resp = common::client()
        .get(format!("{base}/v1/images/{}/layer", image.id))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "v1 layer of {}", image.id);
    assert_eq!(
        resp.bytes().unwrap().to_vec(),
        image.layer,
        "v1 layer bytes of {}",
        image.id
    );
}

/// Push, tag, retag, delete over v2 and v1; gc (dry, grace, real,
/// untagged); what nothing reaches is gone, the rest pulls.
fn sweeps_what_nothing_reaches(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let base = registry.url("");
    let base = base.trim_end_matches('/');
    let name = "gc/app";
    let tagged = push_image(&v2, name, "tagged", Some("v1"));
    let retagged_from = push_image(&v2, name, "old", Some("v2"));
    let retagged_to = push_image(&v2, name, "new", Some("v2"));
    let untagged = push_image(&v2, name, "untagged", Some("gone"));
    assert_eq!(
        v2.delete(&format!("/v2/{name}/manifests/gone")).status(),
        202
    );
    let deleted = push_image(&v2, name, "deleted", Some("deleted"));
    let resp = v2.delete(&format!("/v2/{name}/manifests/{}", deleted.digest));
    assert_eq!(resp.status(), 202);
    // An index of two children, tagged; a referrer of `tagged`, by digest.
    let child_a = push_image(&v2, name, "child-a", None);
    let child_b = push_image(&v2, name, "child-b", None);
    let index = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &child_a.manifest, "amd64"),
            (OCI_MANIFEST, &child_b.manifest, "arm64"),
        ],
    );
    v2.push_manifest(name, "multi", OCI_INDEX, &index);
    let empty = b"{}".to_vec();
    v2.push_blob(name, &empty);
    let signature = unique_bytes("signature", 300);
    v2.push_blob(name, &signature);
    let referrer = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(OCI_EMPTY, &empty),
        "layers": [descriptor("application/octet-stream", &signature)],
        "subject": descriptor(OCI_MANIFEST, &tagged.manifest),
    }));
    let referrer_digest = v2.push_manifest(name, &sha256(&referrer), OCI_MANIFEST, &referrer);
    // A blob nothing names, and an upload never finished.
    let stray = unique_bytes("stray", 4000);
    let stray_digest = v2.push_blob(name, &stray);
    v2.start_upload(name);

    // v1: a chain tagged, and an image whose tag went.
    let v1_base = v1_image(BASE, None, BASE, None);
    let v1_child = v1_image(CHILD, Some(BASE), CHILD, None);
    push_v1(base, "gc/legacy", &[&v1_base, &v1_child], "latest");
    let v1_orphan = v1_image(
        &random_id(),
        Some(BASE),
        CHILD,
        Some(unique_bytes("orphan", 2048)),
    );
    push_v1(base, "gc/legacy", &[&v1_base, &v1_orphan], "old");
    let resp = common::client()
        .delete(format!("{base}/v1/repositories/gc/legacy/tags/old"))
        .send()
        .unwrap();
    assert!(
        resp.status().is_success(),
        "DELETE v1 tag: {}",
        resp.status()
    );

    // Everything is younger than the default grace period: nothing goes.
    let before: BTreeSet<String> = backend.stored_keys().into_iter().collect();
    let out = gc(&backend, &[]);
    assert_eq!(figures(&out), [0, 0, 0, 0, 0], "{out}");

    // Until the push records stop counting, what they name stays.
    std::thread::sleep(RECORD_WINDOW);

    // A dry run lists what would go, and deletes nothing.
    let out = gc(
        &backend,
        &["--dry-run", "--grace-period", "0", "--upload-max-age", "0"],
    );
    assert!(
        out.contains(&format!("blob {stray_digest} 4000 bytes")),
        "{out}"
    );
    assert!(out.contains(&format!("v1 image {}", v1_orphan.id)), "{out}");
    assert!(out.contains("would go"), "{out}");
    let [manifests, blobs, images, uploads, bytes] = figures(&out);
    assert_eq!((manifests, images, uploads), (0, 1, 1), "{out}");
    // The stray blob, and the deleted manifest's bytes, config and layer.
    assert_eq!(blobs, 4, "{out}");
    assert!(bytes >= 4000 + 1500 + 2048, "{out}");
    let unchanged: BTreeSet<String> = backend
        .stored_keys()
        .into_iter()
        .filter(|k| !k.starts_with("_gc/") && !k.starts_with(".registry-v1-locks/"))
        .collect();
    let before_content: BTreeSet<String> = before
        .iter()
        .filter(|k| !k.starts_with("_gc/") && !k.starts_with(".registry-v1-locks/"))
        .cloned()
        .collect();
    assert_eq!(unchanged, before_content, "a dry run deletes nothing");

    let out = gc(&backend, &["--grace-period", "0", "--upload-max-age", "0"]);
    assert_eq!(figures(&out)[..4], [0, 4, 1, 1], "{out}");
    assert_gone(&backend, &stray_digest, "stray blob");
    assert_gone(&backend, &deleted.digest, "deleted manifest");
    assert_gone(
        &backend,
        &sha256(&deleted.blobs.layer),
        "deleted manifest's layer",
    );
    assert!(
        backend
            .stored_keys()
            .iter()
            .all(|k| !k.contains(&format!("images/{}", v1_orphan.id))),
        "the v1 image no tag reaches is gone"
    );
    assert!(
        backend
            .stored_keys()
            .iter()
            .all(|k| !k.contains("/_uploads/")),
        "the stale upload is gone"
    );
    // Untagged manifests stay unless asked.
    for image in [
        &tagged,
        &retagged_from,
        &retagged_to,
        &untagged,
        &child_a,
        &child_b,
    ] {
        assert_pulls(&v2, name, image, "kept after gc");
    }

    let out = gc(&backend, &["--delete-untagged", "--grace-period", "0"]);
    assert_eq!(figures(&out)[..3], [2, 6, 0], "{out}");
    for image in [&retagged_from, &untagged] {
        let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{}", image.digest));
        assert_eq!(
            resp.status(),
            404,
            "untagged manifest after --delete-untagged"
        );
        assert_gone(&backend, &image.digest, "untagged manifest");
        assert_gone(
            &backend,
            &sha256(&image.blobs.layer),
            "untagged manifest's layer",
        );
    }
    for image in [&tagged, &retagged_to, &child_a, &child_b] {
        assert_pulls(&v2, name, image, "reachable after --delete-untagged");
    }
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/multi"));
    assert_eq!(resp.bytes().unwrap().to_vec(), index);
    assert_kept(&backend, &referrer_digest, "referrer of a kept manifest");
    assert_kept(&backend, &sha256(&signature), "referrer's layer");
    let resp = v2.get(&format!("/v2/{name}/referrers/{}", tagged.digest));
    let referrers: Value = resp.json().unwrap();
    assert_eq!(referrers["manifests"][0]["digest"], json!(referrer_digest));
    for image in [&v1_base, &v1_child] {
        v1_layer_pulls(base, image);
    }
    // The v1 tag pulls over v2 (the bridge), every blob of it.
    let resp = v2.get_manifest("/v2/gc/legacy/manifests/latest");
    assert_eq!(resp.status(), 200, "v1 tag over v2");
    let manifest: Value = resp.json().unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let resp = v2.get(&format!(
            "/v2/gc/legacy/blobs/{}",
            layer["digest"].as_str().unwrap()
        ));
        assert_eq!(resp.status(), 200);
        assert_eq!(
            sha256(&resp.bytes().unwrap()),
            layer["digest"].as_str().unwrap()
        );
    }
    // A second run finds nothing more.
    let out = gc(
        &backend,
        &[
            "--delete-untagged",
            "--grace-period",
            "0",
            "--upload-max-age",
            "0",
        ],
    );
    assert_eq!(figures(&out), [0, 0, 0, 0, 0], "{out}");

    // skopeo pulls what was kept, byte for byte.
    if tool_available("skopeo", INSTALL) {
        let work = tempfile::tempdir().unwrap();
        let host = format!("127.0.0.1:{}", registry.port);
        for (tag, image) in [("v1", &tagged), ("v2", &retagged_to)] {
            let dir = work.path().join(tag);
            let out = Command::new("skopeo")
                .args([
                    "copy",
                    "--src-tls-verify=false",
                    "--preserve-digests",
                    &format!("docker://{host}/{name}:{tag}"),
                    &format!("oci:{}:{tag}", dir.display()),
                ])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "skopeo copy: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = dir
                .join("blobs/sha256")
                .join(hex_of(&sha256(&image.blobs.layer)));
            let layer = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e}; skopeo wrote {:?}", path.display(), walk(&dir))
            });
            assert_eq!(layer, image.blobs.layer, "skopeo's copy of the layer");
        }
    }
    assert!(backend.outside().is_empty(), "{:?}", backend.outside());
}

#[test]
fn gc_sweeps_what_nothing_reaches_on_local_disk() {
    sweeps_what_nothing_reaches(Backend::local());
}

#[test]
fn gc_sweeps_what_nothing_reaches_on_s3() {
    let Some(backend) = Backend::s3() else {
        eprintln!("\nSKIPPED: no S3 server (moto_server) for the gc test\n");
        return;
    };
    sweeps_what_nothing_reaches(backend);
}

#[test]
fn gc_sweeps_what_nothing_reaches_on_swift() {
    let Some(backend) = Backend::swift() else {
        return;
    };
    sweeps_what_nothing_reaches(backend);
}

/// A gc in a loop while 8 clients push, retag, delete and pull: no client
/// fails, every image a client kept pulls whole at the end.
#[test]
fn gc_in_a_loop_while_clients_push_and_pull() {
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let base = registry.url("");
    let base = base.trim_end_matches('/').to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let mut env = backend.env();
        env.push(("SQLALCHEMY_INDEX_DATABASE".into(), no_index()));
        let stop = stop.clone();
        std::thread::spawn(move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut runs = 0;
            let mut deleted = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = common::run(&["gc", "--delete-untagged", "--grace-period", "2"], &env);
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(
                    out.status.success(),
                    "gc: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                deleted += figures(&stdout)[1];
                runs += 1;
            }
            (runs, deleted)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(35);
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let base = base.clone();
            std::thread::spawn(move || {
                let v2 = V2::at(base);
                let name = format!("load/c{client}");
                // A layer every image of this client shares: it becomes
                // unreachable whenever the client drops its images.
                let shared = unique_bytes(&format!("shared{client}"), 3000);
                let mut kept = Vec::new();
                let mut round = 0;
                let mut retries = 0;
                while Instant::now() < deadline {
                    round += 1;
                    let blobs = ImageBlobs::new(&format!("c{client}r{round}"), "amd64");
                    let manifest = manifest_bytes(&json!({
                        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": descriptor(OCI_CONFIG, &blobs.config),
                        "layers": [descriptor(OCI_LAYER, &shared), descriptor(OCI_LAYER, &blobs.layer)],
                    }));
                    let tag = format!("r{}", round % 3);
                    // As docker does: HEAD each blob, upload the missing
                    // ones, PUT the manifest; MANIFEST_BLOB_UNKNOWN (a blob
                    // collected meanwhile) means upload again.
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        assert!(attempts <= 5, "client {client}: manifest refused 5 times");
                        for blob in [&blobs.config, &shared, &blobs.layer] {
                            let head = v2.head(&format!("/v2/{name}/blobs/{}", sha256(blob)));
                            if head.status() != 200 {
                                v2.push_blob(&name, blob);
                            }
                        }
                        let resp = v2.put_manifest(&name, &tag, OCI_MANIFEST, &manifest);
                        let status = resp.status();
                        let body = resp.bytes().unwrap();
                        if status == 201 {
                            break;
                        }
                        let codes = error_codes_of(&body, "manifest PUT");
                        assert!(
                            codes.iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN"),
                            "client {client}: {status} {codes:?}"
                        );
                        retries += 1;
                    }
                    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{tag}"));
                    assert_eq!(resp.status(), 200, "client {client}: pull {tag}");
                    assert_eq!(resp.bytes().unwrap().to_vec(), manifest);
                    for blob in [&blobs.config, &shared, &blobs.layer] {
                        let resp = v2.get(&format!("/v2/{name}/blobs/{}", sha256(blob)));
                        assert_eq!(resp.status(), 200, "client {client}: blob of {tag}");
                        assert_eq!(&resp.bytes().unwrap()[..], &blob[..]);
                    }
                    kept.retain(|(t, _, _): &(String, Vec<u8>, Vec<Vec<u8>>)| t != &tag);
                    kept.push((tag, manifest, vec![blobs.config, shared.clone(), blobs.layer]));
                    // Now and then every tag goes: the shared layer is
                    // unreachable until the next push names it again.
                    if round % 7 == 0 {
                        for (tag, _, _) in kept.drain(..) {
                            assert_eq!(v2.delete(&format!("/v2/{name}/manifests/{tag}")).status(), 202);
                        }
                        // Client 0 once stays away past the record window:
                        // its shared layer may be collected meanwhile, or
                        // while it comes back.
                        let pause = if client == 0 && round == 7 { RECORD_WINDOW } else { Duration::from_millis(2200) };
                        std::thread::sleep(pause);
                    }
                }
                (name, kept, round, retries)
            })
        })
        .collect();
    let results: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("a client failed"))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (runs, deleted) = collector.join().expect("the collector failed");
    // One more collection after the clients: still every kept image pulls.
    gc(&backend, &["--delete-untagged", "--grace-period", "0"]);
    let v2 = V2::new(&registry);
    let mut rounds = 0;
    let mut retries = 0;
    for (name, kept, round, retried) in &results {
        rounds += round;
        retries += retried;
        for (tag, manifest, blobs) in kept {
            let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{tag}"));
            assert_eq!(resp.status(), 200, "{name}:{tag} at the end");
            assert_eq!(&resp.bytes().unwrap().to_vec(), manifest);
            for blob in blobs {
                let resp = v2.get(&format!("/v2/{name}/blobs/{}", sha256(blob)));
                assert_eq!(resp.status(), 200, "{name}:{tag}: blob at the end");
                assert_eq!(&resp.bytes().unwrap()[..], &blob[..]);
            }
        }
    }
    assert!(runs >= 3, "only {runs} collections ran");
    assert!(deleted > 0, "the collections deleted nothing");
    eprintln!("gc loop: {runs} collections deleted {deleted} blobs; {rounds} pushes, {retries} re-uploads after MANIFEST_BLOB_UNKNOWN");
}

/// kill -9 of a collection at random points; every kept image still
/// pulls, and the next collection finishes the job.
#[test]
fn kill_9_during_gc_leaves_every_kept_image_served() {
    use rand::Rng;
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "gc/crash";
    let kept: Vec<Pushed> = (0..4)
        .map(|i| push_image(&v2, name, &format!("kept{i}"), Some(&format!("t{i}"))))
        .collect();
    // Garbage: manifests untagged and deleted, stray blobs.
    let mut garbage = Vec::new();
    for i in 0..40 {
        let image = push_image(&v2, name, &format!("garbage{i}"), Some("scratch"));
        if i % 2 == 0 {
            assert_eq!(
                v2.delete(&format!("/v2/{name}/manifests/{}", image.digest))
                    .status(),
                202
            );
        }
        garbage.push(image);
    }
    assert_eq!(
        v2.delete(&format!("/v2/{name}/manifests/scratch")).status(),
        202
    );
    for i in 0..200 {
        garbage.push(Pushed {
            digest: v2.push_blob(name, &unique_bytes(&format!("stray{i}"), 100)),
            manifest: Vec::new(),
            blobs: ImageBlobs::new("unused", "amd64"),
        });
    }
    std::thread::sleep(RECORD_WINDOW);
    let mut env = backend.env();
    env.push(("SQLALCHEMY_INDEX_DATABASE".into(), no_index()));
    let mut killed = 0;
    for _ in 0..6 {
        let mut child = common::command()
            .args([
                "gc",
                "--delete-untagged",
                "--grace-period",
                "0",
                "--lease-ttl",
                "1",
            ])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(5..250)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        for (i, image) in kept.iter().enumerate() {
            assert_pulls(&v2, name, image, &format!("after kill -9, image {i}"));
        }
        // The lease it held expires within its ttl.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let out = gc(&backend, &["--delete-untagged", "--grace-period", "0"]);
    for image in &kept {
        assert_pulls(&v2, name, image, "after the last gc");
    }
    for image in &garbage {
        assert_gone(&backend, &image.digest, "garbage after the last gc");
    }
    // The folder without its data a crash may leave is gone too.
    let blobs_dir = backend
        .storage_path()
        .unwrap()
        .join(V2_ROOT)
        .join("blobs/sha256");
    let folders = walk(&blobs_dir).len();
    assert_eq!(folders, kept.len() * 3, "{out}");
    eprintln!("kill -9: {killed} of 6 collections killed mid-run");
}

/// Two collectors on one store: the second refuses while the lease is held.
#[test]
fn a_second_collector_refuses_while_the_lease_is_held() {
    let backend = Backend::local();
    let lease = backend.storage_path().unwrap().join("_gc");
    std::fs::create_dir_all(&lease).unwrap();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000;
    std::fs::write(
        lease.join("lease"),
        format!("{{\"holder\":\"other\",\"expires_ms\":{until}}}"),
    )
    .unwrap();
    let env = backend.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = common::run(&["gc"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a held lease is refused");
    assert!(
        stderr.contains("another garbage collection") && stderr.contains("_gc/lease"),
        "{stderr}"
    );
    // Expired: taken over.
    std::fs::write(
        lease.join("lease"),
        "{\"holder\":\"other\",\"expires_ms\":1}",
    )
    .unwrap();
    gc(&backend, &[]);
}

/// distribution 2.8.2's garbage-collect on the folder afterwards deletes
/// nothing registry-v1 serves, and finds nothing it kept to delete.
#[test]
fn distribution_garbage_collect_agrees() {
    if !tool_available(
        "docker-registry",
        "bash ../shared/tools/distribution-peer-setup.sh",
    ) {
        return;
    }
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "gc/peer";
    let tagged = push_image(&v2, name, "tagged", Some("v1"));
    let untagged = push_image(&v2, name, "untagged", None);
    let deleted = push_image(&v2, name, "deleted", Some("d"));
    v2.delete(&format!("/v2/{name}/manifests/{}", deleted.digest));
    let child = push_image(&v2, name, "child", None);
    let index = index_of(OCI_INDEX, &[(OCI_MANIFEST, &child.manifest, "amd64")]);
    v2.push_manifest(name, "multi", OCI_INDEX, &index);
    std::thread::sleep(RECORD_WINDOW);
    gc(&backend, &["--grace-period", "0"]);
    let root = backend.storage_path().unwrap();
    let blobs = |root: &std::path::Path| -> BTreeSet<String> {
        walk(&root.join(V2_ROOT).join("blobs"))
            .into_iter()
            .map(|p| p.display().to_string())
            .collect()
    };
    let before = blobs(&root);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n",
            root.display(),
            common::free_port()
        ),
    )
    .unwrap();
    let out = Command::new("docker-registry")
        .arg("garbage-collect")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "garbage-collect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        blobs(&root),
        before,
        "distribution deleted what we kept:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for image in [&tagged, &untagged, &child] {
        assert_pulls(&v2, name, image, "after distribution's garbage-collect");
    }
}

/// Uploads opened in names that never got content (only `_uploads/`
/// there, as a flood of `POST`s leaves them), nested or not, are found and
/// removed once older than the maximum age, as those of repositories are.
fn abandoned_uploads_anywhere_are_collected(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let mut opened = 0;
    for (name, count) in [("flood/x", 120), ("flood", 5), ("a/b/c/d", 5)] {
        for _ in 0..count {
            v2.start_upload(name);
            opened += 1;
        }
    }
    // And one in a repository with content, as before.
    push_image(&v2, "flood/app", "flood", Some("v1"));
    v2.start_upload("flood/app");
    opened += 1;
    let uploads = |backend: &Backend| {
        backend
            .stored_keys()
            .iter()
            .filter(|k| k.contains("/_uploads/") && k.ends_with("/startedat"))
            .count()
    };
    assert_eq!(uploads(&backend), opened);
    // Younger than the maximum age: they stay.
    let out = gc(&backend, &[]);
    assert_eq!(figures(&out)[3], 0, "{out}");
    let out = gc(&backend, &["--upload-max-age", "0"]);
    assert_eq!(figures(&out)[3], opened as u64, "{out}");
    assert_eq!(uploads(&backend), 0);
    assert_pulls(
        &v2,
        "flood/app",
        &push_image(&v2, "flood/app", "flood-2", Some("v2")),
        "after",
    );
}

#[test]
fn abandoned_uploads_anywhere_are_collected_on_local_disk() {
    abandoned_uploads_anywhere_are_collected(Backend::local());
}

#[test]
fn abandoned_uploads_anywhere_are_collected_on_s3() {
    let Some(backend) = Backend::s3() else {
        eprintln!("\nSKIPPED: no S3 server (moto_server) for the gc test\n");
        return;
    };
    abandoned_uploads_anywhere_are_collected(backend);
}

#[test]
fn abandoned_uploads_anywhere_are_collected_on_swift() {
    let Some(backend) = Backend::swift() else {
        return;
    };
    abandoned_uploads_anywhere_are_collected(backend);
}

/// With no collection running (`gc_interval` off, the default), push
/// records older than they count are removed by `serve` after pushes:
/// they do not grow with every push. Records still counting stay.
#[test]
fn push_records_do_not_pile_up_without_a_collection() {
    let backend = Backend::local();
    let registry = backend.start(&[("GC_GRACE_PERIOD", "0")]);
    let v2 = V2::new(&registry);
    let pushes = backend.storage_path().unwrap().join("_gc/pushes");
    std::fs::create_dir_all(&pushes).unwrap();
    // A year of pushes before (a registry that never collected).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..2000u64 {
        let at = now - 20_000 - i * 15_000_000;
        std::fs::write(pushes.join(format!("{at}-old{i:04}")), "{}").unwrap();
    }
    // (old ones, new ones)
    let count = || {
        let names: Vec<String> = std::fs::read_dir(&pushes)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let old = names.iter().filter(|n| n.contains("-old")).count();
        (old, names.len() - old)
    };
    push_image(&v2, "records/app", "records", Some("v1"));
    // Pruned within `records::PRUNE_EVERY` (10 s) of the push.
    let deadline = Instant::now() + Duration::from_secs(25);
    while count().0 > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let (old, new) = count();
    assert_eq!(old, 0, "the records that no longer count are gone");
    assert!(new >= 1, "the push's own record still counts: kept");
    // The collector's lease was given back.
    let lease = backend.read_stored("_gc/lease").unwrap();
    let lease: Value = serde_json::from_slice(&lease).unwrap();
    assert_eq!(lease["expires_ms"], 0, "{lease}");
    gc(&backend, &[]);
}

/// The case: `gc_interval` on, a flood of `POST`s to a name with
/// no content, then nothing: every upload is gone soon after
/// `gc_upload_max_age`, the last ones (which no later `POST` saw expire)
/// by the periodic collection.
#[test]
fn a_flood_of_abandoned_uploads_goes_with_gc_interval() {
    let backend = Backend::local();
    let registry = backend.start(&[("GC_INTERVAL", "1"), ("GC_UPLOAD_MAX_AGE", "3")]);
    let v2 = V2::new(&registry);
    for _ in 0..300 {
        v2.start_upload("flood/x");
    }
    let folder = backend
        .storage_path()
        .unwrap()
        .join("docker/registry/v2/repositories/flood/x/_uploads");
    let left = || std::fs::read_dir(&folder).map_or(0, |d| d.count());
    assert!(left() > 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while left() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(left(), 0, "abandoned uploads left: {}", registry.log());
}

/// What a tag delete cut short on S3 leaves (the tag's history, its
/// current link gone): listed by a dry run, kept while younger than the
/// grace period (a push between its two links looks the same), then
/// removed; the other tags stay whole.
fn a_cut_tag_delete_leaves_history_the_collector_removes(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = format!("cut/{}", rand_suffix());
    let image = push_image(&v2, &name, &format!("{name} a"), Some("a"));
    v2.push_manifest(&name, "b", OCI_MANIFEST, &image.manifest);
    let tag_keys = |tag: &str| -> Vec<String> {
        let prefix = format!("{V2_ROOT}/repositories/{name}/_manifests/tags/{tag}/");
        backend
            .stored_keys()
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .collect()
    };
    backend.remove_stored(&format!(
        "{V2_ROOT}/repositories/{name}/_manifests/tags/a/current/link"
    ));
    assert_eq!(tag_keys("a").len(), 1, "{:?}", tag_keys("a"));

    let young = gc(&backend, &["--grace-period", "3600"]);
    assert_eq!(tag_keys("a").len(), 1, "young history kept: {young}");
    let dry = gc(&backend, &["--dry-run", "--grace-period", "0"]);
    assert!(
        dry.contains(&format!("history of {name}:a, whose delete was cut short")),
        "{dry}"
    );
    assert_eq!(tag_keys("a").len(), 1, "a dry run deletes nothing");
    gc(&backend, &["--grace-period", "0"]);
    assert!(tag_keys("a").is_empty(), "{:?}", tag_keys("a"));
    assert_eq!(tag_keys("b").len(), 2, "{:?}", tag_keys("b"));
    let tags: serde_json::Value = v2.get(&format!("/v2/{name}/tags/list")).json().unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["b"]));
    assert_pulls(&v2, &name, &image, "tag b");
}

#[test]
fn gc_removes_the_history_of_a_cut_tag_delete_on_local_disk() {
    a_cut_tag_delete_leaves_history_the_collector_removes(Backend::local());
}

#[test]
fn gc_removes_the_history_of_a_cut_tag_delete_on_s3() {
    let Some(backend) = Backend::s3() else {
        eprintln!("\nSKIPPED: no S3 server (moto_server) for the gc test\n");
        return;
    };
    a_cut_tag_delete_leaves_history_the_collector_removes(backend);
}

/// The names `/v1/search` lists (all of them: an empty term).
fn searched(registry: &common::Registry) -> BTreeSet<String> {
    common::search_names(registry, "").into_iter().collect()
}

/// The repositories of the search tests: `gone/app` and `solo` (v2 only,
/// one untagged manifest each), `kept/app` (a tagged manifest and an
/// untagged one), `both/app` (an untagged v2 manifest and a v1 tag).
/// Returns `gone/app`'s image.
fn push_for_search(registry: &common::Registry, v2: &V2) -> Pushed {
    let gone = push_image(v2, "gone/app", "gone", None);
    push_image(v2, "solo", "solo", None);
    push_image(v2, "kept/app", "kept-tagged", Some("t"));
    push_image(v2, "kept/app", "kept-untagged", None);
    push_image(v2, "both/app", "both", None);
    let v1 = v1_image(&random_id(), None, CHILD, Some(unique_bytes("both", 1024)));
    push_v1(&registry.url(""), "both/app", &[&v1], "old");
    let all = ["both/app", "gone/app", "kept/app", "library/solo"];
    assert_eq!(searched(registry), all.map(String::from).into(), "pushed");
    gone
}

/// What search lists after the collection took out `gone/app` and `solo`:
/// the others, which still pull (a tag in v2, a tag in v1).
fn assert_search_after_gc(registry: &common::Registry, v2: &V2, gone: &Pushed, what: &str) {
    let listed = searched(registry);
    assert_eq!(
        listed,
        ["both/app", "kept/app"].map(String::from).into(),
        "{what}: {}",
        registry.log()
    );
    let resp = v2.get_manifest(&format!("/v2/gone/app/manifests/{}", gone.digest));
    assert_eq!(resp.status(), 404, "{what}: the untagged manifest went");
    assert_eq!(v2.get_manifest("/v2/kept/app/manifests/t").status(), 200);
    let resp = common::client()
        .get(registry.url("/v1/repositories/both/app/tags/old"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{what}: the v1 tag of both/app");
    // A tag brings it back.
    push_image(v2, "gone/app", "gone-again", Some("t"));
    assert!(
        searched(registry).contains("gone/app"),
        "{what}: pushed again"
    );
}

/// `gc --delete-untagged` removing a repository's last manifest takes it
/// out of the search index a `serve` answers from (the same database);
/// what another manifest or the v1 tree still holds stays listed.
#[test]
fn gc_takes_a_repository_it_emptied_out_of_search() {
    let backend = Backend::local();
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite:///{}", db.path().join("search.db").display());
    let index = [("SQLALCHEMY_INDEX_DATABASE", url.as_str())];
    let registry = backend.start(&index);
    let v2 = V2::new(&registry);
    let gone = push_for_search(&registry, &v2);
    std::thread::sleep(RECORD_WINDOW);
    let (out, _) = gc_with(
        &backend,
        &index,
        &["--delete-untagged", "--grace-period", "0"],
    );
    assert_eq!(figures(&out)[0], 4, "{out}");
    for name in ["gone/app", "library/solo"] {
        assert!(
            out.contains(&format!(
                "{name}: no tree holds it any longer, removed from search"
            )),
            "{out}"
        );
    }
    assert!(
        !out.contains("kept/app") && !out.contains("both/app"),
        "{out}"
    );
    assert_search_after_gc(&registry, &v2, &gone, "gc command");
}

/// A `gc` that cannot reach the search index (one in memory, which only
/// its `serve` holds; a PostgreSQL server that does not answer) still
/// collects, exits 0, and says that search lists what no longer pulls
/// until `reindex`.
#[test]
fn gc_without_a_reachable_index_warns_and_collects() {
    let closed = format!(
        "postgresql://registry@127.0.0.1:{}/search",
        common::free_port()
    );
    let cases: Vec<_> = ["sqlite://", closed.as_str()]
        .into_iter()
        .map(|index| {
            let backend = Backend::local();
            let registry = backend.start(&[]);
            let v2 = V2::new(&registry);
            let gone = push_image(&v2, "gone/app", "gone", None);
            (index, backend, registry, v2, gone)
        })
        .collect();
    std::thread::sleep(RECORD_WINDOW);
    for (index, backend, _registry, v2, gone) in &cases {
        let (out, err) = gc_with(
            backend,
            &[
                ("SEARCH_BACKEND", "sqlalchemy"),
                ("SQLALCHEMY_INDEX_DATABASE", index),
            ],
            &["--delete-untagged", "--grace-period", "0"],
        );
        assert_eq!(figures(&out)[0], 1, "{index}: {out}");
        assert!(
            err.contains("search not updated")
                && err.contains("gone/app")
                && err.contains("reindex"),
            "{index}: {err}"
        );
        let resp = v2.get_manifest(&format!("/v2/gone/app/manifests/{}", gone.digest));
        assert_eq!(resp.status(), 404, "{index}");
    }
}

/// `gc_interval` with `gc_delete_untagged` inside `serve`: the collection
/// that removes a repository's last manifest publishes its delete, and
/// search forgets it; the others stay.
#[test]
fn periodic_gc_takes_a_repository_it_emptied_out_of_search() {
    let backend = Backend::local();
    let registry = backend.start(&[
        ("GC_INTERVAL", "1"),
        ("GC_DELETE_UNTAGGED", "true"),
        ("GC_GRACE_PERIOD", "0"),
    ]);
    let v2 = V2::new(&registry);
    let gone = push_for_search(&registry, &v2);
    // Kept by its push record for `RECORD_WINDOW`, then collected.
    let deadline = Instant::now() + RECORD_WINDOW + Duration::from_secs(20);
    while searched(&registry).contains("gone/app") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    while searched(&registry).contains("library/solo") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_search_after_gc(&registry, &v2, &gone, "gc_interval");
}
