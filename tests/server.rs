//! The binary starts with no configuration at all, answers, and stops;
//! what the server does for every connection (TCP options, memory).

mod common;
#[path = "storage_support/s3_server.rs"]
#[allow(dead_code)]
mod s3_server;

#[test]
fn starts_with_nothing_configured_and_stops_on_sigterm() {
    let storage = tempfile::tempdir().unwrap();
    let mut registry =
        common::Registry::start(&[("STORAGE_PATH", storage.path().to_str().unwrap())]);
    let http = common::client();

    let ping = http.get(registry.url("/_ping")).send().unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.headers()["x-docker-registry-standalone"], "True");
    assert_eq!(ping.headers()["content-type"], "application/json");
    let v1 = http.get(registry.url("/v1/_ping")).send().unwrap();
    assert_eq!(v1.status(), 200);

    let root = http.get(registry.url("/")).send().unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().unwrap(), r#""\"docker-registry server\"""#);

    let status = registry.terminate();
    assert!(status.success(), "exit status {status}");
}

/// Pushes a 64 MiB blob, pulls it 16 times at once, and returns the
/// registry's resident memory 8 s later (past two trims), in KiB.
fn rss_at_rest_after_pulls(env: &[(&str, &str)]) -> u64 {
    use sha2::Digest;
    let storage = tempfile::tempdir().unwrap();
    let mut all = vec![("STORAGE_PATH", storage.path().to_str().unwrap())];
    all.extend_from_slice(env);
    let registry = common::Registry::start(&all);
    let http = common::client();
    let blob: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)));
    let push = http
        .post(registry.url(&format!("/v2/mem/rest/blobs/uploads/?digest={digest}")))
        .body(blob)
        .send()
        .unwrap();
    assert_eq!(push.status(), 201, "{}", registry.log());
    let url = registry.url(&format!("/v2/mem/rest/blobs/{digest}"));
    // All 16 pulls are under way at once before any drains: on a loaded
    // machine, pulls left to themselves ran one after another and the
    // registry never held 16 sets of buffers to give back.
    let all_started = std::sync::Barrier::new(16);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                use std::io::Read;
                let mut pull = common::client().get(&url).send().unwrap();
                assert_eq!(pull.status(), 200);
                let mut first = vec![0u8; 64 << 10];
                pull.read_exact(&mut first).unwrap();
                all_started.wait();
                let copied = std::io::copy(&mut pull, &mut std::io::sink()).unwrap();
                assert_eq!(copied + first.len() as u64, 64 << 20);
            });
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(8));
    common::proc_status_kib(registry.pid(), "VmRSS")
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn free_memory_goes_back_to_the_kernel_once_layers_stop_moving() {
    // The same run without the trim: the operator's own trim threshold,
    // set to the value `serve` uses, turns the periodic trim off.
    let kept = rss_at_rest_after_pulls(&[("MALLOC_TRIM_THRESHOLD_", "16777216")]);
    let trimmed = rss_at_rest_after_pulls(&[]);
    eprintln!("at rest after 16 pulls: {kept} KiB kept, {trimmed} KiB trimmed");
    assert!(
        trimmed + 6 * 1024 < kept,
        "trimmed {trimmed} KiB against {kept} KiB without the trim"
    );
}

/// Pulls a `size`-byte blob 40 times over one kept-alive connection from a
/// registry started with `env`; returns how many took over 35 ms.
fn stalled_small_pulls(env: &[(&str, &str)], size: usize) -> usize {
    use sha2::Digest;
    let registry = common::Registry::start(env);
    let http = common::client();
    let blob: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)));
    let push = http
        .post(registry.url(&format!("/v2/small/blob/blobs/uploads/?digest={digest}")))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(push.status(), 201);
    let url = registry.url(&format!("/v2/small/blob/blobs/{digest}"));
    let times: Vec<std::time::Duration> = (0..40)
        .map(|_| {
            let started = std::time::Instant::now();
            let pull = http.get(&url).send().unwrap();
            assert_eq!(pull.status(), 200);
            assert!(pull.bytes().unwrap() == blob, "other bytes came back");
            started.elapsed()
        })
        .collect();
    let stalled = times
        .iter()
        .filter(|t| **t > std::time::Duration::from_millis(35))
        .count();
    eprintln!("{size} bytes, {env:?}: {stalled} of 40 over 35 ms: {times:?}");
    stalled
}

#[test]
fn small_blobs_on_a_kept_alive_connection_wait_for_no_delayed_ack() {
    // An answer whose head and body leave in two writes, with Nagle's
    // algorithm on the server's socket, had its second write wait for the
    // client's delayed ACK (40 ms on Linux) on about every other request
    // of a connection: a defect whose only symptom is time. Config blobs
    // are a few hundred bytes. Local files that small are read before the
    // head leaves (one write); an S3 object's body comes after its head.
    // What is counted is requests that took most of that delay; a loaded
    // machine slows one now and then, not half of them.
    let storage = tempfile::tempdir().unwrap();
    let local = [("STORAGE_PATH", storage.path().to_str().unwrap())];
    assert!(stalled_small_pulls(&local, 370) < 6);
    let Some(server) = s3_server::server() else {
        eprintln!("SKIPPED the S3 half: no S3-compatible server (see .ci/install-storage.sh)");
        return;
    };
    let bucket = format!("nodelay-{}", std::process::id());
    server.create_bucket(&bucket);
    let env = server.registry_env(&bucket);
    let s3: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(stalled_small_pulls(&s3, 370) < 6);
}
