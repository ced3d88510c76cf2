//! Search as users run it: the real binary, a real SQLite file, storage
//! folders on disk, `docker search`'s requests.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The old registry's schema, with the DDL the contract gives.
const OLD_SCHEMA: &str = "
    CREATE TABLE version (id INTEGER PRIMARY KEY);
    CREATE TABLE repository (id INTEGER PRIMARY KEY, name VARCHAR(95) NOT NULL UNIQUE,
                             description VARCHAR(100));
    INSERT INTO version (id) VALUES (1);";

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
        self.dir.path().join("docker-registry.db")
    }

    fn url(&self) -> String {
        format!("sqlite:///{}", self.database().display())
    }

    /// A repository folder as the old registry laid it out (`folder` is
    /// `<ns>/<repo>` already escaped), with a tag in it.
    fn repository(&self, folder: &str) {
        let dir = self.storage().join("repositories").join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tag_latest"), "0123456789abcdef").unwrap();
    }

    fn old_database(&self, rows: &[(&str, Option<&str>)]) {
        let conn = rusqlite::Connection::open(self.database()).unwrap();
        conn.execute_batch(OLD_SCHEMA).unwrap();
        for (name, description) in rows {
            conn.execute(
                "INSERT INTO repository (name, description) VALUES (?1, ?2)",
                rusqlite::params![name, description],
            )
            .unwrap();
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STORAGE_PATH", self.storage().display().to_string()),
            ("SEARCH_BACKEND", "sqlalchemy".into()),
            ("SQLALCHEMY_INDEX_DATABASE", self.url()),
        ]
    }

    fn start(&self) -> common::Registry {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::Registry::start(&env)
    }

    /// `(name, description)` of every row, by name.
    fn rows(&self) -> Vec<(String, Option<String>)> {
        let conn = rusqlite::Connection::open(self.database()).unwrap();
        let mut st = conn
            .prepare("SELECT name, description FROM repository ORDER BY name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }
}

fn search(registry: &common::Registry, query: &str) -> Value {
    let resp = common::client()
        .get(registry.url(&format!("/v1/search?{query}")))
        .header("X-Docker-Token", "true")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{query}");
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().unwrap()
}

fn names(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs the server with `env` and expects it to refuse to start; returns
/// what it said.
fn refused(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::command()
        .current_dir(dir.path())
        .env("REGISTRY_HOST", "127.0.0.1")
        .env("REGISTRY_PORT", common::free_port().to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the registry started with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_database_of_the_old_registry_is_searched_as_it_is() {
    let setup = Setup::new();
    setup.old_database(&[
        ("library/busybox", None),
        ("me/web", Some("")),
        ("team/db", Some("PostgreSQL for the WEB team")),
    ]);
    // Storage holds another repository: an existing index is not rebuilt
    // (its rows and descriptions stay), it catches up (the repository is
    // added, in the background, at start).
    setup.repository("other/repo");
    let registry = setup.start();

    let body = search(&registry, "q=web");
    assert_eq!(names(&body), ["me/web", "team/db"]);
    assert_eq!(body["num_results"], 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !registry.log().contains("1 were missing (added)") {
        assert!(Instant::now() < deadline, "{}", registry.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    let all = search(&registry, "q=");
    assert_eq!(
        names(&all),
        ["library/busybox", "me/web", "other/repo", "team/db"]
    );
    assert_eq!(all["results"][0]["description"], Value::Null);
    assert_eq!(
        all["results"][3]["description"],
        "PostgreSQL for the WEB team"
    );
    drop(registry);
    assert_eq!(setup.rows().len(), 4);
}

#[test]
fn docker_search_gets_the_fields_it_reads() {
    let setup = Setup::new();
    let rows: Vec<String> = (1..=30).map(|i| format!("ns/app{i:02}")).collect();
    let mut old: Vec<(&str, Option<&str>)> = rows.iter().map(|r| (r.as_str(), None)).collect();
    old.extend([
        ("me/50%_off", Some("discount")),
        ("me/50x-off", Some("no discount")),
        ("me/cafe", Some("Crème brûlée")),
    ]);
    setup.old_database(&old);
    let registry = setup.start();

    // What `docker search HOST/app --limit 2` sends.
    let body = search(&registry, "q=app&n=2");
    assert_eq!(
        body,
        json!({
            "query": "app",
            "num_results": 30,
            "num_pages": 15,
            "page": 1,
            "page_size": 2,
            "results": [
                {"name": "ns/app01", "description": null, "star_count": 0,
                 "is_official": false, "is_automated": false},
                {"name": "ns/app02", "description": null, "star_count": 0,
                 "is_official": false, "is_automated": false},
            ]
        })
    );
    // Defaults, last page, past the end.
    assert_eq!(search(&registry, "q=app")["page_size"], 25);
    assert_eq!(names(&search(&registry, "q=app&n=25&page=2")).len(), 5);
    let beyond = search(&registry, "q=app&n=25&page=3");
    assert_eq!(
        (beyond["num_results"].clone(), names(&beyond).len()),
        (json!(30), 0)
    );
    assert_eq!(names(&search(&registry, "q=APP30&n=100")), ["ns/app30"]);
    // Wildcards are literal; letters beyond ASCII match as they are.
    assert_eq!(names(&search(&registry, "q=%25")), ["me/50%_off"]);
    assert_eq!(names(&search(&registry, "q=_off")), ["me/50%_off"]);
    assert_eq!(names(&search(&registry, "q=CR%C3%A8ME")), ["me/cafe"]);
    assert!(names(&search(&registry, "q=CR%C3%88ME")).is_empty());

    for bad in ["n=0", "n=101", "n=ten", "page=0", "page=first"] {
        let resp = common::client()
            .get(registry.url(&format!("/v1/search?q=app&{bad}")))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let error: Value = resp.json().unwrap();
        assert!(
            error["error"].as_str().unwrap().starts_with("Invalid"),
            "{bad}"
        );
    }
}

#[test]
fn first_start_indexes_storage_and_the_api_keeps_it_current() {
    let setup = Setup::new();
    setup.repository("library/busybox");
    setup.repository("me/app");
    // `abc%$_-test`, escaped twice by the old registry.
    setup.repository("library/abc%2525%2524_-test");
    let registry = setup.start();
    assert_eq!(
        names(&search(&registry, "")),
        ["library/abc%$_-test", "library/busybox", "me/app"]
    );

    let http = common::client();
    let put = |path: &str, body: &str| {
        let resp = http
            .put(registry.url(path))
            .header("X-Docker-Token", "true")
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "PUT {path}: {}", resp.status());
    };
    put("/v1/repositories/me/fresh/", "[]");
    let created = search(&registry, "q=fresh");
    assert_eq!(names(&created), ["me/fresh"]);
    assert_eq!(created["results"][0]["description"], "");

    put(
        "/v1/repositories/me/fresh/properties",
        r#"{"description": "Nightly build of the fresh app"}"#,
    );
    assert_eq!(names(&search(&registry, "q=nightly")), ["me/fresh"]);
    // Pushing again keeps the description.
    put("/v1/repositories/me/fresh/", "[]");
    assert_eq!(names(&search(&registry, "q=nightly")), ["me/fresh"]);

    let deleted = http
        .delete(registry.url("/v1/repositories/me/fresh/"))
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(names(&search(&registry, "q=fresh")).is_empty());
    assert_eq!(search(&registry, "")["num_results"], 3);
}

#[test]
fn two_registries_starting_at_once_build_one_index() {
    let setup = Setup::new();
    for i in 0..300 {
        setup.repository(&format!("ns{}/repo{i}", i % 10));
    }
    let env = setup.env();
    let starters: Vec<_> = (0..2)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                common::Registry::start(&env)
            })
        })
        .collect();
    let registries: Vec<common::Registry> =
        starters.into_iter().map(|s| s.join().unwrap()).collect();
    for registry in &registries {
        assert_eq!(search(registry, "q=repo&n=1")["num_results"], 300);
        assert_eq!(names(&search(registry, "q=ns3/repo293")), ["ns3/repo293"]);
    }
    drop(registries);
    let rows = setup.rows();
    assert_eq!(rows.len(), 300);
    let conn = rusqlite::Connection::open(setup.database()).unwrap();
    let versions: i64 = conn
        .query_row("SELECT count(*) FROM version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, 1);
}

#[test]
fn search_off_answers_nothing_and_writes_nothing() {
    let setup = Setup::new();
    setup.repository("me/app");
    // `dev` searches by default; an empty SEARCH_BACKEND turns it off.
    let registry = common::Registry::start(&[
        ("STORAGE_PATH", setup.storage().to_str().unwrap()),
        ("SEARCH_BACKEND", ""),
        ("SQLALCHEMY_INDEX_DATABASE", &setup.url()),
    ]);
    let body = search(&registry, "q=app");
    assert_eq!(body["num_results"], 0);
    assert_eq!(body["results"], json!([]));
    assert!(!setup.database().exists());
}

#[test]
fn a_database_that_cannot_serve_is_a_startup_error() {
    let setup = Setup::new();
    let storage = setup.storage().display().to_string();
    let said = refused(&[
        ("STORAGE_PATH", &storage),
        ("SEARCH_BACKEND", "sqlalchemy"),
        (
            "SQLALCHEMY_INDEX_DATABASE",
            "postgresql://registry:s3cret@db.internal/registry",
        ),
    ]);
    assert!(said.contains("not an SQLite URL"), "{said}");
    assert!(
        said.contains("postgresql://registry:***@db.internal/registry"),
        "{said}"
    );
    assert!(!said.contains("s3cret"), "{said}");

    let conn = rusqlite::Connection::open(setup.database()).unwrap();
    conn.execute_batch(&OLD_SCHEMA.replace("VALUES (1)", "VALUES (2)"))
        .unwrap();
    drop(conn);
    let url = setup.url();
    let said = refused(&[
        ("STORAGE_PATH", &storage),
        ("SEARCH_BACKEND", "sqlalchemy"),
        ("SQLALCHEMY_INDEX_DATABASE", &url),
    ]);
    assert!(said.contains("schema version 2"), "{said}");
    assert!(
        said.contains(&setup.database().display().to_string()),
        "{said}"
    );
}

#[test]
fn reindex_brings_the_index_in_line_with_storage() {
    let setup = Setup::new();
    setup.old_database(&[("me/kept", Some("described")), ("me/gone", None)]);
    setup.repository("me/kept");
    setup.repository("me/missed");
    setup.repository("you/missed+too");
    let env = setup.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = common::run(&["reindex"], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("3 repositories in storage, 2 added, 1 removed"),
        "{stdout}"
    );
    // No terminal: no progress bar.
    assert!(!stderr.contains("walking storage"), "{stderr}");
    assert_eq!(
        setup.rows(),
        [
            ("me/kept".into(), Some("described".into())),
            ("me/missed".into(), None),
            ("you/missed too".into(), None),
        ]
    );

    let off = common::run(
        &["reindex"],
        &[
            ("STORAGE_PATH", &setup.storage().display().to_string()),
            ("SEARCH_BACKEND", ""),
        ],
    );
    assert!(!off.status.success());
    assert!(String::from_utf8_lossy(&off.stderr).contains("search is off"));
}
