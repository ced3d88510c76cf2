//! Slow and stalled request bodies through the real binary: a body that
//! sends nothing for `body_idle_timeout` fails and leaves no temporary file
//! nor acknowledged bytes; at most `max_concurrent_uploads` uploads at once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn start(storage: &Path, timeout: &str, cap: &str) -> common::Registry {
    let storage = storage.display().to_string();
    common::Registry::start(&[
        ("STORAGE_PATH", storage.as_str()),
        ("SEARCH_BACKEND", ""),
        ("BODY_IDLE_TIMEOUT", timeout),
        ("MAX_CONCURRENT_UPLOADS", cap),
        ("LOGLEVEL", "info"),
    ])
}

/// Every temporary file under `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                folders.push(entry.path());
            } else if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".registry-v1-tmp-")
            {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Sends the headers of `method target` announcing `length` bytes, then
/// `first` of the body; the caller trickles or stalls.
fn open_body(port: u16, method: &str, target: &str, length: u64, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\n\r\n"
    )
    .unwrap();
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    stream
}

/// The status line's code of what the server answers, and when, or `None`
/// when it answers nothing within `within`.
fn answer(stream: &mut TcpStream, within: Duration) -> Option<(u16, String)> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(end) = text.find("\r\n\r\n") {
                    let head = &text[..end];
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    Some((code, text))
}

fn put_json(registry: &common::Registry) -> u16 {
    common::client()
        .put(registry.url(&format!("/v1/images/{ID}/json")))
        .body(format!(r#"{{"id": "{ID}"}}"#))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// A layer PUT announcing 2 GiB: trickled (a byte every 500 ms for 3 s,
/// longer than the 2 s timeout: alive), then stalled: it fails within the
/// timeout and its temporary file goes. A json PUT that stalls fails too.
#[test]
fn stalled_v1_bodies_fail_and_leave_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(dir.path(), "2", "100");
    assert_eq!(put_json(&registry), 200);

    let target = format!("/v1/images/{ID}/layer");
    let mut layer = open_body(registry.port, "PUT", &target, 2 << 30, &vec![7u8; 3 << 20]);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        layer.write_all(b"x").unwrap();
    }
    assert!(
        !temporaries(dir.path()).is_empty(),
        "the layer being written has a temporary file"
    );
    let stalled = Instant::now();
    let (code, text) =
        answer(&mut layer, Duration::from_secs(10)).expect("no answer 10 s after the body stalled");
    let after = stalled.elapsed();
    assert_eq!(code, 400, "{text}");
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "{after:?}"
    );
    eprintln!("layer PUT: alive 3 s while trickling, ended {after:.1?} after it stalled");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !temporaries(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", temporaries(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }

    let target = format!("/v1/images/{ID}/json");
    let mut json = open_body(registry.port, "PUT", &target, 10_000, b"{\"id\": ");
    let started = Instant::now();
    let (code, text) = answer(&mut json, Duration::from_secs(10)).expect("json PUT answered");
    assert_eq!(code, 400, "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(registry.log().contains("no byte of the body for 2s"));
    // The image is untouched and the registry still serves.
    assert_eq!(put_json(&registry), 200);
}

/// A v2 PATCH that stalls fails; the upload did not take its bytes (its
/// `Range` stays where it was) and goes on from there.
#[test]
fn a_stalled_v2_patch_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(dir.path(), "2", "100");
    let client = common::client();
    let resp = client
        .post(registry.url("/v2/me/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let path = location
        .strip_prefix(&registry.url(""))
        .unwrap_or(&location)
        .to_owned();

    let mut patch = open_body(registry.port, "PATCH", &path, 1 << 20, &[5u8; 100_000]);
    let started = Instant::now();
    let (code, text) = answer(&mut patch, Duration::from_secs(10)).expect("PATCH answered");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("BLOB_UPLOAD_INVALID"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let status = client.get(registry.url(&path)).send().unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(status.headers()["range"], "0-0");
    // The upload goes on from 0.
    let resp = client
        .patch(registry.url(&path))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8; 10])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["range"], "0-9");
}

/// With `max_concurrent_uploads` 2, two stalled layer PUTs take the slots:
/// a third upload (v1 or v2) answers 429, other requests are served; once
/// the stalled ones time out, uploads are taken again.
#[test]
fn uploads_beyond_the_cap_answer_429() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(dir.path(), "2", "2");
    assert_eq!(put_json(&registry), 200);
    let target = format!("/v1/images/{ID}/layer");
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| open_body(registry.port, "PUT", &target, 1 << 20, b"abc"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let client = common::client();
    let resp = client
        .put(registry.url(&format!("/v1/images/{ID}/json")))
        .body(format!(r#"{{"id": "{ID}"}}"#))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("at most 2"),
        "{body}"
    );
    let resp = client
        .post(registry.url("/v2/me/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS", "{body}");
    // Not an upload: served.
    let resp = client.get(registry.url("/_ping")).send().unwrap();
    assert_eq!(resp.status(), 200);

    for stream in &mut held {
        let (code, _) = answer(stream, Duration::from_secs(10)).expect("stalled PUT answered");
        assert_eq!(code, 400);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while put_json(&registry) != 200 {
        assert!(Instant::now() < deadline, "the slots were not given back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 40 connections stall in layer PUTs of 2 GiB at once: every one is
/// answered within the timeout (plus a margin), and no temporary file stays.
#[test]
fn many_stalled_uploads_all_end() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(dir.path(), "2", "100");
    assert_eq!(put_json(&registry), 200);
    let target = format!("/v1/images/{ID}/layer");
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = (0..40)
        .map(|_| open_body(registry.port, "PUT", &target, 2 << 30, &[1u8; 2 << 20]))
        .collect();
    let mut codes = Vec::new();
    for stream in &mut streams {
        let (code, _) = answer(stream, Duration::from_secs(10)).expect("answered");
        codes.push(code);
    }
    let all = started.elapsed();
    assert!(codes.iter().all(|&c| c == 400), "{codes:?}");
    assert!(all < Duration::from_secs(8), "{all:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !temporaries(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", temporaries(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "40 stalled 2 GiB layer PUTs: all answered 400 within {all:.1?}, no temporary file left"
    );
}
