//! The storage interchange with distribution 2.8.2 (Debian's
//! `docker-registry`, installed by `.ci/install-v2-clients.sh` or
//! `../shared/tools/distribution-peer-setup.sh`), both ways, on local disk:
//! what one pushed, the other serves from the same folder, byte for byte.
//! Under CI distribution must be installed; elsewhere its absence skips
//! the tests with a message on stderr.

mod common;
mod v2_support;

use serde_json::{json, Value};

use v2_support::distribution::Distribution;
use v2_support::*;

const INSTALL: &str = ".ci/install-v2-clients.sh";

/// What a test pushes through one registry and pulls through the other.
struct Content {
    /// (repository, blob)
    blobs: Vec<(String, Vec<u8>)>,
    /// (repository, tag or None, media type, bytes)
    manifests: Vec<(String, Option<String>, &'static str, Vec<u8>)>,
}

impl Content {
    fn new(label: &str) -> Content {
        let mut c = Content {
            blobs: Vec::new(),
            manifests: Vec::new(),
        };
        let repo = format!("interchange/{label}");
        let amd = ImageBlobs::new(&format!("{label} amd64"), "amd64");
        let arm = ImageBlobs::new(&format!("{label} arm64"), "arm64");
        for image in [&amd, &arm] {
            c.blobs.push((repo.clone(), image.config.clone()));
            c.blobs.push((repo.clone(), image.layer.clone()));
        }
        let oci_amd = amd.oci_manifest();
        let oci_arm = arm.oci_manifest();
        let docker_amd = amd.docker_manifest();
        let docker_arm = arm.docker_manifest();
        let index = index_of(
            OCI_INDEX,
            &[
                (OCI_MANIFEST, &oci_amd, "amd64"),
                (OCI_MANIFEST, &oci_arm, "arm64"),
            ],
        );
        let list = index_of(
            DOCKER_LIST,
            &[
                (DOCKER_MANIFEST, &docker_amd, "amd64"),
                (DOCKER_MANIFEST, &docker_arm, "arm64"),
            ],
        );
        let tag = |t: &str| Some(t.to_owned());
        c.manifests = vec![
            (repo.clone(), tag("oci"), OCI_MANIFEST, oci_amd.clone()),
            (repo.clone(), None, OCI_MANIFEST, oci_arm),
            (repo.clone(), tag("index"), OCI_INDEX, index),
            (repo.clone(), tag("docker"), DOCKER_MANIFEST, docker_amd),
            (repo.clone(), None, DOCKER_MANIFEST, docker_arm),
            (repo.clone(), tag("list"), DOCKER_LIST, list),
            (repo.clone(), tag("also-oci"), OCI_MANIFEST, oci_amd),
        ];
        // A second repository holding one of the same blobs.
        let other = format!("interchange/{label}-other");
        c.blobs.push((other.clone(), amd.config.clone()));
        c.blobs.push((other.clone(), amd.layer.clone()));
        c.manifests
            .push((other, tag("latest"), OCI_MANIFEST, amd.oci_manifest()));
        c
    }

    fn push(&self, v2: &V2) {
        for (repo, blob) in &self.blobs {
            v2.push_blob(repo, blob);
        }
        for (repo, tag, media_type, body) in &self.manifests {
            let reference = tag.clone().unwrap_or_else(|| sha256(body));
            v2.push_manifest(repo, &reference, media_type, body);
        }
    }

    /// Everything pushed answers from `v2` exactly as it was pushed.
    fn check(&self, v2: &V2, who: &str) {
        for (repo, blob) in &self.blobs {
            let digest = sha256(blob);
            let resp = v2.get(&format!("/v2/{repo}/blobs/{digest}"));
            assert_eq!(resp.status(), 200, "{who}: blob {repo}@{digest}");
            assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
            assert!(resp.bytes().unwrap() == *blob, "{who}: bytes of {digest}");
        }
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
        for (repo, tag, media_type, body) in &self.manifests {
            let digest = sha256(body);
            let mut refs = vec![digest.clone()];
            refs.extend(tag.clone());
            for reference in refs {
                let path = format!("/v2/{repo}/manifests/{reference}");
                let resp = v2.send(v2.request("GET", &path).header("accept", &accept));
                assert_eq!(resp.status(), 200, "{who}: GET {path}");
                assert_eq!(
                    header(&resp, "content-type").as_deref(),
                    Some(*media_type),
                    "{who}: {path}"
                );
                assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
                assert!(resp.bytes().unwrap() == *body, "{who}: bytes of {path}");
            }
        }
        let mut repos: Vec<&str> = self.manifests.iter().map(|m| m.0.as_str()).collect();
        repos.dedup();
        for repo in &repos {
            let mut tags: Vec<&str> = self
                .manifests
                .iter()
                .filter(|m| m.0 == *repo)
                .filter_map(|m| m.1.as_deref())
                .collect();
            tags.sort();
            let doc: Value = v2.get(&format!("/v2/{repo}/tags/list")).json().unwrap();
            assert_eq!(doc["name"], json!(repo), "{who}");
            // distribution lists tags in directory order: the set is what
            // must carry over (tests/v2_api.rs checks our order).
            let mut got: Vec<String> = serde_json::from_value(doc["tags"].clone()).unwrap();
            got.sort();
            assert_eq!(got, tags, "{who}: tags of {repo}");
        }
        // The catalog may list what other content put beside this one.
        let doc: Value = v2.get("/v2/_catalog").json().unwrap();
        let listed: Vec<String> = serde_json::from_value(doc["repositories"].clone()).unwrap();
        for repo in &repos {
            assert!(
                listed.iter().any(|r| r == repo),
                "{who}: {repo} not in {listed:?}"
            );
        }
    }
}

fn ours_on(root: &std::path::Path) -> common::Registry {
    common::Registry::start(&[
        ("STORAGE_PATH", root.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "dev"),
    ])
}

#[test]
fn distribution_serves_what_we_pushed() {
    if !tool_available("docker-registry", INSTALL) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    std::fs::create_dir_all(&root).unwrap();
    let content = Content::new("ours");
    let mut ours = ours_on(&root);
    content.push(&V2::new(&ours));
    content.check(&V2::new(&ours), "registry-v1");
    ours.terminate();
    drop(ours);

    let theirs = Distribution::start(&root);
    content.check(&theirs.v2(), "distribution");
    // And distribution can go on pushing beside it.
    let more = Content::new("after");
    more.push(&theirs.v2());
    more.check(&theirs.v2(), "distribution");
}

#[test]
fn we_serve_what_distribution_pushed() {
    if !tool_available("docker-registry", INSTALL) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    std::fs::create_dir_all(&root).unwrap();
    let content = Content::new("theirs");
    let theirs = Distribution::start(&root);
    content.push(&theirs.v2());
    content.check(&theirs.v2(), "distribution");
    drop(theirs);

    let ours = ours_on(&root);
    let v2 = V2::new(&ours);
    content.check(&v2, "registry-v1");
    // A tag moved and a manifest deleted by us read right in distribution.
    let (repo, _, _, body) = &content.manifests[0];
    let docker = &content.manifests[3].3;
    v2.push_manifest(repo, "oci", DOCKER_MANIFEST, docker);
    let index_digest = sha256(&content.manifests[2].3);
    assert_eq!(
        v2.delete(&format!("/v2/{repo}/manifests/{index_digest}"))
            .status(),
        202
    );
    drop(ours);
    let theirs = Distribution::start(&root);
    let d = theirs.v2();
    let resp = d.get_manifest(&format!("/v2/{repo}/manifests/oci"));
    assert_eq!(header(&resp, "docker-content-digest"), Some(sha256(docker)));
    let resp = d.get_manifest(&format!("/v2/{repo}/manifests/{index_digest}"));
    assert_eq!(resp.status(), 404, "distribution sees our delete");
    let resp = d.get_manifest(&format!("/v2/{repo}/manifests/{}", sha256(body)));
    assert_eq!(resp.status(), 200);
}
