//! Repository names, tags and references as the distribution spec writes
//! them. They are validated here, where they enter, and are safe as storage
//! path components from then on: no component can be empty, `.` or `..`.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::digest::{Digest, InvalidDigest};

/// The longest name we accept. The spec sets no limit but says many
/// clients stop at 255 characters with the host name.
pub const NAME_MAX: usize = 255;

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
    )
    .expect("static regex")
});

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("static regex"));

/// A repository name: `/`-separated components of lowercase letters and
/// digits joined by `.`, `_`, `__` or dashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository name {0:?}")]
pub struct InvalidName(pub String);

impl Name {
    pub fn parse(text: &str) -> Result<Self, InvalidName> {
        if text.len() > NAME_MAX || !NAME.is_match(text) {
            return Err(InvalidName(text.chars().take(NAME_MAX + 1).collect()));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: up to 128 characters of letters, digits, `_`, `.` and `-`, not
/// starting with `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tag {0:?}")]
pub struct InvalidTag(pub String);

impl Tag {
    pub fn parse(text: &str) -> Result<Self, InvalidTag> {
        if !TAG.is_match(text) {
            return Err(InvalidTag(text.chars().take(200).collect()));
        }
        Ok(Self(text.to_owned()))
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

/// What `/manifests/<reference>` names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReference {
    #[error(transparent)]
    Tag(#[from] InvalidTag),
    #[error(transparent)]
    Digest(#[from] InvalidDigest),
}

impl Reference {
    /// A reference with a `:` is a digest (tags cannot hold one).
    pub fn parse(text: &str) -> Result<Self, InvalidReference> {
        if text.contains(':') {
            Ok(Reference::Digest(Digest::parse(text)?))
        } else {
            Ok(Reference::Tag(Tag::parse(text)?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for good in [
            "a",
            "library/ubuntu",
            "a/b/c/d",
            "my-app",
            "my--app",
            "my__app",
            "my.app",
            "0",
            "a1/b2.c_d",
        ] {
            assert!(Name::parse(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            ".a",
            "a.",
            "a___b",
            "a-",
            "a%2fb",
            "a\\b",
            "a b",
            "a\0b",
            "_catalog",
            &"a".repeat(256),
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tags_and_references() {
        for good in ["latest", "v1.0", "_x", "A-b.c_D", &"t".repeat(128)] {
            assert!(Tag::parse(good).is_ok(), "{good:?} refused");
        }
        for bad in ["", ".x", "-x", "..", "a/b", "a:b", &"t".repeat(129)] {
            assert!(Tag::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let digest = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            Reference::parse(&digest),
            Ok(Reference::Digest(_))
        ));
        assert!(Reference::parse("sha256:zz").is_err());
    }
}
