//! What a crash (kill -9) leaves behind, and hostile search parameters,
//! through the real binary: the search index catches up with storage at the
//! next start, folders holding only a temporary file are no repositories,
//! stale temporary files go at start, `q=%00...` and huge pages.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde_json::Value;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(setup.storage()).unwrap();
        setup
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("index.db")
    }

    fn start(&self) -> common::Registry {
        let storage = self.storage().display().to_string();
        let url = format!("sqlite:///{}", self.database().display());
        common::Registry::start(&[
            ("STORAGE_PATH", storage.as_str()),
            ("SEARCH_BACKEND", "sqlalchemy"),
            ("SQLALCHEMY_INDEX_DATABASE", url.as_str()),
            ("LOGLEVEL", "info"),
        ])
    }

    /// The names in the index, read from the database file.
    fn indexed(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(self.database()).unwrap();
        let mut st = conn
            .prepare("SELECT name FROM repository ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// The repositories of namespace `ns` on disk: folders holding a file
    /// that is not a temporary one.
    fn stored(&self, ns: &str) -> Vec<String> {
        let dir = self.storage().join("repositories").join(ns);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| {
                std::fs::read_dir(e.path()).is_ok_and(|mut files| {
                    files.any(|f| {
                        f.is_ok_and(|f| {
                            !f.file_name()
                                .to_string_lossy()
                                .starts_with(".registry-v1-tmp-")
                        })
                    })
                })
            })
            .map(|e| format!("{ns}/{}", e.file_name().to_string_lossy()))
            .collect();
        names.sort();
        names
    }

    fn missing(&self, ns: &str) -> Vec<String> {
        let indexed = self.indexed();
        self.stored(ns)
            .into_iter()
            .filter(|n| !indexed.contains(n))
            .collect()
    }
}

fn kill_9(registry: &common::Registry) {
    let killed = Command::new("kill")
        .args(["-9", &registry.pid().to_string()])
        .status()
        .expect("kill -9");
    assert!(killed.success());
}

/// Polls `done` every 50 ms for up to 20 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn search(registry: &common::Registry, query: &str) -> (u16, Value) {
    let resp = common::client()
        .get(registry.url(&format!("/v1/search?{query}")))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

fn create(registry: &common::Registry, name: &str) -> u16 {
    common::client()
        .put(registry.url(&format!("/v1/repositories/{name}/")))
        .body("[]")
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Pushes of repositories from 6 threads, kill -9 at a random point, 8
/// times: whatever the kills left in storage but not in the index is in the
/// index once the registry has started again.
#[test]
fn the_index_catches_up_after_kill_9_during_pushes() {
    let setup = Setup::new();
    let mut rng = rand::thread_rng();
    let mut pushed = 0usize;
    let mut drifted = 0usize;
    let started = Instant::now();
    for kill in 0..8 {
        let registry = setup.start();
        let port = registry.port;
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .unwrap();
                    let mut ok = 0;
                    for k in 0..10_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let url = format!(
                            "http://127.0.0.1:{port}/v1/repositories/crash/r{kill}_{t}_{k}/"
                        );
                        match client.put(url).body("[]").send() {
                            Ok(r) if r.status().is_success() => ok += 1,
                            _ => break,
                        }
                    }
                    ok
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..700)));
        kill_9(&registry);
        stop.store(true, Ordering::Relaxed);
        pushed += threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>();
        drop(registry);
        drifted += setup.missing("crash").len();
    }
    let missing_before = setup.missing("crash");
    let registry = setup.start();
    eventually("the index holds every stored repository", || {
        setup.missing("crash").is_empty()
    });
    let stored = setup.stored("crash").len();
    eprintln!(
        "8 kills, {pushed} pushes answered, {stored} repositories stored, \
         {drifted} missing from the index right after a kill (summed), \
         {} before the last start, 0 after it ({:.1?})",
        missing_before.len(),
        started.elapsed()
    );
    eventually("the catch-up logged", || {
        let log = registry.log();
        log.contains("caught up with storage") || log.contains("in step with storage")
    });
    // Each search finds them, too.
    let (status, body) = search(&registry, "q=crash&n=1");
    assert_eq!(status, 200);
    assert_eq!(body["num_results"].as_u64(), Some(stored as u64));
}

/// A repository written to storage by a registry that died before indexing
/// it (made by hand here, so that it happens every time): the next start
/// adds it, and logs how many it added.
#[test]
fn a_repository_missing_from_the_index_is_added_at_start() {
    let setup = Setup::new();
    let mut registry = setup.start();
    assert_eq!(create(&registry, "me/indexed"), 200);
    registry.terminate();
    let dir = setup.storage().join("repositories/me/unindexed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("_index_images"), "[]").unwrap();
    assert_eq!(setup.indexed(), ["me/indexed"]);

    let registry = setup.start();
    eventually("me/unindexed indexed", || {
        setup.indexed() == ["me/indexed", "me/unindexed"]
    });
    let (_, body) = search(&registry, "q=unindexed");
    assert_eq!(body["num_results"], 1);
    eventually("the catch-up logged", || {
        registry.log().contains("1 were missing (added)")
    });
}

/// A folder holding nothing but a crash's temporary file is no repository,
/// neither when the index is built nor when it catches up.
#[test]
fn temporary_only_folders_are_no_repositories() {
    let setup = Setup::new();
    let ghost = setup.storage().join("repositories/me/ghost");
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::write(ghost.join(".registry-v1-tmp-abc123"), "[]").unwrap();
    let real = setup.storage().join("repositories/me/real");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("_index_images"), "[]").unwrap();

    // Built at first start.
    let mut registry = setup.start();
    assert_eq!(setup.indexed(), ["me/real"]);
    let (_, body) = search(&registry, "");
    assert_eq!(body["num_results"], 1, "{body}");
    registry.terminate();

    // Caught up at the next one.
    let ghost2 = setup.storage().join("repositories/other/ghost");
    std::fs::create_dir_all(&ghost2).unwrap();
    std::fs::write(ghost2.join(".registry-v1-tmp-def456"), "[]").unwrap();
    let registry = setup.start();
    eventually("the catch-up logged", || {
        registry
            .log()
            .contains("in step with storage: 1 repositories")
    });
    assert_eq!(setup.indexed(), ["me/real"]);
}

/// A v2 repository as distribution's tree holds it, with one manifest
/// revision (`name` `a/b/c`).
fn v2_repository(setup: &Setup, name: &str) {
    let hex = "ab".repeat(32);
    let dir = setup.storage().join(format!(
        "docker/registry/v2/repositories/{name}/_manifests/revisions/sha256/{hex}"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("link"), format!("sha256:{hex}")).unwrap();
}

/// v2 repositories (those holding a manifest) are repositories of the
/// walk: built into a fresh index, added by the catch-up when a crash
/// missed them, kept by `reindex`.
#[test]
fn v2_repositories_are_walked_too() {
    let setup = Setup::new();
    v2_repository(&setup, "team/v2app");
    // Layers but no manifest: no repository for search.
    let layers = setup
        .storage()
        .join("docker/registry/v2/repositories/team/blobsonly/_layers/sha256");
    std::fs::create_dir_all(&layers).unwrap();
    let mut registry = setup.start();
    assert_eq!(setup.indexed(), ["team/v2app"]);
    registry.terminate();

    v2_repository(&setup, "deep/a/b");
    v2_repository(&setup, "solo");
    let mut registry = setup.start();
    eventually("the v2 repositories added", || {
        setup.indexed() == ["deep/a/b", "library/solo", "team/v2app"]
    });
    registry.terminate();

    let storage = setup.storage().display().to_string();
    let url = format!("sqlite:///{}", setup.database().display());
    let out = common::run(
        &["reindex"],
        &[
            ("STORAGE_PATH", storage.as_str()),
            ("SEARCH_BACKEND", "sqlalchemy"),
            ("SQLALCHEMY_INDEX_DATABASE", url.as_str()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("3 repositories in storage, 0 added, 0 removed"),
        "{stdout}"
    );
    assert_eq!(setup.indexed(), ["deep/a/b", "library/solo", "team/v2app"]);
}

fn age(path: &Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

/// Temporary files last written more than 24 hours ago go at start; fresh
/// ones (maybe another registry's, writing now) stay.
#[test]
fn stale_temporary_files_are_removed_at_start() {
    let setup = Setup::new();
    let images = setup.storage().join("images/0123456789abcdef");
    std::fs::create_dir_all(&images).unwrap();
    let old = images.join(".registry-v1-tmp-old1");
    let fresh = images.join(".registry-v1-tmp-new1");
    let repo = setup.storage().join("repositories/me/app");
    std::fs::create_dir_all(&repo).unwrap();
    let old_in_repo = repo.join(".registry-v1-tmp-old2");
    for path in [&old, &fresh, &old_in_repo] {
        std::fs::write(path, "partial").unwrap();
    }
    age(&old, Duration::from_secs(25 * 3600));
    age(&old_in_repo, Duration::from_secs(7 * 24 * 3600));
    age(&fresh, Duration::from_secs(23 * 3600));

    let registry = setup.start();
    eventually("the stale temporary files removed", || {
        !old.exists() && !old_in_repo.exists()
    });
    assert!(fresh.exists());
    eventually("the removal logged", || {
        registry
            .log()
            .contains("removed 2 temporary files left by a crash")
    });
}

/// `q` holding NUL finds nothing (SQLite's LIKE stopped at the NUL and
/// matched every row); a page past 2^32 is the empty page past the last.
#[test]
fn hostile_search_parameters() {
    let setup = Setup::new();
    let registry = setup.start();
    for name in ["me/one", "me/two", "you/three"] {
        assert_eq!(create(&registry, name), 200);
    }
    for q in ["%00zzzzqq", "%00", "zz%00", "on%00e", "%00%00%00%00"] {
        let (status, body) = search(&registry, &format!("q={q}"));
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(body["num_results"], 0, "{q}: {body}");
        assert_eq!(body["results"], serde_json::json!([]), "{q}: {body}");
    }
    let (_, body) = search(&registry, "q=o");
    assert_eq!(body["num_results"], 3);
    for page in [
        "4294967296",
        "4294967297",
        "18446744073709551615",
        "99999999999999999999999999",
    ] {
        let (status, body) = search(&registry, &format!("n=100&page={page}"));
        assert_eq!(status, 200, "page {page}: {body}");
        assert_eq!(body["num_results"], 3, "page {page}: {body}");
        assert_eq!(
            body["results"],
            serde_json::json!([]),
            "page {page}: {body}"
        );
    }
    let (status, _) = search(&registry, "page=0");
    assert_eq!(status, 400);
}
