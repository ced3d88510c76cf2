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
