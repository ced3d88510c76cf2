//! What an operator watches, through the real binary (issue 12): the
//! Prometheus listener while requests and a slow push go on, and the
//! liveness and readiness probes when a backend fails.

mod common;
mod v2_support;

use std::io::Read;
use std::time::Duration;

use serde_json::Value;

use v2_support::s3_server;
use v2_support::*;

/// The value of one series in a scrape, 0 when absent.
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn scrape(url: &str) -> String {
    let resp = common::client().get(url).send().unwrap();
    assert_eq!(resp.status(), 200);
    let kind = header(&resp, "content-type").unwrap_or_default();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    resp.text().unwrap()
}

/// A body that sends `total` bytes, `chunk` at a time, sleeping between.
struct Slow {
    left: usize,
    pause: Duration,
    started: bool,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.started {
            std::thread::sleep(self.pause);
        }
        self.started = true;
        let n = buf.len().min(self.left).min(64 << 10);
        buf[..n].fill(b'x');
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn counters_move_with_requests_and_a_scrape_answers_during_a_push() {
    let metrics_port = common::free_port();
    let address = format!("127.0.0.1:{metrics_port}");
    let registry =
        Backend::local().start(&[("METRICS_ADDRESS", &address), ("METRICS_PATH", "/prom")]);
    let url = format!("http://{address}/prom");
    let v2 = V2::new(&registry);
    let route = "route=\"/v2/{name}/blobs/{digest}\"";
    let ok_gets =
        format!("registry_http_requests_total{{api=\"v2\",method=\"GET\",{route},status=\"200\"}}");
    let misses =
        format!("registry_http_requests_total{{api=\"v2\",method=\"GET\",{route},status=\"404\"}}");
    let before = scrape(&url);

    let blob = unique_bytes("metrics", 100_000);
    let digest = v2.push_blob("secret-team/hidden-app", &blob);
    for _ in 0..3 {
        let resp = v2.get(&format!("/v2/secret-team/hidden-app/blobs/{digest}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().unwrap().len(), blob.len());
    }
    let missing = sha256(b"nothing");
    assert_eq!(
        v2.get(&format!("/v2/secret-team/hidden-app/blobs/{missing}"))
            .status(),
        404
    );
    let after = scrape(&url);
    assert_eq!(
        value(&after, &ok_gets) - value(&before, &ok_gets),
        3.0,
        "{after}"
    );
    assert_eq!(
        value(&after, &misses) - value(&before, &misses),
        1.0,
        "{after}"
    );
    let sent = "registry_http_response_body_bytes_total{api=\"v2\"}";
    assert!(value(&after, sent) - value(&before, sent) >= 3.0 * blob.len() as f64);
    let read = "registry_http_request_body_bytes_total{api=\"v2\"}";
    assert!(value(&after, read) - value(&before, read) >= blob.len() as f64);
    let latency = format!(
        "registry_http_request_duration_seconds_count{{api=\"v2\",method=\"GET\",{route}}}"
    );
    assert!(value(&after, &latency) >= 4.0, "{after}");
    assert!(
        value(&after, "process_resident_memory_bytes") > 0.0,
        "{after}"
    );
    // No repository name, digest or path reaches a label.
    for secret in ["secret-team", "hidden-app", &digest[7..]] {
        assert!(!after.contains(secret), "{secret} in the scrape");
    }
    // A v1 request has its own label; an unknown route one for all.
    common::client()
        .get(registry.url("/v1/_ping"))
        .send()
        .unwrap();
    common::client()
        .get(registry.url("/no/such/thing"))
        .send()
        .unwrap();
    let text = scrape(&url);
    assert!(
        text.contains("api=\"v1\",method=\"GET\",route=\"/v1/_ping\""),
        "{text}"
    );
    assert!(text.contains("route=\"unmatched\""), "{text}");
    assert!(!text.contains("/no/such/thing"));

    // A push that takes its time: the scrape answers meanwhile and counts
    // it as an upload in progress.
    let location = v2.start_upload("team/slow");
    let patch_url = if location.starts_with("http") {
        location.clone()
    } else {
        registry.url(&location)
    };
    let pushing = std::thread::spawn(move || {
        let body = Slow {
            left: 8 << 20,
            pause: Duration::from_millis(20),
            started: false,
        };
        common::client()
            .patch(patch_url)
            .header("content-type", "application/octet-stream")
            .body(reqwest::blocking::Body::new(body))
            .send()
            .unwrap()
            .status()
    });
    let in_progress = "registry_uploads_in_progress";
    let mut seen = false;
    for _ in 0..100 {
        let text = scrape(&url);
        if value(&text, in_progress) >= 1.0 {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(seen, "no upload in progress seen during the push");
    assert!(!pushing.is_finished(), "the push ended before the scrape");
    assert_eq!(pushing.join().unwrap(), 202);
    assert_eq!(value(&scrape(&url), in_progress), 0.0);
    // Only the metrics path is served there.
    let other = common::client()
        .get(format!("http://{address}/v2/"))
        .send()
        .unwrap();
    assert_eq!(other.status(), 404);
}

fn probe(registry: &common::Registry, path: &str) -> (u16, Value) {
    let resp = common::client().get(registry.url(path)).send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

/// Storage here: an S3 server of the test's own, stopped under the
/// registry. (The search index's half is in `tests/search.rs`, where a
/// PostgreSQL database is dropped under the registry.)
#[test]
fn readiness_names_the_backend_that_fails() {
    let Ok(server) = s3_server::start_on("127.0.0.1") else {
        if std::env::var_os("CI").is_some() {
            panic!("the S3 test server is required under CI");
        }
        eprintln!("SKIPPED: the storage half of readiness_names_the_backend_that_fails (no moto)");
        return;
    };
    let bucket = "readiness";
    server.create_bucket(bucket);
    let mut env = server.registry_env(bucket);
    env.push(("SEARCH_BACKEND".into(), String::new()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let registry = common::Registry::start(&env);
    assert_eq!(probe(&registry, "/readyz").0, 200);
    drop(server);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = probe(&registry, "/readyz");
        if status == 503 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "storage stopped, still ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (&body["storage"], &body["search"]),
        (&"failed".into(), &"ok".into())
    );
    assert_eq!(
        probe(&registry, "/healthz"),
        (200, serde_json::json!({"status": "ok"}))
    );
    assert!(registry.log().contains("readiness: storage failed"));
    // The container's probe says unhealthy.
    let out = common::run(
        &["healthcheck"],
        &[
            ("REGISTRY_HOST", "127.0.0.1"),
            ("REGISTRY_PORT", &registry.port.to_string()),
        ],
    );
    assert!(!out.status.success());
}

/// The collector that `gc_interval` runs inside `serve` reports to the
/// scrape: runs, what went (a stray blob past the grace period) and when.
#[test]
fn collections_inside_serve_show_in_the_scrape() {
    let metrics_port = common::free_port();
    let address = format!("127.0.0.1:{metrics_port}");
    let registry = Backend::local().start(&[
        ("METRICS_ADDRESS", &address),
        ("GC_INTERVAL", "1"),
        ("GC_GRACE_PERIOD", "0"),
    ]);
    let url = format!("http://{address}/metrics");
    let v2 = V2::new(&registry);
    // A blob no manifest references: the next collection deletes it.
    let blob = unique_bytes("stray", 10_000);
    let digest = v2.push_blob("gc-metrics/app", &blob);

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(&url);
        if value(&text, "registry_gc_deleted_total{kind=\"blobs\"}") >= 1.0 {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no collection deleted the stray blob in 30 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(value(&text, "registry_gc_runs_total{result=\"done\"}") >= 1.0);
    assert!(value(&text, "registry_gc_freed_bytes_total") >= blob.len() as f64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value(&text, "registry_gc_last_success_timestamp_seconds");
    assert!((now - 60.0..=now + 1.0).contains(&last), "{last} vs {now}");
    assert_eq!(
        v2.get(&format!("/v2/gc-metrics/app/blobs/{digest}"))
            .status(),
        404
    );
}
