//! Search as users run it: the real binary, storage folders on disk,
//! `docker search`'s requests, on each database the index can live in: a
//! real SQLite file, and a real PostgreSQL server (tests/search_support/).
//! Every test runs unchanged on both: `sqlite::<test>` and `postgres::<test>`.

mod common;
mod search_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use search_support::postgres::TestDatabase;

/// The old registry's schema on SQLite, with the DDL the contract gives.
const OLD_SQLITE_SCHEMA: &str = "
    CREATE TABLE version (id INTEGER PRIMARY KEY);
    CREATE TABLE repository (id INTEGER PRIMARY KEY, name VARCHAR(95) NOT NULL UNIQUE,
                             description VARCHAR(100));";

/// The same on PostgreSQL, as SQLAlchemy created it there.
const OLD_POSTGRES_SCHEMA: &str = "
    CREATE TABLE version (id SERIAL NOT NULL, PRIMARY KEY (id));
    CREATE TABLE repository (id SERIAL NOT NULL, name VARCHAR(95) NOT NULL,
                             description VARCHAR(100), PRIMARY KEY (id), UNIQUE (name));";

/// Where a test's index lives.
enum Backend {
    Sqlite,
    Postgres(TestDatabase),
}

impl Backend {
    /// PostgreSQL's, or `None` (said on stderr) where no server can run.
    fn postgres() -> Option<Self> {
        search_support::postgres::server().map(|server| Backend::Postgres(server.database()))
    }
}

struct Setup {
    dir: tempfile::TempDir,
    backend: Backend,
}

impl Setup {
    fn new(backend: Backend) -> Self {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
            backend,
        };
        std::fs::create_dir_all(setup.storage()).unwrap();
        setup
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The SQLite file (used or not).
    fn database(&self) -> PathBuf {
        self.dir.path().join("docker-registry.db")
    }

    fn url(&self) -> String {
        match &self.backend {
            Backend::Sqlite => format!("sqlite:///{}", self.database().display()),
            Backend::Postgres(db) => db.url(),
        }
    }

    /// What the index is called in the registry's messages.
    fn shown(&self) -> String {
        match &self.backend {
            Backend::Sqlite => self.database().display().to_string(),
            Backend::Postgres(db) => format!("/{}", db.name),
        }
    }

    /// A repository folder as the old registry laid it out (`folder` is
    /// `<ns>/<repo>` already escaped), with a tag in it.
    fn repository(&self, folder: &str) {
        let dir = self.storage().join("repositories").join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tag_latest"), "0123456789abcdef").unwrap();
    }

    /// The database as the old registry left it: its schema, version
    /// `version`, these rows.
    fn old_database_of_version(&self, version: i32, rows: &[(&str, Option<&str>)]) {
        match &self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.database()).unwrap();
                conn.execute_batch(OLD_SQLITE_SCHEMA).unwrap();
                conn.execute("INSERT INTO version (id) VALUES (?1)", [version])
                    .unwrap();
                for (name, description) in rows {
                    conn.execute(
                        "INSERT INTO repository (name, description) VALUES (?1, ?2)",
                        rusqlite::params![name, description],
                    )
                    .unwrap();
                }
            }
            Backend::Postgres(db) => {
                let mut client = db.connect();
                client.batch_execute(OLD_POSTGRES_SCHEMA).unwrap();
                client
                    .execute("INSERT INTO version (id) VALUES ($1)", &[&version])
                    .unwrap();
                for (name, description) in rows {
                    client
                        .execute(
                            "INSERT INTO repository (name, description) VALUES ($1, $2)",
                            &[name, description],
                        )
                        .unwrap();
                }
            }
        }
    }

    fn old_database(&self, rows: &[(&str, Option<&str>)]) {
        self.old_database_of_version(1, rows);
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

    /// `(name, description)` of every row, by name (in byte order).
    fn rows(&self) -> Vec<(String, Option<String>)> {
        let mut rows: Vec<(String, Option<String>)> = match &self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.database()).unwrap();
                let mut st = conn
                    .prepare("SELECT name, description FROM repository")
                    .unwrap();
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap()
            }
            Backend::Postgres(db) => db
                .connect()
                .query("SELECT name::text, description::text FROM repository", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        };
        rows.sort();
        rows
    }

    /// Rows of `version`.
    fn versions(&self) -> i64 {
        match &self.backend {
            Backend::Sqlite => rusqlite::Connection::open(self.database())
                .unwrap()
                .query_row("SELECT count(*) FROM version", [], |r| r.get(0))
                .unwrap(),
            Backend::Postgres(db) => db
                .connect()
                .query_one("SELECT count(*) FROM version", &[])
                .unwrap()
                .get(0),
        }
    }

    /// Whether the registry made anything in the database.
    fn database_made(&self) -> bool {
        match &self.backend {
            Backend::Sqlite => self.database().exists(),
            Backend::Postgres(db) => db
                .connect()
                .query_one("SELECT to_regclass('version') IS NOT NULL", &[])
                .unwrap()
                .get(0),
        }
    }
}

/// Each test below, once on SQLite and once on PostgreSQL (skipped, with a
/// message, where PostgreSQL cannot run).
macro_rules! on_each_database {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $test() { super::$test(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $test() {
                if let Some(backend) = super::Backend::postgres() {
                    super::$test(backend)
                }
            })*
        }
    };
}

on_each_database!(
    a_database_of_the_old_registry_is_searched_as_it_is,
    docker_search_gets_the_fields_it_reads,
    first_start_indexes_storage_and_the_api_keeps_it_current,
    two_registries_starting_at_once_build_one_index,
    search_off_answers_nothing_and_writes_nothing,
    a_database_that_cannot_serve_is_a_startup_error,
    reindex_brings_the_index_in_line_with_storage,
    every_instance_sees_the_others_pushes,
);

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

/// `PUT /v1/repositories/<path>`: a v1 push's first request.
fn create_repository(registry: &common::Registry, path: &str) {
    let resp = common::client()
        .put(registry.url(path))
        .header("X-Docker-Token", "true")
        .header("Content-Type", "application/json")
        .body("[]")
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "PUT {path}: {}", resp.status());
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

fn a_database_of_the_old_registry_is_searched_as_it_is(backend: Backend) {
    let setup = Setup::new(backend);
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

fn docker_search_gets_the_fields_it_reads(backend: Backend) {
    let setup = Setup::new(backend);
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

fn first_start_indexes_storage_and_the_api_keeps_it_current(backend: Backend) {
    let setup = Setup::new(backend);
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

fn two_registries_starting_at_once_build_one_index(backend: Backend) {
    let setup = Setup::new(backend);
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
    assert_eq!(setup.rows().len(), 300);
    assert_eq!(setup.versions(), 1);
}

fn search_off_answers_nothing_and_writes_nothing(backend: Backend) {
    let setup = Setup::new(backend);
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
    assert!(!setup.database_made());
}

fn a_database_that_cannot_serve_is_a_startup_error(backend: Backend) {
    let setup = Setup::new(backend);
    let storage = setup.storage().display().to_string();
    let said = refused(&[
        ("STORAGE_PATH", &storage),
        ("SEARCH_BACKEND", "sqlalchemy"),
        (
            "SQLALCHEMY_INDEX_DATABASE",
            "mysql://registry:s3cret@db.internal/registry",
        ),
    ]);
    assert!(said.contains("does not offer"), "{said}");
    assert!(
        said.contains("mysql://registry:***@db.internal/registry"),
        "{said}"
    );
    assert!(!said.contains("s3cret"), "{said}");

    // A server that does not answer: named, without the password.
    let closed = format!(
        "postgresql://registry:s3cret@127.0.0.1:{}/registry",
        common::free_port()
    );
    let said = refused(&[
        ("STORAGE_PATH", &storage),
        ("SEARCH_BACKEND", "sqlalchemy"),
        ("SQLALCHEMY_INDEX_DATABASE", &closed),
    ]);
    assert!(
        said.contains("cannot connect to postgresql://registry:***@127.0.0.1"),
        "{said}"
    );
    assert!(!said.contains("s3cret"), "{said}");

    setup.old_database_of_version(2, &[]);
    let url = setup.url();
    let said = refused(&[
        ("STORAGE_PATH", &storage),
        ("SEARCH_BACKEND", "sqlalchemy"),
        ("SQLALCHEMY_INDEX_DATABASE", &url),
    ]);
    assert!(said.contains("schema version 2"), "{said}");
    assert!(said.contains(&setup.shown()), "{said}");
}

fn reindex_brings_the_index_in_line_with_storage(backend: Backend) {
    let setup = Setup::new(backend);
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

fn every_instance_sees_the_others_pushes(backend: Backend) {
    let setup = Setup::new(backend);
    let (first, second) = (setup.start(), setup.start());
    let http = common::client();
    create_repository(&first, "/v1/repositories/team/shared/");
    // At once: nothing in a process stands in for the shared database.
    assert_eq!(names(&search(&second, "q=shared")), ["team/shared"]);
    let resp = http
        .delete(second.url("/v1/repositories/team/shared/"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(names(&search(&first, "q=shared")).is_empty());
}

/// PostgreSQL only: the server drops every connection of the registry
/// (a restart, a failover); the next searches are answered on new ones.
#[test]
fn a_database_that_drops_its_connections_is_used_again() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres(db) = &backend else {
        unreachable!()
    };
    let name = db.name.clone();
    let mut admin = db.connect();
    let setup = Setup::new(backend);
    setup.repository("me/app");
    let registry = setup.start();
    // Searches at once, so the pool holds several connections to lose.
    std::thread::scope(|threads| {
        for _ in 0..8 {
            threads.spawn(|| {
                for _ in 0..4 {
                    assert_eq!(names(&search(&registry, "q=app")), ["me/app"]);
                }
            });
        }
    });
    let dropped: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert!(dropped >= 1, "the registry held no connection");
    std::thread::scope(|threads| {
        for _ in 0..8 {
            threads.spawn(|| {
                for _ in 0..4 {
                    assert_eq!(names(&search(&registry, "q=app")), ["me/app"]);
                }
            });
        }
    });
    assert!(
        !registry.log().contains("s3cret"),
        "the log shows a password"
    );
}

/// PostgreSQL only: the database goes away for good (dropped); searches
/// fail, `/readyz` says the search index failed, `/healthz` still answers.
#[test]
fn a_database_gone_makes_the_registry_not_ready() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres(db) = &backend else {
        unreachable!()
    };
    let drop_database = db.dropper();
    let setup = Setup::new(backend);
    setup.repository("me/app");
    let registry = setup.start();
    let ready = |path: &str| {
        let resp = common::client().get(registry.url(path)).send().unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    };
    let (status, body) = ready("/readyz");
    assert_eq!(
        (status, &body["search"]),
        (200, &Value::from("ok")),
        "{body}"
    );
    drop_database();
    let (status, body) = ready("/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (&body["storage"], &body["search"]),
        (&"ok".into(), &"failed".into())
    );
    assert_eq!(ready("/healthz").0, 200);
    let resp = common::client()
        .get(registry.url("/v1/search?q=app"))
        .send()
        .unwrap();
    assert!(resp.status().is_server_error(), "{}", resp.status());
    assert!(registry.log().contains("readiness: search index failed"));
}

/// The same rows in both databases, through the index itself: every term
/// (letters in both cases, beyond ASCII, `%`, `_`, `\`), every page size,
/// gives the same total and the same page.
#[test]
fn postgres_answers_exactly_as_sqlite_does() {
    // The test's own connections are blocking ones: made before the runtime.
    let Some(Backend::Postgres(db)) = Backend::postgres() else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(answers_compared(&db));
    // The trigram indexes serve the term (the planner, kept off full
    // scans, can use them for it).
    let mut client = db.connect();
    client.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT name FROM repository WHERE lower(name COLLATE \"C\") LIKE '%ab%' \
             OR lower(description COLLATE \"C\") LIKE '%ab%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("repository_name_trgm"), "{plan}");
    assert!(plan.contains("repository_description_trgm"), "{plan}");
}

async fn answers_compared(db: &TestDatabase) {
    use registry_v1::search::{Database, DatabaseLocation, SearchQuery};
    use registry_v1::storage::memory::MemoryStorage;

    let dir = tempfile::tempdir().unwrap();
    let storage = MemoryStorage::default();
    let hidden = indicatif::ProgressBar::hidden();
    let sqlite_location = DatabaseLocation::File(dir.path().join("i.db"));
    let postgres_location = DatabaseLocation::parse(&db.url()).unwrap();
    let (sqlite, _) = Database::open(&sqlite_location, &storage, &hidden)
        .await
        .unwrap();
    let (postgres, _) = Database::open(&postgres_location, &storage, &hidden)
        .await
        .unwrap();
    let (sqlite, postgres) = (sqlite.search_index(), postgres.search_index());

    // A small alphabet, so that terms match often; a fixed seed.
    let alphabet: Vec<char> = "abAB/-._%\\éÉz0".chars().collect();
    let mut seed = 0x2545_f491_u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let word = |len: usize, next: &mut dyn FnMut(usize) -> usize| -> String {
        (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
    };
    for i in 0..1500 {
        let name = format!("{}{i}", word(1 + next(12), &mut next));
        let description = match next(3) {
            0 => None,
            1 => Some(String::new()),
            _ => Some(word(next(40), &mut next)),
        };
        for index in [&sqlite, &postgres] {
            index.upsert(&name, description.as_deref()).await.unwrap();
        }
        if i % 7 == 0 {
            for index in [&sqlite, &postgres] {
                index.remove(&name).await.unwrap();
            }
        }
    }
    let mut terms = vec![String::new(), "\0".into(), "é".into(), "%".into()];
    for _ in 0..150 {
        let len = 1 + next(4);
        terms.push(word(len, &mut next));
    }
    for term in &terms {
        for (page, per_page) in [(1, 100), (2, 7), (3, 25), (u64::MAX, 1)] {
            let query = SearchQuery {
                term: term.clone(),
                page,
                per_page,
            };
            let expected = sqlite.search(&query).await.unwrap();
            let got = postgres.search(&query).await.unwrap();
            assert_eq!(got, expected, "{query:?}");
        }
    }
}

/// PostgreSQL only, which holds names to the old schema's 95 characters
/// (SQLite does not): a longer name is left out, said in the log, and
/// fails neither the first start nor its push.
#[test]
fn names_too_long_for_the_column_are_left_out_not_fatal() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let setup = Setup::new(backend);
    let long = format!("me/{}", "x".repeat(120));
    setup.repository(&long);
    setup.repository("me/short");
    let registry = setup.start();
    assert_eq!(names(&search(&registry, "")), ["me/short"]);
    assert!(
        registry.log().contains("over 95 characters"),
        "{}",
        registry.log()
    );
    create_repository(
        &registry,
        &format!("/v1/repositories/me/{}y/", "x".repeat(120)),
    );
    assert_eq!(names(&search(&registry, "")), ["me/short"]);
}

/// The old registry's own index code (the legacy peer's SQLAlchemy models,
/// on PostgreSQL through psycopg2) and registry-v1 on one database: the
/// tables the old registry made are used as they are, and each finds what
/// the other wrote.
#[test]
fn the_old_registry_and_registry_v1_share_a_postgresql_index() {
    let Some(peer) = legacy_peer() else {
        return;
    };
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres(db) = &backend else {
        unreachable!()
    };
    let url = format!(
        "postgresql+psycopg2://postgres@127.0.0.1:{}/{}",
        db.port(),
        db.name
    );
    let setup = Setup::new(backend);
    let old = |action: &str| -> String {
        let script = format!(
            "import sys\nsys.path.insert(0, {src:?})\n\
             from docker_registry.lib.index import db\n\
             index = db.SQLAlchemyIndex(database={url:?})\n{action}\n",
            src = peer.join("src").display().to_string(),
        );
        let out = std::process::Command::new(peer.join("venv/bin/python"))
            .args(["-c", &script])
            .current_dir(setup.dir.path())
            .env("SETTINGS_FLAVOR", "dev")
            .env(
                "DOCKER_REGISTRY_CONFIG",
                peer.join("src/config/config_sample.yml"),
            )
            .env("STORAGE_PATH", setup.storage())
            .env("PYTHONWARNINGS", "ignore")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The old registry makes its tables and indexes a push.
    old("index._handle_repository_created(None, 'old', 'pushed', None)");
    let registry = setup.start();
    assert_eq!(names(&search(&registry, "q=pushed")), ["old/pushed"]);
    create_repository(&registry, "/v1/repositories/new/one/");
    let found = old("print(sorted(r['name'] for r in index.results('')))");
    assert_eq!(found.trim(), "['new/one', 'old/pushed']");
    // And the old registry still writes to the table registry-v1 indexed.
    old("index._handle_repository_deleted(None, 'old', 'pushed')");
    assert_eq!(names(&search(&registry, "")), ["new/one"]);
}

/// The old Python registry (`.ci/install-legacy-peer.sh`, with psycopg2 from
/// `.ci/install-postgres.sh`), or `None` (said; under CI a failure).
fn legacy_peer() -> Option<PathBuf> {
    let root = PathBuf::from(
        std::env::var("LEGACY_PEER_ROOT").unwrap_or_else(|_| "/tmp/peers/pyreg".into()),
    );
    let ready = std::process::Command::new(root.join("venv/bin/python"))
        .args(["-c", "import psycopg2, sqlalchemy"])
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return Some(root);
    }
    let why = "the legacy peer with psycopg2 is not installed (.ci/install-legacy-peer.sh, \
               then .ci/install-postgres.sh)";
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("\nSKIPPED: {why}\n").as_bytes(),
    );
    None
}
