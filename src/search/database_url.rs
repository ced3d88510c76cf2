//! `sqlalchemy_index_database`: the SQLAlchemy URL of the old registry,
//! of which we accept the SQLite forms.

use std::fmt;
use std::path::PathBuf;

/// Where the search index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A database file, absolute or relative to the working directory.
    File(PathBuf),
    /// A database that lives as long as the process (`sqlite://`).
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error(
        "`{0}` is not an SQLite URL: registry-v1 keeps the search index in SQLite \
         (sqlite:////absolute/path.db, sqlite:///relative/path.db, or sqlite:// in memory)"
    )]
    NotSqlite(String),
    #[error("`{0}` names a host: an SQLite URL has none (sqlite:////absolute/path.db)")]
    HasHost(String),
}

const FORMS: &[&str] = &["sqlite", "sqlite+pysqlite"];

impl DatabaseLocation {
    /// Reads a URL the way SQLAlchemy reads SQLite ones: `sqlite://` then
    /// an empty host, then the path (`sqlite:////abs.db` is `/abs.db`,
    /// `sqlite:///rel.db` is `rel.db`); no path, or `:memory:`, is memory.
    /// Query options (`?timeout=...`) are SQLAlchemy's, and ignored.
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
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
        }
    }
}

/// The URL without the password it may carry (`mysql://user:secret@host`).
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
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
    fn other_databases_are_refused_without_their_password() {
        let err = DatabaseLocation::parse("postgresql://reg:s3cret@db.example/registry")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("postgresql://reg:***@db.example/registry"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("not an SQLite URL"), "{err}");
        for bad in ["mysql://h/db", "/tmp/x.db", "sqlite:/x.db", ""] {
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
