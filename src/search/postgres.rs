//! The search index on PostgreSQL, in the old registry's schema: the one
//! index that several registry instances behind a load balancer share.
//!
//! The tables `version` and `repository` are those SQLAlchemy made for the
//! old registry on PostgreSQL (`SERIAL` ids), so an old registry's database
//! opens as it is, and the old registry can keep using one we made. Beside
//! them we keep two trigram indexes (`pg_trgm`, GIN) on the ASCII-lowered
//! name and description: PostgreSQL checks every candidate they give with
//! the predicate itself, so the answers are those of the plain scan.
//!
//! The matching rules are SQLite's `LIKE`, which the old registry and our
//! SQLite index use, so both databases answer a term alike: ASCII letters
//! match in any case, other characters only as they are, `%` and `_`
//! literally; rows come by name in byte order. `lower()` under the `"C"`
//! collation folds ASCII only, and `"C"` orders by bytes.
//!
//! Every query runs on a pooled connection off the async workers; a
//! connection that broke (the server restarted) is dropped when checked out
//! and a new one is made, so a database that goes away and comes back is
//! used again without a restart of the registry.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use indicatif::ProgressBar;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use super::{
    like_pattern, walk, PostgresUrl, Reconciled, SearchError, SearchHit, SearchIndex, SearchPage,
    SearchQuery,
};
use crate::names::RepositoryName;
use crate::storage::Storage;

/// The schema version the old registry wrote in `version`.
const SCHEMA_VERSION: i32 = 1;

/// The old registry's tables, as SQLAlchemy created them on PostgreSQL.
const CREATE_VERSION: &str = "CREATE TABLE version (id SERIAL NOT NULL, PRIMARY KEY (id))";
const CREATE_REPOSITORY: &str = "CREATE TABLE repository (id SERIAL NOT NULL, \
     name VARCHAR(95) NOT NULL, description VARCHAR(100), PRIMARY KEY (id), UNIQUE (name))";

/// The names of `$1` the table lacks, added without description.
const INSERT_MISSING: &str = "INSERT INTO repository (name, description) \
     SELECT n, NULL FROM unnest($1::text[]) AS n ORDER BY n COLLATE \"C\" \
     ON CONFLICT (name) DO NOTHING";

/// Our additions, which the old registry never reads.
const CREATE_TRIGRAM_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS repository_name_trgm
        ON repository USING gin (lower(name COLLATE \"C\") gin_trgm_ops);
    CREATE INDEX IF NOT EXISTS repository_description_trgm
        ON repository USING gin (lower(description COLLATE \"C\") gin_trgm_ops);";

/// The advisory lock (one 64-bit key per database) that one instance holds
/// while it builds or upgrades the index; the others wait on it.
const BUILD_LOCK: i64 = 0x7265_6769_7374_7279; // "registry"

/// Connections per registry process, and how long a request waits for one.
const POOL_SIZE: u32 = 8;
const POOL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take, when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// No search or write holds a connection longer than this; the first
/// start's build and `reindex` have their own, longer, bound.
const STATEMENT_TIMEOUT: &str = "10s";
const BUILD_STATEMENT_TIMEOUT: &str = "600s";

/// The PostgreSQL search index.
pub struct PostgresIndex {
    /// `None` only while dropped.
    pool: Option<r2d2::Pool<PostgresConnectionManager<NoTls>>>,
    config: postgres::Config,
    url: PostgresUrl,
}

impl PostgresIndex {
    /// Connects to `url`, building the index from `storage` when the
    /// database has no `version` table (or an empty one), and adding our
    /// trigram indexes to one that lacks them. Of several instances opening
    /// one database at once, one builds while the others wait.
    pub async fn open(
        url: &PostgresUrl,
        storage: &dyn Storage,
        progress: &ProgressBar,
    ) -> anyhow::Result<(Self, Option<Reconciled>)> {
        let mut config: postgres::Config = url
            .connect_string()
            .parse()
            .with_context(|| format!("search index {url}: not a PostgreSQL URL"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("registry-v1");
        }
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(POOL_TIMEOUT)
            .test_on_check_out(false)
            .connection_customizer(Box::new(SessionSettings))
            // The pool's own log line would repeat every failed reconnect.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        let index = Self {
            pool: Some(pool),
            config,
            url: url.clone(),
        };
        let built = index
            .prepare(storage, progress)
            .await
            .with_context(|| format!("search index {url}"))?;
        Ok((index, built))
    }

    /// Under the build lock: builds a fresh database from storage, or adds
    /// our indexes to an existing one.
    async fn prepare(
        &self,
        storage: &dyn Storage,
        progress: &ProgressBar,
    ) -> anyhow::Result<Option<Reconciled>> {
        let mut setup = self.locked_session().await?;
        let fresh = setup.run(is_fresh).await?;
        if !fresh {
            setup.run(add_extras).await?;
            setup.release().await?;
            return Ok(None);
        }
        let names = names_of(storage, progress)
            .await
            .context("cannot build the search index")?;
        let built = setup.run(move |client| build(client, &names)).await?;
        setup.release().await?;
        Ok(Some(built))
    }

    /// A connection of its own (not the pool's) holding the build lock.
    async fn locked_session(&self) -> anyhow::Result<Session> {
        let config = self.config.clone();
        let url = self.url.clone();
        let client = tokio::task::spawn_blocking(move || -> anyhow::Result<Client> {
            let mut client = config
                .connect(NoTls)
                .with_context(|| format!("cannot connect to {url}"))?;
            client.batch_execute(&format!(
                "SET statement_timeout = '{BUILD_STATEMENT_TIMEOUT}'"
            ))?;
            let waited = !client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&BUILD_LOCK])?
                .get::<_, bool>(0);
            if waited {
                log::info!("search index: another instance is preparing {url}; waiting for it");
                client.execute("SELECT pg_advisory_lock($1)", &[&BUILD_LOCK])?;
            }
            Ok(client)
        })
        .await??;
        Ok(Session {
            client: Some(client),
        })
    }

    /// Runs `work` on a connection of the pool, off the async workers.
    ///
    /// Connections are not tested when checked out (a round trip on every
    /// search): a connection found lost fails at once, is dropped by the
    /// pool, and `work` runs again on the next one. Every piece of work is
    /// one statement or one transaction, so running it again is safe. After
    /// a server restart every idle connection is lost: at most all of
    /// them are tried, then a new one is made.
    async fn run<T: Send + 'static>(
        &self,
        work: impl Fn(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, SearchError> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let pool = pool.ok_or_else(|| SearchError::Unavailable("index closed".into()))?;
            let mut attempts = 0;
            loop {
                let mut conn = pool.get().map_err(|e| {
                    SearchError::Unavailable(format!("no connection to the database: {e}"))
                })?;
                match work(&mut conn) {
                    Err(e) if connection_lost(&e) && attempts <= POOL_SIZE => {
                        attempts += 1;
                        // A server that ended the session says so in its
                        // answer to the next statement, before the socket
                        // is seen closed; the round trip makes the client
                        // notice, so the pool drops it instead of handing
                        // it out again.
                        if !conn.is_closed() {
                            let _ = conn.is_valid(Duration::from_secs(1));
                        }
                    }
                    result => return result.map_err(classify),
                }
            }
        })
        .await
        .map_err(|e| SearchError::Unavailable(e.to_string()))?
    }

    /// What a crash can leave behind, caught up: adds the repositories of
    /// storage the index misses, removes nothing (as the SQLite index's).
    pub async fn catch_up(
        &self,
        storage: &dyn Storage,
        progress: &ProgressBar,
    ) -> anyhow::Result<Reconciled> {
        let names = names_of(storage, progress).await?;
        let found = names.len() as u64;
        let added = self
            .run(move |client| client.execute(INSERT_MISSING, &[&names]))
            .await?;
        Ok(Reconciled {
            found,
            added,
            removed: 0,
        })
    }

    /// Brings the index in line with storage, as `reindex` on SQLite does:
    /// adds what it misses, removes what storage no longer holds (of the
    /// rows known before the walk), keeps descriptions. One transaction.
    pub async fn reindex(
        &self,
        storage: &dyn Storage,
        progress: &ProgressBar,
    ) -> anyhow::Result<Reconciled> {
        let known_before = self
            .run(|client| {
                client
                    .query_one("SELECT coalesce(max(id), 0)::bigint FROM repository", &[])
                    .map(|row| row.get::<_, i64>(0))
            })
            .await?;
        let names = names_of(storage, progress).await?;
        let found = names.len() as u64;
        let (added, removed) = self
            .run(move |client| {
                let mut tx = client.transaction()?;
                tx.batch_execute(&format!(
                    "SET LOCAL statement_timeout = '{BUILD_STATEMENT_TIMEOUT}';
                     CREATE TEMP TABLE reindex_found (name text PRIMARY KEY) ON COMMIT DROP;"
                ))?;
                tx.execute(
                    "INSERT INTO reindex_found SELECT DISTINCT n FROM unnest($1::text[]) AS n",
                    &[&names],
                )?;
                let removed = tx.execute(
                    "DELETE FROM repository r WHERE r.id <= $1::bigint \
                     AND NOT EXISTS (SELECT 1 FROM reindex_found f WHERE f.name = r.name)",
                    &[&known_before],
                )?;
                let added = tx.execute(
                    "INSERT INTO repository (name, description) \
                     SELECT name, NULL FROM reindex_found ORDER BY name COLLATE \"C\" \
                     ON CONFLICT (name) DO NOTHING",
                    &[],
                )?;
                tx.commit()?;
                Ok((added, removed))
            })
            .await?;
        Ok(Reconciled {
            found,
            added,
            removed,
        })
    }
}

impl Drop for PostgresIndex {
    /// The driver's connections block when they close, which must not
    /// happen on an async worker: the pool goes on a thread of its own.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                std::thread::spawn(move || drop(pool));
            }
        }
    }
}

#[async_trait]
impl SearchIndex for PostgresIndex {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        // PostgreSQL text cannot hold NUL, and no name does.
        if query.term.contains('\0') {
            return Ok(SearchPage {
                total: 0,
                hits: Vec::new(),
            });
        }
        let limit = i64::from(query.per_page);
        let offset = i64::try_from(query.page.max(1) - 1)
            .unwrap_or(i64::MAX)
            .saturating_mul(limit);
        // The matches are found once, then counted and paged in one
        // statement (one snapshot): the count comes on every row, and alone
        // (name null) past the last page.
        let (filter, like) = if query.term.is_empty() {
            ("", None)
        } else {
            (
                "WHERE lower(name COLLATE \"C\") LIKE $3 ESCAPE '\\' \
                 OR lower(description COLLATE \"C\") LIKE $3 ESCAPE '\\'",
                Some(like_pattern(&query.term).to_ascii_lowercase()),
            )
        };
        let sql = format!(
            "WITH hit AS MATERIALIZED (SELECT name, description FROM repository {filter}) \
             SELECT t.total, p.name::text, p.description::text \
             FROM (SELECT count(*) AS total FROM hit) AS t LEFT JOIN LATERAL \
                  (SELECT name, description FROM hit ORDER BY name COLLATE \"C\" \
                   LIMIT $1 OFFSET $2) AS p ON true \
             ORDER BY p.name COLLATE \"C\""
        );
        self.run(move |client| {
            let rows = match &like {
                Some(like) => client.query(&sql, &[&limit, &offset, like])?,
                None => client.query(&sql, &[&limit, &offset])?,
            };
            let mut page = SearchPage {
                total: 0,
                hits: Vec::with_capacity(rows.len()),
            };
            for row in rows {
                page.total = row.get::<_, i64>(0) as u64;
                if let Some(name) = row.get::<_, Option<String>>(1) {
                    page.hits.push(SearchHit {
                        name,
                        description: row.get(2),
                    });
                }
            }
            Ok(page)
        })
        .await
    }

    async fn upsert(&self, name: &str, description: Option<&str>) -> Result<(), SearchError> {
        let (name, description) = (name.to_owned(), description.map(str::to_owned));
        self.run(move |client| {
            match &description {
                Some(description) => client.execute(
                    "INSERT INTO repository (name, description) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET description = excluded.description \
                     WHERE repository.description IS DISTINCT FROM excluded.description",
                    &[&name, description],
                )?,
                None => client.execute(
                    "INSERT INTO repository (name, description) VALUES ($1, '') \
                     ON CONFLICT (name) DO NOTHING",
                    &[&name],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn remove(&self, name: &str) -> Result<(), SearchError> {
        let name = name.to_owned();
        self.run(move |client| {
            client.execute("DELETE FROM repository WHERE name = $1", &[&name])?;
            Ok(())
        })
        .await
    }
}

/// Every pooled connection: searches and writes are bounded in time.
#[derive(Debug)]
struct SessionSettings;

impl r2d2::CustomizeConnection<Client, postgres::Error> for SessionSettings {
    fn on_acquire(&self, client: &mut Client) -> Result<(), postgres::Error> {
        client.batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
    }
}

/// A failure of the database as search reports it: waiting too long for a
/// lock or a statement is `Busy` (try again), anything else `Unavailable`.
/// The session is gone, not the statement wrong: the socket closed or
/// broke, or the server ended the session (a restart, a failover,
/// `pg_terminate_backend`: SQLSTATE class 57P).
fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|code| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
        })
        || std::error::Error::source(e).is_some_and(|cause| cause.is::<std::io::Error>())
}

fn classify(e: postgres::Error) -> SearchError {
    let busy = e.code().is_some_and(|code| {
        [
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
    });
    // The server's own words: `Display` of a server error is only its class.
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    if busy {
        SearchError::Busy(message)
    } else {
        SearchError::Unavailable(message)
    }
}

/// The connection that holds the build lock, released (with the lock) at
/// the end of the work or when dropped.
struct Session {
    client: Option<Client>,
}

impl Session {
    async fn run<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Client) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let mut client = self.client.take().context("build session already closed")?;
        let (client, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut client);
            (client, result)
        })
        .await?;
        self.client = Some(client);
        result
    }

    async fn release(mut self) -> anyhow::Result<()> {
        self.run(|client| {
            client.execute("SELECT pg_advisory_unlock($1)", &[&BUILD_LOCK])?;
            Ok(())
        })
        .await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the connection releases the lock too; off the async
        // workers, as the sync client blocks.
        if let Some(client) = self.client.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(client))),
                Err(_) => drop(client),
            }
        }
    }
}

/// Whether the database still has to be built: no `version` table, or an
/// empty one. A version other than ours is an error.
fn is_fresh(client: &mut Client) -> anyhow::Result<bool> {
    let exists: bool = client
        .query_one("SELECT to_regclass('version') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(true);
    }
    let version: Option<i32> = client.query_one("SELECT max(id) FROM version", &[])?.get(0);
    match version {
        None => Ok(true),
        Some(SCHEMA_VERSION) => Ok(false),
        Some(other) => anyhow::bail!(
            "schema version {other}, but registry-v1 knows version {SCHEMA_VERSION} only \
             (the old registry's); use a database of version {SCHEMA_VERSION}, or a new one"
        ),
    }
}

/// Creates the old tables, fills them with `names`, adds ours: one
/// transaction, so a build that fails leaves the database fresh.
fn build(client: &mut Client, names: &[String]) -> anyhow::Result<Reconciled> {
    let mut tx = client.transaction()?;
    if tx
        .query_one("SELECT to_regclass('version') IS NULL", &[])?
        .get::<_, bool>(0)
    {
        tx.batch_execute(CREATE_VERSION)?;
    }
    if tx
        .query_one("SELECT to_regclass('repository') IS NULL", &[])?
        .get::<_, bool>(0)
    {
        tx.batch_execute(CREATE_REPOSITORY)?;
    }
    tx.execute("INSERT INTO version (id) VALUES ($1)", &[&SCHEMA_VERSION])?;
    let added = tx.execute(INSERT_MISSING, &[&names])?;
    tx.commit()?;
    add_extras(client)?;
    Ok(Reconciled {
        found: names.len() as u64,
        added,
        removed: 0,
    })
}

/// Adds our trigram indexes where they are missing. Without the `pg_trgm`
/// extension (not installed, or no right to create it) every search scans,
/// with the same answers: said once, at start.
fn add_extras(client: &mut Client) -> anyhow::Result<()> {
    let has_trgm: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')",
            &[],
        )?
        .get(0);
    if !has_trgm {
        if let Err(e) = client.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_trgm") {
            let why = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned());
            log::warn!(
                "search index: cannot create the pg_trgm extension ({why}): searches scan \
                 every row (same answers, slower); `CREATE EXTENSION pg_trgm` as a superuser \
                 adds it"
            );
            return Ok(());
        }
    }
    let missing: i64 = client
        .query_one(
            "SELECT 2 - count(*) FROM pg_indexes WHERE tablename = 'repository' \
             AND indexname IN ('repository_name_trgm', 'repository_description_trgm') \
             AND schemaname = current_schema()",
            &[],
        )?
        .get(0);
    if missing > 0 {
        log::info!("search index: adding the trigram indexes to the database");
        client.batch_execute(CREATE_TRIGRAM_INDEXES)?;
    }
    Ok(())
}

/// The width of the old schema's `name VARCHAR(95)`, which PostgreSQL
/// enforces (SQLite does not).
const NAME_WIDTH: usize = 95;

/// The repositories of storage as the index names them; those too long
/// for the column are left out (said once), so that one of them does not
/// fail the whole build.
async fn names_of(storage: &dyn Storage, progress: &ProgressBar) -> anyhow::Result<Vec<String>> {
    let names: Vec<RepositoryName> = walk::repositories(storage, progress)
        .await
        .context("cannot list the repositories of storage")?;
    let (names, too_long): (Vec<String>, Vec<String>) = names
        .iter()
        .map(ToString::to_string)
        .partition(|name| name.chars().count() <= NAME_WIDTH);
    if let Some(first) = too_long.first() {
        log::warn!(
            "search index: {} repositories have names over {NAME_WIDTH} characters, the \
             width of the old schema's column, and are not indexed (the first: {first})",
            too_long.len()
        );
    }
    Ok(names)
}
