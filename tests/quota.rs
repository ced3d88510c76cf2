//! Quotas (issue 30) through the real binary, on local disk and S3
//! (moto): a 50 MiB quota on `team/*` refuses the image that would pass
//! it (curl-like and skopeo), a layer shared by two repositories counts
//! in both, a blob that could never fit is refused before a byte, the
//! refused push leaves nothing served and its bytes go with the next
//! collection, deletes give room back (the manifest's bytes at once, its
//! layers at the collection, which sets the count right), and clients
//! pushing at once never take the namespace past its bound.

#[macro_use]
mod common;
mod login_support;
mod v2_support;

use std::time::Duration;

use v2_support::*;

const MIB: usize = 1 << 20;
/// A push record protects what it names this long
/// (`collector::records::WINDOW`) and a bit.
const RECORD_WINDOW: Duration = Duration::from_secs(16);
const QUOTA: &str = "registry_quota_used_bytes{quota=\"repositories: team/*\"}";

/// A flavor `quota` on the backend's storage: `team/*` may hold 50 MiB.
fn config(backend: &Backend) -> (tempfile::TempDir, Vec<(String, String)>, u16) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yml");
    let storage = backend.flavor_storage();
    std::fs::write(
        &file,
        format!(
            "quota:\n  standalone: true\n{storage}  search_backend: ''\n  \
             metrics_address: _env:METRICS_ADDRESS\n  \
             rules:\n    - repositories: team/*\n      quota: 50MiB\n"
        ),
    )
    .unwrap();
    let metrics = common::free_port();
    let mut env = backend.env();
    env.retain(|(k, _)| k != "SETTINGS_FLAVOR");
    env.push(("SETTINGS_FLAVOR".into(), "quota".into()));
    env.push(("DOCKER_REGISTRY_CONFIG".into(), file.display().to_string()));
    env.push(("METRICS_ADDRESS".into(), format!("127.0.0.1:{metrics}")));
    (dir, env, metrics)
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// An image of a config and one layer of `mib` MiB, its blobs pushed.
struct Image {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl Image {
    fn new(label: &str, mib: usize) -> Image {
        Image::sized(label, mib * MIB)
    }

    /// With a layer of `len` bytes.
    fn sized(label: &str, len: usize) -> Image {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"l\":\"{label}\"}}")
            .into_bytes();
        let layer = unique_bytes(label, len);
        let manifest = manifest_bytes(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &layer)],
        }));
        Image {
            config,
            layer,
            manifest,
        }
    }

    fn push_blobs(&self, v2: &V2, name: &str) {
        v2.push_blob(name, &self.config);
        v2.push_blob(name, &self.layer);
    }

    fn size(&self) -> usize {
        self.config.len() + self.layer.len() + self.manifest.len()
    }
}

fn used(metrics: u16) -> f64 {
    common::metric(metrics, QUOTA)
}

fn gc(env: &[(String, String)]) {
    let out = common::run(&["gc", "--grace-period", "0"], &pairs(env));
    assert!(out.status.success(), "{out:?}");
}

fn blob_key(data: &[u8]) -> String {
    let digest = sha256(data);
    let hex = hex_of(&digest);
    format!("{V2_ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2])
}

fn bounds_a_namespace(backend: Backend) {
    let (_dir, env, metrics) = config(&backend);
    let registry = common::Registry::start(&pairs(&env));
    let v2 = V2::new(&registry);
    let (a, b, c) = (
        Image::new("quota a", 20),
        Image::new("quota b", 20),
        Image::new("quota c", 20),
    );
    a.push_blobs(&v2, "team/a");
    v2.push_manifest("team/a", "1", OCI_MANIFEST, &a.manifest);
    b.push_blobs(&v2, "team/b");
    v2.push_manifest("team/b", "1", OCI_MANIFEST, &b.manifest);
    assert_eq!(used(metrics) as usize, a.size() + b.size());

    // The third image would take team/* past 50 MiB: refused, nothing of
    // it served.
    c.push_blobs(&v2, "team/a");
    let refused = v2.put_manifest("team/a", "2", OCI_MANIFEST, &c.manifest);
    let status = refused.status();
    let body: serde_json::Value = refused.json().unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("quota `repositories: team/*` of 52428800 bytes (50.0 MiB)")
            && message.contains("used, this push needs 20.0 MiB more"),
        "{message}"
    );
    assert_eq!(v2.get_manifest("/v2/team/a/manifests/2").status(), 404);
    let digest = sha256(&c.manifest);
    let by_digest = v2.get_manifest(&format!("/v2/team/a/manifests/{digest}"));
    assert_eq!(by_digest.status(), 404);
    assert_eq!(
        used(metrics) as usize,
        a.size() + b.size(),
        "nothing charged"
    );

    // A layer shared by two repositories counts in both.
    a.push_blobs(&v2, "team/b");
    let shared = v2.put_manifest("team/b", "a", OCI_MANIFEST, &a.manifest);
    assert_eq!(shared.status(), 403, "a's layer counts in team/b too");
    // A blob that could never fit is refused before a byte is stored.
    let huge = unique_bytes("too large", 40 * MIB);
    let resp = v2.send(
        v2.request(
            "POST",
            &format!("/v2/team/c/blobs/uploads/?digest={}", sha256(&huge)),
        )
        .header("content-type", "application/octet-stream")
        .body(huge.clone()),
    );
    v2.expect_error(resp, 403, "DENIED", "a blob past the quota");
    assert!(backend.read_stored(&blob_key(&huge)).is_none());
    // Other repositories are not bound.
    let free = Image::new("free", 60);
    free.push_blobs(&v2, "dev/x");
    v2.push_manifest("dev/x", "1", OCI_MANIFEST, &free.manifest);

    // A manifest deleted gives its own bytes back at once, its layers at
    // the next collection, which also takes the refused push's bytes.
    let b_digest = sha256(&b.manifest);
    assert_eq!(
        v2.delete(&format!("/v2/team/b/manifests/{b_digest}"))
            .status(),
        202
    );
    assert_eq!(
        used(metrics) as usize,
        a.size() + b.size() - b.manifest.len()
    );
    std::thread::sleep(RECORD_WINDOW);
    gc(&env);
    for blob in [&c.layer, &b.layer] {
        assert!(
            backend.read_stored(&blob_key(blob)).is_none(),
            "a layer nothing references stays"
        );
    }
    // The collection set the count right: now c fits.
    c.push_blobs(&v2, "team/a");
    v2.push_manifest("team/a", "2", OCI_MANIFEST, &c.manifest);
    assert_eq!(used(metrics) as usize, a.size() + c.size());
    // A repository deleted gives back all it counts.
    let resp = v2.delete("/v2/team/a/_registry-v1/repository");
    assert_eq!(resp.status(), 202);
    assert_eq!(used(metrics) as usize, 0);
}

#[test]
fn a_quota_bounds_a_namespace_on_local_disk() {
    bounds_a_namespace(Backend::local());
}

#[test]
fn a_quota_bounds_a_namespace_on_s3() {
    let Some(backend) = Backend::s3() else {
        eprintln!("\nSKIPPED: no S3 server (moto_server) for the quota test\n");
        return;
    };
    bounds_a_namespace(backend);
}

/// skopeo is told why: its push fails naming the quota, and the image is
/// not there.
#[test]
fn skopeo_is_told_of_the_quota() {
    if !tool_available("skopeo", login_support::INSTALL_CLIENTS) {
        panic!(
            "skopeo is not installed: {}",
            login_support::INSTALL_CLIENTS
        );
    }
    let backend = Backend::local();
    let (_dir, env, _) = config(&backend);
    let registry = common::Registry::start(&pairs(&env));
    let v2 = V2::new(&registry);
    // All but 100 bytes of the quota: no image fits beside it.
    let probe = Image::sized("all of it", 0);
    let big = Image::sized("all of it", 50 * MIB - 100 - probe.size());
    assert!(big.size() <= 50 * MIB - 90, "{}", big.size());
    big.push_blobs(&v2, "team/base");
    v2.push_manifest("team/base", "1", OCI_MANIFEST, &big.manifest);
    let dir = tempfile::tempdir().unwrap();
    let layout = login_support::Layout::write(&dir.path().join("img"), "over the quota");
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            &layout.reference(),
            &format!("docker://127.0.0.1:{}/team/app:1", registry.port),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a push past the quota: {stderr}");
    assert!(
        stderr.contains("denied") && stderr.contains("quota"),
        "{stderr}"
    );
    assert_eq!(v2.get_manifest("/v2/team/app/manifests/1").status(), 404);
}

/// Four clients push 8 MiB images into `team/*` at once, 12 in all: as
/// many are accepted as fit, every accepted one pulls whole, and what the
/// namespace holds never passes 50 MiB.
#[test]
fn clients_at_once_never_pass_the_bound() {
    let backend = Backend::local();
    let (_dir, env, metrics) = config(&backend);
    let registry = common::Registry::start(&pairs(&env));
    let base = registry.url("");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let base = base.clone();
            std::thread::spawn(move || {
                let v2 = V2::at(base);
                let mut accepted = Vec::new();
                for i in 0..3 {
                    let image = Image::new(&format!("race {t} {i}"), 8);
                    let name = format!("team/r{t}");
                    image.push_blobs(&v2, &name);
                    let resp =
                        v2.put_manifest(&name, &format!("{i}"), OCI_MANIFEST, &image.manifest);
                    match resp.status().as_u16() {
                        201 => accepted.push((name, i, image)),
                        403 => {}
                        other => panic!("{other}: {:?}", resp.text()),
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: Vec<(String, i32, Image)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let total: usize = accepted.iter().map(|(_, _, image)| image.size()).sum();
    assert!(total <= 50 * MIB, "{total} bytes accepted");
    assert!(accepted.len() >= 5, "only {} accepted", accepted.len());
    assert_eq!(used(metrics) as usize, total);
    let v2 = V2::new(&registry);
    for (name, i, image) in &accepted {
        let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{i}"));
        assert_eq!(resp.bytes().unwrap().to_vec(), image.manifest);
        let layer = v2.get(&format!("/v2/{name}/blobs/{}", sha256(&image.layer)));
        assert!(layer.bytes().unwrap() == image.layer);
    }
}

/// A v1 tar layer: one file of `len` bytes made of `label`.
fn v1_layer(label: &str, len: usize) -> Vec<u8> {
    let data = unique_bytes(label, len);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "data.bin", data.as_slice())
        .unwrap();
    builder.into_inner().unwrap()
}

/// v1 pushes count as v2 pushes do, in the same namespace bound: the tag's
/// PUT is refused with 403 naming the quota and no tag is written; an
/// image under two tags counts once, a parent shared by two repositories
/// in both; a repository deleted gives back what it counts, and the
/// collection counts the v1 tree as it finds it.
#[test]
fn v1_pushes_count_in_the_same_bound() {
    let backend = Backend::local();
    let (_dir, env, metrics) = config(&backend);
    let registry = common::Registry::start(&pairs(&env));
    let base = |path: &str| registry.url(path);
    let (json, _) =
        common::v1_fixture("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158");
    let (base_id, app_id, big_id) = ("a1".repeat(32), "b2".repeat(32), "c3".repeat(32));
    let base_layer = v1_layer("v1 base", 15 * MIB);
    let app_layer = v1_layer("v1 app", 5 * MIB);
    let big_layer = v1_layer("v1 big", 10 * MIB);
    let base_json = common::v1_json(json.clone(), &base_id, None);
    let app_json = common::v1_json(json.clone(), &app_id, Some(&base_id));
    let big_json = common::v1_json(json, &big_id, Some(&base_id));
    let images = || {
        [
            common::V1Upload {
                id: &base_id,
                json: &base_json,
                layer: &base_layer,
            },
            common::V1Upload {
                id: &app_id,
                json: &app_json,
                layer: &app_layer,
            },
        ]
    };

    common::push_v1(&base, "team/old", &images(), "1");
    let charged = base_layer.len() + app_layer.len();
    assert_eq!(used(metrics) as usize, charged);
    // The same image under another tag counts nothing more.
    common::push_v1(&base, "team/old", &images(), "2");
    assert_eq!(used(metrics) as usize, charged);
    // A v2 image of 20 MiB fits beside it: 40 of 50 MiB.
    let v2 = V2::new(&registry);
    let image = Image::new("v2 beside v1", 20);
    image.push_blobs(&v2, "team/new");
    v2.push_manifest("team/new", "1", OCI_MANIFEST, &image.manifest);
    let charged = charged + image.size();
    assert_eq!(used(metrics) as usize, charged);

    // The shared base counts again in another repository: 15 + 10 MiB
    // more does not fit. The tag's PUT says why; no tag is written.
    let http = common::client();
    let ok = |resp: reqwest::blocking::Response| assert!(resp.status().is_success(), "{resp:?}");
    ok(http
        .put(base(&format!("/v1/images/{big_id}/json")))
        .body(big_json.clone())
        .send()
        .unwrap());
    ok(http
        .put(base(&format!("/v1/images/{big_id}/layer")))
        .body(big_layer.clone())
        .send()
        .unwrap());
    ok(http
        .put(base(&format!("/v1/images/{big_id}/checksum")))
        .header(
            "X-Docker-Checksum-Payload",
            common::v1_checksum(&big_json, &big_layer),
        )
        .send()
        .unwrap());
    let tag_big = || {
        http.put(base("/v1/repositories/team/big/tags/1"))
            .body(format!("\"{big_id}\""))
            .send()
            .unwrap()
    };
    let refused = tag_big();
    assert_eq!(refused.status(), 403);
    let text = refused.text().unwrap();
    assert!(
        text.contains("quota `repositories: team/*`") && text.contains("25.0 MiB more"),
        "{text}"
    );
    let tag = http
        .get(base("/v1/repositories/team/big/tags/1"))
        .send()
        .unwrap();
    assert_eq!(tag.status(), 404, "no tag written");
    assert_eq!(used(metrics) as usize, charged, "nothing charged");

    // Deleting the v1 repository gives back what it counts: now it fits.
    let deleted = http
        .delete(base("/v1/repositories/team/old/"))
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(used(metrics) as usize, image.size());
    assert_eq!(tag_big().status(), 200);
    let charged = image.size() + base_layer.len() + big_layer.len();
    assert_eq!(used(metrics) as usize, charged);

    // The collection counts both trees as it finds them: the same.
    std::thread::sleep(RECORD_WINDOW);
    gc(&env);
    let digest = sha256(b"team/*");
    let key = &hex_of(&digest)[..16];
    let usage: serde_json::Value = serde_json::from_slice(
        &backend
            .read_stored(&format!("_quotas/{key}/usage"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(usage["bytes"].as_u64(), Some(charged as u64), "{usage}");
}

/// kill -9 of the registry at random points while a client pushes into
/// `team/*`, five times: after each, the usage counts at least what is
/// served (a push cut short may count, a served one always does), and a
/// collection then sets it to exactly what is served.
#[test]
fn kill_9_during_pushes_never_counts_too_little() {
    let backend = Backend::local();
    let (_dir, env, _) = config(&backend);
    let digest = sha256(b"team/*");
    let usage_key = format!("_quotas/{}/usage", &hex_of(&digest)[..16]);
    let usage = || -> u64 {
        backend
            .read_stored(&usage_key)
            .map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
            .and_then(|v| v["bytes"].as_u64())
            .unwrap_or(0)
    };
    // What the served images count: each manifest a repository links (by
    // tag, or by digest alone: a push killed before its tag), its config
    // and layer.
    let root = backend.storage_path().unwrap().join(V2_ROOT);
    let served = |v2: &V2| -> u64 {
        let mut total = 0;
        for round in 0..5 {
            let name = format!("team/k{round}");
            let revisions = root.join(format!("repositories/{name}/_manifests/revisions/sha256"));
            let Ok(entries) = std::fs::read_dir(&revisions) else {
                continue;
            };
            for entry in entries {
                let hex = entry.unwrap().file_name().into_string().unwrap();
                let resp = v2.get_manifest(&format!("/v2/{name}/manifests/sha256:{hex}"));
                // A folder whose link the kill cut off serves nothing.
                if resp.status() == 404 {
                    continue;
                }
                assert_eq!(resp.status(), 200);
                let manifest = resp.bytes().unwrap();
                let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
                total += manifest.len() as u64
                    + parsed["config"]["size"].as_u64().unwrap()
                    + parsed["layers"][0]["size"].as_u64().unwrap();
            }
        }
        total
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for round in 0..5 {
        let registry = common::Registry::start(&pairs(&env));
        let base = registry.url("");
        let pusher = std::thread::spawn(move || {
            let v2 = V2::at(base);
            for i in 0.. {
                let image = Image::sized(&format!("kill {round} {i}"), 64 * 1024);
                let name = format!("team/k{round}");
                // The registry goes away mid-push: the thread ends there.
                let pushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    image.push_blobs(&v2, &name);
                    v2.put_manifest(&name, &format!("{i}"), OCI_MANIFEST, &image.manifest)
                        .status()
                }));
                if !matches!(pushed, Ok(s) if s == 201) {
                    return i;
                }
            }
            unreachable!()
        });
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(100 + (seed >> 33) % 400));
        drop(registry);
        let pushes = pusher.join().unwrap();
        eprintln!("round {round}: killed after {pushes} pushes");
    }
    // And for sure once: a push cut between its revision folder and its
    // link (the folder stays, with its tags gone).
    let manifests = root.join("repositories/team/k0/_manifests");
    let cut = std::fs::read_dir(manifests.join("revisions/sha256"))
        .unwrap()
        .next()
        .expect("a push in the first round")
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    // (A kill may have cut this one already, or a tag before its link.)
    let _ = std::fs::remove_file(manifests.join(format!("revisions/sha256/{cut}/link")));
    for tag in std::fs::read_dir(manifests.join("tags")).unwrap() {
        let tag = tag.unwrap().path();
        let current = std::fs::read_to_string(tag.join("current/link")).unwrap_or_default();
        if current == format!("sha256:{cut}") {
            std::fs::remove_dir_all(tag).unwrap();
        }
    }
    let registry = common::Registry::start(&pairs(&env));
    let v2 = V2::new(&registry);
    let (counted, expected) = (usage(), served(&v2));
    assert!(expected > 0, "nothing was pushed");
    assert!(
        counted >= expected,
        "{counted} bytes counted, {expected} served"
    );
    gc(&env);
    assert_eq!(usage(), expected, "the collection counts what is served");
}
