//! The Redis cache of small files through the real binary (issue 14): two
//! instances on one store and one Redis (with a password), what is cached
//! and what is not, deletes seen by the other instance at once, and Redis
//! killed and started again under traffic from both with no failed
//! request. The sharing runs on S3 (or local disk) and on Swift. (The
//! driver suite runs through the cache too: `tests/storage_drivers.rs`,
//! `cached_memory`.)

mod common;
mod v2_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use v2_support::*;

#[path = "storage_support/redis_server.rs"]
mod redis_server;

const PASSWORD: &str = "redis pass 9";

struct Instance {
    registry: common::Registry,
    metrics: String,
}

impl Instance {
    fn start(backend: &Backend, redis: &redis_server::RedisServer) -> Instance {
        let port = common::free_port();
        let address = format!("127.0.0.1:{port}");
        let env = redis.env();
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.push(("METRICS_ADDRESS", &address));
        all.push(("SEARCH_BACKEND", ""));
        let registry = backend.start(&all);
        Instance {
            registry,
            metrics: format!("http://{address}/metrics"),
        }
    }

    fn v2(&self) -> V2 {
        V2::new(&self.registry)
    }

    /// Cache lookups with this result so far.
    fn lookups(&self, result: &str) -> f64 {
        let text = common::client()
            .get(&self.metrics)
            .send()
            .unwrap()
            .text()
            .unwrap();
        let series = format!("registry_cache_lookups_total{{result=\"{result}\"}}");
        text.lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// An image pushed over v2: its manifest's digest.
fn push_image(v2: &V2, name: &str, label: &str) -> String {
    let image = ImageBlobs::new(label, "amd64");
    image.push(v2, name);
    v2.push_manifest(name, label, OCI_MANIFEST, &image.oci_manifest())
}

fn get_status(v2: &V2, path: &str) -> u16 {
    v2.get_manifest(path).status().as_u16()
}

#[test]
fn instances_share_the_cache_and_see_each_others_deletes() {
    // S3 where the server is there (as deployments with several instances
    // run), else one local folder for both.
    share_the_cache(Backend::s3().unwrap_or_else(Backend::local));
}

#[test]
fn instances_on_swift_share_the_cache_and_see_each_others_deletes() {
    if let Some(backend) = Backend::swift() {
        share_the_cache(backend);
    }
}

fn share_the_cache(backend: Backend) {
    let Some(redis) = redis_server::start(Some(PASSWORD)) else {
        return;
    };
    let a = Instance::start(&backend, &redis);
    let b = Instance::start(&backend, &redis);
    let image = ImageBlobs::new("v1", "amd64");
    image.push(&a.v2(), "team/app");
    let manifest = image.oci_manifest();
    let digest = a
        .v2()
        .push_manifest("team/app", "v1", OCI_MANIFEST, &manifest);

    // B reads the manifest from storage once, then from Redis.
    let by_digest = format!("/v2/team/app/manifests/{digest}");
    let hits = b.lookups("hit");
    for _ in 0..3 {
        assert_eq!(get_status(&b.v2(), &by_digest), 200);
    }
    assert!(
        b.lookups("hit") >= hits + 2.0,
        "B's pulls were not served by Redis"
    );
    let keys = redis.cli(&["--scan", "--pattern", "registry-v1:*"]);
    assert!(
        keys.contains(&format!(
            "/_manifests/revisions/sha256/{}/link",
            hex_of(&digest)
        )),
        "{keys}"
    );
    assert!(
        keys.contains(&format!("/blobs/sha256/{}/", &hex_of(&digest)[..2])),
        "{keys}"
    );
    // Tags move: never cached.
    assert!(!keys.contains("/current/link"), "{keys}");
    // Uploads are never read through the cache: their removal is one
    // tombstone on the folder.
    for key in keys.lines().filter(|k| k.contains("/_uploads/")) {
        assert_eq!(redis.cli(&["GET", key]).trim(), "t", "{key}");
    }

    // A deletes; B answers 404 at once, and so does a pull through A.
    assert_eq!(a.v2().delete(&by_digest).status(), 202);
    assert_eq!(get_status(&b.v2(), &by_digest), 404);
    assert_eq!(get_status(&a.v2(), &by_digest), 404);
    // The same manifest pushed again is served again, by both.
    let again = a
        .v2()
        .push_manifest("team/app", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(again, digest);
    assert_eq!(get_status(&b.v2(), &by_digest), 200);

    // v1: an image pushed through A, its json and ancestry read through B,
    // the second time from Redis.
    let http = common::client();
    let id = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";
    let image = common::fixtures().join(id);
    let json = std::fs::read(image.join("json")).unwrap();
    let layer = std::fs::read(image.join("layer.tar")).unwrap();
    let url = |i: &Instance, what: &str| i.registry.url(&format!("/v1/images/{id}/{what}"));
    let checksum = common::v1_checksum(&json, &layer);
    let status = |r: reqwest::blocking::RequestBuilder| r.send().unwrap().status().as_u16();
    assert_eq!(status(http.put(url(&a, "json")).body(json.clone())), 200);
    assert_eq!(status(http.put(url(&a, "layer")).body(layer)), 200);
    assert_eq!(
        status(
            http.put(url(&a, "checksum"))
                .header("X-Docker-Checksum-Payload", checksum)
        ),
        200
    );
    let hits = b.lookups("hit");
    for _ in 0..2 {
        let resp = http.get(url(&b, "json")).send().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().unwrap(), json);
        assert_eq!(status(http.get(url(&b, "ancestry"))), 200);
    }
    assert!(
        b.lookups("hit") >= hits + 2.0,
        "B's v1 reads were not served by Redis"
    );
    for instance in [&a, &b] {
        let log = instance.registry.log();
        assert!(!log.contains(PASSWORD), "the Redis password in the log");
        assert!(!log.contains("unavailable"), "{log}");
    }
}

#[test]
fn redis_killed_and_started_again_under_traffic_fails_no_request() {
    let Some(mut redis) = redis_server::start(None) else {
        return;
    };
    let backend = Backend::local();
    let a = Instance::start(&backend, &redis);
    let b = Instance::start(&backend, &redis);
    let kept = push_image(&a.v2(), "team/kept", "kept");
    let doomed = push_image(&a.v2(), "team/doomed", "doomed");
    let doomed_path = format!("/v2/team/doomed/manifests/{doomed}");
    // B has the doomed manifest in Redis.
    for _ in 0..2 {
        assert_eq!(get_status(&b.v2(), &doomed_path), 200);
    }
    assert!(b.lookups("hit") >= 1.0);

    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    std::thread::scope(|threads| {
        for n in 0..4 {
            let (stop, done) = (&stop, &done);
            let instance = if n % 2 == 0 { &a } else { &b };
            let kept = kept.clone();
            threads.spawn(move || {
                let v2 = instance.v2();
                while !stop.load(Ordering::Relaxed) {
                    for path in [
                        format!("/v2/team/kept/manifests/{kept}"),
                        "/v2/team/kept/manifests/kept".to_owned(),
                    ] {
                        assert_eq!(get_status(&v2, &path), 200, "{path} failed");
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        // Kept on disk, so that the restarted Redis still holds B's entry
        // of the doomed manifest: the delete made during the outage must
        // be caught up on.
        redis.cli(&["SAVE"]);
        redis.stop();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(a.v2().delete(&doomed_path).status(), 202);
        redis.start_again();
        // Both try Redis again within RETRY_AFTER (2 s) of their last
        // failure, at their next request.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !(a.registry.log().contains("answers again")
            && b.registry.log().contains("answers again"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the cache was not used again"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(done.load(Ordering::Relaxed) > 20, "too little traffic");
    assert_eq!(
        get_status(&b.v2(), &doomed_path),
        404,
        "a deleted manifest served from Redis"
    );
    assert_eq!(get_status(&a.v2(), &doomed_path), 404);
    for instance in [&a, &b] {
        let log = instance.registry.log();
        assert_eq!(log.matches("unavailable").count(), 1, "said once: {log}");
        assert_eq!(log.matches("answers again").count(), 1, "{log}");
    }
    let hits = a.lookups("hit");
    assert_eq!(
        get_status(&a.v2(), &format!("/v2/team/kept/manifests/{kept}")),
        200
    );
    assert!(a.lookups("hit") > hits, "the cache is used again");
}
