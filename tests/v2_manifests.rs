//! A quick pass over the manifest, tag, referrer and catalog endpoints
//! through the real binary on local disk. Blobs are written straight into
//! distribution's tree, as distribution would have left them. (The full
//! endpoint suite, on every driver, is tests/v2_*.rs of the TESTS helper.)

mod common;

use std::path::Path;

use reqwest::blocking::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use common::Registry;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ROOT: &str = "docker/registry/v2";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A blob of repository `name`, as distribution stores one.
fn add_blob(storage: &Path, name: &str, content: &[u8]) -> Value {
    let digest = sha256(content);
    let hex = &digest["sha256:".len()..];
    let data = storage.join(format!("{ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2]));
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, content).unwrap();
    let link = storage.join(format!(
        "{ROOT}/repositories/{name}/_layers/sha256/{hex}/link"
    ));
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::fs::write(&link, &digest).unwrap();
    json!({"digest": digest, "size": content.len()})
}

fn image(storage: &Path, name: &str, layer: &[u8]) -> Vec<u8> {
    let mut config = add_blob(storage, name, br#"{"architecture":"amd64","os":"linux"}"#);
    config["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let mut layer = add_blob(storage, name, layer);
    layer["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+gzip");
    json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]})
        .to_string()
        .into_bytes()
}

fn start(storage: &Path, delete_enabled: bool) -> Registry {
    Registry::start(&[
        ("STORAGE_PATH", storage.to_str().unwrap()),
        (
            "DELETE_ENABLED",
            if delete_enabled { "true" } else { "false" },
        ),
    ])
}

fn put(
    client: &Client,
    reg: &Registry,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> reqwest::blocking::Response {
    client
        .put(reg.url(path))
        .header("Content-Type", content_type)
        .body(body.to_vec())
        .send()
        .unwrap()
}

fn error_code(resp: reqwest::blocking::Response) -> String {
    let body: Value = resp.json().unwrap();
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The names `GET /v1/search` finds for `term`.
fn search(client: &Client, reg: &Registry, term: &str) -> Vec<String> {
    let resp = client
        .get(reg.url(&format!("/v1/search?q={term}")))
        .send()
        .unwrap();
    let body: Value = resp.json().unwrap();
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn manifests_tags_referrers_and_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path();
    let reg = start(storage, true);
    let client = common::client();

    let manifest = image(storage, "ns/app", b"layer one");
    let digest = sha256(&manifest);
    let resp = put(
        &client,
        &reg,
        "/v2/ns/app/manifests/v1",
        OCI_MANIFEST,
        &manifest,
    );
    assert_eq!(resp.status(), 201, "{}", reg.log());
    assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(
        resp.headers()["location"],
        format!("/v2/ns/app/manifests/{digest}").as_str()
    );
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    // The tree distribution reads.
    let current = storage.join(format!(
        "{ROOT}/repositories/ns/app/_manifests/tags/v1/current/link"
    ));
    assert_eq!(std::fs::read_to_string(current).unwrap(), digest);

    for reference in ["v1", digest.as_str()] {
        let resp = client
            .get(reg.url(&format!("/v2/ns/app/manifests/{reference}")))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(resp.bytes().unwrap().as_ref(), manifest.as_slice());
    }
    let resp = client
        .head(reg.url("/v2/ns/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-length"],
        manifest.len().to_string().as_str()
    );
    assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
    assert!(resp.bytes().unwrap().is_empty());

    // The first push created the repository: the search index heard it.
    assert_eq!(search(&client, &reg, "app"), ["ns/app"]);

    // Refusals.
    let schema1 = br#"{"schemaVersion":1,"name":"ns/app","tag":"old","fsLayers":[]}"#;
    let resp = put(
        &client,
        &reg,
        "/v2/ns/app/manifests/old",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        schema1,
    );
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_INVALID");
    assert!(body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("schema 1"));
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("push a docker schema 2 or OCI manifest"));
    let mut missing: Value = serde_json::from_slice(&manifest).unwrap();
    missing["layers"][0]["digest"] = json!(sha256(b"not there"));
    let resp = put(
        &client,
        &reg,
        "/v2/ns/app/manifests/broken",
        OCI_MANIFEST,
        missing.to_string().as_bytes(),
    );
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp), "MANIFEST_BLOB_UNKNOWN");
    let wrong = sha256(b"other");
    let resp = put(
        &client,
        &reg,
        &format!("/v2/ns/app/manifests/{wrong}"),
        OCI_MANIFEST,
        &manifest,
    );
    assert_eq!(error_code(resp), "DIGEST_INVALID");
    let resp = client
        .get(reg.url("/v2/ns/app/manifests/nope"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp), "MANIFEST_UNKNOWN");
    let resp = client.get(reg.url("/v2/nothing/tags/list")).send().unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp), "NAME_UNKNOWN");
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let resp = put(
        &client,
        &reg,
        "/v2/ns/app/manifests/big",
        OCI_MANIFEST,
        &huge,
    );
    assert_eq!(resp.status(), 413);

    // Tags in pages.
    for tag in ["v3", "v2", "latest"] {
        let resp = put(
            &client,
            &reg,
            &format!("/v2/ns/app/manifests/{tag}"),
            OCI_MANIFEST,
            &manifest,
        );
        assert_eq!(resp.status(), 201);
    }
    let resp = client.get(reg.url("/v2/ns/app/tags/list")).send().unwrap();
    let body: Value = resp.json().unwrap();
    assert_eq!(
        body,
        json!({"name": "ns/app", "tags": ["latest", "v1", "v2", "v3"]})
    );
    let resp = client
        .get(reg.url("/v2/ns/app/tags/list?n=2&last=latest"))
        .send()
        .unwrap();
    assert_eq!(
        resp.headers()["link"],
        "</v2/ns/app/tags/list?n=2&last=v2>; rel=\"next\""
    );
    let body: Value = resp.json().unwrap();
    assert_eq!(body["tags"], json!(["v1", "v2"]));
    let resp = client
        .get(reg.url("/v2/ns/app/tags/list?n=0"))
        .send()
        .unwrap();
    assert!(resp.headers().get("link").is_none());
    assert_eq!(resp.json::<Value>().unwrap()["tags"], json!([]));

    // A referrer, whose empty config the client did not upload.
    let artifact = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": sha256(b"{}"), "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len()},
        "annotations": {"org.example.kind": "sbom"},
    })
    .to_string();
    let artifact_digest = sha256(artifact.as_bytes());
    let resp = put(
        &client,
        &reg,
        &format!("/v2/ns/app/manifests/{artifact_digest}"),
        OCI_MANIFEST,
        artifact.as_bytes(),
    );
    assert_eq!(resp.status(), 201, "{}", reg.log());
    assert_eq!(resp.headers()["oci-subject"], digest.as_str());
    let resp = client
        .get(reg.url(&format!("/v2/ns/app/referrers/{digest}")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], OCI_INDEX);
    assert!(resp.headers().get("oci-filters-applied").is_none());
    let index: Value = resp.json().unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"][0]["digest"], artifact_digest.as_str());
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.example.kind"],
        "sbom"
    );
    let resp = client
        .get(reg.url(&format!(
            "/v2/ns/app/referrers/{digest}?artifactType=application/vnd.other"
        )))
        .send()
        .unwrap();
    assert_eq!(resp.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(resp.json::<Value>().unwrap()["manifests"], json!([]));
    let resp = client
        .get(reg.url("/v2/ns/app/referrers/sha256:nothex"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The catalog.
    image(storage, "a/b/c", b"another");
    let resp = client.get(reg.url("/v2/_catalog")).send().unwrap();
    assert_eq!(
        resp.json::<Value>().unwrap(),
        json!({"repositories": ["a/b/c", "ns/app"]})
    );
    let resp = client.get(reg.url("/v2/_catalog?n=1")).send().unwrap();
    assert_eq!(
        resp.headers()["link"],
        "</v2/_catalog?n=1&last=a/b/c>; rel=\"next\""
    );
    let resp = client
        .get(reg.url("/v2/_catalog?n=1&last=a/b/c"))
        .send()
        .unwrap();
    assert!(resp.headers().get("link").is_none());
    assert_eq!(
        resp.json::<Value>().unwrap()["repositories"],
        json!(["ns/app"])
    );

    // Deletes: a tag alone, then the manifest with its other tags.
    let resp = client
        .delete(reg.url("/v2/ns/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = client
        .get(reg.url("/v2/ns/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client
        .get(reg.url(&format!("/v2/ns/app/manifests/{digest}")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .delete(reg.url(&format!("/v2/ns/app/manifests/{digest}")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = client.get(reg.url("/v2/ns/app/tags/list")).send().unwrap();
    assert_eq!(resp.json::<Value>().unwrap()["tags"], json!([]));
    let resp = client
        .delete(reg.url(&format!("/v2/ns/app/manifests/{artifact_digest}")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = client
        .get(reg.url(&format!("/v2/ns/app/referrers/{digest}")))
        .send()
        .unwrap();
    assert_eq!(resp.json::<Value>().unwrap()["manifests"], json!([]));
    let resp = client
        .delete(reg.url("/v2/nothing/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(error_code(resp), "NAME_UNKNOWN");
}

#[test]
fn deletes_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), false);
    let client = common::client();
    let manifest = image(dir.path(), "app", b"layer");
    assert_eq!(
        put(
            &client,
            &reg,
            "/v2/app/manifests/latest",
            OCI_MANIFEST,
            &manifest
        )
        .status(),
        201
    );
    let resp = client
        .delete(reg.url("/v2/app/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(error_code(resp), "UNSUPPORTED");
    let resp = client
        .get(reg.url("/v2/app/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
}
