//! Search latency at scale: the trigram full-text path against the plain
//! `LIKE` scan the old registry ran, on the same database, in the same run.
//!
//! `cargo bench --bench search` fills 100,000 repositories (in the old
//! registry's schema, as an existing `docker-registry.db` would be), lets the
//! index add its full-text tables, then times searches for a selective term,
//! a common term and the empty term, each way, and prints p50/p99 latency.
//! `SEARCH_BENCH_SMOKE=1` runs a short version (2,000 repositories).
//!
//! Then, where PostgreSQL is installed (`.ci/install-postgres.sh`), the
//! same rows go into a PostgreSQL database of a cluster the benchmark
//! starts (the tests' own, `tests/search_support/postgres.rs`), and the
//! same searches are timed there, next to SQLite's index.

// The tests' PostgreSQL server, shared rather than written twice.
#[path = "../tests/search_support/postgres.rs"]
#[allow(dead_code)]
mod pg;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use registry_v1::search::postgres::PostgresIndex;
use registry_v1::search::sqlite::SqliteIndex;
use registry_v1::search::{DatabaseLocation, SearchIndex, SearchPage, SearchQuery};
use registry_v1::storage::memory::MemoryStorage;

const WORDS: &[&str] = &[
    "alpine",
    "ubuntu",
    "debian",
    "centos",
    "fedora",
    "python",
    "golang",
    "node",
    "java",
    "ruby",
    "rust",
    "nginx",
    "apache",
    "redis",
    "postgres",
    "mysql",
    "mongo",
    "kafka",
    "zookeeper",
    "elastic",
    "kibana",
    "grafana",
    "prometheus",
    "consul",
    "vault",
    "etcd",
    "haproxy",
    "traefik",
    "jenkins",
    "gitlab",
    "runner",
    "builder",
    "worker",
    "api",
    "gateway",
    "frontend",
    "backend",
    "service",
    "proxy",
    "cache",
    "queue",
    "scheduler",
    "monitor",
    "logger",
    "agent",
    "daemon",
    "server",
    "client",
    "tools",
    "base",
    "slim",
    "minimal",
    "devel",
    "runtime",
    "sdk",
    "cli",
    "web",
    "app",
    "db",
    "storage",
];

fn main() {
    let smoke = std::env::var_os("SEARCH_BENCH_SMOKE").is_some();
    let (repositories, runs, scan_runs) = if smoke {
        (2_000, 20, 10)
    } else {
        (100_000, 400, 60)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("docker-registry.db");
    let selective = fill(&path, repositories);
    let old_size = file_size(&path);
    // Blocking connections: made before the runtime starts.
    let postgres = pg::server().map(|server| {
        let db = server.database();
        copy_rows(&path, &mut db.connect());
        db
    });

    actix_web::rt::System::new().block_on(async {
        let started = Instant::now();
        let index = SqliteIndex::open(
            &DatabaseLocation::File(path.clone()),
            // The database is not new: storage is never walked.
            &MemoryStorage::new(),
            &indicatif::ProgressBar::hidden(),
        )
        .await
        .expect("open the index")
        .index;
        println!(
            "search bench: {repositories} repositories; full-text index added to the old \
             database in {:.2} s ({:.1} MB before, {:.1} MB after)",
            started.elapsed().as_secs_f64(),
            old_size,
            file_size(&path)
        );
        println!(
            "{:<34} {:>8} {:>11} {:>11} {:>11} {:>11} {:>8}",
            "term", "matches", "index p50", "index p99", "scan p50", "scan p99", "x p50"
        );
        let terms = [
            ("selective", selective.as_str()),
            ("common", "postgres"),
            ("short (scanned)", "db"),
            ("empty", ""),
        ];
        let query = |term: &str| SearchQuery {
            term: term.to_owned(),
            page: 1,
            per_page: 25,
        };
        for (label, term) in terms {
            let query = query(term);
            let fast = index.search(&query).await.expect("search");
            let slow = index.search_scan(&query).await.expect("scan");
            assert_eq!(fast, slow, "the two paths disagree on {term:?}");
            let fast_times = time(runs, || index.search(&query)).await;
            let scan_times = time(scan_runs, || index.search_scan(&query)).await;
            let (f50, f99) = (percentile(&fast_times, 50), percentile(&fast_times, 99));
            let (s50, s99) = (percentile(&scan_times, 50), percentile(&scan_times, 99));
            println!(
                "{:<34} {:>8} {:>11} {:>11} {:>11} {:>11} {:>7.1}x",
                format!("{label} {term:?}"),
                fast.total,
                ms(f50),
                ms(f99),
                ms(s50),
                ms(s99),
                s50.as_secs_f64() / f50.as_secs_f64()
            );
        }

        let Some(db) = &postgres else {
            println!("PostgreSQL: not installed here, not measured (.ci/install-postgres.sh)");
            return;
        };
        let started = Instant::now();
        let location = DatabaseLocation::parse(&db.url()).expect("a PostgreSQL URL");
        let DatabaseLocation::Postgres(url) = &location else {
            unreachable!("parsed as PostgreSQL")
        };
        let (postgres, _) = PostgresIndex::open(url, &MemoryStorage::new(), &hidden())
            .await
            .expect("open the PostgreSQL index");
        println!(
            "\nPostgreSQL: the same {repositories} repositories; trigram indexes added to the \
             old tables in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        println!(
            "{:<34} {:>8} {:>11} {:>11} {:>13} {:>13}",
            "term", "matches", "pg p50", "pg p99", "sqlite p50", "sqlite p99"
        );
        for (label, term) in terms {
            let query = query(term);
            let on_postgres = postgres.search(&query).await.expect("search");
            assert_eq!(
                on_postgres,
                index.search(&query).await.expect("search"),
                "PostgreSQL and SQLite disagree on {term:?}"
            );
            let pg_times = time(runs, || postgres.search(&query)).await;
            let sqlite_times = time(runs, || index.search(&query)).await;
            println!(
                "{:<34} {:>8} {:>11} {:>11} {:>13} {:>13}",
                format!("{label} {term:?}"),
                on_postgres.total,
                ms(percentile(&pg_times, 50)),
                ms(percentile(&pg_times, 99)),
                ms(percentile(&sqlite_times, 50)),
                ms(percentile(&sqlite_times, 99)),
            );
        }
    });
}

fn hidden() -> indicatif::ProgressBar {
    indicatif::ProgressBar::hidden()
}

/// The rows of the SQLite database, into the old registry's tables on
/// PostgreSQL (as SQLAlchemy made them there), as an old index would be.
fn copy_rows(path: &std::path::Path, client: &mut postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE version (id SERIAL NOT NULL, PRIMARY KEY (id));
             CREATE TABLE repository (id SERIAL NOT NULL, name VARCHAR(95) NOT NULL,
                 description VARCHAR(100), PRIMARY KEY (id), UNIQUE (name));
             INSERT INTO version (id) VALUES (1);",
        )
        .expect("schema on PostgreSQL");
    let conn = rusqlite::Connection::open(path).expect("open the SQLite database");
    let mut rows = conn
        .prepare("SELECT name, description FROM repository ORDER BY id")
        .expect("select");
    let (names, descriptions): (Vec<String>, Vec<Option<String>>) = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(|row| row.expect("row"))
        .unzip();
    client
        .execute(
            "INSERT INTO repository (name, description) \
             SELECT * FROM unnest($1::text[], $2::text[])",
            &[&names, &descriptions],
        )
        .expect("copy the rows");
}

/// The old registry's database with `count` repositories; returns a term
/// that matches one of them and few others.
fn fill(path: &std::path::Path, count: usize) -> String {
    let mut rng = StdRng::seed_from_u64(5);
    let mut conn = rusqlite::Connection::open(path).expect("create the database");
    conn.execute_batch(
        "CREATE TABLE version (id INTEGER PRIMARY KEY);
         CREATE TABLE repository (id INTEGER PRIMARY KEY, name VARCHAR(95) NOT NULL UNIQUE,
                                  description VARCHAR(100));
         INSERT INTO version (id) VALUES (1);",
    )
    .expect("schema");
    let tx = conn.transaction().expect("transaction");
    let mut selective = String::new();
    {
        let mut insert = tx
            .prepare("INSERT OR IGNORE INTO repository (name, description) VALUES (?1, ?2)")
            .expect("insert");
        let word = |rng: &mut StdRng| WORDS[rng.gen_range(0..WORDS.len())];
        for i in 0..count {
            let repository = format!(
                "{}-{}-{}",
                word(&mut rng),
                word(&mut rng),
                rng.gen_range(0..100_000)
            );
            let name = format!("user{}/{repository}", rng.gen_range(0..5_000));
            let description: Option<String> = rng.gen_bool(0.7).then(|| {
                (0..rng.gen_range(3..9))
                    .map(|_| word(&mut rng))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            if i == count / 2 {
                selective = repository;
            }
            insert
                .execute(rusqlite::params![name, description])
                .expect("row");
        }
    }
    tx.commit().expect("commit");
    selective
}

async fn time<F, Fut>(runs: usize, search: F) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<SearchPage, registry_v1::search::SearchError>>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        std::hint::black_box(search().await.expect("search"));
        times.push(started.elapsed());
    }
    times.sort();
    times
}

/// Megabytes of the database with its write-ahead log.
fn file_size(path: &std::path::Path) -> f64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    (size(path) + size(std::path::Path::new(&wal))) as f64 / 1e6
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
