//! Webhook notifications (issue 29) through the real binary, to a real
//! HTTP receiver on loopback that records what it gets and can answer
//! 500s, hang, or be stopped: the envelope as distribution's consumers read
//! it, for pushes (v2 and v1), pulls, mounts and deletes; nothing lost
//! while the endpoint is down, across a kill -9 at any moment, or with two
//! instances on one bucket or one folder; a hanging endpoint that does not hold up pushes; the bound
//! on the queue.

mod common;
mod login_support;
mod v2_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::Registry;
use v2_support::*;

/// What the receiver does with a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Accept,
    Fail,
    /// Reads and records the events, then answers 500: as a receiver that
    /// fails after it has stored them, so that they come again.
    RecordThenFail,
    /// Reads the request and never answers.
    Hang,
}

#[derive(Default)]
struct Seen {
    /// Each event, in the order received.
    events: Vec<Value>,
    posts: usize,
    content_types: BTreeSet<String>,
    authorizations: BTreeSet<String>,
    /// Envelopes that distribution's event types do not read.
    unreadable: Vec<String>,
}

/// distribution's event types (`notifications/event.go`), field for field
/// with their JSON names and Go types, refusing anything else: a consumer
/// written against them reads what this one reads.
mod distribution {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Envelope {
        #[allow(dead_code)]
        pub events: Vec<Event>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct Event {
        id: String,
        /// Go's `time.Time` reads RFC 3339 only.
        #[serde(deserialize_with = "rfc3339")]
        timestamp: (),
        action: String,
        target: Target,
        request: RequestRecord,
        actor: ActorRecord,
        source: SourceRecord,
    }

    fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let text = String::deserialize(d)?;
        let re = regex::Regex::new(
            r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$",
        )
        .unwrap();
        if re.is_match(&text) {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!("not RFC 3339: {text}")))
        }
    }

    /// `distribution.Descriptor`, embedded, then the target's own fields.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Target {
        media_type: Option<String>,
        digest: Option<String>,
        size: Option<i64>,
        urls: Option<Vec<String>>,
        annotations: Option<std::collections::BTreeMap<String, String>>,
        length: Option<i64>,
        repository: Option<String>,
        from_repository: Option<String>,
        url: Option<String>,
        tag: Option<String>,
        references: Option<Vec<Descriptor>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Descriptor {
        media_type: Option<String>,
        digest: Option<String>,
        size: Option<i64>,
        urls: Option<Vec<String>>,
        annotations: Option<std::collections::BTreeMap<String, String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct RequestRecord {
        id: String,
        addr: Option<String>,
        host: Option<String>,
        method: String,
        useragent: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct ActorRecord {
        name: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct SourceRecord {
        addr: Option<String>,
        #[serde(rename = "instanceID")]
        instance_id: Option<String>,
    }
}

/// A webhook receiver of the test's own, on a loopback port it keeps
/// across [`Receiver::stop`] and [`Receiver::resume`].
struct Receiver {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Seen>>,
    running: Option<Arc<AtomicBool>>,
}

impl Receiver {
    fn start() -> Receiver {
        let mut receiver = Receiver {
            port: common::free_port(),
            mode: Arc::new(Mutex::new(Mode::Accept)),
            seen: Arc::new(Mutex::new(Seen::default())),
            running: None,
        };
        receiver.resume();
        receiver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events", self.port)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Closes the port: connections are refused.
    fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.store(false, Ordering::SeqCst);
            // Wakes the accept loop so that it drops the listener.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn resume(&mut self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let running = Arc::new(AtomicBool::new(true));
        self.running = Some(running.clone());
        let (mode, seen) = (self.mode.clone(), self.seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if !running.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (mode, seen) = (mode.clone(), seen.clone());
                std::thread::spawn(move || serve(stream, &mode, &seen));
            }
        });
    }

    fn events(&self) -> Vec<Value> {
        self.seen.lock().unwrap().events.clone()
    }

    /// Waits until `done` holds of the events received, for up to `limit`.
    fn wait_for(&self, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "not received within {limit:?}; got {} events: {events:#?}",
                events.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
        let unreadable = self.seen.lock().unwrap().unreadable.clone();
        if !std::thread::panicking() {
            assert!(
                unreadable.is_empty(),
                "distribution's types do not read: {unreadable:#?}"
            );
        }
    }
}

fn serve(stream: TcpStream, mode: &Mutex<Mode>, seen: &Mutex<Seen>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = BTreeMap::new();
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mode = *mode.lock().unwrap();
    let mut stream = stream;
    match mode {
        Mode::Hang => {
            std::thread::sleep(Duration::from_secs(60));
        }
        Mode::Fail => {
            let _ = stream.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
        Mode::Accept | Mode::RecordThenFail => {
            let envelope: Value = serde_json::from_slice(&body).expect("an envelope of JSON");
            let strict = serde_json::from_slice::<distribution::Envelope>(&body);
            {
                let mut seen = seen.lock().unwrap();
                if let Err(e) = strict {
                    seen.unreadable
                        .push(format!("{e}: {}", String::from_utf8_lossy(&body)));
                }
                seen.posts += 1;
                seen.content_types
                    .insert(headers.get("content-type").cloned().unwrap_or_default());
                if let Some(auth) = headers.get("authorization") {
                    seen.authorizations.insert(auth.clone());
                }
                for event in envelope["events"].as_array().expect("events: a list") {
                    seen.events.push(event.clone());
                }
            }
            let _ = stream.write_all(if mode == Mode::Accept {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".as_slice()
            } else {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .as_slice()
            });
        }
    }
}

const TOKEN: &str = "Bearer s3cr3t-hook-t0ken";

/// A registry on `backend` sending to `endpoint` (YAML lines of one
/// endpoint, indented for the list), with the metrics on a port of their own.
fn registry_with(backend: &Backend, endpoint: &str) -> (Registry, u16) {
    let dir = tempfile::tempdir().unwrap().keep();
    let file = dir.join("config.yml");
    let storage = match backend.storage_path() {
        Some(path) => format!("  storage: local\n  storage_path: {}\n", path.display()),
        None => "  storage: s3\n  s3_bucket: _env:AWS_BUCKET\n  s3_region: _env:AWS_REGION\n  \
                 s3_access_key: _env:AWS_KEY\n  s3_secret_key: _env:AWS_SECRET\n  \
                 boto_host: _env:AWS_HOST\n  boto_port: _env:AWS_PORT\n  s3_secure: false\n  \
                 s3_encrypt: false\n  storage_path: _env:STORAGE_PATH\n"
            .to_owned(),
    };
    std::fs::write(
        &file,
        format!(
            "hooks:\n{storage}  loglevel: debug\n  search_backend: sqlalchemy\n  \
             sqlalchemy_index_database: _env:SQLALCHEMY_INDEX_DATABASE\n  standalone: true\n  \
             metrics_address: _env:METRICS_ADDRESS\n  notifications:\n    endpoints:\n{endpoint}"
        ),
    )
    .unwrap();
    let metrics = common::free_port();
    let metrics_address = format!("127.0.0.1:{metrics}");
    let mut env = backend.env();
    env.retain(|(k, _)| k != "SETTINGS_FLAVOR");
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend([
        ("DOCKER_REGISTRY_CONFIG", file.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "hooks"),
        ("METRICS_ADDRESS", metrics_address.as_str()),
    ]);
    (Registry::start(&all), metrics)
}

fn endpoint(receiver: &Receiver, extra: &str) -> String {
    format!(
        "      - name: ci\n        url: {}\n        headers:\n          Authorization: [{TOKEN}]\n        \
         timeout: 2s\n        backoff: 100ms\n{extra}",
        receiver.url()
    )
}

/// Pushes a small image as `name:tag`; its manifest's digest.
fn push_image(v2: &V2, name: &str, tag: &str) -> (ImageBlobs, String) {
    let image = ImageBlobs::new(&format!("{name}:{tag}"), "amd64");
    image.push(v2, name);
    let digest = v2.push_manifest(name, tag, OCI_MANIFEST, &image.oci_manifest());
    (image, digest)
}

/// An endpoint's line that leaves blob events out: one event a manifest.
const MANIFESTS_ONLY: &str = "        ignoredmediatypes: [application/octet-stream]\n";

/// Pushes one image's blobs to `repo`, then its manifest as `<prefix><i>`
/// for each `i` below `count`, one after the other.
fn push_tags(v2: &V2, repo: &str, prefix: &str, count: usize) {
    let image = ImageBlobs::new(&format!("{repo} {prefix}"), "amd64");
    image.push(v2, repo);
    let body = image.oci_manifest();
    for i in 0..count {
        v2.push_manifest(repo, &format!("{prefix}{i:03}"), OCI_MANIFEST, &body);
    }
}

/// Waits until events naming `count` distinct tags arrived; all events.
fn wait_for_tags(receiver: &Receiver, count: usize) -> Vec<Value> {
    receiver.wait_for(Duration::from_secs(30), |e| tags_of(e).len() >= count)
}

fn tags_of(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["target"]["tag"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn pushes_pulls_mounts_and_deletes_arrive_as_distribution_sends_them() {
    let receiver = Receiver::start();
    let backend = Backend::local();
    let (registry, metrics) =
        registry_with(&backend, &endpoint(&receiver, "        pulls: true\n"));
    let v2 = V2::new(&registry);

    let (image, digest) = push_image(&v2, "team/app", "v1");
    let events = receiver.wait_for(Duration::from_secs(10), |e| e.len() >= 3);
    assert_eq!(events.len(), 3, "{events:#?}");
    // The config and layer, then the manifest, in push order.
    let blob_digests = [sha256(&image.config), sha256(&image.layer)];
    for (event, digest) in events.iter().zip(&blob_digests) {
        assert_eq!(event["action"], "push");
        assert_eq!(event["target"]["mediaType"], "application/octet-stream");
        assert_eq!(event["target"]["digest"], *digest);
        assert_eq!(event["target"]["repository"], "team/app");
    }
    let manifest = &events[2];
    let body = image.oci_manifest();
    assert_eq!(manifest["action"], "push");
    let target = &manifest["target"];
    assert_eq!(target["mediaType"], OCI_MANIFEST);
    assert_eq!(target["digest"], digest);
    assert_eq!(target["size"], body.len());
    assert_eq!(target["length"], body.len());
    assert_eq!(target["tag"], "v1");
    assert_eq!(
        target["url"],
        registry.url(&format!("/v2/team/app/manifests/{digest}"))
    );
    let references: Vec<&str> = target["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    assert_eq!(references, blob_digests);
    let request = &manifest["request"];
    assert_eq!(request["method"], "PUT");
    assert_eq!(request["host"], format!("127.0.0.1:{}", registry.port));
    assert!(request["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(!request["id"].as_str().unwrap().is_empty());
    assert!(request["useragent"].is_string());
    assert_eq!(manifest["actor"], serde_json::json!({}));
    assert!(manifest["source"]["addr"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", registry.port)));
    assert_eq!(manifest["source"]["instanceID"].as_str().unwrap().len(), 36);
    jiff_like_timestamp(manifest["timestamp"].as_str().unwrap());
    {
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(
            seen.content_types,
            BTreeSet::from(["application/vnd.docker.distribution.events.v1+json".to_owned()])
        );
        assert_eq!(seen.authorizations, BTreeSet::from([TOKEN.to_owned()]));
    }

    // Pulls (asked for with `pulls: true`): a manifest by tag, a blob; a
    // HEAD is no pull.
    assert_eq!(v2.get_manifest("/v2/team/app/manifests/v1").status(), 200);
    assert_eq!(v2.head_manifest("/v2/team/app/manifests/v1").status(), 200);
    let layer = &blob_digests[1];
    assert_eq!(v2.get(&format!("/v2/team/app/blobs/{layer}")).status(), 200);
    // A mount into another repository, then deletes.
    let mount = v2.send(
        v2.request(
            "POST",
            &format!("/v2/other/app/blobs/uploads/?mount={layer}&from=team/app"),
        )
        .header("content-length", "0"),
    );
    assert_eq!(mount.status(), 201);
    assert_eq!(v2.delete("/v2/team/app/manifests/v1").status(), 202);
    assert_eq!(
        v2.delete(&format!("/v2/team/app/manifests/{digest}"))
            .status(),
        202
    );
    // And a repository whole: one delete naming it alone, as v1's.
    let whole = v2.delete("/v2/other/app/_registry-v1/repository");
    assert_eq!(whole.status(), 202);
    let events = receiver.wait_for(Duration::from_secs(10), |e| e.len() >= 9);
    let rest = &events[3..];
    let actions: Vec<&str> = rest.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["pull", "pull", "mount", "delete", "delete", "delete"],
        "{rest:#?}"
    );
    assert_eq!(rest[5]["target"]["repository"], "other/app");
    assert!(rest[5]["target"].get("digest").is_none(), "{:#?}", rest[5]);
    assert!(rest[5]["target"]["url"]
        .as_str()
        .unwrap()
        .ends_with("/v2/other/app/_registry-v1/repository"));
    assert_eq!(rest[0]["target"]["tag"], "v1");
    assert_eq!(rest[0]["target"]["digest"], digest);
    assert_eq!(rest[0]["request"]["method"], "GET");
    assert_eq!(rest[1]["target"]["digest"], *layer);
    assert_eq!(rest[1]["target"]["size"], image.layer.len());
    assert_eq!(rest[2]["target"]["repository"], "other/app");
    assert_eq!(rest[2]["target"]["fromRepository"], "team/app");
    assert_eq!(rest[3]["target"]["tag"], "v1");
    assert_eq!(rest[4]["target"]["digest"], digest);
    // Every id once.
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len());
    // Nothing more arrives (a HEAD is no pull), and the journal's cursor
    // stands at the end of the lines of the segment the registry still
    // appends to (the rest of it zeros, not yet written).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.events().len(), 9);
    let journal = backend
        .storage_path()
        .unwrap()
        .join("_notifications/ci/journal");
    let cursor: BTreeMap<String, u64> =
        serde_json::from_slice(&std::fs::read(journal.join("cursor")).unwrap()).unwrap();
    let segments: BTreeMap<String, u64> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            let end = bytes.iter().rposition(|b| *b == b'\n').unwrap() + 1;
            assert!(bytes[end..].iter().all(|b| *b == 0));
            (e.file_name().to_string_lossy().into_owned(), end as u64)
        })
        .collect();
    assert_eq!(cursor, segments, "every segment delivered to its end");
    assert_eq!(
        common::metric(
            metrics,
            "registry_notification_events_total{endpoint=\"ci\",result=\"delivered\"}"
        ),
        9.0
    );
    // The header's token never reaches the log, debug level included.
    assert!(!registry.log().contains("s3cr3t"), "{}", registry.log());
}

fn jiff_like_timestamp(text: &str) {
    // RFC 3339 in UTC: `2026-12-07T01:02:03.123456789Z`.
    let re = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$").unwrap();
    assert!(re.is_match(text), "{text}");
}

#[test]
fn events_of_a_hundred_pushes_while_the_endpoint_is_down_all_arrive_once_in_order() {
    let mut receiver = Receiver::start();
    receiver.stop();
    let backend = Backend::local();
    // Blob pushes left out: one event a manifest push.
    let (registry, metrics) = registry_with(&backend, &endpoint(&receiver, MANIFESTS_ONLY));
    push_tags(&V2::new(&registry), "team/many", "t", 100);
    // Retried meanwhile, and failing.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        common::metric(
            metrics,
            "registry_notification_failures_total{endpoint=\"ci\"}"
        ) >= 1.0,
        "deliveries were tried"
    );
    receiver.resume();
    let events = wait_for_tags(&receiver, 100);
    let mut tags: Vec<String> = Vec::new();
    let mut ids = BTreeSet::new();
    for event in &events {
        if ids.insert(event["id"].as_str().unwrap().to_owned()) {
            tags.push(event["target"]["tag"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<String> = (0..100).map(|i| format!("t{i:03}")).collect();
    assert_eq!(tags, expected, "every push once, in push order");
    assert_eq!(
        common::metric(
            metrics,
            "registry_notification_events_total{endpoint=\"ci\",result=\"queued\"}"
        ),
        100.0
    );
}

/// A receiver that took the events and failed the request gets them
/// again, each the same event with the same `id` (what consumers
/// de-duplicate by), in the same order; each delivery's time is in the
/// latency histogram.
#[test]
fn an_event_delivered_again_keeps_its_id_and_its_latency_is_measured() {
    let receiver = Receiver::start();
    receiver.set(Mode::RecordThenFail);
    let backend = Backend::local();
    let (registry, metrics) = registry_with(&backend, &endpoint(&receiver, MANIFESTS_ONLY));
    push_tags(&V2::new(&registry), "team/again", "a", 3);
    // Each of the three recorded at least twice: taken, failed, sent again.
    let events = receiver.wait_for(Duration::from_secs(30), |events| {
        let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
        let distinct: BTreeSet<&str> = ids.iter().copied().collect();
        distinct.len() == 3
            && distinct
                .iter()
                .all(|id| ids.iter().filter(|i| *i == id).count() >= 2)
    });
    receiver.set(Mode::Accept);
    let mut first: BTreeMap<String, Value> = BTreeMap::new();
    let mut order = Vec::new();
    for event in &events {
        let id = event["id"].as_str().unwrap().to_owned();
        match first.get(&id) {
            Some(earlier) => assert_eq!(earlier, event, "a redelivery is the same event"),
            None => {
                order.push(event["target"]["tag"].as_str().unwrap().to_owned());
                first.insert(id, event.clone());
            }
        }
    }
    assert_eq!(order, ["a000", "a001", "a002"]);
    // Once accepted, counted as delivered with its latency.
    let delivered = "registry_notification_events_total{endpoint=\"ci\",result=\"delivered\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::metric(metrics, delivered) < 3.0 {
        assert!(Instant::now() < deadline, "never delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let latencies = common::metric(
        metrics,
        "registry_notification_delivery_seconds_count{endpoint=\"ci\"}",
    );
    assert_eq!(latencies, 3.0, "one latency a delivered event");
    // Each waited at least one backoff (100 ms) after its failed delivery.
    let waited = common::metric(
        metrics,
        "registry_notification_delivery_seconds_sum{endpoint=\"ci\"}",
    );
    assert!(
        waited >= 0.3,
        "{waited} s from the events to their deliveries"
    );
    let slowest = common::metric(
        metrics,
        "registry_notification_delivery_seconds_bucket{endpoint=\"ci\",le=\"+Inf\"}",
    );
    assert_eq!(slowest, latencies);
    assert!(
        common::metric(
            metrics,
            "registry_notification_failures_total{endpoint=\"ci\"}"
        ) >= 1.0
    );
}

#[test]
fn events_queued_before_a_kill_9_arrive_after_the_restart() {
    let mut receiver = Receiver::start();
    receiver.set(Mode::Fail);
    let backend = Backend::local();
    let config = endpoint(&receiver, MANIFESTS_ONLY);
    let (registry, _) = registry_with(&backend, &config);
    push_tags(&V2::new(&registry), "team/killed", "k", 10);
    drop(registry); // SIGKILL
    assert!(receiver.events().is_empty());
    receiver.set(Mode::Accept);
    receiver.stop();
    receiver.resume();
    // On another port: the dead instance's lease runs out first (10 s).
    let (_registry, _) = registry_with(&backend, &config);
    let events = wait_for_tags(&receiver, 10);
    assert_eq!(tags_of(&events).len(), 10, "{events:#?}");
}

#[test]
fn a_hanging_endpoint_holds_up_no_push_and_gets_the_events_once_it_answers() {
    let receiver = Receiver::start();
    receiver.set(Mode::Hang);
    let backend = Backend::local();
    let (registry, metrics) = registry_with(
        &backend,
        &endpoint(&receiver, MANIFESTS_ONLY).replace("timeout: 2s", "timeout: 3s"),
    );
    let v2 = V2::new(&registry);
    let image = ImageBlobs::new("hanging", "amd64");
    image.push(&v2, "team/hang");
    let body = image.oci_manifest();
    // Each push answers long before the endpoint's timeout: the delivery is
    // not in its way.
    for i in 0..10 {
        let started = Instant::now();
        v2.push_manifest("team/hang", &format!("h{i}"), OCI_MANIFEST, &body);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "push {i} took {:?} with a hanging endpoint",
            started.elapsed()
        );
    }
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        common::metric(
            metrics,
            "registry_notification_failures_total{endpoint=\"ci\"}"
        ) >= 1.0
    );
    receiver.set(Mode::Accept);
    wait_for_tags(&receiver, 10);
}

#[test]
fn beyond_its_limit_the_queue_drops_the_oldest_events_and_counts_them() {
    let mut receiver = Receiver::start();
    receiver.stop();
    let backend = Backend::local();
    let (registry, metrics) = registry_with(
        &backend,
        &endpoint(
            &receiver,
            &format!("{MANIFESTS_ONLY}        queue_limit: 5\n"),
        ),
    );
    push_tags(&V2::new(&registry), "team/bounded", "b", 8);
    // The deliverer trims at its next attempt (backoff at most 6.4 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    while common::metric(
        metrics,
        "registry_notification_events_total{endpoint=\"ci\",result=\"dropped\"}",
    ) < 3.0
    {
        assert!(Instant::now() < deadline, "{}", registry.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    receiver.resume();
    let events = receiver.wait_for(Duration::from_secs(30), |e| e.len() >= 5);
    let tags: Vec<&str> = events
        .iter()
        .map(|e| e["target"]["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["b003", "b004", "b005", "b006", "b007"]);
    assert!(
        registry.log().contains("queue_limit 5"),
        "{}",
        registry.log()
    );
}

#[test]
fn a_v1_push_is_told_as_the_push_of_its_bridged_manifest() {
    let receiver = Receiver::start();
    let backend = Backend::local();
    let (registry, _) = registry_with(&backend, &endpoint(&receiver, ""));
    let (json, layer) =
        common::v1_fixture("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158");
    let id = "aa".repeat(32);
    let json = common::v1_json(json, &id, None);
    let base = |path: &str| registry.url(path);
    common::push_v1(
        &base,
        "library/old",
        &[common::V1Upload {
            id: &id,
            json: &json,
            layer: &layer,
        }],
        "latest",
    );
    let events = receiver.wait_for(Duration::from_secs(10), |e| !e.is_empty());
    let push = &events[0];
    let v2 = V2::new(&registry);
    let pulled = v2.get_manifest("/v2/library/old/manifests/latest");
    let digest = header(&pulled, "docker-content-digest").unwrap();
    assert_eq!(push["action"], "push");
    assert_eq!(push["target"]["repository"], "library/old");
    assert_eq!(push["target"]["tag"], "latest");
    assert_eq!(push["target"]["digest"], digest);
    assert_eq!(push["target"]["mediaType"], OCI_MANIFEST);
    assert_eq!(push["request"]["method"], "PUT");
    // A v1 tag delete, and the repository's.
    let http = common::client();
    let gone = http
        .delete(registry.url("/v1/repositories/library/old/tags/latest"))
        .send()
        .unwrap();
    assert_eq!(gone.status(), 200);
    let events = receiver.wait_for(Duration::from_secs(10), |e| e.len() >= 2);
    assert_eq!(events[1]["action"], "delete");
    assert_eq!(events[1]["target"]["tag"], "latest");
    assert_eq!(events.len(), 2, "{events:#?}");
}

#[test]
fn logins_name_the_actor_and_skopeo_pushes_are_told() {
    use login_support::*;
    if !tool_available("skopeo", INSTALL_CLIENTS) {
        panic!("skopeo is not installed: {INSTALL_CLIENTS}");
    }
    let receiver = Receiver::start();
    let backend = Backend::local();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    let (registry, _) = registry_with(
        &backend,
        &format!(
            // After the list: a setting of the flavor again.
            "{}  auth_htpasswd: {}\n",
            endpoint(&receiver, MANIFESTS_ONLY),
            htpasswd.display()
        ),
    );
    let host = format!("127.0.0.1:{}", registry.port);
    let layout = Layout::write(&dir.path().join("oci"), "skopeo");
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:pw",
            &layout.reference(),
            &format!("docker://{host}/team/skopeo:v1"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = receiver.wait_for(Duration::from_secs(10), |e| !e.is_empty());
    let push = &events[0];
    assert_eq!(push["action"], "push");
    assert_eq!(push["target"]["repository"], "team/skopeo");
    assert_eq!(push["target"]["tag"], "v1");
    assert_eq!(push["actor"]["name"], "alice");
    let agent = push["request"]["useragent"].as_str().unwrap();
    assert!(
        agent.contains("skopeo") || agent.contains("containers"),
        "{agent}"
    );
}

/// Two instances on one storage, each pushing ten tags: every event
/// arrives once, whichever instance sends it.
fn two_instances_deliver_every_event(backend: &Backend) {
    let receiver = Receiver::start();
    let config = endpoint(&receiver, MANIFESTS_ONLY);
    let (a, _) = registry_with(backend, &config);
    let (b, _) = registry_with(backend, &config);
    push_tags(&V2::new(&a), "team/two", "a", 10);
    push_tags(&V2::new(&b), "team/two", "b", 10);
    let events = wait_for_tags(&receiver, 20);
    let sources: BTreeSet<&str> = events
        .iter()
        .map(|e| e["source"]["instanceID"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources.len(),
        2,
        "each instance's events, whoever sent them"
    );
    // One queue, one deliverer at a time: a duplicate only after a lost
    // lease, which nothing here causes.
    assert_eq!(events.len(), 20, "{events:#?}");
}

#[test]
fn two_instances_on_one_bucket_deliver_every_event() {
    let Some(backend) = Backend::s3() else {
        eprintln!("\nSKIPPED: no S3 server (moto_server) for the notifications test\n");
        return;
    };
    two_instances_deliver_every_event(&backend);
}

#[test]
fn two_instances_on_one_folder_deliver_every_event() {
    // Each appends to a segment of its own; the one holding the lease reads
    // both, and removes neither while its writer holds it.
    let backend = Backend::local();
    two_instances_deliver_every_event(&backend);
    let journal = backend
        .storage_path()
        .unwrap()
        .join("_notifications/ci/journal");
    let segments = std::fs::read_dir(&journal)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert_eq!(segments, 2, "one segment an instance, both still held");
}

/// Pushes tags `<prefix>-<i>` of `body` to `url` until the registry is
/// gone; the tags whose push was answered 201.
fn push_until_killed(url: String, body: Arc<Vec<u8>>, prefix: String) -> Vec<String> {
    let client = common::client();
    let mut answered = Vec::new();
    for i in 0.. {
        let tag = format!("{prefix}-{i:04}");
        match client
            .put(format!("{url}{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(body.to_vec())
            .send()
        {
            Ok(resp) if resp.status() == 201 => answered.push(tag),
            Ok(resp) => panic!("push of {tag} answered {}", resp.status()),
            // Killed.
            Err(_) => break,
        }
    }
    answered
}

#[test]
fn every_answered_push_is_told_whenever_a_kill_9_strikes() {
    let receiver = Receiver::start();
    let backend = Backend::local();
    let config = endpoint(&receiver, MANIFESTS_ONLY);
    let mut answered = BTreeSet::new();
    // Deliveries run while four clients push: the kill finds lines being
    // appended, synced, read and removed.
    for round in 0..3 {
        let (registry, _) = registry_with(&backend, &config);
        let v2 = V2::new(&registry);
        let image = ImageBlobs::new(&format!("crash {round}"), "amd64");
        image.push(&v2, "team/crash");
        let body = Arc::new(image.oci_manifest());
        let url = registry.url("/v2/team/crash/manifests/");
        let pushers: Vec<_> = (0..4)
            .map(|client| {
                let (url, body) = (url.clone(), body.clone());
                std::thread::spawn(move || {
                    push_until_killed(url, body, format!("r{round}c{client}"))
                })
            })
            .collect();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_millis(200 + u64::from(nanos % 600)));
        drop(registry); // SIGKILL
        for pusher in pushers {
            answered.extend(pusher.join().unwrap());
        }
    }
    assert!(answered.len() >= 12, "pushes were answered: {answered:?}");
    // The dead instances' lease runs out (10 s), then the last one sends
    // what they left.
    let (_registry, _) = registry_with(&backend, &config);
    let events = receiver.wait_for(Duration::from_secs(40), |e| {
        tags_of(e).is_superset(&answered)
    });
    assert!(tags_of(&events).is_superset(&answered));
}

#[test]
fn a_docker_push_is_told_blob_by_blob_then_its_manifest() {
    if !login_support::docker_engine_answers("a_docker_push_is_told_blob_by_blob_then_its_manifest")
    {
        return;
    }
    let receiver = Receiver::start();
    let backend = Backend::local();
    let (registry, _) = registry_with(&backend, &endpoint(&receiver, ""));
    let image = format!("127.0.0.1:{}/team/docker:v1", registry.port);
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("rootfs.tar");
    std::fs::write(&tar, v2_support::rootfs_tar("notifications")).unwrap();
    login_support::run("docker", &["import", tar.to_str().unwrap(), &image]);
    let pushed = std::process::Command::new("docker")
        .args(["push", &image])
        .output()
        .unwrap();
    let _ = login_support::run("docker", &["rmi", "-f", &image]);
    assert!(
        pushed.status.success(),
        "docker push: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let events = receiver.wait_for(Duration::from_secs(10), |e| {
        e.iter().any(|e| e["target"]["tag"] == "v1")
    });
    let manifest = events.last().unwrap();
    assert_eq!(manifest["action"], "push");
    assert_eq!(manifest["target"]["mediaType"], DOCKER_MANIFEST);
    let agent = manifest["request"]["useragent"].as_str().unwrap();
    assert!(agent.starts_with("docker/"), "{agent}");
    // The layer and the config before it, each pushed once.
    let blobs: Vec<&str> = events[..events.len() - 1]
        .iter()
        .map(|e| {
            assert_eq!(e["action"], "push");
            e["target"]["digest"].as_str().unwrap()
        })
        .collect();
    let referenced: BTreeSet<&str> = manifest["target"]["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    assert_eq!(blobs.iter().copied().collect::<BTreeSet<_>>(), referenced);
}

#[test]
fn a_push_whose_event_cannot_be_queued_answers_503_and_its_retry_is_told() {
    let receiver = Receiver::start();
    let backend = Backend::local();
    let (registry, _) = registry_with(&backend, &endpoint(&receiver, MANIFESTS_ONLY));
    let v2 = V2::new(&registry);
    let image = ImageBlobs::new("unqueued", "amd64");
    image.push(&v2, "team/unqueued");
    let body = image.oci_manifest();
    // A file where the queue's folder belongs: no event can be written.
    let queue = backend
        .storage_path()
        .unwrap()
        .join("_notifications/ci/journal");
    std::fs::create_dir_all(queue.parent().unwrap()).unwrap();
    std::fs::write(&queue, b"in the way").unwrap();
    let refused = v2.put_manifest("team/unqueued", "v1", OCI_MANIFEST, &body);
    v2.expect_error(refused, 503, "UNKNOWN", "a push whose event is not queued");
    assert!(receiver.events().is_empty());
    // The client pushes again once the storage takes writes.
    std::fs::remove_file(&queue).unwrap();
    v2.push_manifest("team/unqueued", "v1", OCI_MANIFEST, &body);
    let events = wait_for_tags(&receiver, 1);
    assert_eq!(events.len(), 1, "{events:#?}");
}

#[test]
fn a_registry_stopped_with_sigterm_gives_its_lease_back() {
    let receiver = Receiver::start();
    let backend = Backend::local();
    let config = endpoint(&receiver, MANIFESTS_ONLY);
    let (mut registry, _) = registry_with(&backend, &config);
    push_tags(&V2::new(&registry), "team/stopped", "s", 1);
    wait_for_tags(&receiver, 1);
    assert!(registry.terminate().success(), "{}", registry.log());
    let lease = backend
        .storage_path()
        .unwrap()
        .join("_notifications/ci/lease");
    let lease: Value = serde_json::from_slice(&std::fs::read(lease).unwrap()).unwrap();
    assert_eq!(lease["expires_ms"], 0, "{lease}");
    assert!(
        registry.log().contains("stopping, lease given back"),
        "{}",
        registry.log()
    );
    // The next instance, on another port, takes over at once: without the
    // lease given back it would wait it out (10 s, asked again every 5 s).
    let (next, _) = registry_with(&backend, &config);
    push_tags(&V2::new(&next), "team/stopped", "n", 1);
    let pushed = Instant::now();
    wait_for_tags(&receiver, 2);
    assert!(
        pushed.elapsed() < Duration::from_secs(4),
        "delivered after {:?}",
        pushed.elapsed()
    );
}
