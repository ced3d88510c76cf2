//! The SQLite search index, in the old registry's schema.
//!
//! The tables `version` and `repository` are those the old registry's
//! SQLAlchemy models make, so a `docker-registry.db` it wrote opens as it
//! is and one we write opens in it. Beside them we keep a trigram full-text
//! index (`repository_fts`) that serves `LIKE '%term%'` for terms of three
//! characters or more without reading every row.
//!
//! That index follows `repository` through triggers that only note which
//! rows changed (`repository_fts_pending`, a plain table): the old registry,
//! or any SQLite without FTS5, can keep writing to `repository`. Searches
//! read the pending rows along with the full-text hits, so they are exact
//! before the notes are applied (which every write of ours does). Every
//! candidate is checked with the same `LIKE` the old registry ran, so the
//! answers are those of the plain scan, byte for byte.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use fs4::fs_std::FileExt;
use indicatif::ProgressBar;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{
    named_params, params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior,
};

use super::{
    like_pattern, walk, DatabaseLocation, Reconciled, SearchError, SearchHit, SearchIndex,
    SearchPage, SearchQuery,
};
use crate::names::RepositoryName;
use crate::storage::Storage;

/// The schema version the old registry wrote in `version`.
pub const SCHEMA_VERSION: i64 = 1;

/// The old registry's tables, in the words SQLAlchemy used to create them.
const CREATE_VERSION: &str =
    "CREATE TABLE version (\n\tid INTEGER NOT NULL, \n\tPRIMARY KEY (id)\n)";
const CREATE_REPOSITORY: &str = "CREATE TABLE repository (\n\tid INTEGER NOT NULL, \n\t\
     name VARCHAR(95) NOT NULL, \n\tdescription VARCHAR(100), \n\tPRIMARY KEY (id), \n\t\
     UNIQUE (name)\n)";

/// Our additions, which the old registry never reads: (type, name, DDL).
const EXTRAS: &[(&str, &str, &str)] = &[
    (
        "table",
        "repository_fts",
        "CREATE VIRTUAL TABLE repository_fts USING fts5(name, description, \
         tokenize = 'trigram case_sensitive 0')",
    ),
    (
        "table",
        "repository_fts_pending",
        "CREATE TABLE repository_fts_pending (id INTEGER PRIMARY KEY)",
    ),
    // Written so that they never conflict: the conflict policy of the
    // statement that fires a trigger overrides the trigger's own (an UPSERT
    // would turn `INSERT OR IGNORE` into an abort).
    (
        "trigger",
        "repository_fts_insert",
        "CREATE TRIGGER repository_fts_insert AFTER INSERT ON repository BEGIN \
         INSERT INTO repository_fts_pending (id) SELECT new.id \
         WHERE NOT EXISTS (SELECT 1 FROM repository_fts_pending WHERE id = new.id); END",
    ),
    (
        "trigger",
        "repository_fts_update",
        "CREATE TRIGGER repository_fts_update AFTER UPDATE ON repository BEGIN \
         INSERT INTO repository_fts_pending (id) SELECT old.id \
         WHERE NOT EXISTS (SELECT 1 FROM repository_fts_pending WHERE id = old.id); \
         INSERT INTO repository_fts_pending (id) SELECT new.id \
         WHERE NOT EXISTS (SELECT 1 FROM repository_fts_pending WHERE id = new.id); END",
    ),
    (
        "trigger",
        "repository_fts_delete",
        "CREATE TRIGGER repository_fts_delete AFTER DELETE ON repository BEGIN \
         INSERT INTO repository_fts_pending (id) SELECT old.id \
         WHERE NOT EXISTS (SELECT 1 FROM repository_fts_pending WHERE id = old.id); END",
    ),
];

/// How long a write waits for another process's write before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections kept for a file database.
const POOL_SIZE: u32 = 4;

/// The SQLite search index.
pub struct SqliteIndex {
    pool: r2d2::Pool<SqliteConnectionManager>,
    /// In memory: the connection that keeps the database alive while the
    /// pool opens and closes its own.
    _keep_alive: Option<Arc<Mutex<Connection>>>,
}

/// An index ready to use, and what building it found, if it was built now.
pub struct Opened {
    pub index: SqliteIndex,
    pub built: Option<Reconciled>,
}

impl SqliteIndex {
    /// Opens the index at `location`, creating it from `storage` when it has
    /// no `version` table (or an empty one), and adding our full-text index
    /// to a database that lacks it. Of several processes opening one file at
    /// once, one builds while the others wait on a lock file beside it.
    pub async fn open(
        location: &DatabaseLocation,
        storage: &dyn Storage,
        progress: &ProgressBar,
    ) -> anyhow::Result<Opened> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let (target, pool_size) = match location {
            DatabaseLocation::File(path) => (path.clone(), POOL_SIZE),
            DatabaseLocation::Postgres(_) => {
                anyhow::bail!("search index {location} is PostgreSQL, not SQLite")
            }
            DatabaseLocation::Memory => {
                // A named shared-cache database: every connection of the
                // pool sees the same one. One connection, so that they never
                // meet shared-cache table locks.
                static NEXT: AtomicU64 = AtomicU64::new(0);
                flags |= OpenFlags::SQLITE_OPEN_URI;
                let uri = format!(
                    "file:registry-v1-search-{}-{}?mode=memory&cache=shared",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                (PathBuf::from(uri), 1)
            }
        };
        // The schema work runs on a connection of its own, opened here so
        // that a path that cannot be opened is told at once.
        let setup = Connection::open_with_flags(&target, flags)
            .and_then(|mut conn| configure(&mut conn).map(|()| conn))
            .with_context(|| format!("cannot open the search index {location}"))?;
        let setup = Arc::new(Mutex::new(setup));
        let built = prepare(&setup, location, storage, progress)
            .await
            .with_context(|| format!("search index {location}"))?;
        let manager = SqliteConnectionManager::file(&target)
            .with_flags(flags)
            .with_init(configure);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(0))
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(BUSY_TIMEOUT)
            .build_unchecked(manager);
        let keep_alive = match location {
            DatabaseLocation::Memory => Some(setup),
            DatabaseLocation::File(_) | DatabaseLocation::Postgres(_) => None,
        };
        let index = SqliteIndex {
            pool,
            _keep_alive: keep_alive,
        };
        Ok(Opened { index, built })
    }

    /// Runs `work` on a connection of the pool, off the async workers.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SearchError> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| SearchError::Busy(e.to_string()))?;
            work(&mut conn).map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                    SearchError::Busy(e.to_string())
                }
                _ => SearchError::Unavailable(e.to_string()),
            })
        })
        .await
        .map_err(|e| SearchError::Unavailable(e.to_string()))?
    }

    /// The same answer as [`SearchIndex::search`], found the way the old
    /// registry found it: `LIKE` on every row. The reference the full-text
    /// path is checked and measured against.
    pub async fn search_scan(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        let query = query.clone();
        self.run(move |conn| search(conn, &query, Plan::for_scan(&query.term)))
            .await
    }

    /// Brings the index in line with storage: adds the repositories it
    /// misses (without description), removes those storage no longer holds,
    /// and rebuilds the full-text index. Rows added while storage is walked
    /// are kept.
    pub async fn reindex(
        &self,
        storage: &dyn Storage,
        progress: &ProgressBar,
    ) -> anyhow::Result<Reconciled> {
        let known_before = self
            .run(|conn| {
                conn.query_row("SELECT coalesce(max(id), 0) FROM repository", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await?;
        let names = walk::repositories(storage, progress)
            .await
            .context("cannot list the repositories of storage")?;
        Ok(self
            .run(move |conn| reconcile(conn, &names, known_before))
            .await?)
    }
}

impl SqliteIndex {
    /// What a crash can leave behind, caught up: adds the repositories of
    /// storage the index misses (a registry killed between writing a
    /// repository and indexing it). Removes nothing: a crash loses index
    /// updates that follow a storage write, and a delete removes its row
    /// only after storage (`registry-v1 reindex` is the full
    /// reconciliation). A repository deleted between its listing and the
    /// insert comes back until the next reindex. Cheap on a
    /// complete index: one listing per namespace and repository, one insert
    /// per missing name.
    pub async fn catch_up(
        &self,
        storage: &dyn Storage,
        progress: &ProgressBar,
    ) -> anyhow::Result<Reconciled> {
        let names = walk::repositories(storage, progress)
            .await
            .context("cannot list the repositories of storage")?;
        Ok(self.run(move |conn| add_missing(conn, &names)).await?)
    }
}

/// Adds the `names` the index does not hold, without description.
fn add_missing(conn: &mut Connection, names: &[RepositoryName]) -> rusqlite::Result<Reconciled> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut added = 0;
    {
        let mut insert = tx.prepare(
            "INSERT INTO repository (name, description) VALUES (?1, NULL) \
             ON CONFLICT (name) DO NOTHING",
        )?;
        for name in names {
            added += insert.execute([name.to_string()])?;
        }
    }
    apply_pending(&tx)?;
    tx.commit()?;
    Ok(Reconciled {
        found: names.len() as u64,
        added: added as u64,
        removed: 0,
    })
}

#[async_trait]
impl SearchIndex for SqliteIndex {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        let query = query.clone();
        self.run(move |conn| search(conn, &query, Plan::for_term(&query.term)))
            .await
    }

    async fn upsert(&self, name: &str, description: Option<&str>) -> Result<(), SearchError> {
        let (name, description) = (name.to_owned(), description.map(str::to_owned));
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            match description {
                Some(description) => tx.execute(
                    "INSERT INTO repository (name, description) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET description = excluded.description \
                     WHERE description IS NOT excluded.description",
                    params![name, description],
                )?,
                None => tx.execute(
                    "INSERT INTO repository (name, description) VALUES (?1, '') \
                     ON CONFLICT (name) DO NOTHING",
                    params![name],
                )?,
            };
            apply_pending(&tx)?;
            tx.commit()
        })
        .await
    }

    async fn remove(&self, name: &str) -> Result<(), SearchError> {
        let name = name.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM repository WHERE name = ?1", params![name])?;
            apply_pending(&tx)?;
            tx.commit()
        })
        .await
    }
}

/// Builds the index when the database is fresh, brings our additions in
/// otherwise; under the build lock.
async fn prepare(
    setup: &Arc<Mutex<Connection>>,
    location: &DatabaseLocation,
    storage: &dyn Storage,
    progress: &ProgressBar,
) -> anyhow::Result<Option<Reconciled>> {
    let _lock = match location {
        DatabaseLocation::File(path) => BuildLock::acquire(path).await?,
        DatabaseLocation::Memory | DatabaseLocation::Postgres(_) => None,
    };
    let wal = matches!(location, DatabaseLocation::File(_));
    let fresh = on(setup, move |conn| {
        if wal {
            use_wal(conn)?;
        }
        is_fresh(conn)
    })
    .await?;
    if !fresh {
        on(setup, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            add_extras(&tx)?;
            apply_pending(&tx)?;
            Ok(tx.commit()?)
        })
        .await?;
        return Ok(None);
    }
    let names = walk::repositories(storage, progress)
        .await
        .context("cannot list the repositories of storage to build the search index")?;
    on(setup, move |conn| build(conn, &names)).await
}

/// Runs schema work on `conn`, off the async workers.
async fn on<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    work: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        work(&mut conn)
    })
    .await?
}

/// Settings of every connection: wait for other writers rather than fail,
/// and in WAL mode, sync at checkpoints only (the index can be rebuilt from
/// storage; a power cut loses at most the last writes, never the file).
fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// Readers never wait for writers, nor writers for readers, across
/// processes. The mode is kept in the file.
fn use_wal(conn: &Connection) -> anyhow::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("search index: journal mode is {mode}, not WAL: readers may wait for writers");
    }
    Ok(())
}

/// Whether the database still has to be built: no `version` table, or an
/// empty one (the old registry rebuilt those too). A version other than
/// ours is an error.
fn is_fresh(conn: &Connection) -> anyhow::Result<bool> {
    if !has_object(conn, "table", "version")? {
        return Ok(true);
    }
    let version: Option<i64> = conn.query_row("SELECT max(id) FROM version", [], |r| r.get(0))?;
    match version {
        None => Ok(true),
        Some(SCHEMA_VERSION) => Ok(false),
        Some(other) => anyhow::bail!(
            "schema version {other}, but registry-v1 knows version {SCHEMA_VERSION} only \
             (the old registry's); use a database of version {SCHEMA_VERSION}, or a new file"
        ),
    }
}

fn has_object(conn: &Connection, kind: &str, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = ?1 AND name = ?2",
        params![kind, name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Creates the old tables, fills them with `names`, adds ours. Checks
/// again inside the write transaction, in case another process built the
/// index while we walked storage (when the lock file could not be used).
fn build(conn: &mut Connection, names: &[RepositoryName]) -> anyhow::Result<Option<Reconciled>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !is_fresh(&tx)? {
        add_extras(&tx)?;
        apply_pending(&tx)?;
        tx.commit()?;
        return Ok(None);
    }
    if !has_object(&tx, "table", "version")? {
        tx.execute_batch(CREATE_VERSION)?;
    }
    if !has_object(&tx, "table", "repository")? {
        tx.execute_batch(CREATE_REPOSITORY)?;
    }
    tx.execute("INSERT INTO version (id) VALUES (?1)", [SCHEMA_VERSION])?;
    let mut added = 0;
    {
        let mut insert = tx.prepare(
            "INSERT INTO repository (name, description) VALUES (?1, NULL) \
             ON CONFLICT (name) DO NOTHING",
        )?;
        for name in names {
            added += insert.execute([name.to_string()])? as u64;
        }
    }
    add_extras(&tx)?;
    refill_fts(&tx)?;
    tx.commit()?;
    Ok(Some(Reconciled {
        found: names.len() as u64,
        added,
        removed: 0,
    }))
}

/// Adds whichever of our tables and triggers are missing (a database the
/// old registry made has none); the full-text index is then refilled.
fn add_extras(conn: &Connection) -> rusqlite::Result<()> {
    let mut added = false;
    for (kind, name, ddl) in EXTRAS {
        if !has_object(conn, kind, name)? {
            conn.execute_batch(ddl)?;
            added = true;
        }
    }
    if added {
        log::info!("search index: adding the full-text index to the database");
        refill_fts(conn)?;
    }
    Ok(())
}

/// Indexes every row of `repository` anew.
fn refill_fts(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM repository_fts;
         INSERT INTO repository_fts (rowid, name, description)
             SELECT id, name, description FROM repository;
         DELETE FROM repository_fts_pending;
         INSERT INTO repository_fts (repository_fts) VALUES ('optimize');",
    )
}

/// Indexes the rows the triggers noted as changed.
fn apply_pending(conn: &Connection) -> rusqlite::Result<()> {
    let pending: bool = conn
        .prepare_cached("SELECT 1 FROM repository_fts_pending LIMIT 1")?
        .query_row([], |_| Ok(true))
        .optional()?
        .unwrap_or(false);
    if pending {
        conn.execute_batch(
            "DELETE FROM repository_fts WHERE rowid IN (SELECT id FROM repository_fts_pending);
             INSERT INTO repository_fts (rowid, name, description)
                 SELECT r.id, r.name, r.description
                 FROM repository_fts_pending AS p JOIN repository AS r ON r.id = p.id;
             DELETE FROM repository_fts_pending;",
        )?;
    }
    Ok(())
}

/// Adds the `names` the index misses and removes the rows (known before the
/// walk, ids up to `known_before`) that storage no longer holds.
fn reconcile(
    conn: &mut Connection,
    names: &[RepositoryName],
    known_before: i64,
) -> rusqlite::Result<Reconciled> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS reindex_found (name TEXT PRIMARY KEY);
         DELETE FROM temp.reindex_found;",
    )?;
    {
        let mut insert =
            tx.prepare("INSERT OR IGNORE INTO temp.reindex_found (name) VALUES (?1)")?;
        for name in names {
            insert.execute([name.to_string()])?;
        }
    }
    let removed = tx.execute(
        "DELETE FROM repository WHERE id <= ?1 \
         AND name NOT IN (SELECT name FROM temp.reindex_found)",
        [known_before],
    )?;
    let added = tx.execute(
        "INSERT INTO repository (name, description) \
         SELECT name, NULL FROM temp.reindex_found \
         WHERE name NOT IN (SELECT name FROM repository) ORDER BY name",
        [],
    )?;
    tx.execute_batch("DROP TABLE temp.reindex_found")?;
    refill_fts(&tx)?;
    tx.commit()?;
    Ok(Reconciled {
        found: names.len() as u64,
        added: added as u64,
        removed: removed as u64,
    })
}

/// How a term is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// The empty term: every row.
    All,
    /// A term holding NUL: no row. No name holds one, and SQLite's `LIKE`
    /// stops reading a pattern at NUL (`%\0zzz%` would be `%`: every row).
    Nothing,
    /// `LIKE` on every row.
    Scan { like: String },
    /// The trigram index finds candidates, `LIKE` checks them.
    Trigram { like: String, pieces: String },
}

impl Plan {
    fn for_scan(term: &str) -> Self {
        if term.contains('\0') {
            Plan::Nothing
        } else if term.is_empty() {
            Plan::All
        } else {
            Plan::Scan {
                like: like_pattern(term),
            }
        }
    }

    /// The trigram index holds sequences of three characters, so shorter
    /// terms are scanned. Its case folding is Unicode's, wider than `LIKE`'s
    /// ASCII-only one, so every row that `LIKE` matches it finds too; the
    /// `LIKE` check then drops the others (`É` for `é`).
    fn for_term(term: &str) -> Self {
        if term.chars().count() >= 3 && !term.contains('\0') {
            Plan::Trigram {
                like: like_pattern(term),
                pieces: fts_pieces(term),
            }
        } else {
            Plan::for_scan(term)
        }
    }
}

/// An FTS5 query for the rows holding every piece of three characters
/// that tiles the term (`abcdefgh`: `abc`, `def`, `fgh`), each quoted with
/// inner quotes doubled. A superset of the rows holding the term, which
/// `LIKE` then checks: cheaper than the exact phrase (every overlapping
/// piece, with positions), which reads several times as many entries.
fn fts_pieces(term: &str) -> String {
    let chars: Vec<char> = term.chars().collect();
    let last = chars.len().saturating_sub(3);
    let mut starts: Vec<usize> = (0..=last).step_by(3).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    starts
        .into_iter()
        .map(|start| {
            let piece: String = chars[start..(start + 3).min(chars.len())].iter().collect();
            format!("\"{}\"", piece.replace('"', "\"\""))
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

const MATCHES: &str = "(name LIKE :like ESCAPE '\\' OR description LIKE :like ESCAPE '\\')";

fn search(conn: &mut Connection, query: &SearchQuery, plan: Plan) -> rusqlite::Result<SearchPage> {
    let limit = i64::from(query.per_page);
    // A page far past the last (above 2^63 rows in) is as empty as the
    // next one: the offset saturates.
    let offset = i64::try_from(query.page.max(1) - 1)
        .unwrap_or(i64::MAX)
        .saturating_mul(limit);
    // One read transaction: the count and the page see the same rows.
    let tx = conn.transaction()?;
    let hit = |r: &rusqlite::Row<'_>| {
        Ok(SearchHit {
            name: r.get(0)?,
            description: r.get(1)?,
        })
    };
    let page = match &plan {
        Plan::All => {
            let total: i64 = tx
                .prepare_cached("SELECT count(*) FROM repository")?
                .query_row([], |r| r.get(0))?;
            let hits = tx
                .prepare_cached(
                    "SELECT name, description FROM repository ORDER BY name \
                     LIMIT :limit OFFSET :offset",
                )?
                .query_map(named_params! {":limit": limit, ":offset": offset}, hit)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            SearchPage {
                total: total as u64,
                hits,
            }
        }
        Plan::Nothing => SearchPage {
            total: 0,
            hits: Vec::new(),
        },
        Plan::Scan { like } => {
            let from = format!("FROM repository WHERE {MATCHES}");
            page_of(&tx, &from, named_params! {":like": like}, limit, offset)?
        }
        Plan::Trigram { like, pieces } => {
            let from = format!(
                "FROM (SELECT rowid AS id FROM repository_fts WHERE repository_fts MATCH :pieces \
                       UNION SELECT id FROM repository_fts_pending) AS candidate \
                 JOIN repository USING (id) WHERE {MATCHES}"
            );
            page_of(
                &tx,
                &from,
                named_params! {":like": like, ":pieces": pieces},
                limit,
                offset,
            )?
        }
    };
    tx.finish()?;
    Ok(page)
}

/// The rows of `from` (an SQL `FROM ... WHERE ...` with the named
/// parameters `args`), by name, one page, with the count of all.
fn page_of(
    conn: &Connection,
    from: &str,
    args: &[(&str, &dyn rusqlite::ToSql)],
    limit: i64,
    offset: i64,
) -> rusqlite::Result<SearchPage> {
    // The matches are found once, then counted and paged; the count comes
    // on every row, and alone (name null) past the last page.
    let mut statement = conn.prepare_cached(&format!(
        "WITH hit AS MATERIALIZED (SELECT name, description {from}) \
         SELECT total, name, description \
         FROM (SELECT count(*) AS total FROM hit) LEFT JOIN \
              (SELECT name, description FROM hit ORDER BY name LIMIT :limit OFFSET :offset) \
         ORDER BY name"
    ))?;
    let mut all_args = args.to_vec();
    all_args.extend([
        (":limit", &limit as &dyn rusqlite::ToSql),
        (":offset", &offset as &dyn rusqlite::ToSql),
    ]);
    let mut total = 0u64;
    let mut hits = Vec::new();
    let mut rows = statement.query(all_args.as_slice())?;
    while let Some(row) = rows.next()? {
        total = row.get::<_, i64>(0)? as u64;
        if let Some(name) = row.get::<_, Option<String>>(1)? {
            hits.push(SearchHit {
                name,
                description: row.get(2)?,
            });
        }
    }
    Ok(SearchPage { total, hits })
}

/// The lock file beside the database (`<file>.lock`) that one process
/// holds while it builds or upgrades the index; the others wait on it in
/// the kernel and then find the index built.
struct BuildLock(#[allow(dead_code)] File);

impl BuildLock {
    async fn acquire(database: &Path) -> anyhow::Result<Option<BuildLock>> {
        let mut path = database.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let file = match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) => {
                // SQLite's own locking still keeps the build whole.
                log::warn!(
                    "search index: cannot use the lock file {}: {e}",
                    path.display()
                );
                return Ok(None);
            }
        };
        match file.try_lock_exclusive() {
            Ok(()) => return Ok(Some(BuildLock(file))),
            Err(e) if e.kind() == fs4::lock_contended_error().kind() => {}
            Err(e) => {
                log::warn!("search index: cannot lock {}: {e}", path.display());
                return Ok(None);
            }
        }
        log::info!(
            "search index: another process is preparing {}; waiting for it",
            database.display()
        );
        let file = Arc::new(file);
        let locked = file.clone();
        tokio::task::spawn_blocking(move || locked.lock_exclusive())
            .await?
            .with_context(|| format!("cannot lock {}", path.display()))?;
        let file = Arc::try_unwrap(file)
            .map_err(|_| anyhow::anyhow!("lock file {} still shared", path.display()))?;
        Ok(Some(BuildLock(file)))
    }
}

#[cfg(test)]
mod tests;
