//! v1 images for today's clients: the fixtures pushed over v1 as docker
//! 1.x pushes them, then pulled over v2 (reqwest on both drivers; skopeo,
//! podman and the docker engine on local disk), the same digests on every
//! pull and after a restart; and the names rule (`/v2/x` reaches the v1
//! `library/x`).

#[macro_use]
mod common;
mod v2_support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use v2_support::distribution;
use v2_support::*;

const BASE: &str = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";
const CHILD: &str = "46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457";
const INSTALL: &str = ".ci/install-v2-clients.sh";

/// A v1 image as a client pushes it, and the tar inside its layer.
#[derive(Clone)]
struct V1Image {
    id: String,
    json: Vec<u8>,
    layer: Vec<u8>,
    tar: Vec<u8>,
}

fn random_id() -> String {
    hex_of(&sha256(&unique_bytes("id", 32))).to_owned()
}

fn image(id: &str, parent: Option<&str>, json: Value, layer: Vec<u8>, tar: Vec<u8>) -> V1Image {
    V1Image {
        id: id.to_owned(),
        json: common::v1_json(json, id, parent),
        layer,
        tar,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(data).unwrap();
    xz.finish().unwrap()
}

/// The chain, base first: the two fixtures as stored (plain tars), the
/// child's tar gzip-compressed as docker 1.x pushed layers, an empty
/// gzip'd layer (a `docker build` step that changed no file), and the
/// xattr fixture compressed with xz on top.
fn chain() -> Vec<V1Image> {
    let (base_json, base_tar) = common::v1_fixture(BASE);
    let (child_json, child_tar) = common::v1_fixture(CHILD);
    let (xattr_json, xattr_tar) = common::v1_fixture("xattr");
    let (gz_id, empty_id, top_id) = (random_id(), random_id(), random_id());
    let empty_tar = vec![0u8; 1024];
    let mut empty_json = child_json.clone();
    empty_json["container_config"]["Cmd"] = json!(["/bin/sh", "-c", "#(nop) ENV X=1"]);
    vec![
        image(BASE, None, base_json, base_tar.clone(), base_tar),
        image(
            CHILD,
            Some(BASE),
            child_json.clone(),
            child_tar.clone(),
            child_tar.clone(),
        ),
        image(&gz_id, Some(CHILD), child_json, gzip(&child_tar), child_tar),
        image(
            &empty_id,
            Some(&gz_id),
            empty_json,
            gzip(&empty_tar),
            empty_tar,
        ),
        image(
            &top_id,
            Some(&empty_id),
            xattr_json,
            xz(&xattr_tar),
            xattr_tar,
        ),
    ]
}

/// docker 1.x's push of `images` to `registry`.
fn push_v1(registry: &common::Registry, repo: &str, images: &[V1Image], tag: &str) {
    push_to(&|path: &str| registry.url(path), repo, images, tag);
}

/// docker 1.x's push of `images` to the v1 API at `base`.
fn push_to(base: &dyn Fn(&str) -> String, repo: &str, images: &[V1Image], tag: &str) {
    let uploads: Vec<_> = images
        .iter()
        .map(|image| common::V1Upload {
            id: &image.id,
            json: &image.json,
            layer: &image.layer,
        })
        .collect();
    common::push_v1(base, repo, &uploads, tag);
}

/// The manifest of `name:reference` over v2: its digest and document.
fn manifest_of(v2: &V2, name: &str, reference: &str) -> (String, Value, Vec<u8>) {
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{reference}"));
    assert_eq!(resp.status(), 200, "manifest of {name}:{reference}");
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_MANIFEST));
    let digest = header(&resp, "docker-content-digest").unwrap();
    let bytes = resp.bytes().unwrap().to_vec();
    assert_eq!(sha256(&bytes), digest);
    (digest, serde_json::from_slice(&bytes).unwrap(), bytes)
}

fn blob(v2: &V2, name: &str, digest: &str) -> Vec<u8> {
    let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(resp.status(), 200, "blob {digest} of {name}");
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest)
    );
    let bytes = resp.bytes().unwrap().to_vec();
    assert_eq!(sha256(&bytes), digest, "bytes of blob {digest}");
    bytes
}

/// What the bridge must answer for `chain`: checked on the manifest, the
/// config and every blob.
fn check_image(v2: &V2, name: &str, chain: &[V1Image], manifest: &Value) {
    let layers = manifest["layers"].as_array().unwrap();
    // The empty layer (index 3) is no layer of the manifest.
    let served: Vec<&V1Image> = chain
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, c)| c)
        .collect();
    assert_eq!(layers.len(), served.len(), "{manifest}");
    let expected = [
        (
            sha256(&chain[0].layer),
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            sha256(&chain[1].layer),
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (sha256(&chain[2].layer), OCI_LAYER),
        // xz: the tar inside it.
        (
            sha256(&chain[4].tar),
            "application/vnd.oci.image.layer.v1.tar",
        ),
    ];
    for ((layer, (digest, media_type)), image) in layers.iter().zip(&expected).zip(&served) {
        assert_eq!(layer["digest"], *digest);
        assert_eq!(layer["mediaType"], *media_type);
        let bytes = blob(v2, name, digest);
        assert_eq!(layer["size"], bytes.len() as u64);
        if image.layer != image.tar && *media_type != OCI_LAYER {
            assert_eq!(bytes, image.tar);
        }
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let config: Value = serde_json::from_slice(&blob(v2, name, config_digest)).unwrap();
    let diff_ids: Vec<String> = served.iter().map(|i| sha256(&i.tar)).collect();
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": diff_ids})
    );
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    for key in ["id", "parent", "Size"] {
        assert!(config.get(key).is_none(), "{key} in {config}");
    }
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), chain.len());
    assert_eq!(history[0]["comment"], "Imported from -");
    assert_eq!(history[3]["empty_layer"], true);
    assert_eq!(history[3]["created_by"], "/bin/sh -c #(nop) ENV X=1");
    assert!(history
        .iter()
        .enumerate()
        .all(|(i, h)| (i == 3) == h.get("empty_layer").is_some()));
    assert!(history[4]["created_by"]
        .as_str()
        .unwrap()
        .contains("setcap"));
}

fn v1_tags_pull_over_v2(backend: Backend) {
    let mut registry = backend.start(&[]);
    let chain = chain();
    push_v1(&registry, "ns/app", &chain, "latest");
    // A one-part name, as docker 1.x sent `HOST/test`: stored as library/test.
    push_v1(&registry, "test", &chain[..2], "v1");
    // Each layer's v2 record was written as it streamed in, before any
    // v2 client asked.
    let keys = backend.stored_keys();
    for image in &chain {
        let record: Value = serde_json::from_slice(
            &backend
                .read_stored(&format!("images/{}/_v2", image.id))
                .unwrap_or_else(|| panic!("no _v2 in {keys:?}")),
        )
        .unwrap();
        assert_eq!(record["digest"], sha256(&image.layer));
        assert_eq!(record["diff_id"], sha256(&image.tar));
    }
    let v2 = V2::new(&registry);

    let (digest, manifest, bytes) = manifest_of(&v2, "ns/app", "latest");
    check_image(&v2, "ns/app", &chain, &manifest);
    // By digest, HEAD, a second pull: the same bytes.
    assert_eq!(manifest_of(&v2, "ns/app", &digest).2, bytes);
    assert_eq!(manifest_of(&v2, "ns/app", "latest").2, bytes);
    let head = v2.head_manifest(&format!("/v2/ns/app/manifests/{digest}"));
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );

    // A range of a layer, as a resumed download asks.
    let child = sha256(&chain[1].layer);
    let resp = v2.send(
        v2.request("GET", &format!("/v2/ns/app/blobs/{child}"))
            .header("range", "bytes=10-99"),
    );
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.bytes().unwrap().to_vec(),
        chain[1].layer[10..100].to_vec()
    );

    // The names rule: `test` and `library/test` are the v1 library/test.
    let (short, _, _) = manifest_of(&v2, "test", "v1");
    let (long, _, _) = manifest_of(&v2, "library/test", "v1");
    assert_eq!(short, long);
    blob(&v2, "test", &sha256(&chain[1].layer));
    // Blobs are the repository's own: ns/app's top layer is not test's.
    let top = sha256(&chain[4].tar);
    v2.expect_error(
        v2.get(&format!("/v2/test/blobs/{top}")),
        404,
        "BLOB_UNKNOWN",
        "foreign blob",
    );

    let resp = v2.get("/v2/ns/app/tags/list");
    assert_eq!(
        resp.json::<Value>().unwrap(),
        json!({"name": "ns/app", "tags": ["latest"]})
    );
    let resp = v2.get("/v2/test/tags/list");
    assert_eq!(resp.json::<Value>().unwrap()["tags"], json!(["v1"]));
    let catalog: Value = v2.get("/v2/_catalog").json().unwrap();
    assert_eq!(catalog["repositories"], json!(["library/test", "ns/app"]));
    let page: Value = v2.get("/v2/_catalog?n=1&last=library/test").json().unwrap();
    assert_eq!(page["repositories"], json!(["ns/app"]));

    // What is not there.
    v2.expect_error(
        v2.get_manifest("/v2/ns/app/manifests/nope"),
        404,
        "MANIFEST_UNKNOWN",
        "tag",
    );
    v2.expect_error(
        v2.get_manifest("/v2/nobody/manifests/latest"),
        404,
        "NAME_UNKNOWN",
        "name",
    );
    let stranger = sha256(b"stranger");
    v2.expect_error(
        v2.get_manifest(&format!("/v2/ns/app/manifests/{stranger}")),
        404,
        "MANIFEST_UNKNOWN",
        "digest",
    );
    v2.expect_error(
        v2.get(&format!("/v2/ns/app/blobs/{stranger}")),
        404,
        "BLOB_UNKNOWN",
        "blob",
    );

    // Recorded inside each image's folder, nowhere else in images/.
    let keys = backend.stored_keys();
    for image in &chain {
        assert!(
            keys.contains(&format!("images/{}/_v2", image.id)),
            "{keys:?}"
        );
    }
    assert!(keys.contains(&format!("images/{}/_v2_manifest", chain[4].id)));
    assert!(backend.outside().is_empty(), "{:?}", backend.outside());

    // After a restart, the same digest.
    registry.terminate();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    assert_eq!(manifest_of(&v2, "ns/app", "latest").0, digest);

    // A v2 push of the same tag wins over the v1 tag; v1 clients keep theirs.
    let pushed = ImageBlobs::new("v2 wins", "amd64");
    pushed.push(&v2, "ns/app");
    let v2_digest = v2.push_manifest("ns/app", "latest", OCI_MANIFEST, &pushed.oci_manifest());
    assert_eq!(manifest_of(&v2, "ns/app", "latest").0, v2_digest);
    assert_eq!(manifest_of(&v2, "ns/app", &digest).0, digest);
    let v1_tag: Value = common::client()
        .get(registry.url("/v1/repositories/ns/app/tags/latest"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v1_tag, json!(chain[4].id));

    // The collector removed the top image (its whole folder): what the
    // repository's digest entries name is gone, a plain 404.
    for file in [
        "json",
        "layer",
        "ancestry",
        "_checksum",
        "_v2",
        "_v2_manifest",
        "_v2_config",
        "_v2_layers",
    ] {
        backend.remove_stored(&format!("images/{}/{file}", chain[4].id));
    }
    v2.expect_error(
        v2.get(&format!("/v2/ns/app/blobs/{top}")),
        404,
        "BLOB_UNKNOWN",
        "collected layer",
    );
    let config = manifest["config"]["digest"].as_str().unwrap();
    v2.expect_error(
        v2.get(&format!("/v2/ns/app/blobs/{config}")),
        404,
        "BLOB_UNKNOWN",
        "collected config",
    );
    v2.expect_error(
        v2.get_manifest(&format!("/v2/ns/app/manifests/{digest}")),
        404,
        "MANIFEST_UNKNOWN",
        "collected manifest",
    );
    // The rest of the chain still serves.
    blob(&v2, "ns/app", &sha256(&chain[1].layer));

    // migrate on this driver (S3: server-side copies): test:v1 goes into
    // the v2 tree; ns/app:latest is the v2 push's now, and stays.
    let env = backend.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = common::run(&["migrate"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("migrated 1 tags, 0 already"), "{text}");
    assert!(text.contains("skipped ns/app:latest"), "{text}");
    let hex = hex_of(&sha256(&chain[1].layer)).to_owned();
    let key = format!("{V2_ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2]);
    assert_eq!(
        backend.read_stored(&key).as_deref(),
        Some(&chain[1].layer[..])
    );
    assert_eq!(manifest_of(&v2, "test", "v1").0, short);
}

for_each_backend!(v1_tags_pull_over_v2);

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker_engine_answers() -> bool {
    let out = Command::new("timeout")
        .args(["20", "docker", "info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    matches!(out, Ok(out) if out.status.success() && !out.stdout.trim_ascii().is_empty())
}

/// Removes the docker images a test made, whatever happens.
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

#[test]
fn skopeo_podman_and_docker_pull_v1_images() {
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let chain = chain();
    let repo = format!("bridge/app-{}", rand_suffix());
    push_v1(&registry, &repo, &chain, "latest");
    let host = format!("127.0.0.1:{}", registry.port);
    let reference = format!("{host}/{repo}:latest");
    let diff_ids: Vec<String> = chain
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, c)| sha256(&c.tar))
        .collect();
    let v2 = V2::new(&registry);
    let (digest, _, _) = manifest_of(&v2, &repo, "latest");

    if tool_available("skopeo", INSTALL) {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("copy");
        run(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{reference}"),
                &format!("dir:{}", dir.display()),
            ],
        );
        let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
        assert_eq!(sha256(&manifest), digest);
        let doc: Value = serde_json::from_slice(&manifest).unwrap();
        for layer in doc["layers"].as_array().unwrap() {
            let digest = layer["digest"].as_str().unwrap();
            let bytes = std::fs::read(dir.join(hex_of(digest))).unwrap();
            assert_eq!(sha256(&bytes), digest);
        }
        let inspected: Value = serde_json::from_slice(
            &run(
                "skopeo",
                &[
                    "inspect",
                    "--tls-verify=false",
                    &format!("docker://{reference}"),
                ],
            )
            .stdout,
        )
        .unwrap();
        assert_eq!(inspected["Digest"], digest);
    }

    if tool_available("podman", INSTALL) {
        let root = tempfile::tempdir().unwrap();
        let podman = |args: &[&str]| {
            let mut all = vec![
                "--storage-driver".to_owned(),
                "vfs".to_owned(),
                "--root".to_owned(),
                root.path().join("root").display().to_string(),
                "--runroot".to_owned(),
                root.path().join("run").display().to_string(),
                "--cgroup-manager=cgroupfs".to_owned(),
                "--events-backend=file".to_owned(),
            ];
            all.extend(args.iter().map(|a| a.to_string()));
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            run("podman", &refs)
        };
        podman(&["pull", "--tls-verify=false", &reference]);
        assert_eq!(
            stdout_of(&podman(&[
                "image",
                "inspect",
                "--format",
                "{{.Digest}}",
                &reference
            ])),
            digest
        );
        let layers = stdout_of(&podman(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            &reference,
        ]));
        assert_eq!(
            serde_json::from_str::<Value>(&layers).unwrap(),
            json!(diff_ids)
        );
        podman(&[
            "pull",
            "--tls-verify=false",
            &format!("{host}/{repo}@{digest}"),
        ]);
        podman(&["rmi", "-a", "-f"]);
    }

    if !docker_engine_answers() {
        let _ = writeln!(std::io::stderr(), "\nSKIPPED: docker engine not available (`docker info` fails): the docker pull of v1 images did not run\n");
        return;
    }
    let _made = DockerImages(vec![reference.clone()]);
    run("docker", &["pull", &reference]);
    let repo_digests = stdout_of(&run(
        "docker",
        &[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &reference,
        ],
    ));
    assert!(repo_digests.contains(&digest), "{repo_digests}");
    // `docker save`: each layer as the tar it unpacked, which must be the
    // v1 layer's tar, byte for byte.
    let work = tempfile::tempdir().unwrap();
    let saved = work.path().join("saved.tar");
    run(
        "docker",
        &["save", "-o", saved.to_str().unwrap(), &reference],
    );
    let mut archive = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    let mut files = std::collections::BTreeMap::new();
    // docker saves a layer met twice in the chain once, and links to it.
    let mut links = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_path_buf();
        if entry.header().entry_type().is_symlink() {
            let target = entry.link_name().unwrap().unwrap().to_path_buf();
            let resolved = path.parent().unwrap().join(target);
            let normal: std::path::PathBuf =
                resolved
                    .components()
                    .fold(std::path::PathBuf::new(), |mut p, c| {
                        match c {
                            std::path::Component::ParentDir => {
                                p.pop();
                            }
                            other => p.push(other),
                        }
                        p
                    });
            links.push((path.display().to_string(), normal.display().to_string()));
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        files.insert(path.display().to_string(), bytes);
    }
    for (link, target) in links {
        let bytes = files[&target].clone();
        files.insert(link, bytes);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| sha256(&files[l.as_str().unwrap()]))
        .collect();
    assert_eq!(layers, diff_ids);
    let pulled: Vec<&V1Image> = chain
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, c)| c)
        .collect();
    for (path, image) in manifest[0]["Layers"].as_array().unwrap().iter().zip(pulled) {
        assert_eq!(files[path.as_str().unwrap()], image.tar);
    }
}

// --- migrate ------------------------------------------------------------------

/// `registry-v1 migrate` on a local storage folder: status and stdout.
fn migrate(root: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["migrate"];
    all.extend_from_slice(args);
    let out = common::run(
        &all,
        &[
            ("STORAGE_PATH", root.to_str().unwrap()),
            ("SETTINGS_FLAVOR", "dev"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// Every file of the v2 tree and its bytes (temporary files aside).
fn v2_tree(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let v2 = root.join(V2_ROOT);
    walk(&v2)
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .map(|p| {
            (
                p.strip_prefix(&v2).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn migrate_then_distribution_serves_every_tag() {
    let backend = Backend::local();
    let root = backend.storage_path().unwrap();
    let registry = backend.start(&[]);
    let chain = chain();
    push_v1(&registry, "ns/app", &chain, "latest");
    push_v1(&registry, "test", &chain[..2], "v1");
    push_v1(&registry, "ns/UPPER", &chain[..1], "old");
    let v2 = V2::new(&registry);
    // A storage whose images have no record yet (the old registry's):
    // `bridge-digests` records them all, giving the digests a pull gives.
    for path in walk(&root.join("images")) {
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("_v2")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let out = common::run(
        &["bridge-digests"],
        &[
            ("STORAGE_PATH", root.to_str().unwrap()),
            ("SETTINGS_FLAVOR", "dev"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "5 images: 5 layers' digests computed now, 0 layers unreadable; 2 tags: 0 without"
        ),
        "{text}"
    );
    for image in &chain {
        assert!(root.join(format!("images/{}/_v2", image.id)).exists());
    }
    assert!(root
        .join(format!("images/{}/_v2_manifest", chain[4].id))
        .exists());
    let (app, _, _) = manifest_of(&v2, "ns/app", "latest");
    let (test, _, _) = manifest_of(&v2, "test", "v1");

    let (ok, out) = migrate(&root, &["--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains("would migrate 2 tags"), "{out}");
    assert!(out.contains("skipped ns/UPPER"), "{out}");
    assert!(v2_tree(&root).is_empty(), "a dry run wrote");

    // While the registry serves.
    let (ok, out) = migrate(&root, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("migrated 2 tags, 0 already"), "{out}");
    assert!(out.contains("verified"), "{out}");
    let tree = v2_tree(&root);
    let (ok, out) = migrate(&root, &[]);
    assert!(ok && out.contains("migrated 0 tags, 2 already"), "{out}");
    assert_eq!(v2_tree(&root), tree, "a second run changed the tree");

    // The layers are the v1 files themselves, hard-linked.
    {
        use std::os::unix::fs::MetadataExt;
        let layer = std::fs::metadata(root.join(format!("images/{CHILD}/layer"))).unwrap();
        let hex = hex_of(&sha256(&chain[1].layer)).to_owned();
        let blob = std::fs::metadata(
            root.join(format!("{V2_ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2])),
        )
        .unwrap();
        assert_eq!(layer.ino(), blob.ino());
    }
    // Our registry serves the migrated tags from the v2 tree, as before.
    assert_eq!(manifest_of(&v2, "test", "v1").0, test);
    assert_eq!(manifest_of(&v2, "ns/app", "latest").0, app);
    // The v1 tree as it was.
    let tags: Value = common::client()
        .get(registry.url("/v1/repositories/ns/app/tags"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags, json!({"latest": chain[4].id}));

    if !tool_available("docker-registry", INSTALL) {
        return;
    }
    let theirs = distribution::Distribution::start(&root);
    let v2 = theirs.v2();
    let (digest, manifest, _) = manifest_of(&v2, "ns/app", "latest");
    assert_eq!(digest, app);
    check_image(&v2, "ns/app", &chain, &manifest);
    assert_eq!(manifest_of(&v2, "test", "v1").0, test);
}

#[test]
fn a_migrate_killed_anywhere_ends_as_one_never_killed() {
    let backend = Backend::local();
    let root = backend.storage_path().unwrap();
    let registry = backend.start(&[]);
    // Enough to take a while: repositories of chains with layers of 2 MiB.
    let mut chain = chain();
    for round in 0..6 {
        let noise = unique_bytes("noise", 2 << 20);
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(noise.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "noise", &noise[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let parent = chain.last().unwrap().id.clone();
        let (json, _) = common::v1_fixture(CHILD);
        chain.push(image(&random_id(), Some(&parent), json, gzip(&tar), tar));
        push_v1(&registry, &format!("kill/app{round}"), &chain, "latest");
        push_v1(&registry, &format!("kill/app{round}"), &chain[..3], "old");
    }
    drop(registry);
    let reference = tempfile::tempdir().unwrap();
    run(
        "cp",
        &[
            "-a",
            root.to_str().unwrap(),
            reference.path().join("s").to_str().unwrap(),
        ],
    );
    let reference = reference.path().join("s");
    let started = std::time::Instant::now();
    let (ok, out) = migrate(&reference, &[]);
    assert!(ok, "{out}");
    let took = started.elapsed();

    use rand::Rng;
    for _ in 0..3 {
        let mut child = common::command()
            .arg("migrate")
            .env("STORAGE_PATH", &root)
            .env("SETTINGS_FLAVOR", "dev")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = rand::thread_rng().gen_range(0..took.as_millis().max(2) as u64);
        std::thread::sleep(std::time::Duration::from_millis(at));
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    let (ok, out) = migrate(&root, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("verified"), "{out}");
    assert_eq!(v2_tree(&root), v2_tree(&reference));
}

// --- docker search --------------------------------------------------------------

#[test]
fn docker_search_finds_what_podman_pushed() {
    if !tool_available("podman", INSTALL) {
        return;
    }
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let host = format!("127.0.0.1:{}", registry.port);
    let term = format!("found{}", rand_suffix().replace('-', ""));
    let root = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--storage-driver".to_owned(),
            "vfs".to_owned(),
            "--root".to_owned(),
            root.path().join("root").display().to_string(),
            "--runroot".to_owned(),
            root.path().join("run").display().to_string(),
            "--cgroup-manager=cgroupfs".to_owned(),
            "--events-backend=file".to_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run("podman", &refs)
    };
    let tar_path = root.path().join("rootfs.tar");
    std::fs::write(&tar_path, &chain()[1].tar).unwrap();
    podman(&[
        "import",
        tar_path.to_str().unwrap(),
        "localhost/imported:v1",
    ]);
    // A one-part name (listed as library/<name>, as docker 1.x users saw
    // theirs) and a two-part one.
    podman(&[
        "push",
        "--tls-verify=false",
        "localhost/imported:v1",
        &format!("{host}/{term}:v1"),
    ]);
    podman(&[
        "push",
        "--tls-verify=false",
        "localhost/imported:v1",
        &format!("{host}/team/{term}-two:v1"),
    ]);

    let found: Value = common::client()
        .get(registry.url(&format!("/v1/search?q={term}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [format!("library/{term}"), format!("team/{term}-two")],
        "{found}"
    );
    for hit in found["results"].as_array().unwrap() {
        for field in ["description", "star_count", "is_official", "is_automated"] {
            assert!(hit.get(field).is_some(), "{field} in {hit}");
        }
    }

    if !docker_engine_answers() {
        let _ = writeln!(std::io::stderr(), "\nSKIPPED: docker engine not available (`docker info` fails): docker search did not run\n");
        return;
    }
    let out = stdout_of(&run(
        "docker",
        &["search", "--format", "{{.Name}}", &format!("{host}/{term}")],
    ));
    // docker prints the names as the registry gives them.
    let prefix = format!("{host}/");
    let listed: Vec<&str> = out
        .lines()
        .map(|l| l.trim().trim_start_matches(&prefix))
        .collect();
    assert_eq!(
        listed,
        [format!("library/{term}"), format!("team/{term}-two")],
        "{out}"
    );
}

// --- a folder the old Python registry wrote ---------------------------------------

/// The old Python registry (`.ci/install-legacy-peer.sh`), on a free port
/// and a folder of the test's; stopped when dropped.
struct LegacyPeer {
    root: std::path::PathBuf,
    port: u16,
}

impl LegacyPeer {
    /// Where the peer is built, or `None` (skipped; under CI a failure).
    fn root() -> Option<std::path::PathBuf> {
        let root = std::path::PathBuf::from(
            std::env::var("LEGACY_PEER_ROOT").unwrap_or_else(|_| "/tmp/peers/pyreg".into()),
        );
        if root.join("start.sh").exists() {
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

    fn start(
        root: &std::path::Path,
        storage: &std::path::Path,
        db: &std::path::Path,
    ) -> LegacyPeer {
        let port = common::free_port();
        let out = Command::new("bash")
            .arg(root.join("start.sh"))
            .args([
                &port.to_string(),
                storage.to_str().unwrap(),
                db.to_str().unwrap(),
            ])
            .env("PYREG_WORKERS", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "legacy peer: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        LegacyPeer {
            root: root.to_owned(),
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for LegacyPeer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.root.join("stop.sh"))
            .stdout(Stdio::null())
            .status();
    }
}

#[test]
fn a_folder_the_old_registry_wrote_pulls_over_v2() {
    let Some(peer_root) = LegacyPeer::root() else {
        return;
    };
    let backend = Backend::local();
    let storage = backend.storage_path().unwrap();
    let work = tempfile::tempdir().unwrap();
    let chain = chain();
    {
        let peer = LegacyPeer::start(&peer_root, &storage, &work.path().join("peer.db"));
        push_to(&|p: &str| peer.url(p), "ns/app", &chain, "latest");
        push_to(&|p: &str| peer.url(p), "test", &chain[..2], "v1");
    }
    // No step in between: registry-v1 on the folder as the old one left it.
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let (digest, manifest, _) = manifest_of(&v2, "ns/app", "latest");
    check_image(&v2, "ns/app", &chain, &manifest);
    manifest_of(&v2, "test", "v1");
    if tool_available("skopeo", INSTALL) {
        let dir = work.path().join("copy");
        let reference = format!("docker://127.0.0.1:{}/ns/app:latest", registry.port);
        run(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                &reference,
                &format!("dir:{}", dir.display()),
            ],
        );
        assert_eq!(
            sha256(&std::fs::read(dir.join("manifest.json")).unwrap()),
            digest
        );
        let doc: Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        for layer in doc["layers"].as_array().unwrap() {
            let digest = layer["digest"].as_str().unwrap();
            assert_eq!(
                sha256(&std::fs::read(dir.join(hex_of(digest))).unwrap()),
                digest
            );
        }
    }
    drop(registry);

    // What the bridge recorded does not disturb the old registry: it
    // serves the same folder as before.
    let peer = LegacyPeer::start(&peer_root, &storage, &work.path().join("peer.db"));
    let http = common::client();
    let tags: Value = http
        .get(peer.url("/v1/repositories/ns/app/tags"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags, json!({"latest": chain[4].id}));
    for image in &chain {
        let resp = http
            .get(peer.url(&format!("/v1/images/{}/layer", image.id)))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().unwrap().to_vec(), image.layer);
        let ancestry: Value = http
            .get(peer.url(&format!("/v1/images/{}/ancestry", image.id)))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(ancestry[0], json!(image.id));
    }
    let found: Value = http
        .get(peer.url("/v1/search?q=app"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found["results"][0]["name"], "ns/app", "{found}");
    let resp = http
        .delete(peer.url("/v1/repositories/test/tags/v1"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

// --- search follows both trees ------------------------------------------------

/// A small v2 image pushed as `name:tag`; returns its manifest digest.
fn push_v2(v2: &V2, name: &str, tag: &str) -> String {
    let blobs = ImageBlobs::new(&format!("{name}:{tag}"), "amd64");
    blobs.push(v2, name);
    v2.push_manifest(name, tag, OCI_MANIFEST, &blobs.oci_manifest())
}

fn delete_v1_repository(registry: &common::Registry, path: &str) {
    let resp = common::client()
        .delete(registry.url(&format!("/v1/repositories/{path}/")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "DELETE {path}");
    assert_eq!(resp.text().unwrap(), "true");
}

/// A repository leaves search only when neither tree holds it: a delete in
/// one tree keeps what the other serves (under either spelling of a
/// one-part name), and the last delete takes it out.
#[test]
fn a_delete_in_one_tree_keeps_what_the_other_serves_in_search() {
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let chain = chain();

    // The repro: the v1 tree goes, the v2 tag stays.
    let t1 = push_v2(&v2, "zed/app", "t1");
    push_v1(&registry, "zed/app", &chain[..1], "old");
    delete_v1_repository(&registry, "zed/app");
    assert_eq!(v2.get_manifest("/v2/zed/app/manifests/t1").status(), 200);
    assert_eq!(common::search_names(&registry, "zed"), ["zed/app"]);
    // Its last manifest goes too: gone from search.
    assert_eq!(
        v2.delete(&format!("/v2/zed/app/manifests/{t1}")).status(),
        202
    );
    assert!(common::search_names(&registry, "zed").is_empty());

    // The other way round: the v2 manifests go, the v1 tag stays.
    push_v1(&registry, "zed/other", &chain[..1], "old");
    let t1 = push_v2(&v2, "zed/other", "t1");
    assert_eq!(
        v2.delete(&format!("/v2/zed/other/manifests/{t1}")).status(),
        202
    );
    assert_eq!(common::search_names(&registry, "other"), ["zed/other"]);
    delete_v1_repository(&registry, "zed/other");
    assert!(common::search_names(&registry, "other").is_empty());

    // `library/solo` over v1 is the v2 `solo` and `library/solo` alike.
    push_v1(&registry, "solo", &chain[..1], "old");
    let short = push_v2(&v2, "solo", "t1");
    let long = push_v2(&v2, "library/solo", "t2");
    delete_v1_repository(&registry, "solo");
    assert_eq!(common::search_names(&registry, "solo"), ["library/solo"]);
    assert_eq!(
        v2.delete(&format!("/v2/solo/manifests/{short}")).status(),
        202
    );
    assert_eq!(common::search_names(&registry, "solo"), ["library/solo"]);
    assert_eq!(
        v2.delete(&format!("/v2/library/solo/manifests/{long}"))
            .status(),
        202
    );
    assert!(common::search_names(&registry, "solo").is_empty());
    // A tag in either tree brings it back.
    push_v2(&v2, "solo", "again");
    assert_eq!(common::search_names(&registry, "solo"), ["library/solo"]);
}

/// `migrate` copies v1 tags into the v2 tree (`library/x` becomes the v2
/// `x`): the v1 tree can then go and search still lists what v2 serves,
/// and `reindex` agrees with the index the events kept.
#[test]
fn after_migrate_the_v1_tree_can_go_and_search_keeps_the_repository() {
    let backend = Backend::local();
    let root = backend.storage_path().unwrap();
    let database = tempfile::tempdir().unwrap();
    let url = format!("sqlite:///{}", database.path().join("search.db").display());
    let registry = backend.start(&[("SQLALCHEMY_INDEX_DATABASE", &url)]);
    let chain = chain();
    push_v1(&registry, "moved", &chain[..2], "latest");
    push_v1(&registry, "team/moved", &chain[..2], "latest");
    push_v1(&registry, "team/stays", &chain[..1], "latest");
    let (ok, out) = migrate(&root, &[]);
    assert!(ok, "{out}");

    delete_v1_repository(&registry, "moved");
    delete_v1_repository(&registry, "team/moved");
    let v2 = V2::new(&registry);
    for name in ["moved", "team/moved"] {
        let resp = v2.get_manifest(&format!("/v2/{name}/manifests/latest"));
        assert_eq!(resp.status(), 200, "{name}");
    }
    let listed = ["library/moved", "team/moved", "team/stays"];
    assert_eq!(common::search_names(&registry, "team"), listed[1..]);
    assert_eq!(common::search_names(&registry, "moved"), listed[..2]);

    let out = common::run(
        &["reindex"],
        &[
            ("STORAGE_PATH", root.to_str().unwrap()),
            ("SETTINGS_FLAVOR", "dev"),
            ("SQLALCHEMY_INDEX_DATABASE", &url),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("3 repositories in storage, 0 added, 0 removed"),
        "{stdout}"
    );
}
