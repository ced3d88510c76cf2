//! Deleting a repository whole (issue 30): `DELETE
//! /v2/<name>/_registry-v1/repository` and `registry-v1 delete-repository`
//! through the real binary, on local disk and S3 (moto): both trees lose
//! every tag, manifest, link and upload of the name, other repositories
//! keep what they share with it, search forgets it, the next collection
//! takes its bytes; a pull under way when it goes ends whole.

#[macro_use]
mod common;
mod v2_support;

use std::io::Read;
use std::time::Duration;

use serde_json::Value;
use v2_support::*;

const BASE: &str = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";
/// A push record protects what it names this long
/// (`collector::records::WINDOW`) and a bit.
const RECORD_WINDOW: Duration = Duration::from_secs(16);

struct Pushed {
    blobs: ImageBlobs,
    manifest: Vec<u8>,
    digest: String,
}

fn push_image(v2: &V2, name: &str, blobs: ImageBlobs, tag: &str) -> Pushed {
    blobs.push(v2, name);
    let manifest = blobs.oci_manifest();
    v2.push_manifest(name, tag, OCI_MANIFEST, &manifest);
    Pushed {
        digest: sha256(&manifest),
        blobs,
        manifest,
    }
}

fn assert_pulls(v2: &V2, name: &str, image: &Pushed, what: &str) {
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{}", image.digest));
    assert_eq!(resp.status(), 200, "{what}: manifest");
    assert_eq!(resp.bytes().unwrap().to_vec(), image.manifest, "{what}");
    for blob in [&image.blobs.config, &image.blobs.layer] {
        let resp = v2.get(&format!("/v2/{name}/blobs/{}", sha256(blob)));
        assert_eq!(resp.status(), 200, "{what}: blob");
        assert_eq!(&resp.bytes().unwrap()[..], &blob[..], "{what}: blob bytes");
    }
}

fn blob_key(digest: &str) -> String {
    let hex = hex_of(digest);
    format!("{V2_ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2])
}

fn delete_repository(v2: &V2, name: &str) -> reqwest::blocking::Response {
    v2.delete(&format!("/v2/{name}/_registry-v1/repository"))
}

/// A v1 image pushed as docker 1.x does, tagged `tag`.
fn push_v1(registry: &common::Registry, repo: &str, tag: &str) {
    let (json, layer) = common::v1_fixture(BASE);
    let id = hex_of(&sha256(&unique_bytes("v1 id", 32))).to_owned();
    let json = common::v1_json(json, &id, None);
    let base = |path: &str| registry.url(path);
    let upload = common::V1Upload {
        id: &id,
        json: &json,
        layer: &layer,
    };
    common::push_v1(&base, repo, &[upload], tag);
}

/// `team/app` holds two v2 images, a v1 tag and an upload in progress;
/// `team/other` shares one of its images. The delete takes `team/app`
/// from both trees, `team/other` pulls whole, search lists only it, a
/// second delete is a 404, and a collection takes the bytes only
/// `team/app` named.
fn deletes_both_trees_and_keeps_what_others_share(backend: Backend) {
    let registry = backend.start(&[("SEARCH_BACKEND", "sqlalchemy")]);
    let v2 = V2::new(&registry);
    let shared = push_image(&v2, "team/app", ImageBlobs::new("shared", "amd64"), "one");
    let own = push_image(&v2, "team/app", ImageBlobs::new("own", "amd64"), "two");
    shared.blobs.push(&v2, "team/other");
    v2.push_manifest("team/other", "t", OCI_MANIFEST, &shared.manifest);
    push_v1(&registry, "team/app", "old");
    let upload = v2.start_upload("team/app");
    assert_eq!(
        common::search_names(&registry, "team"),
        ["team/app", "team/other"]
    );

    let resp = delete_repository(&v2, "team/app");
    assert_eq!(resp.status(), 202, "{}", registry.log());

    v2.expect_error(
        v2.get("/v2/team/app/tags/list"),
        404,
        "NAME_UNKNOWN",
        "tags",
    );
    for reference in ["one", "two", own.digest.as_str()] {
        let resp = v2.get_manifest(&format!("/v2/team/app/manifests/{reference}"));
        assert_eq!(resp.status(), 404, "manifest {reference}");
    }
    let resp = v2.get(&format!("/v2/team/app/blobs/{}", sha256(&own.blobs.layer)));
    assert_eq!(resp.status(), 404, "a blob through the deleted name");
    v2.expect_error(
        v2.get(&path_of(&upload)),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "upload",
    );
    let v1_tags = common::client()
        .get(registry.url("/v1/repositories/team/app/tags"))
        .send()
        .unwrap();
    assert_eq!(v1_tags.status(), 404, "the v1 tree");
    let catalog: Value = v2.get("/v2/_catalog").json().unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["team/other"]));
    let left: Vec<String> = backend
        .stored_keys()
        .into_iter()
        .filter(|k| k.contains("repositories/team/app"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(common::search_names(&registry, "team"), ["team/other"]);

    assert_pulls(
        &v2,
        "team/other",
        &shared,
        "the repository sharing an image",
    );
    v2.expect_error(
        delete_repository(&v2, "team/app"),
        404,
        "NAME_UNKNOWN",
        "a second delete",
    );

    // The bytes only `team/app` named go with the next collection.
    std::thread::sleep(RECORD_WINDOW);
    let env = backend.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let index = format!(
        "sqlite:///{}",
        tempfile::tempdir()
            .unwrap()
            .keep()
            .join("none.db")
            .display()
    );
    env.push(("SQLALCHEMY_INDEX_DATABASE", &index));
    let out = common::run(&["gc", "--grace-period", "0"], &env);
    assert!(out.status.success(), "{out:?}");
    for blob in [&own.blobs.layer, &own.blobs.config, &own.manifest] {
        let key = blob_key(&sha256(blob));
        assert!(backend.read_stored(&key).is_none(), "{key} was kept");
    }
    assert_pulls(&v2, "team/other", &shared, "after the collection");
}

#[test]
fn deleting_a_repository_takes_both_trees_on_local_disk() {
    deletes_both_trees_and_keeps_what_others_share(Backend::local());
}

#[test]
fn deleting_a_repository_takes_both_trees_on_s3() {
    let Some(backend) = Backend::s3() else {
        eprintln!("\nSKIPPED: no S3 server (moto_server) for the repository delete test\n");
        return;
    };
    deletes_both_trees_and_keeps_what_others_share(backend);
}

/// A client reading a large blob of the repository while it is deleted
/// reads it to the end, byte for byte: the bytes stay until a collection,
/// and the delete only takes the links. A pull started after is a 404.
#[test]
fn a_pull_under_way_ends_whole_when_its_repository_goes() {
    let backend = Backend::local();
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let layer = unique_bytes("large layer", 64 << 20);
    let digest = v2.push_blob("big/app", &layer);
    let url = v2.url(&format!("/v2/big/app/blobs/{digest}"));
    let reader = std::thread::spawn(move || {
        let mut resp = common::client().get(url).send().unwrap();
        assert_eq!(resp.status(), 200);
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 1 << 20];
        // Slowly, so that the delete lands in the middle.
        loop {
            let n = resp.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    });
    std::thread::sleep(Duration::from_millis(300));
    let resp = delete_repository(&v2, "big/app");
    assert_eq!(resp.status(), 202);
    assert!(!reader.is_finished(), "the read ended before the delete");
    let got = reader.join().unwrap();
    assert_eq!(got.len(), layer.len());
    assert!(got == layer, "the bytes read differ");
    let resp = v2.get(&format!("/v2/big/app/blobs/{digest}"));
    assert_eq!(resp.status(), 404, "a pull after the delete");
}

/// `registry-v1 delete-repository` beside a running registry: the same
/// delete, what went on standard output, the search index of `serve`
/// updated; a name nothing holds, or one a rule holds, fails with a
/// reason and leaves everything.
#[test]
fn the_command_deletes_beside_a_running_registry() {
    let backend = Backend::local();
    let db = tempfile::tempdir().unwrap();
    let index = format!("sqlite:///{}", db.path().join("search.db").display());
    let config = db.path().join("config.yml");
    std::fs::write(
        &config,
        "dev:\n  standalone: true\n  storage: local\n  storage_path: _env:STORAGE_PATH\n  \
         search_backend: sqlalchemy\n  \
         sqlalchemy_index_database: _env:SQLALCHEMY_INDEX_DATABASE\n  \
         rules:\n    - repositories: prod/*\n      immutable_tags: ['v*']\n",
    )
    .unwrap();
    let mut env: Vec<(String, String)> = backend.env();
    env.push(("SQLALCHEMY_INDEX_DATABASE".into(), index));
    env.push((
        "DOCKER_REGISTRY_CONFIG".into(),
        config.display().to_string(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let registry = common::Registry::start(&env);
    let v2 = V2::new(&registry);
    push_image(&v2, "ci/app", ImageBlobs::new("ci 1", "amd64"), "a");
    push_image(&v2, "ci/app", ImageBlobs::new("ci 2", "amd64"), "b");
    push_v1(&registry, "ci/app", "old");
    let held = push_image(&v2, "prod/app", ImageBlobs::new("prod", "amd64"), "v1.0");

    let out = common::run(&["delete-repository", "ci/app"], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ci/app: deleted 2 tags and 2 manifests of the v2 tree",
        "ci/app: deleted the v1 repository ci/app",
        "ci/app: no tree holds it any longer, removed from search",
    ] {
        assert!(stdout.contains(line), "no `{line}` in {stdout}");
    }
    v2.expect_error(v2.get("/v2/ci/app/tags/list"), 404, "NAME_UNKNOWN", "tags");
    assert_eq!(common::search_names(&registry, "app"), ["prod/app"]);

    let refused = common::run(&["delete-repository", "prod/app"], &env);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "an immutable tag went");
    assert!(
        stderr.contains("tag `v1.0` of `prod/app` is immutable"),
        "{stderr}"
    );
    assert_pulls(&v2, "prod/app", &held, "a repository a rule holds");
    let unknown = common::run(&["delete-repository", "ci/app"], &env);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("repository unknown: ci/app"), "{stderr}");
}

/// The same request, refused as a manifest's delete is where deletes are
/// off (`delete_enabled: false`): 405 UNSUPPORTED, nothing gone.
#[test]
fn deletes_disabled_keep_the_repository() {
    let backend = Backend::local();
    let registry = backend.start(&[("DELETE_ENABLED", "false")]);
    let v2 = V2::new(&registry);
    let image = push_image(&v2, "keep/app", ImageBlobs::new("keep", "amd64"), "t");
    v2.expect_error(
        delete_repository(&v2, "keep/app"),
        405,
        "UNSUPPORTED",
        "deletes off",
    );
    assert_pulls(&v2, "keep/app", &image, "deletes off");
}
