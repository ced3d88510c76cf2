//! The binary starts with no configuration at all, answers, and stops.

mod common;

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
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let mut pull = common::client().get(&url).send().unwrap();
                assert_eq!(pull.status(), 200);
                let copied = std::io::copy(&mut pull, &mut std::io::sink()).unwrap();
                assert_eq!(copied, 64 << 20);
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
