//! `sqlalchemy_index_database`: the SQLAlchemy URL of the old registry,
//! of which we accept the SQLite and the PostgreSQL forms.

use std::fmt;
use std::path::PathBuf;

/// Where the search index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A database file, absolute or relative to the working directory.
    File(PathBuf),
    /// A database that lives as long as the process (`sqlite://`).
    Memory,
    /// A PostgreSQL server, shared by every registry that names it.
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL as libpq reads it (`postgresql://user:pass@host:port/db?...`),
/// the SQLAlchemy driver suffix (`+psycopg2`) taken off. Shown without its
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The URL to connect with, password included: for the driver only.
    pub fn connect_string(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({})", redact(&self.0))
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error(
        "`{0}` is not a database registry-v1 can keep the search index in: use SQLite \
         (sqlite:////absolute/path.db, sqlite:///relative/path.db, or sqlite:// in memory) \
         or PostgreSQL (postgresql://user:password@host:5432/database)"
    )]
    NotSqlite(String),
    #[error(
        "`{0}` is MySQL/MariaDB, which registry-v1 does not offer for the search index: \
         use PostgreSQL (postgresql://user:password@host:5432/database), shared by every \
         registry instance, or SQLite for one host"
    )]
    Mysql(String),
    #[error("`{0}` names a host: an SQLite URL has none (sqlite:////absolute/path.db)")]
    HasHost(String),
}

const FORMS: &[&str] = &["sqlite", "sqlite+pysqlite"];

/// SQLAlchemy's PostgreSQL dialect (any driver: `+psycopg2`, `+pg8000`,
/// `+psycopg`) and libpq's two schemes.
fn is_postgres(scheme: &str) -> bool {
    let dialect = scheme.split('+').next().unwrap_or(scheme);
    dialect == "postgresql" || dialect == "postgres"
}

fn is_mysql(scheme: &str) -> bool {
    let dialect = scheme.split('+').next().unwrap_or(scheme);
    dialect == "mysql" || dialect == "mariadb"
}

impl DatabaseLocation {
    /// Reads a URL the way SQLAlchemy reads SQLite ones: `sqlite://` then
    /// an empty host, then the path (`sqlite:////abs.db` is `/abs.db`,
    /// `sqlite:///rel.db` is `rel.db`); no path, or `:memory:`, is memory.
    /// Query options (`?timeout=...`) are SQLAlchemy's, and ignored.
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
        if let Some((scheme, rest)) = url.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if is_postgres(&scheme) {
                return Ok(Self::Postgres(PostgresUrl(format!("postgresql://{rest}"))));
            }
            if is_mysql(&scheme) {
                return Err(DatabaseUrlError::Mysql(redact(url)));
            }
        }
        let rest = url
            .split_once("://")
            .filter(|(scheme, _)| FORMS.contains(&scheme.to_ascii_lowercase().as_str()))
            .map(|(_, rest)| rest)
            .ok_or_else(|| DatabaseUrlError::NotSqlite(redact(url)))?;
        let (rest, options) = match rest.split_once('?') {
            Some((rest, options)) => (rest, Some(options)),
            None => (rest, None),
        };
        if let Some(options) = options {
            log::warn!("sqlalchemy_index_database: options `?{options}` are SQLAlchemy's, ignored");
        }
        let path = match rest.split_once('/') {
            None if rest.is_empty() => return Ok(Self::Memory),
            Some(("", path)) => path,
            _ => return Err(DatabaseUrlError::HasHost(redact(url))),
        };
        if path.is_empty() || path == ":memory:" {
            Ok(Self::Memory)
        } else {
            Ok(Self::File(PathBuf::from(path)))
        }
    }
}

impl fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Memory => f.write_str("(in memory)"),
            Self::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// The URL without the password it may carry, in the user part
/// (`mysql://user:secret@host`) or as libpq's `password=` option.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut shown = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => format!("{scheme}://{rest}"),
    };
    if let Some(query) = query {
        let options: Vec<String> = query
            .split('&')
            .map(|option| match option.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => option.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&options.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> Result<DatabaseLocation, DatabaseUrlError> {
        Ok(DatabaseLocation::File(PathBuf::from(p)))
    }

    #[test]
    fn sqlalchemy_sqlite_urls() {
        let parse = DatabaseLocation::parse;
        assert_eq!(
            parse("sqlite:////tmp/docker-registry.db"),
            file("/tmp/docker-registry.db")
        );
        assert_eq!(parse("sqlite:///registry.db"), file("registry.db"));
        assert_eq!(parse("sqlite:///data/r.db"), file("data/r.db"));
        assert_eq!(parse("sqlite+pysqlite:////x.db"), file("/x.db"));
        assert_eq!(parse("sqlite:///r.db?timeout=20"), file("r.db"));
        assert_eq!(parse("sqlite://"), Ok(DatabaseLocation::Memory));
        assert_eq!(parse("sqlite:///"), Ok(DatabaseLocation::Memory));
        assert_eq!(parse("sqlite:///:memory:"), Ok(DatabaseLocation::Memory));
    }

    #[test]
    fn postgresql_urls_in_sqlalchemy_and_libpq_spellings() {
        for url in [
            "postgresql://reg:s3cret@db.example:5433/registry",
            "postgresql+psycopg2://reg:s3cret@db.example:5433/registry",
            "postgres://reg:s3cret@db.example:5433/registry",
            "PostgreSQL+pg8000://reg:s3cret@db.example:5433/registry",
        ] {
            let Ok(DatabaseLocation::Postgres(pg)) = DatabaseLocation::parse(url) else {
                panic!("{url} not read as PostgreSQL");
            };
            assert_eq!(
                pg.connect_string(),
                "postgresql://reg:s3cret@db.example:5433/registry"
            );
            let shown = format!("{pg} {pg:?} {}", DatabaseLocation::Postgres(pg.clone()));
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("reg:***@db.example:5433/registry"),
                "{shown}"
            );
        }
        let Ok(DatabaseLocation::Postgres(pg)) =
            DatabaseLocation::parse("postgresql:///registry?host=/run/pg&password=s3cret&user=r")
        else {
            panic!("a URL with options not read as PostgreSQL");
        };
        assert_eq!(
            pg.to_string(),
            "postgresql:///registry?host=/run/pg&password=***&user=r"
        );
    }

    #[test]
    fn other_databases_are_refused_without_their_password() {
        let err = DatabaseLocation::parse("mysql+pymysql://reg:s3cret@db.example/registry")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mysql+pymysql://reg:***@db.example/registry"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("does not offer"), "{err}");
        assert!(matches!(
            DatabaseLocation::parse("mariadb://h/db"),
            Err(DatabaseUrlError::Mysql(_))
        ));
        for bad in ["oracle://h/db", "/tmp/x.db", "sqlite:/x.db", ""] {
            assert!(
                matches!(
                    DatabaseLocation::parse(bad),
                    Err(DatabaseUrlError::NotSqlite(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            DatabaseLocation::parse("sqlite://host/x.db"),
            Err(DatabaseUrlError::HasHost(_))
        ));
    }
}
