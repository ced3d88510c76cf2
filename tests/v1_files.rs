//! `GET /v1/images/<id>/files` on hostile layers, through the real binary:
//! a listing is bounded (entries, bytes), fails with a clear JSON error,
//! and a failed listing is cached like a good one.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use common::Registry;

fn start(root: &Path) -> Registry {
    Registry::start(&[
        ("STORAGE_PATH", root.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "dev"),
    ])
}

/// Pushes an image (json, layer, checksum) with `layer` as its layer.
fn push(http: &Client, registry: &Registry, id: &str, layer: &[u8]) {
    let doc = serde_json::to_vec(&json!({"id": id})).unwrap();
    let ok = |resp: Response| {
        let status = resp.status();
        assert_eq!(
            (status.as_u16(), resp.text().unwrap()),
            (200, "true".into())
        );
    };
    ok(http
        .put(registry.url(&format!("/v1/images/{id}/json")))
        .body(doc.clone())
        .send()
        .unwrap());
    ok(http
        .put(registry.url(&format!("/v1/images/{id}/layer")))
        .body(layer.to_vec())
        .send()
        .unwrap());
    ok(http
        .put(registry.url(&format!("/v1/images/{id}/checksum")))
        .header(
            "X-Docker-Checksum-Payload",
            common::v1_checksum(&doc, layer),
        )
        .send()
        .unwrap());
}

/// Status and `error` of a JSON error answer, with how long it took.
fn files(http: &Client, registry: &Registry, id: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let resp = http
        .get(registry.url(&format!("/v1/images/{id}/files")))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().unwrap();
    let message = body["error"].as_str().unwrap_or_default().to_owned();
    (status, message, started.elapsed())
}

/// A tar header with every numeric field set.
fn header(path: &str, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1_400_000_000);
    header.set_uid(0);
    header.set_gid(0);
    header.set_path(path).unwrap();
    header.set_cksum();
    header
}

fn xz(level: u32, write: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
    let mut enc = xz2::write::XzEncoder::new(Vec::new(), level);
    write(&mut enc);
    enc.finish().unwrap()
}

const MANY: &str = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";
const BOMB: &str = "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22";
const FINE: &str = "cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33";

#[test]
fn a_layer_of_too_many_entries_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(dir.path());
    let http = common::client();

    // 120,000 empty files: a small xz layer, over the 100,000 entries bound.
    let layer = xz(6, |w| {
        let mut builder = tar::Builder::new(w);
        for i in 0..120_000u32 {
            builder
                .append(&header(&format!("f/{i}"), 0), &[][..])
                .unwrap();
        }
        builder.finish().unwrap();
    });
    push(&http, &registry, MANY, &layer);

    let (status, message, took) = files(&http, &registry, MANY);
    assert_eq!(
        (status, message.as_str()),
        (400, "Layer listing too large: more than 100000 entries")
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let peak = common::proc_status_kib(registry.pid(), "VmHWM");
    eprintln!(
        "{} KiB layer, 120,000 entries: 400 in {took:?}, peak RSS {peak} KiB",
        layer.len() / 1024
    );
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");

    // The failure is cached: the next answer is the same, at once.
    assert!(dir
        .path()
        .join(format!("images/{MANY}/_files_failure"))
        .exists());
    let (status2, message2, again) = files(&http, &registry, MANY);
    assert_eq!((status2, message2), (status, message));
    assert!(again < took, "{again:?} vs {took:?}");

    // A layer within the bounds still lists.
    let fine = xz(1, |w| {
        let mut builder = tar::Builder::new(w);
        for i in 0..1000u32 {
            builder
                .append(&header(&format!("g/{i}"), 0), &[][..])
                .unwrap();
        }
        builder.finish().unwrap();
    });
    push(&http, &registry, FINE, &fine);
    let listing: Value = http
        .get(registry.url(&format!("/v1/images/{FINE}/files")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 1000);
}

#[test]
fn a_truncated_bomb_fails_once_then_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(dir.path());
    let http = common::client();

    // 512 MiB of zeros in one tar member, xz-compressed, cut short.
    let mut layer = xz(0, |w| {
        let size = 512u64 << 20;
        w.write_all(header("zeros", size).as_bytes()).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..(size >> 20) {
            w.write_all(&chunk).unwrap();
        }
    });
    layer.truncate(layer.len() - 64);
    push(&http, &registry, BOMB, &layer);

    let (status, message, first) = files(&http, &registry, BOMB);
    assert_eq!(
        (status, message.as_str()),
        (400, "Layer format not supported")
    );
    assert!(dir
        .path()
        .join(format!("images/{BOMB}/_files_failure"))
        .exists());
    let (status2, message2, second) = files(&http, &registry, BOMB);
    eprintln!(
        "{} KiB truncated bomb: first 400 in {first:?}, second in {second:?}",
        layer.len() / 1024
    );
    assert_eq!((status2, message2), (status, message));
    assert!(second * 5 < first, "second {second:?} vs first {first:?}");
}

/// User and system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // utime and stime are the 14th and 15th fields, 12th and 13th after the
    // name; in clock ticks (100 a second on Linux).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[test]
fn bombs_in_parallel_are_listed_two_at_a_time_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(dir.path());
    let http = common::client();

    let mut layer = xz(0, |w| {
        let size = 256u64 << 20;
        w.write_all(header("zeros", size).as_bytes()).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..(size >> 20) {
            w.write_all(&chunk).unwrap();
        }
    });
    layer.truncate(layer.len() - 64);
    let ids: Vec<String> = (0..4).map(|i| format!("{i}d{}", "4".repeat(62))).collect();
    for id in &ids {
        push(&http, &registry, id, &layer);
    }

    let before = cpu_time(registry.pid());
    let answers: Vec<(u16, String, Duration)> = std::thread::scope(|s| {
        let workers: Vec<_> = ids
            .iter()
            .map(|id| s.spawn(|| files(&common::client(), &registry, id)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let first_round = cpu_time(registry.pid()) - before;
    for (status, message, _) in &answers {
        // Two are listed at once; the others wait their turn (10 s at most).
        assert!(
            (*status, message.as_str()) == (400, "Layer format not supported")
                || (*status, message.as_str())
                    == (503, "Too many file listings at once, retry later"),
            "{status} {message}"
        );
    }
    // Again, in parallel: every answer comes from the cached failures.
    let before = cpu_time(registry.pid());
    std::thread::scope(|s| {
        for id in &ids {
            s.spawn(|| {
                let (status, message, _) = files(&common::client(), &registry, id);
                assert_eq!(
                    (status, message.as_str()),
                    (400, "Layer format not supported")
                );
            });
        }
    });
    let second_round = cpu_time(registry.pid()) - before;
    eprintln!(
        "4 truncated bombs in parallel: {:?} walls, {first_round:?} CPU; again: {second_round:?} CPU",
        answers.iter().map(|a| a.2).collect::<Vec<_>>()
    );
    assert!(
        second_round < Duration::from_millis(500),
        "{second_round:?}"
    );
}
