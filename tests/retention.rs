//! Retention rules (issue 30) through the real binary: `keep_last`,
//! `keep_tags`, immutable tags and `untagged_after`, applied by `registry-v1
//! gc` (with `--dry-run` saying what each rule would remove and why) and
//! by `gc_interval` inside `serve`, on local disk and S3 (moto), on both
//! trees, while clients push; kill -9 of a pass at random points loses
//! nothing a rule keeps.

#[macro_use]
mod common;
mod v2_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use v2_support::*;

const BASE: &str = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";
/// A push record protects what it names this long
/// (`collector::records::WINDOW`) and a bit.
const RECORD_WINDOW: Duration = Duration::from_secs(16);
/// Pushes a second apart at least: S3 keeps times to the second.
const TICK: Duration = Duration::from_millis(1100);

/// A flavor `retention` on the backend's storage: `ci/*` keeps its 10
/// most recently pushed tags, `latest`, and the immutable `v*`.
fn config(backend: &Backend, extra: &str) -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yml");
    let storage = backend.flavor_storage();
    std::fs::write(
        &file,
        format!(
            "retention:\n  standalone: true\n{storage}  search_backend: ''\n  \
             rules:\n    - repositories: ci/*\n      keep_last: 10\n      \
             immutable_tags: v*\n{extra}"
        ),
    )
    .unwrap();
    let mut env = backend.env();
    env.retain(|(k, _)| k != "SETTINGS_FLAVOR");
    env.push(("SETTINGS_FLAVOR".into(), "retention".into()));
    env.push(("DOCKER_REGISTRY_CONFIG".into(), file.display().to_string()));
    (dir, env)
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

struct Pushed {
    blobs: ImageBlobs,
    manifest: Vec<u8>,
}

fn push(v2: &V2, name: &str, tag: &str) -> Pushed {
    let blobs = ImageBlobs::new(&format!("{name}:{tag} {}", rand_suffix()), "amd64");
    blobs.push(v2, name);
    let manifest = blobs.oci_manifest();
    v2.push_manifest(name, tag, OCI_MANIFEST, &manifest);
    Pushed { blobs, manifest }
}

fn pulls_whole(v2: &V2, name: &str, tag: &str, image: &Pushed) {
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{tag}"));
    assert_eq!(resp.status(), 200, "{name}:{tag}");
    assert_eq!(
        resp.bytes().unwrap().to_vec(),
        image.manifest,
        "{name}:{tag}"
    );
    for blob in [&image.blobs.config, &image.blobs.layer] {
        let resp = v2.get(&format!("/v2/{name}/blobs/{}", sha256(blob)));
        assert_eq!(resp.status(), 200, "{name}:{tag}: a blob");
        assert_eq!(&resp.bytes().unwrap()[..], &blob[..], "{name}:{tag}");
    }
}

fn blob_key(digest: &str) -> String {
    let hex = hex_of(digest);
    format!("{V2_ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2])
}

fn tags_of(v2: &V2, name: &str) -> BTreeSet<String> {
    let list: serde_json::Value = v2.get(&format!("/v2/{name}/tags/list")).json().unwrap();
    list["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

fn gc(env: &[(String, String)], args: &[&str]) -> (String, String) {
    let mut all = vec!["gc"];
    if !args.contains(&"--grace-period") {
        all.extend(["--grace-period", "0"]);
    }
    all.extend_from_slice(args);
    let out = common::run(&all, &pairs(env));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "gc {args:?}: {stdout}{stderr}");
    (stdout, stderr)
}

/// A v1 tag pushed as docker 1.x does.
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

/// 50 tags in five waves a second apart (`v1.0` and `latest` first of
/// all), a v1 repository of 12 tags in two waves; `gc --dry-run` lists
/// the 40 older v2 tags and the 2 older v1 tags with their rule and
/// reason and deletes nothing; `gc`, while a client keeps pushing, leaves
/// the newest wave, `latest`, `v1.0` and every tag pushed meanwhile, all
/// pulling whole, and takes the bytes only removed tags named.
fn keep_last_leaves_the_newest(backend: Backend) {
    let (_dir, env) = config(&backend, "");
    let registry = common::Registry::start(&pairs(&env));
    let v2 = V2::new(&registry);
    let mut pushed = Vec::new();
    for tag in ["v1.0", "latest"] {
        pushed.push((tag.to_owned(), push(&v2, "ci/app", tag)));
    }
    for wave in 0..5 {
        std::thread::sleep(TICK);
        for i in 0..10 {
            let tag = format!("w{wave}-{i}");
            pushed.push((tag.clone(), push(&v2, "ci/app", &tag)));
        }
    }
    for tag in ["old-1", "old-2"] {
        push_v1(&registry, "ci/legacy", tag);
    }
    std::thread::sleep(TICK);
    for i in 0..10 {
        push_v1(&registry, "ci/legacy", &format!("new-{i}"));
    }
    // What `dev/*` holds, no rule covers.
    let free = push(&v2, "dev/app", "w0");
    std::thread::sleep(RECORD_WINDOW);

    let (listed, _) = gc(&env, &["--dry-run"]);
    let would: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with("tag ") || l.starts_with("v1 tag "))
        .collect();
    assert_eq!(would.len(), 42, "{listed}");
    assert!(
        listed.contains("tag ci/app:w0-0 (sha256:",)
            && listed.contains(
                "): rule 1 (repositories: ci/*): not among the 10 most recently pushed (number"
            ),
        "{listed}"
    );
    assert!(
        listed.contains("v1 tag ci/legacy:old-1: rule 1 (repositories: ci/*)"),
        "{listed}"
    );
    assert!(
        listed.contains("42 tags would be removed by retention rules"),
        "{listed}"
    );
    assert!(
        !listed.contains("ci/app:w4-") && !listed.contains("dev/app"),
        "{listed}"
    );
    assert_eq!(tags_of(&v2, "ci/app").len(), 52, "a dry run deleted");

    // A client pushes all along the collection.
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (stop, base) = (stop.clone(), registry.url(""));
        std::thread::spawn(move || {
            let v2 = V2::at(base);
            let mut live = Vec::new();
            while !stop.load(Ordering::Relaxed) || live.len() < 3 {
                let tag = format!("live-{}", live.len());
                live.push((tag.clone(), push(&v2, "ci/app", &tag)));
            }
            live
        })
    };
    // A grace period, as in production: the blobs a client uploads just
    // before the run starts wait for their manifest (with none, one the
    // client is about to name may go, as with distribution).
    let (out, log) = gc(&env, &["--grace-period", "5"]);
    stop.store(true, Ordering::Relaxed);
    let live = pusher.join().unwrap();
    assert!(
        out.contains("42 tags removed by retention rules"),
        "{out}{log}"
    );
    assert!(
        log.contains("retention: tag ci/app:w0-0 removed (rule 1"),
        "{log}"
    );

    let left = tags_of(&v2, "ci/app");
    for (tag, image) in pushed.iter().chain(&live) {
        let kept = tag.starts_with("w4-") || tag.starts_with("live-") || !tag.starts_with('w');
        assert_eq!(left.contains(tag), kept, "{tag}: {left:?}");
        if kept {
            pulls_whole(&v2, "ci/app", tag, image);
        } else {
            let key = blob_key(&sha256(&image.blobs.layer));
            assert!(
                backend.read_stored(&key).is_none(),
                "{tag}: its layer stays"
            );
        }
    }
    pulls_whole(&v2, "dev/app", "w0", &free);
    let v1_tags: serde_json::Value = common::client()
        .get(registry.url("/v1/repositories/ci/legacy/tags"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let v1_left: BTreeSet<&str> = v1_tags
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<String> = (0..10).map(|i| format!("new-{i}")).collect();
    assert_eq!(
        v1_left,
        expected.iter().map(String::as_str).collect(),
        "the v1 tree"
    );
}

#[test]
fn keep_last_leaves_the_newest_on_local_disk() {
    keep_last_leaves_the_newest(Backend::local());
}

#[test]
fn keep_last_leaves_the_newest_on_s3() {
    let Some(backend) = Backend::s3() else {
        eprintln!("\nSKIPPED: no S3 server (moto_server) for the retention test\n");
        return;
    };
    keep_last_leaves_the_newest(backend);
}

/// Sets the modification time of a stored file (local disk) to `ago`
/// seconds before now: the push of long ago, without waiting for it.
fn age(path: &Path, ago: u64) {
    let status = Command::new("touch")
        .args(["-m", "-d", &format!("@{}", now_secs() - ago)])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "touch {}", path.display());
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `gc_interval` inside `serve`: `keep_within` and `untagged_after` by
/// the times the pushes were recorded (aged here with `touch`, as weeks
/// would), `keep_tags` replacing `latest`; every action in the log and in
/// `registry_rule_actions_total`.
#[test]
fn serve_applies_windows_and_counts_what_it_removes() {
    let backend = Backend::local();
    let extra = "    - repositories: team/*\n      keep_within: 7d\n      \
                 keep_tags: stable\n      untagged_after: 1d\n  gc_interval: 1\n  \
                 gc_grace_period: 0\n  metrics_address: _env:METRICS_ADDRESS\n";
    let (_dir, mut env) = config(&backend, extra);
    let metrics = common::free_port();
    env.push(("METRICS_ADDRESS".into(), format!("127.0.0.1:{metrics}")));
    let registry = common::Registry::start(&pairs(&env));
    let v2 = V2::new(&registry);
    let images: Vec<(&str, Pushed)> = ["recent", "old", "stable", "latest"]
        .into_iter()
        .map(|tag| (tag, push(&v2, "team/app", tag)))
        .collect();
    let young = ImageBlobs::new(&format!("young {}", rand_suffix()), "amd64");
    young.push(&v2, "team/app");
    let old = ImageBlobs::new(&format!("untagged {}", rand_suffix()), "amd64");
    old.push(&v2, "team/app");
    let (young_digest, old_digest) = (sha256(&young.oci_manifest()), sha256(&old.oci_manifest()));
    v2.push_manifest(
        "team/app",
        &young_digest,
        OCI_MANIFEST,
        &young.oci_manifest(),
    );
    v2.push_manifest("team/app", &old_digest, OCI_MANIFEST, &old.oci_manifest());
    let repo = backend
        .storage_path()
        .unwrap()
        .join(format!("{V2_ROOT}/repositories/team/app/_manifests"));
    let week = 7 * 86_400;
    // A tag and its manifest pushed a week ago.
    for (tag, image) in &images[1..] {
        age(&repo.join(format!("tags/{tag}/current/link")), week + 3600);
        let digest = sha256(&image.manifest);
        age(
            &repo.join(format!("revisions/sha256/{}/link", hex_of(&digest))),
            week + 3600,
        );
    }
    age(
        &repo.join(format!("revisions/sha256/{}/link", hex_of(&old_digest))),
        86_400 + 3600,
    );

    let removed = |action: &str| {
        common::metric(
            metrics,
            &format!("registry_rule_actions_total{{action=\"{action}\",rule=\"retention\"}}"),
        )
    };
    let deadline = Instant::now() + RECORD_WINDOW + Duration::from_secs(30);
    while removed("removed_manifest") < 3.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(removed("removed_tag"), 2.0, "{}", registry.log());
    assert_eq!(removed("removed_manifest"), 3.0, "{}", registry.log());
    let left = tags_of(&v2, "team/app");
    assert_eq!(left, ["recent", "stable"].map(String::from).into());
    for (tag, image) in &images {
        if left.contains(*tag) {
            pulls_whole(&v2, "team/app", tag, image);
        }
    }
    let status = |digest: &str| {
        v2.get_manifest(&format!("/v2/team/app/manifests/{digest}"))
            .status()
    };
    assert_eq!(status(&young_digest), 200, "an untagged manifest of today");
    assert_eq!(status(&old_digest), 404, "an untagged manifest of two days");
    let log = registry.log();
    assert!(
        log.contains("retention: tag team/app:old removed (rule 2 (repositories: team/*): pushed 7d 1h ago, before keep_within 7d)"),
        "{log}"
    );
    assert!(
        log.contains("untagged, pushed 1d 1h ago, past untagged_after 1d"),
        "{log}"
    );
}

/// kill -9 of `gc` at random points of retention passes, each over 60
/// tags older than the 10 a `keep_last` rule keeps (aged with `touch`),
/// then a whole run: after every kill, each tag the rule keeps pulls
/// whole; at the end exactly those are left, and the bytes of the others
/// are gone.
#[test]
fn kill_9_during_retention_loses_nothing_a_rule_keeps() {
    let backend = Backend::local();
    let (_dir, env) = config(&backend, "");
    let registry = common::Registry::start(&pairs(&env));
    let v2 = V2::new(&registry);
    let tags = backend
        .storage_path()
        .unwrap()
        .join(format!("{V2_ROOT}/repositories/ci/app/_manifests/tags"));
    let held = push(&v2, "ci/app", "v2.0");
    age(&tags.join("v2.0/current/link"), 7200);
    let newest: Vec<(String, Pushed)> = (0..10)
        .map(|i| (format!("new-{i}"), push(&v2, "ci/app", &format!("new-{i}"))))
        .collect();
    let check = |what: &str| {
        pulls_whole(&v2, "ci/app", "v2.0", &held);
        for (tag, image) in &newest {
            pulls_whole(&v2, "ci/app", tag, image);
        }
        let left = tags_of(&v2, "ci/app");
        assert!(left.len() >= 11, "{what}: {left:?}");
        left.len() - 11
    };
    let mut older = Vec::new();
    let mut seed = now_secs();
    for round in 0..6 {
        for i in 0..60 {
            let tag = format!("old-{round}-{i}");
            older.push(push(&v2, "ci/app", &tag));
            age(&tags.join(format!("{tag}/current/link")), 3600);
        }
        // A small linear congruential step: kills spread over a pass.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(5 + (seed >> 33) % 120);
        let mut child = common::command()
            .args(["gc", "--grace-period", "0", "--lease-ttl", "2"])
            .envs(pairs(&env))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let left = check(&format!("after kill {round} at {delay:?}"));
        eprintln!("kill {round} at {delay:?}: {left} old tags left");
        // Its lease runs out before the next run takes one.
        std::thread::sleep(Duration::from_secs(2));
    }
    std::thread::sleep(RECORD_WINDOW);
    let out = common::run(&["gc", "--grace-period", "0"], &pairs(&env));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(check("after a whole run"), 0);
    let left = tags_of(&v2, "ci/app");
    let expected: BTreeSet<String> = newest
        .iter()
        .map(|(t, _)| t.clone())
        .chain(["v2.0".to_owned()])
        .collect();
    assert_eq!(left, expected);
    for image in &older {
        let key = blob_key(&sha256(&image.blobs.layer));
        assert!(backend.read_stored(&key).is_none(), "an old layer stays");
    }
}
