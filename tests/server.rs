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
