//! The names a client sends: v1 repository names, image ids and tags
//! (here), OCI repository names, tags and references ([`oci`]), and
//! content digests ([`digest`]).
//!
//! They are validated once, here, where they enter; the rest of the code
//! takes these types and never re-checks a raw string. How a name becomes a
//! storage path (and how it is escaped there) is the storage layout's job.

pub mod digest;
pub mod oci;

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A repository: `<namespace>/<repository>`.
///
/// Both parts are kept as the client spelled them (after URL decoding); the
/// legacy double percent-encoding is applied by the storage layout, not here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName {
    namespace: String,
    repository: String,
}

/// Why a repository name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// An empty part or a NUL byte: what the old registry refused too
    /// (its 404 `Invalid repository name`).
    #[error("invalid repository name: {0}")]
    Malformed(String),
    /// A name the old registry took but no storage path or header can
    /// hold; the reason says which rule (a 400 on v1).
    #[error("invalid repository name: {0}")]
    Refused(&'static str),
}

/// The most bytes a namespace or repository may take once escaped as a
/// storage path component (`NAME_MAX` of common filesystems): a longer one
/// could be stored by no driver.
pub const NAME_PART_MAX: usize = 255;

impl RepositoryName {
    /// The namespace a single-component name lives in.
    pub const DEFAULT_NAMESPACE: &'static str = "library";

    /// Parses the repository part of a URL path the way the old registry did:
    /// a trailing `/` is ignored, a single component means `library/<name>`,
    /// and the path splits once, so `a/b/c` is namespace `a`, repository `b/c`
    /// (the `/` is escaped when the name becomes a storage path).
    pub fn parse(path: &str) -> Result<Self, InvalidName> {
        let trimmed = path.trim_end_matches('/');
        let (namespace, repository) = match trimmed.split_once('/') {
            Some((ns, repo)) => (ns, repo),
            None => (Self::DEFAULT_NAMESPACE, trimmed),
        };
        Self::new(namespace, repository)
    }

    /// A name from its two parts. Neither may be empty or hold a NUL byte
    /// (as before); nor, since they go into the `X-Docker-Token` header,
    /// hold `"`, `,` or a control character (which would break out of the
    /// header's `repository="..."`), nor U+FFFD (what bytes that are no
    /// UTF-8 decode to: `%ff` and `%fe` would name one repository).
    pub fn new(namespace: &str, repository: &str) -> Result<Self, InvalidName> {
        let bad = |s: &str| s.is_empty() || s.contains('\0');
        if bad(namespace) || bad(repository) {
            // Bounded: the name may be of any length.
            let shown: String = format!("{namespace}/{repository}")
                .chars()
                .take(64)
                .collect();
            return Err(InvalidName::Malformed(shown));
        }
        let unsafe_char = |c: char| matches!(c, '"' | ',') || c.is_control();
        if namespace.contains(unsafe_char) || repository.contains(unsafe_char) {
            return Err(InvalidName::Refused(
                "double quotes, commas and control characters are not allowed",
            ));
        }
        if namespace.contains('\u{FFFD}') || repository.contains('\u{FFFD}') {
            return Err(InvalidName::Refused("not UTF-8 once percent-decoded"));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            repository: repository.to_owned(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.repository)
    }
}

/// A v1 image id: 16 or 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);

static IMAGE_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([a-f0-9]{16}|[a-f0-9]{64})$").expect("static regex"));

impl ImageId {
    /// `None` when `s` is not a valid id; the caller knows which error to give.
    pub fn parse(s: &str) -> Option<Self> {
        IMAGE_ID.is_match(s).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag name, as the later legacy code checked it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

/// The pattern a tag must match, quoted verbatim in the error message.
pub const TAG_PATTERN: &str = r"^[\w][\w.-]{0,127}$";

static TAG: LazyLock<Regex> = LazyLock::new(|| {
    // `\w` in Python 2's `re` without UNICODE is ASCII: keep it so here.
    Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("static regex")
});

impl Tag {
    pub fn parse(s: &str) -> Option<Self> {
        TAG.is_match(s).then(|| Self(s.to_owned()))
    }

    /// A tag name read back from storage (or a URL we only look up with),
    /// trusted as it is: the layout escapes it anyway.
    pub fn unchecked(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_split_like_the_old_registry() {
        let n = RepositoryName::parse("busybox").unwrap();
        assert_eq!((n.namespace(), n.repository()), ("library", "busybox"));
        let n = RepositoryName::parse("me/app/").unwrap();
        assert_eq!((n.namespace(), n.repository()), ("me", "app"));
        let n = RepositoryName::parse("a/b/c").unwrap();
        assert_eq!((n.namespace(), n.repository()), ("a", "b/c"));
        assert_eq!(n.to_string(), "a/b/c");
        assert!(RepositoryName::parse("").is_err());
        assert!(RepositoryName::parse("/x").is_err());
        assert!(RepositoryName::parse("a/\0").is_err());
    }

    #[test]
    fn image_ids_are_16_or_64_hex() {
        assert!(ImageId::parse("0123456789abcdef").is_some());
        assert!(ImageId::parse(&"a".repeat(64)).is_some());
        assert!(ImageId::parse(&"a".repeat(32)).is_none());
        assert!(ImageId::parse("0123456789ABCDEF").is_none());
        assert!(ImageId::parse("../../etc/passwd").is_none());
    }

    #[test]
    fn tags_follow_the_documented_pattern() {
        assert!(Tag::parse("latest").is_some());
        assert!(Tag::parse("1.0-rc_2").is_some());
        assert!(Tag::parse(&"a".repeat(128)).is_some());
        assert!(Tag::parse(&"a".repeat(129)).is_none());
        assert!(Tag::parse(".hidden").is_none());
        assert!(Tag::parse("a/b").is_none());
        assert!(Tag::parse("").is_none());
    }
}
