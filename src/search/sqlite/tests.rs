use super::*;
use crate::search::walk::tests::MemoryStorage;

/// The DDL of the old registry's schema, as the contract states it.
const CONTRACT_DDL: &str = "
    CREATE TABLE version (id INTEGER PRIMARY KEY);
    CREATE TABLE repository (id INTEGER PRIMARY KEY, name VARCHAR(95) NOT NULL UNIQUE,
                             description VARCHAR(100));";

fn query(term: &str, page: u64, per_page: u32) -> SearchQuery {
    SearchQuery {
        term: term.into(),
        page,
        per_page,
    }
}

fn names(page: &SearchPage) -> Vec<&str> {
    page.hits.iter().map(|h| h.name.as_str()).collect()
}

async fn open(path: &Path, storage: &MemoryStorage) -> Opened {
    SqliteIndex::open(
        &DatabaseLocation::File(path.to_owned()),
        storage,
        &ProgressBar::hidden(),
    )
    .await
    .unwrap()
}

/// A new index over empty storage, in a folder deleted with the guard.
async fn empty_index() -> (tempfile::TempDir, SqliteIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir.path().join("i.db"), &MemoryStorage::default())
        .await
        .index;
    (dir, index)
}

/// A database file as the old registry left it: its schema, a few rows.
fn old_database(path: &Path, rows: &[(&str, Option<&str>)]) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(CONTRACT_DDL).unwrap();
    conn.execute("INSERT INTO version (id) VALUES (1)", [])
        .unwrap();
    for (name, description) in rows {
        conn.execute(
            "INSERT INTO repository (name, description) VALUES (?1, ?2)",
            params![name, description],
        )
        .unwrap();
    }
}

fn schema(path: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = Connection::open(path).unwrap();
    let mut st = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[actix_web::test]
async fn an_old_database_opens_as_it_is_and_gains_the_full_text_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker-registry.db");
    old_database(
        &path,
        &[
            ("library/busybox", None),
            ("me/web-app", Some("")),
            ("team/db", Some("PostgreSQL for the web team")),
        ],
    );
    let before: Vec<_> = schema(&path)
        .into_iter()
        .filter(|(_, name, _)| ["version", "repository"].contains(&name.as_str()))
        .collect();

    // Storage is not walked: the index is there already.
    let opened = open(&path, &MemoryStorage::with_repositories(&["other/repo"])).await;
    assert!(opened.built.is_none());
    let index = opened.index;
    let all = index.search(&query("", 1, 25)).await.unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(names(&all), ["library/busybox", "me/web-app", "team/db"]);
    assert_eq!(all.hits[0].description, None);
    let web = index.search(&query("WEB", 1, 25)).await.unwrap();
    assert_eq!(names(&web), ["me/web-app", "team/db"]);

    // The old tables are untouched; ours sit beside them.
    let after = schema(&path);
    for table in &before {
        assert!(after.contains(table), "{table:?} changed");
    }
    for (_, name, _) in EXTRAS {
        assert!(after.iter().any(|(_, n, _)| n == name), "{name} missing");
    }
    let conn = Connection::open(&path).unwrap();
    let version: Vec<i64> = conn
        .prepare("SELECT id FROM version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(version, [1]);
}

#[actix_web::test]
async fn a_new_database_is_built_from_storage_in_the_old_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let storage = MemoryStorage::with_repositories(&[
        "library/busybox",
        "me/app",
        "library/abc%2525%2524_-test",
    ]);
    let opened = open(&path, &storage).await;
    assert_eq!(
        opened.built,
        Some(Reconciled {
            found: 3,
            added: 3,
            removed: 0
        })
    );
    let all = opened.index.search(&query("", 1, 25)).await.unwrap();
    assert_eq!(
        names(&all),
        ["library/abc%$_-test", "library/busybox", "me/app"]
    );
    assert!(all.hits.iter().all(|h| h.description.is_none()));

    // The very text SQLAlchemy writes, so the old registry sees its own.
    let tables = schema(&path);
    for (name, ddl) in [
        ("version", CREATE_VERSION),
        ("repository", CREATE_REPOSITORY),
    ] {
        let sql = tables.iter().find(|(_, n, _)| n == name).unwrap();
        assert_eq!(sql.2.as_deref(), Some(ddl));
    }
    let mode: String = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    // A second start reads it, walks nothing.
    drop(opened);
    let again = open(&path, &MemoryStorage::default()).await;
    assert!(again.built.is_none());
    assert_eq!(
        again.index.search(&query("", 1, 25)).await.unwrap().total,
        3
    );
}

#[actix_web::test]
async fn an_empty_version_table_is_built_again_and_another_version_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty-version.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "{CONTRACT_DDL} INSERT INTO repository (name) VALUES ('a/kept');"
        ))
        .unwrap();
    let opened = open(
        &path,
        &MemoryStorage::with_repositories(&["a/kept", "b/new"]),
    )
    .await;
    assert_eq!(opened.built.map(|b| b.added), Some(1));
    let all = opened.index.search(&query("", 1, 25)).await.unwrap();
    assert_eq!(names(&all), ["a/kept", "b/new"]);

    let path = dir.path().join("v2.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!("{CONTRACT_DDL} INSERT INTO version VALUES (2);"))
        .unwrap();
    let err = SqliteIndex::open(
        &DatabaseLocation::File(path.clone()),
        &MemoryStorage::default(),
        &ProgressBar::hidden(),
    )
    .await
    .err()
    .unwrap();
    let message = format!("{err:#}");
    assert!(message.contains("schema version 2"), "{message}");
    assert!(message.contains("v2.db"), "{message}");
}

#[actix_web::test]
async fn a_database_that_cannot_be_opened_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/index.db");
    let err = SqliteIndex::open(
        &DatabaseLocation::File(path),
        &MemoryStorage::default(),
        &ProgressBar::hidden(),
    )
    .await
    .err()
    .unwrap();
    let message = format!("{err:#}");
    assert!(message.contains("no/such/dir/index.db"), "{message}");
}

#[actix_web::test]
async fn a_storage_failure_builds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    let mut storage = MemoryStorage::with_repositories(&["a/x"]);
    storage.broken = Some("repositories".into());
    let result = SqliteIndex::open(
        &DatabaseLocation::File(path.clone()),
        &storage,
        &ProgressBar::hidden(),
    )
    .await;
    assert!(result.is_err());
    // The next start builds it, rather than trusting an empty index.
    let opened = open(&path, &MemoryStorage::with_repositories(&["a/x"])).await;
    assert_eq!(opened.built.map(|b| b.added), Some(1));
}

/// Two registries starting at once on a fresh file: one builds, the other
/// waits and uses what was built.
#[test]
fn of_two_openings_at_once_one_builds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let folders: Vec<String> = (0..2000).map(|i| format!("ns{}/repo{i}", i % 7)).collect();
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let openers: Vec<_> = (0..2)
        .map(|_| {
            let (path, folders, barrier) = (path.clone(), folders.clone(), barrier.clone());
            std::thread::spawn(move || {
                let refs: Vec<&str> = folders.iter().map(String::as_str).collect();
                let storage = MemoryStorage::with_repositories(&refs);
                actix_web::rt::System::new().block_on(async {
                    barrier.wait();
                    let opened = open(&path, &storage).await;
                    let total = opened.index.search(&query("", 1, 1)).await.unwrap().total;
                    (opened.built.is_some(), total)
                })
            })
        })
        .collect();
    let results: Vec<(bool, u64)> = openers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|(built, _)| *built).count(),
        1,
        "{results:?}"
    );
    assert!(
        results.iter().all(|(_, total)| *total == 2000),
        "{results:?}"
    );
    let conn = Connection::open(&path).unwrap();
    let versions: i64 = conn
        .query_row("SELECT count(*) FROM version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, 1);
}

#[actix_web::test]
async fn writes_follow_the_registry() {
    let (_dir, index) = empty_index().await;
    index.upsert("me/app", None).await.unwrap();
    index
        .upsert("me/app", Some("Web application"))
        .await
        .unwrap();
    index.upsert("me/app", None).await.unwrap();
    index.upsert("you/tool", None).await.unwrap();
    let all = index.search(&query("", 1, 25)).await.unwrap();
    assert_eq!(
        all.hits,
        [
            SearchHit {
                name: "me/app".into(),
                description: Some("Web application".into())
            },
            SearchHit {
                name: "you/tool".into(),
                description: Some(String::new())
            }
        ]
    );
    assert_eq!(
        names(&index.search(&query("applic", 1, 25)).await.unwrap()),
        ["me/app"]
    );
    index.upsert("me/app", Some("Database")).await.unwrap();
    assert!(index
        .search(&query("applic", 1, 25))
        .await
        .unwrap()
        .hits
        .is_empty());
    index.remove("me/app").await.unwrap();
    index.remove("not/there").await.unwrap();
    assert_eq!(
        names(&index.search(&query("", 1, 25)).await.unwrap()),
        ["you/tool"]
    );
    assert!(index
        .search(&query("me/app", 1, 25))
        .await
        .unwrap()
        .hits
        .is_empty());
}

/// What the old registry runs through SQLAlchemy, on a database that holds
/// our additions: its writes work and searches see them at once.
#[actix_web::test]
async fn the_old_registry_can_keep_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let index = open(
        &path,
        &MemoryStorage::with_repositories(&["a/one", "a/two"]),
    )
    .await
    .index;
    let old = Connection::open(&path).unwrap();
    old.execute_batch(
        "BEGIN;
         INSERT INTO repository (name, description) VALUES ('b/three', '');
         UPDATE repository SET description='the second one' WHERE repository.name = 'a/two';
         DELETE FROM repository WHERE repository.name = 'a/one';
         COMMIT;",
    )
    .unwrap();
    for (term, expected) in [
        ("", vec!["a/two", "b/three"]),
        ("second", vec!["a/two"]),
        ("three", vec!["b/three"]),
        ("one", vec!["a/two"]),
        ("a/one", vec![]),
    ] {
        let page = index.search(&query(term, 1, 25)).await.unwrap();
        assert_eq!(names(&page), expected, "{term:?}");
        assert_eq!(page, index.search_scan(&query(term, 1, 25)).await.unwrap());
    }
    let pending = |conn: &Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM repository_fts_pending", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert!(pending(&old) > 0);
    // Our next write indexes what the old registry changed.
    index.upsert("c/four", None).await.unwrap();
    assert_eq!(pending(&old), 0);
    assert_eq!(
        names(&index.search(&query("second", 1, 25)).await.unwrap()),
        ["a/two"]
    );
}

#[actix_web::test]
async fn wildcards_are_literal_and_case_folds_as_like_does() {
    let (_dir, index) = empty_index().await;
    for (name, description) in [
        ("a/100%_sure", "percent and underscore"),
        ("a/100x-sure", "no wildcard here"),
        ("a/back\\slash", "a\\b"),
        ("b/cafe", "Café au lait"),
        ("b/upper", "CAFÉ AU LAIT"),
        ("b/street", "Straße"),
        ("b/kelvin", "273 \u{212A}elvin"),
        ("b/quote", "say \"hello\""),
    ] {
        index.upsert(name, Some(description)).await.unwrap();
    }
    for (term, expected) in [
        ("100%_", vec!["a/100%_sure"]),
        ("%", vec!["a/100%_sure"]),
        ("_", vec!["a/100%_sure"]),
        ("0%", vec!["a/100%_sure"]),
        ("\\", vec!["a/back\\slash"]),
        ("k\\s", vec!["a/back\\slash"]),
        // ASCII letters fold, others match as they are.
        ("café", vec!["b/cafe"]),
        ("CAFé", vec!["b/cafe"]),
        ("CAFÉ", vec!["b/upper"]),
        ("cafÉ", vec!["b/upper"]),
        ("STRAßE", vec!["b/street"]),
        ("STRASSE", vec![]),
        // The Kelvin sign is not a K to LIKE.
        ("kelvin", vec!["b/kelvin"]),
        ("3 kel", vec![]),
        ("\"hello\"", vec!["b/quote"]),
        ("\"", vec!["b/quote"]),
    ] {
        let page = index.search(&query(term, 1, 25)).await.unwrap();
        assert_eq!(names(&page), expected, "{term:?}");
        assert_eq!(page.total, expected.len() as u64);
        assert_eq!(
            page,
            index.search_scan(&query(term, 1, 25)).await.unwrap(),
            "{term:?}"
        );
    }
}

/// The full-text path gives the plain scan's answers for every substring
/// of every row and for terms that match nothing, in any case.
#[actix_web::test]
async fn the_trigram_path_answers_as_the_scan_does() {
    let (_dir, index) = empty_index().await;
    let rows = [
        ("library/ubuntu", "Ubuntu is a Debian-based Linux"),
        ("library/debian", "Debian GNU/Linux"),
        ("me/Ünïcode_ß", "Éléphant ÉLÉPHANT éléphant"),
        ("me/日本語", "リポジトリ 日本"),
        ("x/mixed-CASE", "MiXeD cAsE 100%"),
        ("x/i̇stanbul", "İstanbul ıi Iİ"),
    ];
    for (name, description) in rows {
        index.upsert(name, Some(description)).await.unwrap();
    }
    let mut terms: Vec<String> = vec!["zzz".into(), "debian-".into(), "linuX".into()];
    for (name, description) in rows {
        for text in [name, description] {
            let chars: Vec<char> = text.chars().collect();
            for start in 0..chars.len() {
                for len in [1, 2, 3, 4, 7] {
                    if start + len <= chars.len() {
                        let s: String = chars[start..start + len].iter().collect();
                        terms.push(s.to_uppercase());
                        terms.push(s.to_lowercase());
                        terms.push(s);
                    }
                }
            }
        }
    }
    terms.sort();
    terms.dedup();
    for term in &terms {
        let q = query(term, 1, 100);
        assert_eq!(
            index.search(&q).await.unwrap(),
            index.search_scan(&q).await.unwrap(),
            "{term:?}"
        );
    }
}

#[actix_web::test]
async fn pages_are_slices_of_the_matches_by_name() {
    let (_dir, index) = empty_index().await;
    for i in 0..23 {
        index.upsert(&format!("ns/app{i:02}"), None).await.unwrap();
    }
    index.upsert("ns/other", None).await.unwrap();
    for term in ["app", "ap", ""] {
        let extra = u64::from(term.is_empty());
        let first = index.search(&query(term, 1, 10)).await.unwrap();
        assert_eq!(first.total, 23 + extra, "{term:?}");
        assert_eq!(first.hits.len(), 10);
        assert_eq!(first.hits[0].name, "ns/app00");
        let last = index.search(&query(term, 3, 10)).await.unwrap();
        assert_eq!(last.total, 23 + extra);
        assert_eq!(names(&last)[..3], ["ns/app20", "ns/app21", "ns/app22"]);
        let beyond = index.search(&query(term, 4 + extra, 10)).await.unwrap();
        assert_eq!(beyond.total, 23 + extra, "{term:?}");
        assert!(beyond.hits.is_empty());
        for page in [u64::from(u32::MAX), 1 << 40, u64::MAX] {
            let huge = index.search(&query(term, page, 100)).await.unwrap();
            assert_eq!(huge.total, 23 + extra);
            assert!(huge.hits.is_empty());
        }
    }
    let none = index.search(&query("nothing", 2, 10)).await.unwrap();
    assert_eq!((none.total, none.hits.len()), (0, 0));
}

#[actix_web::test]
async fn reindex_adds_the_missing_and_removes_the_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.db");
    let index = open(
        &path,
        &MemoryStorage::with_repositories(&["a/kept", "a/gone"]),
    )
    .await
    .index;
    index.upsert("a/kept", Some("described")).await.unwrap();
    let storage = MemoryStorage::with_repositories(&["a/kept", "b/missed", "c/missed%252Btoo"]);
    let summary = index
        .reindex(&storage, &ProgressBar::hidden())
        .await
        .unwrap();
    assert_eq!(
        summary,
        Reconciled {
            found: 3,
            added: 2,
            removed: 1
        }
    );
    let all = index.search(&query("", 1, 25)).await.unwrap();
    assert_eq!(names(&all), ["a/kept", "b/missed", "c/missed+too"]);
    assert_eq!(all.hits[0].description.as_deref(), Some("described"));
    assert_eq!(
        names(&index.search(&query("missed", 1, 25)).await.unwrap()).len(),
        2
    );
    let again = index
        .reindex(&storage, &ProgressBar::hidden())
        .await
        .unwrap();
    assert_eq!((again.added, again.removed), (0, 0));
}

/// A write waits for another process's write, rather than failing; a
/// search does not wait at all.
#[actix_web::test]
async fn a_busy_database_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.db");
    let index = open(&path, &MemoryStorage::with_repositories(&["a/x"]))
        .await
        .index;
    let other = Connection::open(&path).unwrap();
    other
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO repository (name) VALUES ('b/y');")
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        other.execute_batch("COMMIT").unwrap();
    });
    let started = std::time::Instant::now();
    // WAL: the reader sees the last commit, without waiting.
    assert_eq!(index.search(&query("", 1, 25)).await.unwrap().total, 1);
    assert!(started.elapsed() < Duration::from_millis(250));
    index.upsert("c/z", None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    release.join().unwrap();
    assert_eq!(
        names(&index.search(&query("", 1, 25)).await.unwrap()),
        ["a/x", "b/y", "c/z"]
    );
}

#[actix_web::test]
async fn an_index_in_memory_works_and_is_its_own() {
    let storage = MemoryStorage::with_repositories(&["a/x"]);
    let first = SqliteIndex::open(&DatabaseLocation::Memory, &storage, &ProgressBar::hidden())
        .await
        .unwrap();
    assert!(first.built.is_some());
    let second = SqliteIndex::open(
        &DatabaseLocation::Memory,
        &MemoryStorage::default(),
        &ProgressBar::hidden(),
    )
    .await
    .unwrap();
    first
        .index
        .upsert("b/yes", Some("described"))
        .await
        .unwrap();
    assert_eq!(
        names(&first.index.search(&query("", 1, 25)).await.unwrap()),
        ["a/x", "b/yes"]
    );
    assert_eq!(
        names(&first.index.search(&query("describ", 1, 25)).await.unwrap()),
        ["b/yes"]
    );
    assert_eq!(
        second.index.search(&query("", 1, 25)).await.unwrap().total,
        0
    );
}

#[test]
fn terms_become_like_patterns_and_phrases() {
    assert_eq!(like_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    assert_eq!(fts_pieces("abc"), r#""abc""#);
    assert_eq!(fts_pieces("abcdefgh"), r#""abc" AND "def" AND "fgh""#);
    assert_eq!(fts_pieces("abcdef"), r#""abc" AND "def""#);
    assert_eq!(fts_pieces("say \"hi\""), r#""say" AND " ""h" AND "hi""""#);
    assert_eq!(fts_pieces("日本語の"), r#""日本語" AND "本語の""#);
    assert_eq!(Plan::for_term(""), Plan::All);
    assert!(matches!(Plan::for_term("ab"), Plan::Scan { .. }));
    assert!(matches!(Plan::for_term("日本"), Plan::Scan { .. }));
    assert!(matches!(Plan::for_term("日本語"), Plan::Trigram { .. }));
    assert_eq!(Plan::for_term("a\0bc"), Plan::Nothing);
    assert_eq!(Plan::for_term("\0zzzzqq"), Plan::Nothing);
}
