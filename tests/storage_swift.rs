//! The registry on OpenStack Swift, end to end: a real Swift on loopback
//! (`storage_support::swift_server`, Debian's servers), the binary started
//! with the old sample's `swift` flavor, real clients (skopeo, the docker
//! engine where the machine runs one). The driver's own contract is the
//! shared suite's (`storage_drivers.rs`, module `swift`).

mod common;
mod v2_support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use v2_support::swift_server;
use v2_support::*;

const INSTALL_CLIENTS: &str = ".ci/install-v2-clients.sh";

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Random bytes: a layer no compression shrinks below a segment.
fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

/// An OCI layout of one image whose layers are `layers`, tagged `latest`.
fn write_layout(dir: &std::path::Path, layers: &[Vec<u8>]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let blob = |data: &[u8]| {
        std::fs::write(dir.join("blobs/sha256").join(hex_of(&sha256(data))), data).unwrap();
    };
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>()},
    }))
    .unwrap();
    let manifest = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    }));
    for layer in layers {
        blob(layer);
    }
    blob(&config);
    blob(&manifest);
    let mut d = descriptor(OCI_MANIFEST, &manifest);
    d["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let top = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

fn skopeo_copy(from: &str, to: &str) {
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ],
    );
}

/// skopeo pushes an image of a small layer and one of 20 MiB (a large
/// object of three segments) and pulls it back byte for byte; the
/// registry made its container at start, and the large layer's segments
/// are those its manifest names, nothing left of the upload.
#[test]
fn skopeo_pushes_and_pulls_through_swift() {
    if !tool_available("skopeo", INSTALL_CLIENTS) {
        return;
    }
    let Some(backend) = Backend::swift() else {
        return;
    };
    let Backend::Swift { container } = &backend else {
        unreachable!()
    };
    let server = swift_server::server().unwrap();
    assert!(server.names(container).is_empty(), "no container yet");
    let registry = backend.start(&[]);
    let work = tempfile::tempdir().unwrap();
    // Compressed, as their media type says (skopeo compresses what is
    // not, and the digests would change).
    let layers = vec![gzip(&random_bytes(3000)), gzip(&random_bytes(20 << 20))];
    write_layout(&work.path().join("in"), &layers);
    let target = format!("docker://127.0.0.1:{}/swift/app:latest", registry.port);
    skopeo_copy(
        &format!("oci:{}:latest", work.path().join("in").display()),
        &target,
    );
    let out = work.path().join("out");
    skopeo_copy(&target, &format!("oci:{}:latest", out.display()));
    for layer in &layers {
        let path = out.join("blobs/sha256").join(hex_of(&sha256(layer)));
        let pulled = std::fs::read(&path).unwrap_or_else(|e| {
            let listed: Vec<_> = std::fs::read_dir(out.join("blobs/sha256"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            panic!("{}: {e}; the layout has {listed:?}", path.display())
        });
        assert!(
            pulled == *layer,
            "a layer of {} bytes came back changed",
            layer.len()
        );
    }

    // The layers sit where distribution puts them, under storage_path.
    let keys = backend.stored_keys();
    let big_digest = sha256(&layers[1]);
    let big = hex_of(&big_digest);
    let data = format!("docker/registry/v2/blobs/sha256/{}/{big}/data", &big[..2]);
    assert!(keys.contains(&data), "{keys:?}");
    assert!(!keys.iter().any(|k| k.ends_with(".writer")), "{keys:?}");
    // Its segments: 8 MiB, 8 MiB and the rest, all named by its manifest.
    let segments = server.names(&format!("{container}_segments"));
    let segments: Vec<&String> = segments
        .iter()
        .filter(|s| !s.starts_with("_locks/"))
        .collect();
    assert_eq!(segments.len(), 3, "{segments:?}");
    assert!(backend.outside().is_empty(), "{:?}", backend.outside());
}

fn docker_engine_answers() -> bool {
    let out = Command::new("timeout")
        .args(["20", "docker", "info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    matches!(out, Ok(out) if out.status.success() && !out.stdout.trim_ascii().is_empty())
}

/// The docker engine pushes an image with a 12 MiB layer and pulls it
/// back by digest.
#[test]
fn the_docker_engine_pushes_and_pulls_through_swift() {
    if !docker_engine_answers() {
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: docker engine not available (`docker info` fails)\n"
        );
        return;
    }
    let Some(backend) = Backend::swift() else {
        return;
    };
    let registry = backend.start(&[]);
    let repo = format!("127.0.0.1:{}/swift/docker-{}", registry.port, rand_suffix());
    let image = format!("{repo}:v1");
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("payload"), random_bytes(12 << 20)).unwrap();
    let tar = work.path().join("rootfs.tar");
    run(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    run("docker", &["import", tar.to_str().unwrap(), &image]);
    let pushed = run("docker", &["push", &image]);
    let digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .expect("a digest in docker push's output")
        .to_owned();
    run("docker", &["rmi", "-f", &image]);
    let by_digest = format!("{repo}@{digest}");
    run("docker", &["pull", &by_digest]);
    run("docker", &["rmi", "-f", &by_digest]);
}

/// A v1 push lands where the old registry's Swift driver put it:
/// `<storage_path>/images/<id>/...`, `<storage_path>/repositories/...`.
#[test]
fn a_v1_push_lands_where_the_old_swift_driver_put_it() {
    let Some(backend) = Backend::swift() else {
        return;
    };
    let registry = backend.start(&[]);
    let (json, layer) =
        common::v1_fixture("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158");
    let id = "a".repeat(64);
    let json = common::v1_json(json, &id, None);
    common::push_v1(
        &|path: &str| registry.url(path),
        "old/app",
        &[common::V1Upload {
            id: &id,
            json: &json,
            layer: &layer,
        }],
        "latest",
    );
    let keys = backend.stored_keys();
    for key in [
        format!("images/{id}/json"),
        format!("images/{id}/layer"),
        format!("images/{id}/ancestry"),
        "repositories/old/app/tag_latest".to_owned(),
        "repositories/old/app/_index_images".to_owned(),
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    assert_eq!(
        backend.read_stored(&format!("images/{id}/layer")).unwrap(),
        layer
    );
    let got = common::client()
        .get(registry.url(&format!("/v1/images/{id}/layer")))
        .send()
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().unwrap() == layer);
}

/// A refused login stops the start with a message that names the flavor
/// and the auth service, never the password.
#[test]
fn a_wrong_password_stops_the_start() {
    let Some(server) = swift_server::server() else {
        return;
    };
    let mut env = server.registry_env("never-made");
    for (key, value) in &mut env {
        if key == "OS_PASSWORD" {
            *value = "not-the-key".to_owned();
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = common::run(&["serve"], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flavor `swift`") && err.contains(&server.auth_url()) && err.contains("401"),
        "{err}"
    );
    assert!(!err.contains("not-the-key"), "{err}");
}

/// With `storage_redirect` and a temp-URL key on the account, a blob
/// download is a redirect to a temp URL that serves it.
#[test]
fn downloads_redirect_to_temp_urls() {
    let Some(backend) = Backend::swift() else {
        return;
    };
    let server = swift_server::server().unwrap();
    let (token, url) = server.login();
    let status = reqwest::blocking::Client::new()
        .post(&url)
        .header("X-Auth-Token", token)
        .header("X-Account-Meta-Temp-URL-Key", "storage-swift-key")
        .send()
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let registry = backend.start(&[("STORAGE_REDIRECT", "true")]);
    let v2 = V2::new(&registry);
    let data = random_bytes(100_000);
    let digest = v2.push_blob("swift/redirected", &data);
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects
        .get(registry.url(&format!("/v2/swift/redirected/blobs/{digest}")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 307);
    let location = header(&resp, "location").unwrap();
    assert!(
        location.starts_with(&url) && location.contains("temp_url_sig="),
        "{location}"
    );
    let fetched = no_redirects.get(&location).send().unwrap();
    assert_eq!(fetched.status(), 200);
    assert!(fetched.bytes().unwrap() == data);
}

/// Two registries on one container: v1 images pushed through both at
/// once into one repository are all in its image list (each instance
/// merges the list under the driver's lock object: none overwrites
/// another's).
#[test]
fn two_instances_on_one_container_lose_no_image() {
    let Some(backend) = Backend::swift() else {
        return;
    };
    let first = backend.start(&[]);
    let second = backend.start(&[]);
    let (json, layer) =
        common::v1_fixture("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158");
    let ids: Vec<String> = (0..8).map(|i| format!("{i:x}").repeat(64)).collect();
    std::thread::scope(|scope| {
        for (i, id) in ids.iter().enumerate() {
            let registry = if i % 2 == 0 { &first } else { &second };
            let (json, layer) = (json.clone(), layer.clone());
            scope.spawn(move || {
                let json = common::v1_json(json, id, None);
                common::push_v1(
                    &|path: &str| registry.url(path),
                    "shared/app",
                    &[common::V1Upload {
                        id,
                        json: &json,
                        layer: &layer,
                    }],
                    &format!("t{i}"),
                );
                // The end of a v1 push: the repository's image list.
                let resp = common::client()
                    .put(registry.url("/v1/repositories/shared/app/images"))
                    .body(json!([{ "id": id }]).to_string())
                    .send()
                    .unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
            });
        }
    });
    let listed: Vec<serde_json::Value> = common::client()
        .get(first.url("/v1/repositories/shared/app/images"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut listed: Vec<String> = listed
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ids);
}

// --- the old registry's Swift driver on the same container ------------------------

/// The old Python registry 0.9.1 (`.ci/install-legacy-peer.sh`) with its
/// Swift driver (docker-registry-driver-swift 0.2.1), the old sample's
/// `swift` flavor on the test Swift; stopped when dropped.
struct OldRegistryOnSwift {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl OldRegistryOnSwift {
    /// The peer's folder, or `None` (skipped; under CI a failure).
    fn root() -> Option<std::path::PathBuf> {
        let root = std::path::PathBuf::from(
            std::env::var("LEGACY_PEER_ROOT").unwrap_or_else(|_| "/tmp/peers/pyreg".into()),
        );
        if root.join("src/docker_registry/drivers/swift.py").exists() {
            return Some(root);
        }
        let install = ".ci/install-legacy-peer.sh";
        if std::env::var_os("CI").is_some() {
            panic!("the legacy peer's Swift driver is required under CI (add it with {install})");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: the legacy peer's Swift driver is not there (add it with {install})\n"
        );
        None
    }

    fn start(root: &std::path::Path, backend: &Backend) -> OldRegistryOnSwift {
        let dir = tempfile::tempdir().unwrap();
        // The old sample as it is, and a flavor on its `swift` one: the
        // driver's Keystone default (auth 2) is no tempauth's.
        let sample = std::fs::read_to_string(root.join("src/config/config_sample.yml")).unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!("{sample}\nswift-v1:\n    <<: *swift\n    swift_auth_version: 1\n"),
        )
        .unwrap();
        let port = common::free_port();
        let log = dir.path().join("peer.log");
        let child = Command::new(root.join("venv/bin/gunicorn"))
            .args(["-k", "gevent", "-w", "1", "-t", "600", "-b"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("docker_registry.wsgi:application")
            .envs(backend.env())
            .env("SETTINGS_FLAVOR", "swift-v1")
            .env("DOCKER_REGISTRY_CONFIG", &config)
            .env("SEARCH_BACKEND", "sqlalchemy")
            .env(
                "SQLALCHEMY_INDEX_DATABASE",
                format!("sqlite:///{}", dir.path().join("index.db").display()),
            )
            .env("PYTHONPATH", root.join("src"))
            .env("PYTHONWARNINGS", "ignore::DeprecationWarning")
            // Its exclusive lock file goes in the working folder.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the old registry");
        let mut peer = OldRegistryOnSwift {
            port,
            child,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!(
                    "the old registry exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(resp) = common::client().get(peer.url("/_ping")).send() {
                if resp.status() == 200 {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the old registry did not answer in 60 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        peer
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for OldRegistryOnSwift {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A two-image chain of the shared fixtures under fresh ids: (id, json,
/// layer), base first.
fn v1_chain(tag: u8) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let base_id = format!("{tag:02x}").repeat(32);
    let child_id = format!("{:02x}", tag.wrapping_add(1)).repeat(32);
    let (base_json, base_layer) =
        common::v1_fixture("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158");
    let (child_json, child_layer) =
        common::v1_fixture("46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457");
    vec![
        (
            base_id.clone(),
            common::v1_json(base_json, &base_id, None),
            base_layer,
        ),
        (
            child_id.clone(),
            common::v1_json(child_json, &child_id, Some(&base_id)),
            child_layer,
        ),
    ]
}

fn push_chain(base: &dyn Fn(&str) -> String, repo: &str, chain: &[(String, Vec<u8>, Vec<u8>)]) {
    let uploads: Vec<_> = chain
        .iter()
        .map(|(id, json, layer)| common::V1Upload { id, json, layer })
        .collect();
    common::push_v1(base, repo, &uploads, "latest");
}

/// What a v1 client pulls of `repo:latest` from `base`: the tag names the
/// chain's top, each image's ancestry, json id and layer bytes are the
/// chain's.
fn check_chain(
    who: &str,
    base: &dyn Fn(&str) -> String,
    repo: &str,
    chain: &[(String, Vec<u8>, Vec<u8>)],
) {
    let http = common::client();
    let get = |path: &str| {
        let resp = http.get(base(path)).send().unwrap();
        assert_eq!(resp.status(), 200, "{who}: GET {path}");
        resp
    };
    let tags: serde_json::Value = get(&format!("/v1/repositories/{repo}/tags"))
        .json()
        .unwrap();
    assert_eq!(tags, json!({"latest": chain[1].0}), "{who}");
    for (n, (id, _, layer)) in chain.iter().enumerate() {
        let ancestry: Vec<String> = get(&format!("/v1/images/{id}/ancestry")).json().unwrap();
        let mut expected: Vec<String> = chain[..=n].iter().map(|i| i.0.clone()).collect();
        expected.reverse();
        assert_eq!(ancestry, expected, "{who}: ancestry of {id}");
        let json: serde_json::Value = get(&format!("/v1/images/{id}/json")).json().unwrap();
        assert_eq!(json["id"], json!(id), "{who}");
        let got = get(&format!("/v1/images/{id}/layer")).bytes().unwrap();
        assert!(got == *layer, "{who}: layer of {id}");
    }
}

/// The old registry with its own Swift driver and registry-v1 on one
/// container: each serves what the other pushed, over v1, and what the
/// old one pushed pulls over v2 through the bridge.
#[test]
fn the_old_registry_with_its_swift_driver_shares_the_container() {
    let Some(backend) = Backend::swift() else {
        return;
    };
    let Some(root) = OldRegistryOnSwift::root() else {
        return;
    };
    // Ours first: it creates the container the old driver expects.
    let ours = backend.start(&[]);
    let theirs = OldRegistryOnSwift::start(&root, &backend);
    let (from_us, from_them) = (v1_chain(0x10), v1_chain(0x20));
    push_chain(&|p: &str| ours.url(p), "ours/app", &from_us);
    push_chain(&|p: &str| theirs.url(p), "theirs/app", &from_them);
    check_chain(
        "the old registry",
        &|p: &str| theirs.url(p),
        "ours/app",
        &from_us,
    );
    check_chain(
        "registry-v1",
        &|p: &str| ours.url(p),
        "theirs/app",
        &from_them,
    );
    // Both trees of ours on what the old one wrote.
    let v2 = V2::new(&ours);
    let resp = v2.get_manifest("/v2/theirs/app/manifests/latest");
    assert_eq!(resp.status(), 200);
    let manifest: serde_json::Value = resp.json().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{manifest}");
    let digest = layers[1]["digest"].as_str().unwrap();
    let resp = v2.get(&format!("/v2/theirs/app/blobs/{digest}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(sha256(&resp.bytes().unwrap()), digest);
}

// --- distribution 2.8.2's Swift driver on the same container -----------------------

/// An image of a config, a small layer and one of 20 MiB (a large object
/// on Swift for both registries), pushed to `v2` as `repo:tag`; its
/// manifest digest and blobs.
fn push_large_image(v2: &V2, repo: &str, label: &str) -> (String, Vec<Vec<u8>>) {
    let small = ImageBlobs::new(label, "amd64");
    let large = unique_bytes(label, 20 << 20);
    small.push(v2, repo);
    v2.push_blob(repo, &large);
    let manifest = manifest_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &small.config),
        "layers": [descriptor(DOCKER_LAYER, &small.layer), descriptor(DOCKER_LAYER, &large)],
    }));
    let digest = v2.push_manifest(repo, "v1", DOCKER_MANIFEST, &manifest);
    (digest, vec![small.config, small.layer, large])
}

/// `repo:v1` answers from `v2` with `digest`, by tag and by digest, and
/// each blob with its bytes.
fn check_large_image(who: &str, v2: &V2, repo: &str, digest: &str, blobs: &[Vec<u8>]) {
    for reference in ["v1", digest] {
        let resp = v2.get_manifest(&format!("/v2/{repo}/manifests/{reference}"));
        assert_eq!(resp.status(), 200, "{who}: {repo}:{reference}");
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(digest),
            "{who}"
        );
    }
    for blob in blobs {
        let digest = sha256(blob);
        let resp = v2.head(&format!("/v2/{repo}/blobs/{digest}"));
        assert_eq!(resp.status(), 200, "{who}: HEAD {digest}");
        assert_eq!(
            header(&resp, "content-length"),
            Some(blob.len().to_string()),
            "{who}: size of {digest}"
        );
        let resp = v2.get(&format!("/v2/{repo}/blobs/{digest}"));
        assert_eq!(resp.status(), 200, "{who}: GET {digest}");
        assert!(resp.bytes().unwrap() == *blob, "{who}: bytes of {digest}");
    }
}

/// distribution 2.8.2 with its Swift driver (Debian's build carries it)
/// and registry-v1 on one container: each serves what the other pushed,
/// large objects included (ours static, distribution's dynamic).
/// distribution keeps its tree under `<prefix>/files`: that is our
/// `storage_path`.
#[test]
fn distribution_with_its_swift_driver_shares_the_container() {
    let Some(backend) = Backend::swift() else {
        return;
    };
    if !tool_available("docker-registry", INSTALL_CLIENTS) {
        return;
    }
    let Backend::Swift { container } = &backend else {
        unreachable!("a Swift backend")
    };
    let server = swift_server::server().unwrap();
    let ours = backend.start(&[("STORAGE_PATH", "/shared/files")]);
    let theirs = distribution::Distribution::start_on(
        &format!(
            "  swift:\n    authurl: {}\n    username: {}\n    password: {}\n    \
             container: {container}\n    prefix: /shared\n",
            server.auth_url(),
            swift_server::USER,
            swift_server::KEY
        ),
        "",
        common::free_port(),
    );
    let (ours_v2, theirs_v2) = (V2::new(&ours), theirs.v2());
    let (digest, blobs) = push_large_image(&ours_v2, "swift/ours", "pushed by registry-v1");
    check_large_image("distribution", &theirs_v2, "swift/ours", &digest, &blobs);
    let (digest, blobs) = push_large_image(&theirs_v2, "swift/theirs", "pushed by distribution");
    check_large_image("registry-v1", &ours_v2, "swift/theirs", &digest, &blobs);
    // A delete of ours reads right in distribution.
    let resp = ours_v2.delete(&format!("/v2/swift/theirs/manifests/{digest}"));
    assert_eq!(resp.status(), 202);
    let resp = theirs_v2.get_manifest(&format!("/v2/swift/theirs/manifests/{digest}"));
    assert_eq!(resp.status(), 404, "distribution sees our delete");
}

/// The old sample's `swift` flavor as an OpenStack user fills it in, with
/// Keystone v3 (a real one): the registry logs in with the user and
/// project, finds the object store in the catalog by region, and an image
/// with a large layer goes in and out.
#[test]
fn keystone_v3_through_the_old_samples_swift_flavor() {
    if swift_server::server().is_none() {
        return;
    }
    let server = match swift_server::start_with(&["--keystone"]) {
        Ok(server) => server,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("Keystone (.ci/install-keystone.sh): {why}")
        }
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: no Keystone ({why}; .ci/install-keystone.sh)\n"
            );
            return;
        }
    };
    let keystone = server.keystone_port.expect("Keystone's port");
    let auth_url = format!("http://127.0.0.1:{keystone}/v3");
    let registry = common::Registry::start(&[
        ("SETTINGS_FLAVOR", "swift"),
        ("OS_AUTH_URL", &auth_url),
        ("OS_CONTAINER", "by-keystone"),
        ("OS_USERNAME", swift_server::KEYSTONE_USER),
        ("OS_PASSWORD", swift_server::KEYSTONE_PASSWORD),
        ("OS_TENANT_NAME", swift_server::KEYSTONE_PROJECT),
        ("OS_REGION_NAME", swift_server::KEYSTONE_REGION),
        ("STORAGE_PATH", "/registry"),
    ]);
    let v2 = V2::new(&registry);
    let (digest, blobs) = push_large_image(&v2, "keystone/app", "pushed with Keystone");
    check_large_image("registry-v1", &v2, "keystone/app", &digest, &blobs);
    assert!(
        !registry.log().contains(swift_server::KEYSTONE_PASSWORD),
        "the password in the log"
    );
    // In the project's account: tempauth's has no such container.
    assert!(server.names("by-keystone").is_empty());
}
