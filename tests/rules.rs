//! The operator's rules (issue 30) through the real binary: immutable tags
//! refuse a push of other content (v2 with a plain client and skopeo, v1)
//! and any delete that would take them away, take the same content again,
//! leave tags and repositories no rule names alone, and count what they
//! refused.

mod common;
mod login_support;
mod v2_support;

use common::Registry;
use login_support::{Layout, INSTALL_CLIENTS};
use v2_support::*;

/// A registry on local storage whose rules hold `v*` and `release-<n>`
/// tags of `prod/*`; with its metrics port.
fn registry_with_rules(backend: &Backend) -> (Registry, u16) {
    let dir = tempfile::tempdir().unwrap().keep();
    let file = dir.join("config.yml");
    let storage = backend.storage_path().unwrap();
    std::fs::write(
        &file,
        format!(
            "rules_test:\n  storage: local\n  storage_path: {}\n  standalone: true\n  \
             metrics_address: _env:METRICS_ADDRESS\n  rules:\n    - repositories: prod/*\n      \
             immutable_tags: ['v*', 'regex:release-\\d+']\n",
            storage.display()
        ),
    )
    .unwrap();
    let metrics = common::free_port();
    let metrics_address = format!("127.0.0.1:{metrics}");
    let registry = Registry::start(&[
        ("DOCKER_REGISTRY_CONFIG", file.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "rules_test"),
        ("METRICS_ADDRESS", metrics_address.as_str()),
    ]);
    (registry, metrics)
}

fn refused(metrics: u16, action: &str) -> f64 {
    common::metric(
        metrics,
        &format!("registry_rule_actions_total{{action=\"{action}\",rule=\"immutable_tags\"}}"),
    )
}

/// The digest `name:tag` points at now.
fn digest_of(v2: &V2, name: &str, tag: &str) -> String {
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{tag}"));
    header(&resp, "docker-content-digest").unwrap()
}

#[test]
fn an_immutable_tag_takes_its_content_again_and_refuses_any_other() {
    let backend = Backend::local();
    let (registry, metrics) = registry_with_rules(&backend);
    let v2 = V2::new(&registry);
    let (a, b) = (
        ImageBlobs::new("immutable a", "amd64"),
        ImageBlobs::new("immutable b", "amd64"),
    );
    a.push(&v2, "prod/app");
    b.push(&v2, "prod/app");
    let first = v2.push_manifest("prod/app", "v1.0", OCI_MANIFEST, &a.oci_manifest());
    // A client retrying its push.
    v2.push_manifest("prod/app", "v1.0", OCI_MANIFEST, &a.oci_manifest());

    let moved = v2.put_manifest("prod/app", "v1.0", OCI_MANIFEST, &b.oci_manifest());
    let status = moved.status();
    let body: serde_json::Value = moved.json().unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("tag `v1.0` of `prod/app` is immutable (rule `immutable_tags: v*`)")
            && message.contains(&first),
        "{message}"
    );
    assert_eq!(digest_of(&v2, "prod/app", "v1.0"), first);
    // The pattern after `regex:` holds too; a push by digest naming the
    // tag with `?tag=` is a push of the tag.
    v2.push_manifest("prod/app", "release-7", OCI_MANIFEST, &a.oci_manifest());
    let b_digest = sha256(&b.oci_manifest());
    let by_digest = v2.put_manifest(
        "prod/app",
        &format!("{b_digest}?tag=release-7"),
        OCI_MANIFEST,
        &b.oci_manifest(),
    );
    v2.expect_error(by_digest, 403, "DENIED", "?tag= of an immutable tag");

    // Tags no pattern names, and repositories no rule covers, move.
    v2.push_manifest("prod/app", "latest", OCI_MANIFEST, &a.oci_manifest());
    v2.push_manifest("prod/app", "latest", OCI_MANIFEST, &b.oci_manifest());
    v2.push_manifest(
        "prod/app",
        "release-candidate",
        OCI_MANIFEST,
        &b.oci_manifest(),
    );
    a.push(&v2, "dev/app");
    b.push(&v2, "dev/app");
    v2.push_manifest("dev/app", "v1.0", OCI_MANIFEST, &a.oci_manifest());
    v2.push_manifest("dev/app", "v1.0", OCI_MANIFEST, &b.oci_manifest());

    // Neither the tag nor the manifest it points at can be deleted.
    let http = common::client();
    for reference in ["v1.0", first.as_str()] {
        let gone = http
            .delete(registry.url(&format!("/v2/prod/app/manifests/{reference}")))
            .send()
            .unwrap();
        v2.expect_error(gone, 403, "DENIED", "delete of an immutable tag");
    }
    assert_eq!(digest_of(&v2, "prod/app", "v1.0"), first);
    // Nor the repository that holds it.
    let whole = v2.delete("/v2/prod/app/_registry-v1/repository");
    v2.expect_error(whole, 403, "DENIED", "delete of the repository");
    assert_eq!(digest_of(&v2, "prod/app", "v1.0"), first);
    let latest = http
        .delete(registry.url("/v2/prod/app/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(latest.status(), 202);

    assert_eq!(refused(metrics, "refused_push"), 2.0);
    assert_eq!(refused(metrics, "refused_delete"), 3.0);
    assert!(
        registry
            .log()
            .contains("refused_push: tag `v1.0` of `prod/app`"),
        "{}",
        registry.log()
    );
}

#[test]
fn skopeo_is_told_why_its_push_over_an_immutable_tag_is_refused() {
    if !tool_available("skopeo", INSTALL_CLIENTS) {
        panic!("skopeo is not installed: {INSTALL_CLIENTS}");
    }
    let backend = Backend::local();
    let (registry, _) = registry_with_rules(&backend);
    let dir = tempfile::tempdir().unwrap();
    let copy = |label: &str| {
        let layout = Layout::write(&dir.path().join(label), label);
        std::process::Command::new("skopeo")
            .args([
                "copy",
                "--dest-tls-verify=false",
                &layout.reference(),
                &format!("docker://127.0.0.1:{}/prod/tool:v2", registry.port),
            ])
            .output()
            .unwrap()
    };
    let first = copy("skopeo first");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = copy("skopeo other");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "an immutable tag moved: {stderr}");
    assert!(
        stderr.contains("denied") && stderr.contains("is immutable"),
        "{stderr}"
    );
}

#[test]
fn v1_tags_are_held_as_v2_tags_are() {
    let backend = Backend::local();
    let (registry, metrics) = registry_with_rules(&backend);
    let (json, layer) =
        common::v1_fixture("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158");
    let (a, b) = ("a1".repeat(32), "b2".repeat(32));
    let (json_a, json_b) = (
        common::v1_json(json.clone(), &a, None),
        common::v1_json(json, &b, None),
    );
    let base = |path: &str| registry.url(path);
    let upload = |id: &str, json: &[u8], tag: &str| {
        common::push_v1(
            &base,
            "prod/old",
            &[common::V1Upload {
                id,
                json,
                layer: &layer,
            }],
            tag,
        )
    };
    upload(&a, &json_a, "v1");
    upload(&b, &json_b, "latest");
    let http = common::client();
    let tag_to = |tag: &str, id: &str| {
        http.put(registry.url(&format!("/v1/repositories/prod/old/tags/{tag}")))
            .body(format!("\"{id}\""))
            .send()
            .unwrap()
    };
    assert_eq!(tag_to("v1", &a).status(), 200, "the same image again");
    let moved = tag_to("v1", &b);
    assert_eq!(moved.status(), 403);
    let text = moved.text().unwrap();
    assert!(
        text.contains("tag `v1` of `prod/old` is immutable") && text.contains(&a),
        "{text}"
    );
    assert_eq!(tag_to("latest", &a).status(), 200, "latest moves");
    let delete = |path: &str| http.delete(registry.url(path)).send().unwrap().status();
    assert_eq!(delete("/v1/repositories/prod/old/tags/v1"), 403);
    assert_eq!(delete("/v1/repositories/prod/old/"), 403);
    // A v2 delete of the name asks the v1 tree before either tree loses
    // anything: the v2 tag stays too.
    let v2 = V2::new(&registry);
    let image = ImageBlobs::new("v2 beside v1", "amd64");
    image.push(&v2, "prod/old");
    v2.push_manifest("prod/old", "edge", OCI_MANIFEST, &image.oci_manifest());
    let whole = v2.delete("/v2/prod/old/_registry-v1/repository");
    v2.expect_error(whole, 403, "DENIED", "v2 delete of a v1 immutable tag");
    assert_eq!(v2.get_manifest("/v2/prod/old/manifests/edge").status(), 200);
    assert_eq!(delete("/v1/repositories/prod/old/tags/latest"), 200);
    let tags: serde_json::Value = http
        .get(registry.url("/v1/repositories/prod/old/tags"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags, serde_json::json!({ "v1": a }));
    assert_eq!(refused(metrics, "refused_push"), 1.0);
    assert_eq!(refused(metrics, "refused_delete"), 3.0);
}
