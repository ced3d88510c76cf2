//! Real clients against the real binary: skopeo and podman from Debian
//! (installed by `.ci/install-v2-clients.sh`), and the docker engine where
//! the machine runs one. Images are built here from tiny tarballs: no
//! network beyond loopback.
//!
//! Outside CI a missing skopeo or podman skips its test with a message on
//! stderr; under CI it fails. The docker engine is never installed by us:
//! where `docker info` fails, its test says so on stderr and returns.

mod common;
mod v2_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use v2_support::*;

const INSTALL: &str = ".ci/install-v2-clients.sh";

/// Runs a command; panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> Output {
    let out = try_run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn try_run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An OCI image layout written by hand: one image per architecture, each
/// tagged `<arch>` in index.json, and an index of all of them tagged
/// `multi`.
struct Layout {
    dir: PathBuf,
    /// (architecture, manifest bytes, layer bytes)
    images: Vec<(String, Vec<u8>, Vec<u8>)>,
    index: Vec<u8>,
}

impl Layout {
    fn write(dir: &Path, label: &str, arches: &[&str]) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let blob = |data: &[u8]| {
            let digest = sha256(data);
            std::fs::write(dir.join("blobs/sha256").join(hex_of(&digest)), data).unwrap();
        };
        let mut images = Vec::new();
        let mut refs = Vec::new();
        for arch in arches {
            let tar = rootfs_tar(&format!("{label} {arch}"));
            let layer = gzip(&tar);
            let config = serde_json::to_vec(&json!({
                "architecture": arch, "os": "linux",
                "config": {"Cmd": ["/bin/true"]},
                "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
                "history": [{"created_by": "v2_clients test"}],
            }))
            .unwrap();
            let manifest = manifest_bytes(&json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, &config),
                "layers": [descriptor(OCI_LAYER, &layer)],
            }));
            blob(&layer);
            blob(&config);
            blob(&manifest);
            let mut d = descriptor(OCI_MANIFEST, &manifest);
            d["annotations"] = json!({"org.opencontainers.image.ref.name": arch});
            d["platform"] = json!({"architecture": arch, "os": "linux"});
            refs.push(d);
            images.push((arch.to_string(), manifest, layer));
        }
        let children: Vec<(&str, &[u8], &str)> = images
            .iter()
            .map(|(arch, m, _)| (OCI_MANIFEST, m.as_slice(), arch.as_str()))
            .collect();
        let index = index_of(OCI_INDEX, &children);
        blob(&index);
        let mut d = descriptor(OCI_INDEX, &index);
        d["annotations"] = json!({"org.opencontainers.image.ref.name": "multi"});
        refs.push(d);
        let top = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": refs});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            images,
            index,
        }
    }

    fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }
}

/// The blobs of an OCI layout skopeo wrote, by digest.
fn layout_blob(dir: &Path, digest: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join("blobs/sha256").join(hex_of(digest))).ok()
}

#[test]
fn skopeo_push_inspect_pull_copy_delete() {
    if !tool_available("skopeo", INSTALL) {
        return;
    }
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let host = format!("127.0.0.1:{}", registry.port);
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::write(&work.path().join("src"), "skopeo", &["amd64", "arm64"]);
    let (_, amd_manifest, amd_layer) = &layout.images[0];
    let amd_digest = sha256(amd_manifest);
    let dest = format!("docker://{host}/clients/skopeo:v1");

    // Push one image.
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &layout.reference("amd64"),
            &dest,
        ],
    );
    // The manifest arrives unchanged: same bytes, same digest.
    let raw = run("skopeo", &["inspect", "--tls-verify=false", "--raw", &dest]);
    assert!(
        raw.stdout == *amd_manifest,
        "skopeo inspect --raw: {}",
        stdout_of(&raw)
    );
    let info: Value =
        serde_json::from_slice(&run("skopeo", &["inspect", "--tls-verify=false", &dest]).stdout)
            .unwrap();
    assert_eq!(info["Digest"], json!(amd_digest));
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"], json!([sha256(amd_layer)]));

    // More tags, listed.
    let dest2 = format!("docker://{host}/clients/skopeo:v2");
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &layout.reference("amd64"),
            &dest2,
        ],
    );
    let tags: Value = serde_json::from_slice(
        &run(
            "skopeo",
            &[
                "list-tags",
                "--tls-verify=false",
                &format!("docker://{host}/clients/skopeo"),
            ],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(tags["Tags"], json!(["v1", "v2"]));

    // Pull by tag and by digest into fresh layouts.
    for (source, out) in [
        (dest.clone(), "by-tag"),
        (
            format!("docker://{host}/clients/skopeo@{amd_digest}"),
            "by-digest",
        ),
    ] {
        let out_dir = work.path().join(out);
        run(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                &source,
                &format!("oci:{}:pulled", out_dir.display()),
            ],
        );
        assert_eq!(
            layout_blob(&out_dir, &amd_digest).as_ref(),
            Some(amd_manifest)
        );
        assert_eq!(
            layout_blob(&out_dir, &sha256(amd_layer)).as_ref(),
            Some(amd_layer),
            "{source}: layer"
        );
    }

    // An OCI index with two platforms.
    let multi = format!("docker://{host}/clients/multi:v1");
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &layout.reference("multi"),
            &multi,
        ],
    );
    let raw = run(
        "skopeo",
        &["inspect", "--tls-verify=false", "--raw", &multi],
    );
    assert!(raw.stdout == layout.index, "the index arrives unchanged");
    for (arch, _, layer) in &layout.images {
        let info: Value = serde_json::from_slice(
            &run(
                "skopeo",
                &[
                    "inspect",
                    "--tls-verify=false",
                    "--override-arch",
                    arch,
                    &multi,
                ],
            )
            .stdout,
        )
        .unwrap();
        assert_eq!(info["Architecture"], json!(arch));
        // skopeo names the index's digest here; the layers are the platform's.
        assert_eq!(info["Digest"], json!(sha256(&layout.index)));
        assert_eq!(info["Layers"], json!([sha256(layer)]));
    }
    let all_dir = work.path().join("all");
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &multi,
            &format!("oci:{}:multi", all_dir.display()),
        ],
    );
    for (_, manifest, layer) in &layout.images {
        assert_eq!(
            layout_blob(&all_dir, &sha256(manifest)).as_ref(),
            Some(manifest)
        );
        assert_eq!(layout_blob(&all_dir, &sha256(layer)).as_ref(), Some(layer));
    }

    // A docker schema 2 push.
    let docker = format!("docker://{host}/clients/schema2:v1");
    run(
        "skopeo",
        &[
            "copy",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
            &layout.reference("amd64"),
            &docker,
        ],
    );
    let raw: Value = serde_json::from_slice(
        &run(
            "skopeo",
            &["inspect", "--tls-verify=false", "--raw", &docker],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(raw["mediaType"], DOCKER_MANIFEST);
    let resp = v2.head_manifest("/v2/clients/schema2/manifests/v1");
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some(DOCKER_MANIFEST)
    );

    // A copy between two repositories of the registry.
    let copy = format!("docker://{host}/clients/copied:v1");
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &dest,
            &copy,
        ],
    );
    let info: Value =
        serde_json::from_slice(&run("skopeo", &["inspect", "--tls-verify=false", &copy]).stdout)
            .unwrap();
    assert_eq!(info["Digest"], json!(amd_digest));

    // Delete: the copy goes, the original stays.
    run("skopeo", &["delete", "--tls-verify=false", &copy]);
    let gone = try_run("skopeo", &["inspect", "--tls-verify=false", &copy]);
    assert!(!gone.status.success(), "deleted image still inspects");
    let resp = v2.get_manifest(&format!("/v2/clients/copied/manifests/{amd_digest}"));
    assert_eq!(resp.status(), 404);
    run("skopeo", &["inspect", "--tls-verify=false", &dest]);
}

/// podman on a store of its own in a temporary folder.
struct Podman {
    root: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        Podman {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let root = self.root.path().join("root");
        let runroot = self.root.path().join("run");
        let mut all = vec![
            "--storage-driver".to_owned(),
            "vfs".to_owned(),
            "--root".to_owned(),
            root.display().to_string(),
            "--runroot".to_owned(),
            runroot.display().to_string(),
            "--cgroup-manager=cgroupfs".to_owned(),
            "--events-backend=file".to_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run("podman", &refs)
    }
}

#[test]
fn podman_push_pull_by_tag_and_digest() {
    if !tool_available("podman", INSTALL) {
        return;
    }
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let host = format!("127.0.0.1:{}", registry.port);
    let podman = Podman::new();
    let tar_path = podman.root.path().join("rootfs.tar");
    std::fs::write(&tar_path, rootfs_tar("podman")).unwrap();
    podman.run(&[
        "import",
        tar_path.to_str().unwrap(),
        "localhost/imported:v1",
    ]);

    // The default format, and docker schema 2.
    let oci = format!("{host}/clients/podman:v1");
    let docker = format!("{host}/clients/podman:v2s2");
    podman.run(&["push", "--tls-verify=false", "localhost/imported:v1", &oci]);
    podman.run(&[
        "push",
        "--tls-verify=false",
        "--format",
        "v2s2",
        "localhost/imported:v1",
        &docker,
    ]);
    let resp = v2.head_manifest("/v2/clients/podman/manifests/v2s2");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some(DOCKER_MANIFEST)
    );
    let resp = v2.head_manifest("/v2/clients/podman/manifests/v1");
    assert_eq!(resp.status(), 200);
    let digest = header(&resp, "docker-content-digest").expect("digest of v1");

    // Pull back by tag and by digest into an empty store.
    podman.run(&["rmi", "-a", "-f"]);
    podman.run(&["pull", "--tls-verify=false", &oci]);
    let by_digest = format!("{host}/clients/podman@{digest}");
    podman.run(&["pull", "--tls-verify=false", &by_digest]);
    let inspected = stdout_of(&podman.run(&["image", "inspect", "--format", "{{.Digest}}", &oci]));
    assert_eq!(inspected, digest);
    let listed = stdout_of(&podman.run(&["images", "--digests", "--format", "{{.Digest}}"]));
    assert!(listed.contains(&digest), "{listed}");
    podman.run(&["pull", "--tls-verify=false", &docker]);

    // A copy through podman's store into another repository, then gone.
    let copy = format!("{host}/clients/podman-copy:v1");
    podman.run(&["tag", &oci, &copy]);
    podman.run(&["push", "--tls-verify=false", &copy]);
    assert_eq!(
        v2.head_manifest("/v2/clients/podman-copy/manifests/v1")
            .status(),
        200
    );
    podman.run(&["rmi", "-a", "-f"]);
}

/// Removes the docker images a test made, whatever happens.
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = try_run("docker", &["rmi", "-f", image]);
        }
    }
}

fn docker_engine_answers() -> bool {
    let out = Command::new("timeout")
        .args(["20", "docker", "info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    matches!(out, Ok(out) if out.status.success() && !out.stdout.trim_ascii().is_empty())
}

#[test]
fn docker_engine_import_push_pull() {
    if !docker_engine_answers() {
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: docker engine not available (`docker info` fails): \
             docker_engine_import_push_pull did not run\n"
        );
        return;
    }
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let repo = format!(
        "127.0.0.1:{}/clients/docker-{}",
        registry.port,
        rand_suffix()
    );
    let image = format!("{repo}:v1");
    let mut made = DockerImages(vec![image.clone()]);
    let work = tempfile::tempdir().unwrap();
    let tar_path = work.path().join("rootfs.tar");
    std::fs::write(&tar_path, rootfs_tar("docker engine")).unwrap();

    run("docker", &["import", tar_path.to_str().unwrap(), &image]);
    run("docker", &["push", &image]);
    let name = repo.split_once('/').unwrap().1;
    let resp = v2.head_manifest(&format!("/v2/{name}/manifests/v1"));
    assert_eq!(resp.status(), 200);
    let digest = header(&resp, "docker-content-digest").unwrap();

    run("docker", &["rmi", "-f", &image]);
    run("docker", &["pull", &image]);
    let by_digest = format!("{repo}@{digest}");
    made.0.push(by_digest.clone());
    run("docker", &["rmi", "-f", &image]);
    run("docker", &["pull", &by_digest]);
    let repo_digests = stdout_of(&run(
        "docker",
        &[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &by_digest,
        ],
    ));
    assert!(repo_digests.contains(&digest), "{repo_digests}");
}

/// containerd, a client of its own (the one Kubernetes nodes pull with):
/// a pull by tag and by digest, and a push of what it pulled under a new
/// name, over plain http, in a namespace of the test's own.
#[test]
fn containerd_pull_push_by_tag_and_digest() {
    let socket = containerd::socket();
    if socket.is_none() || !docker_engine_answers() {
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: containerd (ctr) or the docker engine not available: \
             containerd_pull_push_by_tag_and_digest did not run\n"
        );
        return;
    }
    let namespace = containerd::Namespace::new(socket.unwrap(), "registry-v1-test");
    let ctr = |args: &[&str]| {
        let out = namespace.try_ctr(args);
        assert!(
            out.status.success(),
            "ctr {}: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    let backend = Backend::local();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let host = format!("127.0.0.1:{}", registry.port);
    let source = format!("{host}/clients/ctr-src-{}:v1", rand_suffix());
    let _made = DockerImages(vec![source.clone()]);
    let work = tempfile::tempdir().unwrap();
    let tar_path = work.path().join("rootfs.tar");
    std::fs::write(&tar_path, rootfs_tar("containerd")).unwrap();
    run("docker", &["import", tar_path.to_str().unwrap(), &source]);
    run("docker", &["push", &source]);

    ctr(&["images", "pull", "--plain-http", &source]);
    let copy_name = format!("clients/ctr-copy-{}", rand_suffix());
    let copy = format!("{host}/{copy_name}:v2");
    ctr(&["images", "tag", &source, &copy]);
    ctr(&["images", "push", "--plain-http", &copy]);
    let resp = v2.get_manifest(&format!("/v2/{copy_name}/manifests/v2"));
    assert_eq!(resp.status(), 200);
    let digest = header(&resp, "docker-content-digest").unwrap();

    // By digest, after the image is gone from containerd.
    ctr(&["images", "rm", &copy, &source]);
    let by_digest = format!("{host}/{copy_name}@{digest}");
    ctr(&["images", "pull", "--plain-http", &by_digest]);
    let listed = stdout_of(&ctr(&["images", "ls"]));
    assert!(listed.contains(&digest), "{listed}");
}
